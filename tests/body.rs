//! Request body validation in a real Envoy: 413 (declared and streamed), 415, 400 (invalid
//! JSON, invalid UTF-8, duplicate names, depth, 100,000 deep), 400 body_schema, dry run,
//! metrics and access log.
#![allow(clippy::type_complexity)]

mod common;

use std::io::{BufReader, Write};
use std::time::Duration;

use common::{http::read_response, Envoy, Response};
use serde_json::{json, Value};

const CONFIG: &str = r#"{
  "rules": [
    {"name": "small", "match": {"prefix": "/small"}, "body": {"max_bytes": 64}},
    {"name": "orders", "match": {"prefix": "/orders"},
     "body": {"max_bytes": 4096, "content_types": ["application/json"], "max_depth": 8,
              "json_schema": {"type": "object", "required": ["id", "items"],
                              "properties": {"id": {"type": "integer"},
                                             "items": {"type": "array",
                                                       "items": {"type": "string", "maxLength": 5}}}}}},
    {"name": "json", "match": {"prefix": "/json"},
     "body": {"content_types": ["application/json", "application/*"], "max_depth": 8}},
    {"name": "try", "match": {"prefix": "/try"}, "mode": "dry_run",
     "body": {"content_types": ["application/json"], "max_bytes": 64}}
  ]
}"#;

