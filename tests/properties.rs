//! Property tests of the core's invariants (native, no Envoy): the token bucket never admits
//! more than burst plus refill, a stricter policy never allows what a laxer one denies, dry run
//! never blocks, and client-IP resolution always lands on an address the request carried.

use api_guard::policy::limit::gcra::{Admission, Shape};
use api_guard::policy::testing::MemoryHost;
use api_guard::policy::{Policy, Request};
use proptest::prelude::*;

const SECOND: u64 = 1_000_000_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// In every window of admitted requests, at most burst + elapsed / interval got through.
    #[test]
    fn bucket_never_admits_more_than_burst_plus_refill(
        burst in 1u64..64,
        interval in 1u64..(3 * SECOND),
        gaps in proptest::collection::vec(0u64..(4 * SECOND), 1..300),
    ) {
        let shape = Shape { interval_ns: interval, burst };
        let mut now = 1_800_000_000 * SECOND;
        let mut tat = 0;
        let mut admitted = Vec::new();
        for gap in gaps {
            now += gap;
            if let Admission::Allowed { tat: next, remaining, .. } = shape.admit(tat, now) {
                prop_assert!(remaining < burst);
                tat = next;
                admitted.push(now);
            }
        }
        for (i, &a) in admitted.iter().enumerate() {
            for (j, &b) in admitted.iter().enumerate().skip(i) {
                prop_assert!((j - i + 1) as u64 <= burst + (b - a) / interval);
            }
        }
    }

    /// A full bucket always admits, and a denial always says when to come back.
    #[test]
    fn denials_name_a_retry_time(burst in 1u64..16, interval in 1u64..SECOND, n in 1usize..64) {
        let shape = Shape { interval_ns: interval, burst };
        let now = 1_800_000_000 * SECOND;
        let mut tat = 0;
        for k in 0..n {
            match shape.admit(tat, now) {
                Admission::Allowed { tat: t, .. } => { prop_assert!((k as u64) < burst); tat = t; }
                Admission::Denied { retry_in_ns, .. } => {
                    prop_assert!((k as u64) >= burst);
                    prop_assert!(retry_in_ns > 0 && retry_in_ns <= interval);
                }
            }
        }
    }
}

fn compile(json: &str) -> Policy {
    api_guard::config::compile(json.as_bytes()).unwrap()
}

/// Requests made of parts an attacker controls.
fn request_parts() -> impl Strategy<Value = Vec<(String, String)>> {
    let method = prop_oneof![Just("GET"), Just("POST"), Just("OPTIONS"), Just("DELETE")];
    let path = prop_oneof![
        Just("/"),
        Just("/api/orders"),
        Just("/api/orders/7?x=1"),
        Just("/admin"),
        Just("/api"),
        Just("/api/../admin"),
        Just("//api/orders")
    ];
    let proto = prop_oneof![
        Just(None),
        Just(Some("http")),
        Just(Some("https")),
        Just(Some("HTTPS "))
    ];
    let key = prop_oneof![Just(None), Just(Some("k-valid")), Just(Some("k-wrong"))];
    let xff = prop_oneof![
        Just(None),
        Just(Some("1.2.3.4")),
        Just(Some("garbage, 5.6.7.8"))
    ];
    (method, path, proto, key, xff).prop_map(|(m, p, proto, key, xff)| {
        let mut h = vec![
            (":method".to_string(), m.to_string()),
            (":path".to_string(), p.to_string()),
            (":authority".to_string(), "api.test".to_string()),
        ];
        if let Some(v) = proto {
            h.push(("x-forwarded-proto".into(), v.into()));
        }
        if let Some(v) = key {
            h.push(("x-api-key".into(), v.into()));
        }
        if let Some(v) = xff {
            h.push(("x-forwarded-for".into(), v.into()));
        }
        h
    })
}

/// SHA-256 of "k-valid".
fn key_digest() -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(b"k-valid")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn lax() -> String {
    format!(
        r#"{{"api_keys":{{"clients":[{{"id":"c","sha256":"{}"}}]}},
        "rules":[{{"name":"orders","match":{{"prefix":"/api/orders"}}}}]}}"#,
        key_digest()
    )
}

