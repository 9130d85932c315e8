//! Remote JWKS: when to fetch, and what a fetch answer does, over the host's shared store so
//! that one Envoy process fetches once per refresh whatever its number of workers.
//!
//! Two shared keys per provider (their names carry a digest of cluster, authority and path, so
//! that a reconfiguration pointing elsewhere starts afresh):
//! - `<base>.lease` = `"<last attempt ms> <last success ms>"`: a worker fetches only after
//!   winning a compare-and-swap of it, which also rate-limits attempts;
//! - `<base>.keys` = `"<fetched ms>\n<JWKS JSON>"`: the last good JWKS, which every worker loads
//!   (again only when its CAS token changed).
//!
//! Before the first good fetch the provider has no keys (requests get 401 jwks_unavailable);
//! a failed, timed-out or garbage fetch never replaces good keys.

use sha2::{Digest as _, Sha256};

use super::keys::{KeySet, Strictness};
use super::{KeySource, Provider, RemoteJwks};
use crate::policy::{Host, SharedWrite};

/// A failed fetch is retried after this long.
pub const RETRY_MS: u64 = 2_000;
/// Unknown kids trigger an early refetch at most this often (per process).
pub const EARLY_REFETCH_MS: u64 = 5_000;
/// JWKS documents larger than this are refused.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// A fetch the shell must dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
}

