//! JWKS (RFC 7517) parsing into verified key material. Every key is decoded and checked once,
//! when the configuration is compiled or a remote JWKS is fetched; the request path only looks
//! keys up.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::pkcs8::EncodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Map, Value};

use super::alg::{Alg, KeyKind};

/// At most this many keys in one JWKS (IdPs publish a handful).
pub const MAX_KEYS: usize = 64;
/// A `kid` longer than this is refused (or the key skipped, for a remote JWKS).
pub const MAX_KID_BYTES: usize = 256;
/// RSA moduli api-guard accepts, in bits.
pub const RSA_MIN_BITS: usize = 2048;
pub const RSA_MAX_BITS: usize = 4096;
/// HMAC secrets must be at least as long as the smallest hash output (RFC 7518 §3.2).
pub const HMAC_MIN_BYTES: usize = 32;

/// Decoded public key material (or an HMAC secret), ready to verify with.
#[derive(Clone)]
pub enum Material {
    Rsa {
        key: rsa::RsaPublicKey,
        /// SubjectPublicKeyInfo DER, for the host's native verifier.
        spki: Vec<u8>,
    },
    P256 {
        key: p256::ecdsa::VerifyingKey,
        spki: Vec<u8>,
    },
    P384 {
        key: p384::ecdsa::VerifyingKey,
        spki: Vec<u8>,
    },
    P521 {
        key: p521::ecdsa::VerifyingKey,
        spki: Vec<u8>,
    },
    Ed25519(ed25519_compact::PublicKey),
    Hmac(Vec<u8>),
}

impl Material {
    pub fn kind(&self) -> KeyKind {
        match self {
            Material::Rsa { .. } => KeyKind::Rsa,
            Material::P256 { .. } => KeyKind::P256,
            Material::P384 { .. } => KeyKind::P384,
            Material::P521 { .. } => KeyKind::P521,
            Material::Ed25519(_) => KeyKind::Ed25519,
            Material::Hmac(_) => KeyKind::Hmac,
        }
    }

    /// The bytes that identify the key (for equality of compiled configs).
    fn identity(&self) -> &[u8] {
        match self {
            Material::Rsa { spki, .. }
            | Material::P256 { spki, .. }
            | Material::P384 { spki, .. }
            | Material::P521 { spki, .. } => spki,
            Material::Ed25519(key) => key.as_ref(),
            Material::Hmac(secret) => secret,
        }
    }
}

/// One usable verification key of a JWKS.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    /// The JWK's own `alg`, which then is the only algorithm it verifies.
    pub alg: Option<Alg>,
    pub material: Material,
}

impl Key {
    /// Whether this key may verify a token signed with `alg` (no algorithm confusion: the
    /// key's type decides, never the token).
    pub fn fits(&self, alg: Alg) -> bool {
        if self.material.kind() != alg.key_kind() || self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        match &self.material {
            Material::Hmac(secret) => secret.len() >= alg.min_hmac_key_len(),
            _ => true,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid
            && self.alg == other.alg
            && self.material.kind() == other.material.kind()
            && self.material.identity() == other.material.identity()
    }
}

impl Eq for Key {}

/// Never prints key material (an HMAC secret is a secret).
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &self.material.kind())
            .finish()
    }
}

/// The usable keys of one JWKS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

/// How a JWKS is read: a configured one must be entirely valid; a fetched one may carry keys
/// api-guard cannot use (encryption keys, other curves), which are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    Strict,
    Lenient,
}

/// Why a JWKS (or one of its keys) was refused: the JSON path below the JWKS, and what is wrong.
/// Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError {
    /// e.g. `keys[2].n`, or empty for the JWKS itself.
    pub path: String,
    pub message: String,
}

