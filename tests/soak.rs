//! `make soak`: mixed traffic at about 70% of the measured maximum for SOAK_SECONDS (default
//! 600): no unexpected status, and Envoy's memory flat within 5% after warm-up.
//! Ignored by `make test` (it is long); `make soak` runs it.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http::read_response, Envoy, EnvoyOptions};
use sha2::{Digest, Sha256};

const KEY: &str = "ak_soak_2f9c7d1e5b3a";

fn config() -> String {
    let digest: String = Sha256::digest(KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        r#"{{
        "api_keys": {{ "from_headers": ["x-api-key"], "client_header": "x-api-client",
                       "clients": [{{ "id": "soak", "sha256": "{digest}" }}] }},
        "rate_limits": {{ "generous": {{ "requests": 1000000, "per": "second" }},
                          "tight": {{ "requests": 5, "per": "second" }} }},
        "rules": [
          {{ "name": "keyed", "match": {{ "prefix": "/keyed" }}, "auth": ["api_key"], "rate_limit": "generous" }},
          {{ "name": "limited", "match": {{ "prefix": "/limited" }}, "rate_limit": "tight" }},
          {{ "name": "public", "match": {{ "prefix": "/" }} }}
        ]}}"#
    )
}

/// The traffic mix: (request, statuses that are expected for it).
fn request(i: u64) -> (String, &'static [u16]) {
    match i % 10 {
        0..=5 => (
            "GET /public/items HTTP/1.1\r\nhost: soak\r\n\r\n".into(),
            &[200],
        ),
        6 | 7 => (
            format!("GET /keyed/orders HTTP/1.1\r\nhost: soak\r\nx-api-key: {KEY}\r\n\r\n"),
            &[200],
        ),
        8 => (
            "GET /keyed/orders HTTP/1.1\r\nhost: soak\r\n\r\n".into(),
            &[401],
        ),
        _ => (
            "GET /limited/search HTTP/1.1\r\nhost: soak\r\n\r\n".into(),
            &[200, 429],
        ),
    }
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    unexpected: AtomicU64,
    errors: AtomicU64,
}

/// One keep-alive client: paced to `per_second` when given, else as fast as it can go.
fn client(port: u16, stop: Arc<AtomicBool>, tally: Arc<Tally>, seed: u64, per_second: Option<f64>) {
    let start = Instant::now();
    let mut i = seed;
    let mut connection: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Some(rate) = per_second {
            let due = start + Duration::from_secs_f64((i - seed) as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        if connection.is_none() {
            let stream = common::Client::new(port).connect().unwrap();
            let reader = BufReader::new(stream.try_clone().unwrap());
            connection = Some((stream, reader));
        }
        let (stream, reader) = connection.as_mut().unwrap();
        let (bytes, expected) = request(i);
        i += 1;
        let answer = stream
            .write_all(bytes.as_bytes())
            .and_then(|_| read_response(reader));
        tally.sent.fetch_add(1, Ordering::Relaxed);
        match answer {
            Ok(r) => {
                if !expected.contains(&r.status) {
                    tally.unexpected.fetch_add(1, Ordering::Relaxed);
                }
                if r.header("connection") == Some("close") {
                    connection = None;
                }
            }
            Err(_) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                connection = None;
            }
        }
    }
}

fn run(
    envoy: &Envoy,
    threads: u64,
    seconds: f64,
    per_thread_rate: Option<f64>,
    mut each_second: impl FnMut(f64),
) -> Arc<Tally> {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, tally, port) = (stop.clone(), tally.clone(), envoy.port);
            std::thread::spawn(move || client(port, stop, tally, t * 7, per_thread_rate))
        })
        .collect();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        std::thread::sleep(Duration::from_secs(1));
        each_second(start.elapsed().as_secs_f64());
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    tally
}

#[test]
#[ignore = "long: run by `make soak` (SOAK_SECONDS, default 600)"]
fn soak() {
    let seconds: f64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600.0);
    let envoy = Envoy::start_with(EnvoyOptions::new(&config()).concurrency(2));
    let threads = 8;

    // The maximum: unpaced for a few seconds.
    let probe_seconds = 5.0;
    let max = run(&envoy, threads, probe_seconds, None, |_| {});
    let max_rps = max.sent.load(Ordering::Relaxed) as f64 / probe_seconds;
    let target_rps = 0.7 * max_rps;

    // The soak, paced at 70%, sampling Envoy's resident memory every second.
    let warm_up = (seconds * 0.1).max(10.0);
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let tally = run(
        &envoy,
        threads,
        seconds,
        Some(target_rps / threads as f64),
        |t| {
            if let Some(rss) = envoy.rss_bytes() {
                samples.push((t, rss));
            }
        },
    );
    let sent = tally.sent.load(Ordering::Relaxed);
    let unexpected = tally.unexpected.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed) + max.errors.load(Ordering::Relaxed);
    let after: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= warm_up)
        .map(|(_, m)| *m)
        .collect();
    let (low, high) = (*after.iter().min().unwrap(), *after.iter().max().unwrap());
    let drift = (high - low) as f64 / low as f64;
    let report = format!(
        "soak: {seconds:.0} s, 2 workers, {threads} keep-alive clients\n\
         max measured: {max_rps:.0} req/s; soak target {target_rps:.0} req/s, achieved {:.0} req/s\n\
         requests: {sent}, unexpected statuses: {unexpected}, transport errors: {errors}\n\
         Envoy RSS after {warm_up:.0} s warm-up: min {:.1} MiB, max {:.1} MiB, spread {:.2}%\n",
        sent as f64 / seconds,
        low as f64 / 1048576.0,
        high as f64 / 1048576.0,
        drift * 100.0,
    );
    println!("{report}");
    let _ = std::fs::write(common::root().join("target/soak-report.txt"), &report);
    assert_eq!(unexpected, 0, "{report}");
    assert_eq!(errors, 0, "{report}");
    assert!(drift <= 0.05, "memory not flat: {report}");
}
