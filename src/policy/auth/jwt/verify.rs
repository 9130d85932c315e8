//! Signature verification: the host's native verifier for RS* and ES* when it has one, the
//! pure-Rust crates otherwise and for PS*, EdDSA and HS*.

// The `signature` crate's trait, shared by the three curve crates.
use p256::ecdsa::signature::Verifier;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq as _;

use super::alg::Alg;
use super::keys::{Key, Material};
use crate::policy::{HashAlg, Host, NativeVerify};

/// Whether `signature` over `input` is valid for `alg` under `key`. The caller has checked
/// that the key fits the algorithm; a key that does not fit never verifies.
pub fn verify(alg: Alg, key: &Key, input: &[u8], signature: &[u8], host: &dyn Host) -> bool {
    if !key.fits(alg) {
        return false;
    }
    match &key.material {
        Material::Rsa { key, spki } => {
            if alg.is_pss() {
                return rsa_pss(alg, key, input, signature);
            }
            if let Some(valid) = native(host, alg, spki, signature, input) {
                return valid;
            }
            let hashed = digest(alg.hash(), input);
            let scheme = match alg.hash() {
                HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
            };
            key.verify(scheme, &hashed, signature).is_ok()
        }
        Material::P256 { key, spki } => ecdsa::<p256::ecdsa::Signature, p256::ecdsa::DerSignature>(
            alg, key, spki, input, signature, host,
        ),
        Material::P384 { key, spki } => ecdsa::<p384::ecdsa::Signature, p384::ecdsa::DerSignature>(
            alg, key, spki, input, signature, host,
        ),
        Material::P521 { key, spki } => ecdsa::<p521::ecdsa::Signature, p521::ecdsa::DerSignature>(
            alg, key, spki, input, signature, host,
        ),
        Material::Ed25519(key) => ed25519_compact::Signature::from_slice(signature)
            .is_ok_and(|sig| key.verify(input, &sig).is_ok()),
        Material::Hmac(secret) => match alg.hash() {
            HashAlg::Sha256 => hmac_sha256::HMAC::mac(input, secret)
                .ct_eq(signature)
                .into(),
            HashAlg::Sha384 => hmac_sha512::sha384::HMAC::mac(input, secret)
                .ct_eq(signature)
                .into(),
            HashAlg::Sha512 => hmac_sha512::HMAC::mac(input, secret)
                .ct_eq(signature)
                .into(),
        },
    }
}

/// ES256, ES384 and ES512, one curve each: `Raw` is the curve's fixed-size signature, `Der`
/// its DER form. JOSE sends r||s; the host's native verifier takes DER.
fn ecdsa<Raw, Der>(
    alg: Alg,
    key: &impl Verifier<Raw>,
    spki: &[u8],
    input: &[u8],
    signature: &[u8],
    host: &dyn Host,
) -> bool
where
    Raw: for<'a> TryFrom<&'a [u8]> + Clone,
    Der: From<Raw> + AsRef<[u8]>,
{
    // TryFrom (from_slice) takes exactly r||s and range-checks both: 0 < r, s < n.
    let Ok(sig) = Raw::try_from(signature) else {
        return false;
    };
    if let Some(valid) = native(host, alg, spki, Der::from(sig.clone()).as_ref(), input) {
        return valid;
    }
    key.verify(input, &sig).is_ok()
}

fn native(host: &dyn Host, alg: Alg, spki: &[u8], signature: &[u8], input: &[u8]) -> Option<bool> {
    match host.verify_signature(alg.hash(), spki, signature, input) {
        NativeVerify::Valid => Some(true),
        NativeVerify::Invalid => Some(false),
        NativeVerify::Unavailable => None,
    }
}

fn digest(hash: HashAlg, input: &[u8]) -> Vec<u8> {
    match hash {
        HashAlg::Sha256 => Sha256::digest(input).to_vec(),
        HashAlg::Sha384 => Sha384::digest(input).to_vec(),
        HashAlg::Sha512 => Sha512::digest(input).to_vec(),
    }
}

/// RSASSA-PSS with MGF1 of the same hash and a salt as long as the hash (RFC 7518 §3.5).
fn rsa_pss(alg: Alg, key: &rsa::RsaPublicKey, input: &[u8], signature: &[u8]) -> bool {
    let hashed = digest(alg.hash(), input);
    let scheme = match alg.hash() {
        HashAlg::Sha256 => rsa::Pss::new_with_salt::<Sha256>(32),
        HashAlg::Sha384 => rsa::Pss::new_with_salt::<Sha384>(48),
        HashAlg::Sha512 => rsa::Pss::new_with_salt::<Sha512>(64),
    };
    key.verify(scheme, &hashed, signature).is_ok()
}