impl JwksError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        JwksError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl KeySet {
    /// Parses a JWKS object.
    pub fn from_jwks(jwks: &Value, strictness: Strictness) -> Result<KeySet, JwksError> {
        let Some(object) = jwks.as_object() else {
            return Err(JwksError::new(
                "",
                "expected a JWKS object {\"keys\": [...]}",
            ));
        };
        let Some(list) = object.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::new(
                "keys",
                "expected an array of JWKs under `keys`",
            ));
        };
        if list.len() > MAX_KEYS {
            return Err(JwksError::new(
                "keys",
                format!("at most {MAX_KEYS} keys are accepted in one JWKS"),
            ));
        }
        let mut keys = Vec::with_capacity(list.len());
        for (i, jwk) in list.iter().enumerate() {
            match parse_jwk(jwk) {
                Ok(key) => keys.push(key),
                Err((member, message)) => {
                    if strictness == Strictness::Strict {
                        let path = match member {
                            Some(m) => format!("keys[{i}].{m}"),
                            None => format!("keys[{i}]"),
                        };
                        return Err(JwksError::new(path, message));
                    }
                }
            }
        }
        if keys.is_empty() {
            return Err(JwksError::new(
                "keys",
                "no usable signature key (RSA, EC P-256/P-384/P-521, Ed25519 or oct)",
            ));
        }
        Ok(KeySet { keys })
    }

    /// Parses a JWKS document (bytes of JSON).
    pub fn from_json(bytes: &[u8], strictness: Strictness) -> Result<KeySet, JwksError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|_| JwksError::new("", "not a JSON document"))?;
        KeySet::from_jwks(&value, strictness)
    }

    /// The key kinds present.
    #[cfg(test)]
    pub fn kinds(&self) -> Vec<KeyKind> {
        let mut kinds: Vec<KeyKind> = Vec::new();
        for key in &self.keys {
            if !kinds.contains(&key.material.kind()) {
                kinds.push(key.material.kind());
            }
        }
        kinds
    }

    /// Whether any key can verify `alg`.
    pub fn supports(&self, alg: Alg) -> bool {
        self.keys.iter().any(|k| k.fits(alg))
    }
}

type JwkError = (Option<&'static str>, String);

fn err(member: Option<&'static str>, message: impl Into<String>) -> JwkError {
    (member, message.into())
}

fn parse_jwk(jwk: &Value) -> Result<Key, JwkError> {
    let Some(jwk) = jwk.as_object() else {
        return Err(err(None, "expected a JWK object"));
    };
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| err(Some("kty"), "expected `kty`: RSA, EC, OKP or oct"))?;
    if let Some(usage) = jwk.get("use") {
        if usage.as_str() != Some("sig") {
            return Err(err(
                Some("use"),
                "only signature keys (\"use\": \"sig\") can verify tokens",
            ));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err(err(Some("key_ops"), "the key is not allowed to \"verify\""));
        }
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_KID_BYTES => {
            Some(kid.clone())
        }
        Some(_) => {
            return Err(err(
                Some("kid"),
                format!("expected a string of 1 to {MAX_KID_BYTES} bytes"),
            ))
        }
    };
    let material = match kty {
        "RSA" => rsa_key(jwk)?,
        "EC" => ec_key(jwk)?,
        "OKP" => okp_key(jwk)?,
        "oct" => {
            let secret = member_bytes(jwk, "k")?;
            if secret.len() < HMAC_MIN_BYTES {
                return Err(err(
                    Some("k"),
                    format!("an HMAC secret needs at least {HMAC_MIN_BYTES} bytes"),
                ));
            }
            Material::Hmac(secret)
        }
        _ => {
            return Err(err(
                Some("kty"),
                "unsupported key type; expected RSA, EC, OKP or oct",
            ))
        }
    };
    let alg = match jwk.get("alg") {
        None => None,
        Some(value) => {
            let alg = value.as_str().and_then(Alg::parse).ok_or_else(|| {
                err(
                    Some("alg"),
                    "unsupported algorithm; expected one of RS256, RS384, RS512, PS256, PS384, \
                     PS512, ES256, ES384, ES512, EdDSA, HS256, HS384, HS512",
                )
            })?;
            if alg.key_kind() != material.kind() {
                return Err(err(Some("alg"), "the algorithm does not fit the key type"));
            }
            Some(alg)
        }
    };
    let key = Key { kid, alg, material };
    if let Some(alg) = key.alg {
        if !key.fits(alg) {
            return Err(err(
                Some("k"),
                "the HMAC secret is shorter than the algorithm's hash output",
            ));
        }
    }
    Ok(key)
}

fn member_bytes(jwk: &Map<String, Value>, member: &'static str) -> Result<Vec<u8>, JwkError> {
    let text = jwk
        .get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| err(Some(member), "expected a base64url string"))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| err(Some(member), "not valid unpadded base64url"))
}

