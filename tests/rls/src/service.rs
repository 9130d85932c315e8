//! `ShouldRateLimit` on limitador with its Redis storage.
//!
//! Each `--limit DOMAIN/POLICY=MAX/SECONDS` becomes two limitador limits in namespace DOMAIN,
//! written as CEL over the request's descriptors (bound as the list `descriptors`, one map of
//! entries per descriptor, as limitador-server binds them):
//!
//! - without a `rule` entry: condition `descriptors[0].policy == 'POLICY'` and
//!   `!('rule' in descriptors[0])`, one counter per value of `descriptors[0].client`;
//! - with a `rule` entry: condition `descriptors[0].policy == 'POLICY'` and
//!   `'rule' in descriptors[0]`, one counter per (`client`, `rule`) pair.
//!
//! Every descriptor of a request is checked on its own (each as `descriptors[0]`), and gets
//! one status. Admission is limitador's `reserve` (one Lua script that checks and holds the
//! hits atomically in Redis) followed by `commit_reservation` (adds the hits, releases the
//! hold), so two services on one Redis never admit more than MAX together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use limitador::counter::Counter;
use limitador::limit::{Context, Expression, Limit, Namespace, Predicate};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::AsyncRateLimiter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::RwLock;

use crate::proto::{
    Code, DescriptorStatus, HeaderValue, RateLimit, RateLimitDescriptor, RateLimitRequest,
    RateLimitResponse, Unit,
};

/// One `--limit DOMAIN/POLICY=MAX/SECONDS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitSpec {
    pub domain: String,
    pub policy: String,
    pub max: u64,
    pub seconds: u64,
}

impl LimitSpec {
    pub fn parse(text: &str) -> Result<LimitSpec, String> {
        let bad = || format!("--limit {text:?}: expected DOMAIN/POLICY=MAX/SECONDS");
        let (name, quota) = text.rsplit_once('=').ok_or_else(bad)?;
        let (domain, policy) = name.split_once('/').ok_or_else(bad)?;
        let (max, seconds) = quota.split_once('/').ok_or_else(bad)?;
        let max: u64 = max.trim().parse().map_err(|_| bad())?;
        let seconds: u64 = seconds.trim().parse().map_err(|_| bad())?;
        if domain.is_empty() || policy.is_empty() || seconds == 0 {
            return Err(bad());
        }
        Ok(LimitSpec {
            domain: domain.to_string(),
            policy: policy.to_string(),
            max,
            seconds,
        })
    }

    /// The two limitador limits (without and with a `rule` entry).
    pub fn limits(&self) -> Result<Vec<Limit>, String> {
        let policy = format!("descriptors[0].policy == {}", cel_string(&self.policy));
        let cel_err = |e: limitador::limit::ParseError| format!("limit {self:?}: {e}");
        let predicate = |s: &str| Predicate::parse(s).map_err(cel_err);
        let expression = |s: &str| Expression::parse(s).map_err(cel_err);
        let without_rule = Limit::new(
            self.domain.as_str(),
            self.max,
            self.seconds,
            [
                predicate(&policy)?,
                predicate("!('rule' in descriptors[0])")?,
            ],
            [expression("descriptors[0].client")?],
        );
        let with_rule = Limit::new(
            self.domain.as_str(),
            self.max,
            self.seconds,
            [predicate(&policy)?, predicate("'rule' in descriptors[0]")?],
            [
                expression("descriptors[0].client")?,
                expression("descriptors[0].rule")?,
            ],
        );
        Ok(vec![without_rule, with_rule])
    }
}

/// A CEL string literal.
fn cel_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub struct Settings {
    pub redis_url: String,
    pub limits: Vec<LimitSpec>,
    pub delay: Option<Duration>,
    pub headers: bool,
}

/// The service: limitador once Redis answered, `None` before (calls get UNAVAILABLE).
pub struct Service {
    limiter: RwLock<Option<Arc<AsyncRateLimiter>>>,
    settings: Settings,
}

/// How long one limitador call may take before the answer is UNAVAILABLE.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(2);

