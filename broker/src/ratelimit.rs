//! Per-identity exchange rate limits (`rate_limit:` in broker.yaml), counted in the shared
//! Redis so the limit holds across replicas, or in this process without one.
//!
//! The algorithm is GCRA (the generic cell rate algorithm, ITU-T I.371): each identity has
//! a theoretical arrival time (TAT) that every allowed exchange pushes one interval
//! (`per / requests`) further; an exchange is refused while the TAT runs more than the
//! burst tolerance ahead of now, and learns exactly how long to wait. One number per
//! identity, updated atomically by a script in Redis.
//!
//! When Redis does not answer, this replica counts alone: the limit still protects the
//! upstream quotas (per replica), and a Redis outage never refuses exchanges by itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tessera_adapters::Clock;

use crate::config::RateLimitConfig;
use crate::redis::SharedRedis;

/// GCRA step in Redis. KEYS[1]: the identity's TAT; ARGV: now, interval, tolerance (ms).
/// Returns 0 when allowed (and advances the TAT), else the milliseconds to wait.
const GCRA: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then return tat - now - tolerance end
local next = tat + interval
redis.call('SET', KEYS[1], next, 'PX', next - now)
return 0
";

/// Identities whose counters this process keeps at most before forgetting idle ones.
const MAX_LOCAL: usize = 100_000;

/// An exchange over its identity's limit, and how long until one more is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit reached; retry in {retry_after_ms} ms")]
pub struct RateLimited {
    pub retry_after_ms: i64,
}

impl RateLimited {
    /// Whole seconds for `Retry-After`, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u32 {
        u32::try_from((self.retry_after_ms + 999) / 1000).unwrap_or(u32::MAX).max(1)
    }
}

/// See the module documentation.
pub struct RateLimiter {
    config: RateLimitConfig,
    clock: Arc<dyn Clock>,
    shared: Option<SharedRedis>,
    local: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.config)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig, clock: Arc<dyn Clock>, shared: Option<SharedRedis>) -> Self {
        Self { config, clock, shared, local: Mutex::new(HashMap::new()) }
    }

    /// Count one exchange for `identity`, or refuse it.
    pub async fn check(&self, identity: &str) -> Result<(), RateLimited> {
        let now = self.clock.now_millis();
        if let Some(redis) = &self.shared {
            let key = redis.key("rate", &tessera_adapters::secret::fingerprint(identity.as_bytes()));
            let script = redis::Script::new(GCRA);
            let mut invocation = script.key(key);
            invocation.arg(now).arg(self.config.interval_millis()).arg(self.config.tolerance_millis());
            let mut conn = redis.conn();
            match redis.timed("rate limit", invocation.invoke_async::<i64>(&mut conn)).await {
                Ok(0) => return Ok(()),
                Ok(wait) => return Err(RateLimited { retry_after_ms: wait }),
                Err(e) => tracing::warn!(
                    error = %e,
                    reason = "TS-RATE-SHARED-DOWN",
                    "shared rate limit unavailable; counting on this replica"
                ),
            }
        }
        self.check_local(identity, now)
    }

    fn check_local(&self, identity: &str, now: i64) -> Result<(), RateLimited> {
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        if local.len() >= MAX_LOCAL && !local.contains_key(identity) {
            // An identity whose TAT is past holds no information: forget those first.
            local.retain(|_, tat| *tat > now);
        }
        let tat = local.get(identity).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > self.config.tolerance_millis() {
            return Err(RateLimited { retry_after_ms: ahead - self.config.tolerance_millis() });
        }
        if local.len() < MAX_LOCAL || local.contains_key(identity) {
            local.insert(identity.to_string(), tat + self.config.interval_millis());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tessera_adapters::ManualClock;

    use super::*;

    fn limiter(requests: u32, per: u64, clock: &Arc<ManualClock>) -> RateLimiter {
        let config = RateLimitConfig { requests, per: Duration::from_secs(per) };
        RateLimiter::new(config, Arc::clone(clock) as Arc<dyn Clock>, None)
    }

    #[tokio::test]
    async fn a_burst_of_requests_then_one_per_interval_per_identity() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let limiter = limiter(3, 60, &clock);
        for _ in 0..3 {
            limiter.check("a").await.unwrap();
        }
        let refused = limiter.check("a").await.unwrap_err();
        assert_eq!(refused.retry_after_ms, 20_000, "one more after per / requests");
        assert_eq!(refused.retry_after_secs(), 20);
        limiter.check("b").await.expect("another identity has its own budget");
        clock.advance(19);
        assert!(limiter.check("a").await.is_err());
        clock.advance(1);
        limiter.check("a").await.expect("one interval later, one more");
        assert!(limiter.check("a").await.is_err());
        clock.advance(60);
        for _ in 0..3 {
            limiter.check("a").await.expect("a full period idle restores the burst");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(RateLimited { retry_after_ms: 1 }.retry_after_secs(), 1);
        assert_eq!(RateLimited { retry_after_ms: 1001 }.retry_after_secs(), 2);
    }
}
