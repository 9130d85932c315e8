//! What the upstream sees (issue #14 §4), in a real Envoy: no owned header in any spelling,
//! no credential that failed or was not used, credential parameters stripped by decoded
//! name, claim arrays that cannot be confused, CORS preflights, and the body window with and
//! without Envoy's `buffer` filter before api-guard.

mod common;

#[path = "../src/policy/auth/jwt/mint.rs"]
mod mint;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{bootstrap, scratch_dir, Envoy, EnvoyOptions, Upstream};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ISS: &str = "https://idp.test";
const KEY: &str = "partner-key-0123456789";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sha_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn token(claims: Value) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": mint::default_kid("RS256")});
    mint::token(&header, &claims)
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "orders", "sub": "alice", "exp": now() + 600, "iat": now(),
           "scope": "orders:read"})
}

/// A rule that takes a JWT (header, query or cookie) or an API key (header or query), a
/// public rule, and owned headers from `claim_to_headers`, `payload_header` and `client_header`.
fn config(extra_top: Value, extra_rule: Value) -> String {
    let mut rule = json!({"name": "api", "match": {"prefix": "/api"}, "auth": ["corp", "api_key"]});
    for (k, v) in extra_rule.as_object().unwrap() {
        rule[k] = v.clone();
    }
    let mut config = json!({
        "jwt_providers": {"corp": {
            "issuer": ISS,
            "audiences": ["orders"],
            "local_jwks": serde_json::from_str::<Value>(mint::JWKS).unwrap(),
            "claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"},
                                 {"claim": "roles", "header": "x-jwt-roles"}],
            "payload_header": "x-jwt-payload",
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "from_params": ["access_token"],
            "from_cookies": ["session"]
        }},
        "api_keys": {
            "from_headers": ["x-api-key"], "from_params": ["api_key"],
            "client_header": "x-api-client",
            "clients": [{"id": "partner-a", "sha256": sha_hex(KEY)}]
        },
        "rules": [rule, {"name": "public", "match": {"prefix": "/"}}]
    });
    for (k, v) in extra_top.as_object().unwrap() {
        config[k] = v.clone();
    }
    config.to_string()
}

fn start() -> Envoy {
    Envoy::start(&config(json!({}), json!({})))
}

#[test]
fn owned_headers_never_reach_the_upstream_in_any_spelling() {
    let envoy = start();
    let forged = [
        ("x_jwt_sub", "admin"),
        ("X-Jwt-Sub", "admin"),
        ("x-jwt_roles", "admin"),
        ("X_JWT_PAYLOAD", "eyJzdWIiOiJhZG1pbiJ9"),
        ("x_api_client", "partner-a"),
        ("x_api_guard_client", "admin"),
        ("X_Api_Guard_Dry_Run", "none"),
    ];
    let owned = |name: &str| {
        let folded = name.to_ascii_lowercase().replace('_', "-");
        folded.starts_with("x-api-guard-")
            || ["x-jwt-sub", "x-jwt-roles", "x-jwt-payload", "x-api-client"]
                .contains(&folded.as_str())
    };
    // On a public route, on an authenticated one (API key) and one with a valid token.
    let bearer = format!("Bearer {}", token(claims()));
    let cases: [(&str, Vec<(&str, &str)>); 3] = [
        ("/public", vec![]),
        ("/api/orders", vec![("x-api-key", KEY)]),
        ("/api/orders", vec![("authorization", bearer.as_str())]),
    ];
    for (path, credential) in cases {
        let mut headers = forged.to_vec();
        headers.extend(credential.iter().copied());
        let r = envoy.client().request("GET", path, &headers, None).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let seen = envoy.upstream.last().unwrap();
        let leaked: Vec<&(String, String)> = seen
            .headers
            .iter()
            .filter(|(n, v)| owned(n) && (n.contains('_') || v == "admin" || v == "none"))
            .collect();
        assert!(
            leaked.is_empty(),
            "{path}: forged headers reached the upstream: {leaked:?}"
        );
        // What api-guard sets itself still arrives, once, in its own spelling.
        if credential.first().is_some_and(|(n, _)| *n == "x-api-key") {
            assert_eq!(seen.header("x-api-client"), Some("partner-a"));
        }
        if credential
            .first()
            .is_some_and(|(n, _)| *n == "authorization")
        {
            assert_eq!(seen.header("x-jwt-sub"), Some("alice"));
        }
        let owned_count = seen.headers.iter().filter(|(n, _)| owned(n)).count();
        assert!(owned_count <= 2, "{path}: {:?}", seen.headers);
    }
}

