//! Revocations reach the other replicas through Redis publish/subscribe, when `redis:` is
//! configured: the replica whose admin API made or lifted one publishes a notice on the
//! channel `<key_prefix>revocations` once the store has it, and every replica, subscribed
//! to that channel, reads the revocations from the store at once (the [poller]'s work,
//! woken early) and purges the caches of the new ones. The notice carries only the change
//! and the revocation's id, never its match or reason; receivers do not trust it beyond
//! "look now": what they enforce is what the store holds, so a forged notice makes a
//! replica read the store, nothing more.
//!
//! The subscription reconnects with jittered exponential backoff and reads the store
//! again on each reconnection, for the notices it missed while away. The store poll every
//! [`POLL_INTERVAL`](super::POLL_INTERVAL) stays the fallback: with Redis down, a
//! revocation still reaches every replica within about a second.
//!
//! [poller]: super::spawn_poller

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::redis::SharedRedis;

/// The channel's name after the key prefix.
const CHANNEL: &str = "revocations";
/// First wait before subscribing again after a failure; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often a quiet subscription is checked with a `PING`, so a connection that died
/// without closing (a partition, a Redis failover) is noticed and replaced.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
        }
    }
}

/// A replica's side of the propagation: wakes its poller, and publishes its own changes.
#[derive(Debug)]
pub struct Propagation {
    redis: Option<SharedRedis>,
    wake: Notify,
    notices: AtomicU64,
}

impl Propagation {
    /// Publish on `redis` when given; store polling alone otherwise.
    pub fn new(redis: Option<SharedRedis>) -> Self {
        Self { redis, wake: Notify::new(), notices: AtomicU64::new(0) }
    }

    /// The channel notices go on, when Redis is configured.
    pub fn channel(&self) -> Option<String> {
        self.redis.as_ref().map(|r| format!("{}{CHANNEL}", r.prefix()))
    }

    /// Ask the poller to read the store now (a notice arrived, or the subscription was
    /// re-established). Wakes coalesce: many notices at once make one read.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Notices received from the channel since the broker started (its own included).
    pub fn notices(&self) -> u64 {
        self.notices.load(Ordering::Relaxed)
    }

    /// Resolves once [`wake`](Self::wake) was called (at once if it was called since the
    /// last time this resolved).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Tell the other replicas that revocation `id` was added or removed here, after the
    /// store committed it. Returns how many replicas were subscribed; `None` without Redis
    /// or when it did not answer (logged: the store poll carries the change instead).
    pub async fn announce(&self, change: Change, id: &str) -> Option<usize> {
        let redis = self.redis.as_ref()?;
        let channel = self.channel()?;
        let notice = format!("{}:{id}", change.as_str());
        let mut conn = redis.conn();
        match redis
            .timed("publish revocation", redis::AsyncCommands::publish(&mut conn, channel, notice))
            .await
        {
            Ok(receivers) => Some(receivers),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    revocation = %id,
                    reason = "TS-REVOKE-PUBLISH",
                    "revocation not published; other replicas see it at their next store poll"
                );
                None
            }
        }
    }
}

/// Subscribe to the channel and wake the poller on every notice, until aborted; `None`
/// without Redis or without an audit store (no revocations to read).
pub fn spawn_subscriber(broker: Arc<Broker>) -> Option<JoinHandle<()>> {
    broker.audit_store()?;
    let propagation = Arc::clone(broker.propagation());
    let redis = propagation.redis.clone()?;
    let channel = propagation.channel()?;
    Some(tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            let Err(ended) = subscribe(&redis, &channel, &propagation).await;
            // A subscription that had been established starts the backoff over.
            failures = if ended.lasted { 1 } else { failures.saturating_add(1) };
            if failures == 1 {
                tracing::warn!(
                    error = %ended,
                    channel = %channel,
                    reason = "TS-REVOKE-SUBSCRIBE",
                    "revocation notices not received; subscribing again, the store poll carries revocations meanwhile"
                );
            }
            tokio::time::sleep(backoff(failures)).await;
        }
    }))
}

/// Why a subscription ended, and whether it had been established (the next attempt
/// starts from the shortest wait then).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Ended {
    message: String,
    lasted: bool,
}

/// One subscription: connect, subscribe, read the store (for what was missed), then wake
/// the poller on every notice until the connection fails.
async fn subscribe(
    redis: &SharedRedis,
    channel: &str,
    propagation: &Propagation,
) -> Result<std::convert::Infallible, Ended> {
    let failed = |lasted: bool| move |e: crate::redis::RedisError| Ended { message: e.to_string(), lasted };
    let pubsub = redis.pubsub().await.map_err(failed(false))?;
    let (mut sink, mut stream) = pubsub.split();
    redis.timed("subscribe", sink.subscribe(channel)).await.map_err(failed(false))?;
    tracing::info!(channel, "receiving revocation notices");
    propagation.wake();
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => {
                    tracing::debug!(bytes = message.get_payload_bytes().len(), "revocation notice");
                    propagation.notices.fetch_add(1, Ordering::Relaxed);
                    propagation.wake();
                }
                None => return Err(Ended { message: "the subscription's connection closed".into(), lasted: true }),
            },
            _ = keepalive.tick() => {
                redis.timed("ping", sink.ping::<String>()).await.map_err(failed(true))?;
            }
        }
    }
}

/// `MIN_BACKOFF * 2^(failures-1)`, capped at [`MAX_BACKOFF`], then a random point in its
/// upper half, so replicas that lost Redis together do not all come back at once.
fn backoff(failures: u32) -> Duration {
    let base = MIN_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(MAX_BACKOFF);
    let mut bytes = [0u8; 4];
    let jitter = if aws_lc_rs::rand::fill(&mut bytes).is_ok() {
        f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)
    } else {
        1.0
    };
    base.mul_f64(0.5 + 0.5 * jitter)
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for failures in 1..=12u32 {
            let d = backoff(failures);
            let base = MIN_BACKOFF.saturating_mul(1 << (failures - 1)).min(MAX_BACKOFF);
            assert!(d >= base / 2 && d <= base, "{failures}: {d:?} vs {base:?}");
        }
    }

    #[tokio::test]
    async fn wakes_coalesce_and_none_is_lost() {
        let propagation = Propagation::new(None);
        assert_eq!(propagation.channel(), None);
        assert_eq!(propagation.announce(Change::Added, "x").await, None, "nothing to publish on");
        assert!(propagation.woken().now_or_never().is_none(), "not woken yet");
        propagation.wake();
        propagation.wake();
        assert!(propagation.woken().now_or_never().is_some(), "a wake before the wait is kept for it");
        assert!(propagation.woken().now_or_never().is_none(), "two wakes before a read make one read");
    }
}
