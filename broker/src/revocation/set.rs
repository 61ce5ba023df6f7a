//! The revocations in force, in memory, for the exchange path: loaded from the store at
//! start (a broker that cannot load them does not serve) and replaced whole whenever the
//! set changes. Each change is counted in a generation that revocation watches wait on
//! ([`RevocationSet::subscribe`]).

use std::sync::Arc;

use arc_swap::ArcSwap;
use tessera_adapters::Identity;
use tokio::sync::watch;

use super::{Matcher, Revocation};

/// Why an exchange was refused: the revocation that matched, and whether it names the
/// subject token itself (its `jti`) rather than the identity, rule or issued credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("revoked by revocation {id}")]
pub struct Revoked {
    pub id: String,
    pub subject_token: bool,
}

impl Revoked {
    pub fn by(revocation: &Revocation) -> Self {
        Self {
            id: revocation.id.clone(),
            subject_token: matches!(revocation.matcher, Matcher::SubjectJti { .. }),
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct RevocationSet {
    current: ArcSwap<Vec<Revocation>>,
    /// Bumped after every change of `current`.
    generation: watch::Sender<u64>,
}

impl Default for RevocationSet {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl RevocationSet {
    pub fn new(revocations: Vec<Revocation>) -> Self {
        Self { current: ArcSwap::from_pointee(revocations), generation: watch::Sender::new(0) }
    }

    /// A receiver told of every change made after this call (`changed()` resolves).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// How many changes the set has seen.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    fn changed(&self) {
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Swap in the set as the store now has it. The poller reads the store twice a second:
    /// only a set that differs counts as a change.
    pub fn replace(&self, revocations: Vec<Revocation>) {
        if **self.current.load() == revocations {
            return;
        }
        self.current.store(Arc::new(revocations));
        self.changed();
    }

    /// Add one just committed to the store.
    pub fn add(&self, revocation: Revocation) {
        self.current.rcu(|current| {
            let mut next = Vec::clone(current);
            next.retain(|r| r.id != revocation.id);
            next.push(revocation.clone());
            next
        });
        self.changed();
    }

    /// Drop one just removed in the store.
    pub fn remove(&self, id: &str) {
        self.current.rcu(|current| current.iter().filter(|r| r.id != id).cloned().collect::<Vec<_>>());
        self.changed();
    }

    /// Every revocation held, in force or not.
    pub fn all(&self) -> Arc<Vec<Revocation>> {
        self.current.load_full()
    }

    fn first(&self, now_ms: i64, hit: impl Fn(&Matcher) -> bool) -> Option<Revocation> {
        self.current.load().iter().find(|r| r.in_force(now_ms) && hit(&r.matcher)).cloned()
    }

    /// A revocation in force naming this verified identity, or the subject token it was
    /// verified from (its `jti`, if it had one).
    pub fn identity(&self, identity: &Identity, jti: Option<&str>, now_ms: i64) -> Option<Revoked> {
        self.first(now_ms, |m| match m {
            Matcher::SubjectJti { jti: revoked } => jti == Some(revoked.as_str()),
            other => other.matches_identity(identity),
        })
        .as_ref()
        .map(Revoked::by)
    }

    /// A revocation in force naming this rule.
    pub fn rule(&self, rule: &str, now_ms: i64) -> Option<Revoked> {
        self.first(now_ms, |m| matches!(m, Matcher::Rule { rule: r } if r == rule)).as_ref().map(Revoked::by)
    }

    /// A revocation in force naming the issued token with this fingerprint.
    pub fn issued(&self, fingerprint: &str, now_ms: i64) -> Option<Revocation> {
        self.first(now_ms, |m| matches!(m, Matcher::IssuedToken { fingerprint: f } if f == fingerprint))
    }
}
