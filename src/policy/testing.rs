//! An in-memory [`Host`] for unit tests, fuzzing and benchmarks outside Envoy.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::host::{HashAlg, Host, NativeVerify, SharedWrite};

/// A host with a settable clock, a shared store in a map and no native verifier.
#[derive(Debug)]
pub struct MemoryHost {
    pub now: Cell<SystemTime>,
    store: RefCell<HashMap<String, (Vec<u8>, u32)>>,
}

impl MemoryHost {
    /// A host whose clock reads `unix_seconds` after the epoch.
    pub fn at(unix_seconds: u64) -> Self {
        MemoryHost {
            now: Cell::new(SystemTime::UNIX_EPOCH + Duration::from_secs(unix_seconds)),
            store: RefCell::new(HashMap::new()),
        }
    }

    pub fn advance(&self, by: Duration) {
        self.now.set(self.now.get() + by);
    }

    /// Number of keys in the shared store (for memory-bound tests).
    pub fn shared_len(&self) -> usize {
        self.store.borrow().len()
    }
}

impl Default for MemoryHost {
    fn default() -> Self {
        MemoryHost::at(1_800_000_000)
    }
}

impl Host for MemoryHost {
    fn now(&self) -> SystemTime {
        self.now.get()
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.store.borrow().get(key).cloned()
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        let mut store = self.store.borrow_mut();
        let current = store.get(key).map(|(_, c)| *c);
        if let (Some(expected), Some(current)) = (cas, current) {
            if expected != current {
                return SharedWrite::CasMismatch;
            }
        }
        let next = current.unwrap_or(0).wrapping_add(1);
        store.insert(key.to_string(), (value.to_vec(), next));
        SharedWrite::Written
    }

    fn verify_signature(&self, _: HashAlg, _: &[u8], _: &[u8], _: &[u8]) -> NativeVerify {
        NativeVerify::Unavailable
    }
}

/// Request headers from name/value pairs, as a shell hands them to the core.
pub fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}
