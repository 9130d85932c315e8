//! The rule model: what a compiled rule says and which rule a request falls under
//! ([`Selection`], made by [`Policy::select`](super::Policy::select)).

use serde::Deserialize;

use super::{auth, body, path, screen, AuthMethod};

/// `enforce` blocks; `dry_run` evaluates, logs and counts, and never blocks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    DryRun,
}

/// Which decisions get a log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogDecisions {
    /// Denials (enforced or dry-run) only.
    #[default]
    Deny,
    /// Every decision.
    All,
    /// None (metrics and access-log filter state still record them).
    Off,
}

/// A rule's path, in canonical form (see [`path::canonical_path`]; lower case under
/// `match.ignore_case`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    /// Matches the path with or without one trailing `/` (frameworks such as Express route
    /// both to the same handler).
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub path: PathMatch,
    /// Upper case; empty: any method.
    pub methods: Vec<String>,
    /// `match.ignore_case`: the path is compared in lower case.
    pub ignore_case: bool,
}

impl Matcher {
    /// Whether the rule's path covers a canonical path (lower-cased by the caller when
    /// `ignore_case` is set).
    pub fn matches_path(&self, path: &str) -> bool {
        match &self.path {
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatch::Exact(exact) => {
                path == exact
                    || (!exact.ends_with('/') && path.strip_suffix('/') == Some(exact.as_str()))
            }
        }
    }

    /// Whether the rule covers a method, compared without regard to case (`post` over HTTP/2
    /// reaches frameworks as `POST`); `HEAD` is covered by `GET`, as servers answer it.
    pub fn matches_method(&self, method: &str) -> bool {
        self.methods.is_empty()
            || self.methods.iter().any(|m| {
                m.eq_ignore_ascii_case(method)
                    || (m == "GET" && method.eq_ignore_ascii_case("HEAD"))
            })
    }

    /// The `Allow` header of a 405 from this rule.
    pub fn allow_header(&self) -> String {
        let mut methods = self.methods.clone();
        if methods.iter().any(|m| m == "GET") && !methods.iter().any(|m| m == "HEAD") {
            methods.push("HEAD".to_string());
        }
        methods.join(", ")
    }
}

/// `other_methods`: what a request on a rule's paths with a method the rule does not list
/// gets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OtherMethods {
    /// The next rule that matches decides (as before this key existed).
    #[default]
    Next,
    /// 405 `method_not_allowed`, with `Allow` listing the rule's methods.
    Deny,
}

/// `default`: what a request that no rule matches gets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    /// Only the global `ip` lists and header hardening apply.
    #[default]
    Allow,
    /// 404 `no_rule`.
    Deny,
}

/// Which rule applies to a request, or why none can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection<'p> {
    Rule(&'p Rule),
    /// The request is on this rule's paths with a method it does not list, and the rule's
    /// `other_methods` is `deny`.
    MethodNotAllowed(&'p Rule),
    NoRule,
    /// The path has no canonical form: refused whatever the rules say.
    InvalidPath(path::PathRefusal),
}

impl<'p> Selection<'p> {
    /// The rule that decides the request (also the one refusing its method).
    pub fn rule(&self) -> Option<&'p Rule> {
        match *self {
            Selection::Rule(rule) | Selection::MethodNotAllowed(rule) => Some(rule),
            Selection::NoRule | Selection::InvalidPath(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub matcher: Matcher,
    /// What a method the rule does not list gets on the rule's paths.
    pub other_methods: OtherMethods,
    /// Overrides the policy's mode for this rule.
    pub mode: Option<Mode>,
    /// Credentials of which any one must succeed; empty: public.
    pub auth: Vec<AuthMethod>,
    /// Scopes that must all be granted.
    pub scopes: Vec<String>,
    /// The rate-limit policy, by index into `Policy::rate_limits` (an API key's own wins).
    pub rate_limit: Option<usize>,
    /// The `body` block: checked in stage 5.
    pub body: Option<body::BodyRules>,
    /// `threats`: SQLi/XSS/traversal screening of path, query, headers and bodies.
    pub threats: screen::ThreatMode,
    /// The rule's own `ip` lists (the global ones apply too; deny wins).
    pub ip: screen::IpRules,
    /// `cors_preflight`: the rule's, else the top-level one, else `authenticate`.
    pub cors_preflight: auth::CorsPreflight,
}
