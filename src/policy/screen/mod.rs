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
/// exists must hold it.
pub fn check_ip(
    global: &IpRules,
    rule: Option<&IpRules>,
    client: Option<IpAddr>,
) -> Result<(), Denial> {
    let lists = [Some(global), rule];
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
