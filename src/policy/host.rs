//! What the core needs from its host. Envoy's shell implements it with proxy-wasm host calls;
//! tests and fuzzers use [`crate::policy::testing::MemoryHost`].

use std::time::SystemTime;

/// Outcome of a compare-and-swap write to the shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrite {
    Written,
    /// Someone else wrote since our read: read again and retry.
    CasMismatch,
    /// The host refused the write (other than a CAS mismatch).
    Failed,
}

/// A hash function as the host's native signature check names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }
}

/// Answer of the host's native signature verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeVerify {
    Valid,
    Invalid,
    /// The host has no native verifier (or it failed): use the pure-Rust path.
    Unavailable,
}

pub trait Host {
    /// Wall-clock time.
    fn now(&self) -> SystemTime;

    /// Reads a value of the store shared by all workers, with its CAS token.
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)>;

    /// Writes a shared value; `cas` from a previous read makes the write conditional.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite;

    /// RSA PKCS#1 v1.5 or ECDSA (DER signature) verification by the host, if it offers it.
    fn verify_signature(
        &self,
        hash: HashAlg,
        public_key_der: &[u8],
        signature: &[u8],
        message: &[u8],
    ) -> NativeVerify;
}

/// Seconds since the Unix epoch (0 for a clock before it).
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
