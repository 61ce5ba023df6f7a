//! The credential cache: credentials a target issued, served again to identical exchanges
//! until a safety margin before they expire, with one upstream call for concurrent
//! identical misses (single flight).
//!
//! The cache sits after verification and authorization: a hit has verified its subject
//! token and passed the rules that serve now, so a revoked rule stops the next exchange
//! at once. Entries are keyed by a SHA-256 digest of the target's description of its
//! upstream request ([`CredentialTarget::describe_request`]): the target, the rule, the
//! scope, the granted ttl, every rendered grant key and claim, and each value the target
//! sends as it will send it (an AWS session name defaulted from the workload's name, the
//! duration capped at the target's maximum), with the identity id wherever the request
//! carries it. Two workflows of one repository, whose identity id is the same, still get
//! two credentials when their session names differ; a rule whose templates render
//! differently for a new token (a changed attribute in a session tag, say) makes a new
//! key, never a stale credential.
//!
//! Upstream quotas are why this exists: AWS STS throttles `AssumeRoleWithWebIdentity` at a
//! few requests per second per account, and a fleet of workloads starting together would
//! otherwise hit it once each.
//!
//! With `redis:` configured, a miss here asks the [`shared`] cache before calling
//! upstream, and a lock there makes concurrent misses on different replicas one call: N
//! replicas make one upstream call per credential lifetime. When Redis does not answer,
//! each replica carries on alone (and says so in its log): a cache is never a reason to
//! refuse an exchange.

pub mod shared;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use tessera_adapters::{Clock, CredentialTarget, Grant, Identity, IssuedCredential, TargetError};

use self::shared::SharedCache;
use crate::metrics::Metrics;
use crate::revocation::{Matcher, Revocation};

/// The longest safety margin: a credential is never served from the cache when it has
/// less than this left (or less than a fifth of its lifetime, for short ones).
pub const MAX_MARGIN_SECS: i64 = 300;

/// Entries kept at most; beyond it, expired entries are dropped first and, if the cache
/// is still full, a new credential is returned uncached.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// How long a replica holds the shared lock while it calls upstream: longer than a
/// target's timeouts and retries take. If the holder dies, others wait at most this long.
const SHARED_LOCK_TTL: Duration = Duration::from_secs(30);

/// How often a replica waiting on another's upstream call looks for its credential.
const SHARED_POLL: Duration = Duration::from_millis(50);

/// How an exchange's credential was obtained, for its audit event and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from the cache, or from another exchange's upstream call in flight.
    Hit,
    /// This exchange made the upstream call. `miss` events count upstream calls.
    Miss,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
        }
    }
}

/// The [`digest`](tessera_adapters::RequestDescription::digest) of a grant's request description.
type Key = [u8; 32];

/// An upstream call in flight: the credential and whether a call was made (`false` when
/// the shared cache had it).
type Issuing = Shared<BoxFuture<'static, Result<(IssuedCredential, bool), TargetError>>>;

/// A cached credential, the last second it may be served, and whom it was issued to
/// under which rule (what a revocation purges by).
#[derive(Clone)]
struct Entry {
    credential: IssuedCredential,
    fresh_until: i64,
    owner: Option<Arc<Owner>>,
}

/// The identity and rule of the grant a cached credential was issued for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub identity: Identity,
    pub rule: String,
}

impl Owner {
    fn of(grant: &Grant) -> Self {
        Self { identity: grant.identity().clone(), rule: grant.rule().to_string() }
    }
}

