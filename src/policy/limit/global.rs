//! Global limits: one count for every Envoy replica, kept by a rate limit service that
//! speaks Envoy's protocol (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`,
//! served by envoyproxy/ratelimit and Limitador). The core builds the request message and
//! reads the answer; the shell sends it with `dispatch_grpc_call`.
//!
//! Before a call, two local checks refuse what the service would refuse anyway, without a
//! call: the client's local bucket (same shape as the policy: one replica can never admit
//! more than the whole limit), and a hold set when the service last said `OVER_LIMIT`, until
//! the reset time it gave. That flow of a request is in [`super::flow`]; this file holds the
//! protocol and what an answer means.

use std::time::Duration;

use prost::Message;

use super::gcra::ceil_seconds;
use super::{RateLimitPolicy, POLICY_HEADER, STATE_HEADER};
use crate::policy::verdict::{Denial, Reason};
pub use crate::policy::verdict::{GlobalCall, GlobalOutcome};

/// The gRPC service and method, as `dispatch_grpc_call` takes them.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// Descriptor entry keys, in the order they are sent.
pub const ENTRY_POLICY: &str = "policy";
pub const ENTRY_CLIENT: &str = "client";
pub const ENTRY_RULE: &str = "rule";

/// The most headers taken from one answer, and their longest name and value.
const MAX_SERVICE_HEADERS: usize = 8;
const MAX_HEADER_NAME: usize = 64;
const MAX_HEADER_VALUE: usize = 256;

/// `rate_limits.<name>.global`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalLimit {
    /// The Envoy cluster that serves the rate limit service (HTTP/2).
    pub cluster: String,
    /// The service's `domain` for this policy's descriptors.
    pub domain: String,
    pub timeout: Duration,
    pub failure_mode: FailureMode,
}

/// What to do when the service cannot answer in time (down, slow, or an unreadable answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Let the request on (the local bucket still applies).
    Allow,
    /// Refuse it with a 429 `rate_limit_unavailable`.
    Deny,
}

/// What the service said, reduced to what api-guard uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    pub over_limit: bool,
    /// Requests left in the current window, when the service says.
    pub remaining: Option<u32>,
    /// Nanoseconds until the window resets, when the service says.
    pub reset_in_ns: Option<u64>,
    /// `response_headers_to_add`: the service's own quota headers.
    pub headers: Vec<(String, String)>,
}

/// The `RateLimitRequest` for one request: one descriptor naming the policy, the client and
/// (when the request matched one) the rule.
pub fn request_message(domain: &str, policy: &str, client: &str, rule: Option<&str>) -> Vec<u8> {
    let mut entries = vec![
        proto::Entry {
            key: ENTRY_POLICY.into(),
            value: policy.into(),
        },
        proto::Entry {
            key: ENTRY_CLIENT.into(),
            value: client.into(),
        },
    ];
    if let Some(rule) = rule {
        entries.push(proto::Entry {
            key: ENTRY_RULE.into(),
            value: rule.into(),
        });
    }
    proto::RateLimitRequest {
        domain: domain.into(),
        descriptors: vec![proto::RateLimitDescriptor { entries }],
        hits_addend: 1,
    }
    .encode_to_vec()
}

/// Reads a `RateLimitResponse`. `None`: not a usable answer (undecodable, or `UNKNOWN`).
pub fn parse_answer(bytes: &[u8]) -> Option<Answer> {
    let response = proto::RateLimitResponse::decode(bytes).ok()?;
    let over_limit = match response.overall_code {
        proto::CODE_OK => false,
        proto::CODE_OVER_LIMIT => true,
        _ => return None,
    };
    // Our one descriptor's status; a service may leave it out.
    let status = response.statuses.first();
    let remaining = status
        .filter(|s| s.current_limit.is_some())
        .map(|s| s.limit_remaining);
    let reset_in_ns = status
        .and_then(|s| s.duration_until_reset.as_ref())
        .and_then(|d| {
            let seconds = u64::try_from(d.seconds).ok()?;
            let nanos = u64::try_from(d.nanos).ok()?;
            Some(seconds.saturating_mul(1_000_000_000).saturating_add(nanos))
        });
    let headers = response
        .response_headers_to_add
        .into_iter()
        .filter(|h| usable_header(&h.key, &h.value))
        .take(MAX_SERVICE_HEADERS)
        .map(|h| (h.key.to_ascii_lowercase(), h.value))
        .collect();
    Some(Answer {
        over_limit,
        remaining,
        reset_in_ns,
        headers,
    })
}

