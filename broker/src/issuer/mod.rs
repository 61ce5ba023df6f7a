//! Tessera as an OIDC issuer: its signing keys, their rotation, the JWKS and discovery
//! documents verifiers fetch, and the [`Signer`] every target signs through.
//!
//! # Layout
//! - `config.rs`: [`IssuerConfig`], the `issuer:` section of `broker.yaml`.
//! - `keys.rs`: one key: lifecycle state, RFC 7638 thumbprint, public JWK, the private
//!   key parsed once, the key-file format, compact JWS signing.
//! - `store.rs`: the key directory: atomic 0600 files, the replica lock, loading.
//! - `rotate.rs`: [`rotate`] and [`list_keys`], for the `tessera keys` commands.
//! - `documents.rs`: the JWKS (RFC 7517 §5) and discovery (OpenID Discovery 1.0 §3)
//!   documents.
//!
//! # Key lifecycle
//! Each configured algorithm has one `active` key, which signs, and one `next` key, which
//! is published but does not sign yet. Rotation activates the next key (verifiers have
//! had it since it was created), retires the old active key and keeps it published
//! longer than any token it signed can live, and creates a new next key. Replicas share
//! the directory and pick up changes every `key_reload_interval`.

mod config;
mod documents;
mod error;
mod keys;
mod rotate;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Map, Value};
use tessera_adapters::Secret;
use tessera_adapters::clock::Clock;
use tessera_adapters::target::{SignError, Signer, SigningAlgorithm};

pub use config::{IssuerConfig, IssuerUrl, MAX_KEY_RELOAD_INTERVAL};
pub use documents::CLAIMS_SUPPORTED;
pub use error::IssuerError;
pub use keys::{KeyInfo, KeyState};
pub use rotate::{AlgorithmRotation, RotationReport, list_keys, rotate};
pub(crate) use store::check_key_file_mode;

use keys::{KeyMaterial, StoredKey};
use store::KeyDir;

/// Tessera's issuer, shared as `Arc<Issuer>`. Signing reads the current key set without
/// locking; [`Issuer::reload`] swaps in a new one whole.
pub struct Issuer {
    url: IssuerUrl,
    algorithms: Vec<SigningAlgorithm>,
    dir: KeyDir,
    reload_interval: Duration,
    clock: Arc<dyn Clock>,
    keys: ArcSwap<KeySet>,
    discovery: Arc<[u8]>,
    /// Serializes reloads, so a slow one cannot swap in an older read over a newer one.
    reloading: Mutex<()>,
}

/// The keys loaded from the directory, with what is derived from them.
#[derive(Debug)]
struct KeySet {
    /// Every key in the directory, in `store::sort` order.
    keys: Vec<StoredKey>,
    /// The signing key per configured algorithm.
    active: Vec<(SigningAlgorithm, StoredKey)>,
    published: Published,
}

/// The JWKS as of some time, and until when it stays right.
#[derive(Debug)]
struct Published {
    jwks: Arc<[u8]>,
    /// The first `publish_until` of a published retired key: the JWKS must drop it then,
    /// though no file has changed.
    valid_until: i64,
}

impl KeySet {
    fn new(
        mut keys: Vec<StoredKey>,
        algorithms: &[SigningAlgorithm],
        now: i64,
        dir: &Path,
    ) -> Result<Self, IssuerError> {
        store::sort(&mut keys);
        let mut active = Vec::with_capacity(algorithms.len());
        for &alg in algorithms {
            // Mid-rotation (or after a crash in it) two keys can be active; the one
            // activated last is the one rotation is moving to.
            let key = keys
                .iter()
                .filter(|k| k.info.alg == alg && k.info.state == KeyState::Active)
                .max_by_key(|k| (k.info.activated_at, k.info.created_at, k.info.kid.clone()))
                .ok_or_else(|| IssuerError::MissingKey {
                    alg: alg.as_str(),
                    state: KeyState::Active,
                    dir: dir.to_path_buf(),
                })?;
            active.push((alg, key.clone()));
        }
        let published = Published::new(&keys, now);
        Ok(Self { keys, active, published })
    }

