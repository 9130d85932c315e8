//! The native build (src/native, `make native`) in a real Envoy 1.40: a handful of
//! representative scenarios, the same answers as the wasm build, plus what only the native
//! build does (the upstream sees nothing of a request refused for its body). The whole suite
//! runs against it with `API_GUARD_BUILD=native`; these run against it always.

mod common;

use std::io::{BufReader, Write};
use std::thread;
use std::time::Instant;

use common::http::read_response;
use common::{Build, Envoy, EnvoyOptions};
use sha2::{Digest, Sha256};

fn native(config: &str) -> EnvoyOptions {
    EnvoyOptions::new(config).build(Build::Native)
}

fn sha(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `api` profile's headers every response carries, denials included.
const HARDENING: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

fn assert_hardened(r: &common::Response) {
    for (name, value) in HARDENING {
        assert_eq!(
            r.header(name),
            Some(value),
            "{name} on a {} response",
            r.status
        );
    }
}

#[test]
fn envoy_loads_the_module_with_a_matching_abi_version() {
    let envoy = Envoy::start_with(native("{}"));
    envoy.wait_for_log("Dynamic module ABI version");
    assert!(
        envoy
            .log()
            .contains("Dynamic module ABI version v0.2.0 matched"),
        "Envoy 1.40 must accept the module's ABI version without a warning"
    );
}

#[test]
fn a_plain_response_gets_the_hardening_headers_and_loses_the_stack_headers() {
    let envoy = Envoy::start_with(native("{}"));
    let r = envoy.client().must_get("/hello", &[]);
    assert_eq!(r.status, 200);
    assert_hardened(&r);
    assert_eq!(r.header("x-powered-by"), None);
    // Envoy's own direct responses too.
    let direct = envoy.client().must_get("/direct", &[]);
    assert_eq!(direct.status, 200);
    assert_hardened(&direct);
}

#[test]
fn a_missing_credential_is_a_401_problem_with_the_hardening_headers() {
    let config = format!(
        r#"{{"api_keys": {{"clients": [{{"id": "a", "sha256": "{}"}}]}},
            "rules": [{{"name": "api", "match": {{"prefix": "/api"}}, "auth": ["api_key"]}}]}}"#,
        sha("key-a-123456")
    );
    let envoy = Envoy::start_with(native(&config));
    let r = envoy.client().must_get("/api/orders", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        r.header("www-authenticate"),
        Some("APIKey realm=\"api-guard\""),
        "every 401 carries a challenge"
    );
    assert_eq!(r.json()["reason"], "api_key_missing");
    assert_eq!(r.json()["status"], 401);
    assert_hardened(&r);
    assert_eq!(
        envoy.upstream.count(),
        0,
        "a refused request never reaches the upstream"
    );

    let ok = envoy
        .client()
        .must_get("/api/orders", &[("x-api-key", "key-a-123456")]);
    assert_eq!(ok.status, 200);
    assert_eq!(envoy.upstream.last().unwrap().header("x-api-key"), None);
    // Counters per decision and reason: Prometheus shows them under Envoy's namespace for
    // dynamic-module metrics (the wasm build's are `api_guard_*`: Envoy strips its wasm
    // namespace, not this one); `prometheus_value` reads either build's names.
    let stats = envoy.admin().get("/stats/prometheus").unwrap().text();
    assert!(stats.contains("\nenvoy_dynamicmodulescustom_api_guard_allow{} 1\n"));
    assert_eq!(envoy.prometheus_value("api_guard_deny_api_key_missing"), 1);
    assert_eq!(envoy.prometheus_value("api_guard_allow"), 1);
    // The decision in the access log, under the same filter-state keys as the wasm build.
    let log = envoy.wait_access_log(2);
    assert_eq!(log[0]["api_guard_decision"], "deny");
    assert_eq!(log[0]["api_guard_reason"], "api_key_missing");
    assert_eq!(log[0]["api_guard_rule"], "api");
    assert_eq!(log[1]["api_guard_decision"], "allow");
}