/// A header the service may add: a plain token name that api-guard does not own, and a
/// short visible value.
fn usable_header(name: &str, value: &str) -> bool {
    let name_ok = !name.is_empty()
        && name.len() <= MAX_HEADER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name
            .to_ascii_lowercase()
            .starts_with(crate::policy::OWNED_HEADER_PREFIX);
    let value_ok =
        value.len() <= MAX_HEADER_VALUE && value.bytes().all(|b| (0x20..0x7f).contains(&b));
    name_ok && value_ok
}

/// The window reset the service gave, else the policy's window.
pub fn reset_ns(policy: &RateLimitPolicy, answer: &Answer) -> u64 {
    answer.reset_in_ns.unwrap_or_else(|| policy.window_ns())
}

/// Quota headers for an admitted request: the service's remaining count and reset, in the
/// same fields as local limits, then the service's own headers.
pub fn allowed_headers(policy: &RateLimitPolicy, answer: &Answer) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    if policy.quota_headers {
        headers.push((POLICY_HEADER.to_string(), policy.policy_field()));
        if let Some(remaining) = answer.remaining {
            headers.push((
                STATE_HEADER.to_string(),
                policy.state_field(u64::from(remaining), reset_ns(policy, answer)),
            ));
        }
        headers.extend(answer.headers.iter().cloned());
    }
    headers
}

/// The 429 for a service's `OVER_LIMIT`: the same headers as a local limit's, timed by the
/// service's reset, plus the service's own headers.
pub fn over_limit(policy: &RateLimitPolicy, answer: &Answer) -> Denial {
    let reset = reset_ns(policy, answer);
    let mut denial = Denial::new(Reason::RateLimited)
        .with_detail("the rate limit for this client is exhausted; retry later")
        .with_header("retry-after", ceil_seconds(reset).max(1).to_string())
        .with_header(POLICY_HEADER, policy.policy_field())
        .with_header(STATE_HEADER, policy.state_field(0, reset));
    for (name, value) in &answer.headers {
        if !denial.headers.iter().any(|(n, _)| n == name) {
            denial = denial.with_header(name, value.clone());
        }
    }
    denial
}

/// The 429 when the service gave no usable answer and the policy fails closed.
pub fn unavailable() -> Denial {
    Denial::new(Reason::RateLimitUnavailable)
        .with_detail("the rate limit could not be checked; retry later")
        .with_header("retry-after", "1".to_string())
}

