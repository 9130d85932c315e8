//! The shell: the only code that talks to Envoy. It turns host calls into a plain
//! [`Request`], asks the core for a [`Decision`] and applies it.

mod host;
mod metrics;

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::config;
use crate::policy::{Decision, HeaderAction, LogDecisions, Policy, Request};

use host::EnvoyHost;
use metrics::Metrics;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // A panic traps the VM for every request of this worker: say so loudly first.
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(LogLevel::Critical, &format!("api-guard: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Names under which the decision is published to Envoy's filter state, readable in the access
/// log as `%FILTER_STATE(wasm.<name>:PLAIN)%`.
const STATE_DECISION: &str = "api_guard_decision";
const STATE_REASON: &str = "api_guard_reason";
const STATE_RULE: &str = "api_guard_rule";

#[derive(Default)]
struct Root {
    policy: Option<Rc<Policy>>,
    metrics: Option<Rc<Metrics>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match config::compile(&bytes) {
            Ok(policy) => {
                if !policy.rate_limits.is_empty() {
                    // Every bucket slot exists before the first request (shared data has no
                    // delete: the table is the rate limiter's whole memory).
                    policy.rate_limit_table.init(&EnvoyHost);
                }
                self.policy = Some(Rc::new(policy));
                if self.metrics.is_none() {
                    self.metrics = Some(Rc::new(Metrics::define()));
                }
                true
            }
            Err(error) => {
                log::error!("api-guard: configuration refused: {error}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let policy = self.policy.clone()?;
        let metrics = self.metrics.clone()?;
        Some(Box::new(Filter {
            policy,
            metrics,
            denied_locally: false,
            response_headers: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    /// The policy in force when the request arrived: a reconfiguration never changes it midway.
    policy: Rc<Policy>,
    metrics: Rc<Metrics>,
    denied_locally: bool,
    /// Added to the upstream's response (rate-limit quota fields).
    response_headers: Vec<(String, String)>,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = request_headers(self.get_http_request_headers_bytes());
        let source = self
            .get_property(vec!["source", "address"])
            .and_then(|b| String::from_utf8(b).ok());
        let request = Request::new(&headers, source.as_deref());
        let decision = self.policy.evaluate(&request, &EnvoyHost);
        self.record(&decision, &request);

        for name in &decision.upstream_remove {
            self.set_http_request_header(name, None);
        }
        for (name, value) in &decision.upstream_set {
            self.set_http_request_header(name, Some(value));
        }
        match decision.enforced_denial() {
            Some(denial) => {
                let body = denial.problem_json();
                let mut reply: Vec<(&str, &str)> =
                    vec![("content-type", "application/problem+json")];
                reply.extend(denial.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
                reply.extend(
                    self.policy
                        .hardening
                        .local_reply_headers()
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str())),
                );
                self.denied_locally = true;
                self.send_http_response(u32::from(denial.status), reply, Some(body.as_bytes()));
                Action::Pause
            }
            None => {
                self.response_headers = decision.response_headers;
                Action::Continue
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.denied_locally {
            // Our own reply already carries the hardening headers.
            return Action::Continue;
        }
        let actions = self.policy.hardening.response_actions();
        if !actions.is_empty() {
            // One host call reads the names present; a removal or a set-if-absent is a host
            // call only when it changes something (most removal-list headers never appear).
            let present = self.get_http_response_headers_bytes();
            let has = |name: &str| present.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
            for action in actions {
                match action {
                    HeaderAction::Remove(name) => {
                        if has(name) {
                            self.set_http_response_header(name, None);
                        }
                    }
                    HeaderAction::Set(name, value) => {
                        self.set_http_response_header(name, Some(value));
                    }
                    HeaderAction::SetIfAbsent(name, value) => {
                        if !has(name) {
                            self.set_http_response_header(name, Some(value));
                        }
                    }
                }
            }
        }
        for (name, value) in &self.response_headers {
            self.set_http_response_header(name, Some(value));
        }
        Action::Continue
    }
}

impl Filter {
    /// Counts the decision, publishes it to the access log and logs it as configured.
    fn record(&self, decision: &Decision, request: &Request) {
        self.metrics.count(decision);
        let rule = decision.rule.as_deref().unwrap_or("-");
        self.set_property(vec![STATE_DECISION], Some(decision.action().as_bytes()));
        self.set_property(vec![STATE_REASON], Some(decision.reason_code().as_bytes()));
        self.set_property(vec![STATE_RULE], Some(rule.as_bytes()));
        let log_it = match self.policy.log {
            LogDecisions::All => true,
            LogDecisions::Deny => decision.denial().is_some(),
            LogDecisions::Off => false,
        };
        if log_it {
            log::info!("{}", decision.log_line(request.method(), request.path()));
        }
    }
}

/// The request headers as text. Values are bytes on the wire: one that is not UTF-8 (obs-text
/// such as Latin-1) is read with U+FFFD in place of the bad bytes, so it can never match a
/// configured value; the SDK's `get_http_request_headers` would panic on it and take the
/// worker's VM down. Names are tokens, which Envoy's codecs validate.
fn request_headers(raw: Vec<(String, Vec<u8>)>) -> Vec<(String, String)> {
    raw.into_iter()
        .map(|(name, value)| {
            let value = String::from_utf8(value)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (name, value)
        })
        .collect()
}
