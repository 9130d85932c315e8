//! `rate_limits` (named token-bucket policies) and `rate_limit_table` (the shared bucket
//! table's size).

use std::collections::BTreeMap;

use std::time::Duration;

use serde::Deserialize;

use super::validate::{self, Range};
use super::{ConfigError, JsonPath};
use crate::policy::limit::global::{FailureMode, GlobalLimit};
use crate::policy::limit::table::{SlotTable, MAX_SLOTS};
use crate::policy::limit::RateLimitPolicy;

/// More tokens than this per window, or in a burst, is a configuration mistake.
const MAX_REQUESTS: u64 = 1_000_000_000;
/// Fewer slots than this cannot hold the clients of even a small test.
const MIN_SLOTS: u32 = 64;
const REQUESTS: Range = Range::new(1, MAX_REQUESTS, "requests");
const SLOTS: Range = Range::new(MIN_SLOTS as u64, MAX_SLOTS as u64, "slots");

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1_000_000_000)))]
    pub requests: u64,
    pub per: Per,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1_000_000_000)))]
    pub burst: Option<u64>,
    /// Send `RateLimit-Policy`/`RateLimit` on allowed responses (default true).
    #[serde(default = "yes")]
    pub headers: bool,
    /// Count across replicas with a rate limit service (Envoy's RLS protocol).
    pub global: Option<RawGlobal>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = super::validate::CLUSTER_NAME_PATTERN))
    )]
    /// The Envoy cluster serving `envoy.service.ratelimit.v3.RateLimitService` (HTTP/2).
    pub cluster: String,
    /// The service's domain for this policy.
    pub domain: String,
    /// How long to wait for the answer (default 100 ms).
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 10_000)))]
    pub timeout_ms: Option<u64>,
    /// When the service does not answer in time: `allow` (default) or `deny`.
    #[serde(default)]
    pub failure_mode: RawFailureMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RawFailureMode {
    #[default]
    Allow,
    Deny,
}

/// The default wait for the service, and the longest accepted.
const DEFAULT_TIMEOUT_MS: u64 = 100;
const MAX_TIMEOUT_MS: u64 = 10_000;
const TIMEOUT: Range = Range::new(1, MAX_TIMEOUT_MS, "milliseconds");

