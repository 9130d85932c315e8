//! One rule per kind of value a configuration names (header, query parameter and cookie
//! names, names of rules, policies, providers and clients, scope tokens, numeric ranges), so
//! the same kind of value is accepted, normalised and refused the same way wherever it
//! appears, with one error style: the JSON path, what is expected, and the fix.

use super::{ConfigError, JsonPath};
use crate::policy::http::is_token_byte;

/// The longest header, query parameter or cookie name accepted.
pub const MAX_NAME_BYTES: usize = 128;

/// [`header_name`], [`param_name`] (and [`cookie_name`]) and [`name`] as JSON Schema
/// patterns; the reserved header names are left to the compile step.
#[cfg(any(feature = "schema", test))]
pub const HEADER_NAME_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$";
#[cfg(any(feature = "schema", test))]
pub const PARAM_NAME_PATTERN: &str = r"^[A-Za-z0-9._~-]{1,128}$";
#[cfg(any(feature = "schema", test))]
pub const LONG_NAME_PATTERN: &str = r"^[A-Za-z0-9_.:-]{1,128}$";
#[cfg(any(feature = "schema", test))]
pub const CLUSTER_NAME_PATTERN: &str = r"^[!-~]{1,256}$";

/// Headers HTTP itself manages (framing and hop-by-hop): api-guard never reads a
/// credential from, sets or removes them.
const HTTP_MANAGED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
];

/// Response headers Envoy writes itself, besides those HTTP manages.
const ENVOY_RESPONSE: &[&str] = &["content-type", "date"];

/// Request headers that carry the request or its caller: never overwritten towards the
/// upstream with a value api-guard computes.
const REQUEST_CARRIERS: &[&str] = &[
    "authorization",
    "cookie",
    "content-type",
    "proxy-authorization",
    "x-forwarded-for",
];

const HTTP_MANAGED_FIX: &str = "this header is managed by HTTP itself; choose another name";

/// What api-guard does with a configured header, which decides the names it may not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderUse {
    /// Set or removed on responses (`headers.response_set`, `headers.response_remove`).
    Response,
    /// Read for a credential (`api_keys.from_headers`, `jwt_providers.*.from_headers`).
    Source,
    /// Set towards the upstream (`client_header`, `claim_to_headers`, `payload_header`).
    Upstream,
}

/// A header name: an RFC 9110 token of at most [`MAX_NAME_BYTES`], lower-cased (Envoy
/// compares header names without regard to case and hands them over in lower case), and not
/// one that `role` may not take.
pub fn header_name(name: &str, role: HeaderUse, at: &JsonPath) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    if lower.is_empty() || lower.len() > MAX_NAME_BYTES || !lower.bytes().all(is_token_byte) {
        return Err(at.error(format!(
            "expected a header name of 1 to {MAX_NAME_BYTES} letters, digits and !#$%&'*+-.^_`|~"
        )));
    }
    let refused = match role {
        HeaderUse::Response if HTTP_MANAGED.contains(&lower.as_str()) => {
            Some("this header is managed by Envoy and cannot be changed here")
        }
        HeaderUse::Response if ENVOY_RESPONSE.contains(&lower.as_str()) => {
            Some("this header is managed by Envoy and cannot be changed here")
        }
        HeaderUse::Source | HeaderUse::Upstream if HTTP_MANAGED.contains(&lower.as_str()) => {
            Some(HTTP_MANAGED_FIX)
        }
        HeaderUse::Upstream if REQUEST_CARRIERS.contains(&lower.as_str()) => Some(
            "this header carries the request itself; choose a dedicated name such as `x-jwt-sub`",
        ),
        _ => None,
    };
    match refused {
        Some(fix) => Err(at.error(fix)),
        None => Ok(lower),
    }
}

/// A header value api-guard writes: visible ASCII, spaces and tabs.
pub fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
}

