//! Rate limits: a token bucket per (policy, client), kept in a bounded table of shared-data
//! slots so that every Envoy worker counts against the same buckets.
//!
//! - [`gcra`]: the bucket arithmetic, pure integers;
//! - [`table`]: the slot table over [`Host::shared_get`]/[`Host::shared_set`] with CAS.

pub mod flow;
pub mod gcra;
pub mod global;
pub mod table;

use gcra::{ceil_seconds, Admission, Shape};
use table::{Outcome, SlotTable};

use super::host::Host;
use super::verdict::{Denial, Reason};

/// Header names of the IETF httpapi ratelimit-headers draft (-10/-11).
pub const POLICY_HEADER: &str = "ratelimit-policy";
pub const STATE_HEADER: &str = "ratelimit";

/// A compiled `rate_limits.<name>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitPolicy {
    pub name: String,
    /// Tokens added per window.
    pub requests: u64,
    /// The window in seconds.
    pub per_seconds: u64,
    /// The bucket's capacity.
    pub burst: u64,
    /// Send `RateLimit-Policy` and `RateLimit` on allowed responses too (429s always carry them).
    pub quota_headers: bool,
    /// Counted by a rate limit service across replicas (the local bucket is then the
    /// pre-check).
    pub global: Option<global::GlobalLimit>,
}

impl RateLimitPolicy {
    /// The window in nanoseconds.
    pub fn window_ns(&self) -> u64 {
        self.per_seconds.saturating_mul(1_000_000_000)
    }

    pub fn shape(&self) -> Shape {
        Shape {
            interval_ns: (self.window_ns() / self.requests.max(1)).max(1),
            burst: self.burst,
        }
    }

    /// `RateLimit-Policy: "standard";q=100;w=60` (and `;burst=N` when it differs from `q`).
    pub fn policy_field(&self) -> String {
        let mut field = format!(
            "\"{}\";q={};w={}",
            self.name, self.requests, self.per_seconds
        );
        if self.burst != self.requests {
            field.push_str(&format!(";burst={}", self.burst));
        }
        field
    }

    /// `RateLimit: "standard";r=<remaining>;t=<seconds until the bucket is full again>`.
    pub fn state_field(&self, remaining: u64, full_in_ns: u64) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.name,
            remaining,
            ceil_seconds(full_in_ns)
        )
    }
}

/// Takes one token for `client` under `policy`. Allowed: the quota headers to add to the
/// response (empty when the policy turns them off). Denied: the 429.
pub fn check(
    policy: &RateLimitPolicy,
    table: &SlotTable,
    client: &str,
    host: &dyn Host,
) -> Result<Vec<(String, String)>, Denial> {
    let now = unix_nanos(host);
    let placement = table.place(&policy.name, client);
    match table.admit(host, &policy.shape(), &placement, now) {
        Outcome::Admission(Admission::Allowed {
            remaining,
            full_in_ns,
            ..
        }) => Ok(if policy.quota_headers {
            vec![
                (POLICY_HEADER.to_string(), policy.policy_field()),
                (
                    STATE_HEADER.to_string(),
                    policy.state_field(remaining, full_in_ns),
                ),
            ]
        } else {
            Vec::new()
        }),
        Outcome::Admission(Admission::Denied {
            retry_in_ns,
            full_in_ns,
        }) => Err(limited(policy, ceil_seconds(retry_in_ns), full_in_ns)),
        // Lost every compare-and-swap race: this client is hammering; keep the count exact.
        Outcome::Contended => Err(limited(policy, 1, 1_000_000_000)),
        // The host refused the write: no state to count against; let the request through.
        Outcome::Unavailable => Ok(Vec::new()),
    }
}

fn limited(policy: &RateLimitPolicy, retry_after: u64, full_in_ns: u64) -> Denial {
    Denial::new(Reason::RateLimited)
        .with_detail("the rate limit for this client is exhausted; retry later")
        .with_header("retry-after", retry_after.max(1).to_string())
        .with_header(POLICY_HEADER, policy.policy_field())
        .with_header(STATE_HEADER, policy.state_field(0, full_in_ns))
}

