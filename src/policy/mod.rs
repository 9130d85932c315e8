//! The core: a compiled, immutable [`Policy`] and its evaluation of a [`Request`].
//! Nothing here knows about proxy-wasm; the host comes in through [`Host`].

pub mod auth;
pub mod body;
pub mod client_ip;
pub mod harden;
pub mod host;
pub mod limit;
mod request;
pub mod screen;
pub mod testing;
mod verdict;

use serde::Deserialize;

use auth::check_scopes;

pub use auth::{AuthMethod, Credential, Principal};
pub use client_ip::ClientIpSource;
pub use harden::{Hardening, HeaderAction, HttpsPolicy, Profile};
pub use host::{HashAlg, Host, NativeVerify, SharedWrite};
pub use request::Request;
pub use verdict::{Decision, Denial, Reason, Verdict};

/// Header prefix that api-guard owns towards the upstream; incoming copies are always removed.
pub const OWNED_HEADER_PREFIX: &str = "x-api-guard-";
/// Set towards the upstream when a dry-run policy would have denied the request.
pub const DRY_RUN_HEADER: &str = "x-api-guard-dry-run";

/// A denial under `dry_run` is recorded but not enforced; the upstream is told what it was.
pub(crate) fn mark_dry_run(decision: &mut Decision, mode: Mode) {
    if mode != Mode::DryRun {
        return;
    }
    if let Verdict::Deny(denial) = &decision.verdict {
        decision.dry_run = true;
        decision
            .upstream_set
            .push((DRY_RUN_HEADER.to_string(), denial.reason.code().to_string()));
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub path: PathMatch,
    /// Empty: any method.
    pub methods: Vec<String>,
}

impl Matcher {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let path_ok = match &self.path {
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatch::Exact(exact) => path == exact,
        };
        path_ok && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub matcher: Matcher,
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
    /// `threats`: SQLi/XSS/traversal screening of path, query, headers and JSON/form bodies.
    pub threats: screen::ThreatMode,
    /// The rule's own `ip` lists (the global ones apply too; deny wins).
    pub ip: screen::IpRules,
}

/// The compiled configuration. Built once per `on_configure`, never changed afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub client_ip: ClientIpSource,
    pub log: LogDecisions,
    pub rules: Vec<Rule>,
    pub hardening: Hardening,
    /// Request headers api-guard sets towards the upstream (besides its own prefix): incoming
    /// copies are removed so a client cannot forge them.
    pub owned_request_headers: Vec<String>,
    pub jwt_providers: Vec<auth::jwt::Provider>,
    pub api_keys: Option<auth::api_key::ApiKeys>,
    pub rate_limits: Vec<limit::RateLimitPolicy>,
    pub rate_limit_table: limit::table::SlotTable,
    /// The global `ip` lists, applied to every request.
    pub ip: screen::IpRules,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(
            Mode::Enforce,
            LogDecisions::Deny,
            Vec::new(),
            Hardening::default(),
        )
    }
}

impl Policy {
    pub fn new(mode: Mode, log: LogDecisions, rules: Vec<Rule>, hardening: Hardening) -> Self {
        Policy {
            mode,
            client_ip: ClientIpSource::default(),
            log,
            rules,
            hardening,
            owned_request_headers: Vec::new(),
            jwt_providers: Vec::new(),
            api_keys: None,
            rate_limits: Vec::new(),
            rate_limit_table: limit::table::SlotTable::default(),
            ip: screen::IpRules::default(),
        }
    }

    /// The first rule matching the request, if any.
    pub fn rule_for(&self, request: &Request) -> Option<&Rule> {
        let path = request.path_without_query();
        self.rules
            .iter()
            .find(|rule| rule.matcher.matches(request.method(), path))
    }

