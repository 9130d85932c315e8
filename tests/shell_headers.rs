//! The shell's header handling in a real Envoy: header values that are not UTF-8 (obs-text,
//! e.g. Latin-1) are ordinary input, never a VM crash; hardening reads the response headers
//! once and still removes, sets and keeps what it should.

mod common;

use common::Envoy;
use sha2::{Digest, Sha256};

fn request_with_raw_header(path: &str, header: &[u8]) -> Vec<u8> {
    let mut bytes =
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n").into_bytes();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes
}

#[test]
fn non_utf8_header_values_are_answered_and_the_vm_survives() {
    let digest: String = Sha256::digest(b"key-\xe9t\xe9")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let config = format!(
        r#"{{"api_keys": {{"clients": [{{"id": "latin", "sha256": "{digest}"}}]}},
            "rules": [{{"name": "keyed", "match": {{"prefix": "/keyed"}}, "auth": ["api_key"]}}]}}"#
    );
    let envoy = Envoy::start(&config);
    let c = envoy.client();

    // Latin-1 "café" in an arbitrary header: allowed, hardened, and the next request is served
    // (answered by Envoy: the test upstream reads headers as UTF-8 text).
    let r = c
        .raw(&request_with_raw_header("/direct", b"x-note: caf\xe9"))
        .unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), envoy.log());
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(c.must_get("/direct", &[]).status, 200);

    // A key in Latin-1 bytes is not the key whose digest is configured (its UTF-8 reading has
    // U+FFFD in place of the bad bytes): 401, not a crash.
    let r = c
        .raw(&request_with_raw_header(
            "/keyed",
            b"x-api-key: key-\xe9t\xe9",
        ))
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["reason"], "api_key_unknown");
    assert_eq!(c.must_get("/direct", &[]).status, 200);

    assert!(
        !envoy.log().contains("panic"),
        "the VM panicked:\n{}",
        envoy.log()
    );
}

#[test]
fn hardening_removes_only_present_headers_and_respects_the_upstream_cache_policy() {
    let envoy = Envoy::start("{}");
    let c = envoy.client();
    // The test upstream sends server and x-powered-by; ask it for two more stack headers.
    let r = c.must_get(
        "/x",
        &[
            ("x-test-upstream-header", "x-runtime=12ms"),
            ("x-test-upstream-header", "cache-control=public, max-age=60"),
        ],
    );
    assert_eq!(r.status, 200);
    for gone in ["x-powered-by", "x-runtime"] {
        assert_eq!(r.header(gone), None, "{gone} must be removed");
    }
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    assert_eq!(r.header_count("x-frame-options"), 1);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // Direct responses are hardened too.
    let r = c.must_get("/direct", &[]);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
}
