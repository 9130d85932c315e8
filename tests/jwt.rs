//! JWT verification in a real Envoy: algorithms, answers, both crypto paths, the cache,
//! remote JWKS faults, and agreement with Envoy's own jwt_authn.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

#[path = "../src/policy/auth/jwt/mint.rs"]
mod mint;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Envoy, EnvoyOptions, Response};
use serde_json::{json, Value};

const ISS: &str = "https://idp.test";
const NATIVE_COUNTER: &str = "api_guard_jwt_native_verify";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "orders", "sub": "alice", "exp": now() + 600, "iat": now(),
           "scope": "orders:read", "realm": {"roles": ["a", "b"]}})
}

fn header(alg: &str) -> Value {
    json!({"alg": alg, "typ": "JWT", "kid": mint::default_kid(alg)})
}

fn token(alg: &str) -> String {
    mint::token(&header(alg), &claims())
}

fn config() -> String {
    json!({
        "jwt_providers": {"corp": {
            "issuer": ISS,
            "audiences": ["orders"],
            "local_jwks": serde_json::from_str::<Value>(mint::JWKS).unwrap(),
            "claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"},
                                 {"claim": "realm.roles", "header": "x-jwt-roles"}],
            "payload_header": "x-jwt-payload"
        }},
        "rules": [
            {"name": "write", "match": {"prefix": "/api/write"}, "auth": ["corp"], "scopes": ["orders:write"]},
            {"name": "api", "match": {"prefix": "/api"}, "auth": ["corp"]}
        ]
    })
    .to_string()
}

fn get(envoy: &Envoy, path: &str, headers: &[(&str, &str)]) -> Response {
    envoy
        .client()
        .request("GET", path, headers, None)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn bearer(envoy: &Envoy, path: &str, token: &str) -> Response {
    let auth = format!("Bearer {token}");
    get(envoy, path, &[("authorization", &auth)])
}

/// Asserts a 401/403 problem+json answer with `reason`.
fn assert_denied(r: &Response, status: u16, reason: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert_eq!(r.json()["reason"], reason, "{what}: {}", r.text());
}

#[test]
fn tokens_pass_with_claim_headers_and_every_failure_answers() {
    let envoy = Envoy::start(&config());
    // Every algorithm passes; the upstream sees the claims, never the token.
    for alg in [
        "RS256", "ES256", "EdDSA", "HS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES384",
        "ES512", "HS384", "HS512",
    ] {
        let t = token(alg);
        let auth = format!("Bearer {t}");
        let r = get(
            &envoy,
            "/api/orders",
            &[("authorization", &auth), ("x-jwt-sub", "mallory")],
        );
        assert_eq!(r.status, 200, "{alg}: {}", r.text());
        let seen = envoy.upstream.last().unwrap();
        assert_eq!(seen.header("x-jwt-sub"), Some("alice"), "{alg}");
        assert_eq!(seen.header("x-jwt-roles"), Some("a,b"), "{alg}");
        assert_eq!(seen.header("x-jwt-payload"), t.split('.').nth(1), "{alg}");
        assert_eq!(
            seen.header("authorization"),
            None,
            "{alg}: credential forwarded"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    assert!(
        envoy.prometheus_value(NATIVE_COUNTER) >= 6,
        "RS*/ES* went native"
    );

    // Every failure class.
    let with = |k: &str, v: Value| {
        let mut c = claims();
        c[k] = v;
        c
    };
    let rs = header("RS256");
    let good = token("RS256");
    let mut tampered = good.clone();
    tampered.truncate(good.len() - 6);
    tampered.push_str("AAAAAA");
    let none = format!(
        "{}.",
        mint::signing_input(&json!({"alg": "none"}), &claims())
    );
    let cases: Vec<(String, &str)> = vec![
        (
            mint::token(&rs, &with("exp", json!(now() - 3600))),
            "jwt_expired",
        ),
        (
            mint::token(&rs, &with("nbf", json!(now() + 3600))),
            "jwt_not_yet_valid",
        ),
        (
            mint::token(&rs, &with("iss", json!("https://evil.test"))),
            "jwt_issuer",
        ),
        (
            mint::token(&rs, &with("aud", json!("billing"))),
            "jwt_audience",
        ),
        (
            mint::token(&json!({"alg": "RS256", "kid": "nope"}), &claims()),
            "jwt_unknown_kid",
        ),
        (none, "jwt_alg_not_allowed"),
        (
            mint::token(&json!({"alg": "ES384", "kid": "ec256"}), &claims()),
            "jwt_alg_not_allowed",
        ),
        (tampered, "jwt_bad_signature"),
        ("abc.def".to_string(), "jwt_malformed"),
        ("a".repeat(9000), "jwt_malformed"),
    ];
    for (t, reason) in cases {
        let r = bearer(&envoy, "/api/orders", &t);
        assert_denied(&r, 401, reason, reason);
        let www = r.header("www-authenticate").unwrap();
        assert!(
            www.starts_with("Bearer realm=\"api-guard\", error=\"invalid_token\""),
            "{www}"
        );
        assert!(
            !r.text().contains(&t[..t.len().min(30)]),
            "the answer echoes the token"
        );
    }
    let r = get(&envoy, "/api/orders", &[]);
    assert_denied(&r, 401, "jwt_missing", "missing");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"api-guard\"")
    );
    let r = bearer(&envoy, "/api/write", &good);
    assert_denied(&r, 403, "insufficient_scope", "scope");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"api-guard\", error=\"insufficient_scope\", scope=\"orders:write\"")
    );
    // A CORS preflight passes authentication.
    let r = envoy
        .client()
        .request(
            "OPTIONS",
            "/api/orders",
            &[
                ("origin", "https://app.test"),
                ("access-control-request-method", "POST"),
            ],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(envoy.prometheus_value("api_guard_deny_jwt_expired"), 1);
    // Tokens never reach the log.
    let log = envoy.log();
    assert!(!log.contains(&good[..40]), "a token was logged");
}

