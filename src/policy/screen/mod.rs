//! Stage 2: screening. The client IP against the global and the rule's allow/deny lists
//! (deny wins), then threats in the path, query and scanned headers.

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
    Denial::new(reason).with_detail("the request looks like an attack and was refused")
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

/// Threats in the request line and headers, as the rule's `threats` says.
pub fn check_threats(
    rule: &Rule,
    request: &Request,
    decision: &mut Decision,
) -> Result<(), Denial> {
    if rule.threats == ThreatMode::Off {
        return Ok(());
    }
    apply_threat(rule.threats, threats::scan_request(request), decision)
}

impl super::Policy {
    /// Stage 2 of `run_checks`.
    pub(crate) fn screen(
        &self,
        request: &Request,
        rule: Option<&Rule>,
        decision: &mut Decision,
    ) -> Result<(), Denial> {
        if !self.ip.is_empty() || rule.is_some_and(|r| !r.ip.is_empty()) {
            let client = self.client_ip.resolve(request);
            check_ip(&self.ip, rule.map(|r| &r.ip), client)?;
        }
        match rule {
            Some(rule) => check_threats(rule, request, decision),
            None => Ok(()),
        }
    }
}

/// The log line of a detection in log mode (never the matched input).
pub fn logged_line(decision: &Decision, reason: Reason, method: &str, path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path: String = path.chars().take(256).collect();
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
        let h: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
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
}
