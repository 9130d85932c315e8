//! `jwt_providers`: the serde shape of a provider and its compilation into
//! [`crate::policy::auth::jwt::Provider`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

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
pub const DEFAULT_CACHE_ENTRIES: usize = 4096;
pub const MAX_CACHE_ENTRIES: usize = 65_536;
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_REFRESH_SECONDS: u64 = 600;
/// Whether `remote_jwks` is built in this build (else it is refused as not supported).
const REMOTE_JWKS_SUPPORTED: bool = true;

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
    pub from_params: Option<Vec<String>>,
    pub from_cookies: Option<Vec<String>>,
    pub clock_skew_seconds: Option<u64>,
    pub require_expiration: Option<bool>,
    pub max_lifetime_seconds: Option<u64>,
    pub forward: Option<bool>,
    pub claim_to_headers: Option<Vec<RawClaimHeader>>,
    pub payload_header: Option<String>,
    pub cache_entries: Option<usize>,
    pub max_token_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    pub cluster: String,
    pub authority: Option<String>,
    pub path: String,
    pub timeout_ms: Option<u64>,
    pub refresh_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawHeaderSource {
    pub name: String,
    pub value_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawClaimHeader {
    pub claim: String,
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
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name || name == "api_key" {
            return Err(here.error(
                "a provider name is 1 to 64 letters, digits, '-', '_' or '.', and not `api_key`",
            ));
        }
        let provider = compile_provider(name, raw_provider, &here)?;
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
        compiled.names.push(name.clone());
        compiled.providers.push(provider);
    }
    Ok(compiled)
}

fn compile_provider(name: &str, raw: &RawProvider, at: &JsonPath) -> Result<Provider, ConfigError> {
    if let Some(issuer) = &raw.issuer {
        if issuer.is_empty() {
            return Err(at.key("issuer").error(
                "expected the issuer (`iss`) exactly as in tokens; leave it out to accept any",
            ));
        }
    }
    let audiences = match &raw.audiences {
        None => Vec::new(),
        Some(list) => {
            if list.is_empty() {
                return Err(at
                    .key("audiences")
                    .error("expected at least one audience; leave it out to not check `aud`"));
            }
            for (i, aud) in list.iter().enumerate() {
                if aud.is_empty() {
                    return Err(at
                        .key("audiences")
                        .index(i)
                        .error("expected a non-empty audience"));
                }
            }
            list.clone()
        }
    };
    let keys = match (&raw.local_jwks, &raw.remote_jwks) {
        (Some(_), Some(_)) => {
            return Err(at.error("give either `local_jwks` or `remote_jwks`, not both"))
        }
        (None, None) => {
            return Err(at.error("expected a key source: `local_jwks` or `remote_jwks`"))
        }
        (Some(jwks), None) => KeySource::Local(Arc::new(local_jwks(jwks, &at.key("local_jwks"))?)),
        (None, Some(remote)) => {
            let at = at.key("remote_jwks");
            if !REMOTE_JWKS_SUPPORTED {
                return Err(ConfigError::not_supported(at.as_str()));
            }
            KeySource::Remote(remote_jwks(remote, &at)?)
        }
    };
    let algorithms = algorithms(raw.algorithms.as_deref(), &keys, &at.key("algorithms"))?;
    let sources = sources(raw, at)?;
    let clock_skew_seconds = raw.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW);
    if clock_skew_seconds > MAX_CLOCK_SKEW {
        return Err(at
            .key("clock_skew_seconds")
            .error(format!("expected at most {MAX_CLOCK_SKEW} seconds")));
    }
    if raw.max_lifetime_seconds == Some(0) {
        return Err(at
            .key("max_lifetime_seconds")
            .error("expected a positive number of seconds; leave it out for no bound"));
    }
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
        check_upstream_header(&mapping.header, &here.key("header"))?;
        if claim_to_headers.iter().any(|c| c.header == mapping.header) {
            return Err(here
                .key("header")
                .error("this header is already set by another claim"));
        }
        claim_to_headers.push(ClaimHeader {
            claim: mapping.claim.clone(),
            header: mapping.header.clone(),
        });
    }
    if let Some(header) = &raw.payload_header {
        check_upstream_header(header, &at.key("payload_header"))?;
        if claim_to_headers.iter().any(|c| &c.header == header) {
            return Err(at
                .key("payload_header")
                .error("this header is already set by a claim"));
        }
    }
    let cache_entries = raw.cache_entries.unwrap_or(DEFAULT_CACHE_ENTRIES);
    if cache_entries > MAX_CACHE_ENTRIES {
        return Err(at.key("cache_entries").error(format!(
            "expected at most {MAX_CACHE_ENTRIES}; 0 turns the cache off"
        )));
    }
    let max_token_bytes = raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    if !(512..=65_536).contains(&max_token_bytes) {
        return Err(at
            .key("max_token_bytes")
            .error("expected 512 to 65536 bytes"));
    }
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
        payload_header: raw.payload_header.clone(),
        cache_entries,
        max_token_bytes,
        state: Arc::new(ProviderState::with_cache(cache_entries)),
    })
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
    if raw.cluster.is_empty() || raw.cluster.len() > 256 {
        return Err(at
            .key("cluster")
            .error("expected the name of the Envoy cluster that serves the JWKS"));
    }
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
    let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(at
            .key("timeout_ms")
            .error("expected 1 to 60000 milliseconds"));
    }
    let refresh_seconds = raw.refresh_seconds.unwrap_or(DEFAULT_REFRESH_SECONDS);
    if !(1..=86_400).contains(&refresh_seconds) {
        return Err(at
            .key("refresh_seconds")
            .error("expected 1 to 86400 seconds"));
    }
    Ok(RemoteJwks {
        cluster: raw.cluster.clone(),
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
        check_header_name(&header.name, &here.key("name"))?;
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
            name: header.name.clone(),
            prefix: header.value_prefix.clone(),
        });
    }
    for (key, list, target) in [
        ("from_params", &raw.from_params, &mut sources.params),
        ("from_cookies", &raw.from_cookies, &mut sources.cookies),
    ] {
        for (i, name) in list.iter().flatten().enumerate() {
            let valid = !name.is_empty()
                && name.len() <= 128
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
            if !valid {
                return Err(at
                    .key(key)
                    .index(i)
                    .error("expected a name of letters, digits, '-', '_', '.' or '~'"));
            }
            target.push(name.clone());
        }
    }
    if sources.headers.is_empty() && sources.params.is_empty() && sources.cookies.is_empty() {
        return Err(
            at.error("the token sources are all empty: the provider could never see a token")
        );
    }
    Ok(sources)
}

fn check_header_name(name: &str, at: &JsonPath) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(at.error("expected a lower-case header name such as `authorization`"))
    }
}

/// Headers api-guard may set towards the upstream from claims.
fn check_upstream_header(name: &str, at: &JsonPath) -> Result<(), ConfigError> {
    check_header_name(name, at)?;
    const RESERVED: [&str; 12] = [
        "authorization",
        "cookie",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "keep-alive",
        "proxy-authorization",
        "x-forwarded-for",
    ];
    if RESERVED.contains(&name) {
        return Err(at.error(
            "this header carries the request itself; choose a dedicated name such as `x-jwt-sub`",
        ));
    }
    Ok(())
}
