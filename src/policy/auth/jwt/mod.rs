//! JWT verification: compiled providers, token sources, verification and the answers.
//!
//! A rule's JWT providers are authenticated together: every token presented at any of their
//! sources is verified (a valid header token does not excuse a bad one in the query), each by
//! the first provider, among those whose sources it was found at, that accepts it: those
//! naming its unverified `iss` first, then those without `issuer`.

pub mod alg;
pub mod cache;
pub mod claims;
pub mod keys;
#[cfg(test)]
pub mod mint;
pub mod native;
pub mod remote;
pub mod token;
pub mod verify;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;

use self::alg::Alg;
use self::cache::{TokenCache, Verified};
use self::claims::ClaimRules;
use self::keys::KeySet;
use self::token::Failure;
use super::{AuthMethod, Credential, Principal};
use crate::policy::host::unix_seconds;
use crate::policy::http;
use crate::policy::{Denial, Host, Reason, Request};

/// At most this many tokens are looked at in one request.
pub const MAX_TOKENS: usize = 4;
/// At most this many keys are tried for a token without `kid`.
pub const MAX_KEYS_TRIED: usize = 8;

/// Where a provider looks for tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSource {
    /// Lower-case header name.
    pub name: String,
    /// e.g. `Bearer `, compared case-insensitively; None: the whole value is the token.
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sources {
    pub headers: Vec<HeaderSource>,
    pub params: Vec<String>,
    pub cookies: Vec<String>,
}

/// A remote JWKS, fetched by the shell through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub refresh_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Local(Arc<KeySet>),
    Remote(RemoteJwks),
}

/// A claim copied to a request header towards the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    pub claim: String,
    pub header: String,
}

/// The mutable, per-worker side of a provider: its verified-token cache and its current remote
/// key set. Not configuration: it never takes part in comparisons of compiled policies.
/// (Mutexes and atomics rather than cells keep the compiled policy `Send + Sync`; in the
/// single-threaded wasm VM they never contend.)
#[derive(Default)]
pub struct ProviderState {
    cache: Mutex<TokenCache>,
    /// The last good remote key set; None before the first good fetch.
    remote_keys: Mutex<Option<Arc<KeySet>>>,
    /// Set when a token named a kid the remote key set lacks: the shell may refetch early.
    pub unknown_kid: AtomicBool,
    /// CAS token of the shared key set last loaded into `remote_keys`.
    loaded_cas: Mutex<Option<u32>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ProviderState {
    pub fn with_cache(entries: usize) -> Self {
        ProviderState {
            cache: Mutex::new(TokenCache::new(entries)),
            ..ProviderState::default()
        }
    }

    pub fn cache(&self) -> MutexGuard<'_, TokenCache> {
        lock(&self.cache)
    }

    pub fn remote_keys(&self) -> Option<Arc<KeySet>> {
        lock(&self.remote_keys).clone()
    }

    /// Makes `set` the remote keys; if they changed, cached verifications are dropped so that
    /// a key rotated out stops verifying at once.
    pub fn install_remote_keys(&self, set: KeySet) {
        let mut keys = lock(&self.remote_keys);
        if keys.as_deref() != Some(&set) {
            self.cache().clear();
            *keys = Some(Arc::new(set));
        }
    }

    pub fn loaded_cas(&self) -> Option<u32> {
        *lock(&self.loaded_cas)
    }

    pub fn set_loaded_cas(&self, cas: u32) {
        *lock(&self.loaded_cas) = Some(cas);
    }

    #[cfg(test)]
    pub fn unknown_kid_seen(&self) -> bool {
        self.unknown_kid.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for ProviderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderState")
            .field("cached", &self.cache().len())
            .field("remote_keys", &self.remote_keys().is_some())
            .finish()
    }
}

/// A compiled `jwt_providers.<name>` entry.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub rules: ClaimRules,
    /// The allow-list: a token's alg must be one of these (and fit its key).
    pub algorithms: Vec<Alg>,
    pub keys: KeySource,
    pub sources: Sources,
    pub forward: bool,
    pub claim_to_headers: Vec<ClaimHeader>,
    pub payload_header: Option<String>,
    pub cache_entries: usize,
    pub max_token_bytes: usize,
    pub state: Arc<ProviderState>,
}

