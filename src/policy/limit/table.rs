//! The bucket table: a fixed number of slots in proxy-wasm shared data, so every Envoy worker
//! counts against the same buckets, and memory stays bounded whatever the number of clients.
//!
//! Shared data has no delete and no TTL, so keys are never created per client: the table has
//! `slots` keys (`api-guard/rl/<n>`), all created at configuration time. A (policy, client)
//! pair hashes (SHA-256) to two candidate slots and a 64-bit fingerprint. A slot's value is
//! 16 bytes: the fingerprint of its occupant and its bucket state (GCRA `tat`, nanoseconds).
//!
//! Placement, per request:
//! 1. the first candidate holds our fingerprint, or is unused: use it (the common case: one
//!    `shared_get`, then one compare-and-swap `shared_set`);
//! 2. else read the second candidate; if it holds our fingerprint, use it;
//! 3. else take over a candidate whose occupant is idle (its bucket is full again, so its
//!    state is that of a fresh bucket: nothing is lost);
//! 4. else both occupants are active: evict the one whose bucket is closest to full (least
//!    state lost). The evicted client starts again with a full bucket next time: a collision
//!    can let a client through sooner than its policy says, never later, and never makes
//!    two clients share a bucket.
//!
//! Writes are compare-and-swap on the token read with the value; on a mismatch (another
//! worker wrote the slot in between) the whole step is redone, at most `MAX_ATTEMPTS` times.
//! A denied request writes nothing.

use sha2::{Digest, Sha256};

use super::gcra::{Admission, Shape};
use crate::policy::{Host, SharedWrite};

/// Default number of slots (about 1.5 MiB of Envoy shared data).
pub const DEFAULT_SLOTS: u32 = 16_384;
/// The largest table a configuration may ask for.
pub const MAX_SLOTS: u32 = 1 << 20;
const KEY_PREFIX: &str = "api-guard/rl/";
/// Compare-and-swap attempts before giving up on a request (see [`Outcome::Contended`]).
pub const MAX_ATTEMPTS: usize = 32;
const SLOT_BYTES: usize = 16;

/// The table's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotTable {
    pub slots: u32,
}

impl Default for SlotTable {
    fn default() -> Self {
        SlotTable {
            slots: DEFAULT_SLOTS,
        }
    }
}

/// Where a (policy, client) pair may live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub first: u32,
    pub second: u32,
    /// Never 0 (0 marks an unused slot).
    pub fingerprint: u64,
}

/// The answer of the table for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Admission(Admission),
    /// Every compare-and-swap attempt lost to another worker.
    Contended,
    /// The host refused a write.
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    fingerprint: u64,
    tat: u64,
}

impl Slot {
    const UNUSED: Slot = Slot {
        fingerprint: 0,
        tat: 0,
    };

    fn decode(bytes: &[u8]) -> Slot {
        let word = |range: std::ops::Range<usize>| {
            bytes
                .get(range)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes)
        };
        if bytes.len() != SLOT_BYTES {
            return Slot::UNUSED;
        }
        Slot {
            fingerprint: word(0..8),
            tat: word(8..16),
        }
    }

    fn encode(&self) -> [u8; SLOT_BYTES] {
        let mut out = [0u8; SLOT_BYTES];
        let (fingerprint, tat) = out.split_at_mut(8);
        fingerprint.copy_from_slice(&self.fingerprint.to_le_bytes());
        tat.copy_from_slice(&self.tat.to_le_bytes());
        out
    }

    fn unused(&self) -> bool {
        self.fingerprint == 0
    }

    /// The bucket is full again: its state is that of a fresh bucket.
    fn idle(&self, now: u64) -> bool {
        self.tat <= now
    }
}

impl SlotTable {
    /// The shared-data key of a slot.
    pub fn key(slot: u32) -> String {
        format!("{KEY_PREFIX}{slot}")
    }

