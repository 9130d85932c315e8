//! The native shell: api-guard as an Envoy dynamic module (`envoy.filters.http.dynamic_modules`,
//! Envoy 1.40). Like the wasm shell (src/filter) it builds a [`Request`], asks the core for a
//! [`Decision`] and applies it; it holds no policy. All of the crate's `unsafe` lives in this
//! module (the FFI), and every exported hook catches panics and fails closed.
//!
//! Differences from the wasm build: where a rule buffers the body, the request headers are
//! held until the body has passed (the upstream never sees a refused request); the rate-limit
//! store is this process's memory; remote JWKS and global limits are not wired yet and such
//! configurations are refused at load.

mod abi;
mod host;
mod stream;

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::config;
use crate::policy::auth::jwt::KeySource;
use crate::policy::body::{BodyPlan, BodyProgress, BodyStep};
use crate::policy::{Decision, HeaderEdit, Policy, Reason, Request};

use abi::{BodyType, HeaderType};
use host::NativeHost;
use stream::Stream;

/// The fail-closed answer when a hook panics: never a pass-through.
const INTERNAL_ERROR_BODY: &str = r#"{"type":"about:blank","title":"Internal Server Error","status":500,"reason":"internal_error"}"#;

/// Filter-state keys of the decision, readable in the access log as
/// `%FILTER_STATE(wasm.api_guard_decision:PLAIN)%`: the wasm build's names, so that one
/// access-log format serves both builds.
const STATE_DECISION: &str = "wasm.api_guard_decision";
const STATE_REASON: &str = "wasm.api_guard_reason";
const STATE_RULE: &str = "wasm.api_guard_rule";

/// One loaded `filter_config`: the compiled policy and its counters.
struct FilterConfig {
    policy: Arc<Policy>,
    metrics: Metrics,
}

/// Counter ids, defined at configuration time (`api_guard.allow`, `api_guard.deny.<reason>`,
/// `api_guard.dry_run.<reason>`, `api_guard.log.<reason>`, as in the wasm build).
struct Metrics {
    allow: Option<usize>,
    /// Indexed like [`Reason::ALL`].
    deny: Vec<Option<usize>>,
    dry_run: Vec<Option<usize>>,
    logged: Vec<Option<usize>>,
}

impl Metrics {
    fn define(config: abi::ConfigEnvoyPtr) -> Self {
        let per_reason = |prefix: &str| -> Vec<Option<usize>> {
            Reason::ALL
                .iter()
                .map(|r| {
                    stream::define_counter(config, &format!("api_guard.{prefix}.{}", r.code()))
                })
                .collect()
        };
        Metrics {
            allow: stream::define_counter(config, "api_guard.allow"),
            deny: per_reason("deny"),
            dry_run: per_reason("dry_run"),
            logged: per_reason("log"),
        }
    }

    fn count(&self, stream: Stream, decision: &Decision) {
        let of = |table: &[Option<usize>], reason: Reason| {
            Reason::ALL
                .iter()
                .position(|r| *r == reason)
                .and_then(|i| table.get(i).copied().flatten())
        };
        let id = match decision.denial() {
            None => self.allow,
            Some(denial) if decision.dry_run => of(&self.dry_run, denial.reason),
            Some(denial) => of(&self.deny, denial.reason),
        };
        if let Some(id) = id {
            stream.increment_counter(id);
        }
        for reason in &decision.logged {
            if let Some(id) = of(&self.logged, *reason) {
                stream.increment_counter(id);
            }
        }
    }
}

/// One HTTP stream.
struct Filter {
    /// The configuration in force when the stream began (Envoy keeps it alive until the
    /// stream's filter is destroyed).
    config: Arc<FilterConfig>,
    denied_locally: bool,
    /// Added to the upstream's response (rate-limit quota fields).
    response_headers: Vec<(String, String)>,
    /// A request whose body the core must see before it is decided.
    pending: Option<Pending>,
}

struct Pending {
    headers: Vec<(String, String)>,
    source: Option<String>,
    end_of_stream: bool,
    decision: Decision,
    body: BodyProgress,
    /// The body is buffered whole (not only counted).
    buffering: bool,
}

/// Envoy's log through the `log` crate, so the core's lines reach it too.
struct EnvoyLogger;

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => abi::LogLevel::Error,
            log::Level::Warn => abi::LogLevel::Warn,
            log::Level::Info => abi::LogLevel::Info,
            log::Level::Debug => abi::LogLevel::Debug,
            log::Level::Trace => abi::LogLevel::Trace,
        };
        stream::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

static LOGGER: EnvoyLogger = EnvoyLogger;

