//! Global rate limits in real Envoys against a real rate limit service: Limitador on Redis
//! behind Envoy's RLS gRPC API (tests/rls, started by tests/common/rls.rs). Two Envoy
//! processes share one limit and admit exactly its count together; a service that is down,
//! slow or unknown follows each policy's failure mode.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::rls::{rls_cluster, Redis, Rls};
use common::{Envoy, EnvoyOptions};

/// One policy per failure mode, each on its own path, both global on cluster `rls`.
fn config(requests: u64, per: &str, timeout_ms: u64) -> String {
    format!(
        r#"{{"rate_limits": {{
              "shared": {{"requests": {requests}, "per": "{per}",
                          "global": {{"cluster": "rls", "domain": "api", "timeout_ms": {timeout_ms}}}}},
              "strict": {{"requests": {requests}, "per": "{per}",
                          "global": {{"cluster": "rls", "domain": "api", "timeout_ms": {timeout_ms},
                                      "failure_mode": "deny"}}}}}},
            "rules": [
              {{"name": "open", "match": {{"prefix": "/open"}}, "rate_limit": "shared"}},
              {{"name": "closed", "match": {{"prefix": "/closed"}}, "rate_limit": "strict"}}],
            "headers": {{"profile": "off", "response_remove": []}}}}"#
    )
}

fn envoy(config: &str, rls_port: u16, concurrency: u32) -> Envoy {
    Envoy::start_with(
        EnvoyOptions::new(config)
            .concurrency(concurrency)
            .cluster(rls_cluster("rls", rls_port)),
    )
}

fn status(envoy: &Envoy, path: &str) -> u16 {
    envoy.client().get(path).unwrap().status
}

#[test]
fn two_envoys_sharing_one_limit_admit_exactly_its_count() {
    let redis = Redis::start();
    let rls = Rls::start(&redis.url(), &[("api", "shared", 10, 3600)], None, true);
    let config = config(10, "hour", 1000);
    let a = envoy(&config, rls.port(), 2);
    let b = envoy(&config, rls.port(), 2);

    // 4 threads per Envoy, 8 requests each: 64 requests from one client for a limit of 10.
    let ports = [a.port, b.port];
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let port = ports[i % 2];
            thread::spawn(move || {
                let client = common::Client::new(port);
                (0..8)
                    .map(|_| {
                        let r = client.get("/open/orders").unwrap();
                        (r.status, r.header("ratelimit").map(str::to_string))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answers: Vec<(u16, Option<String>)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let admitted = answers.iter().filter(|(s, _)| *s == 200).count();
    let limited = answers.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(
        (admitted, limited),
        (10, 54),
        "answers: {answers:?}\nA: {}\nB: {}",
        a.log(),
        b.log()
    );

    // Each Envoy asked the service at most for what its own bucket let through, and the
    // service's answers add up: 10 admitted in all.
    let counter = |e: &Envoy, name: &str| e.prometheus_value(&format!("api_guard_rls_{name}"));
    assert_eq!(counter(&a, "ok") + counter(&b, "ok"), 10);
    let calls = |e: &Envoy| counter(e, "ok") + counter(e, "over_limit");
    let local = |e: &Envoy| counter(e, "refused_locally");
    assert_eq!(calls(&a) + local(&a), 32);
    assert_eq!(calls(&b) + local(&b), 32);
    assert!(
        local(&a) + local(&b) > 0,
        "holds and local buckets spare calls"
    );
    assert_eq!(
        counter(&a, "failure_allowed") + counter(&b, "failure_allowed"),
        0
    );

    // A refusal looks like a local limit's, with the service's own quota headers.
    let refused = a.client().get("/open/orders").unwrap();
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["reason"], "rate_limited");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert!(refused
        .header("ratelimit")
        .unwrap()
        .starts_with("\"shared\";r=0;t="));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"shared\";q=10;w=3600")
    );
    // Admitted answers carried the service's remaining count.
    let remaining: Vec<&str> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .filter_map(|(_, h)| h.as_deref())
        .collect();
    assert_eq!(remaining.len(), 10);
    assert!(
        remaining.iter().any(|h| h.starts_with("\"shared\";r=0;")),
        "{remaining:?}"
    );

    // The other policy's count is its own.
    assert_eq!(status(&b, "/closed/x"), 200);
}

#[test]
fn a_service_that_is_down_follows_each_failure_mode() {
    let config = config(100, "minute", 200);
    // Nothing listens on the service's port.
    let envoy = envoy(&config, common::free_port(), 1);
    for _ in 0..3 {
        assert_eq!(status(&envoy, "/open/a"), 200);
        let refused = envoy.client().get("/closed/a").unwrap();
        assert_eq!(refused.status, 429, "never a 5xx");
        assert_eq!(refused.json()["reason"], "rate_limit_unavailable");
        assert_eq!(refused.header("retry-after"), Some("1"));
        assert_eq!(
            refused.header("content-type"),
            Some("application/problem+json")
        );
    }
    assert_eq!(envoy.prometheus_value("api_guard_rls_failure_allowed"), 3);
    assert_eq!(envoy.prometheus_value("api_guard_rls_failure_denied"), 3);
    assert_eq!(
        envoy.prometheus_value("api_guard_deny_rate_limit_unavailable"),
        3
    );
}

#[test]
fn a_slow_service_times_out_into_the_failure_mode() {
    let redis = Redis::start();
    let rls = Rls::start(
        &redis.url(),
        &[("api", "shared", 100, 60), ("api", "strict", 100, 60)],
        Some(1500),
        false,
    );
    let envoy = envoy(&config(100, "minute", 150), rls.port(), 1);
    let started = Instant::now();
    assert_eq!(status(&envoy, "/open/a"), 200);
    let refused = envoy.client().get("/closed/a").unwrap();
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["reason"], "rate_limit_unavailable");
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "the timeout, not the service, decided: {:?}",
        started.elapsed()
    );
    assert_eq!(envoy.prometheus_value("api_guard_rls_failure_allowed"), 1);
    assert_eq!(envoy.prometheus_value("api_guard_rls_failure_denied"), 1);
}

