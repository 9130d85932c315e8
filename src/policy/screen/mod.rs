//! Stage 2: screening. The client IP against the global and the rule's allow/deny lists
//! (deny wins), then threats in the path, query and scanned headers (bodies: stage 5).

pub mod ip;
pub mod threats;

pub use ip::IpRules;
pub use threats::ThreatMode;

use std::net::IpAddr;

use super::{Decision, Denial, Reason, Request, Rule};

fn ip_denied() -> Denial {
    Denial::new(Reason::IpDenied).with_detail("requests from this address are not allowed")
}

/// The IP screen: any deny list that holds the client denies; then every allow list that
/// exists must hold it. An unknown client (`client_ip`) is refused by any list, a deny list
/// included: it could be in it.
pub fn check_ip(
    global: &IpRules,
    rule: Option<&IpRules>,
    client: Option<IpAddr>,
) -> Result<(), Denial> {
    let lists = [Some(global), rule];
    let Some(client) = client else {
        if lists.iter().flatten().all(|l| l.is_empty()) {
            return Ok(());
        }
        return Err(crate::policy::client_ip::unknown_client());
    };
    if lists.iter().flatten().any(|l| l.denies(client)) {
        return Err(ip_denied());
    }
    if lists.iter().flatten().any(|l| l.fails_allow(client)) {
        return Err(ip_denied());
    }
    Ok(())
}

fn threat_denial(reason: Reason) -> Denial {
    let detail = if reason == Reason::ThreatScanLimit {
        "the request is too large to screen for threats"
    } else {
        "the request looks like an attack and was refused"
    };
    Denial::new(reason).with_detail(detail)
}

