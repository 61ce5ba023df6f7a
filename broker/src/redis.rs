//! The Redis every replica shares (`redis:` in broker.yaml): one multiplexed connection
//! that reconnects on its own, with a timeout on every command so a slow or absent Redis
//! costs an exchange at most that long. Callers treat an error as "carry on without it".

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;

/// Why Redis could not answer. The message never holds a key's value or the password.
#[derive(Debug, thiserror::Error)]
#[error("redis {op}: {message}")]
pub struct RedisError {
    op: &'static str,
    message: String,
}

impl RedisError {
    pub fn new(op: &'static str, e: &redis::RedisError) -> Self {
        Self { op, message: format!("{:?}: {}", e.kind(), e.detail().unwrap_or("no detail")) }
    }

    /// An answer Redis gave that Tessera cannot use.
    pub fn unexpected(op: &'static str, message: impl Into<String>) -> Self {
        Self { op, message: message.into() }
    }
}

/// A handle on the shared Redis; cheap to clone.
#[derive(Clone)]
pub struct SharedRedis {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    url: String,
    timeout: Duration,
}

impl fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRedis").field("url", &self.url).field("prefix", &self.prefix).finish()
    }
}

/// The key prefix of the deployment whose issuer URL is `issuer_url`, when `key_prefix` is
/// not set: `tessera:` and the first 12 hex digits of the URL's SHA-256, then `:`. The
/// issuer URL is what the replicas of one deployment must share and two deployments never
/// do (it is the `iss` of every token they sign).
pub fn default_prefix(issuer_url: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, issuer_url.as_bytes());
    let short = digest.as_ref().get(..6).unwrap_or_default();
    format!("tessera:{}:", hex(short))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SharedRedis {
    /// Set up the connection without making it: a replica starts (and serves, without the
    /// shared cache) while Redis is down, and connects once Redis is back. Keys are under
    /// `key_prefix`, or the [`default_prefix`] of `issuer_url`.
    pub fn connect(config: &RedisConfig, issuer_url: &str) -> Result<Self, RedisError> {
        let client =
            redis::Client::open(config.url.expose()).map_err(|e| RedisError::new("parse url", &e))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let conn = client.get_connection_manager_lazy(manager).map_err(|e| RedisError::new("connect", &e))?;
        Ok(Self {
            client,
            conn,
            prefix: config.key_prefix.clone().unwrap_or_else(|| default_prefix(issuer_url)),
            url: config.url.redacted(),
            timeout: config.timeout,
        })
    }

    /// `<prefix><kind>:<id>`: every key Tessera writes has this shape.
    pub fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    /// The URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The prefix of every key written.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A connection to send commands on (a clone of the shared multiplexed one).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A new connection of its own for publish/subscribe (a subscribed connection can
    /// send nothing else), within the configured timeout.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, RedisError> {
        self.timed("subscribe", self.client.get_async_pubsub()).await
    }

    /// The configured timeout of one command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Await a command sent on [`SharedRedis::conn`], at most the configured timeout.
    pub async fn timed<T>(
        &self,
        op: &'static str,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(RedisError::new(op, &e)),
            Err(_) => Err(RedisError::unexpected(op, format!("no answer within {:?}", self.timeout))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_prefix_is_the_deployments_own() {
        // SHA-256 of the URL's bytes begins 1f40e6b524c4: pinned, so replicas of different
        // versions agree on it.
        let a = default_prefix("https://tessera.example.com");
        assert_eq!(a, "tessera:1f40e6b524c4:");
        assert_eq!(default_prefix("https://tessera.example.com"), a, "replicas of one deployment agree");
        assert_ne!(default_prefix("https://tessera.staging.example.com"), a, "another deployment differs");
    }

    #[tokio::test]
    async fn a_configured_prefix_wins() {
        let mut config = RedisConfig {
            url: crate::config::SecretUrl::new("redis://127.0.0.1:1"),
            key_prefix: Some("payments:".into()),
            timeout: Duration::from_millis(50),
        };
        assert_eq!(SharedRedis::connect(&config, "https://a.example").unwrap().prefix(), "payments:");
        config.key_prefix = None;
        let redis = SharedRedis::connect(&config, "https://a.example").unwrap();
        assert_eq!(redis.prefix(), default_prefix("https://a.example"));
        assert_eq!(redis.key("rate", "x"), format!("{}rate:x", default_prefix("https://a.example")));
    }
}
