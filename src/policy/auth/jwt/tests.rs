//! Table-driven tests of JWT authentication through `Policy::evaluate`, natively.

use std::cell::Cell;

use serde_json::{json, Value};

use super::mint::{self, b64};
use crate::config::compile;
use crate::policy::testing::{headers, MemoryHost};
use crate::policy::{Decision, HashAlg, Host, NativeVerify, Policy, Request, SharedWrite, Verdict};

const ISS: &str = "https://idp.test";
const NOW: u64 = 1_800_000_000;

fn provider(extra: Value) -> Value {
    let mut p = json!({
        "issuer": ISS,
        "audiences": ["api"],
        "local_jwks": serde_json::from_str::<Value>(mint::JWKS).unwrap(),
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn config_with(provider: Value, rule_extra: Value) -> Policy {
    let mut rule = json!({"name": "api", "match": {"prefix": "/api"}, "auth": ["corp"]});
    for (k, v) in rule_extra.as_object().unwrap() {
        rule[k] = v.clone();
    }
    let config = json!({"jwt_providers": {"corp": provider}, "rules": [rule]});
    compile(config.to_string().as_bytes()).unwrap()
}

fn policy() -> Policy {
    config_with(provider(json!({})), json!({}))
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "api", "sub": "alice", "exp": NOW + 300, "iat": NOW, "scope": "orders:read"})
}

fn header(alg: &str) -> Value {
    json!({"alg": alg, "typ": "JWT", "kid": mint::default_kid(alg)})
}

fn request_with(policy: &Policy, pairs: &[(&str, &str)], host: &dyn Host) -> Decision {
    let mut h = headers(&[(":method", "GET"), (":authority", "api.test")]);
    if !pairs.iter().any(|(k, _)| *k == ":path") {
        h.push((":path".into(), "/api/orders".into()));
    }
    h.extend(headers(pairs));
    policy.evaluate(&Request::new(&h, Some("192.0.2.1:1234")), host)
}

fn bearer(policy: &Policy, token: &str) -> Decision {
    let auth = format!("Bearer {token}");
    request_with(policy, &[("authorization", &auth)], &MemoryHost::at(NOW))
}

fn reason(d: &Decision) -> &'static str {
    d.reason_code()
}

/// A host whose native verifier is emulated with the pure-Rust crates from the SPKI DER and a
/// DER ECDSA signature, exactly the inputs Envoy's `verify_signature` gets; counts its calls.
struct NativeHost {
    inner: MemoryHost,
    calls: Cell<u32>,
}

impl NativeHost {
    fn new() -> Self {
        NativeHost {
            inner: MemoryHost::at(NOW),
            calls: Cell::new(0),
        }
    }
}

impl Host for NativeHost {
    fn now(&self) -> std::time::SystemTime {
        self.inner.now()
    }
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        self.inner.shared_set(key, value, cas)
    }
    fn verify_signature(&self, hash: HashAlg, spki: &[u8], sig: &[u8], msg: &[u8]) -> NativeVerify {
        use p256::pkcs8::DecodePublicKey as _;
        use sha2::{Digest as _, Sha256, Sha384, Sha512};
        self.calls.set(self.calls.get() + 1);
        let ok = if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(spki) {
            let (scheme, hashed) = match hash {
                HashAlg::Sha256 => (
                    rsa::Pkcs1v15Sign::new::<Sha256>(),
                    Sha256::digest(msg).to_vec(),
                ),
                HashAlg::Sha384 => (
                    rsa::Pkcs1v15Sign::new::<Sha384>(),
                    Sha384::digest(msg).to_vec(),
                ),
                HashAlg::Sha512 => (
                    rsa::Pkcs1v15Sign::new::<Sha512>(),
                    Sha512::digest(msg).to_vec(),
                ),
            };
            key.verify(scheme, &hashed, sig).is_ok()
        } else if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(spki) {
            use p256::ecdsa::signature::Verifier as _;
            assert_eq!(hash, HashAlg::Sha256);
            p256::ecdsa::Signature::from_der(sig).is_ok_and(|s| key.verify(msg, &s).is_ok())
        } else if let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_der(spki) {
            use p384::ecdsa::signature::Verifier as _;
            p384::ecdsa::Signature::from_der(sig).is_ok_and(|s| key.verify(msg, &s).is_ok())
        } else if let Ok(public) = p521::PublicKey::from_public_key_der(spki) {
            use p521::ecdsa::signature::Verifier as _;
            let key = p521::ecdsa::VerifyingKey::from_affine(*public.as_affine()).unwrap();
            p521::ecdsa::Signature::from_der(sig).is_ok_and(|s| key.verify(msg, &s).is_ok())
        } else {
            panic!("the native verifier got a key it cannot read");
        };
        if ok {
            NativeVerify::Valid
        } else {
            NativeVerify::Invalid
        }
    }
}

const ALL_ALGS: [&str; 13] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
];

#[test]
fn every_algorithm_passes_on_both_paths_and_the_credential_is_removed() {
    let policy = policy();
    for alg in ALL_ALGS {
        let token = mint::token(&header(alg), &claims());
        let d = bearer(&policy, &token);
        assert_eq!(d.verdict, Verdict::Allow, "{alg}: {:?}", d.denial());
        assert_eq!(d.client.as_deref(), Some("jwt:https://idp.test|alice"));
        assert!(
            d.upstream_remove.contains(&"authorization".to_string()),
            "{alg}"
        );

        // The native path (a fresh policy: no cache) for RS*/ES*; PS/EdDSA/HS stay pure.
        let policy = self::policy();
        let host = NativeHost::new();
        let auth = format!("Bearer {token}");
        let d = request_with(&policy, &[("authorization", &auth)], &host);
        assert_eq!(d.verdict, Verdict::Allow, "{alg} native");
        let native = alg.starts_with("RS") || alg.starts_with("ES");
        assert_eq!(host.calls.get(), u32::from(native), "{alg}");
    }
}

