//! JWT verification in a real Envoy: algorithms, answers, both crypto paths, the cache,
//! remote JWKS faults, and agreement with Envoy's own jwt_authn.

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
            "payload_header": "x-jwt-payload",
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "from_params": ["access_token"],
            "from_cookies": ["session"]
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
        assert_eq!(seen.header("x-jwt-roles"), Some(r#"["a","b"]"#), "{alg}");
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

    // Tokens in the query and in a cookie are removed before the upstream too.
    let t = token("ES256");
    let r = get(
        &envoy,
        &format!("/api/orders?a=1&access_token={t}&b=2"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(envoy.upstream.last().unwrap().path, "/api/orders?a=1&b=2");
    let cookie = format!("theme=dark; session={t}");
    let r = get(&envoy, "/api/orders", &[("cookie", &cookie)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        envoy.upstream.last().unwrap().header("cookie"),
        Some("theme=dark")
    );
    // A good header token does not excuse a bad query token.
    let auth = format!("Bearer {t}");
    let r = get(
        &envoy,
        "/api/orders?access_token=garbage",
        &[("authorization", &auth)],
    );
    assert_denied(&r, 401, "jwt_malformed", "bad query token");

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
    // A CORS preflight is authenticated by default (`cors_preflight`; tests/upstream.rs).
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
    assert_denied(&r, 401, "jwt_missing", "preflight");
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

/// The classic attacks, each with the status it must get: (name, token, status).
fn attacks() -> Vec<(String, String, u16)> {
    let es = header("ES256");
    let input = mint::signing_input(&es, &claims());
    let sig = mint::sign("ES256", "ec256", input.as_bytes());
    let parsed = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    let (r, s) = parsed.split_scalars();
    let high_s = p256::ecdsa::Signature::from_scalars(r, -*s)
        .unwrap()
        .to_bytes()
        .to_vec();
    let der = parsed.to_der().as_bytes().to_vec();
    // HS256 keyed with the RSA public key (the RS/HS confusion attack), DER and PEM.
    let (spki_der, spki_pem) = mint::rsa1_public_spki();
    let confused = |secret: &[u8]| {
        let h = json!({"alg": "HS256", "kid": "rsa1"});
        let input = mint::signing_input(&h, &claims());
        format!(
            "{input}.{}",
            mint::b64(hmac_sha256::HMAC::mac(input.as_bytes(), secret))
        )
    };
    // A token signed by a fresh key of the attacker's, carried in jwk / jku / x5c.
    let attacker = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
    let point = attacker.verifying_key().to_encoded_point(false);
    let attacker_key = json!({"kty": "EC", "crv": "P-256",
        "x": mint::b64(point.x().unwrap()), "y": mint::b64(point.y().unwrap())});
    let embedded = |name: &str, value: Value| {
        use p256::ecdsa::signature::Signer as _;
        let mut h = json!({"alg": "ES256"});
        h[name] = value;
        let input = mint::signing_input(&h, &claims());
        let sig: p256::ecdsa::Signature = attacker.sign(input.as_bytes());
        format!("{input}.{}", mint::b64(sig.to_bytes()))
    };
    let mut list: Vec<(String, String, u16)> = vec![
        (
            "r=s=0".into(),
            mint::with_signature(&es, &claims(), &[0; 64]),
            401,
        ),
        (
            "DER ECDSA".into(),
            mint::with_signature(&es, &claims(), &der),
            401,
        ),
        (
            "truncated ECDSA".into(),
            mint::with_signature(&es, &claims(), &sig[..63]),
            401,
        ),
        (
            "high-S (valid)".into(),
            mint::with_signature(&es, &claims(), &high_s),
            200,
        ),
        ("RS/HS confusion DER".into(), confused(&spki_der), 401),
        (
            "RS/HS confusion PEM".into(),
            confused(spki_pem.as_bytes()),
            401,
        ),
        ("jwk".into(), embedded("jwk", attacker_key), 401),
        (
            "jku".into(),
            embedded("jku", json!("http://127.0.0.1:1/jwks")),
            401,
        ),
        ("x5c".into(), embedded("x5c", json!(["MIIB"])), 401),
        (
            "kid traversal".into(),
            mint::token(
                &json!({"alg": "RS256", "kid": "../../../../dev/null"}),
                &claims(),
            ),
            401,
        ),
        (
            "kid sql".into(),
            mint::token(
                &json!({"alg": "HS256", "kid": "x' UNION SELECT 'k"}),
                &claims(),
            ),
            401,
        ),
    ];
    for alg in ["none", "None", "NONE", "nOnE"] {
        let input = mint::signing_input(&json!({"alg": alg, "kid": "rsa1"}), &claims());
        list.push((format!("alg {alg}"), format!("{input}."), 401));
    }
    let rs = mint::token(&header("RS256"), &claims());
    list.push((
        "RS256 truncated".into(),
        rs[..rs.len() - 2].to_string(),
        401,
    ));
    list
}

#[test]
fn attacks_fail_on_both_crypto_paths() {
    for native in [true, false] {
        let mut options = EnvoyOptions::new(&config());
        if !native {
            options = options.vm_env("API_GUARD_JWT_NATIVE", "off");
        }
        let envoy = Envoy::start_with(options);
        for (name, t, status) in attacks() {
            let r = bearer(&envoy, "/api/orders", &t);
            assert_eq!(r.status, status, "{name} (native: {native}): {}", r.text());
        }
        assert_eq!(envoy.prometheus_value(NATIVE_COUNTER) > 0, native);
    }
}

/// A JWKS server on 127.0.0.1 whose behaviour the test switches at will.
mod jwks_server {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Clone)]
    pub enum Mode {
        Serve(String),
        Garbage,
        /// Accepts and drops the connection without an answer.
        Down,
        /// Answers after 3 s (past the configured timeout).
        Slow(String),
    }

    pub struct Server {
        pub port: u16,
        mode: Arc<Mutex<Mode>>,
        fetches: Arc<AtomicUsize>,
    }

    impl Server {
        pub fn start(mode: Mode) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let mode = Arc::new(Mutex::new(mode));
            let fetches = Arc::new(AtomicUsize::new(0));
            let (m, f) = (Arc::clone(&mode), Arc::clone(&fetches));
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let (m, f) = (Arc::clone(&m), Arc::clone(&f));
                    std::thread::spawn(move || {
                        let mut stream = stream;
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut request = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => request.extend_from_slice(&buf[..n]),
                            }
                        }
                        f.fetch_add(1, Ordering::SeqCst);
                        let mode = m.lock().unwrap().clone();
                        let body = match mode {
                            Mode::Down => return,
                            Mode::Garbage => "<html>502 Bad Gateway</html>".to_string(),
                            Mode::Serve(body) => body,
                            Mode::Slow(body) => {
                                std::thread::sleep(Duration::from_secs(3));
                                body
                            }
                        };
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(body.as_bytes());
                    });
                }
            });
            Server {
                port,
                mode,
                fetches,
            }
        }

        pub fn set(&self, mode: Mode) {
            *self.mode.lock().unwrap() = mode;
        }

        pub fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }
}

