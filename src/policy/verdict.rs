//! Decisions, stable reason codes and the problem+json (RFC 9457) answer to a denial.

use std::time::Duration;

use serde_json::{json, Map, Value};

/// Declares [`Reason`] from one table, so that a reason is listed once and never missing from
/// [`Reason::ALL`] (metrics define one counter per entry) or from a lookup.
macro_rules! reasons {
    ($(
        $(#[$doc:meta])*
        $variant:ident => $code:literal, $status:literal, $title:literal;
    )+) => {
        /// Why a request was denied. The codes are a public contract: never rename one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $variant,)+
        }

        impl Reason {
            /// Every reason, in declaration order, for metrics defined up front.
            pub const ALL: [Reason; [$(Reason::$variant),+].len()] = [$(Reason::$variant),+];

            /// The stable machine code, as in problem+json `reason`, logs and metrics.
            pub fn code(self) -> &'static str {
                match self {
                    $(Reason::$variant => $code,)+
                }
            }

            /// The HTTP status of the answer (a redirect may replace it, see
            /// [`Denial::redirect`]).
            pub fn status(self) -> u16 {
                match self {
                    $(Reason::$variant => $status,)+
                }
            }

            /// A short, fixed human summary (problem+json `title`).
            pub fn title(self) -> &'static str {
                match self {
                    $(Reason::$variant => $title,)+
                }
            }
        }
    };
}

// Variant => code, status, title. The codes are a public contract: never rename one.
reasons! {
    HttpsRequired => "https_required", 403, "HTTPS is required";
    JwtMissing => "jwt_missing", 401, "A bearer token is required";
    JwtMalformed => "jwt_malformed", 401, "The token is malformed";
    JwtBadSignature => "jwt_bad_signature", 401, "The token signature is invalid";
    JwtExpired => "jwt_expired", 401, "The token has expired";
    JwtNotYetValid => "jwt_not_yet_valid", 401, "The token is not valid yet";
    JwtIssuer => "jwt_issuer", 401, "The token issuer is not trusted";
    JwtAudience => "jwt_audience", 401, "The token audience is not accepted";
    JwtUnknownKid => "jwt_unknown_kid", 401, "The token signing key is unknown";
    JwtAlgNotAllowed => "jwt_alg_not_allowed", 401, "The token algorithm is not allowed";
    JwksUnavailable => "jwks_unavailable", 401, "The signing keys are not available yet";
    InsufficientScope => "insufficient_scope", 403, "The credential lacks a required scope";
    ApiKeyMissing => "api_key_missing", 401, "An API key is required";
    ApiKeyUnknown => "api_key_unknown", 401, "The API key is not valid";
    ApiKeyExpired => "api_key_expired", 401, "The API key has expired";
    RateLimited => "rate_limited", 429, "Too many requests";
    RateLimitUnavailable => "rate_limit_unavailable", 429, "The rate limit could not be checked";
    BodyTooLarge => "body_too_large", 413, "The request body is too large";
    MediaType => "media_type", 415, "The request media type is not accepted";
    BodyInvalid => "body_invalid", 400, "The request body is not valid";
    BodySchema => "body_schema", 400, "The request body does not match the schema";
    ThreatSqli => "threat_sqli", 403, "The request looks like SQL injection";
    ThreatXss => "threat_xss", 403, "The request looks like cross-site scripting";
    ThreatTraversal => "threat_traversal", 403, "The request looks like path traversal";
    /// The request was too large to screen within `threat_scan_max_bytes`.
    ThreatScanLimit => "threat_scan_limit", 413, "Request too large to screen";
    IpDenied => "ip_denied", 403, "The client address is not allowed";
    PathInvalid => "path_invalid", 400, "The request path is not accepted";
    MethodNotAllowed => "method_not_allowed", 405, "The method is not allowed on this path";
    NoRule => "no_rule", 404, "No rule of this API matches the request";
    /// The client address is needed (IP lists, an address-keyed rate limit) but unknown.
    ClientIpUnknown => "client_ip_unknown", 403, "The client address could not be determined";
}

