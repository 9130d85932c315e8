//! The verified-token cache of one worker and provider: a repeated token costs a SHA-256 and
//! a map lookup instead of a signature check. Bounded, and entries die at the token's `exp`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

/// What a verification established, kept for the token's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Index of the provider that verified it.
    pub provider: usize,
    /// `jwt:<iss>|<sub>`, escaped (see `client_identity`).
    pub client: String,
    pub scopes: Vec<String>,
    /// Claim and payload headers towards the upstream.
    pub upstream_set: Vec<(String, String)>,
    /// `exp` in Unix seconds, if the token has one.
    pub expires: Option<u64>,
}

pub type Digest = [u8; 32];

pub fn digest(token: &str) -> Digest {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<Digest, Arc<Verified>>,
    /// Insertion order, for eviction of the oldest entry when full.
    order: VecDeque<Digest>,
    pub hits: u64,
    pub misses: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            ..TokenCache::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every entry (the provider's keys changed: a removed key must stop working).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// The verification of a token, if cached and its `exp` has not passed.
    pub fn get(&mut self, digest: &Digest, now: u64) -> Option<Arc<Verified>> {
        if self.capacity == 0 {
            return None;
        }
        let live = match self.entries.get(digest) {
            Some(entry) if entry.expires.is_some_and(|exp| now < exp) => Some(Arc::clone(entry)),
            Some(_) => {
                self.entries.remove(digest);
                None
            }
            None => None,
        };
        if live.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        live
    }

    /// Remembers a verification. Tokens without `exp` are not cached.
    pub fn insert(&mut self, digest: Digest, verified: Arc<Verified>, now: u64) {
        if self.capacity == 0 || verified.expires.is_none_or(|exp| now >= exp) {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&digest) {
            self.entries
                .retain(|_, v| v.expires.is_some_and(|exp| now < exp));
            while self.entries.len() >= self.capacity {
                match self.order.pop_front() {
                    Some(old) => {
                        self.entries.remove(&old);
                    }
                    None => break,
                }
            }
        }
        if self.entries.insert(digest, verified).is_none() {
            self.order.push_back(digest);
        }
        if self.order.len() > 2 * self.capacity + 16 {
            let entries = &self.entries;
            self.order.retain(|d| entries.contains_key(d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(expires: Option<u64>) -> Arc<Verified> {
        Arc::new(Verified {
            provider: 0,
            client: "jwt:i|s".into(),
            scopes: vec![],
            upstream_set: vec![],
            expires,
        })
    }

    #[test]
    fn bounded_and_dropped_at_exp() {
        let mut cache = TokenCache::new(2);
        let (a, b, c) = (digest("a"), digest("b"), digest("c"));
        cache.insert(a, entry(Some(100)), 10);
        cache.insert(b, entry(Some(200)), 10);
        assert!(cache.get(&a, 50).is_some());
        cache.insert(c, entry(Some(300)), 10);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&a, 50).is_none(), "oldest evicted");
        assert!(cache.get(&b, 199).is_some());
        assert!(cache.get(&b, 200).is_none(), "dropped at exp");
        assert_eq!(cache.len(), 1);
        cache.insert(a, entry(None), 10);
        assert!(cache.get(&a, 11).is_none(), "no exp: not cached");
        cache.insert(a, entry(Some(5)), 10);
        assert!(cache.get(&a, 11).is_none(), "already expired: not cached");
        for i in 0..1000 {
            cache.insert(digest(&i.to_string()), entry(Some(1000)), 10);
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.order.len() <= 2 * 2 + 16);
        let mut off = TokenCache::new(0);
        off.insert(a, entry(Some(100)), 10);
        assert!(off.get(&a, 11).is_none());
        assert!(off.is_empty());
    }
}
