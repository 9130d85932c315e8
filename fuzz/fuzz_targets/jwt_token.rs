//! Any bytes as a bearer token (and as the same token in a query parameter) against a
//! provider holding every kind of key: a 401 with a reason or a verified principal, never a
//! panic.
#![no_main]

use std::sync::OnceLock;

use api_guard::policy::testing::{headers, MemoryHost};
use api_guard::policy::{Policy, Request};
use libfuzzer_sys::fuzz_target;

const JWKS: &str = include_str!("../../tests/data/jwt/jwks.json");

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let config = serde_json::json!({
            "jwt_providers": { "idp": {
                "local_jwks": JWKS,
                "require_expiration": false,
                "from_headers": [{ "name": "authorization", "value_prefix": "Bearer " }],
                "from_params": ["access_token"],
                "claim_to_headers": [{ "claim": "sub", "header": "x-sub" }],
                "payload_header": "x-payload"
            }},
            "rules": [{ "match": { "prefix": "/" }, "auth": ["idp"], "scopes": ["read"] }]
        });
        api_guard::config::compile(config.to_string().as_bytes()).expect("the fuzz policy compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let path = format!("/x?access_token={}", token.replace(['&', '#', ' '], ""));
    let bearer = format!("Bearer {token}");
    let headers = headers(&[(":method", "GET"), (":path", &path), ("authorization", &bearer)]);
    let request = Request::new(&headers, Some("192.0.2.1:1"));
    let decision = policy().evaluate(&request, &MemoryHost::default());
    if let Some(denial) = decision.denial() {
        assert!((400..500).contains(&denial.status));
        let _ = denial.problem_json();
    }
});