    /// Decides what happens to a request, from its headers.
    pub fn evaluate(&self, request: &Request, host: &dyn Host) -> Decision {
        let rule = self.rule_for(request);
        let mode = self.mode_for(rule);
        let mut decision = Decision::allow(rule.map(|r| r.name.clone()));
        decision.client = self.client_ip.resolve(request).map(|ip| format!("ip:{ip}"));
        decision.upstream_remove = self.spoofed_headers(request);

        if let Err(denial) = self.run_checks(request, rule, host, &mut decision) {
            decision.verdict = Verdict::Deny(denial);
        }

        mark_dry_run(&mut decision, mode);
        decision
    }

    /// The mode a rule runs in: its own, else the policy's.
    pub(crate) fn mode_for(&self, rule: Option<&Rule>) -> Mode {
        rule.and_then(|r| r.mode).unwrap_or(self.mode)
    }

    /// The checks, cheapest and most decisive first; the first denial ends them.
    fn run_checks(
        &self,
        request: &Request,
        rule: Option<&Rule>,
        host: &dyn Host,
        decision: &mut Decision,
    ) -> Result<(), Denial> {
        // 1. Transport.
        self.check_https(request)?;
        // 2. Screening: client IP, then threats in path, query and headers.
        self.screen(request, rule, decision)?;
        let Some(rule) = rule else {
            return Ok(());
        };
        // 3. Authentication and scopes.
        let mut tier = None;
        if !rule.auth.is_empty() && !auth::is_cors_preflight(request) {
            let principal = self.authenticate(rule, request, host)?;
            check_scopes(&rule.scopes, &principal)?;
            tier = principal.rate_limit;
            decision.client = Some(principal.client);
            decision.upstream_remove.extend(principal.upstream_remove);
            decision.upstream_set.extend(principal.upstream_set);
        }
        // 4. Rate limit: the credential's tier, else the rule's policy.
        self.check_rate_limit(tier.or(rule.rate_limit), host, decision)?;
        // 5. The body is checked once it arrives.
        // 5. The body: what its headers tell now (length, media type); the rest once it
        //    arrives (`evaluate_body`).
        if let Some(body) = &rule.body {
            body.check_headers(request)?;
        }
        Ok(())
    }

    fn authenticate(
        &self,
        rule: &Rule,
        request: &Request,
        host: &dyn Host,
    ) -> Result<Principal, Denial> {
        auth::authenticate(&rule.auth, |method| match method {
            AuthMethod::Jwt(index) => (
                auth::jwt::authenticate(&self.jwt_providers, &rule.auth, index, request, host),
                Reason::JwtMissing,
            ),
            AuthMethod::ApiKey => (
                self.api_keys
                    .as_ref()
                    .map_or(Credential::Absent, |k| k.authenticate(request, host)),
                Reason::ApiKeyMissing,
            ),
        })
    }

    /// Takes a token for the decision's client (authenticated identity, else `ip:<addr>`).
    fn check_rate_limit(
        &self,
        policy: Option<usize>,
        host: &dyn Host,
        decision: &mut Decision,
    ) -> Result<(), Denial> {
        let Some(policy) = policy.and_then(|i| self.rate_limits.get(i)) else {
            return Ok(());
        };
        let client = decision.client.as_deref().unwrap_or("ip:unknown");
        let headers = limit::check(policy, &self.rate_limit_table, client, host)?;
        decision.response_headers.extend(headers);
        Ok(())
    }

