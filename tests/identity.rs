//! Client identity in a real Envoy (issue #14, sections 1 and 5): the client address behind
//! trusted proxies (X-Forwarded-For read from the right, an unknown address fails closed),
//! unambiguous rate-limit identities of JWT clients, tokens that repeat a member name,
//! several providers without `issuer` on one rule, and `require_https: "redirect"` under a
//! hostile Host. The address tests run an edge Envoy (`use_remote_address: true`, as
//! envoy/envoy.yaml): Envoy's own address of the client is then the TCP peer, 127.0.0.1 (the
//! proxy in front, as far as api-guard knows), and Envoy appends an entry of its own to
//! X-Forwarded-For (the peer, or its own address for a loopback peer), so
//! `xff_trusted_hops: 2` names the address that proxy saw.

mod common;

#[path = "../src/policy/auth/jwt/mint.rs"]
mod mint;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Envoy, EnvoyOptions, Response};
use serde_json::{json, Value};

fn assert_denied(r: &Response, status: u16, reason: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert_eq!(r.json()["reason"], reason, "{what}: {}", r.text());
}

/// More X-Forwarded-For entries than the old 64-entry cap: 64 junk ones, then the real address.
fn long_xff(real: &str) -> String {
    format!("{}{real}", "1,".repeat(64))
}

const SCREEN: &str = r#"{
  "client_ip": {"xff_trusted_hops": 2},
  "ip": {"deny": ["203.0.113.0/24"]},
  "rules": [
    {"name": "internal", "match": {"prefix": "/internal"},
     "ip": {"allow": ["127.0.0.0/8", "10.0.0.0/8"]}},
    {"name": "open", "match": {"prefix": "/"}}
  ]
}"#;

