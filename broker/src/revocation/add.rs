//! Making a revocation, whoever asks (the admin API, `tessera revoke` through it, a
//! shared signal): committed to the store first, then enforced by this broker at once,
//! announced to the other replicas (through Redis when configured), the credentials it
//! names purged from the caches, what targets can take back taken back (PostgreSQL
//! logins dropped) before it is answered, and the configured SSF receivers told (in the
//! background: telling them never delays or undoes the revocation).

use crate::audit::store::{AuditStore, StoreError, rfc3339_ms};
use crate::broker::Broker;

use super::{Matcher, Revocation};

impl Revocation {
    /// A new revocation, in force from `now_ms`, with a fresh id.
    pub fn new(
        matcher: Matcher,
        reason: String,
        author: String,
        now_ms: i64,
        expires_ms: Option<i64>,
    ) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            reason,
            author,
            created: rfc3339_ms(now_ms),
            created_ms: now_ms,
            expires: expires_ms.map(rfc3339_ms),
            expires_ms,
            removed: None,
            removed_by: None,
            matcher,
        }
    }
}

/// Store `revocation`, enforce it, announce it, purge what it names, and tell the SSF
/// receivers.
pub async fn add(broker: &Broker, store: &AuditStore, revocation: &Revocation) -> Result<(), StoreError> {
    store.add_revocation(revocation).await?;
    broker.pipeline().revocations().add(revocation.clone());
    broker.propagation().announce(super::Change::Added, &revocation.id).await;
    let (local, shared) = broker.pipeline().cache().purge(revocation).await;
    broker.enforce(revocation).await;
    tracing::warn!(
        revocation = %revocation.id,
        kind = revocation.matcher.kind(),
        author = %revocation.author,
        purged_local = local,
        purged_shared = shared,
        reason = "TS-REVOKE-ADD",
        "revocation added"
    );
    if let Some(signals) = broker.signals() {
        signals.transmitter().emit(revocation);
    }
    Ok(())
}