fn refuse_private(jwk: &Map<String, Value>, members: &[&'static str]) -> Result<(), JwkError> {
    for member in members {
        if jwk.contains_key(*member) {
            return Err(err(
                Some(member),
                "private key material: publish only the public key",
            ));
        }
    }
    Ok(())
}

fn rsa_key(jwk: &Map<String, Value>) -> Result<Material, JwkError> {
    refuse_private(jwk, &["d", "p", "q", "dp", "dq", "qi"])?;
    let n = member_bytes(jwk, "n")?;
    let e = member_bytes(jwk, "e")?;
    let n = rsa::BigUint::from_bytes_be(&n);
    let bits = n.bits();
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(err(
            Some("n"),
            format!("RSA moduli of {RSA_MIN_BITS} to {RSA_MAX_BITS} bits are accepted"),
        ));
    }
    let key = rsa::RsaPublicKey::new(n, rsa::BigUint::from_bytes_be(&e))
        .map_err(|_| err(Some("e"), "not a valid RSA public exponent"))?;
    if key.size() * 8 < RSA_MIN_BITS {
        return Err(err(Some("n"), "RSA modulus too small"));
    }
    let spki = key
        .to_public_key_der()
        .map_err(|_| err(Some("n"), "cannot encode the RSA key"))?
        .as_bytes()
        .to_vec();
    Ok(Material::Rsa { key, spki })
}

fn ec_key(jwk: &Map<String, Value>) -> Result<Material, JwkError> {
    refuse_private(jwk, &["d"])?;
    let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or("");
    let size = match crv {
        "P-256" => 32,
        "P-384" => 48,
        "P-521" => 66,
        _ => {
            return Err(err(
                Some("crv"),
                "unsupported curve; expected P-256, P-384 or P-521",
            ))
        }
    };
    let x = member_bytes(jwk, "x")?;
    let y = member_bytes(jwk, "y")?;
    if x.len() != size {
        return Err(err(Some("x"), format!("expected {size} bytes for {crv}")));
    }
    if y.len() != size {
        return Err(err(Some("y"), format!("expected {size} bytes for {crv}")));
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let off_curve = || err(Some("x"), "not a point on the curve");
    let der_err = || err(Some("x"), "cannot encode the EC key");
    Ok(match size {
        32 => {
            let public = p256::PublicKey::from_sec1_bytes(&point).map_err(|_| off_curve())?;
            let spki = public.to_public_key_der().map_err(|_| der_err())?;
            Material::P256 {
                key: p256::ecdsa::VerifyingKey::from(&public),
                spki: spki.as_bytes().to_vec(),
            }
        }
        48 => {
            let public = p384::PublicKey::from_sec1_bytes(&point).map_err(|_| off_curve())?;
            let spki = public.to_public_key_der().map_err(|_| der_err())?;
            Material::P384 {
                key: p384::ecdsa::VerifyingKey::from(&public),
                spki: spki.as_bytes().to_vec(),
            }
        }
        _ => {
            let public = p521::PublicKey::from_sec1_bytes(&point).map_err(|_| off_curve())?;
            let spki = public.to_public_key_der().map_err(|_| der_err())?;
            let key =
                p521::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|_| off_curve())?;
            Material::P521 {
                key,
                spki: spki.as_bytes().to_vec(),
            }
        }
    })
}

