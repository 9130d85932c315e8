//! `headers`: the response hardening profile, overrides, removals and `require_https`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::{ConfigError, JsonPath};
use crate::policy::harden::{Hardening, HttpsPolicy, Profile};

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Headers"))]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    #[serde(default)]
    pub profile: Profile,
    #[serde(default)]
    pub response_set: BTreeMap<String, String>,
    pub response_remove: Option<Vec<String>>,
    #[serde(default)]
    pub require_https: RawRequireHttps,
}

/// `require_https`: `false` (default), `true` (same as `"reject"`), `"reject"` or `"redirect"`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RawRequireHttps(pub HttpsPolicy);

impl<'de> Deserialize<'de> for RawRequireHttps {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RequireHttpsVisitor;
        impl Visitor<'_> for RequireHttpsVisitor {
            type Value = RawRequireHttps;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("false, true, \"reject\" or \"redirect\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawRequireHttps(if v {
                    HttpsPolicy::Reject
                } else {
                    HttpsPolicy::Off
                }))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "off" => Ok(RawRequireHttps(HttpsPolicy::Off)),
                    "reject" => Ok(RawRequireHttps(HttpsPolicy::Reject)),
                    "redirect" => Ok(RawRequireHttps(HttpsPolicy::Redirect)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(RequireHttpsVisitor)
    }
}

pub fn compile(raw: &RawHeaders, at: &JsonPath) -> Result<Hardening, ConfigError> {
    let mut set = Vec::with_capacity(raw.response_set.len());
    for (name, value) in &raw.response_set {
        let name_at = at.key("response_set").key(name);
        let name = checked_header_name(name, &name_at)?;
        if !is_header_value(value) {
            return Err(name_at
                .error("header value must be visible ASCII or spaces, without CR, LF or NUL"));
        }
        set.push((name, value.clone()));
    }
    let remove = match &raw.response_remove {
        None => None,
        Some(list) => {
            let mut names = Vec::with_capacity(list.len());
            for (i, name) in list.iter().enumerate() {
                let name = checked_header_name(name, &at.key("response_remove").index(i))?;
                if set.iter().any(|(n, _)| *n == name) {
                    return Err(at
                        .key("response_remove")
                        .index(i)
                        .error("this header is also in response_set; keep it in one of the two"));
                }
                names.push(name);
            }
            Some(names)
        }
    };
    Ok(Hardening::new(
        raw.profile,
        set,
        remove,
        raw.require_https.0,
    ))
}

/// Response headers that Envoy manages.
const ENVOY_RESPONSE_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "content-type",
    "date",
];

fn checked_header_name(name: &str, at: &JsonPath) -> Result<String, ConfigError> {
    token_header_name(
        name,
        at,
        ENVOY_RESPONSE_HEADERS,
        "this header is managed by Envoy and cannot be changed here",
    )
}

/// A header name lower-cased (HTTP/2 and Envoy use lower case) that must be an RFC 9110
/// token and none of `reserved` (refused with `why`).
pub(crate) fn token_header_name(
    name: &str,
    at: &JsonPath,
    reserved: &[&str],
    why: &str,
) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    if lower.is_empty() || !lower.bytes().all(is_token_byte) {
        return Err(at.error("expected a header name (letters, digits and !#$%&'*+-.^_`|~)"));
    }
    if reserved.contains(&lower.as_str()) {
        return Err(at.error(why));
    }
    Ok(lower)
}

use crate::policy::http::is_token_byte;

pub(crate) fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use crate::config::compile;

    #[test]
    fn bad_headers_blocks_are_refused_with_their_path() {
        let table = [
            (
                r#"{"headers":{"response_set":{"bad name":"x"}}}"#,
                "headers.response_set.bad name: expected a header name",
            ),
            (
                r#"{"headers":{"response_set":{"x-a":"line\nbreak"}}}"#,
                "headers.response_set.x-a: header value must be",
            ),
            (
                r#"{"headers":{"response_set":{"content-length":"1"}}}"#,
                "headers.response_set.content-length: this header is managed by Envoy",
            ),
            (
                r#"{"headers":{"response_remove":["ok",""]}}"#,
                "headers.response_remove[1]: expected a header name",
            ),
            (
                r#"{"headers":{"response_remove":"server"}}"#,
                "headers.response_remove: expected a sequence",
            ),
            (
                r#"{"headers":{"response_set":{"x-a":"1"},"response_remove":["X-A"]}}"#,
                "headers.response_remove[0]: this header is also",
            ),
            (
                r#"{"headers":{"require_https":"yes"}}"#,
                "headers.require_https: expected false, true, \"reject\" or \"redirect\"",
            ),
            (
                r#"{"headers":{"require_https":1}}"#,
                "headers.require_https: expected false, true",
            ),
            (r#"{"headers":{"extra":1}}"#, "headers.extra: unknown field"),
        ];
        for (json, want) in table {
            match compile(json.as_bytes()) {
                Ok(_) => panic!("accepted: {json}"),
                Err(e) => {
                    let got = e.to_string();
                    assert!(
                        got.starts_with(want),
                        "config {json}: got {got:?}, want prefix {want:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn good_headers_blocks_compile() {
        for json in [
            r#"{"headers":{"profile":"strict"}}"#,
            r#"{"headers":{"profile":"off","response_remove":[]}}"#,
            r#"{"headers":{"require_https":true}}"#,
            r#"{"headers":{"require_https":"redirect"}}"#,
            r#"{"headers":{"response_set":{"Content-Security-Policy":"default-src 'none'"}}}"#,
        ] {
            assert!(compile(json.as_bytes()).is_ok(), "{json}");
        }
    }
}