/// The lax policy with each kind of extra demand.
fn stricter() -> Vec<String> {
    let d = key_digest();
    vec![
        format!(
            r#"{{"api_keys":{{"clients":[{{"id":"c","sha256":"{d}"}}]}},"headers":{{"require_https":true}},
            "rules":[{{"name":"orders","match":{{"prefix":"/api/orders"}}}}]}}"#
        ),
        format!(
            r#"{{"api_keys":{{"clients":[{{"id":"c","sha256":"{d}"}}]}},
            "rules":[{{"name":"orders","match":{{"prefix":"/api/orders"}},"auth":["api_key"]}}]}}"#
        ),
        format!(
            r#"{{"api_keys":{{"clients":[{{"id":"c","sha256":"{d}","scopes":["a"]}}]}},
            "rules":[{{"name":"orders","match":{{"prefix":"/api/orders"}},"auth":["api_key"],"scopes":["a","b"]}}]}}"#
        ),
        format!(
            r#"{{"api_keys":{{"clients":[{{"id":"c","sha256":"{d}"}}]}},"headers":{{"require_https":"redirect"}},
            "rules":[{{"name":"orders","match":{{"prefix":"/api/orders"}},"auth":["api_key"]}}]}}"#
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Adding a demand never turns a denial into an allow, and dry run never blocks.
    #[test]
    fn a_stricter_policy_never_allows_what_a_laxer_one_denies(headers in request_parts(), peer in 0u8..255) {
        let peer = format!("198.51.100.{peer}:4000");
        let request = Request::new(&headers, Some(&peer));
        let host = MemoryHost::default();
        let lax_allows = compile(&lax()).evaluate(&request, &host).enforced_denial().is_none();
        for strict in stricter() {
            let strict_decision = compile(&strict).evaluate(&request, &host);
            if strict_decision.enforced_denial().is_none() {
                prop_assert!(lax_allows, "{strict} allows what {} denies", lax());
            }
            let dry = strict.replacen('{', r#"{"mode":"dry_run","#, 1);
            let dry_decision = compile(&dry).evaluate(&request, &host);
            prop_assert!(dry_decision.enforced_denial().is_none());
            prop_assert_eq!(dry_decision.reason_code(), strict_decision.reason_code());
        }
    }

    /// The client address is always one the request carried: the peer or an XFF entry.
    #[test]
    fn client_ip_comes_from_the_request(
        hops in 0u32..5,
        entries in proptest::collection::vec((0u8..4, any::<[u8; 4]>()), 0..6),
    ) {
        let xff: Vec<String> = entries.iter().map(|(kind, o)| match kind {
            0 => format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]),
            1 => format!("{}.{}.{}.{}:{}", o[0], o[1], o[2], o[3], o[0]),
            2 => format!("[2001:db8::{:x}]", o[0]),
            _ => "not-an-ip".to_string(),
        }).collect();
        let headers = vec![("x-forwarded-for".to_string(), xff.join(", "))];
        let request = Request::new(&headers, Some("192.0.2.9:1"));
        let source = api_guard::policy::ClientIpSource { xff_trusted_hops: hops };
        let resolved = source.resolve(&request).map(|ip| ip.to_string());
        if hops == 0 {
            prop_assert_eq!(resolved.as_deref(), Some("192.0.2.9"));
        } else {
            // The trusted entry or nothing (unknown): never the peer, never another entry.
            let trusted = xff.len().checked_sub(hops as usize).and_then(|i| xff.get(i));
            match (&resolved, trusted) {
                (Some(ip), Some(entry)) => prop_assert!(
                    entry.contains(ip.as_str()) || entry.trim_matches(['[', ']']) == ip,
                    "{ip} from {xff:?}"
                ),
                (Some(ip), None) => prop_assert!(false, "{ip} from {xff:?}"),
                (None, Some(entry)) => prop_assert_eq!(entry.as_str(), "not-an-ip"),
                (None, None) => {}
            }
        }
    }
}

/// Reference containment, by masking.
fn v4_contains(net: u32, prefix: u32, ip: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (ip & mask) == (net & mask)
}

fn v6_contains(net: u128, prefix: u32, ip: u128) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (ip & mask) == (net & mask)
}

fn denied(config: &str, peer: &str) -> bool {
    let headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), "/".to_string()),
    ];
    let request = Request::new(&headers, Some(peer));
    compile(config)
        .evaluate(&request, &MemoryHost::default())
        .reason_code()
        == "ip_denied"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// IPv4 deny lists agree with masking arithmetic, for every prefix length, and an
    /// allow list is exactly its complement.
    #[test]
    fn cidr_v4_matching_agrees_with_a_reference(net in any::<u32>(), prefix in 0u32..=32, ip in any::<u32>(), near in any::<bool>()) {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        let net = net & mask;
        // Half the time, an address inside or right next to the network.
        let ip = if near { net ^ (ip & 0x1ff) } else { ip };
        let cidr = format!("{}/{prefix}", std::net::Ipv4Addr::from(net));
        let peer = format!("{}:1", std::net::Ipv4Addr::from(ip));
        let want = v4_contains(net, prefix, ip);
        prop_assert_eq!(denied(&format!(r#"{{"ip":{{"deny":["{cidr}"]}}}}"#), &peer), want, "{} in {}", peer, cidr);
        prop_assert_eq!(denied(&format!(r#"{{"ip":{{"allow":["{cidr}"]}}}}"#), &peer), !want, "{} outside {}", peer, cidr);
    }

    #[test]
    fn cidr_v6_matching_agrees_with_a_reference(net in any::<u128>(), prefix in 0u32..=128, ip in any::<u128>(), near in any::<bool>()) {
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        let net = net & mask;
        let ip = if near { net ^ (ip & 0x1ffff) } else { ip };
        let net_addr = std::net::Ipv6Addr::from(net);
        let ip_addr = std::net::Ipv6Addr::from(ip);
        // IPv4-mapped addresses are compared as IPv4 by design: leave them to the v4 property.
        prop_assume!(net_addr.to_ipv4_mapped().is_none() && ip_addr.to_ipv4_mapped().is_none());
        let cidr = format!("{net_addr}/{prefix}");
        let peer = format!("[{ip_addr}]:1");
        let want = v6_contains(net, prefix, ip);
        prop_assert_eq!(denied(&format!(r#"{{"ip":{{"deny":["{cidr}"]}}}}"#), &peer), want, "{} in {}", peer, cidr);
    }
}

/// Any JSON document, with numbers of every kind serde_json keeps apart and strings with
/// escapes and non-ASCII.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        "[ -~é😀\"\\\\\n\t\u{1}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z\"\\\\é]{0,6}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The body stage's one-pass parser reads every document exactly as serde_json does,
    /// compact or pretty-printed, and the structure check alone accepts it too.
    #[test]
    fn the_body_parser_agrees_with_serde_json(value in json_value(), pretty in any::<bool>()) {
        use api_guard::policy::body::json;
        let text = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            serde_json::to_string(&value).unwrap()
        };
        let parsed = json::parse(text.as_bytes(), 16, &mut |_| {}).unwrap();
        prop_assert_eq!(&parsed, &value);
        let theirs: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(parsed.to_string(), theirs.to_string());
        let checked = json::check(text.as_bytes(), 16, &mut |_| {});
        prop_assert_eq!(checked, Ok(()));
    }
}
