//! Conformance: public corpora replayed through the filter in a real Envoy, with pass rates
//! printed. Run by `make conformance` (which sets `API_GUARD_CORPORA`); ignored otherwise,
//! because the corpora are not part of the repository (see ../shared/corpora/README.md).
//!
//! - JSON-Schema-Test-Suite, draft 2020-12: every test group's schema becomes a rule's
//!   `body.json_schema`, every test's data is POSTed to it: valid data must pass (200),
//!   invalid data must be refused (400 body_schema).
//! - JSONTestSuite parsing cases: `y_` must pass, `n_` must be refused, `i_` may go either way.
//! - libinjection's SQLi and XSS probe lists (detection rate) and its false-positive list
//!   (false-positive rate), each line sent as a query parameter to a `threats: block` rule.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::http::read_response;
use common::{Envoy, EnvoyOptions, Response};
use serde_json::{json, Value};

const THREADS: usize = 4;

fn corpora() -> PathBuf {
    let dir = std::env::var_os("API_GUARD_CORPORA")
        .map(PathBuf::from)
        .expect("set API_GUARD_CORPORA to the corpora folder (make conformance does)");
    assert!(dir.is_dir(), "no corpora at {}", dir.display());
    dir
}

/// A keep-alive HTTP/1.1 connection that reconnects when Envoy closes it.
struct Conn {
    port: u16,
    reader: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn new(port: u16) -> Conn {
        Conn { port, reader: None }
    }

    fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut bytes = format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\n").into_bytes();
        for (n, v) in headers {
            bytes.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        if method != "GET" {
            bytes.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        if method != "GET" {
            bytes.extend_from_slice(body);
        }
        let mut last_error = String::new();
        for _ in 0..3 {
            if self.reader.is_none() {
                let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                stream.set_nodelay(true).unwrap();
                self.reader = Some(BufReader::new(stream));
            }
            let reader = self.reader.as_mut().unwrap();
            if let Err(e) = reader.get_mut().write_all(&bytes) {
                last_error = e.to_string();
                self.reader = None;
                continue;
            }
            match read_response(reader) {
                Ok(r) => {
                    if r.header("connection")
                        .is_some_and(|c| c.eq_ignore_ascii_case("close"))
                    {
                        self.reader = None;
                    }
                    return r;
                }
                Err(e) => {
                    last_error = e.to_string();
                    self.reader = None;
                }
            }
        }
        panic!("{method} {target}: {last_error}");
    }
}

/// Runs `f` over `items` on `THREADS` keep-alive connections.
fn parallel<T: Sync, R: Send + Default + Clone>(
    port: u16,
    items: &[T],
    f: impl Fn(&mut Conn, &T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let mut results = vec![R::default(); items.len()];
    let chunks: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let mut conn = Conn::new(port);
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, f(&mut conn, item)));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, r) in chunks.into_iter().flatten() {
        results[i] = r;
    }
    results
}

