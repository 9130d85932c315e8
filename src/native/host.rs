//! [`Host`] for the native build: the process's clock, and the store shared by every worker
//! kept in this process's memory (a dynamic module lives in Envoy's address space, so all
//! workers see one map; no shared-data round trip through Envoy).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use crate::policy::{HashAlg, Host, NativeVerify, SharedWrite};

/// Values and their CAS tokens, shared by all workers of this Envoy process. The rate-limit
/// table decides what lives here and bounds it (every slot exists from the start).
type Store = Mutex<HashMap<String, (Vec<u8>, u32)>>;

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| Mutex::new(HashMap::new()))
}

pub struct NativeHost;

impl Host for NativeHost {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        // A poisoned lock means a panic while holding it, and writes are whole values: the
        // map is still consistent, so keep using it.
        let map = store().lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        let mut map = store().lock().unwrap_or_else(|e| e.into_inner());
        let current = map.get(key).map(|(_, c)| *c);
        if let (Some(expected), Some(current)) = (cas, current) {
            if expected != current {
                return SharedWrite::CasMismatch;
            }
        }
        let next = current.unwrap_or(0).wrapping_add(1);
        match map.get_mut(key) {
            Some(entry) => {
                entry.0.clear();
                entry.0.extend_from_slice(value);
                entry.1 = next;
            }
            None => {
                map.insert(key.to_string(), (value.to_vec(), next));
            }
        }
        SharedWrite::Written
    }

    /// No host verifier yet: the core verifies with the pure-Rust crates, natively compiled.
    fn verify_signature(&self, _: HashAlg, _: &[u8], _: &[u8], _: &[u8]) -> NativeVerify {
        NativeVerify::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_write_after_another_write_is_a_mismatch() {
        let host = NativeHost;
        let key = "native-host-test-cas";
        assert_eq!(host.shared_set(key, b"a", None), SharedWrite::Written);
        let (_, cas) = host.shared_get(key).unwrap();
        assert_eq!(host.shared_set(key, b"b", Some(cas)), SharedWrite::Written);
        assert_eq!(
            host.shared_set(key, b"c", Some(cas)),
            SharedWrite::CasMismatch
        );
        assert_eq!(host.shared_get(key).unwrap().0, b"b");
    }
}
