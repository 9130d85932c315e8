//! Which address is the client's: the downstream peer, or an entry of X-Forwarded-For
//! counted from the right when trusted proxies stand in front of Envoy (`client_ip`).
//!
//! When that address cannot be known (the entry at the trusted position is missing, empty or
//! not an address; the peer is not an IP), the answer is `None`, never another address: the
//! stages that need the address refuse such a request (`client_ip_unknown`).

use std::net::{IpAddr, SocketAddr};

use super::{Denial, Reason, Request};

/// The longest entry that can be an address: `[` + a full IPv6 with an embedded IPv4 + `]:65535`
/// is 54 bytes; anything longer is not parsed at all.
const MAX_ADDRESS_BYTES: usize = 64;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientIpSource {
    /// 0: the downstream peer. N: the Nth X-Forwarded-For entry from the right (the one the
    /// outermost trusted proxy appended). Fewer entries than N, or an entry there that is not
    /// an address, leaves the client address unknown.
    pub xff_trusted_hops: u32,
}

impl ClientIpSource {
    /// The client address, or `None` when it cannot be known (fail closed: see the module).
    pub fn resolve(&self, request: &Request) -> Option<IpAddr> {
        if self.xff_trusted_hops == 0 {
            return request.client_ip();
        }
        let hops = usize::try_from(self.xff_trusted_hops).ok()?;
        // Several X-Forwarded-For headers are one list, in order (RFC 9110 section 5.3): read
        // the last header first, each from its right end.
        let values_last_first = request
            .headers()
            .iter()
            .rev()
            .filter(|(name, _)| name == "x-forwarded-for")
            .map(|(_, value)| value.as_str());
        nth_from_right(values_last_first, hops).and_then(parse_address)
    }
}

/// The `n`th X-Forwarded-For entry (1 = rightmost) of the header values given last first,
/// without its surrounding whitespace. Only the last `n` entries are looked at, so what the
/// client wrote to their left never matters. An empty entry (`a,,b`, an empty header) counts
/// as an entry: skipping it would let a proxy's empty entry shift a client-written one into
/// the trusted position; at position `n` it is simply not an address.
pub fn nth_from_right<'a>(
    values_last_first: impl Iterator<Item = &'a str>,
    n: usize,
) -> Option<&'a str> {
    let index = n.checked_sub(1)?;
    values_last_first
        .flat_map(|value| value.rsplit(','))
        .nth(index)
        .map(|entry| entry.trim_matches([' ', '\t']))
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
pub fn parse_address(entry: &str) -> Option<IpAddr> {
    if entry.len() > MAX_ADDRESS_BYTES {
        return None;
    }
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

/// The answer to a request whose client address is needed (an IP list, an address-keyed
/// rate limit) but cannot be known.
pub fn unknown_client() -> Denial {
    Denial::new(Reason::ClientIpUnknown)
        .with_detail("the client address could not be determined, so the request was refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_from(hops: u32, xff: &[&str], peer: Option<&str>) -> Option<String> {
        let headers: Vec<(String, String)> = xff
            .iter()
            .map(|v| ("x-forwarded-for".to_string(), v.to_string()))
            .collect();
        let request = Request::new(&headers, peer);
        ClientIpSource {
            xff_trusted_hops: hops,
        }
        .resolve(&request)
        .map(|ip| ip.to_string())
    }

    fn resolve(hops: u32, xff: &[&str]) -> Option<String> {
        resolve_from(hops, xff, Some("10.0.0.1:5555"))
    }

    #[test]
    fn trusted_hops_pick_from_the_right() {
        let table: &[(u32, &[&str], &str)] = &[
            (0, &["1.1.1.1"], "10.0.0.1"),
            (1, &["6.6.6.6, 1.1.1.1"], "1.1.1.1"),
            (2, &["6.6.6.6, 1.1.1.1, 2.2.2.2"], "1.1.1.1"),
            (2, &["6.6.6.6, 1.1.1.1", "2.2.2.2"], "1.1.1.1"),
            (2, &["6.6.6.6", "1.1.1.1", "2.2.2.2"], "1.1.1.1"),
            (1, &["[2001:db8::7]:443"], "2001:db8::7"),
            (1, &["[2001:db8::7]"], "2001:db8::7"),
            (1, &["2001:db8::7"], "2001:db8::7"),
            (1, &["1.2.3.4:80"], "1.2.3.4"),
            (1, &["\t1.2.3.4 "], "1.2.3.4"),
            (1, &["garbage,1.2.3.4"], "1.2.3.4"),
            // An empty entry left of the trusted position does not matter.
            (2, &["6.6.6.6,, 1.1.1.1, 2.2.2.2"], "1.1.1.1"),
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
    fn an_unusable_trusted_entry_leaves_the_client_unknown() {
        let table: &[(u32, &[&str])] = &[
            (3, &["1.1.1.1, 2.2.2.2"]),
            (1, &["1.1.1.1, garbage"]),
            (1, &[]),
            (1, &[""]),
            (1, &["1.1.1.1,"]),
            (1, &["1.1.1.1", ""]),
            // An empty entry counts: the client's 1.1.1.1 is not shifted into place.
            (2, &["1.1.1.1,, 2.2.2.2"]),
            (1, &["1.1.1.1 2.2.2.2"]),
            (1, &["01.1.1.1"]),
            (1, &["unknown"]),
            (1, &["[1.1.1.1]:80:80"]),
            (1, &["fe80::1%eth0"]),
        ];
        for (hops, xff) in table {
            assert_eq!(resolve(*hops, xff), None, "hops {hops} xff {xff:?}");
        }
    }

    #[test]
    fn the_length_of_the_list_does_not_matter() {
        for left in [0, 1, 63, 64, 65, 1000, 100_000] {
            let mut xff = vec!["9.9.9.9"; left].join(",");
            if !xff.is_empty() {
                xff.push(',');
            }
            xff.push_str("192.0.2.7, 10.0.0.2");
            assert_eq!(resolve(2, &[&xff]).as_deref(), Some("192.0.2.7"), "{left}");
        }
    }

    #[test]
    fn a_peer_that_is_not_an_ip_is_unknown() {
        for peer in [
            None,
            Some("/var/run/envoy.sock"),
            Some("@abstract"),
            Some(""),
        ] {
            assert_eq!(resolve_from(0, &["1.1.1.1"], peer), None, "{peer:?}");
        }
        // With trusted hops, the peer is never consulted.
        assert_eq!(
            resolve_from(1, &["1.1.1.1"], None).as_deref(),
            Some("1.1.1.1")
        );
    }

    #[test]
    fn long_entries_are_not_parsed() {
        let long = format!("{}1.1.1.1", " ".repeat(100));
        assert_eq!(parse_address(&long), None);
        assert!(parse_address("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535").is_some());
    }
}