fn post(envoy: &Envoy, path: &str, content_type: Option<&str>, body: &[u8]) -> Response {
    let mut headers = Vec::new();
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    envoy
        .client()
        .request("POST", path, &headers, Some(body))
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

fn post_json(envoy: &Envoy, path: &str, body: &[u8]) -> Response {
    post(envoy, path, Some("application/json"), body)
}

fn assert_problem(r: &Response, status: u16, reason: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let body = r.json();
    assert_eq!(body["reason"], reason, "{body}");
    assert_eq!(body["status"], status);
    body
}

/// Sends headers and chunks of a chunked request, without the final chunk, and reads the
/// answer that must come while the request is still open.
fn chunked_until_answer(
    envoy: &Envoy,
    path: &str,
    content_type: &str,
    chunk: &[u8],
    chunks: usize,
) -> Response {
    let mut stream = envoy.client().connect().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    for _ in 0..chunks {
        let mut bytes = format!("{:x}\r\n", chunk.len()).into_bytes();
        bytes.extend_from_slice(chunk);
        bytes.extend_from_slice(b"\r\n");
        // The connection may already be answered and closed: ignore write errors.
        if stream.write_all(&bytes).is_err() {
            break;
        }
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    read_response(&mut BufReader::new(stream)).expect("an answer before the body ended")
}

#[test]
fn sizes_are_bounded_declared_and_streamed() {
    let envoy = Envoy::start(CONFIG);

    // Declared too large: answered from the headers, before any body byte is sent.
    let mut stream = envoy.client().connect().unwrap();
    stream
        .write_all(b"POST /small HTTP/1.1\r\nhost: localhost\r\ncontent-type: text/plain\r\ncontent-length: 100000\r\n\r\n")
        .unwrap();
    let r = read_response(&mut BufReader::new(stream)).unwrap();
    assert_problem(&r, 413, "body_too_large");

    // Within the bound: streamed through to the upstream unchanged.
    let r = post(&envoy, "/small", Some("text/plain"), &[b'a'; 64]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(envoy.upstream.last().unwrap().body.len(), 64);

    // Streamed (chunked, not buffered): refused as soon as the count passes 64 bytes,
    // while the client is still sending.
    let r = chunked_until_answer(&envoy, "/small", "text/plain", &[b'x'; 40], 3);
    assert_problem(&r, 413, "body_too_large");

    // Buffered JSON, chunked: refused once the buffer passes max_bytes.
    let r = chunked_until_answer(&envoy, "/orders", "application/json", &[b' '; 1500], 4);
    assert_problem(&r, 413, "body_too_large");

    // A chunked body within the bound goes through whole.
    let mut stream = envoy.client().connect().unwrap();
    stream
        .write_all(b"POST /small HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .unwrap();
    let r = read_response(&mut BufReader::new(stream)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(envoy.upstream.last().unwrap().body, b"hello");

    assert!(envoy.prometheus_value("api_guard_deny_body_too_large") >= 3);
}

#[test]
fn media_types_and_json_structure() {
    let envoy = Envoy::start(CONFIG);
    let table: &[(&str, Option<&str>, &[u8], u16, &str)] = &[
        ("/json", Some("text/plain"), b"{}", 415, "media_type"),
        ("/json", None, b"{}", 415, "media_type"),
        (
            "/json",
            Some("application/json; charset=latin1"),
            b"{}",
            415,
            "media_type",
        ),
        (
            "/json",
            Some("application/json; charset=UTF-8"),
            b"{\"a\":[1,2]}",
            200,
            "-",
        ),
        ("/json", Some("Application/JSON"), b"[]", 200, "-"),
        // `application/*` admits non-JSON application types, which are not parsed.
        (
            "/json",
            Some("application/octet-stream"),
            b"\xff\x00{",
            200,
            "-",
        ),
        (
            "/json",
            Some("application/json"),
            b"{\"a\":",
            400,
            "body_invalid",
        ),
        (
            "/json",
            Some("application/json"),
            b"{\"a\":1} x",
            400,
            "body_invalid",
        ),
        (
            "/json",
            Some("application/json"),
            b"[\"\xc3\x28\"]",
            400,
            "body_invalid",
        ),
        (
            "/json",
            Some("application/json"),
            b"{\"id\":1,\"id\":2}",
            400,
            "body_invalid",
        ),
        (
            "/json",
            Some("application/json"),
            b"[[[[[[[[[1]]]]]]]]]",
            400,
            "body_invalid",
        ),
        (
            "/json",
            Some("application/json"),
            b"[[[[[[[[1]]]]]]]]",
            200,
            "-",
        ),
        (
            "/json",
            Some("application/vnd.api+json"),
            b"{\"a\":1,\"a\":1}",
            400,
            "body_invalid",
        ),
    ];
    for (path, content_type, body, status, reason) in table {
        let r = post(&envoy, path, *content_type, body);
        if *status == 200 {
            assert_eq!(
                r.status,
                200,
                "{content_type:?} {}: {}",
                String::from_utf8_lossy(body),
                r.text()
            );
            assert_eq!(envoy.upstream.last().unwrap().body, *body);
        } else {
            let problem = assert_problem(&r, *status, reason);
            // Never an echo of the body.
            assert!(!problem.to_string().contains("\"id\""), "{problem}");
        }
    }
    // A compressed JSON body cannot be checked: 415.
    let r = envoy
        .client()
        .request(
            "POST",
            "/json",
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            Some(b"\x1f\x8b\x08\x00"),
        )
        .unwrap();
    assert_problem(&r, 415, "media_type");
    // Two media types: refused, whichever the upstream would read.
    let r = envoy
        .client()
        .request(
            "POST",
            "/json",
            &[
                ("content-type", "text/plain"),
                ("content-type", "application/json"),
            ],
            Some(b"{}"),
        )
        .unwrap();
    assert_problem(&r, 415, "media_type");
    let deny_invalid = envoy.prometheus_value("api_guard_deny_body_invalid");
    assert_eq!(deny_invalid, 6);
    assert_eq!(envoy.prometheus_value("api_guard_deny_media_type"), 5);
    let log = envoy.wait_access_log(table.len());
    assert!(log
        .iter()
        .any(|e| e["api_guard_reason"] == "body_invalid" && e["status"] == 400));
}

#[test]
fn a_body_nested_a_hundred_thousand_deep_is_refused_and_envoy_keeps_serving() {
    let envoy = Envoy::start(CONFIG);
    let deep = "[".repeat(100_000);
    for _ in 0..3 {
        let r = post_json(&envoy, "/json", deep.as_bytes());
        assert_problem(&r, 400, "body_invalid");
    }
    let mut balanced = "[".repeat(50_000);
    balanced.push_str(&"]".repeat(50_000));
    assert_problem(
        &post_json(&envoy, "/json", balanced.as_bytes()),
        400,
        "body_invalid",
    );
    let r = post_json(&envoy, "/json", b"{\"still\":\"up\"}");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!envoy.log().contains("panic"), "{}", envoy.log());
}

#[test]
fn schema_failures_list_pointers_and_keywords() {
    let envoy = Envoy::start(CONFIG);
    let r = post_json(&envoy, "/orders", br#"{"id": 7, "items": ["ab", "cd"]}"#);
    assert_eq!(r.status, 200, "{}", r.text());

    let r = post_json(
        &envoy,
        "/orders",
        br#"{"id": "seven", "items": ["toolongvalue", 3]}"#,
    );
    let problem = assert_problem(&r, 400, "body_schema");
    let errors = problem["errors"].as_array().unwrap();
    for want in [
        json!({"pointer": "/id", "keyword": "type"}),
        json!({"pointer": "/items/0", "keyword": "maxLength"}),
        json!({"pointer": "/items/1", "keyword": "type"}),
    ] {
        assert!(errors.contains(&want), "{want} not in {problem}");
    }
    let text = problem.to_string();
    assert!(
        !text.contains("seven") && !text.contains("toolongvalue"),
        "{text}"
    );

    let r = post_json(&envoy, "/orders", b"{}");
    let problem = assert_problem(&r, 400, "body_schema");
    assert_eq!(
        problem["errors"],
        json!([{"pointer": "", "keyword": "required"}])
    );

    // The schema's rule admits JSON only, and needs a body on POST.
    assert_problem(
        &post(&envoy, "/orders", Some("text/plain"), b"{}"),
        415,
        "media_type",
    );
    let r = envoy
        .client()
        .request("POST", "/orders", &[], None)
        .unwrap();
    assert_problem(&r, 400, "body_invalid");
    // GET carries no body and passes.
    assert_eq!(envoy.client().must_get("/orders/7", &[]).status, 200);
    assert_eq!(envoy.prometheus_value("api_guard_deny_body_schema"), 2);
}

#[test]
fn dry_run_body_denials_are_recorded_not_enforced() {
    let envoy = Envoy::start(CONFIG);
    let r = post_json(&envoy, "/try", b"{\"a\":1,\"a\":2}");
    assert_eq!(r.status, 200, "{}", r.text());
    // The body goes through whole (the dry-run header cannot follow: the headers went first).
    let seen = envoy.upstream.last().unwrap();
    assert_eq!(seen.body, b"{\"a\":1,\"a\":2}");
    // Declared too large: decided from the headers, so the header reaches the upstream.
    let r = post_json(&envoy, "/try", &[b' '; 100]);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = envoy.upstream.last().unwrap();
    assert_eq!(seen.header("x-api-guard-dry-run"), Some("body_too_large"));
    assert_eq!(seen.body.len(), 100);
    assert_eq!(envoy.prometheus_value("api_guard_dry_run_body_invalid"), 1);
    assert_eq!(
        envoy.prometheus_value("api_guard_dry_run_body_too_large"),
        1
    );
    let log = envoy.wait_access_log(2);
    assert!(
        log.iter().all(|e| e["api_guard_decision"] == "dry_run"),
        "{log:?}"
    );
}

#[test]
fn bad_body_configs_are_refused_by_envoy() {
    let log = Envoy::start_expect_refusal(
        r#"{"rules":[{"match":{"prefix":"/"},"body":{"json_schema":{"type":"objekt"}}}]}"#,
    );
    assert!(
        log.contains("rules[0].body.json_schema: the schema does not compile"),
        "{log}"
    );
}

#[test]
fn a_body_ending_in_trailers_is_still_checked() {
    let mut options = common::EnvoyOptions::new(CONFIG);
    options.http_protocol_options = Some(json!({"enable_trailers": true}));
    let envoy = Envoy::start_with(options);
    let send = |body: &str| {
        let mut stream = envoy.client().connect().unwrap();
        let request = format!(
            "POST /json HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\nx-checksum: 1\r\n\r\n",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        read_response(&mut BufReader::new(stream)).unwrap()
    };
    assert_problem(&send("{\"a\":1,\"a\":2}"), 400, "body_invalid");
    let r = send("{\"a\":1}");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(envoy.upstream.last().unwrap().body, b"{\"a\":1}");
}

#[test]
fn schema_validation_at_the_deepest_allowed_nesting_stays_up() {
    // A recursive schema over an instance nested 100 deep (the largest max_depth): boon and
    // serde_json recurse, within the wasm stack.
    let config = json!({"rules": [{"match": {"prefix": "/"}, "body": {"max_depth": 100, "json_schema": {
        "$defs": {"n": {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#/$defs/n"}}]}},
        "$ref": "#/$defs/n"
    }}}]});
    let envoy = Envoy::start(&config.to_string());
    let nested = |leaf: &str| format!("{}{leaf}{}", "[".repeat(99), "]".repeat(99));
    let r = post_json(&envoy, "/deep", nested("1").as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_json(&envoy, "/deep", nested("\"x\"").as_bytes());
    let problem = assert_problem(&r, 400, "body_schema");
    assert!(!problem["errors"].as_array().unwrap().is_empty());
    // 100 levels are allowed, 101 are not.
    let r = post_json(&envoy, "/deep", format!("[{}]", nested("1")).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_json(&envoy, "/deep", format!("[[{}]]", nested("1")).as_bytes());
    assert_problem(&r, 400, "body_invalid");
    assert_eq!(post_json(&envoy, "/deep", b"7").status, 200);
    assert!(!envoy.log().contains("panic"), "{}", envoy.log());
}
