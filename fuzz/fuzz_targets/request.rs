//! Any request headers (pseudo-headers, X-Forwarded-For, x-forwarded-proto, owned headers)
//! against a policy that uses every built check: a decision, never a panic.
#![no_main]

use std::sync::OnceLock;

use api_guard::policy::testing::MemoryHost;
use api_guard::policy::Policy;
use libfuzzer_sys::fuzz_target;

const POLICY: &str = r#"{
  "client_ip": { "xff_trusted_hops": 2 },
  "headers": { "require_https": "redirect" },
  "rules": [
    { "name": "exact", "match": { "path": "/a", "methods": ["POST"] } },
    { "name": "prefix", "match": { "prefix": "/api/" }, "mode": "dry_run" }
  ]
}"#;

fn policy() -> &'static Policy {
    static POLICY_CELL: OnceLock<Policy> = OnceLock::new();
    POLICY_CELL.get_or_init(|| api_guard::config::compile(POLICY.as_bytes()).expect("compiles"))
}

fuzz_target!(|data: &[u8]| {
    let policy = policy();
    // One header a line, "name: value"; the first line is the peer address.
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let peer = lines.next().map(str::to_string);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let request = api_guard::policy::Request::new(&headers, peer.as_deref());
    let decision = policy.evaluate(&request, &MemoryHost::default());
    let _ = decision.log_line(request.method(), request.path());
    if let Some(denial) = decision.enforced_denial() {
        let _ = denial.problem_json();
    }
});