fn rate(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn start(config: &Value) -> Envoy {
    Envoy::start_with(EnvoyOptions::new(&config.to_string()).concurrency(2))
}

#[test]
#[ignore = "needs the corpora: run `make conformance`"]
fn json_schema_test_suite_draft2020_12() {
    let began = Instant::now();
    let dir = corpora().join("json-schema-test-suite/draft2020-12");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    // (file, group index in the config or None when it does not compile, data, valid)
    let mut rules = Vec::new();
    let mut cases: Vec<(String, Option<usize>, Value, bool)> = Vec::new();
    for file in &files {
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        let groups: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for group in groups.as_array().unwrap() {
            let rule = json!({
                "name": format!("s{}", rules.len()),
                "match": {"path": format!("/s/{}", rules.len())},
                "body": {"json_schema": group["schema"], "max_depth": 100}
            });
            // A schema api-guard refuses (e.g. one that needs a remote document: nothing is
            // ever fetched) would refuse the whole configuration: its tests count as failed.
            let compiles =
                api_guard::config::compile(json!({"rules": [rule]}).to_string().as_bytes()).is_ok();
            let index = compiles.then(|| {
                rules.push(rule);
                rules.len() - 1
            });
            for test in group["tests"].as_array().unwrap() {
                cases.push((
                    name.clone(),
                    index,
                    test["data"].clone(),
                    test["valid"].as_bool().unwrap(),
                ));
            }
        }
    }
    let envoy = start(&json!({ "rules": rules }));
    let outcomes = parallel(envoy.port, &cases, |conn, (_, index, data, valid)| {
        let Some(index) = index else { return false };
        let r = conn.send(
            "POST",
            &format!("/s/{index}"),
            &[("content-type", "application/json")],
            data.to_string().as_bytes(),
        );
        if *valid {
            r.status == 200
        } else {
            r.status == 400 && r.json()["reason"] == "body_schema"
        }
    });
    let passed = outcomes.iter().filter(|ok| **ok).count();
    let uncompiled = cases.iter().filter(|c| c.1.is_none()).count();
    let mut failed_by_file: std::collections::BTreeMap<&str, usize> = Default::default();
    for (case, ok) in cases.iter().zip(&outcomes) {
        if !ok {
            *failed_by_file.entry(case.0.as_str()).or_default() += 1;
        }
    }
    println!(
        "JSON-Schema-Test-Suite draft 2020-12: {passed}/{} passed ({:.1}%), {} groups in one Envoy, \
         {uncompiled} tests in groups whose schema needs a remote document; failures by file: {failed_by_file:?} ({:.1} s)",
        cases.len(),
        rate(passed, cases.len()),
        rules.len(),
        began.elapsed().as_secs_f64()
    );
    assert!(rate(passed, cases.len()) >= 95.0, "below the 95% target");
}

#[test]
#[ignore = "needs the corpora: run `make conformance`"]
fn json_test_suite_parsing() {
    let began = Instant::now();
    let dir = corpora().join("json-test-suite-parsing/test_parsing");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let cases: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    let envoy = start(
        &json!({"rules": [{"match": {"prefix": "/"}, "body": {"content_types": ["application/json"]}}]}),
    );
    let statuses = parallel(envoy.port, &cases, |conn, (_, body)| {
        conn.send(
            "POST",
            "/parse",
            &[("content-type", "application/json")],
            body,
        )
        .status
    });
    let (mut y, mut y_ok, mut n, mut n_ok, mut i, mut i_accepted) = (0, 0, 0, 0, 0, 0);
    let mut wrong = Vec::new();
    for ((name, _), status) in cases.iter().zip(&statuses) {
        assert!(*status == 200 || *status == 400, "{name}: status {status}");
        if name.starts_with("y_") {
            y += 1;
            if *status == 200 {
                y_ok += 1
            } else {
                wrong.push(name.as_str())
            }
        } else if name.starts_with("n_") {
            n += 1;
            if *status == 400 {
                n_ok += 1
            } else {
                wrong.push(name.as_str())
            }
        } else {
            i += 1;
            if *status == 200 {
                i_accepted += 1
            }
        }
    }
    println!(
        "JSONTestSuite parsing: y_ accepted {y_ok}/{y} ({:.1}%), n_ refused {n_ok}/{n} ({:.1}%), \
         i_ accepted {i_accepted}/{i} (either is allowed); not as expected: {wrong:?} ({:.1} s)",
        rate(y_ok, y),
        rate(n_ok, n),
        began.elapsed().as_secs_f64()
    );
    assert!(!envoy.log().contains("panic"));
}

/// A corpus line (URL-encoded user input) made safe for a request target: bytes that may
/// not appear there are percent-encoded, so the filter decodes exactly the line.
fn as_query_value(line: &str) -> String {
    let mut out = String::new();
    for b in line.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn lines(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs the corpora: run `make conformance`"]
fn libinjection_probes_and_false_positives() {
    let began = Instant::now();
    let dir = corpora().join("libinjection");
    let envoy = start(&json!({"rules": [{"match": {"prefix": "/"}, "threats": "block"}]}));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut totals: std::collections::BTreeMap<&str, (usize, usize, usize)> = Default::default();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let class = if name.starts_with("sqli") {
            "sqli"
        } else if name.starts_with("xss") {
            "xss"
        } else {
            "false_positives"
        };
        let probes = lines(file);
        let reasons = parallel(envoy.port, &probes, |conn, line| {
            let r = conn.send(
                "GET",
                &format!("/search?q={}", as_query_value(line)),
                &[],
                b"",
            );
            match r.status {
                403 => r.json()["reason"].as_str().unwrap_or("?").to_string(),
                200 => "-".to_string(),
                // Envoy itself refuses a few malformed request lines.
                other => format!("http_{other}"),
            }
        });
        let blocked = reasons.iter().filter(|r| r.starts_with("threat_")).count();
        let own_class = reasons
            .iter()
            .filter(|r| **r == format!("threat_{class}"))
            .count();
        let entry = totals.entry(class).or_default();
        entry.0 += probes.len();
        entry.1 += blocked;
        entry.2 += own_class;
        let other: Vec<&String> = reasons.iter().filter(|r| r.starts_with("http_")).collect();
        println!(
            "  {name}: {blocked}/{} blocked ({:.1}%){}",
            probes.len(),
            rate(blocked, probes.len()),
            if other.is_empty() {
                String::new()
            } else {
                format!(", refused by Envoy: {}", other.len())
            }
        );
    }
    let (sqli_n, sqli_blocked, sqli_own) = totals["sqli"];
    let (xss_n, xss_blocked, xss_own) = totals["xss"];
    let (fp_n, fp_blocked, _) = totals["false_positives"];
    println!(
        "libinjection corpora: SQLi detected {sqli_blocked}/{sqli_n} ({:.1}%; as threat_sqli {:.1}%), \
         XSS detected {xss_blocked}/{xss_n} ({:.1}%; as threat_xss {:.1}%), \
         false positives {fp_blocked}/{fp_n} ({:.1}%) ({:.1} s)",
        rate(sqli_blocked, sqli_n),
        rate(sqli_own, sqli_n),
        rate(xss_blocked, xss_n),
        rate(xss_own, xss_n),
        rate(fp_blocked, fp_n),
        began.elapsed().as_secs_f64()
    );
    assert!(!envoy.log().contains("panic"));
    assert!(
        rate(sqli_blocked, sqli_n) >= 90.0,
        "SQLi detection below 90%"
    );
    assert!(rate(xss_blocked, xss_n) >= 90.0, "XSS detection below 90%");
    assert!(rate(fp_blocked, fp_n) <= 5.0, "false positives above 5%");
}