    fn infos(&self) -> impl Iterator<Item = &KeyInfo> {
        self.keys.iter().map(|k| &k.info)
    }

    fn cache(&self) -> HashMap<String, Arc<KeyMaterial>> {
        self.keys.iter().map(|k| (k.info.kid.clone(), Arc::clone(&k.material))).collect()
    }

    fn active(&self, alg: SigningAlgorithm) -> Option<&StoredKey> {
        self.active.iter().find(|(a, _)| *a == alg).map(|(_, k)| k)
    }
}

impl Published {
    /// Active keys first, then next, then retired, each group by algorithm.
    fn new(keys: &[StoredKey], now: i64) -> Self {
        let mut shown: Vec<&StoredKey> = keys.iter().filter(|k| k.info.is_published(now)).collect();
        let rank = |s: KeyState| match s {
            KeyState::Active => 0,
            KeyState::Next => 1,
            KeyState::Retired => 2,
        };
        shown.sort_by_key(|k| (rank(k.info.state), k.info.alg, k.info.created_at));
        let valid_until = shown
            .iter()
            .filter(|k| k.info.state == KeyState::Retired)
            .filter_map(|k| k.info.publish_until)
            .min()
            .unwrap_or(i64::MAX);
        Self { jwks: documents::jwks(shown), valid_until }
    }
}

impl Issuer {
    /// Open the key directory, creating it and any missing active and next keys (under
    /// the directory lock, so replicas starting together create one set between them),
    /// and load every key. Blocks on file I/O, the lock and key generation: call it at
    /// startup or from a blocking task.
    pub fn open(
        config: &IssuerConfig,
        base_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, IssuerError> {
        config.validate().map_err(IssuerError::Config)?;
        let dir = KeyDir::new(config.key_dir(base_dir));
        dir.create()?;
        let now = clock.now();
        let none = HashMap::new();
        let mut keys = dir.read(&none)?;
        if !store::complete(&keys, &config.algorithms) {
            keys = store::ensure_keys(&dir, &config.algorithms, now, &none)?;
        }
        let set = KeySet::new(keys, &config.algorithms, now, dir.path())?;
        for (alg, key) in &set.active {
            tracing::info!(alg = alg.as_str(), kid = %key.info.kid, "signing key loaded");
        }
        Ok(Arc::new(Self {
            discovery: documents::discovery(&config.url, &config.algorithms),
            url: config.url.clone(),
            algorithms: config.algorithms.clone(),
            dir,
            reload_interval: config.key_reload_interval,
            clock,
            keys: ArcSwap::from_pointee(set),
            reloading: Mutex::new(()),
        }))
    }

    /// The issuer URL, the `iss` of every token.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// A compact JWS over `claims` by the active key of `alg`, with header `{alg, kid,
    /// typ}`: for tokens of another type than the `JWT`s [`Signer::sign`] makes (Security
    /// Event Tokens, `secevent+jwt`).
    pub fn sign_typed(
        &self,
        alg: SigningAlgorithm,
        typ: &str,
        claims: &Map<String, Value>,
    ) -> Result<Secret<String>, SignError> {
        let keys = self.keys.load();
        let key = keys.active(alg).ok_or(SignError::NoActiveKey(alg.as_str()))?;
        key.material.sign_typed(typ, claims)
    }

    /// The key directory in use.
    pub fn key_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Re-read the key directory and swap the new keys in if anything changed. Returns
    /// whether it did. On error the current keys keep serving. Blocks on file I/O and
    /// the directory lock.
    pub fn reload(&self) -> Result<bool, IssuerError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.keys.load_full();
        let keys = self.dir.read(&current.cache())?;
        let now = self.clock.now();
        let set = KeySet::new(keys, &self.algorithms, now, self.dir.path())?;
        if set.infos().eq(current.infos()) {
            return Ok(false);
        }
        for (alg, key) in &set.active {
            if current.active(*alg).is_none_or(|k| k.info.kid != key.info.kid) {
                tracing::info!(alg = alg.as_str(), kid = %key.info.kid, "signing key changed");
            }
        }
        self.keys.store(Arc::new(set));
        Ok(true)
    }

