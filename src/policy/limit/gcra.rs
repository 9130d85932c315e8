//! Token-bucket arithmetic, in its GCRA form, over integers (nanoseconds).
//!
//! A bucket holds at most `burst` tokens and gains one every `interval_ns`. Its whole state
//! is one instant, the *theoretical arrival time* (`tat`): the bucket is full when
//! `tat <= now`, and holds `burst - (tat - now) / interval_ns` tokens otherwise. A request
//! takes one token. This is the same token bucket, with an 8-byte state that needs no
//! separate "last update" field, so a shared-data slot stays 16 bytes.

/// A bucket's shape: one token every `interval_ns`, at most `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub interval_ns: u64,
    pub burst: u64,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed {
        /// The state to store.
        tat: u64,
        /// Whole tokens left after this request.
        remaining: u64,
        /// Nanoseconds until the bucket is full again.
        full_in_ns: u64,
    },
    Denied {
        /// Nanoseconds until one token is available.
        retry_in_ns: u64,
        /// Nanoseconds until the bucket is full again.
        full_in_ns: u64,
    },
}

impl Shape {
    /// Admits or denies one request at `now` for a bucket whose state is `tat` (0 = fresh).
    /// Pure and total: saturating arithmetic, no division by zero (interval at least 1 ns).
    pub fn admit(&self, tat: u64, now: u64) -> Admission {
        let interval = self.interval_ns.max(1);
        let base = tat.max(now);
        let next = base.saturating_add(interval);
        let capacity = self.burst.saturating_mul(interval);
        let limit = now.saturating_add(capacity);
        if next <= limit {
            Admission::Allowed {
                tat: next,
                remaining: (limit - next) / interval,
                full_in_ns: next - now,
            }
        } else {
            Admission::Denied {
                retry_in_ns: next - limit,
                full_in_ns: base - now,
            }
        }
    }
}

/// Whole seconds, rounded up.
pub fn ceil_seconds(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    /// A small deterministic generator (xorshift64*), so the property tests are repeatable.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn a_fresh_bucket_admits_exactly_burst_at_once() {
        for (interval, burst) in [(SECOND, 1), (SECOND / 10, 20), (60 * SECOND / 100, 100)] {
            let shape = Shape {
                interval_ns: interval,
                burst,
            };
            let now = 1_700_000_000 * SECOND;
            let mut tat = 0;
            let mut admitted = 0;
            for _ in 0..burst * 3 {
                if let Admission::Allowed { tat: t, .. } = shape.admit(tat, now) {
                    tat = t;
                    admitted += 1;
                }
            }
            assert_eq!(admitted, burst);
        }
    }

    #[test]
    fn remaining_and_retry_after_count_down() {
        let shape = Shape {
            interval_ns: SECOND,
            burst: 3,
        };
        let now = 1000 * SECOND;
        let Admission::Allowed {
            tat,
            remaining,
            full_in_ns,
        } = shape.admit(0, now)
        else {
            panic!("denied")
        };
        assert_eq!((remaining, full_in_ns), (2, SECOND));
        let Admission::Allowed { tat, remaining, .. } = shape.admit(tat, now) else {
            panic!("denied")
        };
        assert_eq!(remaining, 1);
        let Admission::Allowed {
            tat,
            remaining,
            full_in_ns,
        } = shape.admit(tat, now)
        else {
            panic!("denied")
        };
        assert_eq!((remaining, full_in_ns), (0, 3 * SECOND));
        assert_eq!(
            shape.admit(tat, now),
            Admission::Denied {
                retry_in_ns: SECOND,
                full_in_ns: 3 * SECOND
            }
        );
        // Half a second later, half a second to wait.
        assert_eq!(
            shape.admit(tat, now + SECOND / 2),
            Admission::Denied {
                retry_in_ns: SECOND / 2,
                full_in_ns: 5 * SECOND / 2
            }
        );
        // One second later, one token.
        assert!(matches!(
            shape.admit(tat, now + SECOND),
            Admission::Allowed { remaining: 0, .. }
        ));
        assert_eq!(ceil_seconds(1), 1);
        assert_eq!(ceil_seconds(SECOND), 1);
        assert_eq!(ceil_seconds(SECOND + 1), 2);
    }

    #[test]
    fn never_admits_more_than_burst_plus_refill() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..60 {
            let burst = 1 + rng.next() % 50;
            let interval = 1 + rng.next() % (2 * SECOND);
            let shape = Shape {
                interval_ns: interval,
                burst,
            };
            let start = 1_700_000_000 * SECOND;
            let mut now = start;
            let mut tat = 0;
            let mut admitted_at = Vec::new();
            for _ in 0..600 {
                // Bursts of simultaneous requests and gaps of up to two intervals.
                if rng.next().is_multiple_of(3) {
                    now += rng.next() % (2 * interval);
                }
                if let Admission::Allowed { tat: t, .. } = shape.admit(tat, now) {
                    tat = t;
                    admitted_at.push(now);
                }
            }
            // In every window [a, a + w], at most burst + w / interval requests were admitted.
            for (i, &a) in admitted_at.iter().enumerate() {
                for (j, &b) in admitted_at.iter().enumerate().skip(i) {
                    let count = (j - i + 1) as u64;
                    let refill = (b - a) / interval;
                    assert!(
                        count <= burst + refill,
                        "burst {burst} interval {interval}: {count} admitted in {} ns",
                        b - a
                    );
                }
            }
            // And it is a bucket, not a trickle: a client spacing requests by the interval
            // is never refused.
            let mut tat = 0;
            for k in 0..100 {
                let at = now + 10 * SECOND * burst + k * interval;
                match shape.admit(tat, at) {
                    Admission::Allowed { tat: t, .. } => tat = t,
                    Admission::Denied { .. } => panic!("paced request refused"),
                }
            }
        }
    }

    #[test]
    fn extreme_shapes_saturate_instead_of_overflowing() {
        let shape = Shape {
            interval_ns: u64::MAX,
            burst: u64::MAX,
        };
        assert!(matches!(shape.admit(0, 5), Admission::Allowed { .. }));
        let zero = Shape {
            interval_ns: 0,
            burst: 1,
        };
        assert!(matches!(
            zero.admit(u64::MAX, u64::MAX),
            Admission::Denied { .. } | Admission::Allowed { .. }
        ));
    }
}
