//! `ShouldRateLimit` on limitador's limits, with counters in Redis.
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
//! one status. limitador decides which counters a descriptor touches (its CEL conditions and
//! variables, `Counter::new`); the counts are fixed windows in Redis, checked and added by one
//! Lua script, so two services on one Redis never admit more than MAX together.
//! (limitador's own Redis storage cannot be built without its RocksDB disk storage, a
//! 19-minute build on two cores; this keeps the engine and leaves the store to Redis itself.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use limitador::counter::Counter;
use limitador::limit::{Context, Expression, Limit, Predicate};
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

/// The service: the limits, and a Redis connection once Redis answered (`None` before: calls
/// get UNAVAILABLE).
pub struct Service {
    redis: RwLock<Option<ConnectionManager>>,
    /// Every limit, with the prefix of its counters' Redis keys.
    limits: Vec<(Arc<Limit>, String)>,
    settings: Settings,
}

/// How long one Redis call may take before the answer is UNAVAILABLE.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks every counter of a call (KEYS; ARGV: hits, then each key's max and window in ms),
/// and only if all have room adds the hits to each, starting a window where the key is new.
/// Returns `{1, value1, pttl1, ...}`, or `{0, index, value, pttl}` for the first counter that
/// has no room.
const CHECK_AND_ADD: &str = r#"
local hits = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local current = tonumber(redis.call('GET', key) or '0')
  if current + hits > tonumber(ARGV[2 * i]) then
    return {0, i, current, redis.call('PTTL', key)}
  end
end
local out = {1}
for i, key in ipairs(KEYS) do
  local value = redis.call('INCRBY', key, hits)
  if value == hits then
    redis.call('PEXPIRE', key, ARGV[2 * i + 1])
  end
  table.insert(out, value)
  table.insert(out, redis.call('PTTL', key))
end
return out
"#;

impl Service {
    pub fn new(settings: Settings) -> Result<Arc<Service>, String> {
        // Parse every limit now, so that a bad one fails at start and not on a request.
        let mut limits = Vec::new();
        for spec in &settings.limits {
            for (i, limit) in spec.limits()?.into_iter().enumerate() {
                let prefix = format!(
                    "api-guard-test-rls:{}:{}:{}:{}:{i}",
                    spec.domain.len(),
                    spec.domain,
                    spec.policy,
                    spec.seconds
                );
                limits.push((Arc::new(limit), prefix));
            }
        }
        Ok(Arc::new(Service {
            redis: RwLock::new(None),
            limits,
            settings,
        }))
    }

    /// Connects to Redis; false (logged) when Redis does not answer. Once lost, the
    /// connection is retried only once per call, so that calls fail (UNAVAILABLE) while
    /// Redis is down instead of waiting on reconnection; they work again once it is back.
    pub async fn connect(&self) -> bool {
        let connect = async {
            let client = redis::Client::open(self.settings.redis_url.as_str())?;
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_max_delay(50)
                .set_connection_timeout(Duration::from_millis(500))
                .set_response_timeout(STORAGE_TIMEOUT);
            let mut manager = ConnectionManager::new_with_config(client, config).await?;
            redis::cmd("PING")
                .query_async::<String>(&mut manager)
                .await?;
            Ok::<_, redis::RedisError>(manager)
        };
        match tokio::time::timeout(STORAGE_TIMEOUT, connect).await {
            Ok(Ok(manager)) => {
                *self.redis.write().await = Some(manager);
                true
            }
            Ok(Err(e)) => {
                eprintln!("redis {}: {e}", self.settings.redis_url);
                false
            }
            Err(_) => {
                eprintln!("redis {}: no answer", self.settings.redis_url);
                false
            }
        }
    }