    /// Where the bucket of `client` under `policy` may live.
    pub fn place(&self, policy: &str, client: &str) -> Placement {
        let mut hasher = Sha256::new();
        hasher.update(policy.as_bytes());
        hasher.update([0u8]);
        hasher.update(client.as_bytes());
        let digest = hasher.finalize();
        let word = |at: usize| {
            digest
                .get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes)
        };
        let slots = u64::from(self.slots.max(1));
        let first = word(0) % slots;
        let mut second = word(8) % slots;
        if second == first && slots > 1 {
            second = (first + 1) % slots;
        }
        Placement {
            first: u32::try_from(first).unwrap_or(0),
            second: u32::try_from(second).unwrap_or(0),
            fingerprint: word(16) | 1,
        }
    }

    /// Creates the slots that do not exist yet (at configuration time, so that the request
    /// path always finds a slot to compare-and-swap). Returns how many were created.
    pub fn init(&self, host: &dyn Host) -> u32 {
        let mut created = 0;
        for slot in 0..self.slots {
            let key = SlotTable::key(slot);
            if host.shared_get(&key).is_none()
                && host.shared_set(&key, &Slot::UNUSED.encode(), None) == SharedWrite::Written
            {
                created += 1;
            }
        }
        created
    }

    /// Takes one token from the bucket of `placement` at `now` (nanoseconds), or says when.
    pub fn admit(
        &self,
        host: &dyn Host,
        shape: &Shape,
        placement: &Placement,
        now: u64,
    ) -> Outcome {
        for _ in 0..MAX_ATTEMPTS {
            let (key, state, cas) = self.choose(host, placement, now);
            let admission = shape.admit(state, now);
            let Admission::Allowed { tat, .. } = admission else {
                // A denial changes nothing: no write.
                return Outcome::Admission(admission);
            };
            match write(host, &key, placement, tat, cas) {
                SharedWrite::Written => return Outcome::Admission(admission),
                SharedWrite::CasMismatch => continue,
                SharedWrite::Failed => return Outcome::Unavailable,
            }
        }
        Outcome::Contended
    }

    /// Marks `placement` as refused until `until` (nanoseconds): a hold taken from a rate
    /// limit service's `OVER_LIMIT`. Best effort: losing the slot only costs a later call.
    pub fn hold(&self, host: &dyn Host, placement: &Placement, until: u64, now: u64) {
        for _ in 0..MAX_ATTEMPTS {
            let (key, state, cas) = self.choose(host, placement, now);
            if state >= until {
                return;
            }
            if write(host, &key, placement, until, cas) != SharedWrite::CasMismatch {
                return;
            }
        }
    }

    /// Nanoseconds left of a hold on `placement`, if one is in force at `now`.
    pub fn held(&self, host: &dyn Host, placement: &Placement, now: u64) -> Option<u64> {
        [placement.first, placement.second]
            .into_iter()
            .map(|slot| read(host, &SlotTable::key(slot)).0)
            .find(|slot| slot.fingerprint == placement.fingerprint)
            .and_then(|slot| slot.tat.checked_sub(now))
            .filter(|left| *left > 0)
    }

    /// The slot for `placement` (its own, else a free or idle one, else the one closer to
    /// idle), with its state (0 when the slot is taken over) and CAS token.
    fn choose(
        &self,
        host: &dyn Host,
        placement: &Placement,
        now: u64,
    ) -> (String, u64, Option<u32>) {
        let ours = placement.fingerprint;
        let first_key = SlotTable::key(placement.first);
        let (a, a_cas) = read(host, &first_key);
        if a.fingerprint == ours {
            return (first_key, a.tat, a_cas);
        }
        if a.unused() {
            return (first_key, 0, a_cas);
        }
        let second_key = SlotTable::key(placement.second);
        let (b, b_cas) = read(host, &second_key);
        if b.fingerprint == ours && placement.second != placement.first {
            (second_key, b.tat, b_cas)
        } else if a.idle(now) {
            (first_key, 0, a_cas)
        } else if b.unused() || b.idle(now) {
            (second_key, 0, b_cas)
        } else if a.tat <= b.tat {
            (first_key, 0, a_cas)
        } else {
            (second_key, 0, b_cas)
        }
    }
}

fn write(
    host: &dyn Host,
    key: &str,
    placement: &Placement,
    tat: u64,
    cas: Option<u32>,
) -> SharedWrite {
    let value = Slot {
        fingerprint: placement.fingerprint,
        tat,
    }
    .encode();
    host.shared_set(key, &value, cas)
}

