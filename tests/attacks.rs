//! The adversarial suite in a real Envoy: what an attacker tries against authentication,
//! rate limits and headers, and what api-guard answers. Nothing may get through, nothing may
//! answer 5xx. (JWT signature attacks: tests/jwt.rs `attacks_fail_on_both_crypto_paths`;
//! body attacks: tests/body.rs and the body section below.)

mod common;

#[path = "../src/policy/auth/jwt/mint.rs"]
mod mint;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Envoy, EnvoyOptions, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const KEY: &str = "ak_attack_suite_0123456789";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": "https://idp.test", "sub": "alice", "exp": now() + 600, "scope": "read"})
}

fn good_token() -> String {
    mint::token(&json!({"alg": "RS256", "kid": "rsa1"}), &claims())
}

fn config() -> String {
    let digest: String = Sha256::digest(KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({
        "jwt_providers": {"idp": {
            "issuer": "https://idp.test",
            "local_jwks": serde_json::from_str::<Value>(mint::JWKS).unwrap(),
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "from_params": ["access_token"],
            "claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}],
            "payload_header": "x-jwt-payload"
        }},
        "api_keys": {"from_headers": ["x-api-key"], "client_header": "x-api-client",
                     "clients": [{"id": "partner", "sha256": digest}]},
        "rate_limits": {"tight": {"requests": 3, "per": "hour"}},
        "rules": [
            {"name": "jwt", "match": {"prefix": "/jwt"}, "auth": ["idp"]},
            {"name": "key", "match": {"prefix": "/key"}, "auth": ["api_key"], "rate_limit": "tight"},
            {"name": "ip", "match": {"prefix": "/ip"}, "rate_limit": "tight"}
        ]
    })
    .to_string()
}

fn assert_refused(r: &Response, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert!(
        !r.text().contains("eyJ"),
        "{what}: the answer echoes a token"
    );
    assert!(!r.text().contains(KEY), "{what}: the answer echoes a key");
}

#[test]
fn token_smuggling_is_refused() {
    let envoy = Envoy::start_with(EnvoyOptions::new(&config()));
    let c = envoy.client();
    let good = good_token();
    assert_eq!(
        c.must_get("/jwt", &[("authorization", &format!("Bearer {good}"))])
            .status,
        200
    );

    // x5u, like jwk/jku/x5c (tests/jwt.rs), is never followed.
    let (input, _) = good.rsplit_once('.').unwrap();
    let x5u = mint::token(
        &json!({"alg": "RS256", "kid": "nope", "x5u": "http://127.0.0.1:1/k"}),
        &claims(),
    );
    // Padded and trailing-garbage signatures of a valid token.
    let signature = good.rsplit_once('.').unwrap().1;
    let cases = [
        ("x5u", x5u),
        ("padded signature", format!("{input}.{signature}==")),
        (
            "signature with trailing bytes",
            format!("{input}.{signature}AA"),
        ),
        ("four segments", format!("{good}.AAAA")),
        ("oversized token", format!("{input}.{}", "A".repeat(9000))),
        ("empty", String::new()),
        (
            "whitespace inside",
            format!("{} {}", &good[..20], &good[20..]),
        ),
    ];
    for (what, token) in &cases {
        let r = c.must_get("/jwt", &[("authorization", &format!("Bearer {token}"))]);
        assert_refused(&r, 401, what);
    }
    // Two Authorization headers: refused, even when one of them is valid.
    let r = c.must_get(
        "/jwt",
        &[
            ("authorization", &format!("Bearer {good}")),
            ("authorization", "Bearer x.y.z"),
        ],
    );
    assert_refused(&r, 401, "duplicate authorization");
    // A good header token does not excuse a bad one in the query.
    let r = c.must_get(
        "/jwt?access_token=x.y.z",
        &[("authorization", &format!("Bearer {good}"))],
    );
    assert_refused(&r, 401, "token in header and query");
    // An API key does not open a JWT-only route.
    assert_refused(
        &c.must_get("/jwt", &[("x-api-key", KEY)]),
        401,
        "key on a jwt route",
    );
    assert_eq!(
        envoy.upstream.count(),
        1,
        "only the good request reached the upstream"
    );
}

#[test]
fn forged_identity_headers_never_reach_the_upstream() {
    let envoy = Envoy::start_with(EnvoyOptions::new(&config()));
    let c = envoy.client();
    let forged = [
        ("x-jwt-sub", "admin"),
        ("x-jwt-payload", "eyJzdWIiOiJhZG1pbiJ9"),
        ("x-api-client", "root"),
        ("x-api-guard-dry-run", "none"),
    ];
    // On a public path, on a JWT route and on a key route.
    let good = format!("Bearer {}", good_token());
    let requests: [(&str, Vec<(&str, &str)>); 3] = [
        ("/public", forged.to_vec()),
        (
            "/jwt",
            [forged.as_slice(), &[("authorization", good.as_str())]].concat(),
        ),
        ("/key", [forged.as_slice(), &[("x-api-key", KEY)]].concat()),
    ];
    for (path, headers) in &requests {
        assert_eq!(c.must_get(path, headers).status, 200, "{path}");
        let seen = envoy.upstream.last().unwrap();
        assert_ne!(seen.header("x-jwt-sub"), Some("admin"), "{path}");
        assert_ne!(seen.header("x-api-client"), Some("root"), "{path}");
        assert_eq!(seen.header("x-api-guard-dry-run"), None, "{path}");
        assert!(seen
            .headers
            .iter()
            .filter(|(n, _)| n == "x-jwt-payload")
            .all(|(_, v)| v != "eyJzdWIiOiJhZG1pbiJ9"));
    }
    let jwt_seen = &envoy.upstream.received()[1];
    assert_eq!(jwt_seen.header("x-jwt-sub"), Some("alice"));
    assert_eq!(
        jwt_seen.header("authorization"),
        None,
        "the credential is not forwarded"
    );
    let key_seen = &envoy.upstream.received()[2];
    assert_eq!(key_seen.header("x-api-client"), Some("partner"));
    assert_eq!(key_seen.header("x-api-key"), None);
}

#[test]
fn rate_limits_cannot_be_evaded() {
    // An edge Envoy (use_remote_address: true, as envoy/envoy.yaml): Envoy's client address is
    // the peer, whatever X-Forwarded-For says. (With Envoy's default, false, Envoy itself trusts
    // the last X-Forwarded-For entry, for every filter: the README says so.)
    let envoy = Envoy::start_with(
        EnvoyOptions::new(&config())
            .concurrency(2)
            .use_remote_address(true),
    );
    let c = envoy.client();
    // Rotating X-Forwarded-For without trusted hops changes nothing: the peer is the client.
    let statuses: Vec<u16> = (0..6)
        .map(|i| {
            let xff = format!("198.51.100.{i}");
            c.must_get("/ip", &[("x-forwarded-for", &xff)]).status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    // Header-name case variants are one header (HTTP/1 names are case-insensitive; Envoy
    // lower-cases them): one client, one bucket.
    let variants = [
        "x-api-key",
        "X-API-KEY",
        "X-Api-Key",
        "x-API-key",
        "X-api-KEY",
    ];
    let statuses: Vec<u16> = variants
        .iter()
        .map(|h| c.must_get("/key", &[(h, KEY)]).status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // The key in two headers at once is refused, not counted twice or split.
    let r = c.must_get("/key", &[("x-api-key", KEY), ("X-Api-Key", KEY)]);
    assert_refused(&r, 401, "repeated key header");
}

#[test]
fn very_many_or_very_large_headers_get_a_clean_answer() {
    let envoy = Envoy::start_with(EnvoyOptions::new(&config()));
    let c = envoy.client();
    // Within Envoy's limits (100 headers, 60 KiB): api-guard answers as usual.
    let many: Vec<(String, String)> = (0..90)
        .map(|i| (format!("x-h{i}"), "v".repeat(100)))
        .collect();
    let many_refs: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let r = c.must_get("/public", &many_refs);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let big = "a".repeat(50_000);
    let r = c.must_get("/jwt", &[("authorization", &format!("Bearer {big}"))]);
    assert_refused(&r, 401, "a 50 KB bearer token");
    // Past Envoy's limits, Envoy itself answers 431 before any filter; never a 5xx.
    let too_many: Vec<(String, String)> =
        (0..150).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let refs: Vec<(&str, &str)> = too_many
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let r = c.request("GET", "/public", &refs, None);
    if let Ok(r) = r {
        assert!((400..500).contains(&r.status), "{}", r.status);
    }
    let huge = "b".repeat(100_000);
    if let Ok(r) = c.request("GET", "/public", &[("x-huge", &huge)], None) {
        assert!((400..500).contains(&r.status), "{}", r.status);
    }
    // And Envoy keeps serving.
    assert_eq!(c.must_get("/public", &[]).status, 200);
}

const BODY_CONFIG: &str = r#"{"rules":[{"name":"orders","match":{"prefix":"/orders"},"threats":"block",
    "body":{"max_bytes":65536,"content_types":["application/json"],"max_depth":16,
            "json_schema":{"type":"object","properties":{"qty":{"type":"number","maximum":100}},
                           "required":["qty"]}}}]}"#;

fn post_json(envoy: &Envoy, body: &[u8]) -> Response {
    envoy.client().post_json("/orders", body).unwrap()
}

#[test]
fn hostile_json_bodies_get_a_clean_4xx() {
    let envoy = Envoy::start(BODY_CONFIG);
    assert_eq!(post_json(&envoy, br#"{"qty": 3}"#).status, 200);
    let digits = "9".repeat(20_000);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("a number past f64", br#"{"qty": 1e999999}"#.to_vec(), 400),
        (
            "20,000 digits",
            format!(r#"{{"qty": {digits}}}"#).into_bytes(),
            400,
        ),
        (
            "a huge negative exponent",
            br#"{"qty": 1e-999999}"#.to_vec(),
            200,
        ),
        (
            "duplicate keys",
            br#"{"qty": 1, "qty": 1000}"#.to_vec(),
            400,
        ),
        (
            "invalid UTF-8",
            b"{\"qty\": 1, \"n\": \"\xff\xfe\"}".to_vec(),
            400,
        ),
        (
            "a lone surrogate escape",
            br#"{"qty": 1, "n": "\ud800"}"#.to_vec(),
            400,
        ),
        (
            "nesting past max_depth",
            format!(r#"{{"qty":1,"a":{}{}}}"#, "[".repeat(40), "]".repeat(40)).into_bytes(),
            400,
        ),
        (
            "escaped XSS in a value",
            br#"{"qty": 1, "n": "\u003cscript\u003ealert(1)\u003c/script\u003e"}"#.to_vec(),
            403,
        ),
        (
            "SQL injection in a key",
            br#"{"qty": 1, "1' OR '1'='1": 0}"#.to_vec(),
            403,
        ),
        (
            "a BOM before the object",
            b"\xef\xbb\xbf{\"qty\": 1}".to_vec(),
            400,
        ),
        ("two documents", br#"{"qty": 1}{"qty": 2}"#.to_vec(), 400),
    ];
    for (what, body, status) in &cases {
        let r = post_json(&envoy, body);
        assert_eq!(r.status, *status, "{what}: {}", r.text());
        if *status != 200 {
            assert_eq!(
                r.header("content-type"),
                Some("application/problem+json"),
                "{what}"
            );
            assert!(
                !r.text().contains("999999")
                    && !r.text().contains("alert(1)")
                    && !r.text().contains("OR"),
                "{what}: echoes the body"
            );
        }
    }
    assert_eq!(
        post_json(&envoy, br#"{"qty": 4}"#).status,
        200,
        "Envoy keeps serving"
    );
}

#[test]
fn a_slow_chunked_body_is_judged_whole() {
    use std::io::{BufReader, Write};
    let envoy = Envoy::start(BODY_CONFIG);
    // Trickled a few bytes at a time: the verdict waits for the whole body, and a split
    // inside a token or a multi-byte character changes nothing.
    for (body, status) in [
        (r#"{"qty": 7, "note": "ünïcödé"}"#, 200),
        (r#"{"qty": 700}"#, 400),
        (r#"{"qty": 1, "x": "<script>"}"#, 403),
    ] {
        let mut stream = envoy.client().connect().unwrap();
        stream
            .write_all(b"POST /orders HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
            .unwrap();
        for chunk in body.as_bytes().chunks(3) {
            let mut bytes = format!("{:x}\r\n", chunk.len()).into_bytes();
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
            stream.write_all(&bytes).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        stream.write_all(b"0\r\n\r\n").unwrap();
        let r = common::http::read_response(&mut BufReader::new(stream)).unwrap();
        assert_eq!(r.status, status, "{body}: {}", r.text());
    }
    let passed: Vec<_> = envoy
        .upstream
        .received()
        .into_iter()
        .filter(|r| r.path == "/orders")
        .collect();
    assert_eq!(
        passed.len(),
        1,
        "only the valid body reached the upstream whole"
    );
    assert_eq!(
        passed[0].body,
        r#"{"qty": 7, "note": "ünïcödé"}"#.as_bytes()
    );
}
