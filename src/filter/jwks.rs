//! Remote JWKS fetching from the root context: ticks decide (through the core's lease in
//! shared data) whether this worker fetches; answers are handed back to the core.

use std::collections::HashMap;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext};

use super::host::EnvoyHost;
use super::Root;
use crate::policy::auth::jwt::remote;
use crate::policy::auth::jwt::KeySource;
use crate::policy::host::unix_seconds;

/// How often a worker looks at the shared keys and the lease.
const TICK: Duration = Duration::from_millis(500);

/// Calls in flight: token → (provider index, provider name).
#[derive(Default)]
pub struct Fetcher {
    pending: HashMap<u32, (usize, String)>,
}

fn now_ms() -> u64 {
    let now = hostcalls::get_current_time().unwrap_or(std::time::UNIX_EPOCH);
    now.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_else(|_| unix_seconds(now) * 1000)
}

/// After a (re)configuration: load keys other workers already fetched, start ticking.
pub fn on_configure(root: &mut Root) {
    let Some(policy) = root.policy.clone() else {
        return;
    };
    let mut any = false;
    for provider in &policy.jwt_providers {
        if matches!(provider.keys, KeySource::Remote(_)) {
            remote::sync(provider, &EnvoyHost);
            any = true;
        }
    }
    if any {
        root.set_tick_period(TICK);
    }
}

pub fn on_tick(root: &mut Root) {
    let Some(policy) = root.policy.clone() else {
        return;
    };
    let now = now_ms();
    for (index, provider) in policy.jwt_providers.iter().enumerate() {
        let Some(fetch) = remote::tick(provider, &EnvoyHost, now) else {
            continue;
        };
        let headers = vec![
            (":method", "GET"),
            (":path", fetch.path.as_str()),
            (":authority", fetch.authority.as_str()),
            ("accept", "application/json"),
        ];
        match root.dispatch_http_call(
            &fetch.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(fetch.timeout_ms),
        ) {
            Ok(token) => {
                root.jwks.pending.insert(token, (index, provider.name.clone()));
            }
            Err(status) => log::warn!(
                "api-guard: JWKS of provider {}: cannot call cluster {} ({status:?}); keeping the last good keys, retrying",
                provider.name,
                fetch.cluster
            ),
        }
    }
}

pub fn on_response(root: &mut Root, token: u32, body_size: usize) {
    let Some((index, name)) = root.jwks.pending.remove(&token) else {
        return;
    };
    let Some(policy) = root.policy.clone() else {
        return;
    };
    let Some(provider) = policy.jwt_providers.get(index).filter(|p| p.name == name) else {
        return;
    };
    let status = root
        .get_http_call_response_header(":status")
        .and_then(|s| s.parse::<u32>().ok());
    let result = if body_size > remote::MAX_JWKS_BYTES {
        Err("the JWKS is larger than 64 KiB")
    } else {
        let body = root
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        remote::fetched(provider, &EnvoyHost, now_ms(), status, &body)
    };
    match result {
        Ok(count) => log::info!(
            "api-guard: JWKS of provider {} fetched: {count} usable keys",
            provider.name
        ),
        Err(why) => log::warn!(
            "api-guard: JWKS of provider {} not updated: {why}; keeping the last good keys",
            provider.name
        ),
    }
}