#[test]
fn failures_answer_with_their_reason_and_www_authenticate() {
    let policy = policy();
    let with = |k: &str, v: Value| {
        let mut c = claims();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let rs = header("RS256");
    let good = mint::token(&rs, &claims());
    let mut bad_sig = good.clone();
    bad_sig.truncate(good.len() - 4);
    bad_sig.push_str("AAAA");
    let table: Vec<(String, &str)> = vec![
        (
            mint::token(&rs, &with("exp", json!(NOW - 61))),
            "jwt_expired",
        ),
        (
            mint::token(&rs, &with("nbf", json!(NOW + 61))),
            "jwt_not_yet_valid",
        ),
        (
            mint::token(&rs, &with("iss", json!("https://evil.test"))),
            "jwt_issuer",
        ),
        (
            mint::token(&rs, &with("aud", json!(["other"]))),
            "jwt_audience",
        ),
        (mint::token(&rs, &without("aud")), "jwt_audience"),
        (mint::token(&rs, &without("exp")), "jwt_malformed"),
        (
            mint::token(&json!({"alg": "RS256", "kid": "nope"}), &claims()),
            "jwt_unknown_kid",
        ),
        (bad_sig, "jwt_bad_signature"),
        ("not-a-token".into(), "jwt_malformed"),
        ("a.b.c".into(), "jwt_malformed"),
        ("x".repeat(9000), "jwt_malformed"),
    ];
    for (token, want) in table {
        let d = bearer(&policy, &token);
        assert_eq!(reason(&d), want, "{token:.60}");
        let denial = d.enforced_denial().unwrap();
        assert_eq!(denial.status, 401);
        let www = &denial
            .headers
            .iter()
            .find(|(n, _)| n == "www-authenticate")
            .unwrap()
            .1;
        assert!(
            www.starts_with(
                "Bearer realm=\"api-guard\", error=\"invalid_token\", error_description=\""
            ),
            "{www}"
        );
        let body = denial.problem_json();
        assert!(
            !body.contains(&token[..token.len().min(40)]),
            "echoed the token"
        );
    }
    // No token at all: 401 without an error code.
    let d = request_with(&policy, &[], &MemoryHost::at(NOW));
    assert_eq!(reason(&d), "jwt_missing");
    let denial = d.enforced_denial().unwrap();
    assert_eq!(
        denial.headers,
        vec![(
            "www-authenticate".to_string(),
            "Bearer realm=\"api-guard\"".to_string()
        )]
    );
    // Another scheme is not a bearer token.
    let d = request_with(
        &policy,
        &[("authorization", "Basic dXNlcjpwdw==")],
        &MemoryHost::at(NOW),
    );
    assert_eq!(reason(&d), "jwt_missing");
}

#[test]
fn algorithm_allow_list_and_key_fit() {
    let only_es = config_with(provider(json!({"algorithms": ["ES256"]})), json!({}));
    let rs = mint::token(&header("RS256"), &claims());
    assert_eq!(reason(&bearer(&only_es, &rs)), "jwt_alg_not_allowed");
    let es = mint::token(&header("ES256"), &claims());
    assert_eq!(bearer(&only_es, &es).verdict, Verdict::Allow);
    // kid names an EC key but the token says ES384: the key decides.
    let mismatched = mint::token(&json!({"alg": "ES384", "kid": "ec256"}), &claims());
    assert_eq!(
        reason(&bearer(&policy(), &mismatched)),
        "jwt_alg_not_allowed"
    );
}

#[test]
fn alg_none_variants_are_never_accepted() {
    let policy = policy();
    for alg in ["none", "None", "NONE", "nOnE"] {
        for sig in ["", "AQID"] {
            let h = json!({"alg": alg, "kid": "rsa1"});
            let token = format!("{}.{}", mint::signing_input(&h, &claims()), sig);
            assert_eq!(
                reason(&bearer(&policy, &token)),
                "jwt_alg_not_allowed",
                "{alg} {sig:?}"
            );
        }
    }
    // Even with require_expiration off and no issuer: still refused.
    let lax = config_with(
        json!({"local_jwks": mint::jwks_with(&["rsa1"]), "require_expiration": false}),
        json!({}),
    );
    let token = format!(
        "{}.",
        mint::signing_input(&json!({"alg": "none"}), &json!({"sub": "x"}))
    );
    assert_eq!(reason(&bearer(&lax, &token)), "jwt_alg_not_allowed");
}

#[test]
fn rs_hs_confusion_is_refused() {
    // The attacker HMACs with the RSA public key (DER or PEM) as the secret.
    let (der, pem) = mint::rsa1_public_spki();
    for secret in [der.clone(), pem.into_bytes()] {
        for kid in [Some("rsa1"), None] {
            let mut h = json!({"alg": "HS256"});
            if let Some(kid) = kid {
                h["kid"] = json!(kid);
            }
            let input = mint::signing_input(&h, &claims());
            let sig = hmac_sha256::HMAC::mac(input.as_bytes(), &secret);
            let token = format!("{input}.{}", b64(sig));
            // With HS256 allowed (the JWKS has an oct key): the RSA key never verifies HMAC.
            let d = bearer(&policy(), &token);
            assert!(
                ["jwt_alg_not_allowed", "jwt_bad_signature"].contains(&reason(&d)),
                "{kid:?}: {}",
                reason(&d)
            );
            // With only RSA keys, HS256 is not even on the derived allow-list.
            let rsa_only = config_with(
                provider(json!({"local_jwks": mint::jwks_with(&["rsa1"])})),
                json!({}),
            );
            assert_eq!(reason(&bearer(&rsa_only, &token)), "jwt_alg_not_allowed");
        }
    }
}

#[test]
fn embedded_keys_in_the_header_are_ignored() {
    // A token signed by a key of the attacker's (here: the test HMAC key and rsa2, neither
    // in the provider's JWKS), carrying that key in jwk / x5c / jku / x5u.
    let policy = config_with(
        provider(json!({"local_jwks": mint::jwks_with(&["rsa1"])})),
        json!({}),
    );
    let attacker: Value = mint::jwks_with(&["rsa2"])["keys"][0].clone();
    for (name, value) in [
        ("jwk", attacker.clone()),
        ("jku", json!("https://evil.test/jwks.json")),
        ("x5u", json!("https://evil.test/cert.pem")),
        (
            "x5c",
            json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
        ),
    ] {
        let mut h = json!({"alg": "RS256", "kid": "rsa2"});
        h[name] = value.clone();
        let token = mint::token(&h, &claims());
        assert_eq!(
            reason(&bearer(&policy, &token)),
            "jwt_unknown_kid",
            "{name}"
        );
        // Same without kid: tried against rsa1 only, and fails.
        let mut h = json!({"alg": "RS256"});
        h[name] = value;
        let input = mint::signing_input(&h, &claims());
        let token = format!(
            "{input}.{}",
            b64(mint::sign("RS256", "rsa2", input.as_bytes()))
        );
        assert_eq!(
            reason(&bearer(&policy, &token)),
            "jwt_bad_signature",
            "{name}"
        );
    }
}

#[test]
fn kid_injection_is_just_an_unknown_kid() {
    let policy = policy();
    for kid in [
        "../../../../dev/null",
        "' OR '1'='1",
        "rsa1\u{0}",
        "rsa1 ",
        "RSA1",
        "|cat /etc/passwd",
        &"k".repeat(2000),
    ] {
        let token = mint::token(&json!({"alg": "RS256", "kid": kid}), &claims());
        let d = bearer(&policy, &token);
        assert!(
            ["jwt_unknown_kid", "jwt_malformed"].contains(&reason(&d)),
            "{kid:.20}: {}",
            reason(&d)
        );
    }
    // Without a kid the token is tried against every key that fits its algorithm.
    let token = mint::token(&json!({"alg": "RS256"}), &claims());
    assert_eq!(bearer(&policy, &token).verdict, Verdict::Allow);
    let token = mint::token(&json!({"alg": "ES384"}), &claims());
    assert_eq!(bearer(&policy, &token).verdict, Verdict::Allow);
}

#[test]
fn ecdsa_signature_attacks() {
    let policy = policy();
    let h = header("ES256");
    let input = mint::signing_input(&h, &claims());
    let sig = mint::sign("ES256", "ec256", input.as_bytes());
    let parsed = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    // n, the order of P-256.
    let order: Vec<u8> = (0..32)
        .map(|i| {
            u8::from_str_radix(
                &"FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551"
                    [2 * i..2 * i + 2],
                16,
            )
            .unwrap()
        })
        .collect();
    let (r, s) = sig.split_at(32);
    let high_s = {
        let (r, s) = parsed.split_scalars();
        p256::ecdsa::Signature::from_scalars(r, -*s)
            .unwrap()
            .to_bytes()
            .to_vec()
    };
    let cat = |a: &[u8], b: &[u8]| [a, b].concat();
    let zero = [0u8; 32];
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("r=s=0", vec![0; 64]),
        ("r=0", cat(&zero, s)),
        ("s=0", cat(r, &zero)),
        ("r=n", cat(&order, s)),
        ("s=n", cat(r, &order)),
        ("r=s=n", cat(&order, &order)),
        ("s=0xff..", cat(r, &[0xff; 32])),
        ("truncated", sig[..63].to_vec()),
        ("truncated half", sig[..32].to_vec()),
        ("extended", cat(&sig, &[0])),
        ("DER", parsed.to_der().as_bytes().to_vec()),
        ("empty", vec![]),
        ("swapped", cat(s, r)),
    ];
    for (name, sig) in bad {
        let token = mint::with_signature(&h, &claims(), &sig);
        assert_eq!(
            reason(&bearer(&policy, &token)),
            "jwt_bad_signature",
            "{name}"
        );
        let host = NativeHost::new();
        let auth = format!("Bearer {token}");
        let d = request_with(&self::policy(), &[("authorization", &auth)], &host);
        assert_eq!(reason(&d), "jwt_bad_signature", "{name} native");
    }
    // High-S (n - s) is the same signature mathematically: both paths accept it, like
    // BoringSSL, Envoy's jwt_authn and every JOSE library (ECDSA JWS does not require low-S).
    let token = mint::with_signature(&h, &claims(), &high_s);
    assert_eq!(
        bearer(&policy, &token).verdict,
        Verdict::Allow,
        "high-S pure"
    );
    let host = NativeHost::new();
    let auth = format!("Bearer {token}");
    assert_eq!(
        request_with(&self::policy(), &[("authorization", &auth)], &host).verdict,
        Verdict::Allow
    );
}