fn get(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// `connections` keep-alive connections in parallel, `per_connection` requests each.
fn hammer(port: u16, connections: usize, per_connection: usize, request: &[u8]) -> Vec<u16> {
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let request = request.to_vec();
            thread::spawn(move || {
                let stream = common::Client::new(port).connect().unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                (0..per_connection)
                    .map(|_| {
                        writer.write_all(&request).unwrap();
                        read_response(&mut reader).unwrap().status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

#[test]
fn an_api_key_limit_admits_exactly_the_policy_across_two_workers() {
    // 1000 per hour: one token every 3.6 s, so the test (well under a second) adds at most one.
    let config = format!(
        r#"{{"rate_limits": {{"hourly": {{"requests": 1000, "per": "hour"}}}},
            "api_keys": {{"clients": [{{"id": "partner", "sha256": "{}"}}]}},
            "rules": [{{"name": "all", "match": {{"prefix": "/"}}, "auth": ["api_key"],
                        "rate_limit": "hourly"}}]}}"#,
        sha("partner-key-0001")
    );
    let envoy = Envoy::start_with(native(&config).concurrency(2));
    let started = Instant::now();
    let statuses = hammer(
        envoy.port,
        40,
        60,
        &get("/direct", &[("x-api-key", "partner-key-0001")]),
    );
    let elapsed = started.elapsed();
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    eprintln!("2400 requests in {elapsed:?}: {admitted} admitted, {limited} limited");
    assert_eq!(admitted + limited, 2400, "only 200s and 429s");
    let refill = (elapsed.as_millis() / 3600) as usize + 1;
    assert!(
        (1000..=1000 + refill).contains(&admitted),
        "admitted {admitted}, policy allows 1000 (+{refill} refilled)"
    );
    let r = envoy
        .client()
        .must_get("/direct", &[("x-api-key", "partner-key-0001")]);
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["reason"], "rate_limited");
    assert!(r.header("retry-after").is_some());
    assert_hardened(&r);
}

#[test]
fn a_body_refused_by_its_schema_never_reaches_the_upstream() {
    let config = r#"{"rules": [{"name": "orders", "match": {"prefix": "/orders"},
        "body": {"max_bytes": 1024, "content_types": ["application/json"],
                 "json_schema": {"type": "object", "required": ["item"],
                                 "properties": {"item": {"type": "string"}}}}}]}"#;
    let envoy = Envoy::start_with(native(config));
    let refused = envoy
        .client()
        .post_json("/orders", br#"{"qty": 1}"#)
        .unwrap();
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["reason"], "body_schema");
    assert_hardened(&refused);
    let too_large = envoy
        .client()
        .post_json(
            "/orders",
            format!(r#"{{"item":"{}"}}"#, "x".repeat(2000)).as_bytes(),
        )
        .unwrap();
    assert_eq!(too_large.status, 413);
    assert_eq!(
        envoy.upstream.count(),
        0,
        "the headers are held until the body passed: the upstream sees nothing of a refusal"
    );

    let body = br#"{"item": "book"}"#;
    let ok = envoy.client().post_json("/orders", body).unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(envoy.upstream.count(), 1);
    assert_eq!(
        envoy.upstream.last().unwrap().body,
        body,
        "the body arrives whole, once"
    );
}

#[test]
fn what_the_native_build_cannot_enforce_yet_is_refused_at_load() {
    let remote = r#"{"jwt_providers": {"idp": {"remote_jwks": {"cluster": "idp",
        "path": "/jwks.json"}}},
        "rules": [{"name": "api", "match": {"prefix": "/"}, "auth": ["idp"]}]}"#;
    let log = Envoy::try_start(native(remote)).err().expect("refused");
    assert!(
        log.contains("jwt_providers.idp.remote_jwks: not supported by the native build"),
        "{log}"
    );
    let global = r#"{"rate_limits": {"g": {"requests": 5, "per": "minute",
        "global": {"cluster": "ratelimit", "domain": "api-guard"}}},
        "rules": [{"name": "api", "match": {"prefix": "/"}, "rate_limit": "g"}]}"#;
    let log = Envoy::try_start(native(global)).err().expect("refused");
    assert!(
        log.contains("rate_limits.g.global: not supported by the native build"),
        "{log}"
    );
    // A configuration error is refused with its JSON path, as in the wasm build.
    let log = Envoy::try_start(native(r#"{"mode": "sometimes"}"#))
        .err()
        .expect("refused");
    assert!(log.contains("configuration refused"), "{log}");
}

#[test]
fn a_panicking_hook_fails_closed_and_envoy_keeps_serving() {
    let mut options = native("{}");
    options
        .env
        .push(("API_GUARD_TEST_PANIC_PATH".into(), "/boom".into()));
    let envoy = Envoy::start_with(options);
    let r = envoy.client().must_get("/boom", &[]);
    assert_eq!(r.status, 500, "a panic is never a pass-through");
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["reason"], "internal_error");
    assert_eq!(envoy.upstream.count(), 0);
    envoy.wait_for_log("api-guard: panic");
    assert!(
        envoy.log().contains("api-guard: panic"),
        "the panic is logged"
    );
    // The same process goes on serving: nothing was unwound into Envoy.
    for _ in 0..3 {
        assert_eq!(envoy.client().must_get("/hello", &[]).status, 200);
    }
    assert_eq!(envoy.client().must_get("/boom", &[]).status, 500);
}