use jwks_server::{Mode, Server};

fn remote_config(refresh_seconds: u64) -> String {
    json!({
        "jwt_providers": {"corp": {
            "issuer": ISS,
            "audiences": ["orders"],
            "remote_jwks": {"cluster": "idp", "authority": "idp.test", "path": "/.well-known/jwks.json",
                            "timeout_ms": 500, "refresh_seconds": refresh_seconds},
            "claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}]
        }},
        "rules": [{"name": "api", "match": {"prefix": "/api"}, "auth": ["corp"]}]
    })
    .to_string()
}

fn kid_token(kid: &str) -> String {
    mint::token(&json!({"alg": "RS256", "kid": kid}), &claims())
}

/// Polls until a request with `token` gets `status` (at most `seconds`).
fn wait_status(envoy: &Envoy, token: &str, status: u16, seconds: u64) -> Response {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let r = bearer(envoy, "/api/orders", token);
        if r.status == status || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

#[test]
fn remote_jwks_survives_faults_and_rotation() {
    let a = mint::jwks_with(&["rsa1"]).to_string();
    let b = mint::jwks_with(&["rsa2"]).to_string();
    let server = Server::start(Mode::Down);
    let envoy = Envoy::start_with(
        EnvoyOptions::new(&remote_config(1)).cluster(common::loopback_cluster("idp", server.port)),
    );
    let rsa1 = kid_token("rsa1");
    // Down at start: fail closed.
    let r = bearer(&envoy, "/api/orders", &rsa1);
    assert_denied(&r, 401, "jwks_unavailable", "before the first fetch");
    sleep_ms(1200);
    assert_denied(
        &bearer(&envoy, "/api/orders", &rsa1),
        401,
        "jwks_unavailable",
        "still down",
    );
    assert!(server.fetches() >= 1, "it tried");
    // Up: the keys arrive within the retry interval.
    server.set(Mode::Serve(a.clone()));
    let r = wait_status(&envoy, &rsa1, 200, 6);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        envoy.upstream.last().unwrap().header("x-jwt-sub"),
        Some("alice")
    );
    // Garbage, down, timeouts and a huge answer after a good fetch: the last good keys stay.
    // The huge one is a JWKS holding the rotated key, padded past the 64 KiB bound.
    let mut huge: Value = serde_json::from_str(&b).unwrap();
    huge["padding"] = json!("x".repeat(100 * 1024));
    for (fault, mode) in [
        ("garbage", Mode::Garbage),
        ("down", Mode::Down),
        ("slow", Mode::Slow(b.clone())),
        ("huge", Mode::Serve(huge.to_string())),
    ] {
        server.set(mode);
        let before = server.fetches();
        sleep_ms(2600);
        assert!(
            server.fetches() > before,
            "{fault}: refreshes were attempted"
        );
        assert_eq!(bearer(&envoy, "/api/orders", &rsa1).status, 200, "{fault}");
    }
    // Rotation: the new key is picked up at the next refresh, the old one is gone.
    server.set(Mode::Serve(b));
    let rsa2 = kid_token("rsa2");
    let r = wait_status(&envoy, &rsa2, 200, 8);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_denied(
        &bearer(&envoy, "/api/orders", &rsa1),
        401,
        "jwt_unknown_kid",
        "rotated out",
    );
}

