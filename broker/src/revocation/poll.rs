//! Revocations made on other replicas: each broker with an audit store reads the
//! revocations from it every [`POLL_INTERVAL`] and swaps the set it enforces, so a
//! revocation made on any replica sharing the store is enforced by all of them within
//! about a second. A revocation seen for the first time also purges this process's
//! credential cache of what it names (the replica that made it purged the shared one).
//! When the store does not answer, the last set read stays enforced.
//! With Redis, a notice from the replica that made the change wakes the poller at once
//! (see [`super::propagate`]); the interval is the fallback.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::broker::Broker;

/// How often the store is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Start polling; `None` for a broker without an audit store (it has no revocations).
pub fn spawn_poller(broker: Arc<Broker>) -> Option<JoinHandle<()>> {
    broker.audit_store()?;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let propagation = Arc::clone(broker.propagation());
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = propagation.woken() => tick.reset(),
            }
            let Some(store) = broker.audit_store() else { return };
            match store.revocations_in_force(broker.clock().now_millis()).await {
                Ok(list) => {
                    if failing {
                        tracing::info!("revocations read from the store again");
                        failing = false;
                    }
                    refresh(&broker, list).await;
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, reason = "TS-REVOKE-POLL", "revocations not read from the store; the last set read stays enforced");
                }
                Err(_) => {}
            }
        }
    }))
}

/// Enforce `list` from now on, and purge the caches of what the new ones in it name.
async fn refresh(broker: &Broker, list: Vec<super::Revocation>) {
    let set = broker.pipeline().revocations();
    let known: HashSet<String> = set.all().iter().map(|r| r.id.clone()).collect();
    let now_ms = broker.clock().now_millis();
    let new: Vec<_> = list.iter().filter(|r| !known.contains(&r.id) && r.in_force(now_ms)).cloned().collect();
    broker.revoked_tokens().retain(&list.iter().map(|r| r.id.as_str()).collect());
    set.replace(list);
    for revocation in new {
        broker.enforce(&revocation).await;
        // The replica that made it purged the shared cache; a shared entry it missed is
        // never served anyway (exchanges check revocations before the cache, and an
        // issued-token one again once the credential is in hand).
        let local = broker.pipeline().cache().purge_local(&revocation);
        tracing::warn!(
            revocation = %revocation.id,
            kind = revocation.matcher.kind(),
            purged_local = local,
            reason = "TS-REVOKE-SEEN",
            "revocation made elsewhere now enforced"
        );
    }
}
