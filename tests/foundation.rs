//! Foundation in a real Envoy: loading, header hardening, refusals with JSON paths, dry run,
//! problem+json, anti-spoofing, stats and the access log.

mod common;

use common::Envoy;

const OWASP_API: [(&str, &str); 7] = [
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-permitted-cross-domain-policies", "none"),
];

#[test]
fn empty_config_hardens_headers_and_strips_stack_headers() {
    let envoy = Envoy::start("{}");
    let r = envoy.client().must_get("/hello", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    for (name, value) in OWASP_API {
        assert_eq!(r.header(name), Some(value), "{name}");
        assert_eq!(r.header_count(name), 1, "{name} set once");
    }
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-powered-by"), None);
    assert_eq!(r.header("x-aspnet-version"), None);
    assert_eq!(r.header("server"), None);
    assert_eq!(r.header("cross-origin-opener-policy"), None, "strict only");
    assert_eq!(envoy.upstream.count(), 1);
    // Envoy's own answers are hardened too.
    let direct = envoy.client().must_get("/direct", &[]);
    assert_eq!(direct.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn api_profile_keeps_an_upstream_cache_policy_and_strict_overrides_it() {
    let envoy = Envoy::start("{}");
    let upstream_says = [("x-test-upstream-header", "cache-control=public, max-age=60")];
    let r = envoy.client().must_get("/cached", &upstream_says);
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));

    let strict = Envoy::start(r#"{"headers":{"profile":"strict"}}"#);
    let r = strict.client().must_get("/cached", &upstream_says);
    assert_eq!(r.header("cache-control"), Some("no-store, max-age=0"));
    assert_eq!(r.header("cross-origin-opener-policy"), Some("same-origin"));
    assert_eq!(
        r.header("cross-origin-embedder-policy"),
        Some("require-corp")
    );
    assert!(r
        .header("permissions-policy")
        .unwrap()
        .contains("camera=()"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn off_profile_sets_nothing_but_still_removes() {
    let envoy = Envoy::start(r#"{"headers":{"profile":"off"}}"#);
    let r = envoy.client().must_get("/x", &[]);
    for (name, _) in OWASP_API {
        assert_eq!(r.header(name), None, "{name}");
    }
    assert_eq!(r.header("cache-control"), None);
    assert_eq!(r.header("x-powered-by"), None);
}

#[test]
fn response_set_and_response_remove_apply() {
    let config = r#"{"headers":{
        "response_set":{"x-frame-options":"SAMEORIGIN","X-Team":"payments"},
        "response_remove":["x-aspnet-version","x-internal-trace"]}}"#;
    let envoy = Envoy::start(config);
    let r = envoy
        .client()
        .must_get("/x", &[("x-test-upstream-header", "x-internal-trace=abc")]);
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(r.header("x-team"), Some("payments"));
    assert_eq!(r.header("x-internal-trace"), None);
    assert_eq!(r.header("x-aspnet-version"), None);
    // The list replaces the default one: x-powered-by is kept on purpose here.
    assert_eq!(r.header("x-powered-by"), Some("PHP/8.3.1"));
}

#[test]
fn require_https_rejects_with_problem_json_and_redirects() {
    let envoy = Envoy::start(r#"{"headers":{"require_https":true}}"#);
    let r = envoy
        .client()
        .must_get("/orders?id=7", &[("x-forwarded-proto", "http")]);
    assert_eq!(r.status, 403);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let body = r.json();
    assert_eq!(body["reason"], "https_required");
    assert_eq!(body["status"], 403);
    assert_eq!(body["type"], "urn:api-guard:problem:https_required");
    assert!(body["title"].is_string());
    assert!(
        !r.text().contains("orders"),
        "never echoes the request: {}",
        r.text()
    );
    // Denials carry the hardening headers too.
    for (name, value) in OWASP_API {
        assert_eq!(r.header(name), Some(value), "{name}");
    }
    assert_eq!(envoy.upstream.count(), 0);
    let ok = envoy
        .client()
        .must_get("/orders", &[("x-forwarded-proto", "https")]);
    assert_eq!(ok.status, 200);

    let redirect = Envoy::start(r#"{"headers":{"require_https":"redirect"}}"#);
    let r = redirect
        .client()
        .must_get("/orders?id=7", &[("x-forwarded-proto", "http")]);
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://localhost/orders?id=7"));
}

#[test]
fn dry_run_counts_and_logs_but_never_blocks() {
    let config = r#"{"mode":"dry_run","headers":{"require_https":"reject"}}"#;
    let envoy = Envoy::start(config);
    let r = envoy
        .client()
        .must_get("/orders", &[("x-forwarded-proto", "http")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = envoy.upstream.last().unwrap();
    assert_eq!(seen.header("x-api-guard-dry-run"), Some("https_required"));
    assert_eq!(
        envoy.prometheus_value("api_guard_dry_run_https_required"),
        1
    );
    assert_eq!(envoy.prometheus_value("api_guard_deny_https_required"), 0);
    let logged = envoy.wait_for_log("\"action\":\"dry_run\"");
    assert!(
        logged
            .iter()
            .any(|l| l.contains("\"action\":\"dry_run\"")
                && l.contains("\"reason\":\"https_required\"")),
        "{logged:?}"
    );
    // A rule can be tried in dry run while the rest of the policy enforces.
    let config = r#"{"headers":{"require_https":"reject"},
        "rules":[{"name":"canary","match":{"prefix":"/canary"},"mode":"dry_run"}]}"#;
    let envoy = Envoy::start(config);
    let plain = [("x-forwarded-proto", "http")];
    assert_eq!(envoy.client().must_get("/canary/a", &plain).status, 200);
    assert_eq!(envoy.client().must_get("/other", &plain).status, 403);
}

#[test]
fn owned_headers_cannot_be_forged_by_clients() {
    let envoy = Envoy::start("{}");
    let r = envoy.client().must_get(
        "/x",
        &[
            ("x-api-guard-dry-run", "forged"),
            ("X-Api-Guard-Client", "admin"),
            ("x-ok", "1"),
        ],
    );
    assert_eq!(r.status, 200);
    let seen = envoy.upstream.last().unwrap();
    assert_eq!(seen.header("x-api-guard-dry-run"), None);
    assert_eq!(seen.header("x-api-guard-client"), None);
    assert_eq!(seen.header("x-ok"), Some("1"));
}

#[test]
fn decisions_are_counted_logged_and_in_the_access_log() {
    let config = r#"{"headers":{"require_https":true},"log":{"decisions":"all"},
        "rules":[{"name":"orders","match":{"prefix":"/orders"}}]}"#;
    let envoy = Envoy::start(config);
    let c = envoy.client();
    assert_eq!(
        c.must_get("/orders/1", &[("x-forwarded-proto", "https")])
            .status,
        200
    );
    assert_eq!(
        c.must_get("/orders/2", &[("x-forwarded-proto", "http")])
            .status,
        403
    );
    assert_eq!(
        c.must_get("/orders/3", &[("x-forwarded-proto", "http")])
            .status,
        403
    );
    assert_eq!(envoy.prometheus_value("api_guard_allow"), 1);
    assert_eq!(envoy.prometheus_value("api_guard_deny_https_required"), 2);
    assert_eq!(envoy.prometheus_value("api_guard_deny_jwt_missing"), 0);

    let entries = envoy.wait_access_log(3);
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[0]["api_guard_decision"], "allow");
    assert_eq!(entries[0]["api_guard_rule"], "orders");
    assert_eq!(entries[1]["api_guard_decision"], "deny");
    assert_eq!(entries[1]["api_guard_reason"], "https_required");
    assert_eq!(entries[1]["status"], 403);

    let lines: Vec<String> = envoy.wait_for_log("/orders/3");
    let decisions: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"api_guard\":\"decision\""))
        .collect();
    assert_eq!(
        decisions.len(),
        3,
        "log.decisions=all logs every decision: {lines:?}"
    );
    let json_start = decisions[1].find('{').unwrap();
    let line: serde_json::Value = serde_json::from_str(&decisions[1][json_start..]).unwrap();
    assert_eq!(line["action"], "deny");
    assert_eq!(line["rule"], "orders");
    assert_eq!(line["status"], 403);
    assert_eq!(line["client"], "ip:127.0.0.1");
}

#[test]
fn denials_only_are_logged_by_default_and_none_when_off() {
    let envoy = Envoy::start(r#"{"headers":{"require_https":true}}"#);
    let c = envoy.client();
    c.must_get("/a", &[("x-forwarded-proto", "https")]);
    c.must_get("/b?token=secret-value", &[("x-forwarded-proto", "http")]);
    let log = envoy.wait_for_log("\"action\":\"deny\"").join("\n");
    assert_eq!(
        log.matches("\"api_guard\":\"decision\"").count(),
        1,
        "{log}"
    );
    assert!(
        !log.contains("secret-value"),
        "queries are never logged: {log}"
    );

    let quiet = Envoy::start(r#"{"headers":{"require_https":true},"log":{"decisions":"off"}}"#);
    quiet
        .client()
        .must_get("/b", &[("x-forwarded-proto", "http")]);
    // Give Envoy's log a flush interval before checking that nothing was written.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!quiet.log().contains("\"api_guard\":\"decision\""));
    assert_eq!(quiet.prometheus_value("api_guard_deny_https_required"), 1);
}

/// Envoy refuses every class of bad configuration, and its log names the JSON path.
#[test]
fn bad_configs_are_refused_with_the_path_in_envoys_log() {
    let table = [
        ("", "(root): configuration is empty"),
        ("not json", "(root): configuration must be a JSON object"),
        ("{\"rules\": [", "rules: not valid JSON"),
        (
            "{\"headers\": {\"profile\": \"api\", \"colour\": 1}}",
            "headers.colour: unknown field `colour`",
        ),
        (
            "{\"rules\": [{\"match\": {\"prefix\": 5}}]}",
            "rules[0].match.prefix: expected a string, found integer",
        ),
        (
            "{\"mode\": \"sometimes\"}",
            "mode: unknown variant `sometimes`",
        ),
        (
            "{\"headers\": {\"require_https\": \"maybe\"}}",
            "headers.require_https: expected false, true",
        ),
        (
            "{\"client_ip\": {\"xff_trusted_hops\": 99}}",
            "client_ip.xff_trusted_hops: expected at most 16",
        ),
    ];
    std::thread::scope(|scope| {
        let handles: Vec<_> = table
            .iter()
            .map(|(config, want)| {
                scope.spawn(move || {
                    let log = Envoy::start_expect_refusal(config);
                    let line = format!("api-guard: configuration refused: {want}");
                    assert!(
                        log.contains(&line),
                        "config {config:?}: want {line:?} in Envoy's log:\n{log}"
                    );
                    assert!(!log.contains("panic"), "{log}");
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}
