//! Rotation and listing, for `tessera keys rotate` and `tessera keys list`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tessera_adapters::clock::Clock;
use tessera_adapters::target::SigningAlgorithm;

use super::IssuerError;
use super::config::IssuerConfig;
use super::keys::{KeyInfo, KeyMaterial, KeyState, StoredKey};
use super::store::{self, KeyDir};

/// What one rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// One entry per configured algorithm.
    pub rotated: Vec<AlgorithmRotation>,
    /// Retired keys past their `publish_until`, deleted.
    pub deleted: Vec<String>,
}

/// The rotation of one algorithm's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlgorithmRotation {
    pub alg: SigningAlgorithm,
    /// The former next key, now signing.
    pub activated: String,
    /// The former active key(s), now retired.
    pub retired: Vec<String>,
    /// When the retired keys leave the JWKS.
    pub publish_until: i64,
    /// The new next key, published from now on.
    pub next: String,
}

/// Rotate every configured algorithm's keys, under the directory's exclusive lock.
///
/// Per algorithm: the `next` key becomes `active` (published since it was created, so
/// verifiers already have it); the old `active` becomes `retired`, published until now +
/// `retire_grace`; a new `next` key is created. Then retired keys past `publish_until`
/// are deleted, whatever their algorithm. Keys of algorithms no longer configured are
/// otherwise left alone, so a CLI run with a narrower config cannot pull keys from under
/// running brokers.
///
/// `retire_grace` must outlast every token the retired key signed: the longest `max_ttl`
/// of any target, plus a margin covering the replicas that keep signing with it until
/// their next reload (at most [`MAX_KEY_RELOAD_INTERVAL`](super::MAX_KEY_RELOAD_INTERVAL))
/// and clock skew. Five minutes is enough.
pub fn rotate(
    config: &IssuerConfig,
    base_dir: &Path,
    clock: Arc<dyn Clock>,
    retire_grace: Duration,
) -> Result<RotationReport, IssuerError> {
    config.validate().map_err(IssuerError::Config)?;
    let dir = KeyDir::new(config.key_dir(base_dir));
    dir.create()?;
    let _lock = dir.lock_exclusive()?;
    let now = clock.now();
    let mut keys = dir.load(&HashMap::new())?;
    store::create_missing(&dir, &config.algorithms, now, &mut keys)?;

    let publish_until = now.saturating_add(i64::try_from(retire_grace.as_secs()).unwrap_or(i64::MAX));

    // Find every algorithm's next key before changing anything, so a missing one leaves
    // the directory as it was.
    let mut plan = Vec::with_capacity(config.algorithms.len());
    for &alg in &config.algorithms {
        let index = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.info.alg == alg && k.info.state == KeyState::Next)
            // The oldest next key has been published longest.
            .min_by_key(|(_, k)| (k.info.created_at, k.info.kid.clone()))
            .map(|(i, _)| i)
            .ok_or_else(|| IssuerError::MissingKey {
                alg: alg.as_str(),
                state: KeyState::Next,
                dir: dir.path().to_path_buf(),
            })?;
        plan.push((alg, index));
    }

    let mut rotated = Vec::with_capacity(plan.len());
    for (alg, promoted) in plan {
        rotated.push(rotate_one(&dir, &mut keys, alg, promoted, now, publish_until)?);
    }

    let mut deleted = Vec::new();
    for key in &keys {
        if key.info.state == KeyState::Retired && !key.info.is_published(now) {
            dir.remove(&key.info.kid)?;
            tracing::info!(kid = %key.info.kid, alg = key.info.alg.as_str(), "deleted retired signing key");
            deleted.push(key.info.kid.clone());
        }
    }
    Ok(RotationReport { rotated, deleted })
}

/// Each write leaves the directory valid: first the next key is activated (two active
/// keys sign as the newer one), then the old ones retire, then the new next appears.
fn rotate_one(
    dir: &KeyDir,
    keys: &mut Vec<StoredKey>,
    alg: SigningAlgorithm,
    promoted: usize,
    now: i64,
    publish_until: i64,
) -> Result<AlgorithmRotation, IssuerError> {
    let mut activated = String::new();
    if let Some(key) = keys.get_mut(promoted) {
        key.info.state = KeyState::Active;
        key.info.activated_at = Some(now);
        dir.write(key)?;
        activated.clone_from(&key.info.kid);
    }
    let mut retired = Vec::new();
    for (i, key) in keys.iter_mut().enumerate() {
        if i != promoted && key.info.alg == alg && key.info.state == KeyState::Active {
            key.info.state = KeyState::Retired;
            key.info.retired_at = Some(now);
            key.info.publish_until = Some(publish_until);
            dir.write(key)?;
            retired.push(key.info.kid.clone());
        }
    }
    let next = StoredKey::new(KeyMaterial::generate(alg)?, KeyState::Next, now);
    dir.write(&next)?;
    tracing::info!(
        alg = alg.as_str(),
        activated = %activated,
        retired = %retired.join(","),
        next = %next.info.kid,
        publish_until,
        "rotated signing keys"
    );
    let rotation = AlgorithmRotation { alg, activated, retired, publish_until, next: next.info.kid.clone() };
    keys.push(next);
    Ok(rotation)
}

/// Every key in the directory, without private material, ordered by algorithm, state and
/// creation time. Reads only: a missing directory is an error, not created.
pub fn list_keys(config: &IssuerConfig, base_dir: &Path) -> Result<Vec<KeyInfo>, IssuerError> {
    let dir = KeyDir::new(config.key_dir(base_dir));
    Ok(dir.read(&HashMap::new())?.into_iter().map(|k| k.info).collect())
}
