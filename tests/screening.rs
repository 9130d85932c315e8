//! What is screened (issue 14, section 3), in a real Envoy over HTTP/1.1: whole values (a
//! payload after 16 KiB of padding), the path as a whole, bodies under `threats: block`
//! whatever their media type (JSON under other names, forms, multipart fields and file
//! names), compressed bodies refused, and the per-request budget (`threat_scan_max_bytes`).

mod common;

use common::{Envoy, Response};

/// No new key: each case but the budget's fails on a module that scanned 16 KiB per value
/// and only JSON and form bodies.
const CONFIG: &str = r#"{
  "rules": [
    {"name": "block", "match": {"prefix": "/block"}, "threats": "block"},
    {"name": "typed", "match": {"prefix": "/typed"}, "threats": "block",
     "body": {"max_bytes": 262144}},
    {"name": "log", "match": {"prefix": "/log"}, "threats": "log", "body": {}}
  ]
}"#;

/// The same rules with a 64 KiB screening budget.
const BUDGET_CONFIG: &str = r#"{
  "threat_scan_max_bytes": 65536,
  "rules": [
    {"name": "block", "match": {"prefix": "/block"}, "threats": "block"},
    {"name": "typed", "match": {"prefix": "/typed"}, "threats": "block",
     "body": {"max_bytes": 262144}},
    {"name": "log", "match": {"prefix": "/log"}, "threats": "log", "body": {}}
  ]
}"#;

fn assert_refused(r: &Response, status: u16, reason: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["reason"], reason, "{what}");
}

fn post(envoy: &Envoy, path: &str, content_type: Option<&str>, body: &[u8]) -> Response {
    let headers: Vec<(&str, &str)> = content_type.iter().map(|c| ("content-type", *c)).collect();
    envoy
        .client()
        .request("POST", path, &headers, Some(body))
        .unwrap()
}