#[test]
fn unknown_kids_refetch_early_but_rate_limited_once_per_process() {
    let a = mint::jwks_with(&["rsa1"]).to_string();
    let both = mint::jwks_with(&["rsa1", "rsa2"]).to_string();
    let server = Server::start(Mode::Serve(a));
    let envoy = Envoy::start_with(
        EnvoyOptions::new(&remote_config(600))
            .concurrency(2)
            .cluster(common::loopback_cluster("idp", server.port)),
    );
    let r = wait_status(&envoy, &kid_token("rsa1"), 200, 6);
    assert_eq!(r.status, 200, "{}", r.text());
    sleep_ms(1500);
    // Two workers, one fetch: the others load the keys from shared data.
    assert_eq!(server.fetches(), 1, "one fetch per Envoy process");
    for _ in 0..10 {
        assert_eq!(
            bearer(&envoy, "/api/orders", &kid_token("rsa1")).status,
            200
        );
    }
    // The IdP adds a key; a flood of unknown kids causes at most one fetch every 5 s.
    server.set(Mode::Serve(both));
    let start = std::time::Instant::now();
    let mut n = 0;
    while start.elapsed() < std::time::Duration::from_millis(6500) {
        let r = bearer(&envoy, "/api/orders", &kid_token(&format!("bogus-{n}")));
        assert_denied(&r, 401, "jwt_unknown_kid", "bogus kid");
        n += 1;
        sleep_ms(50);
    }
    let early = server.fetches() - 1;
    assert!(
        (1..=2).contains(&early),
        "{early} early fetches for {n} bogus kids in 6.5 s"
    );
    // The early refetch brought the new key.
    let r = wait_status(&envoy, &kid_token("rsa2"), 200, 7);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn envoy_jwt_authn_and_api_guard_agree() {
    let jwks = mint::JWKS.to_string();
    let jwt_authn = json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"corp": {
                "issuer": ISS,
                "audiences": ["orders"],
                "local_jwks": {"inline_string": jwks},
                "require_expiration": true,
                "forward": false,
                "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
            }},
            "rules": [{"match": {"prefix": "/api"}, "requires": {"provider_name": "corp"}}]
        }
    });
    let mut native = EnvoyOptions::new("{}");
    native.filters_before.push(jwt_authn);
    native.without_api_guard = true;
    let native = Envoy::start_with(native);
    let guard = Envoy::start(&config());

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
    let mut without_exp = claims();
    without_exp.as_object_mut().unwrap().remove("exp");
    let es = header("ES256");
    let es_sig = mint::sign(
        "ES256",
        "ec256",
        mint::signing_input(&es, &claims()).as_bytes(),
    );
    let der = p256::ecdsa::Signature::from_slice(&es_sig)
        .unwrap()
        .to_der()
        .as_bytes()
        .to_vec();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("RS256", Some(good.clone())),
        ("ES256", Some(token("ES256"))),
        ("EdDSA", Some(token("EdDSA"))),
        ("HS256", Some(token("HS256"))),
        ("PS384", Some(token("PS384"))),
        ("ES512", Some(token("ES512"))),
        (
            "no kid",
            Some(mint::token(&json!({"alg": "RS256"}), &claims())),
        ),
        (
            "expired",
            Some(mint::token(&rs, &with("exp", json!(now() - 3600)))),
        ),
        (
            "not yet valid",
            Some(mint::token(&rs, &with("nbf", json!(now() + 3600)))),
        ),
        (
            "within skew",
            Some(mint::token(&rs, &with("exp", json!(now() - 30)))),
        ),
        (
            "issuer",
            Some(mint::token(&rs, &with("iss", json!("https://evil.test")))),
        ),
        (
            "audience",
            Some(mint::token(&rs, &with("aud", json!(["billing", "x"])))),
        ),
        (
            "audience in array",
            Some(mint::token(&rs, &with("aud", json!(["billing", "orders"])))),
        ),
        ("no exp", Some(mint::token(&rs, &without_exp))),
        (
            "unknown kid",
            Some(mint::token(
                &json!({"alg": "RS256", "kid": "nope"}),
                &claims(),
            )),
        ),
        ("bad signature", Some(tampered)),
        (
            "alg none",
            Some(format!(
                "{}.",
                mint::signing_input(&json!({"alg": "none"}), &claims())
            )),
        ),
        (
            "alg/key mismatch",
            Some(mint::token(
                &json!({"alg": "ES384", "kid": "ec256"}),
                &claims(),
            )),
        ),
        (
            "DER ECDSA signature",
            Some(mint::with_signature(&es, &claims(), &der)),
        ),
        (
            "ECDSA r=s=0",
            Some(mint::with_signature(&es, &claims(), &[0; 64])),
        ),
        ("malformed", Some("abc.def.ghi".to_string())),
        ("missing", None),
    ];
    for (name, t) in cases {
        let auth = t.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let n = get(&native, "/api/orders", &headers);
        let g = get(&guard, "/api/orders", &headers);
        // Both allow, or both deny. Statuses agree except for a token with another
        // audience: jwt_authn answers 403, api-guard 401 invalid_token (RFC 6750 §3.1).
        let detail = format!(
            "{name}: jwt_authn {} ({}) vs api-guard {} ({})",
            n.status,
            n.text(),
            g.status,
            g.text()
        );
        assert_eq!(n.status == 200, g.status == 200, "{detail}");
        if name.starts_with("audience") && g.status != 200 {
            assert_eq!((n.status, g.status), (403, 401), "{detail}");
        } else {
            assert_eq!(n.status, g.status, "{detail}");
        }
        if g.status == 200 {
            let (ns, gs) = (
                native.upstream.last().unwrap(),
                guard.upstream.last().unwrap(),
            );
            assert_eq!(ns.header("x-jwt-sub"), gs.header("x-jwt-sub"), "{name}");
            assert_eq!(
                ns.header("authorization"),
                gs.header("authorization"),
                "{name}"
            );
        }
    }
}