impl PartialEq for Provider {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.rules == other.rules
            && self.algorithms == other.algorithms
            && self.keys == other.keys
            && self.sources == other.sources
            && self.forward == other.forward
            && self.claim_to_headers == other.claim_to_headers
            && self.payload_header == other.payload_header
            && self.cache_entries == other.cache_entries
            && self.max_token_bytes == other.max_token_bytes
    }
}

impl Eq for Provider {}

/// The 401 answer to a token that failed (RFC 6750 `invalid_token`).
pub fn denial((reason, description): Failure) -> Denial {
    Denial::new(reason)
        .with_detail(description)
        .with_header(
            "www-authenticate",
            format!(
                "Bearer realm=\"api-guard\", error=\"invalid_token\", error_description=\"{description}\""
            ),
        )
}

/// Where a token was found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Header(String),
    Param(String),
    Cookie(String),
}

struct Found {
    token: String,
    location: Location,
    /// Providers (indices) whose sources include this location.
    candidates: Vec<usize>,
}

impl Provider {
    /// Tokens at this provider's sources, with where they were found.
    fn extract(&self, request: &Request, out: &mut Vec<(String, Location)>) {
        for source in &self.sources.headers {
            for value in request.header_values(&source.name) {
                if out.len() > MAX_TOKENS {
                    return;
                }
                let token = match &source.prefix {
                    Some(prefix) => {
                        let head = value.get(..prefix.len());
                        match head {
                            Some(head) if head.eq_ignore_ascii_case(prefix) => {
                                value.get(prefix.len()..).unwrap_or("").trim()
                            }
                            _ => continue,
                        }
                    }
                    None => value.trim(),
                };
                out.push((token.to_string(), Location::Header(source.name.clone())));
            }
        }
        if !self.sources.params.is_empty() {
            for (name, value) in http::query_pairs(request.query().unwrap_or("")) {
                if out.len() > MAX_TOKENS {
                    return;
                }
                // By decoded name, as the upstream will read it (`access%5Ftoken`).
                if http::param_name_is(name, &self.sources.params) {
                    let name = String::from_utf8_lossy(&http::percent_decode(name)).into_owned();
                    let token = String::from_utf8_lossy(&http::percent_decode(value)).into_owned();
                    out.push((token, Location::Param(name)));
                }
            }
        }
        if !self.sources.cookies.is_empty() {
            for header in request.header_values("cookie") {
                for pair in http::cookies(header) {
                    if out.len() > MAX_TOKENS {
                        return;
                    }
                    let (name, value) = http::split_pair(pair);
                    if self.sources.cookies.iter().any(|c| c == name) {
                        let value = value.trim_matches('"');
                        out.push((value.to_string(), Location::Cookie(name.to_string())));
                    }
                }
            }
        }
    }

    /// The provider's current keys; None while a remote JWKS has not been fetched.
    fn key_set(&self) -> Option<Arc<KeySet>> {
        match &self.keys {
            KeySource::Local(set) => Some(Arc::clone(set)),
            KeySource::Remote(_) => self.state.remote_keys(),
        }
    }

    /// Verifies a parsed token: algorithm, claims, key, signature.
    fn verify(
        &self,
        index: usize,
        parsed: &token::Parsed,
        host: &dyn Host,
        now: u64,
    ) -> Result<Verified, Failure> {
        if !self.algorithms.contains(&parsed.alg) {
            return Err((
                Reason::JwtAlgNotAllowed,
                "the token algorithm is not allowed",
            ));
        }
        let expires = self.rules.check(&parsed.claims, now)?;
        let Some(set) = self.key_set() else {
            return Err((
                Reason::JwksUnavailable,
                "the signing keys are not available yet",
            ));
        };
        let candidates: Vec<&keys::Key> = match &parsed.kid {
            Some(kid) => {
                let named: Vec<&keys::Key> = set
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                    .collect();
                if named.is_empty() {
                    if matches!(self.keys, KeySource::Remote(_)) {
                        self.state.unknown_kid.store(true, Ordering::Relaxed);
                    }
                    return Err((Reason::JwtUnknownKid, "the token signing key is unknown"));
                }
                let fitting: Vec<&keys::Key> =
                    named.into_iter().filter(|k| k.fits(parsed.alg)).collect();
                if fitting.is_empty() {
                    return Err((
                        Reason::JwtAlgNotAllowed,
                        "the token algorithm does not fit its key",
                    ));
                }
                fitting
            }
            None => {
                let fitting: Vec<&keys::Key> =
                    set.keys.iter().filter(|k| k.fits(parsed.alg)).collect();
                if fitting.is_empty() {
                    return Err((Reason::JwtUnknownKid, "no signing key fits the token"));
                }
                fitting
            }
        };
        let input = parsed.signing_input.as_bytes();
        let valid = candidates
            .iter()
            .take(MAX_KEYS_TRIED)
            .any(|key| verify::verify(parsed.alg, key, input, &parsed.signature, host));
        if !valid {
            return Err((Reason::JwtBadSignature, "the token signature is invalid"));
        }
        Ok(self.verified(index, parsed, expires))
    }

