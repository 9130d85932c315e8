//! Configuration: the serde shape of the plugin configuration (unknown keys denied), and the
//! one compile step that validates it and builds the immutable [`Policy`].
//!
//! Keys of the config contract (DESIGN.md) whose feature is not built yet are accepted by the
//! shape only so that compilation can refuse them by path with "not supported yet": a key is
//! never silently ignored.

mod api_keys;
mod body;
mod error;
mod headers;
mod jwt;
mod rate_limits;
mod rules;
#[cfg(feature = "schema")]
pub mod schema;
mod screen;
mod validate;

pub use error::{ConfigError, JsonPath};

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::policy::{ClientIpSource, DefaultAction, LogDecisions, Mode, Policy};

/// More proxies than this in front of Envoy is a misconfiguration.
const MAX_TRUSTED_HOPS: u64 = 16;
const TRUSTED_HOPS: validate::Range =
    validate::Range::new(0, MAX_TRUSTED_HOPS, "proxies in front of Envoy");

/// The plugin configuration as Envoy or Istio pushes it (a JSON object).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub client_ip: RawClientIp,
    pub jwt_providers: Option<BTreeMap<String, jwt::RawProvider>>,
    pub api_keys: Option<api_keys::RawApiKeys>,
    pub rate_limits: Option<BTreeMap<String, rate_limits::RawRateLimit>>,
    /// Size of the shared bucket table (`{"slots": N}`).
    #[serde(default)]
    pub rate_limit_table: rate_limits::RawRateLimitTable,
    pub ip: Option<screen::RawIp>,
    #[serde(default)]
    pub rules: Vec<rules::RawRule>,
    /// What a request that no rule matches gets: `allow` (only the global `ip` lists and
    /// header hardening apply) or `deny` (404 `no_rule`).
    #[serde(default, rename = "default")]
    pub default_action: DefaultAction,
    #[serde(default)]
    pub headers: headers::RawHeaders,
    #[serde(default)]
    pub log: RawLog,
    /// Bytes of threat screening per request (headers and body; each detector call also
    /// counts 256 bytes). Past it, `threats: block` refuses with 413 `threat_scan_limit`
    /// and `threats: log` records the cut.
    #[cfg_attr(feature = "schema", schemars(range(min = 1024, max = 67108864)))]
    pub threat_scan_max_bytes: Option<u64>,
    /// Whether a CORS preflight must authenticate, for rules that do not say
    /// (`authenticate`, the default, or `allow`).
    #[serde(default)]
    pub cors_preflight: crate::policy::auth::CorsPreflight,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "ClientIp"))]
#[serde(deny_unknown_fields)]
pub struct RawClientIp {
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(max = 16)))]
    pub xff_trusted_hops: u32,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Log"))]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default)]
    pub decisions: LogDecisions,
}

const NOT_JSON_OBJECT: &str = "configuration must be a JSON object such as {} \
     (in Envoy, pass it as a google.protobuf.StringValue)";

/// Parses and compiles a plugin configuration into a policy, or says precisely why not.
pub fn compile(bytes: &[u8]) -> Result<Policy, ConfigError> {
    let raw = parse(bytes)?;
    compile_raw(raw)
}

/// Phase one: the serde shape. Errors carry the JSON path (`rules[0].match.prefix`).
pub fn parse(bytes: &[u8]) -> Result<RawConfig, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|_| {
        ConfigError::new(
            "",
            "configuration is not UTF-8 text; expected a JSON object",
        )
    })?;
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err(ConfigError::new(
            "",
            "configuration is empty; use {} for the defaults (header hardening only)",
        ));
    }
    if !text.starts_with('{') {
        return Err(ConfigError::new("", NOT_JSON_OBJECT));
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = tidy_path(&e.path().to_string());
        let inner = e.into_inner();
        let message = if inner.is_syntax() && !path.is_empty() {
            // serde_json reports a non-string where an enum is expected as a syntax error.
            "unexpected value; see the reference for the type this key takes".to_string()
        } else if inner.is_syntax() || inner.is_eof() {
            format!(
                "not valid JSON ({})",
                error::describe_serde_error(&inner.to_string())
            )
        } else {
            error::describe_serde_error(&inner.to_string())
        };
        ConfigError::new(path, message)
    })?;
    deserializer.end().map_err(|_| {
        ConfigError::new("", "not valid JSON (trailing characters after the object)")
    })?;
    Ok(raw)
}