/// The protocol's messages, declared by hand with their field numbers from
/// `envoy/service/ratelimit/v3/rls.proto` (only the fields api-guard reads or writes).
mod proto {
    pub const CODE_OK: i32 = 1;
    pub const CODE_OVER_LIMIT: i32 = 2;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitRequest {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(message, repeated, tag = "2")]
        pub descriptors: Vec<RateLimitDescriptor>,
        #[prost(uint32, tag = "3")]
        pub hits_addend: u32,
    }

    /// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitDescriptor {
        #[prost(message, repeated, tag = "1")]
        pub entries: Vec<Entry>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitResponse {
        #[prost(int32, tag = "1")]
        pub overall_code: i32,
        #[prost(message, repeated, tag = "2")]
        pub statuses: Vec<DescriptorStatus>,
        #[prost(message, repeated, tag = "3")]
        pub response_headers_to_add: Vec<HeaderValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DescriptorStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(message, optional, tag = "2")]
        pub current_limit: Option<RateLimit>,
        #[prost(uint32, tag = "3")]
        pub limit_remaining: u32,
        #[prost(message, optional, tag = "4")]
        pub duration_until_reset: Option<Duration>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimit {
        #[prost(uint32, tag = "1")]
        pub requests_per_unit: u32,
        #[prost(int32, tag = "2")]
        pub unit: i32,
        #[prost(string, tag = "3")]
        pub name: String,
    }

    /// `envoy.config.core.v3.HeaderValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `google.protobuf.Duration`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An encoded answer, as a service would send it.
    pub(crate) fn answer_bytes(
        over: bool,
        remaining: Option<u32>,
        reset_seconds: Option<i64>,
        headers: &[(&str, &str)],
    ) -> Vec<u8> {
        proto::RateLimitResponse {
            overall_code: if over {
                proto::CODE_OVER_LIMIT
            } else {
                proto::CODE_OK
            },
            statuses: vec![proto::DescriptorStatus {
                code: if over {
                    proto::CODE_OVER_LIMIT
                } else {
                    proto::CODE_OK
                },
                current_limit: remaining.map(|_| proto::RateLimit {
                    requests_per_unit: 5,
                    unit: 2,
                    name: String::new(),
                }),
                limit_remaining: remaining.unwrap_or(0),
                duration_until_reset: reset_seconds
                    .map(|seconds| proto::Duration { seconds, nanos: 0 }),
            }],
            response_headers_to_add: headers
                .iter()
                .map(|(k, v)| proto::HeaderValue {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    fn policy() -> RateLimitPolicy {
        RateLimitPolicy {
            name: "partner".into(),
            requests: 5,
            per_seconds: 60,
            burst: 5,
            quota_headers: true,
            global: None,
        }
    }

    #[test]
    fn the_request_names_policy_client_and_rule_in_order() {
        let bytes = request_message("api", "partner", "key:acme", Some("orders"));
        let request = proto::RateLimitRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(request.domain, "api");
        assert_eq!(request.hits_addend, 1);
        let entries: Vec<(String, String)> = request.descriptors[0]
            .entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        assert_eq!(
            entries,
            vec![
                ("policy".to_string(), "partner".to_string()),
                ("client".to_string(), "key:acme".to_string()),
                ("rule".to_string(), "orders".to_string()),
            ]
        );
        let without_rule = request_message("api", "partner", "ip:10.0.0.1", None);
        let request = proto::RateLimitRequest::decode(without_rule.as_slice()).unwrap();
        assert_eq!(request.descriptors[0].entries.len(), 2);
    }

    #[test]
    fn answers_are_read_and_bad_ones_are_not_answers() {
        let ok = parse_answer(&answer_bytes(false, Some(3), Some(42), &[])).unwrap();
        assert!(!ok.over_limit);
        assert_eq!(ok.remaining, Some(3));
        assert_eq!(ok.reset_in_ns, Some(42_000_000_000));
        let over = parse_answer(&answer_bytes(true, None, None, &[])).unwrap();
        assert!(over.over_limit);
        assert_eq!((over.remaining, over.reset_in_ns), (None, None));
        // UNKNOWN (0), an empty message, garbage: no answer.
        assert_eq!(parse_answer(&[]), None);
        assert_eq!(parse_answer(&[0xff, 0xff, 0xff]), None);
        let unknown = proto::RateLimitResponse {
            overall_code: 0,
            statuses: vec![],
            response_headers_to_add: vec![],
        }
        .encode_to_vec();
        assert_eq!(parse_answer(&unknown), None);
        // A negative duration is ignored, not wrapped.
        let odd = parse_answer(&answer_bytes(false, Some(1), Some(-5), &[])).unwrap();
        assert_eq!(odd.reset_in_ns, None);
    }

    #[test]
    fn service_headers_are_filtered() {
        let answer = parse_answer(&answer_bytes(
            true,
            Some(0),
            Some(30),
            &[
                ("X-RateLimit-Limit", "5"),
                ("x-api-guard-decision", "allow"),
                ("bad name", "x"),
                ("x-long", &"v".repeat(300)),
                ("x-ctl", "a\r\nb"),
            ],
        ))
        .unwrap();
        assert_eq!(
            answer.headers,
            vec![("x-ratelimit-limit".to_string(), "5".to_string())]
        );
    }

    #[test]
    fn a_429_from_the_service_looks_like_a_local_one() {
        let p = policy();
        let answer = parse_answer(&answer_bytes(
            true,
            Some(0),
            Some(30),
            &[("x-ratelimit-limit", "5")],
        ))
        .unwrap();
        let denial = over_limit(&p, &answer);
        assert_eq!(denial.status, 429);
        assert_eq!(denial.reason, Reason::RateLimited);
        let header = |name: &str| {
            denial
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("retry-after"), Some("30"));
        assert_eq!(header("ratelimit-policy"), Some("\"partner\";q=5;w=60"));
        assert_eq!(header("ratelimit"), Some("\"partner\";r=0;t=30"));
        assert_eq!(header("x-ratelimit-limit"), Some("5"));
        // Without a reset from the service: the policy's window.
        let bare = over_limit(
            &p,
            &Answer {
                over_limit: true,
                ..Answer::default()
            },
        );
        assert!(bare.headers.contains(&("retry-after".into(), "60".into())));
    }

    #[test]
    fn allowed_headers_carry_the_service_count() {
        let p = policy();
        let answer = parse_answer(&answer_bytes(false, Some(3), Some(12), &[])).unwrap();
        assert_eq!(
            allowed_headers(&p, &answer),
            vec![
                (
                    "ratelimit-policy".to_string(),
                    "\"partner\";q=5;w=60".to_string()
                ),
                ("ratelimit".to_string(), "\"partner\";r=3;t=12".to_string()),
            ]
        );
        let quiet = RateLimitPolicy {
            quota_headers: false,
            ..policy()
        };
        assert!(allowed_headers(&quiet, &answer).is_empty());
    }

    #[test]
    fn failing_closed_is_a_429_with_its_own_reason() {
        let denial = unavailable();
        assert_eq!(denial.status, 429);
        assert_eq!(denial.reason, Reason::RateLimitUnavailable);
    }
}
