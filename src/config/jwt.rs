//! `jwt_providers`: the serde shape of a provider and its compilation into
//! [`crate::policy::auth::jwt::Provider`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::validate::{self, header_name, HeaderUse, Range};
use super::{ConfigError, JsonPath};
use crate::policy::auth::jwt::alg::{Alg, KeyKind};
use crate::policy::auth::jwt::claims::ClaimRules;
use crate::policy::auth::jwt::keys::{KeySet, Strictness};
use crate::policy::auth::jwt::{
    ClaimHeader, HeaderSource, KeySource, Provider, ProviderState, RemoteJwks, Sources,
};

pub const MAX_PROVIDERS: usize = 16;
pub const DEFAULT_CLOCK_SKEW: u64 = 60;
pub const MAX_CLOCK_SKEW: u64 = 600;
pub const DEFAULT_CACHE_ENTRIES: u64 = 4096;
pub const MAX_CACHE_ENTRIES: u64 = 65_536;
pub const DEFAULT_MAX_TOKEN_BYTES: u64 = 8192;
const CLOCK_SKEW: Range = Range::new(0, MAX_CLOCK_SKEW, "seconds");
const MAX_LIFETIME: Range = Range::new(1, u64::MAX, "second");
const CACHE_ENTRIES: Range = Range::new(0, MAX_CACHE_ENTRIES, "entries");
const TOKEN_BYTES: Range = Range::new(512, 65_536, "bytes");
const JWKS_TIMEOUT: Range = Range::new(1, 60_000, "milliseconds");
const JWKS_REFRESH: Range = Range::new(1, 86_400, "seconds");
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_REFRESH_SECONDS: u64 = 600;

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub issuer: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub algorithms: Option<Vec<String>>,
    pub local_jwks: Option<Value>,
    pub remote_jwks: Option<RawRemoteJwks>,
    pub from_headers: Option<Vec<RawHeaderSource>>,
    #[cfg_attr(
        feature = "schema",
        schemars(inner(regex(pattern = super::validate::PARAM_NAME_PATTERN)))
    )]
    pub from_params: Option<Vec<String>>,
    #[cfg_attr(
        feature = "schema",
        schemars(inner(regex(pattern = super::validate::PARAM_NAME_PATTERN)))
    )]
    pub from_cookies: Option<Vec<String>>,
    #[cfg_attr(feature = "schema", schemars(range(max = 600)))]
    pub clock_skew_seconds: Option<u64>,
    pub require_expiration: Option<bool>,
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub max_lifetime_seconds: Option<u64>,
    pub forward: Option<bool>,
    pub claim_to_headers: Option<Vec<RawClaimHeader>>,
    #[cfg_attr(feature = "schema", schemars(regex(pattern = super::validate::HEADER_NAME_PATTERN)))]
    pub payload_header: Option<String>,
    #[cfg_attr(feature = "schema", schemars(range(max = 65_536)))]
    pub cache_entries: Option<u64>,
    #[cfg_attr(feature = "schema", schemars(range(min = 512, max = 65_536)))]
    pub max_token_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = super::validate::CLUSTER_NAME_PATTERN))
    )]
    pub cluster: String,
    pub authority: Option<String>,
    pub path: String,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 60_000)))]
    pub timeout_ms: Option<u64>,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 86_400)))]
    pub refresh_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawHeaderSource {
    #[cfg_attr(feature = "schema", schemars(regex(pattern = super::validate::HEADER_NAME_PATTERN)))]
    pub name: String,
    pub value_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawClaimHeader {
    pub claim: String,
    #[cfg_attr(feature = "schema", schemars(regex(pattern = super::validate::HEADER_NAME_PATTERN)))]
    pub header: String,
}

/// Compiled providers, in index order (their names sorted), and the request headers they set
/// towards the upstream (incoming copies are always removed).
pub struct Compiled {
    pub names: Vec<String>,
    pub providers: Vec<Provider>,
    pub owned_headers: Vec<String>,
}

pub fn compile(
    raw: Option<&BTreeMap<String, RawProvider>>,
    at: &JsonPath,
) -> Result<Compiled, ConfigError> {
    let mut compiled = Compiled {
        names: Vec::new(),
        providers: Vec::new(),
        owned_headers: Vec::new(),
    };
    let Some(raw) = raw else {
        return Ok(compiled);
    };
    if raw.len() > MAX_PROVIDERS {
        return Err(at.error(format!("at most {MAX_PROVIDERS} providers are supported")));
    }
    for (name, raw_provider) in raw {
        let here = at.key(name);
        let name = validate::name(name, validate::MAX_SHORT_NAME, &here)?;
        if name == "api_key" {
            return Err(here.error("`api_key` names the API-key method; choose another name"));
        }
        let provider = compile_provider(&name, raw_provider, &here)?;
        for header in provider
            .claim_to_headers
            .iter()
            .map(|c| &c.header)
            .chain(provider.payload_header.iter())
        {
            if !compiled.owned_headers.contains(header) {
                compiled.owned_headers.push(header.clone());
            }
        }
        compiled.names.push(name);
        compiled.providers.push(provider);
    }
    Ok(compiled)
}

fn compile_provider(name: &str, raw: &RawProvider, at: &JsonPath) -> Result<Provider, ConfigError> {
    if raw.issuer.as_deref() == Some("") {
        return Err(at.key("issuer").error(
            "expected the issuer (`iss`) exactly as in tokens; leave it out to accept any",
        ));
    }
    let audiences = audiences(raw.audiences.as_deref(), &at.key("audiences"))?;
    let keys = key_source(raw, at)?;
    let algorithms = algorithms(raw.algorithms.as_deref(), &keys, &at.key("algorithms"))?;
    let sources = sources(raw, at)?;
    let clock_skew_seconds = CLOCK_SKEW.check_or(
        raw.clock_skew_seconds,
        DEFAULT_CLOCK_SKEW,
        &at.key("clock_skew_seconds"),
    )?;
    if let Some(seconds) = raw.max_lifetime_seconds {
        MAX_LIFETIME
            .check(seconds, &at.key("max_lifetime_seconds"))
            .map_err(|e| e.with_fix("leave it out for no bound"))?;
    }
    let (claim_to_headers, payload_header) = upstream_headers(raw, at)?;
    let cache_entries = CACHE_ENTRIES
        .check_or(
            raw.cache_entries,
            DEFAULT_CACHE_ENTRIES,
            &at.key("cache_entries"),
        )
        .map_err(|e| e.with_fix("0 turns the cache off"))?;
    let max_token_bytes = TOKEN_BYTES.check_or(
        raw.max_token_bytes,
        DEFAULT_MAX_TOKEN_BYTES,
        &at.key("max_token_bytes"),
    )?;
    // Both are in range, so they fit.
    let cache_entries = usize::try_from(cache_entries).unwrap_or(usize::MAX);
    let max_token_bytes = usize::try_from(max_token_bytes).unwrap_or(usize::MAX);
    Ok(Provider {
        name: name.to_string(),
        rules: ClaimRules {
            issuer: raw.issuer.clone(),
            audiences,
            require_expiration: raw.require_expiration.unwrap_or(true),
            clock_skew_seconds,
            max_lifetime_seconds: raw.max_lifetime_seconds,
        },
        algorithms,
        keys,
        sources,
        forward: raw.forward.unwrap_or(false),
        claim_to_headers,
        payload_header,
        cache_entries,
        max_token_bytes,
        state: Arc::new(ProviderState::with_cache(cache_entries)),
    })
}

fn audiences(raw: Option<&[String]>, at: &JsonPath) -> Result<Vec<String>, ConfigError> {
    let Some(list) = raw else {
        return Ok(Vec::new());
    };
    if list.is_empty() {
        return Err(at.error("expected at least one audience; leave it out to not check `aud`"));
    }
    if let Some(i) = list.iter().position(String::is_empty) {
        return Err(at.index(i).error("expected a non-empty audience"));
    }
    Ok(list.to_vec())
}

fn key_source(raw: &RawProvider, at: &JsonPath) -> Result<KeySource, ConfigError> {
    match (&raw.local_jwks, &raw.remote_jwks) {
        (Some(_), Some(_)) => Err(at.error("give either `local_jwks` or `remote_jwks`, not both")),
        (None, None) => Err(at.error("expected a key source: `local_jwks` or `remote_jwks`")),
        (Some(jwks), None) => Ok(KeySource::Local(Arc::new(local_jwks(
            jwks,
            &at.key("local_jwks"),
        )?))),
        (None, Some(remote)) => Ok(KeySource::Remote(remote_jwks(
            remote,
            &at.key("remote_jwks"),
        )?)),
    }
}

/// `claim_to_headers` and `payload_header`: headers set towards the upstream, lower-cased,
/// each set by one source only.
fn upstream_headers(
    raw: &RawProvider,
    at: &JsonPath,
) -> Result<(Vec<ClaimHeader>, Option<String>), ConfigError> {
    let mut claim_to_headers: Vec<ClaimHeader> = Vec::new();
    for (i, mapping) in raw.claim_to_headers.iter().flatten().enumerate() {
        let here = at.key("claim_to_headers").index(i);
        if mapping.claim.is_empty()
            || mapping.claim.split('.').any(str::is_empty)
            || mapping.claim.len() > 256
        {
            return Err(here
                .key("claim")
                .error("expected a claim name or a dotted path such as `realm_access.roles`"));
        }
        let header = header_name(&mapping.header, HeaderUse::Upstream, &here.key("header"))?;
        if claim_to_headers.iter().any(|c| c.header == header) {
            return Err(here
                .key("header")
                .error("this header is already set by another claim"));
        }
        claim_to_headers.push(ClaimHeader {
            claim: mapping.claim.clone(),
            header,
        });
    }
    let payload_header = match &raw.payload_header {
        None => None,
        Some(header) => {
            let at = at.key("payload_header");
            let header = header_name(header, HeaderUse::Upstream, &at)?;
            if claim_to_headers.iter().any(|c| c.header == header) {
                return Err(at.error("this header is already set by a claim"));
            }
            Some(header)
        }
    };
    Ok((claim_to_headers, payload_header))
}

fn local_jwks(raw: &Value, at: &JsonPath) -> Result<KeySet, ConfigError> {
    let parsed;
    let jwks = match raw {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|_| at.error("expected a JWKS object or a string holding one"))?;
            &parsed
        }
        other => other,
    };
    KeySet::from_jwks(jwks, Strictness::Strict).map_err(|e| {
        let path = if e.path.is_empty() {
            at.clone()
        } else {
            JsonPath::root().key(&format!("{}.{}", at.as_str(), e.path))
        };
        path.error(e.message)
    })
}