#[test]
fn whole_values_and_the_whole_path_are_screened() {
    let envoy = Envoy::start(CONFIG);
    let pad = "+".repeat(16_384);
    let r = envoy
        .client()
        .must_get(&format!("/block?q={pad}1'%20OR%20'1'='1"), &[]);
    assert_refused(&r, 403, "threat_sqli", "padded query value");
    let r = envoy.client().must_get(
        &format!("/block?q={pad}%3Cscript%3Ealert(1)%3C/script%3E"),
        &[],
    );
    assert_refused(&r, 403, "threat_xss", "padded query value (xss)");
    let ua = format!("{pad}1' OR '1'='1");
    let r = envoy.client().must_get("/block", &[("user-agent", &ua)]);
    assert_refused(&r, 403, "threat_sqli", "padded user-agent");
    let json = format!(r#"{{"a":"{pad}1' OR '1'='1"}}"#);
    let r = post(&envoy, "/typed", Some("application/json"), json.as_bytes());
    assert_refused(&r, 403, "threat_sqli", "padded JSON string");
    let r = envoy.client().must_get(
        "/block/item/1'/**/union/**/select/**/password/**/from/**/users--",
        &[],
    );
    assert_refused(&r, 403, "threat_sqli", "injection across path segments");
    assert_eq!(envoy.upstream.count(), 0);
    // Benign requests of the same shapes pass.
    let r = envoy
        .client()
        .must_get(&format!("/block/api/v1/orders/42?q={pad}hello"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn bodies_are_screened_whatever_their_media_type() {
    let envoy = Envoy::start(CONFIG);
    let xss = br#"{"comment": "<script>alert(1)</script>"}"#;
    for path in ["/block", "/typed"] {
        for ct in [
            Some("text/plain"),
            Some("text/json"),
            Some("application/json; x"),
            None,
        ] {
            let r = post(&envoy, path, ct, xss);
            assert_refused(&r, 403, "threat_xss", &format!("{path} {ct:?}"));
        }
    }
    // UTF-16 JSON, which Python's json.loads reads from bytes.
    let utf16: Vec<u8> = String::from_utf8_lossy(xss)
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let r = post(&envoy, "/block", Some("text/plain"), &utf16);
    assert_refused(&r, 403, "threat_xss", "UTF-16 JSON");
    assert_eq!(envoy.upstream.count(), 0);
    let form = Some("application/x-www-form-urlencoded");
    let r = post(&envoy, "/block", form, b"a=1&id=1%27+OR+%271%27%3D%271");
    assert_refused(&r, 403, "threat_sqli", "form field");
    let ct = "multipart/form-data; boundary=----b0undary";
    let multipart = |disposition: &str, value: &str| {
        format!(
            "------b0undary\r\nContent-Disposition: form-data; name=\"ok\"\r\n\r\nfine\r\n\
             ------b0undary\r\nContent-Disposition: form-data; {disposition}\r\n\
             Content-Type: text/plain\r\n\r\n{value}\r\n------b0undary--\r\n"
        )
    };
    let cases = [
        ("name=\"q\"", "1' OR '1'='1", "threat_sqli"),
        ("name=\"<svg onload=alert(1)>\"", "x", "threat_xss"),
        (
            "name=\"f\"; filename=\"../../etc/passwd\"",
            "x",
            "threat_traversal",
        ),
        (
            "name=\"f\"; filename=\"<img src=x onerror=alert(1)>.png\"",
            "x",
            "threat_xss",
        ),
    ];
    for (disposition, value, reason) in cases {
        let r = post(
            &envoy,
            "/block",
            Some(ct),
            multipart(disposition, value).as_bytes(),
        );
        assert_refused(&r, 403, reason, disposition);
    }
    assert_eq!(envoy.upstream.count(), 0);
    // Benign bodies of every kind reach the upstream whole.
    let benign: [(Option<&str>, String); 4] = [
        (Some("text/plain"), "hello O'Reilly".to_string()),
        (None, r#"{"name": "O'Reilly"}"#.to_string()),
        (form, "name=O%27Reilly&city=Lyon".to_string()),
        (
            Some(ct),
            multipart("name=\"f\"; filename=\"a.txt\"", "hello"),
        ),
    ];
    for (ct, body) in &benign {
        let r = post(&envoy, "/block", *ct, body.as_bytes());
        assert_eq!(r.status, 200, "{ct:?}: {}", r.text());
        assert_eq!(envoy.upstream.last().unwrap().body, body.as_bytes());
    }
}

#[test]
fn compressed_bodies_on_a_block_rule_are_refused() {
    let envoy = Envoy::start(CONFIG);
    for path in ["/block", "/typed"] {
        let r = envoy
            .client()
            .request(
                "POST",
                path,
                &[("content-type", "text/plain"), ("content-encoding", "gzip")],
                Some(b"\x1f\x8b\x08\x00\x00\x00\x00\x00"),
            )
            .unwrap();
        assert_refused(&r, 415, "media_type", path);
    }
    assert_eq!(envoy.upstream.count(), 0);
}

#[test]
fn the_budget_fails_closed_under_block_and_is_noted_under_log() {
    let envoy = Envoy::start(BUDGET_CONFIG);
    // 100 KiB of text: more than the 64 KiB budget.
    let big = "lorem ipsum ".repeat(8_600);
    let r = post(&envoy, "/block", Some("text/plain"), big.as_bytes());
    assert_refused(&r, 413, "threat_scan_limit", "body past the budget (block)");
    let r = post(&envoy, "/typed", Some("text/plain"), big.as_bytes());
    assert_refused(&r, 413, "threat_scan_limit", "body past the budget (typed)");
    // A value past the budget in the request line.
    let long = format!("/block?q={}", "a+b".repeat(16_000));
    let r = envoy.client().must_get(&long, &[]);
    assert_refused(&r, 413, "threat_scan_limit", "query past the budget");
    assert_eq!(envoy.upstream.count(), 0);
    assert_eq!(
        envoy.prometheus_value("api_guard_deny_threat_scan_limit"),
        3
    );
    // `log`: the request goes on; the cut is counted and logged.
    let json = format!(r#"{{"text": "{big}"}}"#);
    let r = post(&envoy, "/log", Some("application/json"), json.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(envoy.upstream.last().unwrap().body.len(), json.len());
    assert_eq!(envoy.prometheus_value("api_guard_log_threat_scan_limit"), 1);
    let lines = envoy.wait_for_log("threat_scan_limit");
    assert!(
        lines.iter().any(|l| l.contains("\"action\":\"log\"")),
        "{lines:?}"
    );
}

#[test]
fn a_bad_budget_is_refused_by_envoy() {
    let log = Envoy::start_expect_refusal(r#"{"threat_scan_max_bytes": 10}"#);
    assert!(
        log.contains("threat_scan_max_bytes: expected 1024 to 67108864 bytes"),
        "{log}"
    );
}

/// The same body over HTTP/2 (curl, prior knowledge) and as an HTTP/1.1 chunked body with no
/// length: screened alike.
#[test]
fn bodies_are_screened_over_http2_and_chunked() {
    let envoy = Envoy::start(CONFIG);
    let xss = r#"{"comment": "<script>alert(1)</script>"}"#;
    let url = format!("http://127.0.0.1:{}/block", envoy.port);
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .args(["-H", "content-type: text/plain", "--data-binary", xss, &url])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403 2", "{out:?}");
    let chunked = format!(
        "POST /block HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         transfer-encoding: chunked\r\n\r\n{:x}\r\n{xss}\r\n0\r\n\r\n",
        xss.len()
    );
    let r = envoy.client().raw(chunked.as_bytes()).unwrap();
    assert_refused(&r, 403, "threat_xss", "chunked, no content-type");
    assert_eq!(envoy.upstream.count(), 0);
}