/// Sends a chunked POST in separate writes (one chunk each, a pause between them, so Envoy
/// hands the filter several body callbacks) and reads the answer.
fn chunked_post(
    envoy: &Envoy,
    path: &str,
    extra_header: &str,
    chunks: &[&[u8]],
) -> common::Response {
    let stream = envoy.client().connect().unwrap();
    let mut writer = stream.try_clone().unwrap();
    write!(
        writer,
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         content-type: application/json\r\n{extra_header}transfer-encoding: chunked\r\n\r\n"
    )
    .unwrap();
    for chunk in chunks {
        write!(writer, "{:x}\r\n", chunk.len()).unwrap();
        writer.write_all(chunk).unwrap();
        writer.write_all(b"\r\n").unwrap();
        writer.flush().unwrap();
        thread::sleep(std::time::Duration::from_millis(30));
    }
    writer.write_all(b"0\r\n\r\n").unwrap();
    read_response(&mut BufReader::new(stream)).unwrap()
}

#[test]
fn a_body_in_many_chunks_is_checked_whole_and_arrives_once() {
    let config = r#"{"rules": [{"name": "orders", "match": {"prefix": "/orders"},
        "body": {"max_bytes": 4096, "content_types": ["application/json"],
                 "json_schema": {"type": "object", "required": ["item"],
                                 "properties": {"item": {"type": "string"}}}}}]}"#;
    let envoy = Envoy::start_with(native(config));
    // Valid only as a whole: each chunk alone is not JSON, and a body counted twice
    // (buffered part plus the last chunk again) would not be either.
    let chunks: [&[u8]; 4] = [b"{\"ite", b"m\": \"bo", b"ok\", \"n\"", b": 1}"];
    let ok = chunked_post(&envoy, "/orders", "", &chunks);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(envoy.upstream.last().unwrap().body, chunks.concat());

    let bad: [&[u8]; 3] = [b"{\"it", b"em\": ", b"42}"];
    let refused = chunked_post(&envoy, "/orders", "", &bad);
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["reason"], "body_schema");
    assert_eq!(
        envoy.upstream.count(),
        1,
        "the refused request never reached the upstream"
    );

    // Header values that are not ASCII, or not even UTF-8 (Latin-1 obs-text), are read
    // safely, never a crash (to /direct: proxied, this head got a 503 from the test upstream).
    let odd = chunked_post(&envoy, "/orders", "x-odd: caf\u{e9}\r\n", &chunks);
    assert_eq!(odd.status, 200, "{:?} {}", odd.headers, odd.text());
    let r = envoy
        .client()
        .raw(b"GET /direct HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nx-latin: \xe9t\xe9\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn a_dry_run_body_denial_reaches_the_upstream_as_a_header() {
    let config = r#"{"rules": [{"name": "try", "match": {"prefix": "/try"}, "mode": "dry_run",
        "body": {"max_bytes": 1024, "content_types": ["application/json"],
                 "json_schema": {"type": "object", "required": ["item"]}}}]}"#;
    let envoy = Envoy::start_with(native(config));
    let r = envoy.client().post_json("/try", br#"{"qty": 1}"#).unwrap();
    assert_eq!(r.status, 200, "dry run never blocks: {}", r.text());
    let seen = envoy.upstream.last().unwrap();
    assert_eq!(seen.body, br#"{"qty": 1}"#);
    // The headers waited for the body, so the dry-run verdict goes with them (the wasm build
    // lets the headers go first and cannot add it).
    assert_eq!(seen.header("x-api-guard-dry-run"), Some("body_schema"));
    assert_eq!(envoy.prometheus_value("api_guard_dry_run_body_schema"), 1);
    let ok = envoy
        .client()
        .post_json("/try", br#"{"item": "a"}"#)
        .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(
        envoy.upstream.last().unwrap().header("x-api-guard-dry-run"),
        None
    );
}