    fn verified(&self, index: usize, parsed: &token::Parsed, expires: Option<u64>) -> Verified {
        let mut upstream_set = Vec::new();
        for mapping in &self.claim_to_headers {
            if let Some(value) = claims::lookup(&parsed.claims, &mapping.claim) {
                if let Some(value) = claims::header_value(value) {
                    upstream_set.push((mapping.header.clone(), value));
                }
            }
        }
        if let Some(header) = &self.payload_header {
            upstream_set.push((header.clone(), parsed.payload_b64.to_string()));
        }
        Verified {
            provider: index,
            client: client_identity(parsed),
            scopes: claims::scopes(&parsed.claims),
            upstream_set,
            expires,
        }
    }
}

/// The client identity of a verified token: `jwt:<iss>|<sub>`, one string per (iss, sub)
/// pair. `%`, `|` and `#` inside either are percent-escaped, so no `iss` can reach into the
/// `sub` half. A missing or non-string `iss` is `#`. A missing or non-string `sub` is `#`
/// and the start of the SHA-256 of the token's signed part: a token without a subject is its
/// own client, never one bucket shared by every such token.
fn client_identity(parsed: &token::Parsed) -> String {
    use std::fmt::Write as _;
    let mut client = String::from("jwt:");
    match parsed.claims.get("iss").and_then(Value::as_str) {
        Some(iss) => push_escaped(&mut client, iss),
        None => client.push('#'),
    }
    client.push('|');
    match parsed.claims.get("sub").and_then(Value::as_str) {
        Some(sub) => push_escaped(&mut client, sub),
        None => {
            client.push('#');
            for byte in cache::digest(parsed.signing_input).iter().take(8) {
                let _ = write!(client, "{byte:02x}");
            }
        }
    }
    client
}

/// Appends `text` with the identity's separators (`|`, `#`) and `%` percent-escaped.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '|' => out.push_str("%7C"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
}

/// Authenticates a request against the JWT providers of a rule. The framework asks every
/// method of the rule in turn; the rule's first JWT method answers for all of them and the
/// others are absent, so that every token is verified exactly once.
pub fn authenticate(
    providers: &[Provider],
    methods: &[AuthMethod],
    this: usize,
    request: &Request,
    host: &dyn Host,
) -> Credential {
    let rule_providers: Vec<usize> = methods
        .iter()
        .filter_map(|m| match m {
            AuthMethod::Jwt(i) => Some(*i),
            AuthMethod::ApiKey => None,
        })
        .collect();
    if rule_providers.first() != Some(&this) {
        return Credential::Absent;
    }
    let mut found: Vec<Found> = Vec::new();
    let mut scratch = Vec::new();
    for &index in &rule_providers {
        let Some(provider) = providers.get(index) else {
            continue;
        };
        scratch.clear();
        provider.extract(request, &mut scratch);
        // More than MAX_TOKENS is refused below; never collect (or compare) thousands.
        scratch.truncate(MAX_TOKENS + 1);
        for (token, location) in scratch.drain(..) {
            match found
                .iter_mut()
                .find(|f| f.location == location && f.token == token)
            {
                Some(f) => {
                    if !f.candidates.contains(&index) {
                        f.candidates.push(index);
                    }
                }
                None => found.push(Found {
                    token,
                    location,
                    candidates: vec![index],
                }),
            }
        }
    }
    if found.is_empty() {
        return Credential::Absent;
    }
    if found.len() > MAX_TOKENS {
        return Credential::Invalid(denial((
            Reason::JwtMalformed,
            "the request carries too many tokens",
        )));
    }
    let now = unix_seconds(host.now());
    let mut verified: Vec<(Arc<Verified>, &Found)> = Vec::with_capacity(found.len());
    for f in &found {
        match verify_found(providers, f, host, now) {
            Ok(v) => verified.push((v, f)),
            Err(failure) => return Credential::Invalid(denial(failure)),
        }
    }
    Credential::Valid(principal(providers, &verified))
}

