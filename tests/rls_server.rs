//! The test rate limit service itself (tests/rls, started through tests/common/rls.rs):
//! real Redis, real gRPC calls by `api-guard-test-rls probe`, nothing mocked.

mod common;

use std::time::{Duration, Instant};

use common::rls::{Redis, Rls};

fn client(policy: &'static str, client: &'static str) -> [(&'static str, &'static str); 2] {
    [("policy", policy), ("client", client)]
}

#[test]
fn two_services_on_one_redis_admit_exactly_the_limit() {
    let redis = Redis::start();
    let limits = [("d", "p", 5, 60)];
    let a = Rls::start(&redis.url(), &limits, None, false);
    let b = Rls::start(&redis.url(), &limits, None, false);

    let mut codes = Vec::new();
    let mut remaining = Vec::new();
    for i in 0..8 {
        let service = if i % 2 == 0 { &a } else { &b };
        let probe = service.probe("d", &client("p", "c1"), None);
        assert!(probe.ok, "{:?}", probe.json);
        let status = probe.status();
        assert_eq!(status["code"], probe.json["overall_code"]);
        assert_eq!(
            status["current_limit"],
            serde_json::json!({ "requests_per_unit": 5, "unit": "MINUTE" })
        );
        let reset = &status["duration_until_reset"];
        let reset_ms = reset["seconds"].as_i64().unwrap() * 1000
            + reset["nanos"].as_i64().unwrap() / 1_000_000;
        assert!(
            reset_ms > 0 && reset_ms <= 60_000,
            "duration_until_reset {reset}"
        );
        codes.push(probe.code().to_string());
        remaining.push(status["limit_remaining"].as_u64().unwrap());
    }
    assert_eq!(
        codes,
        [
            "OK",
            "OK",
            "OK",
            "OK",
            "OK",
            "OVER_LIMIT",
            "OVER_LIMIT",
            "OVER_LIMIT"
        ]
    );
    assert_eq!(remaining, [4, 3, 2, 1, 0, 0, 0, 0]);

    // Another client has its own counter, and so has a rule of the same client.
    let probe = b.probe("d", &client("p", "c2"), None);
    assert_eq!(probe.code(), "OK");
    assert_eq!(probe.status()["limit_remaining"], 4);
    let with_rule = [("policy", "p"), ("client", "c1"), ("rule", "r1")];
    let probe = a.probe("d", &with_rule, None);
    assert_eq!(probe.code(), "OK");
    assert_eq!(probe.status()["limit_remaining"], 4);
    let probe = b.probe("d", &with_rule, None);
    assert_eq!(probe.status()["limit_remaining"], 3);
}

#[test]
fn concurrent_calls_to_two_services_never_admit_more_than_the_limit() {
    let redis = Redis::start();
    let limits = [("d", "p", 5, 60)];
    let a = Rls::start(&redis.url(), &limits, None, false);
    let b = Rls::start(&redis.url(), &limits, None, false);
    let ports = [a.port(), b.port()];
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let port = ports[i % 2];
            std::thread::spawn(move || {
                common::rls::probe(port, "d", &client("p", "c1"), None)
                    .code()
                    .to_string()
            })
        })
        .collect();
    let codes: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let admitted = codes.iter().filter(|c| *c == "OK").count();
    let refused = codes.iter().filter(|c| *c == "OVER_LIMIT").count();
    assert_eq!((admitted, refused), (5, 11), "{codes:?}");
}

#[test]
fn hits_addend_counts_several_hits_and_zero_counts_one() {
    let redis = Redis::start();
    let rls = Rls::start(&redis.url(), &[("d", "p", 5, 60)], None, false);
    let probe = rls.probe("d", &client("p", "c"), Some(3));
    assert_eq!(probe.code(), "OK");
    assert_eq!(probe.status()["limit_remaining"], 2);
    // 3 more would pass the limit: refused, and nothing is counted.
    let probe = rls.probe("d", &client("p", "c"), Some(3));
    assert_eq!(probe.code(), "OVER_LIMIT");
    assert_eq!(probe.status()["limit_remaining"], 2);
    let probe = rls.probe("d", &client("p", "c"), Some(0));
    assert_eq!(probe.code(), "OK");
    assert_eq!(probe.status()["limit_remaining"], 1);
}

