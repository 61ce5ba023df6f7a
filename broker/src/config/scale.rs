//! Settings for running several replicas: the Redis they share and the per-identity
//! rate limit it enforces across them. See docs/operations.md, "Several replicas".

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Redis, shared by every replica: the credential cache (so N replicas still make one
/// upstream call per credential lifetime) and the rate-limit counters.
///
/// ```yaml
/// redis:
///   url: rediss://tessera:CHANGE-ME@redis.internal:6380/0
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS. The password is
    /// never logged.
    pub url: SecretUrl,
    /// Prefix of every key Tessera writes. Default: `tessera:` and the first 12 hex digits
    /// of the SHA-256 of `issuer.url`, then `:` (`tessera:3f9c0a1b2c4d:`), so brokers of
    /// different deployments on one Redis share neither cached credentials nor rate
    /// budgets, while the replicas of one deployment (one issuer URL) share both. 1 to 64
    /// characters when set.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// How long one Redis command (or connecting) may take before Tessera carries on
    /// without it: the cache is skipped, the rate limit falls back to this replica's own
    /// count. Between 10ms and 10s. Default `500ms`.
    #[serde(default = "default_timeout", deserialize_with = "super::deserialize_fine_duration")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_millis(500)
}

impl RedisConfig {
    /// What is wrong with these settings, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.url.check("redis.url", &["redis", "rediss"]) {
            problems.push(e);
        }
        if self.key_prefix.as_ref().is_some_and(|p| p.is_empty() || p.len() > 64) {
            problems.push("redis.key_prefix must be 1 to 64 characters".to_string());
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&self.timeout) {
            problems.push("redis.timeout must be between 10ms and 10s".to_string());
        }
        problems
    }
}

/// The URL of a service Tessera connects to (Redis, PostgreSQL). `Debug` and
/// [`SecretUrl::redacted`] hide the password.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, for logs and status.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                url.to_string()
            }
            Err(_) => "<invalid url>".to_string(),
        }
    }

    /// The scheme, lowercased.
    pub fn scheme(&self) -> String {
        url::Url::parse(&self.0).map(|u| u.scheme().to_string()).unwrap_or_default()
    }

    /// Whether this is a URL `field` accepts: one of `schemes`, and a host unless SQLite
    /// (whose URL is a file path).
    pub(crate) fn check(&self, field: &str, schemes: &[&str]) -> Result<(), String> {
        let url = url::Url::parse(&self.0).map_err(|e| format!("{field} is not a URL: {e}"))?;
        if !schemes.contains(&url.scheme()) {
            let allowed: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
            return Err(format!("{field} must start with {}, not {}://", allowed.join(" or "), url.scheme()));
        }
        if url.scheme() != "sqlite" && url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{field} has no host"));
        }
        Ok(())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// How many exchanges one workload identity may make, across all replicas when `redis` is
/// set (each replica counts alone otherwise). A burst of `requests` is allowed at once;
/// after that, one more every `per / requests`. An exchange over the limit gets 429
/// `temporarily_unavailable` with `Retry-After`, and is audited.
///
/// ```yaml
/// rate_limit:
///   requests: 60
///   per: 1m
/// ```
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Exchanges allowed per `per`, from 1 to 1000000.
    pub requests: u32,
    /// The period, in whole seconds (`1s`, `1m`, `1h`). Default `1m`.
    #[serde(default = "default_per", deserialize_with = "tessera_adapters::config::duration::deserialize")]
    pub per: Duration,
}

fn default_per() -> Duration {
    Duration::from_secs(60)
}

impl RateLimitConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=1_000_000).contains(&self.requests) {
            problems.push("rate_limit.requests must be between 1 and 1000000".to_string());
        }
        if self.per.is_zero() || self.per > Duration::from_secs(86_400) {
            problems.push("rate_limit.per must be between 1s and 24h".to_string());
        }
        problems
    }

    /// Milliseconds between two exchanges at the steady rate.
    pub fn interval_millis(&self) -> i64 {
        let per = i64::try_from(self.per.as_millis()).unwrap_or(i64::MAX);
        (per / i64::from(self.requests.max(1))).max(1)
    }

    /// How far ahead of now the schedule may run: the burst allowance, in milliseconds.
    pub fn tolerance_millis(&self) -> i64 {
        let per = i64::try_from(self.per.as_millis()).unwrap_or(i64::MAX);
        (per - self.interval_millis()).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_password_never_shows() {
        let url = SecretUrl::new("rediss://tessera:hunter2@redis.internal:6380/1");
        assert_eq!(url.redacted(), "rediss://tessera:***@redis.internal:6380/1");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(SecretUrl::new("redis://127.0.0.1:6379").redacted(), "redis://127.0.0.1:6379");
    }

    #[test]
    fn service_urls_are_checked() {
        let redis = ["redis", "rediss"];
        assert!(SecretUrl::new("redis://127.0.0.1:6379").check("redis.url", &redis).is_ok());
        let wrong = SecretUrl::new("http://127.0.0.1:6379").check("redis.url", &redis).unwrap_err();
        assert_eq!(wrong, "redis.url must start with redis:// or rediss://, not http://");
        assert!(SecretUrl::new("not a url").check("redis.url", &redis).is_err());
        let store = ["postgres", "sqlite"];
        assert!(SecretUrl::new("sqlite:///var/lib/tessera/audit.db").check("s", &store).is_ok());
        assert_eq!(SecretUrl::new("postgres:///db").check("s", &store).unwrap_err(), "s has no host");
    }

    #[test]
    fn a_key_prefix_is_optional_but_never_empty() {
        let mut config = RedisConfig {
            url: SecretUrl::new("redis://127.0.0.1:6379"),
            key_prefix: None,
            timeout: Duration::from_millis(500),
        };
        assert!(config.problems().is_empty(), "the default is the deployment's own");
        config.key_prefix = Some(String::new());
        assert_eq!(config.problems(), ["redis.key_prefix must be 1 to 64 characters"]);
        config.key_prefix = Some("x".repeat(65));
        assert_eq!(config.problems().len(), 1);
        config.key_prefix = Some("payments:".into());
        assert!(config.problems().is_empty());
    }

    #[test]
    fn the_rate_allows_a_burst_of_requests_then_one_per_interval() {
        let rate = RateLimitConfig { requests: 10, per: Duration::from_secs(1) };
        assert_eq!(rate.interval_millis(), 100);
        assert_eq!(rate.tolerance_millis(), 900);
        assert!(RateLimitConfig { requests: 0, per: Duration::from_secs(1) }.problems().len() == 1);
        assert!(RateLimitConfig { requests: 1, per: Duration::ZERO }.problems().len() == 1);
    }
}