fn base_key(provider: &Provider, remote: &RemoteJwks) -> String {
    let digest = Sha256::digest(
        format!("{}\n{}\n{}", remote.cluster, remote.authority, remote.path).as_bytes(),
    );
    let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("api_guard.jwks.{}.{}", provider.name, tag)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Lease {
    attempt_ms: u64,
    success_ms: u64,
}

impl Lease {
    fn decode(bytes: &[u8]) -> Lease {
        let text = std::str::from_utf8(bytes).unwrap_or("");
        let mut parts = text.split(' ').map(|p| p.parse::<u64>().unwrap_or(0));
        Lease {
            attempt_ms: parts.next().unwrap_or(0),
            success_ms: parts.next().unwrap_or(0),
        }
    }

    fn encode(self) -> String {
        format!("{} {}", self.attempt_ms, self.success_ms)
    }
}

fn remote(provider: &Provider) -> Option<&RemoteJwks> {
    match &provider.keys {
        KeySource::Remote(remote) => Some(remote),
        KeySource::Local(_) => None,
    }
}

/// Loads the shared key set into this worker if it changed since the last load.
pub fn sync(provider: &Provider, host: &dyn Host) {
    let Some(remote) = remote(provider) else {
        return;
    };
    let key = format!("{}.keys", base_key(provider, remote));
    let Some((value, cas)) = host.shared_get(&key) else {
        return;
    };
    if provider.state.loaded_cas() == Some(cas) {
        return;
    }
    provider.state.set_loaded_cas(cas);
    let jwks = value
        .iter()
        .position(|b| *b == b'\n')
        .and_then(|at| value.get(at + 1..))
        .unwrap_or(&[]);
    if let Ok(set) = KeySet::from_json(jwks, Strictness::Lenient) {
        provider.state.install_remote_keys(set);
    }
}

/// Called on every tick of a worker: loads new shared keys, then says whether this worker
/// must fetch now (it then holds the lease).
pub fn tick(provider: &Provider, host: &dyn Host, now_ms: u64) -> Option<Fetch> {
    let remote = remote(provider)?;
    sync(provider, host);
    let lease_key = format!("{}.lease", base_key(provider, remote));
    let (lease, cas) = match host.shared_get(&lease_key) {
        Some((value, cas)) => (Lease::decode(&value), cas),
        None => {
            // Create it (a race between workers here writes the same value twice), then
            // compete for it by CAS below.
            host.shared_set(&lease_key, Lease::default().encode().as_bytes(), None);
            let (value, cas) = host.shared_get(&lease_key)?;
            (Lease::decode(&value), cas)
        }
    };
    let since_attempt = now_ms.saturating_sub(lease.attempt_ms);
    // An attempt in flight holds the lease until its timeout has passed.
    let busy = since_attempt < RETRY_MS.max(remote.timeout_ms + 500);
    let have_keys = lease.success_ms > 0;
    let stale = now_ms.saturating_sub(lease.success_ms) >= remote.refresh_seconds * 1000;
    let early = provider
        .state
        .unknown_kid
        .swap(false, std::sync::atomic::Ordering::Relaxed)
        && since_attempt >= EARLY_REFETCH_MS;
    let due = !busy && (!have_keys || stale || early);
    if !due {
        return None;
    }
    let claimed = Lease {
        attempt_ms: now_ms,
        success_ms: lease.success_ms,
    };
    match host.shared_set(&lease_key, claimed.encode().as_bytes(), Some(cas)) {
        SharedWrite::Written => Some(Fetch {
            cluster: remote.cluster.clone(),
            authority: remote.authority.clone(),
            path: remote.path.clone(),
            timeout_ms: remote.timeout_ms,
        }),
        SharedWrite::CasMismatch | SharedWrite::Failed => None,
    }
}

/// Why a fetch answer was not used.
pub type FetchError = &'static str;

/// The answer to a fetch this worker dispatched: `status` None when the call failed or timed
/// out. A good JWKS is published to every worker; anything else keeps the last good keys.
pub fn fetched(
    provider: &Provider,
    host: &dyn Host,
    now_ms: u64,
    status: Option<u32>,
    body: &[u8],
) -> Result<usize, FetchError> {
    let remote = remote(provider).ok_or("not a remote provider")?;
    match status {
        None => return Err("no answer (connection failure or timeout)"),
        Some(200) => {}
        Some(_) => return Err("answer status is not 200"),
    }
    if body.len() > MAX_JWKS_BYTES {
        return Err("the JWKS is larger than 64 KiB");
    }
    let set = KeySet::from_json(body, Strictness::Lenient)
        .map_err(|_| "the answer is not a JWKS with a usable key")?;
    let count = set.keys.len();
    let base = base_key(provider, remote);
    let mut document = format!("{now_ms}\n").into_bytes();
    document.extend_from_slice(body);
    host.shared_set(&format!("{base}.keys"), &document, None);
    let lease_key = format!("{base}.lease");
    for _ in 0..8 {
        let (lease, cas) = match host.shared_get(&lease_key) {
            Some((value, cas)) => (Lease::decode(&value), Some(cas)),
            None => (Lease::default(), None),
        };
        let done = Lease {
            attempt_ms: lease.attempt_ms,
            success_ms: now_ms,
        };
        if host.shared_set(&lease_key, done.encode().as_bytes(), cas) != SharedWrite::CasMismatch {
            break;
        }
    }
    provider.state.install_remote_keys(set);
    sync(provider, host);
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile;
    use crate::policy::testing::MemoryHost;
    use crate::policy::Policy;
    use serde_json::json;

    fn policy(refresh: u64) -> Policy {
        let config = json!({"jwt_providers": {"corp": {
            "remote_jwks": {"cluster": "idp", "path": "/jwks", "refresh_seconds": refresh, "timeout_ms": 1000}
        }}});
        compile(config.to_string().as_bytes()).unwrap()
    }

    const JWKS: &str = include_str!("../../../../tests/data/jwt/jwks.json");

    #[test]
    fn one_worker_fetches_and_every_worker_loads_the_keys() {
        let host = MemoryHost::at(0);
        // Two workers: two policies (each VM compiles its own), one shared store.
        let (a, b) = (policy(60), policy(60));
        let (pa, pb) = (&a.jwt_providers[0], &b.jwt_providers[0]);
        let t = 1_000_000;
        let fetch = tick(pa, &host, t).expect("a fetches first");
        assert_eq!(fetch.cluster, "idp");
        assert_eq!(fetch.authority, "idp");
        assert_eq!(tick(pb, &host, t + 10), None, "b sees the lease");
        assert!(pb.state.remote_keys().is_none());
        assert_eq!(
            fetched(pa, &host, t + 50, Some(200), JWKS.as_bytes()),
            Ok(7)
        );
        assert_eq!(tick(pb, &host, t + 500), None);
        assert!(pb.state.remote_keys().is_some(), "b loaded the shared keys");
        // Nothing to do until the refresh is due; then exactly one of them fetches.
        assert_eq!(tick(pa, &host, t + 30_000), None);
        let due = t + 60_100;
        let first = tick(pb, &host, due);
        let second = tick(pa, &host, due);
        assert!(first.is_some() && second.is_none());
    }

    #[test]
    fn failures_keep_the_last_good_keys_and_retry() {
        let host = MemoryHost::at(0);
        let p = policy(60);
        let p = &p.jwt_providers[0];
        let t = 1_000_000;
        assert!(tick(p, &host, t).is_some());
        assert!(fetched(p, &host, t, None, b"").is_err());
        assert!(p.state.remote_keys().is_none(), "still failing closed");
        assert!(
            tick(p, &host, t + 1000).is_none(),
            "busy until the timeout has passed"
        );
        assert!(tick(p, &host, t + RETRY_MS).is_some(), "retried");
        assert!(fetched(p, &host, t + RETRY_MS, Some(200), JWKS.as_bytes()).is_ok());
        let good = p.state.remote_keys();
        for (status, body) in [
            (Some(200), b"<html>oops</html>".to_vec()),
            (Some(200), br#"{"keys": []}"#.to_vec()),
            (
                Some(200),
                br#"{"keys": [{"kty": "RSA", "use": "enc"}]}"#.to_vec(),
            ),
            (Some(200), vec![b' '; MAX_JWKS_BYTES + 1]),
            (Some(503), JWKS.as_bytes().to_vec()),
            (None, vec![]),
        ] {
            assert!(fetched(p, &host, t + 5000, status, &body).is_err());
            assert_eq!(p.state.remote_keys(), good);
        }
        let many = json!({"keys": vec![serde_json::from_str::<serde_json::Value>(JWKS).unwrap()["keys"][0].clone(); 65]});
        assert!(fetched(p, &host, t + 5000, Some(200), many.to_string().as_bytes()).is_err());
    }

    #[test]
    fn unknown_kids_refetch_early_at_most_every_few_seconds() {
        let host = MemoryHost::at(0);
        let p = policy(3600);
        let p = &p.jwt_providers[0];
        let t = 1_000_000;
        assert!(tick(p, &host, t).is_some());
        fetched(p, &host, t, Some(200), JWKS.as_bytes()).unwrap();
        let mut fetches = 0;
        // A flood of unknown kids for 20 s, ticking every 100 ms.
        for step in 1..=200 {
            p.state
                .unknown_kid
                .store(true, std::sync::atomic::Ordering::Relaxed);
            if tick(p, &host, t + step * 100).is_some() {
                fetches += 1;
                fetched(p, &host, t + step * 100, Some(200), JWKS.as_bytes()).unwrap();
            }
        }
        assert_eq!(fetches, 4, "one early fetch per {EARLY_REFETCH_MS} ms");
        // Without unknown kids: nothing until the refresh.
        assert!(tick(p, &host, t + 30_000).is_none());
    }
}