#[test]
fn descriptors_without_a_limit_are_ok() {
    let redis = Redis::start();
    let rls = Rls::start(&redis.url(), &[("d", "p", 1, 60)], None, false);
    for _ in 0..3 {
        for (domain, entries) in [
            ("other", &client("p", "c")[..]),
            ("d", &client("q", "c")[..]),
            ("d", &[("policy", "p")][..]),
            ("d", &[][..]),
        ] {
            let probe = rls.probe(domain, entries, None);
            assert_eq!(probe.code(), "OK", "{domain} {entries:?}: {:?}", probe.json);
            assert_eq!(probe.status()["code"], "OK");
            assert!(probe.status()["current_limit"].is_null());
        }
    }
}

#[test]
fn current_limit_is_unset_for_a_window_that_is_no_unit() {
    let redis = Redis::start();
    let rls = Rls::start(
        &redis.url(),
        &[("d", "p", 5, 7), ("d", "h", 9, 3600)],
        None,
        false,
    );
    let probe = rls.probe("d", &client("p", "c"), None);
    assert_eq!(probe.code(), "OK");
    assert!(probe.status()["current_limit"].is_null());
    assert_eq!(probe.status()["limit_remaining"], 4);
    let probe = rls.probe("d", &client("h", "c"), None);
    assert_eq!(
        probe.status()["current_limit"],
        serde_json::json!({ "requests_per_unit": 9, "unit": "HOUR" })
    );
}

#[test]
fn quota_headers_on_every_answer_when_asked() {
    let redis = Redis::start();
    let rls = Rls::start(&redis.url(), &[("d", "p", 2, 60)], None, true);
    let expected = [("1", "OK"), ("0", "OK"), ("0", "OVER_LIMIT")];
    for (remaining, code) in expected {
        let probe = rls.probe("d", &client("p", "c"), None);
        assert_eq!(probe.code(), code);
        assert_eq!(probe.header("ratelimit-limit"), Some("2, 2;w=60"));
        assert_eq!(probe.header("ratelimit-remaining"), Some(remaining));
        let reset: u64 = probe.header("ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset), "ratelimit-reset {reset}");
    }
    // Without --headers, none.
    let plain = Rls::start(&redis.url(), &[("d", "p", 2, 60)], None, false);
    let probe = plain.probe("d", &client("p", "other"), None);
    assert_eq!(probe.json["response_headers_to_add"], serde_json::json!([]));
}

#[test]
fn delay_ms_delays_every_answer() {
    let redis = Redis::start();
    let rls = Rls::start(&redis.url(), &[("d", "p", 5, 60)], Some(300), false);
    for entries in [&client("p", "c")[..], &client("none", "c")[..]] {
        let started = Instant::now();
        let probe = rls.probe("d", entries, None);
        assert_eq!(probe.code(), "OK");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(probe.json["elapsed_ms"].as_u64().unwrap() >= 300);
    }
}

#[test]
fn without_redis_the_answer_is_unavailable() {
    let mut redis = Redis::start();
    let mut rls = Rls::start(&redis.url(), &[("d", "p", 5, 60)], None, false);
    assert_eq!(rls.probe("d", &client("p", "c"), None).code(), "OK");
    redis.stop();
    for _ in 0..2 {
        let probe = rls.probe("d", &client("p", "c"), None);
        assert!(!probe.ok, "{:?}", probe.json);
        assert_eq!(probe.code(), "Unavailable", "{:?}", probe.json);
    }
    assert!(rls.is_running(), "the service exited:\n{}", rls.log());

    // A service started while Redis is down serves, and answers UNAVAILABLE.
    let late = Rls::start(&redis.url(), &[("d", "p", 5, 60)], None, false);
    assert_eq!(
        late.probe("d", &client("p", "c"), None).code(),
        "Unavailable"
    );
}
