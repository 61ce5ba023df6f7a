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

impl SharedRedis {
    /// Set up the connection without making it: a replica starts (and serves, without the
    /// shared cache) while Redis is down, and connects once Redis is back.
    pub fn connect(config: &RedisConfig) -> Result<Self, RedisError> {
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
            conn,
            prefix: config.key_prefix.clone(),
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

    /// A connection to send commands on (a clone of the shared multiplexed one).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
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