/// Whether a revocation names the credential `credential` issued to `owner`. An entry
/// with no owner (written by an older broker) is purged by any revocation.
pub fn revoked_by(revocation: &Revocation, owner: Option<&Owner>, credential: &IssuedCredential) -> bool {
    let Some(owner) = owner else { return true };
    match &revocation.matcher {
        Matcher::Rule { rule } => owner.rule == *rule,
        Matcher::IssuedToken { fingerprint } => credential.access_token.fingerprint() == *fingerprint,
        // A cached credential does not know the subject token it was first issued for:
        // purge every credential of identities the token could have been.
        Matcher::SubjectJti { .. } => true,
        other => other.matches_identity(&owner.identity),
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    in_flight: HashMap<Key, Issuing>,
}

/// See the module documentation. One per broker process.
pub struct CredentialCache {
    clock: Arc<dyn Clock>,
    max_entries: usize,
    state: Arc<Mutex<State>>,
    shared: Option<Arc<SharedCache>>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialCache").field("max_entries", &self.max_entries).finish_non_exhaustive()
    }
}

/// The last second a credential issued at `now` and expiring at `expires_at` is served:
/// its expiry less a fifth of its lifetime, at most [`MAX_MARGIN_SECS`]. A 1 h credential
/// is served for 55 minutes, a 15 min one for 12.
pub fn fresh_until(now: i64, expires_at: i64) -> i64 {
    let lifetime = expires_at.saturating_sub(now).max(0);
    expires_at.saturating_sub((lifetime / 5).min(MAX_MARGIN_SECS))
}

/// The cache key of `grant`: the digest of `target`'s description of its upstream request
/// (the tests of each target kind's `describe_request` show that every input counts).
fn key(target: &dyn CredentialTarget, grant: &Grant) -> Result<Key, TargetError> {
    target.describe_request(grant).map(|request| request.digest())
}

impl CredentialCache {
    pub fn new(clock: Arc<dyn Clock>, max_entries: usize, metrics: Arc<Metrics>) -> Self {
        Self { clock, max_entries, state: Arc::new(Mutex::new(State::default())), shared: None, metrics }
    }

    /// Also look in, and fill, the cache replicas share.
    pub fn with_shared(mut self, shared: SharedCache) -> Self {
        self.shared = Some(Arc::new(shared));
        self
    }

    /// Entries held now (fresh or not yet dropped).
    pub fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop every credential `revocation` names, here and in the shared cache; how many
    /// were dropped here and there. A shared cache that does not answer is reported in the
    /// log: its entries expire on their own, and exchanges check revocations before any
    /// cache.
    pub async fn purge(&self, revocation: &Revocation) -> (usize, usize) {
        let local = self.purge_local(revocation);
        let shared = match &self.shared {
            None => 0,
            Some(shared) => shared.purge(revocation).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, reason = "TS-CACHE-SHARED-DOWN", "shared credential cache not purged");
                0
            }),
        };
        (local, shared)
    }

    /// Drop every credential `revocation` names from this process's cache only; how many.
    /// For a revocation made on another replica, which purged the shared cache itself.
    pub fn purge_local(&self, revocation: &Revocation) -> usize {
        let mut state = lock(&self.state);
        let before = state.entries.len();
        state.entries.retain(|_, e| !revoked_by(revocation, e.owner.as_deref(), &e.credential));
        before - state.entries.len()
    }

    /// The credential for `grant`: a fresh cached one, the result of an identical call
    /// already in flight, or a new one from `target`; and which of these it was. A
    /// failure is returned to every exchange that waited on the call and is not cached. A
    /// grant the target cannot describe is one it would refuse: it goes to `target`
    /// uncached, for the target's own error.
    ///
    /// The upstream call runs as its own task, so a caller that goes away does not cancel
    /// it for the others, and its credential is still cached.
    pub async fn get_or_issue(
        &self,
        target: &Arc<dyn CredentialTarget>,
        grant: &Grant,
    ) -> (Result<IssuedCredential, TargetError>, CacheOutcome) {
        let key = match key(target.as_ref(), grant) {
            Ok(key) => key,
            Err(_) => {
                return (issue_measured(target.as_ref(), grant, &self.metrics).await, CacheOutcome::Miss);
            }
        };
        let (issuing, outcome) = {
            let mut state = lock(&self.state);
            let now = self.clock.now();
            match state.entries.get(&key) {
                Some(entry) if now < entry.fresh_until => {
                    return (Ok(entry.credential.clone()), CacheOutcome::Hit);
                }
                Some(_) => {
                    state.entries.remove(&key);
                }
                None => {}
            }
            match state.in_flight.get(&key) {
                Some(issuing) => (issuing.clone(), CacheOutcome::Hit),
                None => {
                    let issuing = self.spawn_issue(key, Arc::clone(target), grant.clone());
                    state.in_flight.insert(key, issuing.clone());
                    (issuing, CacheOutcome::Miss)
                }
            }
        };
        match issuing.await {
            // The call this exchange started found the credential in the shared cache.
            Ok((credential, false)) => (Ok(credential), CacheOutcome::Hit),
            Ok((credential, true)) => (Ok(credential), outcome),
            Err(e) => (Err(e), outcome),
        }
    }

    fn spawn_issue(&self, key: Key, target: Arc<dyn CredentialTarget>, grant: Grant) -> Issuing {
        let state = Arc::clone(&self.state);
        let clock = Arc::clone(&self.clock);
        let max_entries = self.max_entries;
        let shared = self.shared.clone();
        let metrics = Arc::clone(&self.metrics);
        let task = tokio::spawn(async move {
            let issuer =
                Issuer { target: target.as_ref(), grant: &grant, clock: clock.as_ref(), metrics: &metrics };
            let result = obtain(shared.as_deref(), &key, &issuer).await;
            let mut state = lock(&state);
            state.in_flight.remove(&key);
            result.map(|(entry, called)| {
                let credential = entry.credential.clone();
                insert(&mut state, key, entry, clock.now(), max_entries);
                (credential, called)
            })
        });
        async move {
            task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "credential issuing task failed");
                Err(TargetError::Upstream { retryable: true, cause: "issuing task failed".into() })
            })
        }
        .boxed()
        .shared()
    }
}

