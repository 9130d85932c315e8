//! `rules`: which requests a rule applies to and what it demands of them.

use serde::Deserialize;

use super::validate;
use super::{ConfigError, JsonPath};
use crate::policy::path::canonical_path;
use crate::policy::{AuthMethod, DefaultAction, Matcher, Mode, OtherMethods, PathMatch, Rule};

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Rule"))]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = validate::LONG_NAME_PATTERN))
    )]
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    /// What a method the rule does not list gets on its paths: `next` (the next matching
    /// rule decides) or `deny` (405 with `Allow`). Needs `match.methods`.
    pub other_methods: Option<OtherMethods>,
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
    /// Path prefix in canonical form, compared byte for byte with the request's canonical
    /// path (query excluded).
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^/[^?#; \\]*$")))]
    pub prefix: Option<String>,
    /// Exact path in canonical form (query excluded; one trailing `/` on the request is
    /// allowed).
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^/[^?#; \\]*$")))]
    pub path: Option<String>,
    /// HTTP methods, upper case (requests match in any case; `GET` covers `HEAD`); empty or
    /// absent means any.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(inner(regex(pattern = r"^[A-Z]+$"))))]
    pub methods: Vec<String>,
    /// Compare paths in lower case, for upstreams that route without regard to case.
    #[serde(default)]
    pub ignore_case: bool,
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
        Some(name) => validate::name(name, validate::MAX_LONG_NAME, &at.key("name"))?,
        None => format!("rules[{index}]"),
    };
    let matcher = compile_match(&raw.matcher, &at.key("match"))?;
    let other_methods = raw.other_methods.unwrap_or_default();
    if other_methods == OtherMethods::Deny && matcher.methods.is_empty() {
        return Err(at
            .key("other_methods")
            .error("\"deny\" needs `match.methods`: a rule without methods takes every method"));
    }
    let auth = compile_auth(raw.auth.as_deref(), &at.key("auth"), referents)?;
    let scopes = validate::scopes(raw.scopes.as_deref(), &at.key("scopes"))?;
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
        other_methods,
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
            PathMatch::Prefix(fold_case(prefix, raw.ignore_case))
        }
        (None, Some(exact)) => {
            check_path(exact, &at.key("path"))?;
            PathMatch::Exact(fold_case(exact, raw.ignore_case))
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
    Ok(Matcher {
        path,
        methods,
        ignore_case: raw.ignore_case,
    })
}

fn fold_case(path: &str, ignore_case: bool) -> String {
    if ignore_case {
        path.to_ascii_lowercase()
    } else {
        path.to_string()
    }
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
    // Requests are matched on their canonical path: a rule path in any other form could
    // never match, or would match less than it says.
    match canonical_path(value) {
        Ok(canonical) if canonical == value => Ok(()),
        Ok(canonical) => Err(at.error(format!(
            "expected the path in canonical form (requests are matched on it): write \"{canonical}\""
        ))),
        Err(refusal) => Err(at.error(format!(
            "expected a canonical path: {} (and so would every request to it be)",
            refusal.0
        ))),
    }
}

/// Warnings for rules that probably do not say what they mean: a rule with `match.methods`
/// and `other_methods: next` whose other methods, on its paths, fall to a later rule that
/// takes any method and demands less, or to no rule at all under `default: allow`. A later
/// rule that lists its own methods was meant for them and is not warned about.
pub fn shadow_warnings(rules: &[Rule], default: DefaultAction) -> Vec<String> {
    let mut warnings = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        if rule.matcher.methods.is_empty() || rule.other_methods == OtherMethods::Deny {
            continue;
        }
        let methods = rule.matcher.methods.join(", ");
        let mut ended = false;
        for other in rules.iter().skip(index + 1) {
            if !paths_overlap(&rule.matcher, &other.matcher) {
                continue;
            }
            let takes_any = other.matcher.methods.is_empty();
            if takes_any && demands_less(other, rule) {
                warnings.push(format!(
                    "rule `{}` takes only {methods} on its paths; other methods there fall to \
                     rule `{}`, which demands less (add \"other_methods\": \"deny\" to `{}`, \
                     or give `{}` the methods it is for)",
                    rule.name, other.name, rule.name, other.name
                ));
            }
            if (takes_any || other.other_methods == OtherMethods::Deny)
                && covers(&other.matcher, &rule.matcher)
            {
                ended = true;
                break;
            }
        }
        if !ended && default == DefaultAction::Allow && demands_anything(rule) {
            warnings.push(format!(
                "rule `{}` takes only {methods} on its paths; other methods there may match no \
                 rule and pass unchecked (add \"other_methods\": \"deny\" to `{}`, or \
                 \"default\": \"deny\")",
                rule.name, rule.name
            ));
        }
    }
    warnings
}