fn remote_jwks(raw: &RawRemoteJwks, at: &JsonPath) -> Result<RemoteJwks, ConfigError> {
    let cluster = validate::cluster_name(&raw.cluster, "the JWKS", &at.key("cluster"))?;
    if !raw.path.starts_with('/') || raw.path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(at
            .key("path")
            .error("expected a path starting with '/' such as /.well-known/jwks.json"));
    }
    let authority = raw.authority.clone().unwrap_or_else(|| raw.cluster.clone());
    if authority.is_empty() || authority.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(at
            .key("authority")
            .error("expected a host name such as idp.example.com"));
    }
    let timeout_ms =
        JWKS_TIMEOUT.check_or(raw.timeout_ms, DEFAULT_TIMEOUT_MS, &at.key("timeout_ms"))?;
    let refresh_seconds = JWKS_REFRESH.check_or(
        raw.refresh_seconds,
        DEFAULT_REFRESH_SECONDS,
        &at.key("refresh_seconds"),
    )?;
    Ok(RemoteJwks {
        cluster,
        authority,
        path: raw.path.clone(),
        timeout_ms,
        refresh_seconds,
    })
}

fn algorithms(
    raw: Option<&[String]>,
    keys: &KeySource,
    at: &JsonPath,
) -> Result<Vec<Alg>, ConfigError> {
    let Some(names) = raw else {
        // Every algorithm the keys support; for a remote JWKS, every asymmetric one.
        return Ok(match keys {
            KeySource::Local(set) => Alg::ALL.into_iter().filter(|a| set.supports(*a)).collect(),
            KeySource::Remote(_) => Alg::ALL.into_iter().filter(|a| !a.is_hmac()).collect(),
        });
    };
    if names.is_empty() {
        return Err(at.error(
            "expected at least one algorithm; leave it out for every algorithm the keys support",
        ));
    }
    let mut algs = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let Some(alg) = Alg::parse(name) else {
            let message = if name.eq_ignore_ascii_case("none") {
                "`none` is never accepted: unsigned tokens prove nothing"
            } else {
                "unknown algorithm; expected RS256, RS384, RS512, PS256, PS384, PS512, ES256, \
                 ES384, ES512, EdDSA, HS256, HS384 or HS512"
            };
            return Err(at.index(i).error(message));
        };
        match keys {
            KeySource::Local(set) if !set.supports(alg) => {
                return Err(at
                    .index(i)
                    .error(format!("no key of `local_jwks` can verify {}", alg.name())));
            }
            KeySource::Remote(_) if alg.key_kind() == KeyKind::Hmac => {
                return Err(at
                    .index(i)
                    .error("HMAC secrets are not fetched from a remote JWKS; use `local_jwks`"));
            }
            _ => {}
        }
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    Ok(algs)
}