impl Service {
    pub fn new(settings: Settings) -> Result<Arc<Service>, String> {
        // Parse every limit now, so that a bad one fails at start and not on a request.
        for spec in &settings.limits {
            spec.limits()?;
        }
        Ok(Arc::new(Service {
            limiter: RwLock::new(None),
            settings,
        }))
    }

    /// Connects to Redis and installs the limits; false (logged) when Redis does not answer.
    pub async fn connect(&self) -> bool {
        let storage = match tokio::time::timeout(STORAGE_TIMEOUT, self.storage()).await {
            Ok(Ok(storage)) => storage,
            Ok(Err(e)) => {
                eprintln!("redis {}: {e}", self.settings.redis_url);
                return false;
            }
            Err(_) => {
                eprintln!("redis {}: no answer", self.settings.redis_url);
                return false;
            }
        };
        let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
        for spec in &self.settings.limits {
            for limit in spec.limits().unwrap_or_default() {
                limiter.add_limit(limit);
            }
        }
        *self.limiter.write().await = Some(Arc::new(limiter));
        true
    }

    /// limitador's AsyncRedisStorage on a connection that, once lost, is retried only once,
    /// so that calls fail (UNAVAILABLE, in about 1.5 s here) while Redis is down instead of
    /// waiting on reconnection; they work again once Redis is back.
    async fn storage(&self) -> Result<AsyncRedisStorage, redis::RedisError> {
        let client = redis::Client::open(self.settings.redis_url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_max_delay(50)
            .set_connection_timeout(Duration::from_millis(500))
            .set_response_timeout(STORAGE_TIMEOUT);
        let manager = ConnectionManager::new_with_config(client, config).await?;
        AsyncRedisStorage::new_with_conn_manager(manager).await
    }

    /// Until Redis answers once: retries every 200 ms.
    pub async fn connect_until_ready(self: Arc<Self>) {
        while !self.connect().await {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("redis {}: connected", self.settings.redis_url);
    }

    async fn answer(&self, request: RateLimitRequest) -> Result<RateLimitResponse, tonic::Status> {
        let limiter = self
            .limiter
            .read()
            .await
            .clone()
            .ok_or_else(|| tonic::Status::unavailable("not connected to Redis yet"))?;
        let hits = u64::from(request.hits_addend.max(1));
        let namespace = Namespace::from(request.domain.as_str());
        let mut response = RateLimitResponse {
            overall_code: Code::Ok as i32,
            ..Default::default()
        };
        let mut matched: Vec<Counter> = Vec::new();
        for descriptor in &request.descriptors {
            let (code, counter) = check(&limiter, &namespace, descriptor, hits).await?;
            if code == Code::OverLimit {
                response.overall_code = Code::OverLimit as i32;
            }
            response.statuses.push(status(code, counter.as_ref()));
            matched.extend(counter);
        }
        if self.settings.headers {
            response.response_headers_to_add = quota_headers(&matched);
        }
        Ok(response)
    }
}

/// One descriptor: its code and the counter that decided it (none when no limit applies).
async fn check(
    limiter: &AsyncRateLimiter,
    namespace: &Namespace,
    descriptor: &RateLimitDescriptor,
    hits: u64,
) -> Result<(Code, Option<Counter>), tonic::Status> {
    let entries: HashMap<String, String> = descriptor
        .entries
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    // Every limit needs `policy` and `client`; without them nothing applies.
    if !entries.contains_key("policy") || !entries.contains_key("client") {
        return Ok((Code::Ok, None));
    }
    let mut ctx = Context::default();
    ctx.list_binding("descriptors".to_string(), vec![entries]);

    let storage_error = |e: &dyn std::fmt::Display| {
        eprintln!("limitador: {e}");
        tonic::Status::unavailable(format!("rate limit storage: {e}"))
    };
    let reserved = tokio::time::timeout(
        STORAGE_TIMEOUT,
        limiter.reserve(namespace, &ctx, hits, None),
    )
    .await
    .map_err(|e| storage_error(&e))?
    .map_err(|e| storage_error(&e))?;
    if !reserved.limited && !reserved.counters.is_empty() {
        tokio::time::timeout(
            STORAGE_TIMEOUT,
            limiter.commit_reservation(namespace, &ctx, reserved.reservation_id.as_ref(), hits),
        )
        .await
        .map_err(|e| storage_error(&e))?
        .map_err(|e| storage_error(&e))?;
    }
    let code = if reserved.limited {
        Code::OverLimit
    } else {
        Code::Ok
    };
    // The most restrictive counter (fewest remaining) speaks for the descriptor.
    let counter = reserved
        .counters
        .into_iter()
        .min_by_key(|c| c.remaining().unwrap_or(c.max_value()));
    Ok((code, counter))
}

fn status(code: Code, counter: Option<&Counter>) -> DescriptorStatus {
    let Some(counter) = counter else {
        return DescriptorStatus {
            code: code as i32,
            ..Default::default()
        };
    };
    let unit = match counter.window().as_secs() {
        1 => Some(Unit::Second),
        60 => Some(Unit::Minute),
        3600 => Some(Unit::Hour),
        86400 => Some(Unit::Day),
        _ => None,
    };
    let current_limit = match (unit, u32::try_from(counter.max_value())) {
        (Some(unit), Ok(requests_per_unit)) => Some(RateLimit {
            requests_per_unit,
            unit: unit as i32,
            name: String::new(),
        }),
        _ => None,
    };
    DescriptorStatus {
        code: code as i32,
        current_limit,
        limit_remaining: remaining(counter).try_into().unwrap_or(u32::MAX),
        duration_until_reset: counter.expires_in().map(Into::into),
    }
}

fn remaining(counter: &Counter) -> u64 {
    counter.remaining().unwrap_or(counter.max_value())
}

/// `ratelimit-limit`, `-remaining` and `-reset` (draft-polli-ratelimit-headers-03) for the
/// most restrictive counter; the limit lists every matched quota policy after it.
fn quota_headers(counters: &[Counter]) -> Vec<HeaderValue> {
    let Some(tightest) = counters.iter().min_by_key(|c| remaining(c)) else {
        return Vec::new();
    };
    let mut limit = tightest.max_value().to_string();
    for c in counters {
        limit.push_str(&format!(", {};w={}", c.max_value(), c.window().as_secs()));
    }
    let mut headers = vec![
        header("ratelimit-limit", limit),
        header("ratelimit-remaining", remaining(tightest).to_string()),
    ];
    if let Some(reset) = tightest.expires_in() {
        // Whole seconds, rounded up: a client that waits that long finds a new window.
        let secs = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
        headers.push(header("ratelimit-reset", secs.to_string()));
    }
    headers
}

fn header(key: &str, value: String) -> HeaderValue {
    HeaderValue {
        key: key.to_string(),
        value,
    }
}

impl crate::proto::Handler for Service {
    async fn should_rate_limit(
        &self,
        request: RateLimitRequest,
    ) -> Result<RateLimitResponse, tonic::Status> {
        if let Some(delay) = self.settings.delay {
            tokio::time::sleep(delay).await;
        }
        self.answer(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limit_specs() {
        assert_eq!(
            LimitSpec::parse("d/p=5/60"),
            Ok(LimitSpec {
                domain: "d".into(),
                policy: "p".into(),
                max: 5,
                seconds: 60
            })
        );
        assert!(LimitSpec::parse("d/p=5").is_err());
        assert!(LimitSpec::parse("d=5/60").is_err());
        assert!(LimitSpec::parse("d/p=5/0").is_err());
        assert!(LimitSpec::parse("/p=5/60").is_err());
    }

    #[test]
    fn quotes_policy_names_in_cel() {
        assert_eq!(cel_string("a'b\\c"), "'a\\'b\\\\c'");
        let spec = LimitSpec::parse("d/it's=1/1").unwrap();
        assert_eq!(spec.limits().unwrap().len(), 2);
    }
}
