//! A real global rate limit service for the tests: `redis-server` from PATH, and
//! api-guard-test-rls (tests/rls: limitador's limits with counters in that Redis, serving
//! Envoy's RateLimitService over gRPC). Both run as child processes on loopback and are killed on drop; a failing test
//! prints their logs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{free_port, leave_scratch_dir, root, scratch_dir};

/// The rate limit service binary, built by `make rls-server` (a debug build).
pub fn rls_binary() -> PathBuf {
    let path = root().join("tests/rls/target/debug/api-guard-test-rls");
    assert!(
        path.exists(),
        "rate limit service not found at {}: run `make rls-server` (make test does)",
        path.display()
    );
    path
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A `redis-server` on a free loopback port, without persistence, in a scratch directory.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    pub fn start() -> Redis {
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = scratch_dir("redis");
            let port = free_port();
            let log = std::fs::File::create(dir.join("redis.log")).unwrap();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&dir)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run redis-server ({e}): run `make redis` (make test does)")
                });
            let mut redis = Redis {
                child: Some(child),
                port,
                dir,
            };
            if redis.wait_ready() {
                return redis;
            }
            last_log = redis.log();
            kill(&mut redis.child);
        }
        panic!("redis-server did not start. Log:\n{last_log}");
    }

    /// Waits (up to 10 s) until it answers PING; false if it exited or never answered.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// True when Redis answers PING.
    pub fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills Redis now (to test a service whose store is gone).
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        kill(&mut self.child);
        leave_scratch_dir("Redis", &self.dir, || self.log());
    }
}

/// A running api-guard-test-rls. Killed on drop; its log is printed if the test is failing.
pub struct Rls {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Rls {
    /// Starts the service on a free loopback port, counters in `redis_url`. Each limit is
    /// (domain, policy, max, seconds): at most `max` hits per `seconds` window for each
    /// `client` (and `rule`, when the descriptor has one) of descriptors whose `policy` entry
    /// is `policy`, in requests of `domain`. `delay_ms` delays every answer; `headers` adds
    /// the `ratelimit-limit`/`-remaining`/`-reset` headers to every answer.
    pub fn start(
        redis_url: &str,
        limits: &[(&str, &str, u64, u64)],
        delay_ms: Option<u64>,
        headers: bool,
    ) -> Rls {
        let dir = scratch_dir("rls");
        let log = std::fs::File::create(dir.join("rls.log")).unwrap();
        let mut command = Command::new(rls_binary());
        command
            .args(["--listen", "127.0.0.1:0", "--redis", redis_url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (domain, policy, max, seconds) in limits {
            command
                .arg("--limit")
                .arg(format!("{domain}/{policy}={max}/{seconds}"));
        }
        if let Some(ms) = delay_ms {
            command.args(["--delay-ms", &ms.to_string()]);
        }
        if headers {
            command.arg("--headers");
        }
        let mut child = command.spawn().unwrap();
        // The first line on stdout is `listening on 127.0.0.1:PORT`.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut rls = Rls {
            child: Some(child),
            port: 0,
            dir,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                rls.port = line
                    .strip_prefix("listening on ")
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected first line {line:?}:\n{}", rls.log()));
            }
            Err(_) => panic!("api-guard-test-rls did not start. Log:\n{}", rls.log()),
        }
        rls
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// A static Envoy cluster (HTTP/2, as gRPC needs) to this service.
    pub fn cluster(&self, name: &str) -> Value {
        rls_cluster(name, self.port)
    }

    /// One ShouldRateLimit call with one descriptor of `entries`; see [`probe`].
    pub fn probe(&self, domain: &str, entries: &[(&str, &str)], hits: Option<u32>) -> Probe {
        probe(self.port, domain, entries, hits)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rls.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Rls {
    fn drop(&mut self) {
        kill(&mut self.child);
        leave_scratch_dir("api-guard-test-rls", &self.dir, || self.log());
    }
}

/// A static Envoy cluster (HTTP/2) to a rate limit service on a loopback port.
pub fn rls_cluster(name: &str, port: u16) -> Value {
    let mut cluster = super::loopback_cluster(name, port);
    cluster["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} }
        }
    });
    cluster
}

/// What `api-guard-test-rls probe` printed.
#[derive(Debug)]
pub struct Probe {
    /// The process exited 0: `json` is the response; else `json["error"]` has the gRPC
    /// status (`code` as tonic names it, e.g. "Unavailable", and `message`).
    pub ok: bool,
    /// `{"overall_code": "OK"|"OVER_LIMIT", "statuses": [{"code", "current_limit":
    /// {"requests_per_unit", "unit"} or null, "limit_remaining", "duration_until_reset":
    /// {"seconds", "nanos"} or null}], "response_headers_to_add": [{"key", "value"}],
    /// "elapsed_ms"}`.
    pub json: Value,
}

impl Probe {
    /// `overall_code`, or `error.code` when the call failed.
    pub fn code(&self) -> &str {
        if self.ok {
            self.json["overall_code"].as_str().unwrap_or("")
        } else {
            self.json["error"]["code"].as_str().unwrap_or("")
        }
    }

    /// The first (only) descriptor status.
    pub fn status(&self) -> &Value {
        &self.json["statuses"][0]
    }

    /// A `response_headers_to_add` value.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.json["response_headers_to_add"]
            .as_array()?
            .iter()
            .find(|h| h["key"] == key)
            .and_then(|h| h["value"].as_str())
    }
}

/// One ShouldRateLimit call to the service on `port` by `api-guard-test-rls probe`, with one
/// descriptor of `entries` (in order) and `hits_addend` = `hits` (unset: 0, counted as 1).
pub fn probe(port: u16, domain: &str, entries: &[(&str, &str)], hits: Option<u32>) -> Probe {
    let mut command = Command::new(rls_binary());
    command
        .arg("probe")
        .args(["--target", &format!("127.0.0.1:{port}"), "--domain", domain]);
    for (key, value) in entries {
        command.arg("--entry").arg(format!("{key}={value}"));
    }
    if let Some(hits) = hits {
        command.args(["--hits", &hits.to_string()]);
    }
    let output = command.stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "probe printed no JSON ({e}): {stdout:?}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    Probe {
        ok: output.status.success(),
        json,
    }
}