/// A query parameter name, as written unescaped: 1 to [`MAX_NAME_BYTES`] URL-unreserved
/// characters (letters, digits, `-`, `_`, `.`, `~`).
pub fn param_name(name: &str, at: &JsonPath) -> Result<String, ConfigError> {
    unreserved_name(name, at, "a query parameter name")
}

/// A cookie name: the same characters as a query parameter name.
pub fn cookie_name(name: &str, at: &JsonPath) -> Result<String, ConfigError> {
    unreserved_name(name, at, "a cookie name")
}

fn unreserved_name(name: &str, at: &JsonPath, what: &str) -> Result<String, ConfigError> {
    if !is_made_of(name, MAX_NAME_BYTES, b"-_.~") {
        return Err(at.error(format!(
            "expected {what} of 1 to {MAX_NAME_BYTES} letters, digits, '-', '_', '.' or '~'"
        )));
    }
    Ok(name.to_string())
}

/// Whether `text` is 1 to `max` ASCII letters, digits and `extra` bytes.
fn is_made_of(text: &str, max: usize, extra: &[u8]) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// The longest rule name or API client id.
pub const MAX_LONG_NAME: usize = 128;
/// The longest rate limit policy or JWT provider name.
pub const MAX_SHORT_NAME: usize = 64;

/// A name the configuration gives something (a rule, a rate limit policy, a JWT provider, an
/// API client): 1 to `max` letters, digits, `-`, `_`, `.` or `:`.
pub fn name(name: &str, max: usize, at: &JsonPath) -> Result<String, ConfigError> {
    if !is_made_of(name, max, b"-_.:") {
        return Err(at.error(format!(
            "expected 1 to {max} characters of letters, digits, '-', '_', '.' or ':'"
        )));
    }
    Ok(name.to_string())
}

/// The name of an Envoy cluster api-guard calls (`what` it serves): 1 to 256 visible ASCII
/// characters. Envoy refuses an unknown cluster only per call, so at least refuse here what
/// no cluster can be named.
pub fn cluster_name(name: &str, what: &str, at: &JsonPath) -> Result<String, ConfigError> {
    if name.is_empty() || name.len() > 256 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(at.error(format!(
            "expected the name of the Envoy cluster that serves {what} \
             (1 to 256 visible ASCII characters)"
        )));
    }
    Ok(name.to_string())
}

/// Scope tokens (RFC 6749: printable ASCII except space, `"` and `\`), duplicates dropped.
pub fn scopes(raw: Option<&[String]>, at: &JsonPath) -> Result<Vec<String>, ConfigError> {
    let mut scopes: Vec<String> = Vec::new();
    for (i, scope) in raw.unwrap_or_default().iter().enumerate() {
        let valid = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\');
        if !valid {
            return Err(at.index(i).error(
                "expected a scope token (printable ASCII without spaces, quotes or backslashes)",
            ));
        }
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    Ok(scopes)
}

/// The accepted values of a numeric key, and what they count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: u64,
    pub max: u64,
    pub unit: &'static str,
}

impl Range {
    pub const fn new(min: u64, max: u64, unit: &'static str) -> Self {
        Range { min, max, unit }
    }

    /// `value` if within `min..=max`, else "expected MIN to MAX UNIT" ("at most MAX" when
    /// the range starts at 0, "at least MIN" when it has no upper end).
    pub fn check(&self, value: u64, at: &JsonPath) -> Result<u64, ConfigError> {
        let Range { min, max, unit } = *self;
        if (min..=max).contains(&value) {
            return Ok(value);
        }
        let expected = if max == u64::MAX {
            format!("expected at least {min} {unit}")
        } else if min == 0 {
            format!("expected at most {max} {unit}")
        } else {
            format!("expected {min} to {max} {unit}")
        };
        Err(at.error(expected))
    }