/// The same over HTTP/2 (curl with prior knowledge), where header names arrive lower case.
#[test]
fn owned_headers_are_stripped_over_http2_too() {
    let envoy = start();
    let url = format!("http://127.0.0.1:{}/api/orders?api%5fkey={KEY}", envoy.port);
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--http2-prior-knowledge",
        ])
        .args(["-H", "x_jwt_sub: admin", "-H", "x_api_guard_client: admin"])
        .args(["-H", "x_api_client: admin", "-H", "x_api_key: forged"])
        .arg(&url)
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let seen = envoy.upstream.last().unwrap();
    assert_eq!(seen.path, "/api/orders");
    assert_eq!(seen.header("x-api-client"), Some("partner-a"));
    let underscored: Vec<&(String, String)> = seen
        .headers
        .iter()
        .filter(|(n, _)| n.contains('_'))
        .collect();
    assert!(underscored.is_empty(), "{underscored:?}");
}

#[test]
fn a_failed_credential_never_rides_along_a_valid_one() {
    let envoy = start();
    // A forged alg:none token (sub admin) next to a valid API key: the key authenticates,
    // and the upstream sees no authorization header, no token parameter, no token cookie.
    let none = format!(
        "{}.{}.",
        mint::b64(br#"{"alg":"none","typ":"JWT"}"#),
        mint::b64(br#"{"iss":"https://idp.test","sub":"admin","scope":"admin"}"#)
    );
    let bearer = format!("Bearer {none}");
    let r = envoy
        .client()
        .request(
            "GET",
            "/api/orders?access%5Ftoken=forged&x=1",
            &[
                ("authorization", &bearer),
                ("x-api-key", KEY),
                ("cookie", "session=forged; theme=dark"),
            ],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = envoy.upstream.last().unwrap();
    assert_eq!(seen.header("authorization"), None, "{:?}", seen.headers);
    assert_eq!(seen.header("x-api-key"), None);
    assert_eq!(seen.header("x-api-client"), Some("partner-a"));
    assert_eq!(seen.path, "/api/orders?x=1");
    assert_eq!(seen.header("cookie"), Some("theme=dark"));

    // A valid token wins: an API key sent with it (never checked) is removed, in any spelling.
    let bearer = format!("Bearer {}", token(claims()));
    let r = envoy
        .client()
        .request(
            "GET",
            "/api/orders?api%5Fkey=forged",
            &[
                ("authorization", &bearer),
                ("x-api-key", "forged"),
                ("x_api_key", "forged"),
            ],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = envoy.upstream.last().unwrap();
    assert_eq!(seen.header("x-api-key"), None, "{:?}", seen.headers);
    assert_eq!(seen.header("x_api_key"), None);
    assert_eq!(seen.path, "/api/orders");
    assert_eq!(seen.header("x-jwt-sub"), Some("alice"));
}

#[test]
fn credential_parameters_are_matched_and_stripped_by_decoded_name() {
    let envoy = start();
    // A key under an encoded name is a key: alone it authenticates and is stripped.
    for name in ["api%5Fkey", "api%5fkey", "%61pi_key"] {
        let path = format!("/api/orders?{name}={KEY}&x=1");
        let r = envoy.client().get(&path).unwrap();
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let seen = envoy.upstream.last().unwrap();
        assert_eq!(seen.path, "/api/orders?x=1", "{name}");
    }
    // Next to a valid key in its header, a second one under an encoded name is ambiguous:
    // refused, so `api_key=EVIL` never reaches the upstream's framework.
    let before = envoy.upstream.count();
    let r = envoy
        .client()
        .request(
            "GET",
            "/api/orders?api%5Fkey=EVIL",
            &[("x-api-key", KEY)],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["reason"], "api_key_unknown");
    assert_eq!(envoy.upstream.count(), before);
    // Names PHP reads as `api_key` are stripped next to a valid key in its header.
    let r = envoy
        .client()
        .request(
            "GET",
            "/api/orders?api.key=EVIL&api+key=EVIL&api_key[]=EVIL&z=3",
            &[("x-api-key", KEY)],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(envoy.upstream.last().unwrap().path, "/api/orders?z=3");
    // A JWT parameter under an encoded name is verified, and stripped when it passed.
    let path = format!("/api/orders?access%5Ftoken={}&y=2", token(claims()));
    let r = envoy.client().get(&path).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(envoy.upstream.last().unwrap().path, "/api/orders?y=2");
    let r = envoy
        .client()
        .get("/api/orders?access%5Ftoken=forged")
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn claim_arrays_are_sent_as_json_so_a_comma_cannot_split_an_element() {
    let envoy = start();
    let mut one = claims();
    one["roles"] = json!(["reader,admin"]);
    let mut two = claims();
    two["roles"] = json!(["reader", "admin"]);
    let mut seen_values = Vec::new();
    for claims in [one, two] {
        let bearer = format!("Bearer {}", token(claims));
        let r = envoy
            .client()
            .request("GET", "/api/orders", &[("authorization", &bearer)], None)
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = envoy.upstream.last().unwrap();
        let value = seen.header("x-jwt-roles").unwrap().to_string();
        let parsed: Value = serde_json::from_str(&value).unwrap();
        seen_values.push((value, parsed));
    }
    assert_eq!(seen_values[0].0, r#"["reader,admin"]"#);
    assert_eq!(seen_values[1].0, r#"["reader","admin"]"#);
    assert_eq!(seen_values[0].1.as_array().unwrap().len(), 1);
    assert_eq!(seen_values[1].1.as_array().unwrap().len(), 2);
}

fn preflight(envoy: &Envoy, extra: &[(&str, &str)], body: Option<&[u8]>) -> common::Response {
    let mut headers = vec![
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
    ];
    headers.extend(extra.iter().copied());
    envoy
        .client()
        .request("OPTIONS", "/api/orders", &headers, body)
        .unwrap()
}

#[test]
fn cors_preflights_authenticate_by_default_and_pass_bodiless_when_allowed() {
    // Default: a preflight without a credential is refused like any request.
    let envoy = start();
    let r = preflight(&envoy, &[], None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(envoy.upstream.count(), 0);
    drop(envoy);

    // `allow`, on the rule or at the top level: a bodiless preflight passes, with no
    // credential (forged or not) and no body; one with a body is authenticated.
    for (top, rule) in [
        (json!({}), json!({"cors_preflight": "allow"})),
        (json!({"cors_preflight": "allow"}), json!({})),
    ] {
        let envoy = Envoy::start(&config(top.clone(), rule.clone()));
        let r = preflight(
            &envoy,
            &[("authorization", "Bearer forged"), ("x_api_key", "forged")],
            None,
        );
        assert_eq!(r.status, 200, "{top} {rule}: {}", r.text());
        let seen = envoy.upstream.last().unwrap();
        assert_eq!(seen.method, "OPTIONS");
        assert!(seen.body.is_empty());
        assert_eq!(seen.header("authorization"), None, "{:?}", seen.headers);
        assert_eq!(seen.header("x_api_key"), None);
        let count = envoy.upstream.count();
        let r = preflight(&envoy, &[("content-type", "text/plain")], Some(b"hello"));
        assert_eq!(r.status, 401, "a preflight with a body: {}", r.text());
        assert_eq!(envoy.upstream.count(), count);
        // An OPTIONS that is not a preflight still authenticates.
        let r = envoy
            .client()
            .request(
                "OPTIONS",
                "/api/orders",
                &[("origin", "https://app.example")],
                None,
            )
            .unwrap();
        assert_eq!(r.status, 401);
    }
    // The rule's own choice wins over the top level's.
    let envoy = Envoy::start(&config(
        json!({"cors_preflight": "allow"}),
        json!({"cors_preflight": "authenticate"}),
    ));
    assert_eq!(preflight(&envoy, &[], None).status, 401);
}

#[test]
fn a_preflight_is_decided_by_the_rule_of_the_method_it_asks_about() {
    // The write rule allows preflights and refuses other methods; without this, an OPTIONS
    // preflight would get the write rule's 405 (or fall to another rule).
    let envoy = Envoy::start(&config(
        json!({}),
        json!({"match": {"prefix": "/api", "methods": ["POST"]}, "other_methods": "deny",
               "cors_preflight": "allow"}),
    ));
    let r = preflight(&envoy, &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(envoy.upstream.last().unwrap().method, "OPTIONS");
    let r = envoy
        .client()
        .request(
            "OPTIONS",
            "/api/orders",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "DELETE"),
            ],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 405, "{}", r.text());
}

#[test]
fn bad_cors_preflight_values_are_refused() {
    for (top, rule, refusal) in [
        (
            json!({"cors_preflight": "bypass"}),
            json!({}),
            "cors_preflight: unknown variant `bypass`, expected `authenticate` or `allow`",
        ),
        (
            json!({"cors_preflight": true}),
            json!({}),
            "cors_preflight: unexpected value",
        ),
        (
            json!({}),
            json!({"cors_preflight": "skip"}),
            "rules[0].cors_preflight: unknown variant `skip`",
        ),
        (
            json!({}),
            json!({"cors_preflight": 1}),
            "rules[0].cors_preflight: unexpected value",
        ),
    ] {
        let log = Envoy::start_expect_refusal(&config(top, rule));
        assert!(
            log.contains(&format!("configuration refused: {refusal}")),
            "{refusal}: {log}"
        );
    }
}

/// A raw upstream that records when each request's header block arrived, before any body.
struct HeadRecorder {
    port: u16,
    heads: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl HeadRecorder {
    fn start() -> HeadRecorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&heads);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve_heads(stream, &log));
            }
        });
        HeadRecorder { port, heads }
    }

    fn heads(&self) -> Vec<(Instant, String)> {
        self.heads.lock().unwrap().clone()
    }
}

/// Records each request head as it arrives, then reads its body (length or chunked) and
/// answers 200.
fn serve_heads(stream: TcpStream, log: &Mutex<Vec<(Instant, String)>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        log.lock().unwrap().push((Instant::now(), head.clone()));
        let lower = head.to_ascii_lowercase();
        if let Some(len) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        } else if lower.contains("transfer-encoding: chunked") {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                    return;
                };
                let mut chunk = vec![0; n + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
            }
        }
        let reply = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// An Envoy in front of a [`HeadRecorder`], with `before` placed before api-guard and
/// `after` between api-guard and the router.
fn start_recorded(
    plugin_config: &str,
    before: Vec<Value>,
    after: Vec<Value>,
) -> (Envoy, HeadRecorder) {
    let recorder = HeadRecorder::start();
    let mut options = EnvoyOptions::new(plugin_config);
    options.filters_before = before;
    let dir = scratch_dir("upstream-window");
    let access_log = dir.join("access.log");
    let config = dir.join("envoy.json");
    let mut boot = bootstrap(&options, recorder.port, &access_log);
    let filters = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array_mut()
        .unwrap();
    let router = filters.pop().unwrap();
    filters.extend(after);
    filters.push(router);
    std::fs::write(&config, serde_json::to_vec_pretty(&boot).unwrap()).unwrap();
    let envoy = Envoy::launch(&config, &dir, 1, &[], Upstream::start())
        .unwrap_or_else(|log| panic!("{log}"));
    (envoy, recorder)
}

fn buffer_filter(max_request_bytes: u32) -> Value {
    json!({
        "name": "envoy.filters.http.buffer",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": max_request_bytes
        }
    })
}

const BODY_RULE: &str = r#"{"rules":[{"name":"write","match":{"prefix":"/api"},
    "body":{"max_bytes":65536,"content_types":["application/json"],
            "json_schema":{"type":"object","properties":{"qty":{"type":"integer","maximum":100}}}}}]}"#;