fn okp_key(jwk: &Map<String, Value>) -> Result<Material, JwkError> {
    refuse_private(jwk, &["d"])?;
    if jwk.get("crv").and_then(Value::as_str) != Some("Ed25519") {
        return Err(err(Some("crv"), "unsupported curve; expected Ed25519"));
    }
    let x = member_bytes(jwk, "x")?;
    let key = ed25519_compact::PublicKey::from_slice(&x)
        .map_err(|_| err(Some("x"), "expected a 32-byte Ed25519 public key"))?;
    Ok(Material::Ed25519(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JWKS: &str = include_str!("../../../../tests/data/jwt/jwks.json");

    #[test]
    fn the_test_jwks_parses_every_kind() {
        let set = KeySet::from_json(JWKS.as_bytes(), Strictness::Strict).unwrap();
        assert_eq!(set.keys.len(), 7);
        assert_eq!(
            set.kinds(),
            vec![
                KeyKind::Rsa,
                KeyKind::P256,
                KeyKind::P384,
                KeyKind::P521,
                KeyKind::Ed25519,
                KeyKind::Hmac
            ]
        );
        for alg in Alg::ALL {
            assert!(set.supports(alg), "{alg:?}");
        }
        // Debug output never shows material.
        let debug = format!("{set:?}");
        assert!(!debug.contains("Hmac(["), "{debug}");
    }

    fn key_error(jwk: Value) -> String {
        let jwks = json!({ "keys": [jwk] });
        match KeySet::from_jwks(&jwks, Strictness::Strict) {
            Ok(_) => panic!("accepted {jwk}"),
            Err(e) => format!("{}: {}", e.path, e.message),
        }
    }

    #[test]
    fn bad_keys_are_refused_with_the_member() {
        let good: Value = serde_json::from_str(JWKS).unwrap();
        let rsa = good["keys"][0].clone();
        let ec = good["keys"][2].clone();
        let with = |base: &Value, member: &str, value: Value| {
            let mut k = base.clone();
            k[member] = value;
            k
        };
        let table = [
            (json!("x"), "keys[0]: expected a JWK object"),
            (json!({}), "keys[0].kty: expected `kty`"),
            (json!({"kty": "DSA"}), "keys[0].kty: unsupported key type"),
            (
                with(&rsa, "use", json!("enc")),
                "keys[0].use: only signature",
            ),
            (
                with(&rsa, "key_ops", json!(["encrypt"])),
                "keys[0].key_ops:",
            ),
            (
                with(&rsa, "kid", json!(5)),
                "keys[0].kid: expected a string",
            ),
            (with(&rsa, "n", json!("AQAB")), "keys[0].n: RSA moduli"),
            (with(&rsa, "n", json!("a+b/")), "keys[0].n: not valid"),
            (with(&rsa, "e", json!("AA")), "keys[0].e: not a valid RSA"),
            (with(&rsa, "d", json!("AQAB")), "keys[0].d: private key"),
            (
                with(&rsa, "alg", json!("ES256")),
                "keys[0].alg: the algorithm does not fit",
            ),
            (
                with(&rsa, "alg", json!("none")),
                "keys[0].alg: unsupported algorithm",
            ),
            (
                with(&ec, "crv", json!("P-192")),
                "keys[0].crv: unsupported curve",
            ),
            (
                with(&ec, "x", json!("AAAA")),
                "keys[0].x: expected 32 bytes",
            ),
            (
                with(&ec, "y", ec["x"].clone()),
                "keys[0].x: not a point on the curve",
            ),
            (
                json!({"kty": "OKP", "crv": "X25519", "x": "AAAA"}),
                "keys[0].crv:",
            ),
            (
                json!({"kty": "oct", "k": "c2hvcnQ"}),
                "keys[0].k: an HMAC secret needs",
            ),
            (
                json!({"kty": "oct", "alg": "HS512", "k": URL_SAFE_NO_PAD.encode([7u8; 32])}),
                "keys[0].k: the HMAC secret is shorter",
            ),
        ];
        for (jwk, want) in table {
            let got = key_error(jwk.clone());
            assert!(got.starts_with(want), "{jwk}: got {got:?}, want {want:?}");
            assert!(!got.contains("c2hvcnQ"), "echoed a secret: {got}");
        }
        let err = KeySet::from_jwks(&json!({"keys": []}), Strictness::Strict).unwrap_err();
        assert_eq!(err.path, "keys");
        let err = KeySet::from_jwks(&json!([]), Strictness::Strict).unwrap_err();
        assert_eq!(err.path, "");
        let many = json!({ "keys": vec![rsa.clone(); MAX_KEYS + 1] });
        assert!(KeySet::from_jwks(&many, Strictness::Strict).is_err());
    }

    #[test]
    fn lenient_parsing_skips_unusable_keys() {
        let good: Value = serde_json::from_str(JWKS).unwrap();
        let jwks = json!({"keys": [
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
            good["keys"][0].clone(),
        ]});
        let set = KeySet::from_jwks(&jwks, Strictness::Lenient).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(KeySet::from_jwks(&jwks, Strictness::Strict).is_err());
        assert!(KeySet::from_json(b"<html>", Strictness::Lenient).is_err());
        let none_usable = json!({"keys": [{"kty": "RSA", "use": "enc"}]});
        assert!(KeySet::from_jwks(&none_usable, Strictness::Lenient).is_err());
    }

    #[test]
    fn keys_fit_only_their_algorithms() {
        let set = KeySet::from_json(JWKS.as_bytes(), Strictness::Strict).unwrap();
        let hmac = set
            .keys
            .iter()
            .find(|k| k.kid.as_deref() == Some("hmac"))
            .unwrap();
        assert!(hmac.fits(Alg::HS256));
        assert!(hmac.fits(Alg::HS512));
        assert!(!hmac.fits(Alg::RS256));
        let rsa = &set.keys[0];
        for alg in [Alg::HS256, Alg::HS384, Alg::HS512, Alg::ES256, Alg::EdDSA] {
            assert!(!rsa.fits(alg), "{alg:?}");
        }
        assert!(rsa.fits(Alg::RS256) && rsa.fits(Alg::PS512));
    }
}