    /// [`Range::check`] for a key that may be left out, which then takes `default`.
    pub fn check_or(
        &self,
        value: Option<u64>,
        default: u64,
        at: &JsonPath,
    ) -> Result<u64, ConfigError> {
        self.check(value.unwrap_or(default), at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_lower_cased_tokens_outside_the_reserved_lists() {
        let at = JsonPath::root().key("h");
        let ok = |name, role| header_name(name, role, &at).map_err(|e| e.message);
        assert_eq!(ok("X-Api-Key", HeaderUse::Source), Ok("x-api-key".into()));
        assert_eq!(ok("X-Jwt-Sub", HeaderUse::Upstream), Ok("x-jwt-sub".into()));
        assert_eq!(
            ok("Authorization", HeaderUse::Source),
            Ok("authorization".into())
        );
        assert!(ok("Content-Type", HeaderUse::Response).is_err());
        for (name, role) in [
            ("", HeaderUse::Source),
            ("a b", HeaderUse::Source),
            ("a:b", HeaderUse::Upstream),
            (&*"x".repeat(MAX_NAME_BYTES + 1), HeaderUse::Response),
            ("Host", HeaderUse::Source),
            ("Keep-Alive", HeaderUse::Upstream),
            ("Cookie", HeaderUse::Upstream),
            ("DATE", HeaderUse::Response),
        ] {
            assert!(header_name(name, role, &at).is_err(), "{name:?} {role:?}");
        }
        assert!(header_name(&"x".repeat(MAX_NAME_BYTES), HeaderUse::Source, &at).is_ok());
    }

    #[test]
    fn param_and_cookie_names_share_one_rule() {
        let at = JsonPath::root().key("p");
        for name in ["access_token", "a.b-c~d", &"p".repeat(MAX_NAME_BYTES)] {
            assert!(param_name(name, &at).is_ok(), "{name}");
            assert!(cookie_name(name, &at).is_ok(), "{name}");
        }
        for name in ["", "a=b", "a b", "a%20", &"p".repeat(MAX_NAME_BYTES + 1)] {
            assert!(param_name(name, &at).is_err(), "{name}");
            assert!(cookie_name(name, &at).is_err(), "{name}");
        }
    }

    #[test]
    fn schema_patterns_state_the_same_lengths() {
        assert!(HEADER_NAME_PATTERN.ends_with(&format!("]{{1,{MAX_NAME_BYTES}}}$")));
        assert!(PARAM_NAME_PATTERN.ends_with(&format!("]{{1,{MAX_NAME_BYTES}}}$")));
        assert!(LONG_NAME_PATTERN.ends_with(&format!("]{{1,{MAX_LONG_NAME}}}$")));
    }

    #[test]
    fn ranges_say_what_they_expect() {
        let at = JsonPath::root().key("n");
        let message = |v, min, max| {
            Range::new(min, max, "seconds")
                .check(v, &at)
                .unwrap_err()
                .message
        };
        assert_eq!(message(0, 1, 10), "expected 1 to 10 seconds");
        assert_eq!(message(11, 0, 10), "expected at most 10 seconds");
        assert_eq!(message(0, 1, u64::MAX), "expected at least 1 seconds");
        assert_eq!(Range::new(1, 10, "s").check_or(None, 5, &at), Ok(5));
        assert_eq!(Range::new(1, 10, "s").check(10, &at), Ok(10));
    }
}

/// The rules as every part of the configuration applies them.
#[cfg(test)]
mod config_tests {
    use crate::config::{compile, refusal};

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn provider(extra: &str) -> String {
        format!(
            r#"{{"jwt_providers":{{"corp":{{"remote_jwks":{{"cluster":"idp","path":"/jwks"}}{extra}}}}}}}"#
        )
    }

    #[test]
    fn header_names_are_lower_cased_for_every_use() {
        let policy = compile(
            provider(
                r#","from_headers":[{"name":"X-Token"}],
                   "claim_to_headers":[{"claim":"sub","header":"X-Jwt-Sub"}],
                   "payload_header":"X-Jwt-Payload""#,
            )
            .as_bytes(),
        )
        .unwrap();
        let corp = &policy.jwt_providers[0];
        assert_eq!(corp.sources.headers[0].name, "x-token");
        assert_eq!(corp.claim_to_headers[0].header, "x-jwt-sub");
        assert_eq!(corp.payload_header.as_deref(), Some("x-jwt-payload"));
        for owned in ["x-jwt-sub", "x-jwt-payload"] {
            assert!(policy.owned_request_headers.contains(&owned.to_string()));
        }
        let keys = format!(
            r#"{{"api_keys":{{"from_headers":["X-Key"],"client_header":"X-Client",
                 "clients":[{{"id":"a","sha256":"{SHA}"}}]}}}}"#
        );
        let keys = compile(keys.as_bytes()).unwrap().api_keys.unwrap();
        assert_eq!(
            (keys.from_headers[0].as_str(), keys.client_header.as_str()),
            ("x-key", "x-client")
        );
    }

    #[test]
    fn one_rule_per_kind_of_name() {
        let long = "p".repeat(super::MAX_NAME_BYTES);
        let accepted = [
            provider(&format!(
                r#","from_params":["{long}"],"from_cookies":["{long}"]"#
            )),
            format!(r#"{{"api_keys":{{"from_params":["{long}"],"clients":[]}}}}"#),
            r#"{"jwt_providers":{"corp:v2":{"remote_jwks":{"cluster":"idp","path":"/j"}}}}"#.into(),
        ];
        for json in accepted {
            assert!(compile(json.as_bytes()).is_ok(), "{json}");
        }
        let refused = [
            (
                format!(r#"{{"api_keys":{{"from_params":["{long}p"],"clients":[]}}}}"#),
                "api_keys.from_params[0]: expected a query parameter name of 1 to 128",
            ),
            (
                provider(r#","from_cookies":["a=b"]"#),
                "jwt_providers.corp.from_cookies[0]: expected a cookie name of 1 to 128",
            ),
            (
                r#"{"api_keys":{"client_header":"Authorization","clients":[]}}"#.into(),
                "api_keys.client_header: this header carries the request itself",
            ),
            (
                provider(r#","from_headers":[{"name":"Host"}]"#),
                "jwt_providers.corp.from_headers[0].name: this header is managed by HTTP itself",
            ),
            (
                provider(
                    r#","claim_to_headers":[{"claim":"sub","header":"x-a"}],"payload_header":"X-A""#,
                ),
                "jwt_providers.corp.payload_header: this header is already set by a claim",
            ),
            (
                r#"{"headers":{"response_set":{"Upgrade":"h2c"}}}"#.into(),
                "headers.response_set.Upgrade: this header is managed by Envoy",
            ),
            (
                r#"{"jwt_providers":{"api_key":{"remote_jwks":{"cluster":"idp","path":"/j"}}}}"#
                    .into(),
                "jwt_providers.api_key: `api_key` names the API-key method",
            ),
            (
                provider(r#","max_lifetime_seconds":0"#),
                "jwt_providers.corp.max_lifetime_seconds: expected at least 1 second; leave it out",
            ),
            (
                r#"{"jwt_providers":{"corp":{"remote_jwks":{"cluster":"a b","authority":"idp","path":"/j"}}}}"#.into(),
                "jwt_providers.corp.remote_jwks.cluster: expected the name of the Envoy cluster that serves the JWKS (1 to 256 visible",
            ),
            (
                provider(r#","cache_entries":65537"#),
                "jwt_providers.corp.cache_entries: expected at most 65536 entries; 0 turns",
            ),
        ];
        for (json, want) in refused {
            let got = refusal(&json);
            assert!(
                got.starts_with(want),
                "{json}: got {got:?}, want prefix {want:?}"
            );
        }
    }
}