/// serde_path_to_error writes `.` for the root and `?` for a place it could not name.
fn tidy_path(path: &str) -> String {
    let mut path = path;
    while let Some(rest) = path.strip_suffix(".?").or_else(|| path.strip_suffix('?')) {
        path = rest;
    }
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

/// The refusal of a configuration that must be refused, as Envoy's log would show it.
#[cfg(test)]
pub(crate) fn refusal(json: &str) -> String {
    match compile(json.as_bytes()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e.to_string(),
    }
}

/// Phase two: validate everything and build the policy.
pub fn compile_raw(raw: RawConfig) -> Result<Policy, ConfigError> {
    let root = JsonPath::root();
    let hardening = headers::compile(&raw.headers, &root.key("headers"))?;
    let jwt = jwt::compile(raw.jwt_providers.as_ref(), &root.key("jwt_providers"))?;
    let rate_limits = rate_limits::compile(raw.rate_limits.as_ref(), &root.key("rate_limits"))?;
    let rate_limit_table =
        rate_limits::compile_table(&raw.rate_limit_table, &root.key("rate_limit_table"))?;
    let api_keys = match &raw.api_keys {
        Some(block) => Some(api_keys::compile(
            block,
            &root.key("api_keys"),
            &rate_limits,
        )?),
        None => None,
    };
    let referents = rules::Referents {
        jwt_providers: &jwt.names,
        api_keys_configured: api_keys.is_some(),
        rate_limits: &rate_limits,
        cors_preflight: raw.cors_preflight,
    };
    let rules = rules::compile(&raw.rules, &root.key("rules"), &referents)?;
    let warnings = rules::shadow_warnings(&rules, raw.default_action);
    TRUSTED_HOPS.check(
        u64::from(raw.client_ip.xff_trusted_hops),
        &root.key("client_ip").key("xff_trusted_hops"),
    )?;
    let mut policy = Policy::new(raw.mode, raw.log.decisions, rules, hardening);
    policy.default_action = raw.default_action;
    policy.warnings = warnings;
    policy.client_ip = ClientIpSource {
        xff_trusted_hops: raw.client_ip.xff_trusted_hops,
    };
    if let Some(keys) = &api_keys {
        // A client cannot send its own client id upstream.
        policy
            .owned_request_headers
            .push(keys.client_header.clone());
    }
    policy.api_keys = api_keys;
    policy.rate_limits = rate_limits;
    policy.rate_limit_table = rate_limit_table;
    policy.jwt_providers = jwt.providers;
    policy.owned_request_headers.extend(jwt.owned_headers);
    if let Some(ip) = &raw.ip {
        policy.ip = screen::compile_ip(ip, &root.key("ip"))?;
    }
    if let Some(budget) = raw.threat_scan_max_bytes {
        policy.threat_scan_max_bytes =
            screen::compile_scan_budget(budget, &root.key("threat_scan_max_bytes"))?;
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_is_valid() {
        assert!(compile(b"{}").is_ok());
        assert!(compile(b"  {}\n").is_ok());
        assert!(compile("\u{feff}{}".as_bytes()).is_ok());
    }

    #[test]
    fn bad_configs_are_refused_with_their_path() {
        let table = [
            ("", "(root): configuration is empty"),
            ("   ", "(root): configuration is empty"),
            ("not json", "(root): configuration must be a JSON object"),
            ("[]", "(root): configuration must be a JSON object"),
            ("{", "(root): not valid JSON"),
            ("{} {}", "(root): not valid JSON (trailing"),
            ("{\"bogus\": 1}", "bogus: unknown field `bogus`"),
            ("{\"mode\": \"maybe\"}", "mode: unknown variant `maybe`"),
            ("{\"mode\": 3}", "mode: unexpected value"),
            (
                "{\"rules\": [{\"match\": {\"prefix\": 5}}]}",
                "rules[0].match.prefix: expected a string, found integer",
            ),
            (
                "{\"rules\": [{\"match\": {\"prefix\": \"/a\", \"regex\": \"x\"}}]}",
                "rules[0].match.regex: unknown field `regex`",
            ),
            (
                "{\"headers\": {\"profile\": \"lax\"}}",
                "headers.profile: unknown variant `lax`",
            ),
            (
                "{\"log\": {\"decisions\": \"some\"}}",
                "log.decisions: unknown variant `some`",
            ),
            (
                "{\"client_ip\": {\"xff_trusted_hops\": 17}}",
                "client_ip.xff_trusted_hops: expected at most 16",
            ),
            (
                "{\"client_ip\": {\"xff_trusted_hops\": -1}}",
                "client_ip.xff_trusted_hops: expected u32, found integer",
            ),
            (
                "{\"client_ip\": {\"hops\": 1}}",
                "client_ip.hops: unknown field",
            ),
            (
                "{\"cors_preflight\": \"bypass\"}",
                "cors_preflight: unknown variant `bypass`",
            ),
            (
                "{\"cors_preflight\": 1}",
                "cors_preflight: unexpected value",
            ),
            ("{\"cors_preflight\": null}", "cors_preflight: "),
            (
                "{\"default\": \"block\"}",
                "default: unknown variant `block`",
            ),
            ("{\"default\": true}", "default: unexpected value"),
        ];
        for (json, want) in table {
            let got = refusal(json);
            assert!(
                got.starts_with(want),
                "config {json:?}: got {got:?}, want prefix {want:?}"
            );
        }
    }

    #[test]
    fn refusals_never_echo_values() {
        let got = refusal("{\"rules\": [{\"name\": 12345678, \"match\": {\"prefix\": \"/\"}}]}");
        assert!(!got.contains("12345678"), "{got}");
    }
}