#[test]
fn rsa_and_eddsa_signature_attacks() {
    let policy = policy();
    for alg in ["RS256", "PS256", "EdDSA", "HS256"] {
        let h = header(alg);
        let input = mint::signing_input(&h, &claims());
        let sig = mint::sign(alg, mint::default_kid(alg), input.as_bytes());
        let mut flipped = sig.clone();
        flipped[5] ^= 1;
        for (name, bad) in [
            ("truncated", sig[..sig.len() - 1].to_vec()),
            ("extended", [sig.as_slice(), &[0]].concat()),
            ("leading zero", [&[0u8][..], sig.as_slice()].concat()),
            ("flipped", flipped),
            ("empty", vec![]),
        ] {
            let token = mint::with_signature(&h, &claims(), &bad);
            assert_eq!(
                reason(&bearer(&policy, &token)),
                "jwt_bad_signature",
                "{alg} {name}"
            );
        }
        // Claims changed after signing.
        let mut c = claims();
        c["sub"] = json!("admin");
        let token = format!("{}.{}", mint::signing_input(&h, &c), b64(&sig));
        assert_eq!(
            reason(&bearer(&policy, &token)),
            "jwt_bad_signature",
            "{alg} tampered"
        );
    }
}

#[test]
fn query_tokens_are_percent_decoded_once() {
    let policy = config_with(
        provider(json!({"from_params": ["access_token"]})),
        json!({}),
    );
    let token = mint::token(&header("ES256"), &claims());
    let host = MemoryHost::at(NOW);
    let path = format!("/api/orders?access%5Ftoken={}", token.replace('.', "%2E"));
    let d = request_with(&policy, &[(":path", &path)], &host);
    assert_eq!(d.verdict, Verdict::Allow);
    // A malformed escape stays as sent, and no token holds a `%`.
    for bad in ["%zz", "%4", "%+f", "%252E"] {
        let path = format!("/api/orders?access_token={token}{bad}");
        let d = request_with(&policy, &[(":path", &path)], &host);
        assert_eq!(reason(&d), "jwt_malformed", "{bad}");
    }
}

