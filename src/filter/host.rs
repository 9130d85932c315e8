//! [`Host`] implemented with proxy-wasm host calls.

use std::time::SystemTime;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use crate::policy::{HashAlg, Host, NativeVerify, SharedWrite};

pub struct EnvoyHost;

/// The downstream peer's `ip:port` (Envoy's `source.address`), for
/// [`crate::policy::SourceAddress::lazy`].
pub fn source_address() -> Option<String> {
    hostcalls::get_property(vec!["source", "address"])
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

impl Host for EnvoyHost {
    fn now(&self) -> SystemTime {
        hostcalls::get_current_time().unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Some((value, cas)),
            _ => None,
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => SharedWrite::Written,
            Err(Status::CasMismatch) => SharedWrite::CasMismatch,
            Err(_) => SharedWrite::Failed,
        }
    }

    fn verify_signature(
        &self,
        hash: HashAlg,
        public_key_der: &[u8],
        signature: &[u8],
        message: &[u8],
    ) -> NativeVerify {
        super::native::verify(hash, public_key_der, signature, message)
    }
}
