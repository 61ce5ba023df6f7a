//! Revocation watches (`POST /v1/revocations/watch`): a workload's agent holds one open per
//! credential it serves, so a revocation reaches it within about a second instead of at
//! its next periodic check.
//!
//! A watch is the agent's token request, verified as an exchange verifies it up to the
//! rule that grants it ([`Pipeline::watched`](crate::exchange::Pipeline::watched)), and
//! nothing issued, audited or counted against the rate limit. What it names is kept as a
//! [`Watched`] and checked against the [`RevocationSet`] each time the set changes (a
//! revocation made here, or read from the store by the poller, which Redis notices wake),
//! until one names it or the wait ends. The answer says only whether the caller's own
//! request is revoked.
//!
//! [`Watches`] bounds how many are held at once, and answers every held one when the
//! broker stops, so they never delay its drain. A caller that goes away keeps its place
//! until its wait ends (the HTTP server does not cancel a handler whose client closed), so
//! the bound also caps what abandoned watches can hold.

use std::sync::Arc;

use tessera_adapters::Identity;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::{RevocationSet, Revoked};

/// How long a watch is held when the request does not say: below the idle timeouts of
/// common proxies and load balancers (60 s), so none cuts it first.
pub const DEFAULT_WAIT_SECS: u64 = 25;
/// The longest wait a request may ask for; longer asks are held this long.
pub const MAX_WAIT_SECS: u64 = 60;
/// Default of `limits.max_revocation_watches`.
pub const DEFAULT_MAX_WATCHES: usize = 4096;

/// What a watch re-checks: the verified subject (and its token's `jti`), the verified
/// actor, the rule that grants the request, and the fingerprint of the credential the
/// caller holds, if it gave one.
#[derive(Debug, Clone)]
pub struct Watched {
    pub(crate) identity: Arc<Identity>,
    pub(crate) jti: Option<String>,
    pub(crate) actor: Option<(Arc<Identity>, Option<String>)>,
    pub(crate) rule: String,
    pub(crate) fingerprint: Option<String>,
}

impl Watched {
    /// A revocation in force at `now_ms` that an exchange of the same request would be
    /// refused for, or that names the credential held.
    pub fn revoked(&self, set: &RevocationSet, now_ms: i64) -> Option<Revoked> {
        set.identity(&self.identity, self.jti.as_deref(), now_ms)
            .or_else(|| {
                self.actor.as_ref().and_then(|(actor, jti)| set.identity(actor, jti.as_deref(), now_ms))
            })
            .or_else(|| set.rule(&self.rule, now_ms))
            .or_else(|| {
                self.fingerprint.as_deref().and_then(|f| set.issued(f, now_ms)).as_ref().map(Revoked::by)
            })
    }
}

/// The watches one broker holds: a bound on their number, and the switch that answers them
/// all when it stops.
#[derive(Debug)]
pub struct Watches {
    slots: Arc<Semaphore>,
    max: usize,
    stopping: watch::Sender<bool>,
}

impl Watches {
    pub fn new(max: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(max)), max, stopping: watch::Sender::new(false) }
    }

    /// A place for one more watch, held until the permit drops; `None` when `max` are held.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }

    /// How many are held now.
    pub fn open(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }

    /// The broker stops: every held watch is answered now, and new ones at once.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    pub fn stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Resolves once [`stop`](Self::stop) was called.
    pub async fn stopped(&self) {
        let mut rx = self.stopping.subscribe();
        // The sender lives as long as `self`, so the wait ends only when stopping.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

impl Default for Watches {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_WATCHES)
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;
    use serde_json::json;

    use super::*;
    use crate::revocation::{Matcher, Revocation};

    fn identity(id: &str) -> Arc<Identity> {
        let value = json!({ "id": id, "provider": "oidc", "source": "corp", "subject": id, "issuer": "https://idp.example" });
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn revocation(matcher: serde_json::Value) -> Revocation {
        let matcher: Matcher = serde_json::from_value(matcher).unwrap();
        Revocation::new(matcher, "test".into(), "admin".into(), 1_000, None)
    }

    fn watched() -> Watched {
        Watched {
            identity: identity("corp://svc-a"),
            jti: Some("jti-a".into()),
            actor: Some((identity("corp://svc-actor"), None)),
            rule: "services".into(),
            fingerprint: Some(format!("sha256:{}", "a".repeat(64))),
        }
    }

    #[test]
    fn each_part_of_the_request_can_be_revoked_and_others_are_not_its_business() {
        let w = watched();
        let hits = [
            json!({ "kind": "identity", "id": "corp://svc-a" }),
            json!({ "kind": "subject_jti", "jti": "jti-a" }),
            json!({ "kind": "identity", "id": "corp://svc-actor" }),
            json!({ "kind": "rule", "rule": "services" }),
            json!({ "kind": "issued_token", "fingerprint": format!("sha256:{}", "a".repeat(64)) }),
        ];
        for matcher in hits {
            let set = RevocationSet::new(vec![revocation(matcher.clone())]);
            assert!(w.revoked(&set, 2_000).is_some(), "{matcher}");
        }
        let misses = [
            json!({ "kind": "identity", "id": "corp://svc-b" }),
            json!({ "kind": "subject_jti", "jti": "jti-b" }),
            json!({ "kind": "rule", "rule": "other" }),
            json!({ "kind": "issued_token", "fingerprint": format!("sha256:{}", "b".repeat(64)) }),
        ];
        let set = RevocationSet::new(misses.into_iter().map(revocation).collect());
        assert!(w.revoked(&set, 2_000).is_none());
        let without_fingerprint = Watched { fingerprint: None, ..w };
        let set = RevocationSet::new(vec![revocation(
            json!({ "kind": "issued_token", "fingerprint": format!("sha256:{}", "a".repeat(64)) }),
        )]);
        assert!(without_fingerprint.revoked(&set, 2_000).is_none(), "no credential named");
    }

    #[test]
    fn a_change_of_the_set_is_seen_and_an_unchanged_read_is_not() {
        let r = revocation(json!({ "kind": "rule", "rule": "services" }));
        let set = RevocationSet::new(vec![r.clone()]);
        let mut rx = set.subscribe();
        set.replace(vec![r.clone()]);
        assert!(!rx.has_changed().unwrap(), "the poller read the same set");
        set.replace(Vec::new());
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        set.add(r.clone());
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        set.remove(&r.id);
        assert!(rx.has_changed().unwrap());
        assert_eq!(set.generation(), 3);
    }

    #[test]
    fn at_most_max_are_held_and_stopping_is_seen_by_every_waiter() {
        let watches = Watches::new(2);
        let (a, b) = (watches.admit().unwrap(), watches.admit().unwrap());
        assert!(watches.admit().is_none(), "over the bound");
        assert_eq!(watches.open(), 2);
        drop(a);
        assert_eq!(watches.open(), 1);
        assert!(watches.admit().is_some());
        drop(b);
        assert!(watches.stopped().now_or_never().is_none());
        watches.stop();
        assert!(watches.stopping());
        assert!(watches.stopped().now_or_never().is_some(), "at once, also after the call");
    }
}