fn compile_global(raw: &RawGlobal, at: &JsonPath) -> Result<GlobalLimit, ConfigError> {
    let cluster =
        validate::cluster_name(&raw.cluster, "the rate limit service", &at.key("cluster"))?;
    if raw.domain.is_empty() || raw.domain.len() > 256 {
        return Err(at
            .key("domain")
            .error("expected the rate limit service's domain (1 to 256 characters)"));
    }
    let timeout_ms = TIMEOUT.check_or(raw.timeout_ms, DEFAULT_TIMEOUT_MS, &at.key("timeout_ms"))?;
    Ok(GlobalLimit {
        cluster,
        domain: raw.domain.clone(),
        timeout: Duration::from_millis(timeout_ms),
        failure_mode: match raw.failure_mode {
            RawFailureMode::Allow => FailureMode::Allow,
            RawFailureMode::Deny => FailureMode::Deny,
        },
    })
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Per {
    Second,
    Minute,
    Hour,
    Day,
}

impl Per {
    fn seconds(self) -> u64 {
        match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3_600,
            Per::Day => 86_400,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRateLimitTable {
    #[cfg_attr(feature = "schema", schemars(range(min = 64, max = 1_048_576)))]
    pub slots: Option<u64>,
}

pub fn compile(
    raw: Option<&BTreeMap<String, RawRateLimit>>,
    at: &JsonPath,
) -> Result<Vec<RateLimitPolicy>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut policies = Vec::with_capacity(raw.len());
    for (name, entry) in raw {
        let at = at.key(name);
        let name = validate::name(name, validate::MAX_SHORT_NAME, &at)?;
        let requests = count(entry.requests, &at.key("requests"))?;
        let burst = match entry.burst {
            Some(burst) => count(burst, &at.key("burst"))?,
            None => requests,
        };
        policies.push(RateLimitPolicy {
            name,
            requests,
            per_seconds: entry.per.seconds(),
            burst,
            quota_headers: entry.headers,
            global: entry
                .global
                .as_ref()
                .map(|g| compile_global(g, &at.key("global")))
                .transpose()?,
        });
    }
    Ok(policies)
}

fn count(value: u64, at: &JsonPath) -> Result<u64, ConfigError> {
    REQUESTS
        .check(value, at)
        .map_err(|e| e.with_fix("to stop limiting, remove the policy from the rule"))
}

pub fn compile_table(raw: &RawRateLimitTable, at: &JsonPath) -> Result<SlotTable, ConfigError> {
    let Some(slots) = raw.slots else {
        return Ok(SlotTable::default());
    };
    let slots = SLOTS.check(slots, &at.key("slots"))?;
    // In range, so it fits.
    Ok(SlotTable {
        slots: u32::try_from(slots).unwrap_or(MAX_SLOTS),
    })
}

/// The index of a named policy, or a refusal naming the path that referred to it.
pub fn resolve(
    policies: &[RateLimitPolicy],
    name: &str,
    at: &JsonPath,
) -> Result<usize, ConfigError> {
    policies
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| at.error("unknown policy: name a key of the top-level `rate_limits`"))
}

#[cfg(test)]
mod tests {
    use crate::config::{compile, refusal};

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn bad_rate_limits_and_keys_are_refused_with_their_path() {
        let key = |extra: &str| {
            format!(
                r#"{{"rate_limits":{{"std":{{"requests":1,"per":"second"}}}},
                    "api_keys":{{"clients":[{{"id":"a","sha256":"{SHA}"{extra}}}]}}}}"#
            )
        };
        let table: Vec<(String, &str)> = vec![
            (r#"{"rate_limits":{"s":{"requests":0,"per":"minute"}}}"#.into(), "rate_limits.s.requests: expected 1 to 1000000000 requests; to stop limiting"),
            (r#"{"rate_limits":{"s":{"requests":-5,"per":"minute"}}}"#.into(), "rate_limits.s.requests: expected u64, found integer"),
            (r#"{"rate_limits":{"s":{"requests":1.5,"per":"minute"}}}"#.into(), "rate_limits.s.requests: expected u64"),
            (r#"{"rate_limits":{"s":{"requests":10,"per":"minute","burst":0}}}"#.into(), "rate_limits.s.burst: expected 1 to 1000000000 requests; to stop limiting"),
            (r#"{"rate_limits":{"s":{"requests":10,"per":"fortnight"}}}"#.into(), "rate_limits.s.per: unknown variant `fortnight`"),
            (r#"{"rate_limits":{"s":{"requests":10}}}"#.into(), "rate_limits.s: missing field `per`"),
            (r#"{"rate_limits":{"s":{"requests":10,"per":"minute","window":1}}}"#.into(), "rate_limits.s.window: unknown field"),
            (r#"{"rate_limits":{"a b":{"requests":10,"per":"minute"}}}"#.into(), "rate_limits.a b: expected 1 to 64 characters of letters"),
            (r#"{"rate_limits":{"g":{"requests":10,"per":"minute","global":{"cluster":"rls"}}}}"#.into(), "rate_limits.g.global: missing field `domain`"),
            (r#"{"rate_limits":{"g":{"requests":10,"per":"minute","global":{"cluster":"","domain":"d"}}}}"#.into(), "rate_limits.g.global.cluster: expected the name of the Envoy cluster that serves the rate limit service"),
            (r#"{"rate_limits":{"g":{"requests":10,"per":"minute","global":{"cluster":"a b","domain":"d"}}}}"#.into(), "rate_limits.g.global.cluster: expected the name of the Envoy cluster that serves the rate limit service"),
            (r#"{"rate_limits":{"g":{"requests":10,"per":"minute","global":{"cluster":"rls","domain":""}}}}"#.into(), "rate_limits.g.global.domain: expected the rate limit service's domain"),
            (r#"{"rate_limits":{"g":{"requests":10,"per":"minute","global":{"cluster":"rls","domain":"d","timeout_ms":0}}}}"#.into(), "rate_limits.g.global.timeout_ms: expected 1 to 10000 milliseconds"),
            (r#"{"rate_limits":{"g":{"requests":10,"per":"minute","global":{"cluster":"rls","domain":"d","timeout_ms":10001}}}}"#.into(), "rate_limits.g.global.timeout_ms: expected 1 to 10000 milliseconds"),
            (r#"{"rate_limits":{"g":{"requests":10,"per":"minute","global":{"cluster":"rls","domain":"d","failure_mode":"open"}}}}"#.into(), "rate_limits.g.global.failure_mode: unknown variant `open`"),
            (r#"{"rate_limits":{"g":{"requests":10,"per":"minute","global":{"cluster":"rls","domain":"d","descriptors":[]}}}}"#.into(), "rate_limits.g.global.descriptors: unknown field"),
            (r#"{"rate_limits":{"s":{"requests":10,"per":"minute"}},"rules":[{"match":{"prefix":"/"},"rate_limit":"gold"}]}"#.into(), "rules[0].rate_limit: unknown policy"),
            (r#"{"rules":[{"match":{"prefix":"/"},"rate_limit":"gold"}]}"#.into(), "rules[0].rate_limit: unknown policy"),
            (r#"{"rate_limit_table":{"slots":8}}"#.into(), "rate_limit_table.slots: expected 64 to 1048576 slots"),
            (r#"{"rate_limit_table":{"slots":99999999}}"#.into(), "rate_limit_table.slots: expected 64 to 1048576 slots"),
            (r#"{"rate_limit_table":{"size":1000}}"#.into(), "rate_limit_table.size: unknown field"),
            (key(r#","rate_limit":"gold""#), "api_keys.clients[0].rate_limit: unknown policy"),
            (key(r#","not_after":"2027-01-01""#), "api_keys.clients[0].not_after: expected an RFC 3339"),
            (key(r#","scopes":["a b"]"#), "api_keys.clients[0].scopes[0]: expected a scope token"),
            (key(r#","key":"plain""#), "api_keys.clients[0].key: unknown field"),
            (r#"{"api_keys":{"clients":[{"id":"a","sha256":"abc"}]}}"#.into(), "api_keys.clients[0].sha256: expected 64 lowercase hex"),
            (format!(r#"{{"api_keys":{{"clients":[{{"id":"a","sha256":"{}"}}]}}}}"#, SHA.to_uppercase()), "api_keys.clients[0].sha256: expected 64 lowercase hex"),
            (format!(r#"{{"api_keys":{{"clients":[{{"id":"a","sha256":"{SHA}"}},{{"id":"a","sha256":"{}"}}]}}}}"#, SHA.replace('e', "f")), "api_keys.clients[1].id: duplicate client id"),
            (format!(r#"{{"api_keys":{{"clients":[{{"id":"a","sha256":"{SHA}"}},{{"id":"b","sha256":"{SHA}"}}]}}}}"#), "api_keys.clients[1].sha256: the same key digest as clients[0]"),
            (format!(r#"{{"api_keys":{{"clients":[{{"id":"","sha256":"{SHA}"}}]}}}}"#), "api_keys.clients[0].id: expected 1 to 128"),
            (r#"{"api_keys":{}}"#.into(), "api_keys: missing field `clients`"),
            (r#"{"api_keys":{"from_headers":[],"clients":[]}}"#.into(), "api_keys.from_headers: expected at least one key source"),
            (r#"{"api_keys":{"from_headers":["x key"],"clients":[]}}"#.into(), "api_keys.from_headers[0]: expected a header name"),
            (r#"{"api_keys":{"from_params":["a=b"],"clients":[]}}"#.into(), "api_keys.from_params[0]: expected a query parameter name"),
            (r#"{"api_keys":{"client_header":"x-api-key","clients":[]}}"#.into(), "api_keys.client_header: the client id header cannot also be a key header"),
            (r#"{"api_keys":{"client_header":"host","clients":[]}}"#.into(), "api_keys.client_header: this header is managed"),
        ];
        for (json, want) in table {
            let got = refusal(&json);
            assert!(
                got.starts_with(want),
                "config {json}: got {got:?}, want prefix {want:?}"
            );
        }
    }

    #[test]
    fn refusals_never_echo_digests() {
        let got = refusal(&format!(
            r#"{{"api_keys":{{"clients":[{{"id":"a","sha256":"{SHA}"}},{{"id":"b","sha256":"{SHA}"}}]}}}}"#
        ));
        assert!(!got.contains(&SHA[..16]), "{got}");
    }

    #[test]
    fn defaults() {
        let policy = compile(
            format!(
                r#"{{"rate_limits":{{"s":{{"requests":100,"per":"minute"}},
                     "b":{{"requests":10,"per":"second","burst":50,"headers":false}}}},
                     "api_keys":{{"clients":[{{"id":"a","sha256":"{SHA}","rate_limit":"b"}}]}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        let keys = policy.api_keys.as_ref().unwrap();
        assert_eq!(keys.from_headers, vec!["x-api-key"]);
        assert_eq!(keys.client_header, "x-api-client");
        assert!(!keys.forward);
        assert!(policy
            .owned_request_headers
            .contains(&"x-api-client".to_string()));
        let names: Vec<&str> = policy.rate_limits.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["b", "s"]);
        assert_eq!(keys.clients[0].rate_limit, Some(0));
        let s = &policy.rate_limits[1];
        assert_eq!(
            (s.requests, s.per_seconds, s.burst, s.quota_headers),
            (100, 60, 100, true)
        );
        let b = &policy.rate_limits[0];
        assert_eq!(
            (b.requests, b.per_seconds, b.burst, b.quota_headers),
            (10, 1, 50, false)
        );
        assert_eq!(policy.rate_limit_table.slots, 16_384);
        assert_eq!(s.global, None);
    }

    #[test]
    fn global_defaults_and_settings() {
        use crate::policy::limit::global::{FailureMode, GlobalLimit};
        use std::time::Duration;
        let policy = compile(
            br#"{"rate_limits":{
                "a":{"requests":100,"per":"minute","global":{"cluster":"rls","domain":"api"}},
                "b":{"requests":5,"per":"hour","global":{"cluster":"outbound|8081||ratelimit.svc",
                     "domain":"edge","timeout_ms":250,"failure_mode":"deny"}}}}"#,
        )
        .unwrap();
        assert_eq!(
            policy.rate_limits[0].global,
            Some(GlobalLimit {
                cluster: "rls".into(),
                domain: "api".into(),
                timeout: Duration::from_millis(100),
                failure_mode: FailureMode::Allow,
            })
        );
        assert_eq!(
            policy.rate_limits[1].global,
            Some(GlobalLimit {
                cluster: "outbound|8081||ratelimit.svc".into(),
                domain: "edge".into(),
                timeout: Duration::from_millis(250),
                failure_mode: FailureMode::Deny,
            })
        );
    }
}
