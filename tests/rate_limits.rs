//! Rate limits in a real Envoy with two workers: exact admitted counts under parallel
//! hammering, per-client independence, API-key tiers, X-Forwarded-For identity, 429 and
//! quota headers, and bounded memory under 100,000 distinct clients.

mod common;

use std::io::{BufReader, Write};
use std::thread;
use std::time::Instant;

use common::http::read_response;
use common::{Envoy, EnvoyOptions};
use sha2::{Digest, Sha256};

fn sha(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn get(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// `connections` keep-alive connections in parallel threads, each sending `per_connection`
/// requests one after the other (Envoy closes a connection with pipelined requests after a
/// local reply, so the hammer does not pipeline). Returns every status.
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

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// Connections accepted by each worker of the main listener.
fn per_worker_connections(envoy: &Envoy) -> Vec<u64> {
    let stats = envoy
        .admin()
        .get("/stats?filter=downstream_cx_total")
        .unwrap()
        .text();
    stats
        .lines()
        .filter(|l| l.starts_with("listener.127.0.0.1_") && l.contains(".worker_"))
        .filter_map(|l| l.rsplit(": ").next()?.trim().parse().ok())
        .collect()
}

#[test]
fn two_workers_admit_exactly_the_policy_under_parallel_hammering() {
    // 1000 per hour: one token every 3.6 s, so the test (well under a second) adds at most one.
    let config = r#"{
        "rate_limits": {"hourly": {"requests": 1000, "per": "hour"}},
        "rules": [{"name": "all", "match": {"prefix": "/"}, "rate_limit": "hourly"}]}"#;
    let envoy = Envoy::start_with(EnvoyOptions::new(config).concurrency(2));
    let started = Instant::now();
    let statuses = hammer(envoy.port, 40, 60, &get("/direct", &[]));
    let elapsed = started.elapsed();
    let admitted = count(&statuses, 200);
    let limited = count(&statuses, 429);
    eprintln!(
        "2400 requests from one client on 40 connections in {elapsed:?}: {admitted} admitted, {limited} limited; connections per worker {:?}",
        per_worker_connections(&envoy)
    );
    assert_eq!(admitted + limited, 2400, "only 200s and 429s");
    // Exact up to the refill during the test (the issue asks for within 1%).
    let refill = (elapsed.as_millis() / 3600) as usize + 1;
    assert!(
        (1000..=1000 + refill).contains(&admitted),
        "admitted {admitted}, policy allows 1000 (+{refill} refilled)"
    );
    let workers = per_worker_connections(&envoy);
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(
        workers.iter().all(|n| *n > 0),
        "both workers served: {workers:?}"
    );
}

const KEY_BASIC: &str = "rk_basic_Zt81mQ0w";
const KEY_GOLD: &str = "rk_gold_Vb27xLp3";

fn limits_config(hops: u32) -> String {
    format!(
        r#"{{
        "client_ip": {{"xff_trusted_hops": {hops}}},
        "rate_limits": {{
            "standard": {{"requests": 3, "per": "hour"}},
            "gold": {{"requests": 6, "per": "hour", "burst": 8}},
            "quiet": {{"requests": 2, "per": "hour", "headers": false}}
        }},
        "api_keys": {{"clients": [
            {{"id": "basic", "sha256": "{}"}},
            {{"id": "gold", "sha256": "{}", "rate_limit": "gold"}}
        ]}},
        "rules": [
            {{"name": "keyed", "match": {{"prefix": "/keyed"}}, "auth": ["api_key"],
              "rate_limit": "standard"}},
            {{"name": "quiet", "match": {{"prefix": "/quiet"}}, "rate_limit": "quiet"}},
            {{"name": "open", "match": {{"prefix": "/"}}, "rate_limit": "standard"}}
        ]}}"#,
        sha(KEY_BASIC),
        sha(KEY_GOLD)
    )
}

fn admitted(envoy: &Envoy, n: usize, path: &str, headers: &[(&str, &str)]) -> usize {
    (0..n)
        .filter(|_| envoy.client().must_get(path, headers).status == 200)
        .count()
}