#[test]
fn the_client_behind_a_long_forwarded_for_is_the_one_screened() {
    let envoy = Envoy::start_with(EnvoyOptions::new(SCREEN).use_remote_address(true));
    let c = envoy.client();
    // A deny-listed client hiding behind 64 junk entries is still itself: refused.
    let r = c.must_get("/x", &[("x-forwarded-for", &long_xff("203.0.113.9"))]);
    assert_denied(&r, 403, "ip_denied", "deny list behind 64 junk entries");
    // An allow list of internal ranges (the proxy's own) does not admit an outside client.
    let r = c.must_get(
        "/internal",
        &[("x-forwarded-for", &long_xff("198.51.100.7"))],
    );
    assert_denied(&r, 403, "ip_denied", "allow list behind 64 junk entries");
    // Thousands of entries change nothing; an internal client is admitted.
    let huge = format!("{}10.1.2.3", "9.9.9.9,".repeat(2000));
    let r = c.must_get("/internal", &[("x-forwarded-for", &huge)]);
    assert_eq!(r.status, 200, "{}", r.text());
    // Several X-Forwarded-For headers are one list: the last entry of the last one counts.
    let r = c.must_get(
        "/x",
        &[
            ("x-forwarded-for", "10.1.2.3"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    );
    assert_denied(&r, 403, "ip_denied", "two headers");
    assert_eq!(envoy.upstream.count(), 1);
}

#[test]
fn a_non_address_in_the_trusted_position_is_refused_by_every_list() {
    let envoy = Envoy::start_with(EnvoyOptions::new(SCREEN).use_remote_address(true));
    let c = envoy.client();
    for xff in [
        "203.0.113.9, unknown",
        "203.0.113.9,",
        "203.0.113.9, ",
        "_hidden",
        "203.0.113.9 10.0.0.1",
    ] {
        // A deny list does not silently pass it (the client could be in it)...
        let r = c.must_get("/x", &[("x-forwarded-for", xff)]);
        assert_denied(&r, 403, "client_ip_unknown", &format!("deny list, {xff:?}"));
        // ...and an allow list does not admit it as the proxy.
        let r = c.must_get("/internal", &[("x-forwarded-for", xff)]);
        assert_denied(
            &r,
            403,
            "client_ip_unknown",
            &format!("allow list, {xff:?}"),
        );
    }
    // No X-Forwarded-For from the proxy (only Envoy's own entry): unknown too, never the
    // peer (the trusted proxy).
    let r = c.must_get("/internal", &[]);
    assert_denied(&r, 403, "client_ip_unknown", "no header");
    assert_eq!(envoy.upstream.count(), 0);
    assert_eq!(
        envoy.prometheus_value("api_guard_deny_client_ip_unknown"),
        11
    );
}

const LIMITED: &str = r#"{
  "client_ip": {"xff_trusted_hops": 2},
  "rate_limits": {"one": {"requests": 2, "per": "hour"}},
  "rules": [{"name": "all", "match": {"prefix": "/"}, "rate_limit": "one"}]
}"#;

#[test]
fn the_rate_limit_counts_the_real_client_and_never_an_unknown_bucket() {
    let envoy = Envoy::start_with(
        EnvoyOptions::new(LIMITED)
            .concurrency(2)
            .use_remote_address(true),
    );
    let c = envoy.client();
    let statuses = |xff: &str, n: usize| -> Vec<u16> {
        (0..n)
            .map(|_| c.must_get("/x", &[("x-forwarded-for", xff)]).status)
            .collect()
    };
    // Two clients behind 64 junk entries: each has its own bucket, not the proxy's.
    assert_eq!(statuses(&long_xff("198.51.100.1"), 3), [200, 200, 429]);
    assert_eq!(statuses(&long_xff("198.51.100.2"), 3), [200, 200, 429]);
    // Clients whose address is unknown are refused, each time, with a reason of their own:
    // they never share one bucket (nor the proxy's).
    for xff in ["garbage", "198.51.100.3,", ""] {
        for _ in 0..3 {
            let r = c.must_get("/x", &[("x-forwarded-for", xff)]);
            assert_denied(&r, 403, "client_ip_unknown", &format!("{xff:?}"));
        }
    }
    // A known client after them still has its whole quota.
    assert_eq!(statuses("garbage, 198.51.100.3", 3), [200, 200, 429]);
    assert_eq!(envoy.prometheus_value("api_guard_deny_rate_limited"), 3);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn es256_header() -> Value {
    json!({"alg": "ES256", "typ": "JWT", "kid": "ec256"})
}

/// A token whose payload is `payload` exactly as written (so it may repeat a name).
fn token_with_raw_payload(payload: &str) -> String {
    let input = format!(
        "{}.{}",
        mint::b64(es256_header().to_string()),
        mint::b64(payload)
    );
    let signature = mint::sign("ES256", "ec256", input.as_bytes());
    format!("{input}.{}", mint::b64(signature))
}

fn bearer(envoy: &Envoy, path: &str, token: &str) -> Response {
    let auth = format!("Bearer {token}");
    envoy
        .client()
        .request("GET", path, &[("authorization", &auth)], None)
        .unwrap()
}

/// One provider without `issuer` (any `iss` is accepted) and one request an hour per client.
fn jwt_limited() -> String {
    json!({
        "jwt_providers": {"any": {
            "local_jwks": serde_json::from_str::<Value>(mint::JWKS).unwrap(),
            "payload_header": "x-jwt-payload"
        }},
        "rate_limits": {"one": {"requests": 1, "per": "hour"}},
        "rules": [{"name": "api", "match": {"prefix": "/"}, "auth": ["any"], "rate_limit": "one"}],
        "log": {"decisions": "all"}
    })
    .to_string()
}

fn claims(iss: Option<&str>, sub: Option<&str>, jti: &str) -> Value {
    let mut c = json!({"exp": now() + 600, "iat": now(), "jti": jti});
    if let Some(iss) = iss {
        c["iss"] = json!(iss);
    }
    if let Some(sub) = sub {
        c["sub"] = json!(sub);
    }
    c
}

#[test]
fn jwt_clients_cannot_share_a_rate_limit_bucket_by_accident() {
    let envoy = Envoy::start(&jwt_limited());
    // `iss: "https://a|b", sub: "c"` and `iss: "https://a", sub: "b|c"` are two clients.
    let first = mint::token(
        &es256_header(),
        &claims(Some("https://a|b"), Some("c"), "1"),
    );
    let second = mint::token(
        &es256_header(),
        &claims(Some("https://a"), Some("b|c"), "1"),
    );
    assert_eq!(bearer(&envoy, "/x", &first).status, 200);
    let r = bearer(&envoy, "/x", &second);
    assert_eq!(r.status, 200, "the | collision: {}", r.text());
    assert_eq!(bearer(&envoy, "/x", &second).status, 429, "still limited");
    // Tokens without a sub are each their own client; one such token is limited as usual.
    let no_sub_1 = mint::token(&es256_header(), &claims(Some("https://a"), None, "n1"));
    let no_sub_2 = mint::token(&es256_header(), &claims(Some("https://a"), None, "n2"));
    assert_eq!(bearer(&envoy, "/x", &no_sub_1).status, 200);
    let r = bearer(&envoy, "/x", &no_sub_2);
    assert_eq!(r.status, 200, "tokens without sub: {}", r.text());
    assert_eq!(bearer(&envoy, "/x", &no_sub_1).status, 429);
    // The log lines name these clients readably and distinctly, never with the token.
    let logged_clients = || -> Vec<String> {
        envoy
            .api_guard_log()
            .iter()
            .filter_map(|l| l.find('{').map(|i| &l[i..]))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["client"].as_str().map(str::to_string))
            .collect()
    };
    // Six decisions, six lines (Envoy writes its log asynchronously).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while logged_clients().len() < 6 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let clients = logged_clients();
    let lines = envoy.api_guard_log();
    assert!(
        clients.contains(&"jwt:https://a%7Cb|c".to_string()),
        "{clients:?}"
    );
    assert!(
        clients.contains(&"jwt:https://a|b%7Cc".to_string()),
        "{clients:?}"
    );
    let hashed: Vec<&String> = clients
        .iter()
        .filter(|c| c.starts_with("jwt:https://a|#"))
        .collect();
    assert!(hashed.len() >= 2, "{clients:?}");
    assert!(!lines.iter().any(|l| l.contains(&no_sub_1)), "token logged");
}

#[test]
fn a_token_that_repeats_a_member_name_is_malformed() {
    let envoy = Envoy::start(
        &json!({
            "jwt_providers": {"corp": {
                "issuer": "https://example.com",
                "local_jwks": serde_json::from_str::<Value>(mint::JWKS).unwrap(),
                "payload_header": "x-jwt-payload"
            }},
            "rules": [{"match": {"prefix": "/"}, "auth": ["corp"]}]
        })
        .to_string(),
    );
    let exp = now() + 600;
    let good = token_with_raw_payload(&format!(
        r#"{{"iss":"https://example.com","sub":"alice","exp":{exp}}}"#
    ));
    assert_eq!(bearer(&envoy, "/x", &good).status, 200);
    let forged = token_with_raw_payload(&format!(
        r#"{{"iss":"https://evil.example","iss":"https://example.com","sub":"alice","exp":{exp}}}"#
    ));
    let r = bearer(&envoy, "/x", &forged);
    assert_denied(&r, 401, "jwt_malformed", "duplicate iss");
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("repeats a member name"));
    assert_eq!(envoy.upstream.count(), 1);
}