fn read(host: &dyn Host, key: &str) -> (Slot, Option<u32>) {
    match host.shared_get(key) {
        Some((bytes, cas)) => (Slot::decode(&bytes), Some(cas)),
        None => (Slot::UNUSED, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::MemoryHost;
    use std::cell::Cell;

    const SECOND: u64 = 1_000_000_000;
    const NOW: u64 = 1_800_000_000 * SECOND;

    fn shape(burst: u64) -> Shape {
        Shape {
            interval_ns: SECOND,
            burst,
        }
    }

    fn allowed(outcome: Outcome) -> bool {
        matches!(outcome, Outcome::Admission(Admission::Allowed { .. }))
    }

    #[test]
    fn a_hold_lasts_until_its_time_and_never_shortens() {
        let host = MemoryHost::default();
        let table = SlotTable { slots: 64 };
        table.init(&host);
        let p = table.place("g#hold", "key:acme");
        assert_eq!(table.held(&host, &p, NOW), None);
        table.hold(&host, &p, NOW + 30 * SECOND, NOW);
        assert_eq!(table.held(&host, &p, NOW), Some(30 * SECOND));
        assert_eq!(table.held(&host, &p, NOW + 29 * SECOND), Some(SECOND));
        assert_eq!(table.held(&host, &p, NOW + 30 * SECOND), None);
        // An earlier end does not shorten a longer hold.
        table.hold(&host, &p, NOW + 10 * SECOND, NOW);
        assert_eq!(table.held(&host, &p, NOW), Some(30 * SECOND));
        // Another client is not held.
        let other = table.place("g#hold", "key:other");
        assert_eq!(table.held(&host, &other, NOW), None);
    }

    #[test]
    fn slots_encode_in_sixteen_bytes() {
        let slot = Slot {
            fingerprint: 0x0102_0304_0506_0708,
            tat: 42,
        };
        assert_eq!(Slot::decode(&slot.encode()), slot);
        assert_eq!(Slot::decode(b"short"), Slot::UNUSED);
    }

    #[test]
    fn init_creates_every_slot_once() {
        let host = MemoryHost::default();
        let table = SlotTable { slots: 64 };
        assert_eq!(table.init(&host), 64);
        assert_eq!(table.init(&host), 0);
        assert_eq!(host.shared_len(), 64);
    }

    #[test]
    fn many_clients_never_grow_the_table() {
        let host = MemoryHost::default();
        let table = SlotTable { slots: 128 };
        table.init(&host);
        for i in 0..10_000 {
            let p = table.place("standard", &format!("ip:10.0.{}.{}", i / 256, i % 256));
            assert!(allowed(table.admit(&host, &shape(5), &p, NOW + i)));
        }
        assert_eq!(host.shared_len(), 128);
    }

    #[test]
    fn clients_are_independent_and_limited() {
        let host = MemoryHost::default();
        let table = SlotTable::default();
        table.init(&host);
        let a = table.place("standard", "ip:10.0.0.1");
        let b = table.place("standard", "ip:10.0.0.2");
        let a_other_policy = table.place("gold", "ip:10.0.0.1");
        for _ in 0..3 {
            assert!(allowed(table.admit(&host, &shape(3), &a, NOW)));
        }
        assert!(!allowed(table.admit(&host, &shape(3), &a, NOW)));
        assert!(allowed(table.admit(&host, &shape(3), &b, NOW)));
        assert!(allowed(table.admit(&host, &shape(3), &a_other_policy, NOW)));
        assert!(allowed(table.admit(&host, &shape(3), &a, NOW + SECOND)));
    }

    /// Finds clients whose both candidates are the same two slots as `of`'s.
    fn colliding(table: &SlotTable, of: &Placement, n: usize) -> Vec<String> {
        let mut found = Vec::new();
        for i in 0.. {
            let client = format!("ip:192.0.2.{i}");
            let p = table.place("standard", &client);
            let same = (p.first == of.first && p.second == of.second)
                || (p.first == of.second && p.second == of.first);
            if same && p.fingerprint != of.fingerprint {
                found.push(client);
                if found.len() == n {
                    return found;
                }
            }
        }
        found
    }

    #[test]
    fn collisions_use_the_second_slot_then_reclaim_idle_then_evict_the_fullest() {
        let host = MemoryHost::default();
        let table = SlotTable { slots: 4 };
        table.init(&host);
        let a = table.place("standard", "victim");
        let others = colliding(&table, &a, 2);
        let b = table.place("standard", &others[0]);
        let c = table.place("standard", &others[1]);
        let s = shape(2);

        // a and b both active: each has its own bucket in one of the two slots.
        assert!(allowed(table.admit(&host, &s, &a, NOW)));
        assert!(allowed(table.admit(&host, &s, &b, NOW)));
        assert!(allowed(table.admit(&host, &s, &a, NOW)));
        assert!(
            !allowed(table.admit(&host, &s, &a, NOW)),
            "a shares nothing with b"
        );
        assert!(allowed(table.admit(&host, &s, &b, NOW)));
        assert!(!allowed(table.admit(&host, &s, &b, NOW)));

        // c arrives while both are active: the fuller of a and b is evicted (they are equal
        // here, so either), c gets a fresh bucket, and nobody is refused for someone else.
        assert!(allowed(table.admit(&host, &s, &c, NOW)));
        let a_back = allowed(table.admit(&host, &s, &a, NOW));
        let b_back = allowed(table.admit(&host, &s, &b, NOW));
        assert!(a_back ^ b_back, "exactly the evicted one starts afresh");

        // Later every bucket is full again: idle slots are reclaimed without loss.
        let later = NOW + 10 * SECOND;
        for p in [&a, &b, &c, &a, &b, &c] {
            assert!(allowed(table.admit(&host, &s, p, later)));
        }
    }

    /// A host whose writes fail with a CAS mismatch a given number of times, as if another
    /// worker wrote the slot in between.
    struct Racing {
        inner: MemoryHost,
        mismatches: Cell<usize>,
    }

    impl Host for Racing {
        fn now(&self) -> std::time::SystemTime {
            self.inner.now()
        }
        fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.inner.shared_get(key)
        }
        fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
            if self.mismatches.get() > 0 {
                self.mismatches.set(self.mismatches.get() - 1);
                // The other worker's write: a request from the same client.
                let (current, c) = self.inner.shared_get(key).unwrap_or_default();
                let slot = Slot::decode(&current);
                if let Admission::Allowed { tat, .. } = shape(3).admit(slot.tat, NOW) {
                    let value = Slot {
                        fingerprint: Slot::decode(value).fingerprint,
                        tat,
                    };
                    self.inner.shared_set(key, &value.encode(), Some(c));
                }
                return SharedWrite::CasMismatch;
            }
            self.inner.shared_set(key, value, cas)
        }
        fn verify_signature(
            &self,
            _: crate::policy::HashAlg,
            _: &[u8],
            _: &[u8],
            _: &[u8],
        ) -> crate::policy::NativeVerify {
            crate::policy::NativeVerify::Unavailable
        }
    }

    #[test]
    fn cas_mismatches_are_retried_against_the_fresh_state() {
        let host = Racing {
            inner: MemoryHost::default(),
            mismatches: Cell::new(2),
        };
        let table = SlotTable { slots: 16 };
        table.init(&host.inner);
        let p = table.place("standard", "c");
        // Two concurrent writes land first; ours is the third token of three.
        assert_eq!(
            table.admit(&host, &shape(3), &p, NOW),
            Outcome::Admission(Admission::Allowed {
                tat: NOW + 3 * SECOND,
                remaining: 0,
                full_in_ns: 3 * SECOND
            })
        );
        assert!(!allowed(table.admit(&host, &shape(3), &p, NOW)));

        // Endless contention ends, bounded.
        let host = Racing {
            inner: MemoryHost::default(),
            mismatches: Cell::new(usize::MAX),
        };
        table.init(&host.inner);
        assert_eq!(
            table.admit(&host, &shape(u64::MAX / SECOND), &p, NOW),
            Outcome::Contended
        );
    }
}