/// Nanoseconds since the Unix epoch (0 before it; saturates in 2554).
pub fn unix_nanos(host: &dyn Host) -> u64 {
    host.now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::MemoryHost;
    use std::time::Duration;

    fn policy(requests: u64, per_seconds: u64, burst: u64) -> RateLimitPolicy {
        RateLimitPolicy {
            name: "standard".into(),
            requests,
            per_seconds,
            burst,
            quota_headers: true,
            global: None,
        }
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn allowed_responses_carry_the_quota_and_429_says_when() {
        let host = MemoryHost::default();
        let table = SlotTable { slots: 64 };
        table.init(&host);
        let p = policy(3, 60, 3);
        let ok = check(&p, &table, "ip:1.2.3.4", &host).unwrap();
        assert_eq!(
            header(&ok, "ratelimit-policy"),
            Some("\"standard\";q=3;w=60")
        );
        assert_eq!(header(&ok, "ratelimit"), Some("\"standard\";r=2;t=20"));
        check(&p, &table, "ip:1.2.3.4", &host).unwrap();
        let last = check(&p, &table, "ip:1.2.3.4", &host).unwrap();
        assert_eq!(header(&last, "ratelimit"), Some("\"standard\";r=0;t=60"));
        let denial = check(&p, &table, "ip:1.2.3.4", &host).unwrap_err();
        assert_eq!(denial.status, 429);
        assert_eq!(denial.reason, Reason::RateLimited);
        assert_eq!(header(&denial.headers, "retry-after"), Some("20"));
        assert_eq!(
            header(&denial.headers, "ratelimit"),
            Some("\"standard\";r=0;t=60")
        );
        assert_eq!(
            header(&denial.headers, "ratelimit-policy"),
            Some("\"standard\";q=3;w=60")
        );
        host.advance(Duration::from_millis(19_500));
        let denial = check(&p, &table, "ip:1.2.3.4", &host).unwrap_err();
        assert_eq!(
            header(&denial.headers, "retry-after"),
            Some("1"),
            "rounded up, at least 1"
        );
        host.advance(Duration::from_millis(500));
        assert!(check(&p, &table, "ip:1.2.3.4", &host).is_ok());
    }

    #[test]
    fn burst_is_advertised_and_headers_can_be_turned_off() {
        let host = MemoryHost::default();
        let table = SlotTable { slots: 64 };
        table.init(&host);
        let p = policy(10, 1, 25);
        let ok = check(&p, &table, "c", &host).unwrap();
        assert_eq!(
            header(&ok, "ratelimit-policy"),
            Some("\"standard\";q=10;w=1;burst=25")
        );
        let quiet = RateLimitPolicy {
            quota_headers: false,
            ..policy(1, 1, 1)
        };
        assert_eq!(check(&quiet, &table, "d", &host), Ok(Vec::new()));
        let denial = check(&quiet, &table, "d", &host).unwrap_err();
        assert!(
            header(&denial.headers, "ratelimit").is_some(),
            "429s always say why"
        );
    }

    #[test]
    fn sub_second_retry_after_is_one() {
        let host = MemoryHost::default();
        let table = SlotTable { slots: 8 };
        table.init(&host);
        let p = policy(100, 1, 1);
        check(&p, &table, "c", &host).unwrap();
        let denial = check(&p, &table, "c", &host).unwrap_err();
        assert_eq!(header(&denial.headers, "retry-after"), Some("1"));
        assert_eq!(
            header(&denial.headers, "ratelimit"),
            Some("\"standard\";r=0;t=1")
        );
    }

    mod pipeline {
        use crate::config::compile;
        use crate::policy::testing::MemoryHost;
        use crate::policy::{Decision, Policy, Request};
        use sha2::{Digest, Sha256};

        fn sha(key: &str) -> String {
            Sha256::digest(key.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        }

        fn policy(hops: u32) -> Policy {
            let config = format!(
                r#"{{"client_ip": {{"xff_trusted_hops": {hops}}},
                "rate_limits": {{"standard": {{"requests": 2, "per": "minute"}},
                                 "gold": {{"requests": 5, "per": "minute"}}}},
                "api_keys": {{"clients": [
                    {{"id": "basic", "sha256": "{}"}},
                    {{"id": "vip", "sha256": "{}", "rate_limit": "gold"}}]}},
                "rate_limit_table": {{"slots": 256}},
                "rules": [
                    {{"name": "keyed", "match": {{"prefix": "/keyed"}}, "auth": ["api_key"],
                      "rate_limit": "standard"}},
                    {{"name": "open", "match": {{"prefix": "/open"}}, "rate_limit": "standard"}},
                    {{"name": "free", "match": {{"prefix": "/"}}}}]}}"#,
                sha("basic-key"),
                sha("vip-key")
            );
            compile(config.as_bytes()).unwrap()
        }

        fn send(
            p: &Policy,
            host: &MemoryHost,
            path: &str,
            headers: &[(&str, &str)],
            peer: &str,
        ) -> Decision {
            let mut h = vec![
                (":method".to_string(), "GET".to_string()),
                (":path".to_string(), path.to_string()),
            ];
            h.extend(crate::policy::testing::headers(headers));
            p.evaluate(&Request::new(&h, Some(peer)), host)
        }

        fn admitted(
            p: &Policy,
            host: &MemoryHost,
            path: &str,
            headers: &[(&str, &str)],
            peer: &str,
        ) -> usize {
            (0..20)
                .filter(|_| send(p, host, path, headers, peer).denial().is_none())
                .count()
        }

        #[test]
        fn tiers_override_the_rule_and_clients_are_independent() {
            let p = policy(0);
            let host = MemoryHost::default();
            p.rate_limit_table.init(&host);
            assert_eq!(
                admitted(
                    &p,
                    &host,
                    "/keyed",
                    &[("x-api-key", "basic-key")],
                    "10.0.0.1:1"
                ),
                2
            );
            assert_eq!(
                admitted(
                    &p,
                    &host,
                    "/keyed",
                    &[("x-api-key", "vip-key")],
                    "10.0.0.1:1"
                ),
                5
            );
            // Per client IP on a public rule, each address its own bucket.
            assert_eq!(admitted(&p, &host, "/open", &[], "10.0.0.1:1"), 2);
            assert_eq!(admitted(&p, &host, "/open", &[], "10.0.0.2:1"), 2);
            // No policy, no limit.
            assert_eq!(admitted(&p, &host, "/free", &[], "10.0.0.1:1"), 20);
            // The key's identity is not the address's: same peer, fresh bucket after the IP one ran out.
            let d = send(&p, &host, "/open", &[], "10.0.0.1:1");
            assert_eq!(d.reason_code(), "rate_limited");
            assert_eq!(d.enforced_denial().unwrap().status, 429);
        }

        #[test]
        fn the_client_ip_comes_from_xff_only_with_trusted_hops() {
            let host = MemoryHost::default();
            let untrusted = policy(0);
            untrusted.rate_limit_table.init(&host);
            // Without trusted hops, rotating X-Forwarded-For changes nothing.
            let rotated = (0..10)
                .filter(|i| {
                    let xff = format!("203.0.113.{i}");
                    send(
                        &untrusted,
                        &host,
                        "/open",
                        &[("x-forwarded-for", &xff)],
                        "10.9.9.9:1",
                    )
                    .denial()
                    .is_none()
                })
                .count();
            assert_eq!(rotated, 2);
            // With one trusted hop, the address the proxy appended is the client.
            let host = MemoryHost::default();
            let trusted = policy(1);
            trusted.rate_limit_table.init(&host);
            for i in 0..10 {
                let xff = format!("198.51.100.1, 203.0.113.{i}");
                let d = send(
                    &trusted,
                    &host,
                    "/open",
                    &[("x-forwarded-for", &xff)],
                    "10.9.9.9:1",
                );
                assert!(d.denial().is_none());
                assert_eq!(d.client, Some(format!("ip:203.0.113.{i}")));
            }
            // ...and a client spoofing the leftmost entry stays one client.
            let spoofed = (0..10)
                .filter(|i| {
                    let xff = format!("6.6.6.{i}, 203.0.113.200");
                    send(
                        &trusted,
                        &host,
                        "/open",
                        &[("x-forwarded-for", &xff)],
                        "10.9.9.9:1",
                    )
                    .denial()
                    .is_none()
                })
                .count();
            assert_eq!(spoofed, 2);
        }

        #[test]
        fn dry_run_counts_but_never_refuses() {
            let config = r#"{"rate_limits": {"s": {"requests": 1, "per": "hour"}},
                "rules": [{"match": {"prefix": "/"}, "rate_limit": "s", "mode": "dry_run"}]}"#;
            let p = compile(config.as_bytes()).unwrap();
            let host = MemoryHost::default();
            p.rate_limit_table.init(&host);
            assert_eq!(send(&p, &host, "/", &[], "10.0.0.1:1").action(), "allow");
            let d = send(&p, &host, "/", &[], "10.0.0.1:1");
            assert_eq!((d.action(), d.reason_code()), ("dry_run", "rate_limited"));
            assert!(d.enforced_denial().is_none());
        }

        #[test]
        fn allowed_decisions_carry_the_quota_headers() {
            let p = policy(0);
            let host = MemoryHost::default();
            p.rate_limit_table.init(&host);
            let d = send(&p, &host, "/open", &[], "10.0.0.1:1");
            assert_eq!(
                d.response_headers,
                vec![
                    (
                        "ratelimit-policy".to_string(),
                        "\"standard\";q=2;w=60".to_string()
                    ),
                    ("ratelimit".to_string(), "\"standard\";r=1;t=30".to_string())
                ]
            );
            assert!(send(&p, &host, "/free", &[], "10.0.0.1:1")
                .response_headers
                .is_empty());
        }
    }
}