#[test]
fn answers_clients_tiers_and_forwarded_identity() {
    let envoy = Envoy::start_with(EnvoyOptions::new(&limits_config(1)).concurrency(2));
    let client = envoy.client();

    // Allowed responses carry the quota; the 429 says when to come back.
    let xff = [("x-forwarded-for", "192.0.2.10")];
    let r = client.must_get("/open", &xff);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"standard\";q=3;w=3600")
    );
    assert_eq!(r.header("ratelimit"), Some("\"standard\";r=2;t=1200"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    client.must_get("/open", &xff);
    let r = client.must_get("/open", &xff);
    assert_eq!(r.header("ratelimit"), Some("\"standard\";r=0;t=3600"));
    let r = client.must_get("/open", &xff);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["reason"], "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=1200).contains(&retry) && retry >= 1199,
        "retry-after {retry}"
    );
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"standard\";q=3;w=3600")
    );
    let state = r.header("ratelimit").unwrap();
    assert!(state.starts_with("\"standard\";r=0;t="), "{state}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header_count("retry-after"), 1);

    // Per-client independence: another address has its own bucket.
    assert_eq!(
        admitted(&envoy, 5, "/open", &[("x-forwarded-for", "192.0.2.11")]),
        3
    );
    // With one trusted hop, a client forging the left of the list is still itself.
    assert_eq!(
        admitted(
            &envoy,
            5,
            "/open",
            &[("x-forwarded-for", "6.6.6.6, 192.0.2.10")]
        ),
        0
    );

    // API keys count per key; a key's tier overrides the rule's policy (burst 8).
    assert_eq!(
        admitted(&envoy, 10, "/keyed", &[("x-api-key", KEY_BASIC)]),
        3
    );
    let gold = [("x-api-key", KEY_GOLD), ("x-forwarded-for", "192.0.2.10")];
    let r = client.must_get("/keyed", &gold);
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"gold\";q=6;w=3600;burst=8")
    );
    assert_eq!(
        admitted(&envoy, 10, "/keyed", &gold),
        7,
        "8 in all, independent of the IP's bucket"
    );

    // Quota fields can be turned off on allowed responses, never on the 429.
    let quiet = [("x-forwarded-for", "192.0.2.12")];
    let r = client.must_get("/quiet", &quiet);
    assert_eq!((r.status, r.header("ratelimit")), (200, None));
    client.must_get("/quiet", &quiet);
    let r = client.must_get("/quiet", &quiet);
    assert_eq!(r.status, 429);
    assert!(r.header("ratelimit").is_some() && r.header("retry-after").is_some());
}

#[test]
fn without_trusted_hops_forwarded_for_is_ignored() {
    // An edge Envoy (use_remote_address): the client is the TCP peer, whatever the header says.
    let envoy = Envoy::start_with(
        EnvoyOptions::new(&limits_config(0))
            .concurrency(2)
            .use_remote_address(true),
    );
    let rotated = (0..6)
        .filter(|i| {
            let xff = format!("203.0.113.{i}");
            envoy
                .client()
                .must_get("/open", &[("x-forwarded-for", &xff)])
                .status
                == 200
        })
        .count();
    assert_eq!(
        rotated, 3,
        "rotating X-Forwarded-For does not make new clients"
    );
}

/// Envoy's allocated heap bytes (admin `/memory`).
fn allocated(envoy: &Envoy) -> u64 {
    let v: serde_json::Value =
        serde_json::from_slice(&envoy.admin().get("/memory").unwrap().body).unwrap();
    v["allocated"].as_str().unwrap().parse().unwrap()
}

/// Sends one request per distinct client (X-Forwarded-For, one trusted hop) on `connections`
/// keep-alive connections in parallel; returns how many were answered 200 with quota fields.
fn distinct_clients(envoy: &Envoy, first: u32, n: u32, connections: u32) -> usize {
    let port = envoy.port;
    let per = n / connections;
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            thread::spawn(move || {
                let stream = common::Client::new(port).connect().unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                (0..per)
                    .filter(|i| {
                        let id = first + c * per + i;
                        let xff =
                            format!("10.{}.{}.{}", id >> 16 & 0xff, id >> 8 & 0xff, id & 0xff);
                        writer
                            .write_all(&get("/direct", &[("x-forwarded-for", &xff)]))
                            .unwrap();
                        let r = read_response(&mut reader).unwrap();
                        r.status == 200 && r.header("ratelimit").is_some()
                    })
                    .count()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

fn memory_config(slots: u32) -> String {
    format!(
        r#"{{"client_ip": {{"xff_trusted_hops": 1}},
            "rate_limits": {{"standard": {{"requests": 10, "per": "minute"}}}},
            "rate_limit_table": {{"slots": {slots}}},
            "rules": [{{"match": {{"prefix": "/"}}, "rate_limit": "standard"}}]}}"#
    )
}

#[test]
fn memory_stays_bounded_under_100k_distinct_clients() {
    // What one slot costs: the same Envoy with a tiny table and with the default one.
    let tiny = Envoy::start_with(EnvoyOptions::new(&memory_config(64)).concurrency(2));
    distinct_clients(&tiny, 0, 1_600, 16);
    let tiny_bytes = allocated(&tiny);
    drop(tiny);

    let envoy = Envoy::start_with(EnvoyOptions::new(&memory_config(16_384)).concurrency(2));
    // Warm up connections, buffers and stats first.
    assert_eq!(distinct_clients(&envoy, 0, 1_600, 16), 1_600);
    let before = allocated(&envoy);
    let per_slot = before.saturating_sub(tiny_bytes) / (16_384 - 64);

    let started = Instant::now();
    let answered = distinct_clients(&envoy, 1_000_000, 100_000, 16);
    let elapsed = started.elapsed();
    let after = allocated(&envoy);
    let growth = after.saturating_sub(before);
    eprintln!(
        "100,000 distinct clients in {elapsed:?}: allocated {before} -> {after} bytes (+{growth}); \
         the 16,384-slot table costs about {per_slot} bytes a slot ({} KiB in all)",
        per_slot * 16_384 / 1024
    );
    assert_eq!(
        answered, 100_000,
        "every new client is admitted with quota headers"
    );
    // Unbounded per-client state would add at least 100,000 entries of shared data.
    let unbounded = 100_000 * per_slot.max(48);
    assert!(
        growth < unbounded / 10,
        "memory grew by {growth} bytes; 100,000 entries would be about {unbounded}"
    );
}