    /// Until Redis answers once: retries every 200 ms.
    pub async fn connect_until_ready(self: Arc<Self>) {
        while !self.connect().await {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("redis {}: connected", self.settings.redis_url);
    }

    async fn answer(&self, request: RateLimitRequest) -> Result<RateLimitResponse, tonic::Status> {
        let redis = self
            .redis
            .read()
            .await
            .clone()
            .ok_or_else(|| tonic::Status::unavailable("not connected to Redis yet"))?;
        let hits = u64::from(request.hits_addend.max(1));
        let mut response = RateLimitResponse {
            overall_code: Code::Ok as i32,
            ..Default::default()
        };
        let mut matched: Vec<Counter> = Vec::new();
        for descriptor in &request.descriptors {
            let (code, counter) = self
                .check(redis.clone(), &request.domain, descriptor, hits)
                .await?;
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

    /// One descriptor: its code and the counter that decided it (none when no limit applies).
    async fn check(
        &self,
        mut redis: ConnectionManager,
        domain: &str,
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

        // The counters limitador says this descriptor touches, with their Redis keys.
        let mut counters: Vec<(Counter, String)> = Vec::new();
        for (limit, prefix) in &self.limits {
            // `applies` evaluates the conditions; `policy` and `client` are present (above),
            // which every condition and variable here reads.
            if limit.namespace().as_ref() != domain || !limit.applies(&ctx) {
                continue;
            }
            let counter = Counter::new(limit.clone(), &ctx)
                .map_err(|e| tonic::Status::invalid_argument(format!("descriptor: {e}")))?;
            if let Some(counter) = counter {
                let variables = serde_json::to_string(counter.set_variables())
                    .map_err(|e| tonic::Status::internal(e.to_string()))?;
                counters.push((counter, format!("{prefix}:{variables}")));
            }
        }
        if counters.is_empty() {
            return Ok((Code::Ok, None));
        }

        let script = redis::Script::new(CHECK_AND_ADD);
        let mut invocation = script.prepare_invoke();
        invocation.arg(hits);
        for (counter, key) in &counters {
            let window_ms = counter.window().as_millis().max(1);
            invocation
                .key(key)
                .arg(counter.max_value())
                .arg(u64::try_from(window_ms).unwrap_or(u64::MAX));
        }
        let storage_error = |e: &dyn std::fmt::Display| {
            eprintln!("redis: {e}");
            tonic::Status::unavailable(format!("rate limit storage: {e}"))
        };
        let answer: Vec<i64> =
            tokio::time::timeout(STORAGE_TIMEOUT, invocation.invoke_async(&mut redis))
                .await
                .map_err(|e| storage_error(&e))?
                .map_err(|e| storage_error(&e))?;

        let value = |v: Option<&i64>| u64::try_from(*v.unwrap_or(&0)).unwrap_or(0);
        let ttl = |v: Option<&i64>| Duration::from_millis(value(v));
        if answer.first() == Some(&0) {
            // The first counter without room speaks for the descriptor.
            let index = usize::try_from(value(answer.get(1))).unwrap_or(1).max(1) - 1;
            let mut counter = counters
                .into_iter()
                .nth(index)
                .map(|(c, _)| c)
                .ok_or_else(|| tonic::Status::internal("script answered out of range"))?;
            // What is left (less than the hits asked for), as a check without a take.
            let used = value(answer.get(2));
            counter.set_remaining(counter.max_value().saturating_sub(used));
            counter.set_expires_in(ttl(answer.get(3)));
            return Ok((Code::OverLimit, Some(counter)));
        }
        let mut filled = Vec::with_capacity(counters.len());
        for (i, (mut counter, _)) in counters.into_iter().enumerate() {
            let used = value(answer.get(1 + 2 * i));
            counter.set_remaining(counter.max_value().saturating_sub(used));
            counter.set_expires_in(ttl(answer.get(2 + 2 * i)));
            filled.push(counter);
        }
        // The most restrictive counter (fewest remaining) speaks for the descriptor.
        let counter = filled.into_iter().min_by_key(remaining);
        Ok((Code::Ok, counter))
    }
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