#[test]
fn token_sources() {
    let p = provider(json!({
        "from_headers": [{"name": "x-token"}, {"name": "authorization", "value_prefix": "Bearer "}],
        "from_params": ["access_token"],
        "from_cookies": ["session"],
    }));
    let policy = config_with(p, json!({}));
    let token = mint::token(&header("ES256"), &claims());
    let host = MemoryHost::at(NOW);
    let lower = format!("bearer {token}");
    let d = request_with(&policy, &[("authorization", &lower)], &host);
    assert_eq!(d.verdict, Verdict::Allow, "scheme is case-insensitive");
    let d = request_with(&policy, &[("x-token", &token)], &host);
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(d.upstream_remove.contains(&"x-token".to_string()));

    let path = format!("/api/orders?a=1&access_token={token}&b=2");
    let d = request_with(&policy, &[(":path", &path)], &host);
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(d
        .upstream_set
        .contains(&(":path".to_string(), "/api/orders?a=1&b=2".to_string())));

    let cookie = format!("theme=dark; session={token}; lang=en");
    let d = request_with(&policy, &[("cookie", &cookie)], &host);
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(d
        .upstream_set
        .contains(&("cookie".to_string(), "theme=dark; lang=en".to_string())));

    // Every token is verified: a good header token does not excuse a bad query token.
    let bad_path = "/api/orders?access_token=garbage".to_string();
    let auth = format!("Bearer {token}");
    let d = request_with(
        &policy,
        &[(":path", &bad_path), ("authorization", &auth)],
        &host,
    );
    assert_eq!(reason(&d), "jwt_malformed");
    let expired = {
        let mut c = claims();
        c["exp"] = json!(NOW - 1000);
        mint::token(&header("RS256"), &c)
    };
    let cookie = format!("session={expired}");
    let d = request_with(
        &policy,
        &[("cookie", &cookie), ("authorization", &auth)],
        &host,
    );
    assert_eq!(reason(&d), "jwt_expired");

    // Default source only: a query token is not looked at.
    let d = request_with(&self::policy(), &[(":path", &path)], &host);
    assert_eq!(reason(&d), "jwt_missing");
    // Too many tokens.
    let many: Vec<(&str, &str)> = (0..5).map(|_| ("x-token", token.as_str())).collect();
    let _ = many;
    let a = format!("{token}a");
    let b = format!("{token}b");
    let c = format!("{token}c");
    let e = format!("{token}e");
    let d = request_with(
        &policy,
        &[
            ("x-token", &a),
            ("x-token", &b),
            ("x-token", &c),
            ("x-token", &e),
            ("authorization", &auth),
        ],
        &host,
    );
    assert_eq!(reason(&d), "jwt_malformed");
}

#[test]
fn cors_preflight_authenticates_unless_allowed_and_bodiless() {
    let preflight = [
        (":method", "OPTIONS"),
        (":path", "/api/orders?access_token=forged"),
        ("origin", "https://app.test"),
        ("access-control-request-method", "POST"),
        ("authorization", "Bearer forged"),
    ];
    let hv = headers(&preflight);
    let evaluate = |policy: &Policy, h: &[(String, String)]| {
        policy.evaluate(&Request::new(h, None), &MemoryHost::at(NOW))
    };
    // The default: a preflight authenticates like any request (here a forged token fails).
    assert_eq!(reason(&evaluate(&policy(), &hv)), "jwt_malformed");
    let cors = |rule: Value, top: Value| {
        let mut rule_json = json!({"name": "api", "match": {"prefix": "/api"}, "auth": ["corp"]});
        for (k, v) in rule.as_object().unwrap() {
            rule_json[k] = v.clone();
        }
        let mut config = json!({"jwt_providers": {"corp": provider(json!({"from_params": ["access_token"],
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}]}))},
            "rules": [rule_json]});
        for (k, v) in top.as_object().unwrap() {
            config[k] = v.clone();
        }
        compile(config.to_string().as_bytes()).unwrap()
    };
    // Allowed (rule level, or top level when the rule does not say): it passes, carrying
    // none of the rule's credential locations.
    for policy in [
        cors(json!({"cors_preflight": "allow"}), json!({})),
        cors(json!({}), json!({"cors_preflight": "allow"})),
    ] {
        let d = evaluate(&policy, &hv);
        assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
        assert!(d.upstream_remove.contains(&"authorization".to_string()));
        assert!(d
            .upstream_set
            .contains(&(":path".to_string(), "/api/orders".to_string())));
        // An OPTIONS without the preflight headers is authenticated (the forged query token).
        assert_eq!(reason(&evaluate(&policy, &hv[..2])), "jwt_malformed");
        // A "preflight" with a body is not one a browser sends: authenticated.
        let mut with_body = headers(&preflight[..4]);
        with_body.push(("content-length".into(), "5".into()));
        assert_eq!(reason(&evaluate(&policy, &with_body)), "jwt_malformed");
        let streamed = Request::new(&hv[..4], None).with_end_of_stream(false);
        let d = policy.evaluate(&streamed, &MemoryHost::at(NOW));
        assert_eq!(reason(&d), "jwt_malformed");
    }
    // The rule's own choice wins over the top level's.
    let policy = cors(
        json!({"cors_preflight": "authenticate"}),
        json!({"cors_preflight": "allow"}),
    );
    assert_eq!(reason(&evaluate(&policy, &hv[..4])), "jwt_malformed");
}

