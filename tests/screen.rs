//! Screening in a real Envoy: client IP allow/deny (global and per rule, IPv4 and IPv6,
//! trusted hops through X-Forwarded-For) and threats (SQLi, XSS, traversal) in the path,
//! query, headers and JSON body, in block, log and off modes.
#![allow(clippy::type_complexity)]

mod common;

use common::{Envoy, Response};

fn assert_denied(r: &Response, reason: &str, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["reason"], reason, "{what}");
}

#[test]
fn ip_rules_global_and_per_rule_with_trusted_hops() {
    let envoy = Envoy::start(
        r#"{
      "client_ip": {"xff_trusted_hops": 1},
      "ip": {"deny": ["192.0.2.0/24", "2001:db8:bad::/48"]},
      "rules": [
        {"name": "admin", "match": {"prefix": "/admin"},
         "ip": {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.9.0.0/16"]}},
        {"name": "open", "match": {"prefix": "/"}}
      ]
    }"#,
    );
    let table: &[(&str, Option<&str>, u16)] = &[
        ("/x", Some("203.0.113.5"), 200),
        ("/x", Some("192.0.2.9"), 403),
        ("/x", Some("2001:db8:bad::1"), 403),
        ("/x", Some("[2001:db8:bad::1]:443"), 403),
        ("/x", Some("2001:db8:beef::1"), 200),
        ("/admin", Some("10.1.1.1"), 200),
        // Deny wins over allow.
        ("/admin", Some("10.9.1.1"), 403),
        ("/admin", Some("203.0.113.5"), 403),
        ("/admin", Some("2001:db8::7"), 200),
        // One trusted hop: the rightmost entry is the client; what is left of it is not
        // trusted, whatever it says.
        ("/admin", Some("192.0.2.9, 10.1.1.1"), 200),
        ("/admin", Some("10.1.1.1, 192.0.2.9"), 403),
        ("/x", Some("10.1.1.1, 192.0.2.9"), 403),
    ];
    for (path, xff, status) in table {
        let headers: Vec<(&str, &str)> = xff.iter().map(|v| ("x-forwarded-for", *v)).collect();
        let r = envoy.client().must_get(path, &headers);
        if *status == 200 {
            assert_eq!(r.status, 200, "{path} {xff:?}: {}", r.text());
        } else {
            assert_denied(&r, "ip_denied", &format!("{path} {xff:?}"));
        }
    }
    assert_eq!(envoy.prometheus_value("api_guard_deny_ip_denied"), 7);
    // No X-Forwarded-For with a trusted hop: the client is unknown (not the peer, the
    // trusted proxy), refused wherever an IP list applies (tests/identity.rs has more).
    for path in ["/admin", "/x"] {
        let r = envoy.client().must_get(path, &[]);
        assert_denied(&r, "client_ip_unknown", &format!("{path} without XFF"));
    }
}

#[test]
fn a_global_allow_list_applies_to_every_request() {
    let envoy = Envoy::start(r#"{"ip": {"allow": ["10.0.0.0/8", "::1"]}}"#);
    let r = envoy.client().must_get("/anything", &[]);
    assert_denied(&r, "ip_denied", "127.0.0.1 not allowed");
    assert_eq!(envoy.upstream.count(), 0);
    let envoy = Envoy::start(r#"{"ip": {"allow": ["127.0.0.0/8"]}}"#);
    assert_eq!(envoy.client().must_get("/anything", &[]).status, 200);
}

#[test]
fn bad_ip_configs_are_refused_by_envoy() {
    let log = Envoy::start_expect_refusal(
        r#"{"rules":[{"match":{"prefix":"/"},"ip":{"allow":["10.0.0.0/33"]}}]}"#,
    );
    assert!(
        log.contains("rules[0].ip.allow[0]: expected an IPv4 or IPv6"),
        "{log}"
    );
    let log =
        Envoy::start_expect_refusal(r#"{"rules":[{"match":{"prefix":"/"},"threats":"deny"}]}"#);
    assert!(
        log.contains("rules[0].threats: unknown variant `deny`"),
        "{log}"
    );
}

const THREATS: &str = r#"{
  "rules": [
    {"name": "block", "match": {"prefix": "/block"}, "threats": "block",
     "body": {"content_types": ["application/json"]}},
    {"name": "log", "match": {"prefix": "/log"}, "threats": "log", "body": {}},
    {"name": "forms", "match": {"prefix": "/forms"}, "threats": "block", "body": {}},
    {"name": "off", "match": {"prefix": "/off"}, "threats": "off"}
  ]
}"#;

#[test]
fn threats_are_blocked_in_path_query_headers_and_body() {
    let envoy = Envoy::start(THREATS);
    let get: &[(&str, &[(&str, &str)], &str)] = &[
        (
            "/block/1%20UNION%20SELECT%20password%20FROM%20users--",
            &[],
            "threat_sqli",
        ),
        ("/block?id=1%27%20OR%20%271%27%3D%271", &[], "threat_sqli"),
        (
            "/block?id=1%2527%2520OR%2520%25271%2527%253D%25271",
            &[],
            "threat_sqli",
        ),
        ("/block", &[("user-agent", "' OR 1=1 --")], "threat_sqli"),
        (
            "/block/%3Cscript%3Ealert(1)%3C/script%3E",
            &[],
            "threat_xss",
        ),
        (
            "/block/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            &[],
            "path_invalid",
        ),
        (
            "/block?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
            &[],
            "threat_xss",
        ),
        (
            "/block",
            &[("referer", "https://x.example/?q=<script>alert(1)</script>")],
            "threat_xss",
        ),
        (
            "/block",
            &[("cookie", "a=1; b=%3Csvg%20onload%3Dalert(1)%3E")],
            "threat_xss",
        ),
        // `..` segments, escaped separators and escaped escapes have no canonical path:
        // refused before screening (docs/request-model.md).
        ("/block/../../etc/passwd", &[], "path_invalid"),
        ("/block/..%2f..%2fetc%2fpasswd", &[], "path_invalid"),
        ("/block/%252e%252e%252fetc%252fpasswd", &[], "path_invalid"),
        (
            "/block/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
            &[],
            "threat_traversal",
        ),
        ("/block/..%5c..%5cwindows%5cwin.ini", &[], "path_invalid"),
        (
            "/block?file=..%2F..%2Fetc%2Fpasswd",
            &[],
            "threat_traversal",
        ),
        (
            "/block",
            &[("cookie", "lang=../../etc/passwd")],
            "threat_traversal",
        ),
    ];
    for (path, headers, reason) in get {
        let r = envoy.client().must_get(path, headers);
        if *reason == "path_invalid" {
            assert_eq!(
                (r.status, r.json()["reason"].clone()),
                (400, serde_json::Value::from(*reason)),
                "{path}"
            );
            continue;
        }
        assert_denied(&r, reason, &format!("{path} {headers:?}"));
    }
    let bodies: &[(&[u8], &str)] = &[
        (br#"{"q": "1' OR '1'='1"}"#, "threat_sqli"),
        (br#"{"comment": "<svg onload=alert(1)>"}"#, "threat_xss"),
        (
            br#"{"files": ["a.txt", "../../etc/passwd"]}"#,
            "threat_traversal",
        ),
        (br#"{"<script>alert(1)</script>": 1}"#, "threat_xss"),
    ];
    for (body, reason) in bodies {
        let r = envoy
            .client()
            .request(
                "POST",
                "/block",
                &[("content-type", "application/json")],
                Some(body),
            )
            .unwrap();
        assert_denied(&r, reason, &String::from_utf8_lossy(body));
    }
    // Form bodies are scanned like a query.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let r = envoy
        .client()
        .request(
            "POST",
            "/forms",
            &form,
            Some(b"name=x&id=1%27+OR+%271%27%3D%271"),
        )
        .unwrap();
    assert_denied(&r, "threat_sqli", "form body");
    assert_eq!(envoy.upstream.count(), 0);
    let r = envoy
        .client()
        .request("POST", "/forms", &form, Some(b"name=O%27Reilly&city=Lyon"))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        envoy.upstream.last().unwrap().body,
        b"name=O%27Reilly&city=Lyon"
    );
    // Benign look-alikes pass.
    let r = envoy.client().must_get(
        "/block/orders/42?q=O%27Reilly&sort=-date&next=%2Fhome",
        &[
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            ),
            ("referer", "https://shop.example.com/cart?step=2"),
            ("cookie", "session=abc123; theme=dark"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = envoy
        .client()
        .request(
            "POST",
            "/block/notes",
            &[("content-type", "application/json")],
            Some(br#"{"name": "O'Reilly", "note": "select the best one; 2 > 1", "path": "docs/a..b.txt"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // The log carries the reason, never the payload.
    assert!(!envoy.log().contains("UNION"), "payload in the log");
}

#[test]
fn log_mode_counts_without_blocking_and_off_mode_ignores() {
    let envoy = Envoy::start(THREATS);
    let r = envoy
        .client()
        .must_get("/log?id=1%27%20OR%20%271%27%3D%271", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = envoy
        .client()
        .request(
            "POST",
            "/log",
            &[("content-type", "application/json")],
            Some(br#"{"c": "<script>alert(1)</script>"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(envoy.upstream.count(), 2);
    assert_eq!(envoy.prometheus_value("api_guard_log_threat_sqli"), 1);
    assert_eq!(envoy.prometheus_value("api_guard_log_threat_xss"), 1);
    assert_eq!(envoy.prometheus_value("api_guard_allow"), 2);
    // Envoy writes its log file asynchronously.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let lines = loop {
        let lines: Vec<String> = envoy
            .api_guard_log()
            .into_iter()
            .filter(|l| l.contains("\"detection\""))
            .collect();
        if lines.len() >= 2 || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("threat_sqli") && lines[0].contains("\"rule\":\"log\""),
        "{lines:?}"
    );

    let r = envoy
        .client()
        .must_get("/off?id=1%27%20OR%20%271%27%3D%271", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(envoy.prometheus_value("api_guard_log_threat_sqli"), 1);
}
