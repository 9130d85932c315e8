//! `rules`: which requests a rule applies to and what it demands of them.

use serde::Deserialize;

use super::{ConfigError, JsonPath};
use crate::policy::{AuthMethod, Matcher, Mode, Rule};

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Rule"))]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[A-Za-z0-9_.:-]{1,128}$"))
    )]
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    pub mode: Option<Mode>,
    pub auth: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub rate_limit: Option<String>,
    pub body: Option<super::body::RawBody>,
    pub threats: Option<crate::policy::screen::ThreatMode>,
    pub ip: Option<super::screen::RawIp>,
    /// Whether a CORS preflight must authenticate; left out: the top-level `cors_preflight`.
    pub cors_preflight: Option<crate::policy::auth::CorsPreflight>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Match"))]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Path prefix, compared byte for byte as Envoy's route `prefix` is.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^/[^?# ]*$")))]
    pub prefix: Option<String>,
    /// Exact path (query excluded).
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^/[^?# ]*$")))]
    pub path: Option<String>,
    /// HTTP methods; empty or absent means any.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(inner(regex(pattern = r"^[A-Z]+$"))))]
    pub methods: Vec<String>,
}

/// What rules may refer to, compiled before them.
pub struct Referents<'a> {
    /// Names of `jwt_providers`, in index order.
    pub jwt_providers: &'a [String],
    pub api_keys_configured: bool,
    /// Compiled `rate_limits`, in index order.
    pub rate_limits: &'a [crate::policy::limit::RateLimitPolicy],
    /// The top-level `cors_preflight`, for rules that do not say.
    pub cors_preflight: crate::policy::auth::CorsPreflight,
}

