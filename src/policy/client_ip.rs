//! Which address is the client's: the downstream peer, or an entry of X-Forwarded-For
//! counted from the right when trusted proxies stand in front of Envoy (`client_ip`).

use std::net::{IpAddr, SocketAddr};

use super::Request;

/// The most X-Forwarded-For entries a request may carry before api-guard stops reading them.
const MAX_XFF_ENTRIES: usize = 64;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientIpSource {
    /// 0: the downstream peer. N: the Nth X-Forwarded-For address from the right (the one the
    /// outermost trusted proxy appended). Fewer entries than N, or a malformed one there,
    /// falls back to the downstream peer.
    pub xff_trusted_hops: u32,
}

impl ClientIpSource {
    pub fn resolve(&self, request: &Request) -> Option<IpAddr> {
        if self.xff_trusted_hops == 0 {
            return request.client_ip();
        }
        let hops = usize::try_from(self.xff_trusted_hops).unwrap_or(usize::MAX);
        // Several X-Forwarded-For headers are one list, in order (RFC 9110 section 5.3).
        let entries: Vec<&str> = request
            .header_values("x-forwarded-for")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .take(MAX_XFF_ENTRIES + 1)
            .collect();
        if entries.len() > MAX_XFF_ENTRIES || entries.len() < hops {
            return request.client_ip();
        }
        entries
            .len()
            .checked_sub(hops)
            .and_then(|i| entries.get(i))
            .and_then(|entry| parse_address(entry))
            .or_else(|| request.client_ip())
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
pub fn parse_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse::<IpAddr>().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(hops: u32, xff: &[&str]) -> Option<String> {
        let headers: Vec<(String, String)> = xff
            .iter()
            .map(|v| ("x-forwarded-for".to_string(), v.to_string()))
            .collect();
        let request = Request::new(&headers, Some("10.0.0.1:5555"));
        ClientIpSource {
            xff_trusted_hops: hops,
        }
        .resolve(&request)
        .map(|ip| ip.to_string())
    }

    #[test]
    fn trusted_hops_pick_from_the_right() {
        let table: &[(u32, &[&str], &str)] = &[
            (0, &["1.1.1.1"], "10.0.0.1"),
            (1, &["6.6.6.6, 1.1.1.1"], "1.1.1.1"),
            (2, &["6.6.6.6, 1.1.1.1, 2.2.2.2"], "1.1.1.1"),
            (2, &["6.6.6.6, 1.1.1.1", "2.2.2.2"], "1.1.1.1"),
            (1, &["[2001:db8::7]:443"], "2001:db8::7"),
            (1, &["2001:db8::7"], "2001:db8::7"),
            (1, &["1.2.3.4:80"], "1.2.3.4"),
            (3, &["1.1.1.1, 2.2.2.2"], "10.0.0.1"),
            (1, &["1.1.1.1, garbage"], "10.0.0.1"),
            (1, &[], "10.0.0.1"),
        ];
        for (hops, xff, want) in table {
            assert_eq!(
                resolve(*hops, xff).as_deref(),
                Some(*want),
                "hops {hops} xff {xff:?}"
            );
        }
    }

    #[test]
    fn absurdly_long_lists_fall_back_to_the_peer() {
        let long = vec!["9.9.9.9"; 100].join(",");
        assert_eq!(resolve(1, &[&long]).as_deref(), Some("10.0.0.1"));
    }
}
