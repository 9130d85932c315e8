//! API keys in a real Envoy with two workers: hashed keys only, sources, client header,
//! expiry, scopes, and clean 401s for missing, unknown, repeated or oversized keys.

mod common;

use common::{Envoy, EnvoyOptions};
use sha2::{Digest, Sha256};

const KEY_A: &str = "ak_live_7Hq2pXv9sLmN4rT8wZ1c";
const KEY_OLD: &str = "ak_live_expired_0000000000";

fn sha(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn config() -> String {
    format!(
        r#"{{
        "api_keys": {{
            "from_headers": ["x-api-key"],
            "from_params": ["api_key"],
            "client_header": "x-api-client",
            "clients": [
                {{"id": "partner-a", "sha256": "{}", "scopes": ["orders:read"],
                  "not_after": "2099-01-01T00:00:00Z"}},
                {{"id": "old-partner", "sha256": "{}", "not_after": "2020-01-01T00:00:00Z"}}
            ]
        }},
        "rules": [
            {{"name": "orders", "match": {{"prefix": "/orders"}}, "auth": ["api_key"],
              "scopes": ["orders:read"]}},
            {{"name": "admin", "match": {{"prefix": "/admin"}}, "auth": ["api_key"],
              "scopes": ["admin"]}},
            {{"name": "public", "match": {{"prefix": "/public"}}}}
        ]}}"#,
        sha(KEY_A),
        sha(KEY_OLD)
    )
}

fn assert_problem(r: &common::Response, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let body = r.json();
    assert_eq!(body["reason"], reason, "{body}");
    assert_eq!(body["status"], status);
    // Hardening headers are on denials too.
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    if status == 401 {
        // RFC 9110: every 401 carries a challenge.
        assert_eq!(
            r.header("www-authenticate"),
            Some("APIKey realm=\"api-guard\"")
        );
    }
}

#[test]
fn api_keys_in_envoy() {
    let envoy = Envoy::start_with(EnvoyOptions::new(&config()).concurrency(2));
    let client = envoy.client();

    // A valid key: the upstream gets the client id, not the key, and not a forged id.
    let r = client.must_get(
        "/orders/1",
        &[("x-api-key", KEY_A), ("x-api-client", "admin")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = envoy.upstream.last().unwrap();
    assert_eq!(seen.header("x-api-key"), None, "the key is not forwarded");
    let ids: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(n, _)| n == "x-api-client")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(ids, vec!["partner-a"], "forged client header replaced");

    // A key in the query: accepted, and stripped from the upstream's path.
    let r = client.must_get(&format!("/orders/2?x=1&api_key={KEY_A}"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(envoy.upstream.last().unwrap().path, "/orders/2?x=1");

    // Missing, unknown, expired, wrong scope.
    assert_problem(&client.must_get("/orders/1", &[]), 401, "api_key_missing");
    assert_problem(
        &client.must_get("/orders/1", &[("x-api-key", "ak_live_guess")]),
        401,
        "api_key_unknown",
    );
    assert_problem(
        &client.must_get("/orders/1", &[("x-api-key", KEY_OLD)]),
        401,
        "api_key_expired",
    );
    assert_problem(
        &client.must_get("/admin", &[("x-api-key", KEY_A)]),
        403,
        "insufficient_scope",
    );

    // Repeated key headers, or a key in both header and query: a clean 401.
    assert_problem(
        &client.must_get("/orders/1", &[("x-api-key", KEY_A), ("x-api-key", KEY_A)]),
        401,
        "api_key_unknown",
    );
    assert_problem(
        &client.must_get(
            &format!("/orders/1?api_key={KEY_A}"),
            &[("x-api-key", KEY_A)],
        ),
        401,
        "api_key_unknown",
    );
    // Oversized keys: a clean 401 without hashing; beyond Envoy's own header limit, Envoy's
    // 431 (never a 5xx or a dropped connection).
    let big = "k".repeat(8 * 1024);
    let r = client.must_get("/orders/1", &[("x-api-key", &big)]);
    assert_problem(&r, 401, "api_key_unknown");
    assert!(!r.text().contains("kkkk"));
    let huge = "k".repeat(100 * 1024);
    let r = client.must_get("/orders/1", &[("x-api-key", &huge)]);
    assert!((400..500).contains(&r.status), "{}", r.status);

    // A public route needs no key.
    assert_eq!(client.must_get("/public", &[]).status, 200);

    // Keys never reach the log, not even in denials.
    // Envoy flushes its log file on a timer: wait for the denial lines.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut log = envoy.log();
    while !log.contains("api_key_expired") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        log = envoy.log();
    }
    assert!(log.contains("api_key_unknown"), "denials are logged");
    for secret in [KEY_A, KEY_OLD, "ak_live_guess"] {
        assert!(!log.contains(secret), "key in log");
    }
    let stats = envoy.admin().get("/stats/prometheus").unwrap().text();
    let expired: Vec<&str> = stats
        .lines()
        .filter(|l| l.contains("api_key_expired"))
        .collect();
    assert!(expired.iter().any(|l| l.ends_with(" 1")), "{expired:?}");
}

#[test]
fn plaintext_or_malformed_keys_are_refused_at_configuration() {
    let log = Envoy::start_expect_refusal(
        r#"{"api_keys": {"clients": [{"id": "a", "key": "ak_live_plaintext"}]}}"#,
    );
    assert!(
        log.contains("api_keys.clients[0].key: unknown field"),
        "{log}"
    );
    assert!(!log.contains("ak_live_plaintext"));
    let log = Envoy::start_expect_refusal(
        r#"{"api_keys": {"clients": [{"id": "a", "sha256": "ak_live_notadigest"}]}}"#,
    );
    assert!(
        log.contains("api_keys.clients[0].sha256: expected 64 lowercase hex"),
        "{log}"
    );
    assert!(!log.contains("ak_live_notadigest"));
}