/// Sends a chunked JSON body in two parts, `delay` apart, tagged `x-seq: <seq>` (so its head
/// is told from another's however late the recorder logs it); returns the status, the
/// instant the last part was sent and the instant the answer came.
fn slow_post(
    envoy: &Envoy,
    seq: usize,
    (first, last): (&str, &str),
    delay: Duration,
) -> (u16, Instant, Instant) {
    let mut stream = envoy.client().connect().unwrap();
    let head = format!(
        "POST /api/orders HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nx-seq: {seq}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .write_all(format!("{:x}\r\n{first}\r\n", first.len()).as_bytes())
        .unwrap();
    std::thread::sleep(delay);
    let last_sent = Instant::now();
    stream
        .write_all(format!("{:x}\r\n{last}\r\n0\r\n\r\n", last.len()).as_bytes())
        .unwrap();
    let response = common::http::read_response(&mut BufReader::new(stream)).unwrap();
    (response.status, last_sent, Instant::now())
}

/// The wasm build lets the headers go on while it waits for the body: without a buffer
/// filter a raw upstream sees the head of a request api-guard then refuses, as long before as
/// the client likes. Envoy's `buffer` filter before api-guard takes the delay out of the
/// client's hands but does not close the window: on a warm upstream connection the router
/// writes the head in the same event-loop turn in which api-guard then refuses the body. The
/// buffer filter after api-guard (between it and the router) closes it: the router sees
/// nothing until api-guard has passed the whole body.
#[test]
fn the_buffer_filter_after_api_guard_closes_the_window_before_a_body_refusal() {
    let delay = Duration::from_millis(1500);
    let refused = (r#"{"qty":"#, "100000}");
    let accepted = (r#"{"qty":"#, "1}");
    // One accepted request (the upstream connection is warm afterwards), then refused ones.
    // Each head seen: whether it came before the client sent the rest of its body, and how
    // long before the refusal it came.
    let run = |envoy: &Envoy, recorder: &HeadRecorder, delay: Duration| {
        let mut seen_heads: Vec<(bool, Duration)> = Vec::new();
        let mut seq = 0;
        let mut refused_post = || {
            seq += 1;
            let (status, last_sent, answered) = slow_post(envoy, seq, refused, delay);
            assert_eq!(status, 400);
            let tag = format!("x-seq: {seq}\r\n");
            if let Some((at, _)) = recorder
                .heads()
                .iter()
                .find(|(_, head)| head.to_ascii_lowercase().contains(&tag))
            {
                seen_heads.push((*at < last_sent, answered.duration_since(*at)));
            }
        };
        refused_post();
        let cold = recorder.heads().len();
        let (status, _, _) = slow_post(envoy, 0, accepted, Duration::from_millis(50));
        assert_eq!(status, 200);
        for _ in 0..8 {
            refused_post();
        }
        (cold, seen_heads)
    };

    // Without a buffer filter: every head is at the upstream before the client even sent
    // the rest of its body.
    let (envoy, recorder) = start_recorded(BODY_RULE, Vec::new(), Vec::new());
    let (cold, heads) = run(&envoy, &recorder, delay);
    assert_eq!(cold, 1, "the upstream saw the head of the refused request");
    assert_eq!(heads.len(), 9);
    assert!(heads.iter().all(|(early, _)| *early), "{heads:?}");
    eprintln!("no buffer filter: 9 of 9 refused heads seen: {heads:?}");
    drop(envoy);

    // Before api-guard: no head comes before the whole body did (the client's delay is out
    // of it), but one that finds a warm upstream connection still comes, in the turn of the
    // refusal.
    let (envoy, recorder) = start_recorded(BODY_RULE, vec![buffer_filter(65536)], Vec::new());
    let (cold, heads) = run(&envoy, &recorder, delay);
    assert_eq!(cold, 0, "{:?}", recorder.heads());
    assert!(heads.iter().all(|(early, _)| !early), "{heads:?}");
    eprintln!(
        "buffer before api-guard: {} of 9 refused heads seen: {heads:?}",
        heads.len()
    );
    drop(envoy);

    // After api-guard: nothing of a refused request, cold or warm, however slow the body.
    let short = Duration::from_millis(100);
    let (envoy, recorder) = start_recorded(BODY_RULE, Vec::new(), vec![buffer_filter(65536)]);
    let (cold, heads) = run(&envoy, &recorder, short);
    assert_eq!(cold, 0, "{:?}", recorder.heads());
    assert!(heads.is_empty(), "{heads:?}");
    let (status, _, _) = slow_post(&envoy, 100, refused, delay);
    assert_eq!(status, 400);
    assert_eq!(
        recorder.heads().len(),
        1,
        "only the accepted request: {:?}",
        recorder.heads()
    );
    eprintln!("buffer after api-guard: 0 of 10 refused heads seen");
}

/// The buffer filter answers 413 itself above its `max_request_bytes`, before api-guard
/// sees the body: set it at least as large as the largest `body.max_bytes`.
#[test]
fn the_buffer_filter_limit_answers_before_body_max_bytes() {
    let (envoy, recorder) = start_recorded(BODY_RULE, Vec::new(), vec![buffer_filter(1024)]);
    let big = format!(r#"{{"qty":1,"pad":"{}"}}"#, "x".repeat(2048));
    let r = envoy
        .client()
        .post_json("/api/orders", big.as_bytes())
        .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    // Envoy's own reply, not api-guard's problem+json (body.max_bytes is 64 KiB here).
    assert_ne!(r.header("content-type"), Some("application/problem+json"));
    assert!(recorder.heads().is_empty());
    let small = br#"{"qty":1}"#;
    let r = envoy.client().post_json("/api/orders", small).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}
