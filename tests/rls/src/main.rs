//! api-guard-test-rls: a real Envoy rate limit service (limitador, counters in Redis) for
//! api-guard's integration tests, and a `probe` client that makes one call.
//!
//! ```text
//! api-guard-test-rls --listen 127.0.0.1:PORT --redis redis://127.0.0.1:PORT
//!     [--delay-ms N] [--limit DOMAIN/POLICY=MAX/SECONDS]... [--headers]
//! api-guard-test-rls probe --target 127.0.0.1:PORT --domain D --entry KEY=VALUE... [--hits N]
//! ```

mod proto;
mod service;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use proto::{Code, Entry, RateLimitDescriptor, RateLimitRequest, RateLimitResponse, Unit};
use service::{LimitSpec, Service, Settings};

const USAGE: &str = "usage:
  api-guard-test-rls --listen 127.0.0.1:PORT --redis redis://127.0.0.1:PORT
      [--delay-ms N] [--limit DOMAIN/POLICY=MAX/SECONDS]... [--headers]
  api-guard-test-rls probe --target 127.0.0.1:PORT --domain D --entry KEY=VALUE... [--hits N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.first().map(String::as_str) {
        Some("probe") => runtime.block_on(probe(&args[1..])),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => runtime.block_on(serve(&args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("api-guard-test-rls: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `--name value` pairs and `--flag`s, in order.
struct Args<'a> {
    rest: std::slice::Iter<'a, String>,
}

impl<'a> Args<'a> {
    fn next_option(&mut self) -> Option<&'a str> {
        self.rest.next().map(String::as_str)
    }

    fn value(&mut self, name: &str) -> Result<&'a str, String> {
        self.rest
            .next()
            .map(String::as_str)
            .ok_or_else(|| format!("{name} needs a value"))
    }
}

async fn serve(args: &[String]) -> Result<ExitCode, String> {
    let mut listen: Option<SocketAddr> = None;
    let mut redis_url: Option<String> = None;
    let mut limits = Vec::new();
    let mut delay = None;
    let mut headers = false;
    let mut args = Args { rest: args.iter() };
    while let Some(option) = args.next_option() {
        match option {
            "--listen" => {
                let value = args.value(option)?;
                listen = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--listen {value:?}: {e}"))?,
                );
            }
            "--redis" => redis_url = Some(args.value(option)?.to_string()),
            "--limit" => limits.push(LimitSpec::parse(args.value(option)?)?),
            "--delay-ms" => {
                let value = args.value(option)?;
                let ms: u64 = value
                    .parse()
                    .map_err(|e| format!("--delay-ms {value:?}: {e}"))?;
                delay = Some(Duration::from_millis(ms));
            }
            "--headers" => headers = true,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    let redis_url = redis_url.ok_or("--redis is required")?;
    let service = Service::new(Settings {
        redis_url,
        limits,
        delay,
        headers,
    })?;
    // Redis is normally up already; if not, keep trying while answering UNAVAILABLE.
    if !service.connect().await {
        tokio::spawn(Arc::clone(&service).connect_until_ready());
    }

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("listening on {address}");
    tonic::transport::Server::builder()
        .serve_with_incoming(
            proto::RateLimitServer::new(service),
            tonic::transport::server::TcpIncoming::from(listener),
        )
        .await
        .map_err(|e| format!("server: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// One call; prints the response (or the gRPC error) as one JSON line. Exit code 0 for a
/// response, 1 for a gRPC error.
async fn probe(args: &[String]) -> Result<ExitCode, String> {
    let mut target = None;
    let mut request = RateLimitRequest::default();
    let mut descriptor = RateLimitDescriptor::default();
    let mut args = Args { rest: args.iter() };
    while let Some(option) = args.next_option() {
        match option {
            "--target" => target = Some(args.value(option)?),
            "--domain" => request.domain = args.value(option)?.to_string(),
            "--entry" => {
                let value = args.value(option)?;
                let (key, value) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--entry {value:?}: expected KEY=VALUE"))?;
                descriptor.entries.push(Entry {
                    key: key.to_string(),
                    value: value.to_string(),
                });
            }
            "--hits" => {
                let value = args.value(option)?;
                request.hits_addend = value
                    .parse()
                    .map_err(|e| format!("--hits {value:?}: {e}"))?;
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let target = target.ok_or("--target is required")?;
    request.descriptors.push(descriptor);
    let started = Instant::now();
    let result = proto::call(target, request).await;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(response) => {
            let mut line = response_json(&response);
            line["elapsed_ms"] = json!(elapsed_ms);
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => {
            let line = json!({
                "error": { "code": format!("{:?}", status.code()), "message": status.message() },
                "elapsed_ms": elapsed_ms,
            });
            println!("{line}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn code_name(code: i32) -> String {
    match Code::try_from(code) {
        Ok(Code::Ok) => "OK".into(),
        Ok(Code::OverLimit) => "OVER_LIMIT".into(),
        Ok(Code::Unknown) => "UNKNOWN".into(),
        Err(_) => code.to_string(),
    }
}

fn unit_name(unit: i32) -> String {
    match Unit::try_from(unit) {
        Ok(Unit::Second) => "SECOND".into(),
        Ok(Unit::Minute) => "MINUTE".into(),
        Ok(Unit::Hour) => "HOUR".into(),
        Ok(Unit::Day) => "DAY".into(),
        Ok(Unit::Unknown) => "UNKNOWN".into(),
        Err(_) => unit.to_string(),
    }
}

fn response_json(response: &RateLimitResponse) -> Value {
    let statuses: Vec<Value> = response
        .statuses
        .iter()
        .map(|s| {
            json!({
                "code": code_name(s.code),
                "current_limit": s.current_limit.as_ref().map(|l| json!({
                    "requests_per_unit": l.requests_per_unit,
                    "unit": unit_name(l.unit),
                })),
                "limit_remaining": s.limit_remaining,
                "duration_until_reset": s.duration_until_reset.as_ref().map(|d| json!({
                    "seconds": d.seconds,
                    "nanos": d.nanos,
                })),
            })
        })
        .collect();
    let headers: Vec<Value> = response
        .response_headers_to_add
        .iter()
        .map(|h| json!({ "key": h.key, "value": h.value }))
        .collect();
    json!({
        "overall_code": code_name(response.overall_code),
        "statuses": statuses,
        "response_headers_to_add": headers,
    })
}
