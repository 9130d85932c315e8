//! Client IP allow/deny lists (CIDRs, IPv4 and IPv6) with the ipnet crate. Deny wins.

use std::net::IpAddr;

use ipnet::IpNet;

/// One `ip` block, global or a rule's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRules {
    /// When not empty, the client must be in one of these.
    pub allow: Vec<IpNet>,
    /// The client must be in none of these.
    pub deny: Vec<IpNet>,
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, as dual-stack listeners report IPv4
/// peers) are compared as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl IpRules {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether the client is in a `deny` list. (An unknown client is never asked about: it
    /// is refused before, see `check_ip`.)
    pub fn denies(&self, client: IpAddr) -> bool {
        let ip = canonical(client);
        self.deny.iter().any(|net| net.contains(&ip))
    }

    /// Whether an `allow` list exists and the client is not in it.
    pub fn fails_allow(&self, client: IpAddr) -> bool {
        let ip = canonical(client);
        !self.allow.is_empty() && !self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// Parses a list entry: a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address.
/// Host bits set under the prefix (`10.0.0.1/8`) are refused: they usually hide a typo.
pub fn parse_entry(entry: &str) -> Result<IpNet, &'static str> {
    let entry = entry.trim();
    if let Ok(net) = entry.parse::<IpNet>() {
        if net.trunc() != net {
            return Err(
                "has bits set after the prefix length; write the network address (e.g. 10.0.0.0/8)",
            );
        }
        return Ok(net);
    }
    match entry.parse::<IpAddr>() {
        Ok(ip) => Ok(IpNet::from(canonical(ip))),
        Err(_) => {
            Err("expected an IPv4 or IPv6 address or CIDR, such as 192.0.2.0/24 or 2001:db8::/32")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> IpRules {
        IpRules {
            allow: allow.iter().map(|e| parse_entry(e).unwrap()).collect(),
            deny: deny.iter().map(|e| parse_entry(e).unwrap()).collect(),
        }
    }

    #[test]
    fn parses_entries() {
        for ok in [
            "10.0.0.0/8",
            "192.0.2.7",
            "2001:db8::/32",
            "::1",
            "0.0.0.0/0",
            "::/0",
        ] {
            assert!(parse_entry(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0",
            "",
            "example.com",
            "2001:db8::1/32",
            "10.0.0.0/-1",
        ] {
            assert!(parse_entry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allow_and_deny() {
        let r = rules(&["10.0.0.0/8", "2001:db8::/32"], &["10.6.0.0/16"]);
        let table = [
            ("10.1.2.3", false, false),
            ("10.6.1.1", true, false),
            ("192.0.2.1", false, true),
            ("2001:db8::5", false, false),
            ("2001:db9::5", false, true),
            ("::ffff:10.1.2.3", false, false),
            ("::ffff:10.6.0.1", true, false),
        ];
        for (ip, denied, not_allowed) in table {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(r.denies(ip), denied, "{ip}");
            assert_eq!(r.fails_allow(ip), not_allowed, "{ip}");
        }
        let any: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(!IpRules::default().fails_allow(any));
        assert!(!IpRules::default().denies(any));
    }
}