/// Runs a hook body, turning a panic into `fallback` (already logged by the panic hook).
fn guarded<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// What the native build cannot enforce yet: refused, never half-enforced.
fn unsupported(policy: &Policy) -> Option<String> {
    for provider in &policy.jwt_providers {
        if matches!(provider.keys, KeySource::Remote(_)) {
            return Some(format!(
                "jwt_providers.{}.remote_jwks: not supported by the native build yet (no HTTP \
                 callout); use local_jwks, or the wasm build",
                provider.name
            ));
        }
    }
    for limit in &policy.rate_limits {
        if limit.global.is_some() {
            return Some(format!(
                "rate_limits.{}.global: not supported by the native build yet (no rate limit \
                 service call); use a local limit, or the wasm build",
                limit.name
            ));
        }
    }
    None
}

// ----------------------------------------------------------------------------- program

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guarded(std::ptr::null(), || {
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Info);
        std::panic::set_hook(Box::new(|info| {
            stream::log(
                abi::LogLevel::Critical,
                &format!("api-guard: panic: {info}"),
            );
        }));
        abi::ABI_VERSION.as_ptr()
    })
}

// ----------------------------------------------------------------------- configuration

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: abi::ConfigEnvoyPtr,
    _name: abi::EnvoyBuffer,
    config: abi::EnvoyBuffer,
) -> abi::ConfigModulePtr {
    guarded(std::ptr::null(), || {
        // SAFETY: Envoy lends the configuration bytes for the duration of this hook; they
        // are copied before it returns.
        let bytes = unsafe { envoy_bytes(config) };
        let policy = match config::compile(&bytes) {
            Ok(policy) => policy,
            Err(error) => {
                log::error!("api-guard: configuration refused: {error}");
                return std::ptr::null();
            }
        };
        if let Some(error) = unsupported(&policy) {
            log::error!("api-guard: configuration refused: {error}");
            return std::ptr::null();
        }
        for warning in &policy.warnings {
            log::warn!("api-guard: configuration warning: {warning}");
        }
        if !policy.rate_limits.is_empty() {
            policy.rate_limit_table.init(&NativeHost);
        }
        let metrics = Metrics::define(config_envoy);
        let config = Arc::new(FilterConfig {
            policy: Arc::new(policy),
            metrics,
        });
        Arc::into_raw(config).cast()
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: abi::ConfigModulePtr) {
    guarded((), || {
        if !config.is_null() {
            // SAFETY: `config` came from `Arc::into_raw` in `config_new`, and Envoy destroys
            // it once; streams hold their own clones.
            drop(unsafe { Arc::from_raw(config.cast::<FilterConfig>()) });
        }
    })
}

/// Copies bytes Envoy lends.
///
/// # Safety
/// `buffer` must be null or point to `length` readable bytes for the duration of the call.
unsafe fn envoy_bytes(buffer: abi::EnvoyBuffer) -> Vec<u8> {
    if buffer.ptr.is_null() || buffer.length == 0 {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(buffer.ptr.cast::<u8>(), buffer.length) }.to_vec()
}

// ----------------------------------------------------------------------------- streams

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: abi::ConfigModulePtr,
    _filter_envoy: abi::FilterEnvoyPtr,
) -> abi::FilterModulePtr {
    guarded(std::ptr::null(), || {
        if config.is_null() {
            return std::ptr::null();
        }
        let config = config.cast::<FilterConfig>();
        // SAFETY: `config` is a live `Arc` from `config_new` (Envoy destroys it only after
        // its filters); we take one more reference for this stream.
        let config = unsafe {
            Arc::increment_strong_count(config);
            Arc::from_raw(config)
        };
        let filter = Box::new(Filter {
            config,
            denied_locally: false,
            response_headers: Vec::new(),
            pending: None,
        });
        Box::into_raw(filter).cast_const().cast()
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: abi::FilterModulePtr) {
    guarded((), || {
        if !filter.is_null() {
            // SAFETY: `filter` came from `Box::into_raw` in `filter_new`; Envoy destroys it
            // once and calls no hook on it afterwards.
            drop(unsafe { Box::from_raw(filter.cast::<Filter>().cast_mut()) });
        }
    })
}

/// The stream's filter for one hook.
///
/// # Safety
/// `filter` must come from `filter_new` and not be destroyed; Envoy calls the hooks of one
/// stream one at a time on its worker thread, so the `&mut` is unique for the hook.
unsafe fn filter_of<'a>(filter: abi::FilterModulePtr) -> Option<&'a mut Filter> {
    // SAFETY: guaranteed by the caller.
    unsafe { filter.cast::<Filter>().cast_mut().as_mut() }
}

/// Answers 500 with a problem+json body when a hook failed: never a pass-through.
fn fail_closed(stream: Stream) {
    stream.send_response(
        500,
        &[("content-type", "application/problem+json")],
        INTERNAL_ERROR_BODY.as_bytes(),
        "api_guard_internal_error",
    );
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: abi::FilterEnvoyPtr,
    filter: abi::FilterModulePtr,
    end_of_stream: bool,
) -> abi::HeadersStatus {
    let stream = Stream::new(envoy);
    guarded(PANICKED, || {
        // SAFETY: `filter` is this stream's filter (see `filter_of`).
        match unsafe { filter_of(filter) } {
            Some(filter) => filter.on_request_headers(stream, end_of_stream),
            None => {
                fail_closed(stream);
                abi::HEADERS_STOP_ITERATION
            }
        }
    })
    .or_fail_closed(stream, abi::HEADERS_STOP_ITERATION)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy: abi::FilterEnvoyPtr,
    filter: abi::FilterModulePtr,
    end_of_stream: bool,
) -> abi::BodyStatus {
    let stream = Stream::new(envoy);
    guarded(PANICKED, || {
        // SAFETY: `filter` is this stream's filter (see `filter_of`).
        match unsafe { filter_of(filter) } {
            Some(filter) => filter.on_request_body(stream, end_of_stream),
            None => abi::BODY_CONTINUE,
        }
    })
    .or_fail_closed(stream, abi::BODY_STOP_ITERATION_NO_BUFFER)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: abi::FilterEnvoyPtr,
    filter: abi::FilterModulePtr,
) -> abi::TrailersStatus {
    let stream = Stream::new(envoy);
    guarded(PANICKED, || {
        // SAFETY: `filter` is this stream's filter (see `filter_of`).
        match unsafe { filter_of(filter) } {
            Some(filter) => filter.on_request_trailers(stream),
            None => abi::TRAILERS_CONTINUE,
        }
    })
    .or_fail_closed(stream, abi::TRAILERS_STOP_ITERATION)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: abi::FilterEnvoyPtr,
    filter: abi::FilterModulePtr,
    _end_of_stream: bool,
) -> abi::HeadersStatus {
    let stream = Stream::new(envoy);
    guarded(PANICKED, || {
        // SAFETY: `filter` is this stream's filter (see `filter_of`).
        if let Some(filter) = unsafe { filter_of(filter) } {
            filter.on_response_headers(stream);
        }
        abi::HEADERS_CONTINUE
    })
    .or_fail_closed(stream, abi::HEADERS_STOP_ITERATION)
}

/// A hook's answer, or the marker that it panicked.
const PANICKED: u32 = u32::MAX;

trait OrFailClosed {
    fn or_fail_closed(self, stream: Stream, status: u32) -> u32;
}

impl OrFailClosed for u32 {
    /// A panicked hook answers 500 and stops the request.
    fn or_fail_closed(self, stream: Stream, status: u32) -> u32 {
        if self == PANICKED {
            fail_closed(stream);
            status
        } else {
            self
        }
    }
}

// The hooks Envoy 1.40 requires that this shell has no use for yet.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
    _end_of_stream: bool,
) -> abi::BodyStatus {
    abi::BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
) -> abi::TrailersStatus {
    abi::TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    envoy: abi::FilterEnvoyPtr,
    filter: abi::FilterModulePtr,
) {
    guarded((), || {
        // SAFETY: `filter` is this stream's filter (see `filter_of`).
        if let Some(filter) = unsafe { filter_of(filter) } {
            filter.on_stream_complete(Stream::new(envoy));
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *mut abi::EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *mut abi::EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
    _stream_id: u64,
    _headers: *mut abi::EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
    _stream_id: u64,
    _data: *const abi::EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
    _stream_id: u64,
    _trailers: *mut abi::EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
) {
}

// ------------------------------------------------------------------------- the filter

impl Filter {
    fn on_request_headers(&mut self, stream: Stream, end_of_stream: bool) -> abi::HeadersStatus {
        let headers = stream.headers(HeaderType::RequestHeader);
        let source = stream.source_address();
        let policy = Arc::clone(&self.config.policy);
        let request = Request::new(&headers, source.as_deref()).with_end_of_stream(end_of_stream);
        crate::test_hooks::crash_if_asked(request.path());
        let mut decision = policy.evaluate(&request, &NativeHost);
        if decision.global_call.is_some() {
            // Refused at load (see `unsupported`); should one appear, the policy's failure
            // mode decides, as when the service cannot answer.
            decision = policy.finish_global(decision, None, &NativeHost);
        }
        let plan = policy.body_plan(&request, &decision);
        for name in &decision.upstream_remove {
            stream.set_header(HeaderType::RequestHeader, name, None);
        }
        for (name, value) in &decision.upstream_set {
            stream.set_header(HeaderType::RequestHeader, name, Some(value));
        }
        if plan == BodyPlan::Skip {
            self.record(stream, &mut decision, &request);
            return if self.apply(stream, &decision) {
                abi::HEADERS_CONTINUE
            } else {
                abi::HEADERS_STOP_ITERATION
            };
        }
        let buffering = matches!(plan, BodyPlan::Buffer { .. });
        self.pending = Some(Pending {
            headers,
            source,
            end_of_stream,
            decision,
            body: BodyProgress::new(plan),
            buffering,
        });
        if end_of_stream {
            // No body will come: decide the empty one now.
            let step = self
                .pending
                .as_mut()
                .map_or(BodyStep::Continue, |p| p.body.on_body(0, true));
            return if self.take_body_step(stream, step, false) {
                abi::HEADERS_CONTINUE
            } else {
                abi::HEADERS_STOP_ITERATION
            };
        }
        // A body the core checks as a whole: hold the headers until it has passed, so the
        // upstream never sees a request we refuse. A body only counted streams on.
        if buffering {
            abi::HEADERS_STOP_ITERATION
        } else {
            abi::HEADERS_CONTINUE
        }
    }

    /// The whole body seen so far (buffering) or this chunk (counting), in bytes.
    fn body_size_now(stream: Stream, buffering: bool) -> usize {
        let buffered = stream.body_size(BodyType::BufferedRequestBody);
        if stream.received_is_buffered() {
            return buffered;
        }
        let received = stream.body_size(BodyType::ReceivedRequestBody);
        if buffering {
            buffered.saturating_add(received)
        } else {
            received
        }
    }

    fn on_request_body(&mut self, stream: Stream, end_of_stream: bool) -> abi::BodyStatus {
        let Some(pending) = self.pending.as_mut() else {
            return abi::BODY_CONTINUE;
        };
        let size = Self::body_size_now(stream, pending.buffering);
        let step = pending.body.on_body(size, end_of_stream);
        match step {
            BodyStep::Continue => abi::BODY_CONTINUE,
            BodyStep::Pause => abi::BODY_STOP_ITERATION_AND_BUFFER,
            _ => {
                if self.take_body_step(stream, step, true) {
                    abi::BODY_CONTINUE
                } else {
                    abi::BODY_STOP_ITERATION_NO_BUFFER
                }
            }
        }
    }

    fn on_request_trailers(&mut self, stream: Stream) -> abi::TrailersStatus {
        let Some(pending) = self.pending.as_mut() else {
            return abi::TRAILERS_CONTINUE;
        };
        let step = pending.body.on_trailers();
        match step {
            BodyStep::Continue => abi::TRAILERS_CONTINUE,
            BodyStep::Pause => abi::TRAILERS_STOP_ITERATION,
            _ => {
                if self.take_body_step(stream, step, false) {
                    abi::TRAILERS_CONTINUE
                } else {
                    abi::TRAILERS_STOP_ITERATION
                }
            }
        }
    }

    /// Decides a complete or overflowing body and applies the decision; true: let the
    /// request on. `in_body_hook`: the latest chunk is still Envoy's "received" data.
    fn take_body_step(&mut self, stream: Stream, step: BodyStep, in_body_hook: bool) -> bool {
        let Some(pending) = self.pending.take() else {
            return true;
        };
        let policy = Arc::clone(&self.config.policy);
        let request = Request::new(&pending.headers, pending.source.as_deref())
            .with_end_of_stream(pending.end_of_stream);
        let mut decision = match step {
            BodyStep::Overflow => policy.body_overflow(&pending.decision),
            BodyStep::Complete { buffered: Some(_) } => {
                let mut body = Vec::new();
                stream.read_body(BodyType::BufferedRequestBody, &mut body);
                if in_body_hook && !stream.received_is_buffered() {
                    stream.read_body(BodyType::ReceivedRequestBody, &mut body);
                }
                policy.evaluate_body(&request, &body, &pending.decision)
            }
            _ => pending.decision.clone(),
        };
        self.record(stream, &mut decision, &request);
        if pending.buffering && decision.enforced_denial().is_none() {
            // The headers were held for the body: the body decision's changes (the dry-run
            // header of a body denial) still reach the upstream, which the wasm build cannot do.
            for name in &decision.upstream_remove {
                stream.set_header(HeaderType::RequestHeader, name, None);
            }
            for (name, value) in &decision.upstream_set {
                stream.set_header(HeaderType::RequestHeader, name, Some(value));
            }
        }
        self.pending = Some(pending);
        self.apply(stream, &decision)
    }

    fn on_stream_complete(&mut self, stream: Stream) {
        // A request that ended before its body was decided is recorded as its headers were.
        if let Some(mut pending) = self.pending.take() {
            if !pending.body.is_decided() {
                let request = Request::new(&pending.headers, pending.source.as_deref());
                self.record(stream, &mut pending.decision, &request);
            }
        }
    }

    fn on_response_headers(&mut self, stream: Stream) {
        if self.denied_locally {
            // Our own reply already carries the hardening headers.
            return;
        }
        let hardening = &self.config.policy.hardening;
        if !hardening.response_actions().is_empty() {
            let present = stream.headers(HeaderType::ResponseHeader);
            let has = |name: &str| present.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
            for edit in hardening.response_edits(has) {
                match edit {
                    HeaderEdit::Remove(name) => {
                        stream.set_header(HeaderType::ResponseHeader, name, None);
                    }
                    HeaderEdit::Replace(name, value) => {
                        stream.set_header(HeaderType::ResponseHeader, name, Some(value));
                    }
                    HeaderEdit::Add(name, value) => {
                        stream.add_header(HeaderType::ResponseHeader, name, value);
                    }
                }
            }
        }
        for (name, value) in &self.response_headers {
            stream.set_header(HeaderType::ResponseHeader, name, Some(value));
        }
    }

    /// Answers an enforced denial (false), or lets the request go on (true).
    fn apply(&mut self, stream: Stream, decision: &Decision) -> bool {
        match decision.enforced_denial() {
            Some(denial) => {
                let body = denial.problem_json();
                let mut reply: Vec<(&str, &str)> =
                    vec![("content-type", "application/problem+json")];
                reply.extend(denial.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
                reply.extend(
                    self.config
                        .policy
                        .hardening
                        .local_reply_headers()
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str())),
                );
                self.denied_locally = true;
                let details = format!("api_guard_{}", denial.reason.code());
                stream.send_response(denial.status, &reply, body.as_bytes(), &details);
                false
            }
            None => {
                self.response_headers = decision.response_headers.clone();
                true
            }
        }
    }

    /// Counts the decision and logs it as configured.
    fn record(&self, stream: Stream, decision: &mut Decision, request: &Request) {
        let policy = &self.config.policy;
        self.config.metrics.count(stream, decision);
        stream.set_filter_state(STATE_DECISION, decision.action());
        stream.set_filter_state(STATE_REASON, decision.reason_code());
        stream.set_filter_state(STATE_RULE, decision.rule.as_deref().unwrap_or("-"));
        for (level, line) in policy.log_lines(decision, request) {
            log::log!(level, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(json: &str) -> Policy {
        config::compile(json.as_bytes()).unwrap()
    }

    #[test]
    fn remote_jwks_and_global_limits_are_named_as_unsupported() {
        let remote = compiled(
            r#"{"jwt_providers": {"idp": {"remote_jwks": {"cluster": "idp", "path": "/k"}}}}"#,
        );
        assert!(unsupported(&remote)
            .unwrap()
            .starts_with("jwt_providers.idp.remote_jwks: not supported by the native build"));
        let global = compiled(
            r#"{"rate_limits": {"g": {"requests": 5, "per": "minute",
                "global": {"cluster": "rls", "domain": "d"}}}}"#,
        );
        assert!(unsupported(&global)
            .unwrap()
            .starts_with("rate_limits.g.global: not supported by the native build"));
        let local = compiled(r#"{"rate_limits": {"l": {"requests": 5, "per": "minute"}}}"#);
        assert_eq!(unsupported(&local), None);
    }

    #[test]
    fn a_panicking_hook_body_gives_the_fallback() {
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let status = guarded(PANICKED, || -> u32 { panic!("boom") });
        std::panic::set_hook(quiet);
        assert_eq!(status, PANICKED);
        assert_eq!(
            guarded(PANICKED, || abi::HEADERS_CONTINUE),
            abi::HEADERS_CONTINUE
        );
    }

    #[test]
    fn the_internal_error_body_is_problem_json() {
        let body: serde_json::Value = serde_json::from_str(INTERNAL_ERROR_BODY).unwrap();
        assert_eq!(body["status"], 500);
        assert_eq!(body["reason"], "internal_error");
    }
}