    /// Run [`Issuer::reload`] every `key_reload_interval` on the current tokio runtime,
    /// logging failures. The task ends when the issuer is dropped.
    pub fn spawn_reloader(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, IssuerError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| IssuerError::NoRuntime)?;
        let issuer = Arc::downgrade(self);
        let period = self.reload_interval;
        Ok(runtime.spawn(async move {
            let start = tokio::time::Instant::now() + period;
            let mut ticks = tokio::time::interval_at(start, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(issuer) = issuer.upgrade() else {
                    break;
                };
                // Reading and parsing files blocks; keep it off the request workers.
                match tokio::task::spawn_blocking(move || issuer.reload()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(
                        code = e.code(),
                        error = %e,
                        "signing key reload failed; the current keys keep serving"
                    ),
                    Err(e) => tracing::error!(error = %e, "signing key reload task failed"),
                }
            }
        }))
    }

    /// The JWK Set document (RFC 7517 §5): next, active and still-published retired keys.
    /// Serialized when the keys change, or when a retired key's time runs out.
    pub fn jwks_json(&self) -> Arc<[u8]> {
        let now = self.clock.now();
        let current = self.keys.load();
        if now < current.published.valid_until {
            return Arc::clone(&current.published.jwks);
        }
        drop(current);
        // Rebuilt from whichever set is current, so a concurrent reload is never undone.
        let _replaced = self.keys.rcu(|set| {
            if now < set.published.valid_until {
                return Arc::clone(set);
            }
            Arc::new(KeySet {
                keys: set.keys.clone(),
                active: set.active.clone(),
                published: Published::new(&set.keys, now),
            })
        });
        Arc::clone(&self.keys.load().published.jwks)
    }

    /// The SPIFFE bundle of the trust domain Tessera issues JWT-SVIDs in: the published
    /// keys of `algorithms` (those the `spiffe` targets sign with), as of now.
    pub fn spiffe_bundle_json(&self, algorithms: &[SigningAlgorithm], refresh_hint: Duration) -> Vec<u8> {
        documents::spiffe_bundle(&self.keys.load().keys, algorithms, refresh_hint, self.clock.now())
    }

    /// The OpenID Provider Metadata document (OpenID Discovery 1.0 §3).
    pub fn discovery_json(&self) -> Arc<[u8]> {
        Arc::clone(&self.discovery)
    }

    /// Every loaded key, without private material.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.keys.load().infos().cloned().collect()
    }

    /// The kid that signs `alg` now.
    pub fn active_kid(&self, alg: SigningAlgorithm) -> Option<String> {
        self.keys.load().active(alg).map(|k| k.info.kid.clone())
    }
}

impl Signer for Issuer {
    fn issuer(&self) -> &str {
        self.url.as_str()
    }

    fn algorithms(&self) -> Vec<SigningAlgorithm> {
        self.algorithms.clone()
    }

    /// A compact JWS (RFC 7515 §7.1) with header `{alg, kid, typ: "JWT"}`, signed by the
    /// active key of `alg`.
    fn sign(&self, alg: SigningAlgorithm, claims: &Map<String, Value>) -> Result<Secret<String>, SignError> {
        let keys = self.keys.load();
        let key = keys.active(alg).ok_or(SignError::NoActiveKey(alg.as_str()))?;
        key.material.sign(claims)
    }

    /// As [`sign`](Signer::sign), with header `{alg, kid, typ}`.
    fn sign_typed(
        &self,
        alg: SigningAlgorithm,
        typ: &'static str,
        claims: &Map<String, Value>,
    ) -> Result<Secret<String>, SignError> {
        let keys = self.keys.load();
        let key = keys.active(alg).ok_or(SignError::NoActiveKey(alg.as_str()))?;
        key.material.sign_typed(typ, claims)
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.load();
        let active: Vec<(&str, &str)> =
            keys.active.iter().map(|(a, k)| (a.as_str(), k.info.kid.as_str())).collect();
        f.debug_struct("Issuer")
            .field("url", &self.url)
            .field("key_dir", &self.dir.path())
            .field("algorithms", &self.algorithms)
            .field("active", &active)
            .finish_non_exhaustive()
    }
}