/// The credential for `key`, from the shared cache or from `target`; and whether
/// `target` was called. Without a shared cache, or when it does not answer, `target` is
/// called. With one, the replica that takes the shared lock calls `target` and stores the
/// result; the others wait for it (at most [`SHARED_LOCK_TTL`], in case the holder died).
async fn obtain(
    shared: Option<&SharedCache>,
    key: &Key,
    issuer: &Issuer<'_>,
) -> Result<(Entry, bool), TargetError> {
    let Issuer { target, clock, .. } = *issuer;
    let issue = || issuer.issue();
    let Some(shared) = shared else { return Ok((issue().await?, true)) };
    let unshared = |e: crate::redis::RedisError| {
        tracing::warn!(error = %e, reason = "TS-CACHE-SHARED-DOWN", "shared credential cache unavailable; calling upstream");
    };
    let ttl_ms = u64::try_from(SHARED_LOCK_TTL.as_millis()).unwrap_or(u64::MAX);
    let give_up = Instant::now() + SHARED_LOCK_TTL;
    loop {
        match shared.get(key, target.issued_token_type(), clock.now()).await {
            Ok(Some(entry)) => return Ok((entry, false)),
            Ok(None) => {}
            Err(e) => {
                unshared(e);
                return Ok((issue().await?, true));
            }
        }
        match shared.lock(key, ttl_ms).await {
            Ok(Some(held)) => {
                let result = issue().await;
                if let Ok(entry) = &result
                    && let Err(e) = shared.put(key, entry, clock.now()).await
                {
                    unshared(e);
                }
                if let Err(e) = shared.unlock(key, held).await {
                    tracing::debug!(error = %e, "shared cache lock left to expire");
                }
                return Ok((result?, true));
            }
            Ok(None) if Instant::now() < give_up => tokio::time::sleep(SHARED_POLL).await,
            Ok(None) => {
                tracing::warn!(
                    reason = "TS-CACHE-LOCK-TIMEOUT",
                    "another replica held the credential lock too long; calling upstream"
                );
                return Ok((issue().await?, true));
            }
            Err(e) => {
                unshared(e);
                return Ok((issue().await?, true));
            }
        }
    }
}