/// A refusal: the reason plus what the answer must carry. Everything in it is produced by
/// api-guard itself; nothing here may copy client input (tokens, keys, paths, values).
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub reason: Reason,
    pub status: u16,
    /// A safe, fixed explanation (problem+json `detail`).
    pub detail: Option<String>,
    /// Extra response headers (WWW-Authenticate, Retry-After, Location, ...).
    pub headers: Vec<(String, String)>,
    /// Extra problem+json members (e.g. `errors` for body_schema).
    pub extensions: Map<String, Value>,
}

impl Denial {
    pub fn new(reason: Reason) -> Self {
        Denial {
            reason,
            status: reason.status(),
            detail: None,
            headers: Vec::new(),
            extensions: Map::new(),
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// A denial answered with a redirect (e.g. `require_https: "redirect"`).
    pub fn redirect(mut self, status: u16, location: String) -> Self {
        self.status = status;
        self.headers.push(("location".to_string(), location));
        self
    }

    /// The RFC 9457 body, members in the RFC's order: written straight from the denial,
    /// with no intermediate JSON map (this runs for every 429 under load).
    pub fn problem_json(&self) -> String {
        let problem = Problem {
            kind: ProblemType(self.reason.code()),
            title: self.reason.title(),
            status: self.status,
            detail: self.detail.as_deref(),
            reason: self.reason.code(),
            extensions: &self.extensions,
        };
        serde_json::to_string(&problem).unwrap_or_else(|_| {
            // Not reachable (strings, numbers and JSON values only); still a valid answer.
            format!(
                r#"{{"status":{},"reason":"{}"}}"#,
                self.status,
                self.reason.code()
            )
        })
    }
}

#[derive(serde::Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: ProblemType,
    title: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    reason: &'a str,
    #[serde(flatten)]
    extensions: &'a Map<String, Value>,
}

/// `urn:api-guard:problem:<reason>`, written without building the string first.
struct ProblemType(&'static str);

impl serde::Serialize for ProblemType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("urn:api-guard:problem:{}", self.0))
    }
}

/// What api-guard decided for a request.
/// A global rate limit call (see `limit::global`) the shell must make before the request may go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalCall {
    /// Index into `Policy::rate_limits`.
    pub policy: usize,
    pub cluster: String,
    pub timeout: Duration,
    /// The encoded `RateLimitRequest`.
    pub message: Vec<u8>,
}

/// How a global check ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalOutcome {
    /// The service admitted the request.
    Ok,
    /// The service refused it.
    OverLimit,
    /// Refused locally, without a call (local bucket or a hold from an earlier answer).
    RefusedLocally,
    /// No usable answer; the request went on.
    FailureAllowed,
    /// No usable answer; the request was refused.
    FailureDenied,
}

impl GlobalOutcome {
    pub const ALL: [GlobalOutcome; 5] = [
        GlobalOutcome::Ok,
        GlobalOutcome::OverLimit,
        GlobalOutcome::RefusedLocally,
        GlobalOutcome::FailureAllowed,
        GlobalOutcome::FailureDenied,
    ];