#[test]
fn credentials_that_failed_or_were_not_used_are_removed_too() {
    let key_sha = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"; // "foo"
    let config = |forward: bool| {
        let config = json!({
            "jwt_providers": {"corp": provider(json!({"forward": forward,
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                "from_params": ["access_token"], "from_cookies": ["session"]}))},
            "api_keys": {"from_headers": ["x-api-key"], "from_params": ["api_key"],
                         "forward": forward, "clients": [{"id": "a", "sha256": key_sha}]},
            "rules": [{"name": "api", "match": {"prefix": "/api"}, "auth": ["corp", "api_key"]}]
        });
        compile(config.to_string().as_bytes()).unwrap()
    };
    // A forged alg:none token next to a valid API key: the key wins, the token is removed,
    // wherever it was, even when the provider forwards its own (valid) tokens.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(br#"{"sub":"admin"}"#)
    );
    for forward in [false, true] {
        let policy = config(forward);
        let d = request_with(
            &policy,
            &[(":path", "/api/orders?api%5Fkey=EVIL&x=1&api_key=foo")],
            &MemoryHost::at(NOW),
        );
        // Two keys (one by its decoded name): ambiguous, refused.
        assert_eq!(reason(&d), "api_key_unknown", "forward {forward}");

        let d = request_with(
            &policy,
            &[
                (":path", "/api/orders?x=1&access%5Ftoken=t&access_token=u"),
                ("authorization", &format!("Bearer {none}")),
                ("x-api-key", "foo"),
                ("cookie", "session=forged; theme=dark"),
            ],
            &MemoryHost::at(NOW),
        );
        // The JWT method failed (its tokens are forged) and the API key succeeded.
        assert_eq!(d.verdict, Verdict::Allow, "forward {forward}: {d:?}");
        assert_eq!(d.client.as_deref(), Some("api_key:a"));
        assert!(d.upstream_remove.contains(&"authorization".to_string()));
        assert_eq!(
            d.upstream_remove.contains(&"x-api-key".to_string()),
            !forward,
            "the key that succeeded is kept only when forwarded"
        );
        assert!(d
            .upstream_set
            .contains(&(":path".into(), "/api/orders?x=1".into())));
        assert!(d
            .upstream_set
            .contains(&("cookie".into(), "theme=dark".into())));
    }

    // A valid token wins: an API key presented too (never checked) is removed.
    let token = mint::token(&header("RS256"), &claims());
    let d = request_with(
        &config(true),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-api-key", "forged"),
            ("X_Api_Key", "forged"),
            (":path", "/api/orders?api%5fkey=forged"),
        ],
        &MemoryHost::at(NOW),
    );
    assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
    assert!(!d.upstream_remove.contains(&"authorization".to_string()));
    assert!(d.upstream_remove.contains(&"x-api-key".to_string()));
    assert!(d.upstream_remove.contains(&"X_Api_Key".to_string()));
    assert!(d
        .upstream_set
        .contains(&(":path".into(), "/api/orders".into())));
}