/// What a cache miss needs to call its target.
struct Issuer<'a> {
    target: &'a dyn CredentialTarget,
    grant: &'a Grant,
    clock: &'a dyn Clock,
    metrics: &'a Metrics,
}

impl Issuer<'_> {
    async fn issue(&self) -> Result<Entry, TargetError> {
        let issued_at = self.clock.now();
        let credential = issue_measured(self.target, self.grant, self.metrics).await?;
        let fresh_until = fresh_until(issued_at, credential.expires_at);
        Ok(Entry { credential, fresh_until, owner: Some(Arc::new(Owner::of(self.grant))) })
    }
}

/// `target.issue(grant)`, its time and result counted in `tessera_target_issue_duration_seconds`.
pub async fn issue_measured(
    target: &dyn CredentialTarget,
    grant: &Grant,
    metrics: &Metrics,
) -> Result<IssuedCredential, TargetError> {
    let started = Instant::now();
    let result = target.issue(grant).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(TargetError::UpstreamRejected(_)) => "rejected",
        Err(TargetError::Upstream { .. }) => "unavailable",
        Err(TargetError::InvalidGrant(_) | TargetError::Signing(_)) => "error",
    };
    metrics.upstream_call(target.name(), target.kind(), outcome, started.elapsed());
    result
}

/// Store `entry` unless it is already stale; when full, drop stale entries first, and if
/// none were, leave the new one out rather than evict a live one.
fn insert(state: &mut State, key: Key, entry: Entry, now: i64, max_entries: usize) {
    if entry.fresh_until <= now {
        return;
    }
    if state.entries.len() >= max_entries {
        state.entries.retain(|_, e| now < e.fresh_until);
    }
    if state.entries.len() < max_entries {
        state.entries.insert(key, entry);
    } else {
        tracing::warn!(max_entries, "credential cache full; credential not cached");
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // The lock guards plain maps that every holder leaves consistent; a panic elsewhere
    // while holding it leaves nothing half-written.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_adapters::oauth::token_type;
    use tessera_adapters::secret::Secret;

    #[test]
    fn the_margin_is_a_fifth_of_the_lifetime_and_at_most_five_minutes() {
        assert_eq!(fresh_until(0, 3600), 3300);
        assert_eq!(fresh_until(0, 900), 720);
        assert_eq!(fresh_until(0, 60), 48);
        assert_eq!(fresh_until(0, 43_200), 42_900);
        assert_eq!(fresh_until(100, 100), 100);
        assert_eq!(fresh_until(100, 50), 50, "already expired: never fresh");
    }

    fn entry(fresh_until: i64) -> Entry {
        Entry {
            credential: IssuedCredential {
                access_token: Secret::new("t".into()),
                issued_token_type: token_type::ACCESS_TOKEN,
                token_type: "Bearer",
                expires_at: fresh_until + 60,
                platform_credentials: None,
            },
            fresh_until,
            owner: None,
        }
    }

    #[test]
    fn a_full_cache_drops_stale_entries_and_never_evicts_live_ones() {
        let mut state = State::default();
        insert(&mut state, [1; 32], entry(50), 100, 2);
        assert!(state.entries.is_empty(), "a credential stale on arrival is not kept");
        insert(&mut state, [1; 32], entry(150), 100, 2);
        insert(&mut state, [2; 32], entry(500), 100, 2);
        assert_eq!(state.entries.len(), 2);
        insert(&mut state, [3; 32], entry(500), 120, 2);
        assert_eq!(state.entries.len(), 2, "both live: the new one is left out");
        assert!(!state.entries.contains_key(&[3; 32]));
        insert(&mut state, [3; 32], entry(500), 200, 2);
        assert!(state.entries.contains_key(&[3; 32]), "the stale entry made room");
        assert!(!state.entries.contains_key(&[1; 32]));
    }
}
