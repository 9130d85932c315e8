//! The pipeline: every stage of [`Policy`]'s decision on a request, in order. The stages'
//! checks live in their modules (`harden`, `screen`, `auth`, `limit`, `body`), which never
//! call back here.
//!
//! The stages, in order: transport (`require_https`), rule selection, screening (client IP,
//! threats), authentication and scopes, rate limit (local, then the global flow), and the
//! body, from its headers, then once it arrives ([`Policy::evaluate_body`]). The empty policy
//! the configuration is compiled into is made here too: every `impl Policy` is in this file.

use super::auth::{self, check_scopes, AuthMethod, Credential, Principal};
use super::body::{self, BodyPlan, BodyRules};
use super::harden::{self, DRY_RUN_HEADER};
use super::limit;
use super::screen::{self, ThreatMode};
use super::{client_ip, path};
use super::{
    ClientIpSource, Decision, DefaultAction, Denial, GlobalOutcome, Hardening, Host, LogDecisions,
    Mode, OtherMethods, Policy, Reason, Request, Rule, Selection, Verdict,
};

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
            default_action: DefaultAction::Allow,
            warnings: Vec::new(),
            threat_scan_max_bytes: screen::threats::DEFAULT_SCAN_BUDGET,
        }
    }
}

impl Policy {
    /// The rule a decision was made under (selected once, by [`Policy::evaluate`]).
    pub fn rule_of(&self, decision: &Decision) -> Option<&Rule> {
        decision.rule_index.and_then(|index| self.rules.get(index))
    }

