//! JWS algorithms (RFC 7518) and which key types they fit.

use crate::policy::HashAlg;

/// A signature algorithm api-guard verifies. `none` is not one of them, by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

/// The kind of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    P521,
    Ed25519,
    Hmac,
}

impl Alg {
    pub const ALL: [Alg; 13] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
    ];

    /// The `alg` header value, exactly (JWS names are case-sensitive).
    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.iter().copied().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }

    pub fn key_kind(self) -> KeyKind {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyKind::Rsa
            }
            Alg::ES256 => KeyKind::P256,
            Alg::ES384 => KeyKind::P384,
            Alg::ES512 => KeyKind::P521,
            Alg::EdDSA => KeyKind::Ed25519,
            Alg::HS256 | Alg::HS384 | Alg::HS512 => KeyKind::Hmac,
        }
    }

    /// The hash of the signature scheme.
    pub fn hash(self) -> HashAlg {
        match self {
            Alg::RS256 | Alg::PS256 | Alg::ES256 | Alg::HS256 => HashAlg::Sha256,
            Alg::RS384 | Alg::PS384 | Alg::ES384 | Alg::HS384 => HashAlg::Sha384,
            Alg::RS512 | Alg::PS512 | Alg::ES512 | Alg::HS512 | Alg::EdDSA => HashAlg::Sha512,
        }
    }

    /// Whether the host's native `verify_signature` can check it (RSA PKCS#1 v1.5, ECDSA).
    #[cfg(test)]
    pub fn native_capable(self) -> bool {
        matches!(
            self.key_kind(),
            KeyKind::Rsa | KeyKind::P256 | KeyKind::P384 | KeyKind::P521
        ) && !self.is_pss()
    }

    pub fn is_pss(self) -> bool {
        matches!(self, Alg::PS256 | Alg::PS384 | Alg::PS512)
    }

    pub fn is_hmac(self) -> bool {
        self.key_kind() == KeyKind::Hmac
    }

    /// Minimum HMAC key length (RFC 7518 §3.2: at least the hash output size).
    pub fn min_hmac_key_len(self) -> usize {
        match self.hash() {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_none_is_not_an_algorithm() {
        for alg in Alg::ALL {
            assert_eq!(Alg::parse(alg.name()), Some(alg));
        }
        for bogus in [
            "none", "None", "NONE", "nOnE", "rs256", "HS256 ", "", "ES256K",
        ] {
            assert_eq!(Alg::parse(bogus), None, "{bogus:?}");
        }
    }

    #[test]
    fn only_pkcs1_and_ecdsa_go_native() {
        let native: Vec<_> = Alg::ALL.iter().filter(|a| a.native_capable()).collect();
        assert_eq!(
            native,
            [
                &Alg::RS256,
                &Alg::RS384,
                &Alg::RS512,
                &Alg::ES256,
                &Alg::ES384,
                &Alg::ES512
            ]
        );
    }
}
