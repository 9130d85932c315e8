//! Foundation in a real Envoy: loading, hardening, refusals, dry run, problem+json, stats,
//! access log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::Envoy;

#[test]
fn empty_config_hardens_headers_and_strips_stack_headers() {
    let envoy = Envoy::start("{}");
    let r = envoy.client().must_get("/hello", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-powered-by"), None);
    assert_eq!(r.header("x-aspnet-version"), None);
    assert_eq!(r.header("server"), None);
    assert_eq!(envoy.upstream.count(), 1);
}