    /// The counter's name part: `api_guard_rls_<code>`.
    pub fn code(self) -> &'static str {
        match self {
            GlobalOutcome::Ok => "ok",
            GlobalOutcome::OverLimit => "over_limit",
            GlobalOutcome::RefusedLocally => "refused_locally",
            GlobalOutcome::FailureAllowed => "failure_allowed",
            GlobalOutcome::FailureDenied => "failure_denied",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow,
    Deny(Denial),
}

/// The decision for one request: the verdict, whether it is enforced, and what the upstream
/// request must look like if it goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Name of the matched rule, if any.
    pub rule: Option<String>,
    /// The matched rule, by index into `Policy::rules`: selected once by the header stage,
    /// carried to the body stage and the global rate limit's answer.
    pub rule_index: Option<usize>,
    pub verdict: Verdict,
    /// True when the verdict comes from a rule or policy in `dry_run`: logged and counted,
    /// never enforced.
    pub dry_run: bool,
    /// The client identity the decision was made for (never a credential).
    pub client: Option<String>,
    /// Request headers to remove before the upstream sees the request.
    pub upstream_remove: Vec<String>,
    /// Request headers to set towards the upstream.
    pub upstream_set: Vec<(String, String)>,
    /// Headers to add to the upstream's response when the request is allowed (quota fields).
    pub response_headers: Vec<(String, String)>,
    /// Detections of a check in log mode (e.g. `threats: log`): logged and counted, never
    /// enforced.
    pub logged: Vec<Reason>,
    /// Threat-screening budget spent by the header stage, carried over to the body stage
    /// (`threat_scan_max_bytes` is per request).
    pub threat_scan_used: u64,
    /// A global rate limit still to ask the rate limit service about (the shell's job).
    pub global_call: Option<GlobalCall>,
    /// How a global rate limit check ended, for the counters.
    pub global_outcome: Option<GlobalOutcome>,
}

impl Decision {
    pub fn allow(rule: Option<String>) -> Self {
        Decision {
            rule,
            rule_index: None,
            verdict: Verdict::Allow,
            dry_run: false,
            client: None,
            upstream_remove: Vec::new(),
            upstream_set: Vec::new(),
            response_headers: Vec::new(),
            logged: Vec::new(),
            threat_scan_used: 0,
            global_call: None,
            global_outcome: None,
        }
    }

    /// The denial to answer with, unless the request is allowed or the denial is dry-run only.
    pub fn enforced_denial(&self) -> Option<&Denial> {
        match &self.verdict {
            Verdict::Deny(denial) if !self.dry_run => Some(denial),
            _ => None,
        }
    }

    pub fn denial(&self) -> Option<&Denial> {
        match &self.verdict {
            Verdict::Deny(denial) => Some(denial),
            Verdict::Allow => None,
        }
    }