/// Whether some path can match both (compared in lower case when either ignores case).
fn paths_overlap(a: &Matcher, b: &Matcher) -> bool {
    let (a_path, b_path) = comparable(a, b);
    match (&a.path, &b.path) {
        (PathMatch::Prefix(_), PathMatch::Prefix(_)) => {
            a_path.starts_with(&b_path) || b_path.starts_with(&a_path)
        }
        (PathMatch::Prefix(_), PathMatch::Exact(_)) => b_path.starts_with(&a_path),
        (PathMatch::Exact(_), PathMatch::Prefix(_)) => a_path.starts_with(&b_path),
        (PathMatch::Exact(_), PathMatch::Exact(_)) => {
            a_path.trim_end_matches('/') == b_path.trim_end_matches('/')
        }
    }
}

/// Whether every path `inner` matches, `outer` matches too.
fn covers(outer: &Matcher, inner: &Matcher) -> bool {
    let (outer_path, inner_path) = comparable(outer, inner);
    match &outer.path {
        PathMatch::Prefix(_) => inner_path.starts_with(&outer_path),
        PathMatch::Exact(_) => {
            matches!(inner.path, PathMatch::Exact(_)) && outer_path == inner_path
        }
    }
}

fn comparable(a: &Matcher, b: &Matcher) -> (String, String) {
    let text = |m: &Matcher| match &m.path {
        PathMatch::Prefix(p) | PathMatch::Exact(p) => p.clone(),
    };
    if a.ignore_case || b.ignore_case {
        (text(a).to_ascii_lowercase(), text(b).to_ascii_lowercase())
    } else {
        (text(a), text(b))
    }
}

/// Whether `weaker` lacks something `stronger` demands: a credential, a scope, a body
/// check, threat blocking or an IP list.
fn demands_less(weaker: &Rule, stronger: &Rule) -> bool {
    use crate::policy::screen::ThreatMode;
    (!stronger.auth.is_empty() && weaker.auth.is_empty())
        || stronger.scopes.iter().any(|s| !weaker.scopes.contains(s))
        || (stronger.body.is_some() && weaker.body.is_none())
        || (stronger.threats == ThreatMode::Block && weaker.threats != ThreatMode::Block)
        || (stronger.ip != Default::default() && weaker.ip == Default::default())
}

/// Whether a rule demands more than no rule at all would.
fn demands_anything(rule: &Rule) -> bool {
    !rule.auth.is_empty()
        || rule.body.is_some()
        || rule.threats == crate::policy::screen::ThreatMode::Block
        || rule.ip != Default::default()
        || rule.rate_limit.is_some()
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
            (
                r#"{"rules":[{"match":{"prefix":"/","methods":["GET"]},"other_methods":"block"}]}"#,
                "rules[0].other_methods: unknown variant `block`",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/","methods":["GET"]},"other_methods":false}]}"#,
                "rules[0].other_methods: unexpected value",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"other_methods":"deny"}]}"#,
                "rules[0].other_methods: \"deny\" needs `match.methods`",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/","ignore_case":"yes"}}]}"#,
                "rules[0].match.ignore_case: expected a boolean",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/api//x"}}]}"#,
                "rules[0].match.prefix: expected the path in canonical form (requests are matched on it): write \"/api/x\"",
            ),
            (
                r#"{"rules":[{"match":{"path":"/a/./b"}}]}"#,
                "rules[0].match.path: expected the path in canonical form (requests are matched on it): write \"/a/b\"",
            ),
            (
                r#"{"rules":[{"match":{"path":"/a/../b"}}]}"#,
                "rules[0].match.path: expected a canonical path: a '..' segment",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/api;v=1"}}]}"#,
                "rules[0].match.prefix: expected the path in canonical form",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/%7Euser"}}]}"#,
                "rules[0].match.prefix: expected the path in canonical form (requests are matched on it): write \"/~user\"",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/a%2Fb"}}]}"#,
                "rules[0].match.prefix: expected a canonical path: an escaped '/'",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/a\\b"}}]}"#,
                "rules[0].match.prefix: expected a canonical path: a '\\'",
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