pub fn compile(
    raw: &[RawRule],
    path: &JsonPath,
    referents: &Referents,
) -> Result<Vec<Rule>, ConfigError> {
    let mut rules = Vec::with_capacity(raw.len());
    for (index, raw_rule) in raw.iter().enumerate() {
        let at = path.index(index);
        let rule = compile_rule(raw_rule, index, &at, referents)?;
        if rules.iter().any(|r: &Rule| r.name == rule.name) {
            return Err(at.key("name").error(format!(
                "duplicate rule name `{}`; rule names must be unique",
                rule.name
            )));
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn compile_rule(
    raw: &RawRule,
    index: usize,
    at: &JsonPath,
    referents: &Referents,
) -> Result<Rule, ConfigError> {
    let name = match &raw.name {
        Some(name) => {
            if name.is_empty() || name.len() > 128 || !name.chars().all(is_name_char) {
                return Err(at.key("name").error(
                    "expected 1 to 128 characters of letters, digits, '-', '_', '.' or ':'",
                ));
            }
            name.clone()
        }
        None => format!("rules[{index}]"),
    };
    let matcher = compile_match(&raw.matcher, &at.key("match"))?;
    let auth = compile_auth(raw.auth.as_deref(), &at.key("auth"), referents)?;
    let scopes = compile_scopes(raw.scopes.as_deref(), &at.key("scopes"))?;
    if !scopes.is_empty() && auth.is_empty() {
        return Err(at
            .key("scopes")
            .error("scopes need a credential: add `auth` to this rule"));
    }
    let rate_limit = match &raw.rate_limit {
        Some(policy) => Some(super::rate_limits::resolve(
            referents.rate_limits,
            policy,
            &at.key("rate_limit"),
        )?),
        None => None,
    };
    let body = match &raw.body {
        Some(body) => Some(super::body::compile(body, &at.key("body"))?),
        None => None,
    };
    let ip = match &raw.ip {
        Some(ip) => super::screen::compile_ip(ip, &at.key("ip"))?,
        None => Default::default(),
    };
    Ok(Rule {
        name,
        matcher,
        mode: raw.mode,
        auth,
        scopes,
        rate_limit,
        body,
        threats: raw.threats.unwrap_or_default(),
        ip,
        cors_preflight: raw.cors_preflight.unwrap_or(referents.cors_preflight),
    })
}

/// `auth`: names of JWT providers, or `api_key` for the API-key method; any one must succeed.
fn compile_auth(
    raw: Option<&[String]>,
    at: &JsonPath,
    referents: &Referents,
) -> Result<Vec<AuthMethod>, ConfigError> {
    let Some(names) = raw else {
        return Ok(Vec::new());
    };
    if names.is_empty() {
        return Err(at.error("expected at least one method; leave `auth` out for a public route"));
    }
    let mut methods = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let method = if name == "api_key" {
            if !referents.api_keys_configured {
                return Err(at
                    .index(i)
                    .error("`api_key` needs an `api_keys` block at the top level"));
            }
            AuthMethod::ApiKey
        } else {
            match referents.jwt_providers.iter().position(|p| p == name) {
                Some(index) => AuthMethod::Jwt(index),
                None => {
                    return Err(at.index(i).error(format!(
                        "unknown method `{name}`: name a key of `jwt_providers` or `api_key`"
                    )))
                }
            }
        };
        if methods.contains(&method) {
            return Err(at.index(i).error("listed twice"));
        }
        methods.push(method);
    }
    Ok(methods)
}

pub(crate) fn compile_scopes(
    raw: Option<&[String]>,
    at: &JsonPath,
) -> Result<Vec<String>, ConfigError> {
    let mut scopes: Vec<String> = Vec::new();
    for (i, scope) in raw.unwrap_or_default().iter().enumerate() {
        // RFC 6749 scope-token: printable ASCII except space, '"' and '\\'.
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

pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

fn compile_match(raw: &RawMatch, at: &JsonPath) -> Result<Matcher, ConfigError> {
    let path = match (&raw.prefix, &raw.path) {
        (Some(_), Some(_)) => {
            return Err(at.error("give either `prefix` or `path`, not both"));
        }
        (None, None) => {
            return Err(at.error(
                "expected `prefix` or `path`; use \"prefix\": \"/\" to match every request",
            ));
        }
        (Some(prefix), None) => {
            check_path(prefix, &at.key("prefix"))?;
            crate::policy::PathMatch::Prefix(prefix.clone())
        }
        (None, Some(exact)) => {
            check_path(exact, &at.key("path"))?;
            crate::policy::PathMatch::Exact(exact.clone())
        }
    };
    let mut methods = Vec::with_capacity(raw.methods.len());
    for (i, method) in raw.methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(at
                .key("methods")
                .index(i)
                .error("expected an upper-case HTTP method such as \"GET\""));
        }
        if !methods.contains(method) {
            methods.push(method.clone());
        }
    }
    Ok(Matcher { path, methods })
}

fn check_path(value: &str, at: &JsonPath) -> Result<(), ConfigError> {
    if !value.starts_with('/') {
        return Err(at.error("expected a path starting with '/'"));
    }
    if value.contains('?') || value.contains('#') {
        return Err(at.error("paths are matched without the query; remove '?' or '#'"));
    }
    if value.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(at.error("expected a path without spaces or control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::refusal;

    #[test]
    fn bad_rules_are_refused_with_their_path() {
        let table = [
            (r#"{"rules":[{}]}"#, "rules[0]: missing field `match`"),
            (
                r#"{"rules":[{"match":{}}]}"#,
                "rules[0].match: expected `prefix` or `path`",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/a","path":"/a"}}]}"#,
                "rules[0].match: give either",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"a"}}]}"#,
                "rules[0].match.prefix: expected a path",
            ),
            (
                r#"{"rules":[{"match":{"path":"/a?b"}}]}"#,
                "rules[0].match.path: paths are matched",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/","methods":["get"]}}]}"#,
                "rules[0].match.methods[0]: expected an upper-case",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"name":"a b"}]}"#,
                "rules[0].name: expected 1 to 128",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"name":"a"},{"match":{"prefix":"/"},"name":"a"}]}"#,
                "rules[1].name: duplicate rule name",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"mode":"loud"}]}"#,
                "rules[0].mode: unknown variant `loud`",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"auth":["x"]}]}"#,
                "rules[0].auth[0]: unknown method `x`",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"auth":["api_key"]}]}"#,
                "rules[0].auth[0]: `api_key` needs an `api_keys` block",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"auth":[]}]}"#,
                "rules[0].auth: expected at least one method",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"auth":"corp"}]}"#,
                "rules[0].auth: expected a sequence",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"scopes":["a"]}]}"#,
                "rules[0].scopes: scopes need a credential",
            ),
            (r#"{"rules":"x"}"#, "rules: expected a sequence"),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"cors_preflight":"skip"}]}"#,
                "rules[0].cors_preflight: unknown variant `skip`",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"cors_preflight":true}]}"#,
                "rules[0].cors_preflight: unexpected value",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"cors_preflight":"Allow"}]}"#,
                "rules[0].cors_preflight: unknown variant `Allow`",
            ),
        ];
        for (json, want) in table {
            let got = refusal(json);
            assert!(
                got.starts_with(want),
                "config {json}: got {got:?}, want prefix {want:?}"
            );
        }
    }
}