    /// `allow`, `deny` or `dry_run` (a denial that was not enforced).
    pub fn action(&self) -> &'static str {
        match (&self.verdict, self.dry_run) {
            (Verdict::Allow, _) => "allow",
            (Verdict::Deny(_), false) => "deny",
            (Verdict::Deny(_), true) => "dry_run",
        }
    }

    /// The reason code, or `-` when allowed.
    pub fn reason_code(&self) -> &'static str {
        self.denial().map_or("-", |d| d.reason.code())
    }

    /// One structured (JSON) log line describing the decision; never holds credentials,
    /// queries or bodies.
    pub fn log_line(&self, method: &str, path: &str) -> String {
        let mut line = Map::new();
        line.insert("api_guard".into(), json!("decision"));
        line.insert("action".into(), json!(self.action()));
        line.insert("reason".into(), json!(self.reason_code()));
        if let Some(denial) = self.denial() {
            line.insert("status".into(), json!(denial.status));
        }
        line.insert("rule".into(), json!(self.rule.as_deref().unwrap_or("-")));
        line.insert(
            "client".into(),
            json!(self.client.as_deref().unwrap_or("-")),
        );
        line.insert("method".into(), json!(method));
        let path = crate::policy::http::logged_path(path);
        line.insert("path".into(), json!(path));
        Value::Object(line).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_are_4xx() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            assert!(seen.insert(reason.code()), "duplicate {}", reason.code());
            assert!((400..500).contains(&reason.status()));
            assert!(!reason.title().is_empty());
        }
    }

    /// Metrics, dashboards and clients rely on every code and status staying as they are, and
    /// on ALL holding each reason exactly once (one counter each).
    #[test]
    fn all_holds_every_reason_once_with_its_contract_code_and_status() {
        let expected = [
            (Reason::HttpsRequired, "https_required", 403),
            (Reason::JwtMissing, "jwt_missing", 401),
            (Reason::JwtMalformed, "jwt_malformed", 401),
            (Reason::JwtBadSignature, "jwt_bad_signature", 401),
            (Reason::JwtExpired, "jwt_expired", 401),
            (Reason::JwtNotYetValid, "jwt_not_yet_valid", 401),
            (Reason::JwtIssuer, "jwt_issuer", 401),
            (Reason::JwtAudience, "jwt_audience", 401),
            (Reason::JwtUnknownKid, "jwt_unknown_kid", 401),
            (Reason::JwtAlgNotAllowed, "jwt_alg_not_allowed", 401),
            (Reason::JwksUnavailable, "jwks_unavailable", 401),
            (Reason::InsufficientScope, "insufficient_scope", 403),
            (Reason::ApiKeyMissing, "api_key_missing", 401),
            (Reason::ApiKeyUnknown, "api_key_unknown", 401),
            (Reason::ApiKeyExpired, "api_key_expired", 401),
            (Reason::RateLimited, "rate_limited", 429),
            (Reason::RateLimitUnavailable, "rate_limit_unavailable", 429),
            (Reason::BodyTooLarge, "body_too_large", 413),
            (Reason::MediaType, "media_type", 415),
            (Reason::BodyInvalid, "body_invalid", 400),
            (Reason::BodySchema, "body_schema", 400),
            (Reason::ThreatSqli, "threat_sqli", 403),
            (Reason::ThreatXss, "threat_xss", 403),
            (Reason::ThreatTraversal, "threat_traversal", 403),
            (Reason::ThreatScanLimit, "threat_scan_limit", 413),
            (Reason::IpDenied, "ip_denied", 403),
            (Reason::PathInvalid, "path_invalid", 400),
            (Reason::MethodNotAllowed, "method_not_allowed", 405),
            (Reason::NoRule, "no_rule", 404),
            (Reason::ClientIpUnknown, "client_ip_unknown", 403),
        ];
        assert_eq!(Reason::ALL.len(), expected.len());
        for (reason, (want, code, status)) in Reason::ALL.into_iter().zip(expected) {
            assert_eq!(reason, want);
            assert_eq!(reason.code(), code);
            assert_eq!(reason.status(), status);
        }
        let distinct: std::collections::HashSet<_> = Reason::ALL.into_iter().collect();
        assert_eq!(distinct.len(), Reason::ALL.len());
    }

    #[test]
    fn problem_json_has_the_rfc_9457_members() {
        let denial = Denial::new(Reason::JwtExpired).with_detail("the token has expired");
        let body: Value = serde_json::from_str(&denial.problem_json()).unwrap();
        assert_eq!(body["type"], "urn:api-guard:problem:jwt_expired");
        assert_eq!(body["status"], 401);
        assert_eq!(body["reason"], "jwt_expired");
        assert_eq!(body["title"], "The token has expired");
        assert_eq!(body["detail"], "the token has expired");
    }

    #[test]
    fn problem_json_members_come_in_rfc_order() {
        let denial = Denial::new(Reason::JwtMissing).with_detail("no credential was presented");
        assert_eq!(
            denial.problem_json(),
            r#"{"type":"urn:api-guard:problem:jwt_missing","title":"A bearer token is required","status":401,"detail":"no credential was presented","reason":"jwt_missing"}"#
        );
        let mut schema = Denial::new(Reason::BodySchema);
        schema.extensions.insert(
            "errors".into(),
            json!([{"pointer": "/qty", "keyword": "maximum"}]),
        );
        assert!(schema.problem_json().ends_with(
            r#""reason":"body_schema","errors":[{"keyword":"maximum","pointer":"/qty"}]}"#
        ));
    }

    #[test]
    fn log_line_drops_the_query() {
        let mut d = Decision::allow(Some("r".into()));
        d.verdict = Verdict::Deny(Denial::new(Reason::ApiKeyUnknown));
        let line = d.log_line("GET", "/a/b?api_key=secret");
        assert!(!line.contains("secret"), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["action"], "deny");
        assert_eq!(v["reason"], "api_key_unknown");
        assert_eq!(v["path"], "/a/b");
        assert_eq!(v["status"], 401);
    }
}
