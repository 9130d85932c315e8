//! The core's hot path, natively, for instruction counts under callgrind (see
//! docs/performance.md): `Policy::evaluate` plus what the shell does with the decision in
//! Rust (problem+json, log line), on a `MemoryHost`, for one scenario `N` times.
//!
//! ```sh
//! cargo build --release --example hot_path
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/hot_path hardening 10000
//! callgrind_annotate /tmp/cg.out | head -40
//! ```
//! Scenarios: `hardening`, `key-ratelimit`, `ratelimit-429`, and `body`/`body-threats`
//! `SCHEMA.json BODY.json` (a JSON body validated, without/with threat screening). Without valgrind it prints the
//! nanoseconds per request.

use std::hint::black_box;
use std::time::Instant;

use api_guard::config::compile;
use api_guard::policy::testing::{headers, MemoryHost};
use api_guard::policy::Request;

const KEY: &str = "ak_bench_partner_7c1e5d2a9b";

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| "hardening".into());
    let n: u32 = args.next().map_or(100_000, |s| s.parse().unwrap());
    // `body` and `body-threats` take two more arguments: a schema file and a body file.
    let config = match scenario.as_str() {
        "hardening" => "{}".to_string(),
        "key-ratelimit" | "ratelimit-429" => {
            let (requests, per) = if scenario == "key-ratelimit" {
                (1_000_000_000, "second")
            } else {
                (1, "hour")
            };
            format!(
                r#"{{"api_keys": {{"clients": [{{"id": "partner-bench", "sha256": "{}"}}]}},
                    "rate_limits": {{"bench": {{"requests": {requests}, "per": "{per}"}}}},
                    "rules": [{{"name": "keyed", "match": {{"prefix": "/"}},
                                "auth": ["api_key"], "rate_limit": "bench"}}],
                    "headers": {{"profile": "off", "response_remove": []}}}}"#,
                sha256_hex(KEY)
            )
        }
        "body" | "body-threats" => {
            let schema = std::fs::read_to_string(args.next().expect("schema file")).unwrap();
            let threats = if scenario == "body" { "off" } else { "log" };
            format!(
                r#"{{"rules": [{{"name": "orders", "match": {{"prefix": "/"}}, "threats": "{threats}",
                                "body": {{"max_bytes": 1048576, "content_types": ["application/json"],
                                          "json_schema": {schema}}}}}],
                    "headers": {{"profile": "off", "response_remove": []}}}}"#
            )
        }
        other => panic!("unknown scenario {other}"),
    };
    let body = match scenario.as_str() {
        "body" | "body-threats" => std::fs::read(args.next().expect("body file")).unwrap(),
        _ => Vec::new(),
    };
    let policy = compile(config.as_bytes()).unwrap();
    let host = MemoryHost::default();
    policy.rate_limit_table.init(&host);
    // What wrk sends, as Envoy presents it to the filter.
    let headers = headers(&[
        (":authority", "127.0.0.1:10000"),
        (":path", "/direct/bench"),
        (":method", "GET"),
        (":scheme", "http"),
        ("x-api-key", KEY),
        ("content-type", "application/json"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "6f1c1e4e-1d1b-4c8f-9f4e-2b8f0c7a9d11"),
    ]);

    let started = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..n {
        let request = Request::new(&headers, Some("127.0.0.1:40000"));
        let mut decision = policy.evaluate(&request, &host);
        if !body.is_empty() {
            decision = policy.evaluate_body(&request, &body, &decision);
        }
        if let Some(denial) = decision.enforced_denial() {
            bytes += denial.problem_json().len();
            let mut logged = decision.clone();
            policy.resolve_client(&mut logged, &request);
            bytes += logged.log_line(request.method(), request.path()).len();
        }
        bytes += decision.response_headers.len();
        black_box(&decision);
    }
    let elapsed = started.elapsed();
    println!(
        "{scenario}: {n} requests, {:.0} ns per request ({bytes} bytes of answers)",
        elapsed.as_nanos() as f64 / f64::from(n)
    );
}