#[test]
fn scopes_claim_headers_payload_and_forwarding() {
    let p = provider(json!({
        "claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"},
                             {"claim": "realm.roles", "header": "x-jwt-roles"}],
        "payload_header": "x-jwt-payload",
    }));
    let policy = config_with(p.clone(), json!({"scopes": ["orders:read"]}));
    let mut c = claims();
    c["realm"] = json!({"roles": ["a", "b"]});
    let token = mint::token(&header("RS256"), &c);
    let auth = format!("Bearer {token}");
    let forged = [
        ("authorization", auth.as_str()),
        ("x-jwt-sub", "mallory"),
        ("x-jwt-roles", "admin"),
    ];
    let d = request_with(&policy, &forged, &MemoryHost::at(NOW));
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(
        d.upstream_remove.contains(&"x-jwt-sub".to_string()),
        "{:?}",
        d.upstream_remove
    );
    assert!(d.upstream_remove.contains(&"x-jwt-roles".to_string()));
    assert!(d
        .upstream_set
        .contains(&("x-jwt-sub".into(), "alice".into())));
    assert!(d
        .upstream_set
        .contains(&("x-jwt-roles".into(), r#"["a","b"]"#.into())));
    let payload = token.split('.').nth(1).unwrap();
    assert!(d
        .upstream_set
        .contains(&("x-jwt-payload".into(), payload.into())));

    // A scope the token lacks: 403 insufficient_scope.
    let policy = config_with(p.clone(), json!({"scopes": ["orders:write"]}));
    let d = request_with(&policy, &[("authorization", &auth)], &MemoryHost::at(NOW));
    assert_eq!(reason(&d), "insufficient_scope");
    assert_eq!(d.enforced_denial().unwrap().status, 403);
    // scp as an array works too.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["orders:write"]);
    let auth2 = format!("Bearer {}", mint::token(&header("RS256"), &c));
    assert_eq!(
        request_with(&policy, &[("authorization", &auth2)], &MemoryHost::at(NOW)).verdict,
        Verdict::Allow
    );

    // forward: true keeps the credential; spoofed claim headers are removed on every route.
    let mut fwd = p;
    fwd["forward"] = json!(true);
    let policy = config_with(fwd, json!({}));
    let d = request_with(&policy, &[("authorization", &auth)], &MemoryHost::at(NOW));
    assert!(!d.upstream_remove.contains(&"authorization".to_string()));
    let public = [(":path", "/public"), ("x-jwt-sub", "mallory")];
    let d = request_with(&policy, &public, &MemoryHost::at(NOW));
    assert_eq!(d.upstream_remove, vec!["x-jwt-sub".to_string()]);
}

#[test]
fn the_unverified_issuer_picks_the_provider() {
    let a = json!({"issuer": "https://a.test", "local_jwks": mint::jwks_with(&["rsa1"]), "claim_to_headers": [{"claim": "sub", "header": "x-a"}]});
    let b = json!({"issuer": "https://b.test", "local_jwks": mint::jwks_with(&["ec256"]), "claim_to_headers": [{"claim": "sub", "header": "x-b"}]});
    let config = json!({"jwt_providers": {"a": a, "b": b},
        "rules": [{"match": {"prefix": "/"}, "auth": ["a", "b"]}]});
    let policy = compile(config.to_string().as_bytes()).unwrap();
    let host = MemoryHost::at(NOW);
    let mut c = claims();
    c["iss"] = json!("https://b.test");
    let token = mint::token(&header("ES256"), &c);
    let d = bearer(&policy, &token);
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(d.upstream_set.contains(&("x-b".into(), "alice".into())));
    // b's token signed with a's key: verified by b, fails.
    let token = mint::token(&header("RS256"), &c);
    assert_eq!(reason(&bearer(&policy, &token)), "jwt_alg_not_allowed");
    c["iss"] = json!("https://c.test");
    let token = mint::token(&header("ES256"), &c);
    assert_eq!(reason(&bearer(&policy, &token)), "jwt_issuer");
    let _ = host;
}

#[test]
fn the_cache_skips_repeated_signature_checks_until_exp() {
    let policy = policy();
    let host = NativeHost::new();
    let token = mint::token(&header("RS256"), &claims());
    let auth = format!("Bearer {token}");
    for _ in 0..3 {
        assert_eq!(
            request_with(&policy, &[("authorization", &auth)], &host).verdict,
            Verdict::Allow
        );
    }
    assert_eq!(
        host.calls.get(),
        1,
        "one signature check for three requests"
    );
    // At exp the entry is dropped; the claims check (with its skew) then decides.
    host.inner.advance(std::time::Duration::from_secs(300));
    assert_eq!(
        request_with(&policy, &[("authorization", &auth)], &host).verdict,
        Verdict::Allow
    );
    assert_eq!(host.calls.get(), 2);
    host.inner.advance(std::time::Duration::from_secs(61));
    assert_eq!(
        reason(&request_with(&policy, &[("authorization", &auth)], &host)),
        "jwt_expired"
    );
    // cache_entries: 0 turns it off.
    let off = config_with(provider(json!({"cache_entries": 0})), json!({}));
    let host = NativeHost::new();
    for _ in 0..3 {
        request_with(&off, &[("authorization", &auth)], &host);
    }
    assert_eq!(host.calls.get(), 3);
}

#[test]
fn expiration_options() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    let token = mint::token(&header("RS256"), &c);
    assert_eq!(reason(&bearer(&policy(), &token)), "jwt_malformed");
    let lax = config_with(provider(json!({"require_expiration": false})), json!({}));
    assert_eq!(bearer(&lax, &token).verdict, Verdict::Allow);
    let bounded = config_with(provider(json!({"max_lifetime_seconds": 60})), json!({}));
    let token = mint::token(&header("RS256"), &claims());
    assert_eq!(reason(&bearer(&bounded, &token)), "jwt_expired");
    let skewless = config_with(provider(json!({"clock_skew_seconds": 0})), json!({}));
    let mut c = claims();
    c["nbf"] = json!(NOW + 1);
    assert_eq!(
        reason(&bearer(&skewless, &mint::token(&header("RS256"), &c))),
        "jwt_not_yet_valid"
    );
    assert_eq!(
        bearer(&policy(), &mint::token(&header("RS256"), &c)).verdict,
        Verdict::Allow
    );
}

#[test]
fn bad_provider_configs_are_refused_with_their_path() {
    let jwks: Value = serde_json::from_str(mint::JWKS).unwrap();
    let rsa_only = mint::jwks_with(&["rsa1"]);
    let with = |extra: Value| {
        let mut p = json!({"local_jwks": rsa_only.clone()});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                p.as_object_mut().unwrap().remove(k);
            } else {
                p[k] = v.clone();
            }
        }
        json!({"jwt_providers": {"corp": p}}).to_string()
    };
    let secret = b64(mint::hmac_secret());
    let table: Vec<(String, &str)> = vec![
        (with(json!({"local_jwks": null})), "jwt_providers.corp: expected a key source"),
        (
            with(json!({"remote_jwks": {"cluster": "idp", "path": "/jwks"}})),
            "jwt_providers.corp: give either `local_jwks` or `remote_jwks`",
        ),
        (with(json!({"algorithms": ["none"]})), "jwt_providers.corp.algorithms[0]: `none` is never accepted"),
        (with(json!({"algorithms": ["RS257"]})), "jwt_providers.corp.algorithms[0]: unknown algorithm"),
        (with(json!({"algorithms": ["ES256"]})), "jwt_providers.corp.algorithms[0]: no key of `local_jwks` can verify ES256"),
        (with(json!({"algorithms": []})), "jwt_providers.corp.algorithms: expected at least one"),
        (with(json!({"local_jwks": {"keys": []}})), "jwt_providers.corp.local_jwks.keys: no usable"),
        (with(json!({"local_jwks": "{not json"})), "jwt_providers.corp.local_jwks: expected a JWKS"),
        (with(json!({"local_jwks": {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}})), "jwt_providers.corp.local_jwks.keys[0].n: RSA moduli"),
        (with(json!({"local_jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}})), "jwt_providers.corp.local_jwks.keys[0].k: an HMAC secret needs"),
        (with(json!({"issuer": ""})), "jwt_providers.corp.issuer:"),
        (with(json!({"audiences": []})), "jwt_providers.corp.audiences: expected at least one"),
        (with(json!({"clock_skew_seconds": 3600})), "jwt_providers.corp.clock_skew_seconds:"),
        (with(json!({"max_lifetime_seconds": 0})), "jwt_providers.corp.max_lifetime_seconds:"),
        (with(json!({"cache_entries": 10_000_000})), "jwt_providers.corp.cache_entries:"),
        (with(json!({"max_token_bytes": 10})), "jwt_providers.corp.max_token_bytes:"),
        (with(json!({"from_headers": [{"name": "X Token"}]})), "jwt_providers.corp.from_headers[0].name:"),
        (with(json!({"from_headers": [{"name": "a", "value_prefix": ""}]})), "jwt_providers.corp.from_headers[0].value_prefix:"),
        (with(json!({"from_headers": []})), "jwt_providers.corp: the token sources are all empty"),
        (with(json!({"from_params": ["a b"]})), "jwt_providers.corp.from_params[0]:"),
        (with(json!({"from_cookies": [""]})), "jwt_providers.corp.from_cookies[0]:"),
        (with(json!({"claim_to_headers": [{"claim": "", "header": "x-a"}]})), "jwt_providers.corp.claim_to_headers[0].claim:"),
        (with(json!({"claim_to_headers": [{"claim": "sub", "header": "authorization"}]})), "jwt_providers.corp.claim_to_headers[0].header:"),
        (with(json!({"claim_to_headers": [{"claim": "a", "header": "x-a"}, {"claim": "b", "header": "x-a"}]})), "jwt_providers.corp.claim_to_headers[1].header:"),
        (with(json!({"payload_header": "Bad Header"})), "jwt_providers.corp.payload_header:"),
        (with(json!({"bogus": 1})), "jwt_providers.corp.bogus: unknown field"),
        (with(json!({"forward": "yes"})), "jwt_providers.corp.forward: expected a boolean"),
        (
            with(json!({"local_jwks": null, "remote_jwks": {"cluster": "", "path": "/jwks"}})),
            "jwt_providers.corp.remote_jwks.cluster: expected the name of the Envoy cluster",
        ),
        (
            with(json!({"local_jwks": null, "remote_jwks": {"cluster": "idp", "path": "jwks"}})),
            "jwt_providers.corp.remote_jwks.path:",
        ),
        (
            with(json!({"local_jwks": null, "remote_jwks": {"cluster": "idp", "path": "/j", "timeout_ms": 0}})),
            "jwt_providers.corp.remote_jwks.timeout_ms:",
        ),
        (
            with(json!({"local_jwks": null, "remote_jwks": {"cluster": "idp", "path": "/j", "refresh_seconds": 0}})),
            "jwt_providers.corp.remote_jwks.refresh_seconds:",
        ),
        (
            with(json!({"local_jwks": null, "remote_jwks": {"cluster": "idp", "path": "/j"}, "algorithms": ["HS256"]})),
            "jwt_providers.corp.algorithms[0]: HMAC secrets are not fetched",
        ),
        (
            with(json!({"local_jwks": null, "remote_jwks": {"cluster": "idp", "path": "/j", "url": "x"}})),
            "jwt_providers.corp.remote_jwks.url: unknown field",
        ),
        (json!({"jwt_providers": {"api_key": {"local_jwks": rsa_only.clone()}}}).to_string(), "jwt_providers.api_key:"),
        (json!({"jwt_providers": {"a b": {"local_jwks": rsa_only.clone()}}}).to_string(), "jwt_providers.a b:"),
        (json!({"jwt_providers": {"corp": {"local_jwks": {"keys": [{"kty": "oct", "k": secret}]}}}}).to_string(), "-"),
        (
            json!({"jwt_providers": {"corp": {"local_jwks": jwks.clone()}},
                   "rules": [{"match": {"prefix": "/"}, "auth": ["corpp"]}]})
            .to_string(),
            "rules[0].auth[0]: unknown method `corpp`",
        ),
    ];
    for (config, want) in table {
        match compile(config.as_bytes()) {
            Ok(_) if want == "-" => {}
            Ok(_) => panic!("accepted: {config}"),
            Err(e) => {
                let got = e.to_string();
                assert!(
                    got.starts_with(want),
                    "{config}\n got {got:?}\nwant {want:?}"
                );
                assert!(!got.contains(&secret), "echoed the secret");
            }
        }
    }
    // A JWKS given as a JSON string is accepted too.
    let config = json!({"jwt_providers": {"corp": {"local_jwks": mint::JWKS}}}).to_string();
    assert!(compile(config.as_bytes()).is_ok());
}

#[test]
fn remote_providers_fail_closed_until_keys_arrive() {
    let config = json!({
        "jwt_providers": {"corp": {"issuer": ISS, "remote_jwks": {"cluster": "idp", "path": "/jwks"}}},
        "rules": [{"match": {"prefix": "/api"}, "auth": ["corp"]}]
    });
    let policy = compile(config.to_string().as_bytes()).unwrap();
    let token = mint::token(&header("RS256"), &claims());
    assert_eq!(reason(&bearer(&policy, &token)), "jwks_unavailable");
    let p = &policy.jwt_providers[0];
    let host = MemoryHost::at(NOW);
    let now_ms = NOW * 1000;
    assert!(super::remote::tick(p, &host, now_ms).is_some());
    let jwks = mint::jwks_with(&["rsa1"]).to_string();
    super::remote::fetched(p, &host, now_ms, Some(200), jwks.as_bytes()).unwrap();
    assert_eq!(bearer(&policy, &token).verdict, Verdict::Allow);
    let unknown = mint::token(&json!({"alg": "RS256", "kid": "rsa2"}), &claims());
    assert_eq!(reason(&bearer(&policy, &unknown)), "jwt_unknown_kid");
    assert!(p.state.unknown_kid_seen(), "an early refetch is asked for");
}

#[test]
fn a_key_rotation_drops_cached_verifications() {
    let config = json!({
        "jwt_providers": {"corp": {"issuer": ISS, "remote_jwks": {"cluster": "idp", "path": "/jwks", "refresh_seconds": 1}}},
        "rules": [{"match": {"prefix": "/api"}, "auth": ["corp"]}]
    });
    let policy = compile(config.to_string().as_bytes()).unwrap();
    let p = &policy.jwt_providers[0];
    let host = MemoryHost::at(NOW);
    let t = NOW * 1000;
    assert!(super::remote::tick(p, &host, t).is_some());
    let a = mint::jwks_with(&["rsa1"]).to_string();
    super::remote::fetched(p, &host, t, Some(200), a.as_bytes()).unwrap();
    let token = mint::token(&header("RS256"), &claims());
    assert_eq!(bearer(&policy, &token).verdict, Verdict::Allow);
    assert_eq!(p.state.cache().len(), 1);
    // The same keys again: the cache stays.
    super::remote::fetched(p, &host, t + 1000, Some(200), a.as_bytes()).unwrap();
    assert_eq!(p.state.cache().len(), 1);
    let b = mint::jwks_with(&["rsa2"]).to_string();
    super::remote::fetched(p, &host, t + 2000, Some(200), b.as_bytes()).unwrap();
    assert_eq!(reason(&bearer(&policy, &token)), "jwt_unknown_kid");
}

#[test]
fn the_compiled_policy_stays_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
}

#[test]
fn thousands_of_tokens_are_refused_cheaply() {
    let p = provider(json!({"from_cookies": ["session"], "from_params": ["t"]}));
    let policy = config_with(p, json!({}));
    let cookie = "session=a.b.c; ".repeat(5000);
    let start = std::time::Instant::now();
    let d = request_with(&policy, &[("cookie", &cookie)], &MemoryHost::at(NOW));
    assert_eq!(reason(&d), "jwt_malformed");
    let path = format!("/api/x?{}", "t=a.b.c&".repeat(5000));
    let d = request_with(&policy, &[(":path", &path)], &MemoryHost::at(NOW));
    assert_eq!(reason(&d), "jwt_malformed");
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn rate_limit_identities_are_unambiguous() {
    let open = json!({"local_jwks": serde_json::from_str::<Value>(mint::JWKS).unwrap()});
    let config = json!({"jwt_providers": {"corp": open},
        "rules": [{"match": {"prefix": "/"}, "auth": ["corp"]}]});
    let policy = compile(config.to_string().as_bytes()).unwrap();
    let client = |iss: Option<Value>, sub: Option<Value>, jti: &str| {
        let mut c = claims();
        let map = c.as_object_mut().unwrap();
        map.remove("iss");
        map.remove("sub");
        map.insert("jti".into(), json!(jti));
        if let Some(iss) = iss {
            map.insert("iss".into(), iss);
        }
        if let Some(sub) = sub {
            map.insert("sub".into(), sub);
        }
        let d = bearer(&policy, &mint::token(&header("ES256"), &c));
        assert_eq!(d.verdict, Verdict::Allow, "{:?}", d.denial());
        d.client.unwrap()
    };
    // The separator inside iss or sub cannot move the boundary.
    let a = client(Some(json!("https://a|b")), Some(json!("c")), "1");
    let b = client(Some(json!("https://a")), Some(json!("b|c")), "1");
    assert_eq!(a, "jwt:https://a%7Cb|c");
    assert_eq!(b, "jwt:https://a|b%7Cc");
    assert_eq!(
        client(Some(json!("100%")), Some(json!("#x")), "1"),
        "jwt:100%25|%23x"
    );
    // A missing or non-string iss is `#`, which no string iss can be.
    assert_eq!(client(None, Some(json!("alice")), "1"), "jwt:#|alice");
    assert_eq!(
        client(Some(json!(7)), Some(json!("alice")), "1"),
        "jwt:#|alice"
    );
    assert_eq!(
        client(Some(json!("#")), Some(json!("alice")), "1"),
        "jwt:%23|alice"
    );
    // Tokens without a string sub are each their own client, and a token stays itself.
    let first = client(Some(json!(ISS)), None, "1");
    let again = client(Some(json!(ISS)), None, "1");
    let second = client(Some(json!(ISS)), None, "2");
    let numeric = client(Some(json!(ISS)), Some(json!(42)), "1");
    assert!(first.starts_with("jwt:https://idp.test|#"), "{first}");
    assert_eq!(first.len(), "jwt:https://idp.test|#".len() + 16);
    assert_eq!(first, again);
    assert_ne!(first, second);
    assert_ne!(first, numeric);
    assert_ne!(client(Some(json!(ISS)), Some(json!("-")), "1"), first);
}

#[test]
fn every_provider_without_issuer_is_tried_whichever_cached_first() {
    let a = json!({"local_jwks": mint::jwks_with(&["rsa1"]), "claim_to_headers": [{"claim": "sub", "header": "x-a"}]});
    let b = json!({"local_jwks": mint::jwks_with(&["ec256"]), "claim_to_headers": [{"claim": "sub", "header": "x-b"}]});
    let config = json!({"jwt_providers": {"a": a, "b": b},
        "rules": [{"name": "a-only", "match": {"prefix": "/a-only"}, "auth": ["a"]},
                  {"name": "b-only", "match": {"prefix": "/b-only"}, "auth": ["b"]},
                  {"name": "both", "match": {"prefix": "/"}, "auth": ["a", "b"]}]});
    let for_a = mint::token(&header("RS256"), &claims());
    let for_b = mint::token(&header("ES256"), &claims());
    let mut no_kid = header("ES256");
    no_kid.as_object_mut().unwrap().remove("kid");
    let for_b_no_kid = mint::token(&no_kid, &claims());
    let host = MemoryHost::at(NOW);
    let send = |policy: &Policy, path: &str, token: &str| {
        let auth = format!("Bearer {token}");
        request_with(policy, &[(":path", path), ("authorization", &auth)], &host)
    };
    for warm in [None, Some("/a-only"), Some("/b-only")] {
        let policy = compile(config.to_string().as_bytes()).unwrap();
        if let Some(path) = warm {
            send(&policy, path, &for_a);
            send(&policy, path, &for_b);
        }
        for (token, header) in [(&for_a, "x-a"), (&for_b, "x-b"), (&for_b_no_kid, "x-b")] {
            let d = send(&policy, "/both", token);
            assert_eq!(d.verdict, Verdict::Allow, "warm {warm:?}: {:?}", d.denial());
            assert_eq!(
                d.upstream_set,
                vec![(header.to_string(), "alice".to_string())],
                "warm {warm:?}"
            );
        }
    }
    // A token neither accepts: the first provider's answer.
    let policy = compile(config.to_string().as_bytes()).unwrap();
    let mut expired = claims();
    expired["exp"] = json!(NOW - 3600);
    assert_eq!(
        reason(&send(
            &policy,
            "/both",
            &mint::token(&header("ES256"), &expired)
        )),
        "jwt_expired"
    );
}