fn verify_found(
    providers: &[Provider],
    found: &Found,
    host: &dyn Host,
    now: u64,
) -> Result<Arc<Verified>, Failure> {
    let candidates = || {
        found
            .candidates
            .iter()
            .filter_map(|&i| providers.get(i).map(|p| (i, p)))
    };
    let max_bytes = candidates()
        .map(|(_, p)| p.max_token_bytes)
        .min()
        .unwrap_or(0);
    if found.token.len() > max_bytes {
        return Err((Reason::JwtMalformed, "the token is too large"));
    }
    if found.token.is_empty() {
        return Err(token::MALFORMED);
    }
    let digest = cache::digest(&found.token);
    let single = found.candidates.len() == 1;
    if let [only] = found.candidates.as_slice() {
        // One provider: a cached verification needs no parsing.
        let Some(provider) = providers.get(*only) else {
            return Err((Reason::JwtIssuer, "the token issuer is not accepted"));
        };
        if let Some(hit) = provider.state.cache().get(&digest, now) {
            return Ok(hit);
        }
    }
    let parsed = token::parse(&found.token)?;
    let iss = parsed.claims.get("iss").and_then(Value::as_str);
    // Every provider that may accept the token is tried: those naming its (unverified) `iss`,
    // then those without `issuer`, each in the rule's order. The first that accepts it, from
    // its cache or by verifying, answers; so the answer never depends on which provider
    // happened to cache the token first. When none accepts it, the answer is the first
    // failure of a provider that could try the token (its algorithm and key fit), else the
    // first failure.
    let ordered = candidates()
        .filter(|(_, p)| p.rules.issuer.is_some() && p.rules.issuer.as_deref() == iss)
        .chain(candidates().filter(|(_, p)| p.rules.issuer.is_none()));
    let mut first_failure = None;
    for (index, provider) in ordered {
        if !single {
            if let Some(hit) = provider.state.cache().get(&digest, now) {
                return Ok(hit);
            }
        }
        match provider.verify(index, &parsed, host, now) {
            Ok(verified) => {
                let verified = Arc::new(verified);
                if provider.cache_entries > 0 {
                    provider
                        .state
                        .cache()
                        .insert(digest, Arc::clone(&verified), now);
                }
                return Ok(verified);
            }
            Err(failure) => {
                let replace = match first_failure {
                    None => true,
                    Some((reason, _)) => !could_try(reason) && could_try(failure.0),
                };
                if replace {
                    first_failure = Some(failure);
                }
            }
        }
    }
    Err(first_failure.unwrap_or((Reason::JwtIssuer, "the token issuer is not accepted")))
}

/// Whether a failure came from a provider that could try the token at all (not one whose
/// algorithms or keys do not fit it).
fn could_try(reason: Reason) -> bool {
    !matches!(reason, Reason::JwtAlgNotAllowed | Reason::JwtUnknownKid)
}

/// The principal of the first token, with the forwarding of every token applied.
fn principal(providers: &[Provider], verified: &[(Arc<Verified>, &Found)]) -> Principal {
    let mut principal = Principal::default();
    for (i, (v, found)) in verified.iter().enumerate() {
        if i == 0 {
            principal.client = v.client.clone();
            principal.scopes = v.scopes.clone();
        }
        for (name, value) in &v.upstream_set {
            if !principal.upstream_set.iter().any(|(n, _)| n == name) {
                principal.upstream_set.push((name.clone(), value.clone()));
            }
        }
        let forward = providers.get(v.provider).is_some_and(|p| p.forward);
        if forward {
            continue;
        }
        match &found.location {
            Location::Header(name) => {
                if !principal.upstream_remove.contains(name) {
                    principal.upstream_remove.push(name.clone());
                }
            }
            Location::Param(name) => {
                if !principal.remove_params.contains(name) {
                    principal.remove_params.push(name.clone());
                }
            }
            Location::Cookie(name) => {
                if !principal.remove_cookies.contains(name) {
                    principal.remove_cookies.push(name.clone());
                }
            }
        }
    }
    principal
}

#[cfg(test)]
mod tests;