#[test]
fn the_cache_spares_repeated_native_checks() {
    let envoy = Envoy::start(&config());
    let t = token("ES256");
    for _ in 0..5 {
        assert_eq!(bearer(&envoy, "/api/orders", &t).status, 200);
    }
    assert_eq!(
        envoy.prometheus_value(NATIVE_COUNTER),
        1,
        "one signature check"
    );
    let other = token("RS256");
    assert_eq!(bearer(&envoy, "/api/orders", &other).status, 200);
    assert_eq!(envoy.prometheus_value(NATIVE_COUNTER), 2);

    // cache_entries: 0 checks every time.
    let off = config().replace(
        "\"payload_header\"",
        "\"cache_entries\":0,\"payload_header\"",
    );
    let envoy = Envoy::start(&off);
    for _ in 0..3 {
        assert_eq!(bearer(&envoy, "/api/orders", &t).status, 200);
    }
    assert_eq!(envoy.prometheus_value(NATIVE_COUNTER), 3);
}

#[test]
fn forced_fallback_verifies_in_pure_rust() {
    let envoy =
        Envoy::start_with(EnvoyOptions::new(&config()).vm_env("API_GUARD_JWT_NATIVE", "off"));
    for alg in ["RS256", "ES256", "ES384", "ES512", "RS512"] {
        assert_eq!(
            bearer(&envoy, "/api/orders", &token(alg)).status,
            200,
            "{alg}"
        );
        let mut c = claims();
        c["sub"] = json!("admin");
        let t = token(alg);
        let forged = format!(
            "{}.{}",
            mint::signing_input(&header(alg), &c),
            t.split('.').nth(2).unwrap()
        );
        assert_denied(
            &bearer(&envoy, "/api/orders", &forged),
            401,
            "jwt_bad_signature",
            alg,
        );
    }
    // Not one signature went through the host (its counter is defined only when detected
    // available, and stays at zero here).
    assert_eq!(envoy.prometheus_value(NATIVE_COUNTER), 0);
}

#[test]
fn bad_provider_configs_are_refused_by_envoy() {
    let log = Envoy::start_expect_refusal(
        &json!({"jwt_providers": {"corp": {"local_jwks": mint::jwks_with(&["rsa1"]), "algorithms": ["none"]}}})
            .to_string(),
    );
    assert!(
        log.contains("jwt_providers.corp.algorithms[0]: `none` is never accepted"),
        "{log}"
    );
    let log = Envoy::start_expect_refusal(
        &json!({"jwt_providers": {"corp": {"local_jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}}})
            .to_string(),
    );
    assert!(
        log.contains("jwt_providers.corp.local_jwks.keys[0].k"),
        "{log}"
    );
    assert!(!log.contains("c2VjcmV0"), "the secret was logged");
}