    /// Incoming request headers that api-guard owns towards the upstream.
    fn spoofed_headers(&self, request: &Request) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (name, _) in request.headers() {
            let owned = name.starts_with(OWNED_HEADER_PREFIX)
                || self.owned_request_headers.iter().any(|h| h == name);
            if owned && !names.iter().any(|n| n == name) {
                names.push(name.clone());
            }
        }
        names
    }

    fn check_https(&self, request: &Request) -> Result<(), Denial> {
        if self.hardening.require_https == HttpsPolicy::Off {
            return Ok(());
        }
        // Envoy sets x-forwarded-proto from the downstream connection at the edge; a request
        // without it, or with several values, is treated as plain HTTP.
        let https = request
            .header("x-forwarded-proto")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
        if https {
            return Ok(());
        }
        let denial =
            Denial::new(Reason::HttpsRequired).with_detail("this API is served over HTTPS only");
        match (self.hardening.require_https, request.authority()) {
            (HttpsPolicy::Redirect, Some(authority)) => {
                let location = format!("https://{}{}", authority, request.path());
                Err(denial.redirect(308, location))
            }
            _ => Err(denial),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::MemoryHost;
    use super::*;
    use crate::config::compile;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn decide(config: &str, pairs: &[(&str, &str)]) -> Decision {
        let policy = compile(config.as_bytes()).unwrap();
        let h = headers(pairs);
        let request = Request::new(&h, Some("203.0.113.7:4242"));
        policy.evaluate(&request, &MemoryHost::default())
    }

    const GET: [(&str, &str); 3] = [
        (":method", "GET"),
        (":path", "/api/x?q=1"),
        (":authority", "example.com"),
    ];

    #[test]
    fn empty_config_allows_and_names_the_client() {
        let d = decide("{}", &GET);
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.client.as_deref(), Some("ip:203.0.113.7"));
        assert_eq!(d.rule, None);
    }

    #[test]
    fn rules_match_first_by_prefix_exact_and_method() {
        let config = r#"{"rules":[
            {"name":"exact","match":{"path":"/api/x","methods":["POST"]}},
            {"name":"api","match":{"prefix":"/api/"}},
            {"name":"all","match":{"prefix":"/"}}]}"#;
        assert_eq!(decide(config, &GET).rule.as_deref(), Some("api"));
        let post = [
            (":method", "POST"),
            (":path", "/api/x?y"),
            (":authority", "h"),
        ];
        assert_eq!(decide(config, &post).rule.as_deref(), Some("exact"));
        let other = [(":method", "GET"), (":path", "/other"), (":authority", "h")];
        assert_eq!(decide(config, &other).rule.as_deref(), Some("all"));
    }

    #[test]
    fn require_https_rejects_or_redirects_plain_http() {
        let reject = r#"{"headers":{"require_https":true}}"#;
        let mut plain = GET.to_vec();
        plain.push(("x-forwarded-proto", "http"));
        let d = decide(reject, &plain);
        assert_eq!(d.enforced_denial().map(|x| x.status), Some(403));
        assert_eq!(d.reason_code(), "https_required");
        let mut secure = GET.to_vec();
        secure.push(("x-forwarded-proto", "https"));
        assert_eq!(decide(reject, &secure).verdict, Verdict::Allow);

        let redirect = r#"{"headers":{"require_https":"redirect"}}"#;
        let d = decide(redirect, &plain);
        let denial = d.enforced_denial().unwrap();
        assert_eq!(denial.status, 308);
        assert!(denial.headers.contains(&(
            "location".to_string(),
            "https://example.com/api/x?q=1".to_string()
        )));
    }

    #[test]
    fn dry_run_never_enforces_but_records() {
        let mut plain = GET.to_vec();
        plain.push(("x-forwarded-proto", "http"));
        let d = decide(
            r#"{"mode":"dry_run","headers":{"require_https":true}}"#,
            &plain,
        );
        assert!(d.enforced_denial().is_none());
        assert_eq!(d.action(), "dry_run");
        assert_eq!(d.reason_code(), "https_required");
        assert!(d
            .upstream_set
            .contains(&(DRY_RUN_HEADER.to_string(), "https_required".to_string())));

        // A rule's own mode wins over the policy's.
        let config = r#"{"headers":{"require_https":true},
            "rules":[{"name":"try","match":{"prefix":"/api"},"mode":"dry_run"}]}"#;
        assert_eq!(decide(config, &plain).action(), "dry_run");
    }

    #[test]
    fn owned_headers_are_stripped_from_requests() {
        let mut forged = GET.to_vec();
        forged.push(("x-api-guard-dry-run", "nothing"));
        forged.push(("x-api-guard-client", "admin"));
        let d = decide("{}", &forged);
        assert_eq!(
            d.upstream_remove,
            vec!["x-api-guard-dry-run", "x-api-guard-client"]
        );
    }
}