fn sources(raw: &RawProvider, at: &JsonPath) -> Result<Sources, ConfigError> {
    let mut sources = Sources::default();
    let none_given =
        raw.from_headers.is_none() && raw.from_params.is_none() && raw.from_cookies.is_none();
    if none_given {
        sources.headers.push(HeaderSource {
            name: "authorization".into(),
            prefix: Some("Bearer ".into()),
        });
        return Ok(sources);
    }
    for (i, header) in raw.from_headers.iter().flatten().enumerate() {
        let here = at.key("from_headers").index(i);
        let name = header_name(&header.name, HeaderUse::Source, &here.key("name"))?;
        if let Some(prefix) = &header.value_prefix {
            if prefix.is_empty()
                || prefix.len() > 64
                || prefix.bytes().any(|b| b.is_ascii_control())
            {
                return Err(here.key("value_prefix").error(
                    "expected a prefix such as \"Bearer \"; leave it out for the whole value",
                ));
            }
        }
        sources.headers.push(HeaderSource {
            name,
            prefix: header.value_prefix.clone(),
        });
    }
    for (i, name) in raw.from_params.iter().flatten().enumerate() {
        let name = validate::param_name(name, &at.key("from_params").index(i))?;
        sources.params.push(name);
    }
    for (i, name) in raw.from_cookies.iter().flatten().enumerate() {
        let name = validate::cookie_name(name, &at.key("from_cookies").index(i))?;
        sources.cookies.push(name);
    }
    if sources.headers.is_empty() && sources.params.is_empty() && sources.cookies.is_empty() {
        return Err(
            at.error("the token sources are all empty: the provider could never see a token")
        );
    }
    Ok(sources)
}
