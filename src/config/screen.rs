//! `ip` blocks (global and per rule). `threats` is an enum parsed by serde.

use serde::Deserialize;

use super::validate::Range;
use super::{ConfigError, JsonPath};
use crate::policy::screen::{ip::parse_entry, IpRules};

/// Entries per list; a longer list belongs in a network policy.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawIp {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

pub fn compile_ip(raw: &RawIp, at: &JsonPath) -> Result<IpRules, ConfigError> {
    let mut rules = IpRules::default();
    for (key, entries, out) in [
        ("allow", &raw.allow, &mut rules.allow),
        ("deny", &raw.deny, &mut rules.deny),
    ] {
        let at = at.key(key);
        if entries.len() > MAX_ENTRIES {
            return Err(at.error(format!("expected at most {MAX_ENTRIES} entries")));
        }
        for (i, entry) in entries.iter().enumerate() {
            let net = parse_entry(entry).map_err(|message| at.index(i).error(message))?;
            if !out.contains(&net) {
                out.push(net);
            }
        }
    }
    Ok(rules)
}

/// Bounds of `threat_scan_max_bytes`: below a typical request's headers every request on a
/// `block` rule would be refused; above, the largest body Envoy would buffer here.
const MIN_SCAN_BUDGET: u64 = 1024;
const MAX_SCAN_BUDGET: u64 = 64 * 1024 * 1024;

pub fn compile_scan_budget(budget: u64, at: &JsonPath) -> Result<u64, ConfigError> {
    const BUDGET: Range = Range::new(
        MIN_SCAN_BUDGET,
        MAX_SCAN_BUDGET,
        "bytes of screening per request",
    );
    BUDGET.check(budget, at)
}

#[cfg(test)]
mod tests {
    use crate::config::{compile, refusal};

    #[test]
    fn bad_screens_are_refused_with_their_path() {
        let table = [
            (
                r#"{"ip":{"deny":["10.0.0.0/33"]}}"#,
                "ip.deny[0]: expected an IPv4 or IPv6",
            ),
            (
                r#"{"ip":{"allow":["10.0.0.1/8"]}}"#,
                "ip.allow[0]: has bits set",
            ),
            (
                r#"{"ip":{"allow":["10.0.0.0/8","bogus"]}}"#,
                "ip.allow[1]: expected an IPv4",
            ),
            (
                r#"{"ip":{"allow":"10.0.0.0/8"}}"#,
                "ip.allow: expected a sequence",
            ),
            (r#"{"ip":{"block":[]}}"#, "ip.block: unknown field"),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"ip":{"deny":["2001:db8::/129"]}}]}"#,
                "rules[0].ip.deny[0]: expected an IPv4 or IPv6",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"threats":"deny"}]}"#,
                "rules[0].threats: unknown variant `deny`",
            ),
            (
                r#"{"rules":[{"match":{"prefix":"/"},"threats":true}]}"#,
                "rules[0].threats: unexpected value",
            ),
            (
                r#"{"threat_scan_max_bytes":0}"#,
                "threat_scan_max_bytes: expected 1024 to 67108864 bytes",
            ),
            (
                r#"{"threat_scan_max_bytes":1023}"#,
                "threat_scan_max_bytes: expected 1024 to 67108864 bytes",
            ),
            (
                r#"{"threat_scan_max_bytes":67108865}"#,
                "threat_scan_max_bytes: expected 1024 to 67108864 bytes",
            ),
            (
                r#"{"threat_scan_max_bytes":-1}"#,
                "threat_scan_max_bytes: expected u64",
            ),
            (
                r#"{"threat_scan_max_bytes":"1MiB"}"#,
                "threat_scan_max_bytes: expected u64",
            ),
        ];
        for (json, want) in table {
            let got = refusal(json);
            assert!(
                got.starts_with(want),
                "{json}: got {got:?}, want prefix {want:?}"
            );
        }
    }

    #[test]
    fn accepts_screens() {
        let policy = compile(
            br#"{"ip":{"allow":["10.0.0.0/8","2001:db8::/32"],"deny":["10.1.0.0/16"]},
                 "rules":[{"match":{"prefix":"/"},"threats":"block","ip":{"allow":["10.0.0.7"]}}]}"#,
        )
        .unwrap();
        assert_eq!(policy.ip.allow.len(), 2);
        assert_eq!(policy.rules[0].ip.allow.len(), 1);
        assert_eq!(policy.threat_scan_max_bytes, 1024 * 1024);
        let policy = compile(br#"{"threat_scan_max_bytes":4096}"#).unwrap();
        assert_eq!(policy.threat_scan_max_bytes, 4096);
    }
}
