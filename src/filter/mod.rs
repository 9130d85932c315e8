//! The shell: the only code that talks to Envoy. It turns host calls into a plain
//! [`Request`], asks the core for a [`Decision`] and applies it.

mod host;
mod jwks;
mod metrics;
mod native;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};

use crate::config;
use crate::policy::body::{BodyPlan, BodyProgress, BodyStep};
use crate::policy::limit::global;
use crate::policy::{Decision, HeaderEdit, Policy, Request, SourceAddress};

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
    jwks: jwks::Fetcher,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _: usize, body_size: usize, _: usize) {
        jwks::on_response(self, token_id, body_size);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        native::detect_once();
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match config::compile(&bytes) {
            Ok(policy) => {
                for warning in &policy.warnings {
                    log::warn!("api-guard: configuration warning: {warning}");
                }
                if !policy.rate_limits.is_empty() {
                    // Every bucket slot exists before the first request (shared data has no
                    // delete: the table is the rate limiter's whole memory).
                    policy.rate_limit_table.init(&EnvoyHost);
                }
                self.policy = Some(Rc::new(policy));
                if self.metrics.is_none() {
                    self.metrics = Some(Rc::new(Metrics::define()));
                }
                jwks::on_configure(self);
                true
            }
            Err(error) => {
                log::error!("api-guard: configuration refused: {error}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        jwks::on_tick(self);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let policy = self.policy.clone()?;
        let metrics = self.metrics.clone()?;
        Some(Box::new(Filter {
            policy,
            metrics,
            denied_locally: false,
            response_headers: Vec::new(),
            pending: None,
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
    /// A request the core has not finished deciding.
    pending: Option<Pending>,
}

/// What the filter keeps of a request between callbacks: its headers and the header
/// decision, while it waits for the rate limit service or for its body.
struct Pending {
    headers: Vec<(String, String)>,
    source: SourceAddress,
    end_of_stream: bool,
    /// The header decision; once allowed, recorded only when the body is decided.
    decision: Decision,
    waiting_for: WaitingFor,
}

enum WaitingFor {
    /// The rate limit service's answer.
    GlobalLimit,
    /// The body (stage 5), counted or buffered by the core's plan.
    Body(BodyProgress),
}

/// What follows a header decision once its changes towards the upstream are made.
enum Next {
    /// Decided: answer or let the request on.
    Done(Action),
    /// The body must be seen first.
    Body(Decision, BodyPlan),
}

impl Context for Filter {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        let Some(Pending {
            headers,
            source,
            end_of_stream,
            decision,
            ..
        }) = self
            .pending
            .take_if(|p| matches!(p.waiting_for, WaitingFor::GlobalLimit))
        else {
            return;
        };
        // Any gRPC status but OK (unavailable, deadline exceeded, unknown cluster...) or an
        // unreadable message is "no answer": the policy's failure mode decides.
        let answer = if status_code == 0 {
            self.get_grpc_call_response_body(0, response_size)
                .and_then(|bytes| global::parse_answer(&bytes))
        } else {
            None
        };
        let decision = self.policy.finish_global(decision, answer, &EnvoyHost);
        let request =
            Request::with_lazy_source(&headers, &source).with_end_of_stream(end_of_stream);
        let next = self.proceed(&request, decision);
        let action = self.follow(next, headers, source, end_of_stream);
        if action == Action::Continue {
            self.resume_http_request();
        }
    }
}

/// A call that Envoy refuses to start (most often: no such cluster) is a configuration
/// problem; say it once per worker, not once per request. The counters count each one.
fn warn_once_call_failed(cluster: &str, status: Status) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "api-guard: cannot call the rate limit service on cluster {cluster:?} ({status:?}); \
             is the cluster defined, with HTTP/2? The policy's failure_mode applies"
        );
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let headers = request_headers(self.get_http_request_headers_bytes());
        let source = SourceAddress::lazy(host::source_address);
        let request =
            Request::with_lazy_source(&headers, &source).with_end_of_stream(end_of_stream);
        crate::test_hooks::crash_if_asked(request.path());
        let mut decision = self.policy.evaluate(&request, &EnvoyHost);
        if let Some(call) = decision.global_call.as_ref() {
            match self.dispatch_grpc_call(
                &call.cluster,
                global::SERVICE,
                global::METHOD,
                Vec::new(),
                Some(&call.message),
                call.timeout,
            ) {
                Ok(_token) => {
                    self.pending = Some(Pending {
                        headers,
                        source,
                        end_of_stream,
                        decision,
                        waiting_for: WaitingFor::GlobalLimit,
                    });
                    return Action::Pause;
                }
                Err(status) => {
                    warn_once_call_failed(&call.cluster, status);
                    decision = self.policy.finish_global(decision, None, &EnvoyHost);
                }
            }
        }
        let next = self.proceed(&request, decision);
        self.follow(next, headers, source, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.body_progress() {
            Some(body) => {
                let step = body.on_body(body_size, end_of_stream);
                self.take_body_step(step)
            }
            None => Action::Continue,
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // A body that ends with trailers (HTTP/2, gRPC) never has `end_of_stream` set on a
        // body callback: decide it here, or the buffered body would go on unchecked.
        match self.body_progress() {
            Some(body) => {
                let step = body.on_trailers();
                self.take_body_step(step)
            }
            None => Action::Continue,
        }
    }

    fn on_log(&mut self) {
        // A request that ended before its body was decided is recorded as its headers were.
        if let Some(mut pending) = self.pending.take() {
            if matches!(&pending.waiting_for, WaitingFor::Body(body) if !body.is_decided()) {
                let request = Request::with_lazy_source(&pending.headers, &pending.source);
                self.record(&mut pending.decision, &request);
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.denied_locally {
            // Our own reply already carries the hardening headers.
            return Action::Continue;
        }
        let hardening = &self.policy.hardening;
        if !hardening.response_actions().is_empty() {
            // One host call reads the names present; the core plans the rest, each a host
            // call only when it changes something (most removal-list headers never appear).
            let present = self.get_http_response_headers_bytes();
            let has = |name: &str| present.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
            for edit in hardening.response_edits(has) {
                match edit {
                    HeaderEdit::Remove(name) => self.set_http_response_header(name, None),
                    HeaderEdit::Replace(name, value) => {
                        self.set_http_response_header(name, Some(value));
                    }
                    HeaderEdit::Add(name, value) => self.add_http_response_header(name, value),
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
    /// Applies a header decision: header changes towards the upstream, then either the
    /// body to wait for (stage 5) or the decision recorded and answered or let on.
    fn proceed(&mut self, request: &Request, mut decision: Decision) -> Next {
        let plan = self.policy.body_plan(request, &decision);
        for name in &decision.upstream_remove {
            self.set_http_request_header(name, None);
        }
        for (name, value) in &decision.upstream_set {
            self.set_http_request_header(name, Some(value));
        }
        if plan != BodyPlan::Skip {
            return Next::Body(decision, plan);
        }
        self.record(&mut decision, request);
        Next::Done(self.apply(&decision))
    }

    /// Does what [`Filter::proceed`] said. A request whose body the core must see is kept,
    /// and recorded once the body is decided. The headers go on: with the proxy-wasm ABI
    /// 0.2, pausing them would stop Envoy from handing us the body at all
    /// (StopAllIterationAndWatermark). The upstream gets no body byte of a buffered body
    /// before it passed; a denial resets the upstream request.
    fn follow(
        &mut self,
        next: Next,
        headers: Vec<(String, String)>,
        source: SourceAddress,
        end_of_stream: bool,
    ) -> Action {
        let (decision, plan) = match next {
            Next::Done(action) => return action,
            Next::Body(decision, plan) => (decision, plan),
        };
        self.pending = Some(Pending {
            headers,
            source,
            end_of_stream,
            decision,
            waiting_for: WaitingFor::Body(BodyProgress::new(plan)),
        });
        Action::Continue
    }

    /// The body being counted or buffered, if any.
    fn body_progress(&mut self) -> Option<&mut BodyProgress> {
        match self.pending.as_mut().map(|p| &mut p.waiting_for) {
            Some(WaitingFor::Body(body)) => Some(body),
            _ => None,
        }
    }

    /// Does what the core's body bookkeeping answered: once the body is complete (its
    /// buffered bytes checked) or past its bound, records the decision and applies it.
    fn take_body_step(&mut self, step: BodyStep) -> Action {
        match step {
            BodyStep::Continue => return Action::Continue,
            BodyStep::Pause => return Action::Pause,
            BodyStep::Overflow | BodyStep::Complete { .. } => {}
        }
        let Some(pending) = self.pending.take() else {
            return Action::Continue;
        };
        let request = Request::with_lazy_source(&pending.headers, &pending.source)
            .with_end_of_stream(pending.end_of_stream);
        let mut decision = match step {
            BodyStep::Overflow => self.policy.body_overflow(&pending.decision),
            BodyStep::Complete {
                buffered: Some(size),
            } => {
                let body = self.get_http_request_body(0, size).unwrap_or_default();
                self.policy
                    .evaluate_body(&request, &body, &pending.decision)
            }
            _ => pending.decision.clone(),
        };
        self.record(&mut decision, &request);
        self.pending = Some(pending);
        // The headers have gone on already: a dry-run body denial is recorded (metrics, log,
        // filter state) but cannot add its header towards the upstream.
        self.apply(&decision)
    }

    /// Answers an enforced denial, or lets the request go on.
    fn apply(&mut self, decision: &Decision) -> Action {
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
                self.response_headers = decision.response_headers.clone();
                Action::Continue
            }
        }
    }

    /// Counts the decision, publishes it to the access log and logs it as configured.
    fn record(&self, decision: &mut Decision, request: &Request) {
        self.metrics.count(decision);
        let rule = decision.rule.as_deref().unwrap_or("-");
        self.set_property(vec![STATE_DECISION], Some(decision.action().as_bytes()));
        self.set_property(vec![STATE_REASON], Some(decision.reason_code().as_bytes()));
        self.set_property(vec![STATE_RULE], Some(rule.as_bytes()));
        for (level, line) in self.policy.log_lines(decision, request) {
            log::log!(level, "{line}");
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
