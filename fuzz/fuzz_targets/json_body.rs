//! Any bytes as a JSON body: the structure check (no recursion, duplicate keys, depth) and
//! the schema stage through the whole body path answer, never panic or overflow the stack.
#![no_main]

use std::sync::OnceLock;

use api_guard::policy::body::json;
use api_guard::policy::testing::{headers, MemoryHost};
use api_guard::policy::{Policy, Request};
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let config = r##"{"rules":[{"match":{"prefix":"/"},"threats":"block","body":{
            "max_bytes": 1048576, "content_types": ["application/json"], "max_depth": 64,
            "json_schema": {"type":"object","properties":{
                "id":{"type":"integer","minimum":1},
                "items":{"type":"array","items":{"$ref":"#"}},
                "name":{"type":"string","pattern":"^[a-z]+$","maxLength":16}},
              "required":["id"],"additionalProperties":false}}}]}"##;
        api_guard::config::compile(config.as_bytes()).expect("compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut strings = 0usize;
    let _ = json::check(data, 32, &mut |_| strings += 1);
    let length = data.len().to_string();
    let headers = headers(&[
        (":method", "POST"),
        (":path", "/orders"),
        ("content-type", "application/json"),
        ("content-length", &length),
    ]);
    let request = Request::new(&headers, Some("192.0.2.1:1"));
    let header_decision = policy().evaluate(&request, &MemoryHost::default());
    let decision = policy().evaluate_body(&request, data, &header_decision);
    if let Some(denial) = decision.denial() {
        assert!((400..500).contains(&denial.status));
        let _ = denial.problem_json();
    }
});