#[test]
fn an_unknown_cluster_is_said_once_and_follows_the_failure_mode() {
    let config =
        config(100, "minute", 200).replace("\"cluster\": \"rls\"", "\"cluster\": \"nope\"");
    let envoy = Envoy::start(&config);
    assert_eq!(status(&envoy, "/open/a"), 200);
    assert_eq!(status(&envoy, "/open/b"), 200);
    assert_eq!(status(&envoy, "/closed/a"), 429);
    let warnings: Vec<String> = envoy
        .wait_for_log("cannot call the rate limit service")
        .into_iter()
        .filter(|line| line.contains("cannot call the rate limit service"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("\"nope\""), "{warnings:?}");
}

#[test]
fn a_body_waits_for_the_service_and_is_still_validated() {
    let redis = Redis::start();
    let rls = Rls::start(&redis.url(), &[("api", "orders", 2, 3600)], None, false);
    let config = r#"{"rate_limits": {"orders": {"requests": 2, "per": "hour",
                        "global": {"cluster": "rls", "domain": "api", "timeout_ms": 1000}}},
                     "rules": [{"name": "orders", "match": {"prefix": "/orders"},
                                "rate_limit": "orders",
                                "body": {"max_bytes": 1024, "content_types": ["application/json"],
                                         "json_schema": {"type": "object", "required": ["id"]}}}]}"#;
    let envoy = envoy(config, rls.port(), 1);
    let post = |body: &str| {
        envoy
            .client()
            .post_json("/orders", body.as_bytes())
            .unwrap()
    };
    let ok = post(r#"{"id": 1}"#);
    assert_eq!(ok.status, 200, "{}", envoy.log());
    assert_eq!(
        envoy.upstream.last().unwrap().body,
        br#"{"id": 1}"#.to_vec()
    );
    assert_eq!(post(r#"{"no": 1}"#).status, 400);
    // Two hits taken: the third is over the global limit.
    let refused = post(r#"{"id": 3}"#);
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["reason"], "rate_limited");
}

#[test]
fn a_client_that_leaves_while_the_service_decides_harms_nothing() {
    let redis = Redis::start();
    let rls = Rls::start(
        &redis.url(),
        &[("api", "shared", 100, 60)],
        Some(700),
        false,
    );
    let envoy = envoy(&config(100, "minute", 3000), rls.port(), 1);
    for _ in 0..5 {
        let mut stream = envoy.client().connect().unwrap();
        std::io::Write::write_all(&mut stream, b"GET /open/a HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        drop(stream);
    }
    // The answers arrive for requests that are gone; the VM goes on serving.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(status(&envoy, "/open/b"), 200);
    let log = envoy.log();
    assert!(!log.contains("panic"), "{log}");
    assert_eq!(
        envoy.upstream.count(),
        1,
        "the abandoned requests never went upstream"
    );
}