    /// Which rule applies: the first whose canonical path and method match. A rule whose
    /// path matches but whose methods do not ends the search when its `other_methods` is
    /// `deny`. The canonical path is computed once here, for every rule.
    pub fn select(&self, request: &Request) -> Selection<'_> {
        self.select_indexed(request).0
    }

    /// [`Policy::select`], with the index of the selection's rule in `rules`.
    fn select_indexed(&self, request: &Request) -> (Selection<'_>, Option<usize>) {
        if self.rules.is_empty() {
            return (Selection::NoRule, None);
        }
        let path = match path::canonical_path(request.path_without_query()) {
            Ok(path) => path,
            Err(refusal) => return (Selection::InvalidPath(refusal), None),
        };
        let mut lower: Option<String> = None;
        // A CORS preflight asks about the method it names: the rule of that method decides
        // it (its `cors_preflight`), not a rule that happens to list OPTIONS or refuse it.
        let method = if auth::is_cors_preflight(request) {
            request
                .header("access-control-request-method")
                .map_or("", str::trim)
        } else {
            request.method()
        };
        for (index, rule) in self.rules.iter().enumerate() {
            let path_ok = if rule.matcher.ignore_case {
                let lower = lower.get_or_insert_with(|| path.to_ascii_lowercase());
                rule.matcher.matches_path(lower)
            } else {
                rule.matcher.matches_path(&path)
            };
            if !path_ok {
                continue;
            }
            if rule.matcher.matches_method(method) {
                return (Selection::Rule(rule), Some(index));
            }
            if rule.other_methods == OtherMethods::Deny {
                return (Selection::MethodNotAllowed(rule), Some(index));
            }
        }
        (Selection::NoRule, None)
    }

    /// Decides what happens to a request, from its headers.
    pub fn evaluate(&self, request: &Request, host: &dyn Host) -> Decision {
        let (selection, rule_index) = self.select_indexed(request);
        let rule = selection.rule();
        let mode = self.mode_for(rule);
        let mut decision = Decision::allow(rule.map(|r| r.name.clone()));
        decision.rule_index = rule_index;
        // The client is the authenticated identity; an address-based one is resolved only
        // where it is used (rate limits here, log lines in `resolve_client`).
        decision.upstream_remove = harden::spoofed_headers(&self.owned_request_headers, request);

        if let Err(denial) = self.run_checks(request, selection, host, &mut decision) {
            // A request denied after its rate limit passed locally (e.g. by its declared
            // body length) is not worth a call to the rate limit service.
            decision.global_call = None;
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
        selection: Selection,
        host: &dyn Host,
        decision: &mut Decision,
    ) -> Result<(), Denial> {
        // 1. Transport.
        harden::check_https(self.hardening.require_https, request)?;
        // 2. Which rule applies, when that is a refusal.
        self.check_selection(selection)?;
        let rule = selection.rule();
        // 3. Screening: client IP, then threats in path, query and headers.
        self.screen(request, rule, decision)?;
        let Some(rule) = rule else {
            return Ok(());
        };
        // 4. Authentication and scopes.
        let mut tier = None;
        if !rule.auth.is_empty() {
            let principal = if rule.cors_preflight == auth::CorsPreflight::Allow
                && auth::is_bodiless_cors_preflight(request)
            {
                // No credential is checked, so none may reach the upstream either.
                let mut scrubbed = Principal::default();
                self.scrub_credentials(rule, None, &mut scrubbed, request);
                scrubbed
            } else {
                let mut principal = self.authenticate(rule, request, host)?;
                check_scopes(&rule.scopes, &principal)?;
                tier = principal.rate_limit;
                decision.client = Some(std::mem::take(&mut principal.client));
                principal
            };
            decision.upstream_remove.extend(principal.upstream_remove);
            decision.upstream_set.extend(principal.upstream_set);
            self.remove_other_spellings(rule, request, decision);
        }
        // 5. Rate limit: the credential's tier, else the rule's policy.
        self.check_rate_limit(tier.or(rule.rate_limit), request, host, decision)?;
        // 6. The body: what its headers tell now (length, media type); the rest once it
        //    arrives (`evaluate_body`).
        if let Some(body) = &rule.body {
            body.check_headers(request)?;
        }
        Ok(())
    }

    /// The refusals of rule selection: a path without canonical form, a method the matching
    /// rule denies, no rule under `default: deny`.
    fn check_selection(&self, selection: Selection) -> Result<(), Denial> {
        match selection {
            Selection::Rule(_) => Ok(()),
            Selection::InvalidPath(refusal) => {
                Err(Denial::new(Reason::PathInvalid).with_detail(refusal.0))
            }
            Selection::MethodNotAllowed(rule) => Err(Denial::new(Reason::MethodNotAllowed)
                .with_detail("this method is not allowed on this path")
                .with_header("allow", rule.matcher.allow_header())),
            Selection::NoRule => match self.default_action {
                DefaultAction::Allow => Ok(()),
                DefaultAction::Deny => {
                    Err(Denial::new(Reason::NoRule).with_detail("no rule of this API matches"))
                }
            },
        }
    }

    /// The rule's credential check. What reaches the upstream is scrubbed of every credential
    /// location of the rule's methods but the one that succeeded (when it forwards).
    fn authenticate(
        &self,
        rule: &Rule,
        request: &Request,
        host: &dyn Host,
    ) -> Result<Principal, Denial> {
        let (winner, mut principal) = self.check_credentials(rule, request, host)?;
        self.scrub_credentials(rule, Some(winner), &mut principal, request);
        Ok(principal)
    }

    /// Removes every credential location of the rule's methods except `kept`'s (the method
    /// that succeeded, which removed its own unless it forwards), then turns the parameter and
    /// cookie removals into header changes.
    fn scrub_credentials(
        &self,
        rule: &Rule,
        kept: Option<AuthMethod>,
        principal: &mut Principal,
        request: &Request,
    ) {
        for &method in &rule.auth {
            // The JWT method answers for all of the rule's providers, token by token.
            let is_kept = matches!(
                (method, kept),
                (AuthMethod::Jwt(_), Some(AuthMethod::Jwt(_)))
                    | (AuthMethod::ApiKey, Some(AuthMethod::ApiKey))
            );
            if !is_kept {
                principal.remove_locations_of(method, &self.jwt_providers, self.api_keys.as_ref());
            }
        }
        auth::scrub(principal, request);
    }

    /// Removes the other spellings of the headers removed or set towards the upstream and of
    /// every credential header of the rule, forwarded ones included (their own spelling
    /// stays): an upstream that folds `x_api_key` into `x-api-key` must not get a second,
    /// unverified key.
    fn remove_other_spellings(&self, rule: &Rule, request: &Request, decision: &mut Decision) {
        let mut names = decision.upstream_remove.clone();
        names.extend(decision.upstream_set.iter().map(|(n, _)| n.clone()));
        let mut locations = Principal::default();
        for &method in &rule.auth {
            locations.remove_locations_of(method, &self.jwt_providers, self.api_keys.as_ref());
        }
        names.extend(locations.upstream_remove);
        let extra = harden::other_spellings(request, &names);
        decision.upstream_remove.extend(extra);
    }

    fn check_credentials(
        &self,
        rule: &Rule,
        request: &Request,
        host: &dyn Host,
    ) -> Result<(AuthMethod, Principal), Denial> {
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
    /// For a global policy, a local pass leaves a call to the rate limit service to make.
    /// A client with neither is refused (`client_ip_unknown`): such clients never share a
    /// bucket.
    fn check_rate_limit(
        &self,
        policy: Option<usize>,
        request: &Request,
        host: &dyn Host,
        decision: &mut Decision,
    ) -> Result<(), Denial> {
        let Some((index, policy)) = policy.and_then(|i| Some((i, self.rate_limits.get(i)?))) else {
            return Ok(());
        };
        self.resolve_client(decision, request);
        let Some(client) = decision.client.as_deref() else {
            return Err(client_ip::unknown_client());
        };
        let Some(global) = &policy.global else {
            let headers = limit::check(policy, &self.rate_limit_table, client, host)?;
            decision.response_headers.extend(headers);
            return Ok(());
        };
        let rule = decision.rule.as_deref();
        match limit::flow::admit(
            index,
            policy,
            global,
            &self.rate_limit_table,
            client,
            rule,
            host,
        ) {
            Ok(call) => {
                decision.global_call = Some(call);
                Ok(())
            }
            Err(denial) => {
                decision.global_outcome = Some(GlobalOutcome::RefusedLocally);
                Err(denial)
            }
        }
    }

    /// The decision once the rate limit service answered (`None`: no usable answer in
    /// time), for a request whose header decision carried a global call.
    pub fn finish_global(
        &self,
        mut decision: Decision,
        answer: Option<limit::global::Answer>,
        host: &dyn Host,
    ) -> Decision {
        let Some(call) = decision.global_call.take() else {
            return decision;
        };
        let Some((policy, global)) = self
            .rate_limits
            .get(call.policy)
            .and_then(|p| Some((p, p.global.as_ref()?)))
        else {
            return decision;
        };
        // A global call is only made for a named client (`check_rate_limit`).
        let Some(client) = decision.client.as_deref() else {
            decision.verdict = Verdict::Deny(client_ip::unknown_client());
            return decision;
        };
        let settled =
            limit::flow::finish(policy, global, &self.rate_limit_table, client, answer, host);
        decision.global_outcome = Some(settled.outcome);
        decision.response_headers.extend(settled.response_headers);
        if let Some(denial) = settled.denial {
            decision.verdict = Verdict::Deny(denial);
        }
        let mode = self.mode_for(self.rule_of(&decision));
        mark_dry_run(&mut decision, mode);
        decision
    }

    /// Names the decision's client when no credential did: `ip:<address>` of the client
    /// address (`client_ip`), read from the request only now. Call it before anything that
    /// shows or counts the client (rate limits, log lines). An unknown address leaves it
    /// `None` (`-` in log lines).
    pub fn resolve_client(&self, decision: &mut Decision, request: &Request) {
        if decision.client.is_none() {
            // IPv4-mapped IPv6 (`::ffff:192.0.2.1`) is the IPv4 client: one name, one bucket.
            decision.client = self
                .client_ip
                .resolve(request)
                .map(|ip| format!("ip:{}", ip.to_canonical()));
        }
    }

    /// The log lines a recorded decision gets: its own line (info) as `log.decisions` says,
    /// then one line per detection in log mode (warn), whatever `log.decisions` says. The
    /// client is named first when a line shows it. Both shells write these as they are.
    pub fn log_lines(
        &self,
        decision: &mut Decision,
        request: &Request,
    ) -> Vec<(log::Level, String)> {
        let log_it = match self.log {
            LogDecisions::All => true,
            LogDecisions::Deny => decision.denial().is_some(),
            LogDecisions::Off => false,
        };
        if log_it || !decision.logged.is_empty() {
            self.resolve_client(decision, request);
        }
        let mut lines = Vec::new();
        if log_it {
            lines.push((
                log::Level::Info,
                decision.log_line(request.method(), request.path()),
            ));
        }
        for reason in &decision.logged {
            lines.push((
                log::Level::Warn,
                screen::logged_line(decision, *reason, request.method(), request.path()),
            ));
        }
        lines
    }

    /// Stage 2 of `run_checks`.
    pub(crate) fn screen(
        &self,
        request: &Request,
        rule: Option<&Rule>,
        decision: &mut Decision,
    ) -> Result<(), Denial> {
        if !self.ip.is_empty() || rule.is_some_and(|r| !r.ip.is_empty()) {
            let client = self.client_ip.resolve(request);
            screen::check_ip(&self.ip, rule.map(|r| &r.ip), client)?;
        }
        match rule {
            Some(rule) => {
                screen::check_threats(rule, request, self.threat_scan_max_bytes, decision)
            }
            None => Ok(()),
        }
    }

    /// What the shell does with the body of a request whose header decision is `header`:
    /// an allowed request on a rule with a `body` block, or on a `threats: block` rule (its
    /// body is screened whatever its media type, up to `threat_scan_max_bytes`).
    pub fn body_plan(&self, request: &Request, header: &Decision) -> BodyPlan {
        if header.verdict != Verdict::Allow {
            return BodyPlan::Skip;
        }
        let Some(rule) = self.rule_of(header) else {
            return BodyPlan::Skip;
        };
        match &rule.body {
            Some(body) => {
                let threats = if screens_body(rule, request) {
                    rule.threats
                } else {
                    ThreatMode::Off
                };
                body.plan(request, threats)
            }
            None if rule.threats == ThreatMode::Block && request.body_expected() => {
                BodyPlan::Buffer {
                    max_bytes: self.threat_scan_max_bytes,
                }
            }
            None => BodyPlan::Skip,
        }
    }

    /// Stage 5 once the whole body has arrived: the final decision for the request,
    /// carrying over the header decision's rule, client and notes.
    pub fn evaluate_body(&self, request: &Request, body: &[u8], header: &Decision) -> Decision {
        let rule = self.rule_of(header);
        let mut decision = body_decision(header);
        if let Some(rule) = rule {
            if let Err(denial) = self.check_body(rule, request, body, header, &mut decision) {
                decision.verdict = Verdict::Deny(denial);
            }
        }
        self.finish_body(rule, decision)
    }

    /// The `body` block's checks (JSON strings screened as they are read), then the
    /// screening of every other body, within what is left of the request's budget.
    fn check_body(
        &self,
        rule: &Rule,
        request: &Request,
        body: &[u8],
        header: &Decision,
        decision: &mut Decision,
    ) -> Result<(), Denial> {
        // A budget the header stage spent already was recorded there (a `log` note).
        let scan =
            screens_body(rule, request) && header.threat_scan_used <= self.threat_scan_max_bytes;
        let mut scanner =
            screen::threats::Scanner::resume(self.threat_scan_max_bytes, header.threat_scan_used);
        let mut found: Option<Reason> = None;
        if let Some(rules) = &rule.body {
            let mut on_string = |s: &str| {
                if scan && found.is_none() {
                    found = scanner.scan_text(s);
                }
            };
            rules.check_body(request, body, &mut on_string)?;
        }
        // JSON bodies of a `body` block were screened while checked.
        let screened = rule.body.is_some() && BodyRules::json_media(request);
        if scan && found.is_none() && !screened {
            found = scanner.scan_body(request.header("content-type"), body);
        }
        decision.threat_scan_used = scanner.used();
        screen::apply_threat(rule.threats, found, decision)
    }

    /// Stage 5 for a body that passed `max_bytes` while it streamed in.
    pub fn body_overflow(&self, header: &Decision) -> Decision {
        let rule = self.rule_of(header);
        let mut decision = body_decision(header);
        if let Some(rule) = rule {
            match &rule.body {
                Some(rules) => decision.verdict = Verdict::Deny(rules.overflow()),
                // Buffered for screening only, up to the budget: too large to screen.
                None if rule.threats == ThreatMode::Block => {
                    let found = Some(Reason::ThreatScanLimit);
                    if let Err(denial) = screen::apply_threat(rule.threats, found, &mut decision) {
                        decision.verdict = Verdict::Deny(denial);
                    }
                }
                None => {}
            }
        }
        self.finish_body(rule, decision)
    }

    fn finish_body(&self, rule: Option<&Rule>, mut decision: Decision) -> Decision {
        mark_dry_run(&mut decision, self.mode_for(rule));
        decision
    }
}

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

/// Whether a rule screens this request's body: `threats` is not `off` and the body is not
/// compressed (under `block` a compressed body was refused from its headers; under `log` it
/// goes on unscreened rather than scanned as compressed bytes).
fn screens_body(rule: &Rule, request: &Request) -> bool {
    rule.threats != ThreatMode::Off && !body::is_compressed(request)
}

fn body_decision(header: &Decision) -> Decision {
    let mut decision = Decision::allow(header.rule.clone());
    decision.rule_index = header.rule_index;
    decision.client = header.client.clone();
    decision.logged = header.logged.clone();
    decision.threat_scan_used = header.threat_scan_used;
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile;
    use crate::policy::harden::{header_name_starts_with, same_header_name, OWNED_HEADER_PREFIX};
    use crate::policy::testing::{headers, MemoryHost};
    use crate::policy::{GlobalOutcome, SourceAddress};

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

    const GLOBAL: &str = r#"{"rate_limits":{"g":{"requests":2,"per":"minute",
        "global":{"cluster":"rls","domain":"api","failure_mode":"deny"}}},
        "rules":[{"name":"all","match":{"prefix":"/"},"rate_limit":"g"}]}"#;

    /// A compiled policy and a host whose bucket table is ready.
    fn ready(config: &str) -> (Policy, MemoryHost) {
        let policy = compile(config.as_bytes()).unwrap();
        let host = MemoryHost::default();
        policy.rate_limit_table.init(&host);
        (policy, host)
    }

    fn global_answer(over: bool, remaining: u32, reset_seconds: i64) -> limit::global::Answer {
        limit::global::parse_answer(&limit::global::tests::answer_bytes(
            over,
            Some(remaining),
            Some(reset_seconds),
            &[],
        ))
        .unwrap()
    }

    #[test]
    fn a_global_limit_asks_the_service_and_holds_its_refusal() {
        let (policy, host) = ready(GLOBAL);
        let h = headers(&GET);
        let request = Request::new(&h, Some("203.0.113.7:4242"));

        // Allowed locally: a call to make, nothing decided yet.
        let first = policy.evaluate(&request, &host);
        assert_eq!(first.verdict, Verdict::Allow);
        let call = first.global_call.clone().unwrap();
        assert_eq!((call.cluster.as_str(), call.policy), ("rls", 0));
        let ok = policy.finish_global(first, Some(global_answer(false, 1, 40)), &host);
        assert_eq!(ok.verdict, Verdict::Allow);
        assert_eq!(ok.global_outcome, Some(GlobalOutcome::Ok));
        assert!(ok
            .response_headers
            .contains(&("ratelimit".into(), "\"g\";r=1;t=40".into())));
        assert_eq!(ok.global_call, None);

        // The service says over: a 429, and a hold until its reset.
        let second = policy.evaluate(&request, &host);
        let over = policy.finish_global(second, Some(global_answer(true, 0, 30)), &host);
        assert_eq!(over.global_outcome, Some(GlobalOutcome::OverLimit));
        let denial = over.enforced_denial().unwrap();
        assert_eq!((denial.status, denial.reason), (429, Reason::RateLimited));

        // Held: refused without a call, with the time left.
        let third = policy.evaluate(&request, &host);
        assert_eq!(third.global_call, None);
        assert_eq!(third.global_outcome, Some(GlobalOutcome::RefusedLocally));
        let denial = third.enforced_denial().unwrap();
        assert!(denial
            .headers
            .contains(&("retry-after".into(), "30".into())));

        // After the reset the hold is gone and the local bucket (2 per minute) has one token
        // back: the service is asked again.
        host.advance(std::time::Duration::from_secs(31));
        let fourth = policy.evaluate(&request, &host);
        assert!(fourth.global_call.is_some(), "{fourth:?}");
        // This replica's own bucket is empty now: refused without a call (one replica never
        // admits more than the whole limit).
        let fifth = policy.evaluate(&request, &host);
        assert_eq!(fifth.global_call, None);
        assert_eq!(fifth.global_outcome, Some(GlobalOutcome::RefusedLocally));
    }

    #[test]
    fn a_request_denied_after_the_local_pass_makes_no_call() {
        let config = GLOBAL.replace(
            r#""rate_limit":"g""#,
            r#""rate_limit":"g","body":{"max_bytes":10}"#,
        );
        let (policy, host) = ready(&config);
        let h = headers(&[
            (":method", "POST"),
            (":path", "/orders"),
            ("content-length", "11"),
        ]);
        let request = Request::new(&h, Some("203.0.113.7:4242"));
        let decision = policy.evaluate(&request, &host);
        assert_eq!(decision.reason_code(), "body_too_large");
        assert_eq!(decision.global_call, None);
    }

    #[test]
    fn no_answer_follows_the_failure_mode() {
        for (mode, verdict_is_deny, outcome) in [
            ("deny", true, GlobalOutcome::FailureDenied),
            ("allow", false, GlobalOutcome::FailureAllowed),
        ] {
            let config = GLOBAL.replace(
                r#""failure_mode":"deny""#,
                &format!(r#""failure_mode":"{mode}""#),
            );
            let (policy, host) = ready(&config);
            let h = headers(&GET);
            let request = Request::new(&h, Some("203.0.113.7:4242"));
            let pending = policy.evaluate(&request, &host);
            let decision = policy.finish_global(pending, None, &host);
            assert_eq!(decision.global_outcome, Some(outcome));
            assert_eq!(
                decision.enforced_denial().is_some(),
                verdict_is_deny,
                "{mode}"
            );
            if verdict_is_deny {
                assert_eq!(
                    decision.reason_code(),
                    "rate_limit_unavailable",
                    "a 429 of its own, never a 5xx"
                );
                assert_eq!(decision.enforced_denial().unwrap().status, 429);
            }
        }
    }

    #[test]
    fn a_global_refusal_in_dry_run_is_recorded_not_enforced() {
        let config = GLOBAL.replace(
            r#""rate_limit":"g""#,
            r#""rate_limit":"g","mode":"dry_run""#,
        );
        let policy = compile(config.as_bytes()).unwrap();
        let host = MemoryHost::default();
        policy.rate_limit_table.init(&host);
        let h = headers(&GET);
        let request = Request::new(&h, Some("203.0.113.7:4242"));
        let pending = policy.evaluate(&request, &host);
        let decision = policy.finish_global(pending, Some(global_answer(true, 0, 5)), &host);
        assert!(decision.dry_run);
        assert_eq!(decision.action(), "dry_run");
        assert!(decision.enforced_denial().is_none());
    }

    #[test]
    fn empty_config_allows_and_names_the_client_only_when_asked() {
        let policy = compile(b"{}").unwrap();
        let h = headers(&GET);
        let source = SourceAddress::lazy(|| panic!("the address was read without need"));
        let mut d = policy.evaluate(
            &Request::with_lazy_source(&h, &source),
            &MemoryHost::default(),
        );
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.rule, None);
        assert_eq!(d.client, None);
        policy.resolve_client(&mut d, &Request::new(&h, Some("203.0.113.7:4242")));
        assert_eq!(d.client.as_deref(), Some("ip:203.0.113.7"));
        let mut d = policy.evaluate(&Request::new(&h, None), &MemoryHost::default());
        policy.resolve_client(&mut d, &Request::new(&h, Some("[::ffff:203.0.113.7]:1")));
        assert_eq!(d.client.as_deref(), Some("ip:203.0.113.7"));
    }

    #[test]
    fn an_unknown_client_address_never_takes_a_shared_bucket() {
        let local = r#"{"client_ip":{"xff_trusted_hops":1},
            "rate_limits":{"one":{"requests":1,"per":"hour"}},
            "rules":[{"name":"all","match":{"prefix":"/"},"rate_limit":"one"}]}"#;
        let global = GLOBAL.replacen('{', r#"{"client_ip":{"xff_trusted_hops":1},"#, 1);
        for config in [local, global.as_str()] {
            let (policy, host) = ready(config);
            for xff in ["", "garbage", "1.2.3.4,", "1.2.3.4, unknown"] {
                for _ in 0..3 {
                    let mut h = GET.to_vec();
                    h.push(("x-forwarded-for", xff));
                    let h = headers(&h);
                    let d = policy.evaluate(&Request::new(&h, Some("127.0.0.1:1")), &host);
                    assert_eq!(d.reason_code(), "client_ip_unknown", "{xff:?}");
                    assert_eq!(d.global_call, None);
                }
            }
            let h = headers(&GET);
            let d = policy.evaluate(&Request::new(&h, None), &host);
            assert_eq!(d.reason_code(), "client_ip_unknown");
            // A known address has its own bucket.
            let mut h = GET.to_vec();
            h.push(("x-forwarded-for", "garbage, 192.0.2.1"));
            let h = headers(&h);
            let d = policy.evaluate(&Request::new(&h, Some("127.0.0.1:1")), &host);
            assert_eq!(d.denial(), None, "{d:?}");
            assert_eq!(d.client.as_deref(), Some("ip:192.0.2.1"));
        }
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

    fn on(method: &str, path: &str) -> [(&'static str, String); 3] {
        [
            (":method", method.to_string()),
            (":path", path.to_string()),
            (":authority", "h".to_string()),
        ]
    }

    fn decide_on(config: &str, method: &str, path: &str) -> Decision {
        let request = on(method, path);
        let pairs: Vec<(&str, &str)> = request.iter().map(|(k, v)| (*k, v.as_str())).collect();
        decide(config, &pairs)
    }

    const WRITE_THEN_READ: &str = r#"{"rules":[
        {"name":"write","match":{"prefix":"/api/orders","methods":["POST","PUT"]}},
        {"name":"read","match":{"prefix":"/api/orders","methods":["GET"]}},
        {"name":"open","match":{"prefix":"/"}}]}"#;

    #[test]
    fn methods_match_in_any_case_and_get_covers_head() {
        for method in ["POST", "post", "Post", "pOsT"] {
            let d = decide_on(WRITE_THEN_READ, method, "/api/orders");
            assert_eq!(d.rule.as_deref(), Some("write"), "{method}");
        }
        for method in ["GET", "get", "HEAD", "head"] {
            let d = decide_on(WRITE_THEN_READ, method, "/api/orders");
            assert_eq!(d.rule.as_deref(), Some("read"), "{method}");
        }
        assert_eq!(
            decide_on(WRITE_THEN_READ, "PATCH", "/api/orders")
                .rule
                .as_deref(),
            Some("open")
        );
    }

    #[test]
    fn rules_match_the_canonical_path() {
        let config = r#"{"rules":[
            {"name":"orders","match":{"prefix":"/api/orders"}},
            {"name":"exact","match":{"path":"/admin"}},
            {"name":"folded","match":{"prefix":"/Files/","ignore_case":true}},
            {"name":"open","match":{"prefix":"/"}}]}"#;
        for path in [
            "/api/orders",
            "/api//orders",
            "//api/orders",
            "/./api/orders",
            "/api;x/orders",
            "/api/orders;v=1",
            "/%61pi/orders",
            "/api/%2e/orders?x=/",
        ] {
            assert_eq!(
                decide_on(config, "GET", path).rule.as_deref(),
                Some("orders"),
                "{path}"
            );
        }
        assert_eq!(
            decide_on(config, "GET", "/API/orders").rule.as_deref(),
            Some("open")
        );
        for path in ["/admin", "/admin/", "/admin;x", "/./admin"] {
            assert_eq!(
                decide_on(config, "GET", path).rule.as_deref(),
                Some("exact"),
                "{path}"
            );
        }
        for path in ["/files/a", "/FILES/a", "/fIlEs/a"] {
            assert_eq!(
                decide_on(config, "GET", path).rule.as_deref(),
                Some("folded"),
                "{path}"
            );
        }
        for path in [
            "/api%2Forders",
            "/api%5corders",
            "/api%252Forders",
            "/api\\orders",
            "/x/../api/orders",
            "/public/..;/api/orders",
            "*",
        ] {
            let d = decide_on(config, "GET", path);
            assert_eq!(d.reason_code(), "path_invalid", "{path}");
            assert_eq!(d.enforced_denial().map(|x| x.status), Some(400));
            assert_eq!(d.rule, None);
        }
        // Without rules nothing is matched, so nothing is refused for its path.
        assert_eq!(
            decide_on("{}", "GET", "/api%2Forders").verdict,
            Verdict::Allow
        );
    }

    #[test]
    fn other_methods_deny_answers_405_with_allow() {
        let config = WRITE_THEN_READ.replace(
            r#""methods":["GET"]}"#,
            r#""methods":["GET"]},"other_methods":"deny""#,
        );
        for method in ["PATCH", "DELETE", "patch", "OPTIONS"] {
            let d = decide_on(&config, method, "/api//orders/1");
            let denial = d.enforced_denial().unwrap();
            assert_eq!(
                (denial.status, d.reason_code()),
                (405, "method_not_allowed")
            );
            assert!(denial
                .headers
                .contains(&("allow".to_string(), "GET, HEAD".to_string())));
            assert_eq!(d.rule.as_deref(), Some("read"));
        }
        assert_eq!(
            decide_on(&config, "post", "/api/orders").rule.as_deref(),
            Some("write")
        );
        assert_eq!(
            decide_on(&config, "HEAD", "/api/orders").verdict,
            Verdict::Allow
        );
        assert_eq!(
            decide_on(&config, "DELETE", "/other").rule.as_deref(),
            Some("open")
        );
    }

    #[test]
    fn default_deny_refuses_what_no_rule_matches() {
        let config = r#"{"default":"deny","rules":[
            {"name":"orders","match":{"prefix":"/api/orders","methods":["GET"]}}]}"#;
        assert_eq!(
            decide_on(config, "GET", "/api/orders").verdict,
            Verdict::Allow
        );
        for (method, path) in [("GET", "/other"), ("DELETE", "/api/orders")] {
            let d = decide_on(config, method, path);
            assert_eq!(d.reason_code(), "no_rule", "{method} {path}");
            assert_eq!(d.enforced_denial().map(|x| x.status), Some(404));
        }
        let none = decide_on(r#"{"default":"deny"}"#, "GET", "/");
        assert_eq!(none.reason_code(), "no_rule");
        // `allow`, the default, lets them on.
        let open = config.replace(r#""default":"deny","#, "");
        assert_eq!(decide_on(&open, "GET", "/other").verdict, Verdict::Allow);
    }

    #[test]
    fn a_method_restricted_rule_shadowed_by_a_weaker_one_is_warned_about() {
        let config = r#"{"api_keys":{"clients":[{"id":"c","sha256":"a52782e3a2d4dd2f95f640b9abfb3b2a6b8e722c65f55be830f6e5f619f7f873"}]},
            "rules":[
            {"name":"write","match":{"prefix":"/api/orders","methods":["POST"]},"auth":["api_key"]},
            {"name":"read","match":{"prefix":"/api/"},"threats":"log"}]}"#;
        let policy = compile(config.as_bytes()).unwrap();
        assert_eq!(policy.warnings.len(), 1, "{:?}", policy.warnings);
        assert!(policy.warnings[0].contains("`write`") && policy.warnings[0].contains("`read`"));

        // Saying what other methods get silences it.
        let deny = config.replace(
            r#""auth":["api_key"]}"#,
            r#""auth":["api_key"],"other_methods":"deny"}"#,
        );
        assert_eq!(
            compile(deny.as_bytes()).unwrap().warnings,
            Vec::<String>::new()
        );
        // So does a later rule demanding as much.
        let strict = config.replace(r#""threats":"log"}"#, r#""auth":["api_key"]}"#);
        assert_eq!(
            compile(strict.as_bytes()).unwrap().warnings,
            Vec::<String>::new()
        );

        // No later rule: other methods match nothing and pass under `default: allow`.
        let alone = r#"{"api_keys":{"clients":[{"id":"c","sha256":"a52782e3a2d4dd2f95f640b9abfb3b2a6b8e722c65f55be830f6e5f619f7f873"}]},
            "rules":[{"name":"write","match":{"path":"/api/orders","methods":["POST"]},"auth":["api_key"]}]}"#;
        let warnings = compile(alone.as_bytes()).unwrap().warnings;
        assert!(
            warnings.len() == 1 && warnings[0].contains("match no rule"),
            "{warnings:?}"
        );
        let denied = alone.replace(r#"{"api_keys""#, r#"{"default":"deny","api_keys""#);
        assert_eq!(
            compile(denied.as_bytes()).unwrap().warnings,
            Vec::<String>::new()
        );

        // A later rule listing its own methods was meant for them; what neither takes may
        // still match no rule.
        let split = alone.replace(
            r#""auth":["api_key"]}]}"#,
            r#""auth":["api_key"]},
            {"name":"read","match":{"prefix":"/api/","methods":["GET"]},"auth":["api_key"]}]}"#,
        );
        let warnings = compile(split.as_bytes()).unwrap().warnings;
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().all(|w| w.contains("match no rule")));
        let closed = split.replace(
            r#""methods":["GET"]},"auth""#,
            r#""methods":["GET"]},"other_methods":"deny","auth""#,
        );
        assert_eq!(
            compile(closed.as_bytes()).unwrap().warnings,
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_cors_preflight_is_decided_by_the_rule_of_the_method_it_asks_about() {
        let config = r#"{"api_keys":{"from_headers":["x-api-key"],"clients":[]},"rules":[
            {"name":"write","match":{"prefix":"/api","methods":["POST"]},
             "auth":["api_key"],"cors_preflight":"allow"},
            {"name":"read","match":{"prefix":"/api","methods":["GET"]},"other_methods":"deny",
             "auth":["api_key"]}]}"#;
        let preflight = |method: &str, asks: &str| {
            decide(
                config,
                &[
                    (":method", method),
                    (":path", "/api/orders"),
                    ("origin", "https://app.example"),
                    ("access-control-request-method", asks),
                ],
            )
        };
        let d = preflight("OPTIONS", "POST");
        assert_eq!(
            (d.rule.as_deref(), d.verdict),
            (Some("write"), Verdict::Allow)
        );
        // Methods match in any case, preflights too.
        assert_eq!(preflight("options", "post").verdict, Verdict::Allow);
        let d = preflight("OPTIONS", "GET");
        assert_eq!(
            (d.rule.as_deref(), d.reason_code()),
            (Some("read"), "api_key_missing")
        );
        let d = preflight("OPTIONS", "DELETE");
        assert_eq!(
            (d.rule.as_deref(), d.reason_code()),
            (Some("read"), "method_not_allowed")
        );
        // An OPTIONS that is not a preflight is matched on its own method.
        let d = decide(config, &[(":method", "OPTIONS"), (":path", "/api/orders")]);
        assert_eq!(d.reason_code(), "method_not_allowed");
    }

    #[test]
    fn log_lines_follow_log_decisions_and_always_carry_detections() {
        let attack = [
            (":method", "GET"),
            (":path", "/x?q=1%27%20OR%20%271%27%3D%271"),
        ];
        for (log, denied, want) in [
            ("deny", false, vec![log::Level::Warn]),
            ("all", false, vec![log::Level::Info, log::Level::Warn]),
            ("off", false, vec![log::Level::Warn]),
            ("deny", true, vec![log::Level::Info]),
            ("off", true, vec![]),
        ] {
            let threats = if denied { "block" } else { "log" };
            let config = format!(
                r#"{{"log":{{"decisions":"{log}"}},
                   "rules":[{{"name":"r","match":{{"prefix":"/"}},"threats":"{threats}"}}]}}"#
            );
            let policy = compile(config.as_bytes()).unwrap();
            let h = headers(&attack);
            let request = Request::new(&h, Some("203.0.113.7:4242"));
            let mut decision = policy.evaluate(&request, &MemoryHost::default());
            let lines = policy.log_lines(&mut decision, &request);
            let levels: Vec<log::Level> = lines.iter().map(|(level, _)| *level).collect();
            assert_eq!(levels, want, "{log} {threats}");
            assert!(lines
                .iter()
                .all(|(_, line)| line.contains("ip:203.0.113.7")));
        }
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
    fn require_https_redirects_only_to_a_checked_authority() {
        let redirect = r#"{"headers":{"require_https":"redirect"}}"#;
        let location = |authority: &str, path: &str| {
            let pairs = [
                (":method", "GET"),
                (":path", path),
                (":authority", authority),
                ("x-forwarded-proto", "http"),
            ];
            let d = decide(redirect, &pairs);
            let denial = d.enforced_denial().unwrap().clone();
            assert_eq!(denial.reason, Reason::HttpsRequired);
            let location = denial
                .headers
                .iter()
                .find(|(n, _)| n == "location")
                .map(|(_, v)| v.clone());
            assert_eq!(denial.status, if location.is_some() { 308 } else { 403 });
            location
        };
        for ok in [
            "example.com",
            "example.com:8443",
            "api-1.example_x.com.",
            "192.0.2.1",
            "192.0.2.1:80",
            "[2001:db8::1]",
            "[2001:db8::1]:443",
            "localhost:65535",
        ] {
            assert_eq!(
                location(ok, "/a?b=1").as_deref(),
                Some(format!("https://{ok}/a?b=1").as_str()),
                "{ok}"
            );
        }
        for hostile in [
            "evil.example/x",
            "evil.example\\x",
            "good.example@evil.example",
            "evil.example?",
            "evil.example#",
            "example.com:",
            "example.com:65536",
            "example.com:80:80",
            "example.com:8a",
            "exa mple.com",
            "example.com\r\nset-cookie: a=b",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[v1.fe]",
            "[not-ip]:80",
            "%65vil.example",
            "a,b",
            "évil.example",
            &"a".repeat(300),
        ] {
            assert_eq!(location(hostile, "/a"), None, "{hostile:?}");
        }
        // A request target that is not a path is not redirected either.
        assert_eq!(location("example.com", "*"), None);
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

    #[test]
    fn owned_headers_are_stripped_in_every_spelling_an_upstream_folds() {
        // As compiled from `client_header`, `claim_to_headers` and `payload_header`.
        let policy = Policy {
            owned_request_headers: vec![
                "x-client-id".into(),
                "x-jwt-sub".into(),
                "x-jwt-payload".into(),
            ],
            ..Policy::default()
        };
        let mut forged = GET.to_vec();
        forged.extend([
            ("x_jwt_sub", "admin"),
            ("X-Jwt-Sub", "admin"),
            ("x-jwt_sub", "admin"),
            ("X_JWT_PAYLOAD", "e30"),
            ("x_client_id", "partner-a"),
            ("x_api_guard_client", "admin"),
            ("X_Api-Guard-Dry-Run", "none"),
            // Not owned: a different name once folded.
            ("x-jwt-subject", "kept"),
            ("xjwtsub", "kept"),
        ]);
        let h = headers(&forged);
        let d = policy.evaluate(&Request::new(&h, None), &MemoryHost::default());
        assert_eq!(
            d.upstream_remove,
            vec![
                "x_jwt_sub",
                "X-Jwt-Sub",
                "x-jwt_sub",
                "X_JWT_PAYLOAD",
                "x_client_id",
                "x_api_guard_client",
                "X_Api-Guard-Dry-Run"
            ]
        );
        assert!(same_header_name("x-api-guard-", "X_API_GUARD_"));
        assert!(!same_header_name("x-a", "x-ab"));
        assert!(header_name_starts_with(
            "x_api_guard_anything",
            OWNED_HEADER_PREFIX
        ));
        assert!(!header_name_starts_with("x-api-guard", OWNED_HEADER_PREFIX));
    }
}