/// Applies a rule's threat mode to a detection: `Err` in block mode, a note in log mode.
pub fn apply_threat(
    mode: ThreatMode,
    found: Option<Reason>,
    decision: &mut Decision,
) -> Result<(), Denial> {
    match (mode, found) {
        (ThreatMode::Block, Some(reason)) => Err(threat_denial(reason)),
        (ThreatMode::Log, Some(reason)) => {
            decision.logged.push(reason);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Threats in the request line and headers, as the rule's `threats` says, within `budget`
/// bytes of screening (what is left goes to the body stage). Under `block`, a body that
/// could not be screened is refused from the headers.
pub fn check_threats(
    rule: &Rule,
    request: &Request,
    budget: u64,
    decision: &mut Decision,
) -> Result<(), Denial> {
    if rule.threats == ThreatMode::Off {
        return Ok(());
    }
    if rule.threats == ThreatMode::Block {
        check_screenable_body(request)?;
    }
    let mut scanner = threats::Scanner::new(budget);
    let found = scanner.scan_request(request);
    decision.threat_scan_used = scanner.used();
    apply_threat(rule.threats, found, decision)
}

/// A body under `threats: block` must be one api-guard can screen: not compressed (it does
/// not decompress: RFC 9110 section 15.5.16 answers 415 for an unsupported coding), and with
/// one media type (api-guard and the upstream could read different ones).
fn check_screenable_body(request: &Request) -> Result<(), Denial> {
    if !request.body_expected() {
        return Ok(());
    }
    if request.header_values("content-type").nth(1).is_some() {
        return Err(Denial::new(Reason::MediaType)
            .with_detail("the request declares more than one media type"));
    }
    if super::body::is_compressed(request) {
        return Err(Denial::new(Reason::MediaType)
            .with_detail("compressed request bodies are not accepted here"));
    }
    Ok(())
}

/// The log line of a detection in log mode (never the matched input).
pub fn logged_line(decision: &Decision, reason: Reason, method: &str, path: &str) -> String {
    let path = crate::policy::http::logged_path(path);
    serde_json::json!({
        "api_guard": "detection",
        "action": "log",
        "reason": reason.code(),
        "rule": decision.rule.as_deref().unwrap_or("-"),
        "client": decision.client.as_deref().unwrap_or("-"),
        "method": method,
        "path": path,
    })
    .to_string()
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use crate::config::compile;
    use crate::policy::testing::MemoryHost;
    use crate::policy::{Decision, Request, Verdict};

    fn decide(config: &str, pairs: &[(&str, &str)], peer: &str) -> Decision {
        let policy = compile(config.as_bytes()).unwrap();
        let h = crate::policy::testing::headers(pairs);
        policy.evaluate(&Request::new(&h, Some(peer)), &MemoryHost::default())
    }

    #[test]
    fn ip_lists_in_the_pipeline() {
        let config = r#"{"client_ip":{"xff_trusted_hops":1},
            "ip":{"deny":["192.0.2.0/24"]},
            "rules":[{"name":"admin","match":{"prefix":"/admin"},
                      "ip":{"allow":["10.0.0.0/8"],"deny":["10.9.0.0/16"]}}]}"#;
        let table: &[(&str, &str, &str)] = &[
            ("/x", "203.0.113.1", "-"),
            ("/x", "192.0.2.1", "ip_denied"),
            ("/admin", "10.1.0.1", "-"),
            ("/admin", "10.9.0.1", "ip_denied"),
            ("/admin", "203.0.113.1", "ip_denied"),
            ("/admin", "6.6.6.6, 10.1.0.1", "-"),
            ("/admin", "10.1.0.1, 6.6.6.6", "ip_denied"),
            // The trusted entry is not an address: unknown, refused by a deny list too.
            ("/x", "192.0.2.1, unknown", "client_ip_unknown"),
            ("/x", "", "client_ip_unknown"),
            ("/admin", "10.1.0.1,", "client_ip_unknown"),
        ];
        for (path, xff, want) in table {
            let d = decide(
                config,
                &[
                    (":method", "GET"),
                    (":path", path),
                    ("x-forwarded-for", xff),
                ],
                "127.0.0.1:1",
            );
            assert_eq!(d.reason_code(), *want, "{path} {xff}");
        }
        // More entries than any cap: still the rightmost one, denied.
        let long = format!("{}192.0.2.1", "1,".repeat(100));
        let d = decide(
            config,
            &[
                (":method", "GET"),
                (":path", "/x"),
                ("x-forwarded-for", &long),
            ],
            "127.0.0.1:1",
        );
        assert_eq!(d.reason_code(), "ip_denied");
        // No X-Forwarded-For at all: unknown (not the peer, the trusted proxy).
        let d = decide(
            config,
            &[(":method", "GET"), (":path", "/x")],
            "127.0.0.1:1",
        );
        assert_eq!(d.reason_code(), "client_ip_unknown");
        assert_eq!(d.enforced_denial().map(|x| x.status), Some(403));
    }

    #[test]
    fn a_peer_that_is_not_an_ip_is_refused_only_where_an_address_is_needed() {
        let policy = compile(br#"{"ip":{"deny":["192.0.2.0/24"]}}"#).unwrap();
        let h: Vec<(String, String)> = vec![
            (":method".into(), "GET".into()),
            (":path".into(), "/".into()),
        ];
        let unix = Request::new(&h, Some("/run/envoy.sock"));
        let d = policy.evaluate(&unix, &MemoryHost::default());
        assert_eq!(d.reason_code(), "client_ip_unknown");
        let open = compile(b"{}").unwrap();
        assert_eq!(
            open.evaluate(&unix, &MemoryHost::default()).verdict,
            Verdict::Allow
        );
    }

    #[test]
    fn threat_modes_in_the_pipeline() {
        let config = r#"{"rules":[
            {"name":"b","match":{"prefix":"/b"},"threats":"block"},
            {"name":"l","match":{"prefix":"/l"}},
            {"name":"o","match":{"prefix":"/o"},"threats":"off"}]}"#;
        let attack = "?id=1%27%20OR%20%271%27%3D%271";
        let d = decide(
            config,
            &[(":method", "GET"), (":path", &format!("/b{attack}"))],
            "1.2.3.4:1",
        );
        assert_eq!(d.enforced_denial().map(|x| x.status), Some(403));
        assert_eq!(d.reason_code(), "threat_sqli");
        // `log` is the default: allowed, noted.
        let d = decide(
            config,
            &[(":method", "GET"), (":path", &format!("/l{attack}"))],
            "1.2.3.4:1",
        );
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.logged, vec![crate::policy::Reason::ThreatSqli]);
        let d = decide(
            config,
            &[(":method", "GET"), (":path", &format!("/o{attack}"))],
            "1.2.3.4:1",
        );
        assert_eq!((d.verdict, d.logged.len()), (Verdict::Allow, 0));
        // Unmatched requests are not scanned.
        let d = decide(
            config,
            &[(":method", "GET"), (":path", &format!("/z{attack}"))],
            "1.2.3.4:1",
        );
        assert_eq!(d.logged.len(), 0);
    }

    #[test]
    fn body_stage_decisions() {
        let config = r#"{"rules":[
            {"name":"b","match":{"prefix":"/b"},"threats":"block","body":{}},
            {"name":"d","match":{"prefix":"/d"},"mode":"dry_run","threats":"log","body":{"max_bytes":10}}]}"#;
        let policy = compile(config.as_bytes()).unwrap();
        let host = MemoryHost::default();
        let run = |path: &str, body: &[u8]| {
            let h: Vec<(String, String)> = vec![
                (":method".into(), "POST".into()),
                (":path".into(), path.into()),
                ("content-type".into(), "application/json".into()),
            ];
            let request = Request::new(&h, Some("1.2.3.4:1")).with_end_of_stream(false);
            let header = policy.evaluate(&request, &host);
            assert_eq!(
                policy.body_plan(&request, &header),
                crate::policy::body::BodyPlan::Buffer {
                    max_bytes: if path == "/d" { 10 } else { 1024 * 1024 }
                }
            );
            policy.evaluate_body(&request, body, &header)
        };
        assert_eq!(run("/b", b"{\"a\":\"x\"}").verdict, Verdict::Allow);
        assert_eq!(
            run("/b", b"{\"a\":\"<script>alert(1)</script>\"}").reason_code(),
            "threat_xss"
        );
        let d = run("/d", b"{\"a\":\"1' or '1'='1\"}");
        assert_eq!((d.action(), d.reason_code()), ("dry_run", "body_too_large"));
        let d = run("/d", b"[\"../x\"]");
        assert_eq!((d.action(), d.logged.len()), ("allow", 1));
        assert_eq!(d.rule.as_deref(), Some("d"));
    }

    /// Bodies under `threats: block` are screened with no `body` block, whatever their media
    /// type; compressed ones are refused; the budget is per request and fails closed.
    #[test]
    fn block_rules_screen_every_body() {
        use crate::policy::body::BodyPlan;
        let config = r#"{"threat_scan_max_bytes":4096,"rules":[
            {"name":"b","match":{"prefix":"/b"},"threats":"block"},
            {"name":"l","match":{"prefix":"/l"},"threats":"log"},
            {"name":"lb","match":{"prefix":"/w"},"threats":"log","body":{}}]}"#;
        let policy = compile(config.as_bytes()).unwrap();
        let host = MemoryHost::default();
        let headers = |path: &str, extra: &[(&str, &str)]| -> Vec<(String, String)> {
            let mut h = vec![
                (":method".to_string(), "POST".to_string()),
                (":path".to_string(), path.to_string()),
            ];
            h.extend(crate::policy::testing::headers(extra));
            h
        };
        let run = |path: &str, extra: &[(&str, &str)], body: &[u8]| {
            let h = headers(path, extra);
            let request = Request::new(&h, Some("1.2.3.4:1")).with_end_of_stream(false);
            let header = policy.evaluate(&request, &host);
            if header.denial().is_some() {
                return (BodyPlan::Skip, header);
            }
            let plan = policy.body_plan(&request, &header);
            (plan, policy.evaluate_body(&request, body, &header))
        };
        let xss = br#"{"a":"<script>alert(1)</script>"}"#;
        for ct in [
            None,
            Some("text/plain"),
            Some("text/json"),
            Some("application/json; x"),
        ] {
            let extra: Vec<(&str, &str)> = ct.iter().map(|c| ("content-type", *c)).collect();
            let (plan, d) = run("/b", &extra, xss);
            assert_eq!(plan, BodyPlan::Buffer { max_bytes: 4096 }, "{ct:?}");
            assert_eq!(d.reason_code(), "threat_xss", "{ct:?}");
            assert_eq!(run("/b", &extra, b"{\"a\":\"fine\"}").1.reason_code(), "-");
        }
        // Compressed: 415 from the headers under block, for any media type.
        let (_, d) = run(
            "/b",
            &[("content-type", "text/plain"), ("content-encoding", "gzip")],
            b"",
        );
        assert_eq!(
            (d.reason_code(), d.denial().map(|x| x.status)),
            ("media_type", Some(415))
        );
        let (_, d) = run(
            "/b",
            &[
                ("content-type", "text/plain"),
                ("content-type", "application/json"),
            ],
            b"",
        );
        assert_eq!(d.reason_code(), "media_type");
        // Past the budget: block refuses 413, log records the cut.
        let big = format!("{{\"a\":\"{}\"}}", "x y".repeat(2000));
        let (_, d) = run("/b", &[("content-type", "text/plain")], big.as_bytes());
        assert_eq!(
            (d.reason_code(), d.denial().map(|x| x.status)),
            ("threat_scan_limit", Some(413))
        );
        let (plan, d) = run(
            "/w",
            &[("content-type", "application/json")],
            big.as_bytes(),
        );
        assert_eq!(
            plan,
            BodyPlan::Buffer {
                max_bytes: 1024 * 1024
            }
        );
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.logged, vec![crate::policy::Reason::ThreatScanLimit]);
        // The header stage's spending counts: a long query leaves less for the body.
        let query = format!("/b?q={}", "a+b".repeat(1200));
        let (_, d) = run(&query, &[("content-type", "text/plain")], b"\"a b\"");
        assert_eq!(d.reason_code(), "threat_scan_limit");
        // A body past the budget while buffering.
        let h = headers("/b", &[("content-type", "text/plain")]);
        let request = Request::new(&h, Some("1.2.3.4:1")).with_end_of_stream(false);
        let header = policy.evaluate(&request, &host);
        assert_eq!(
            policy.body_overflow(&header).reason_code(),
            "threat_scan_limit"
        );
        // `log` without a `body` block leaves bodies alone, and with one lets bodies other
        // than JSON and forms stream.
        assert_eq!(
            run("/l", &[("content-type", "text/plain")], b"").0,
            BodyPlan::Skip
        );
        assert_eq!(
            run("/w", &[("content-type", "text/plain")], b"").0,
            BodyPlan::Count {
                max_bytes: 1024 * 1024
            }
        );
    }
}
