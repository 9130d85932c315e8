//! Test-only token minting with the committed test keys (tests/data/jwt, generated offline by
//! generate.py there). Used by the unit tests and, through `#[path]`, by tests/jwt.rs; it
//! depends on external crates only. Never built into the module.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::pkcs8::DecodePrivateKey as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

pub const JWKS: &str = include_str!("../../../../tests/data/jwt/jwks.json");
const RSA1: &str = include_str!("../../../../tests/data/jwt/rsa1.pem");
const RSA2: &str = include_str!("../../../../tests/data/jwt/rsa2.pem");
const EC256: &str = include_str!("../../../../tests/data/jwt/ec256.pem");
const EC384: &str = include_str!("../../../../tests/data/jwt/ec384.pem");
const EC521: &str = include_str!("../../../../tests/data/jwt/ec521.pem");
const ED25519: &str = include_str!("../../../../tests/data/jwt/ed25519.pem");
const HMAC: &[u8] = include_bytes!("../../../../tests/data/jwt/hmac.key");

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The test JWKS with only the keys named (by kid).
pub fn jwks_with(kids: &[&str]) -> Value {
    let all: Value = serde_json::from_str(JWKS).unwrap();
    let keys: Vec<Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| kids.contains(&k["kid"].as_str().unwrap()))
        .cloned()
        .collect();
    serde_json::json!({ "keys": keys })
}

/// The default test key (by kid) for an algorithm.
pub fn default_kid(alg: &str) -> &'static str {
    match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => "rsa1",
        "ES256" => "ec256",
        "ES384" => "ec384",
        "ES512" => "ec521",
        "EdDSA" => "ed25519",
        _ => "hmac",
    }
}

pub fn hmac_secret() -> &'static [u8] {
    HMAC
}

/// Signs `input` with `alg` under the test key `kid` (JWS signature bytes).
pub fn sign(alg: &str, kid: &str, input: &[u8]) -> Vec<u8> {
    let rsa_key =
        || rsa::RsaPrivateKey::from_pkcs8_pem(if kid == "rsa2" { RSA2 } else { RSA1 }).unwrap();
    match alg {
        "RS256" => rsa_key()
            .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input))
            .unwrap(),
        "RS384" => rsa_key()
            .sign(rsa::Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(input))
            .unwrap(),
        "RS512" => rsa_key()
            .sign(rsa::Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(input))
            .unwrap(),
        "PS256" => rsa_key()
            .sign_with_rng(
                &mut rand::thread_rng(),
                rsa::Pss::new_with_salt::<Sha256>(32),
                &Sha256::digest(input),
            )
            .unwrap(),
        "PS384" => rsa_key()
            .sign_with_rng(
                &mut rand::thread_rng(),
                rsa::Pss::new_with_salt::<Sha384>(48),
                &Sha384::digest(input),
            )
            .unwrap(),
        "PS512" => rsa_key()
            .sign_with_rng(
                &mut rand::thread_rng(),
                rsa::Pss::new_with_salt::<Sha512>(64),
                &Sha512::digest(input),
            )
            .unwrap(),
        "ES256" => {
            use p256::ecdsa::signature::Signer as _;
            let secret = p256::SecretKey::from_pkcs8_pem(EC256).unwrap();
            let sig: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(secret).sign(input);
            sig.to_bytes().to_vec()
        }
        "ES384" => {
            use p384::ecdsa::signature::Signer as _;
            let secret = p384::SecretKey::from_pkcs8_pem(EC384).unwrap();
            let sig: p384::ecdsa::Signature = p384::ecdsa::SigningKey::from(secret).sign(input);
            sig.to_bytes().to_vec()
        }
        "ES512" => {
            use p521::ecdsa::signature::Signer as _;
            let secret = p521::SecretKey::from_pkcs8_pem(EC521).unwrap();
            let key = p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes()).unwrap();
            let sig: p521::ecdsa::Signature = key.sign(input);
            sig.to_bytes().to_vec()
        }
        "EdDSA" => {
            let pair = ed25519_compact::KeyPair::from_pem(ED25519).unwrap();
            pair.sk.sign(input, None).to_vec()
        }
        "HS256" => hmac_sha256::HMAC::mac(input, HMAC).to_vec(),
        "HS384" => hmac_sha512::sha384::HMAC::mac(input, HMAC).to_vec(),
        "HS512" => hmac_sha512::HMAC::mac(input, HMAC).to_vec(),
        other => panic!("cannot sign {other}"),
    }
}

/// `header.payload` of a token.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string()), b64(claims.to_string()))
}

/// A token signed as its header says: `alg`, and `kid` (or the algorithm's default test key).
pub fn token(header: &Value, claims: &Value) -> String {
    let alg = header["alg"].as_str().unwrap();
    let kid = header["kid"].as_str().unwrap_or(default_kid(alg));
    let input = signing_input(header, claims);
    let sig = sign(alg, kid, input.as_bytes());
    format!("{input}.{}", b64(sig))
}

/// A token with the given signature bytes.
pub fn with_signature(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}", signing_input(header, claims), b64(signature))
}

/// The public key of `rsa1` as SubjectPublicKeyInfo DER and PEM (for confusion attacks).
pub fn rsa1_public_spki() -> (Vec<u8>, String) {
    use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
    let public = rsa::RsaPrivateKey::from_pkcs8_pem(RSA1)
        .unwrap()
        .to_public_key();
    (
        public.to_public_key_der().unwrap().as_bytes().to_vec(),
        public.to_public_key_pem(LineEnding::LF).unwrap(),
    )
}