fn two_open_providers() -> String {
    json!({
        "jwt_providers": {
            "a": {"local_jwks": mint::jwks_with(&["rsa1"]),
                  "claim_to_headers": [{"claim": "sub", "header": "x-from-a"}]},
            "b": {"local_jwks": mint::jwks_with(&["ec256"]),
                  "claim_to_headers": [{"claim": "sub", "header": "x-from-b"}]}
        },
        "rules": [
            {"name": "b-only", "match": {"prefix": "/b-only"}, "auth": ["b"]},
            {"name": "both", "match": {"prefix": "/"}, "auth": ["a", "b"]}
        ]
    })
    .to_string()
}

#[test]
fn every_provider_without_issuer_is_tried_whichever_cached_first() {
    let c = claims(Some("https://idp.test"), Some("alice"), "p");
    let for_a = mint::token(&json!({"alg": "RS256", "kid": "rsa1"}), &c);
    let for_b = mint::token(&es256_header(), &c);
    // A fresh Envoy: b's token on the shared rule, before anything cached it.
    let envoy = Envoy::start(&two_open_providers());
    for (token, header) in [(&for_b, "x-from-b"), (&for_a, "x-from-a")] {
        let r = bearer(&envoy, "/both", token);
        assert_eq!(r.status, 200, "{header}: {}", r.text());
        let seen = envoy.upstream.last().unwrap();
        assert_eq!(seen.header(header), Some("alice"));
    }
    // Another Envoy where b cached the token first: the same answer.
    let envoy = Envoy::start(&two_open_providers());
    assert_eq!(bearer(&envoy, "/b-only", &for_b).status, 200);
    let r = bearer(&envoy, "/both", &for_b);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        envoy.upstream.last().unwrap().header("x-from-b"),
        Some("alice")
    );
    // A token neither provider accepts is still refused.
    let r = bearer(&envoy, "/both", &format!("{for_b}x"));
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn an_https_redirect_never_points_at_a_hostile_host() {
    let envoy = Envoy::start(r#"{"headers":{"require_https":"redirect"}}"#);
    let send = |host: &str| {
        let raw = format!("GET /orders?id=1 HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        envoy.client().raw(raw.as_bytes()).unwrap()
    };
    let r = send("api.example.com:8080");
    assert_eq!(r.status, 308, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("https://api.example.com:8080/orders?id=1")
    );
    let mut reached = Vec::new();
    for hostile in [
        "evil.example/phish",
        "evil.example\\phish",
        "api.example.com@evil.example",
        "evil.example?",
        "evil.example:80:80",
        "%65vil.example",
        "evil.example,api.example.com",
    ] {
        let r = send(hostile);
        if r.status == 400 && r.header("content-type") != Some("application/problem+json") {
            // Envoy itself refused the Host (`/`, `\`, `?`) before api-guard saw it.
            continue;
        }
        assert_denied(&r, 403, "https_required", hostile);
        assert_eq!(r.header("location"), None, "{hostile}");
        reached.push(hostile);
    }
    // Envoy 1.40 lets these through to api-guard: `https://api.example.com@evil.example/`
    // would send the browser to evil.example.
    for through in [
        "api.example.com@evil.example",
        "evil.example:80:80",
        "%65vil.example",
        "evil.example,api.example.com",
    ] {
        assert!(
            reached.contains(&through),
            "{through} did not reach api-guard"
        );
    }
    // The same over HTTP/2, where the Host is the `:authority` pseudo-header.
    let h2 = |authority: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .args([
                "--http2-prior-knowledge",
                "-H",
                &format!("host: {authority}"),
            ])
            .arg(format!("http://127.0.0.1:{}/orders", envoy.port))
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(h2("api.example.com"), "308 https://api.example.com/orders");
    // (Envoy's HTTP/2 codec itself resets an `:authority` with `@`.)
    assert_eq!(h2("evil.example:80:80"), "403");
    assert_eq!(h2("%65vil.example"), "403");
    assert_eq!(envoy.upstream.count(), 0);
}
