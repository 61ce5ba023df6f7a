//! Verified tokens remembered by their SHA-256, so that a workload presenting the same token
//! again (the agent and most SDKs reuse one until it nears expiry) costs a hash and a map
//! lookup instead of a signature verification, as Envoy's `jwt_authn` cache does.
//!
//! An entry serves only while all of these hold; otherwise the token is verified afresh,
//! with every check, and the answer is what that verification says:
//! - the token has not expired: an entry lives until the token's `exp` (the leeway is for
//!   verification, never for the cache);
//! - the source's current key set still holds the key that verified the token, under the
//!   `kid` and algorithm the token names: a key rotated out, or a kid now naming another
//!   key, takes the entry with it;
//! - it is the same built source: every source builds its own cache, so a source built
//!   from a changed config starts empty.
//!
//! Only whole successes are kept (a token refused by the source's own policy is not), and
//! what depends on the request (the target, the scope, the rules, rate limits) is decided
//! per exchange after the identity, cached or not.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;

use super::Algorithm;
use super::keys::{KeyDigest, KeySet};
use super::verify::VerifiedClaims;
use crate::source::VerifiedIdentity;

/// The verified-token cache of each JWT source.
///
/// ```yaml
/// token_cache: { enabled: true, max_entries: 10000 }
/// ```
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCacheOptions {
    /// Default `true`. `false` verifies every presented token's signature.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Tokens remembered per source at most, from 1 to 1,000,000. Default 10,000 (a few
    /// MiB at most: one identity each).
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

impl Default for TokenCacheOptions {
    fn default() -> Self {
        Self { enabled: default_enabled(), max_entries: default_max_entries() }
    }
}

fn default_enabled() -> bool {
    true
}

fn default_max_entries() -> usize {
    10_000
}

/// The largest `max_entries` accepted.
pub const MAX_ENTRIES: usize = 1_000_000;

/// SHA-256 of a presented token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(crate) fn of(token: &str) -> Self {
        let mut out = [0; 32];
        out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref());
        Self(out)
    }
}

/// One verified token: the identity its source made of it, and what must still hold for
/// the entry to serve.
#[derive(Debug)]
struct Entry {
    identity: VerifiedIdentity,
    kid: Option<String>,
    alg: Algorithm,
    key: KeyDigest,
    expires_at: i64,
}

/// An unexpired entry, to be checked against the source's current keys.
#[derive(Debug)]
pub(crate) struct Hit {
    identity: VerifiedIdentity,
    kid: Option<String>,
    alg: Algorithm,
    key: KeyDigest,
}

impl Hit {
    /// The identity, if `keys` still holds the key that verified the token.
    pub(crate) fn still_holds(self, keys: &KeySet) -> Option<VerifiedIdentity> {
        keys.still_holds(self.kid.as_deref(), self.alg, self.key).then_some(self.identity)
    }
}

/// A source's verified tokens. See the module documentation.
#[derive(Debug)]
pub(crate) struct TokenCache {
    max_entries: usize,
    entries: Mutex<HashMap<TokenDigest, Entry>>,
}

impl TokenCache {
    /// `None` when the options turn the cache off.
    pub(crate) fn new(options: TokenCacheOptions) -> Option<Self> {
        (options.enabled && options.max_entries > 0).then(|| Self {
            max_entries: options.max_entries.min(MAX_ENTRIES),
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenDigest, Entry>> {
        // A poisoned lock only means another thread panicked mid-call; entries are whole.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A token verified before, if its entry has not expired at `now`; the caller checks
    /// [`Hit::still_holds`] against the source's current keys before trusting it.
    pub(crate) fn get(&self, token: &TokenDigest, now: i64) -> Option<Hit> {
        let mut entries = self.lock();
        let entry = entries.get(token)?;
        if now < entry.expires_at {
            return Some(Hit {
                identity: entry.identity.clone(),
                kid: entry.kid.clone(),
                alg: entry.alg,
                key: entry.key,
            });
        }
        entries.remove(token);
        None
    }

    /// Forget a token whose entry no longer serves.
    pub(crate) fn remove(&self, token: &TokenDigest) {
        self.lock().remove(token);
    }

    /// Remember a token its source has just verified and mapped to `identity`. At the
    /// bound, expired entries go first, then an arbitrary eighth of the rest, so that
    /// making room is not a scan per insert.
    pub(crate) fn insert(
        &self,
        token: TokenDigest,
        claims: &VerifiedClaims,
        identity: &VerifiedIdentity,
        now: i64,
    ) {
        if claims.expires_at() <= now {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.max_entries && !entries.contains_key(&token) {
            entries.retain(|_, e| e.expires_at > now);
            if entries.len() >= self.max_entries {
                let evict: Vec<TokenDigest> =
                    entries.keys().take(self.max_entries / 8 + 1).copied().collect();
                for digest in evict {
                    entries.remove(&digest);
                }
            }
        }
        entries.insert(
            token,
            Entry {
                identity: identity.clone(),
                kid: claims.kid().map(str::to_owned),
                alg: claims.algorithm(),
                key: claims.key_digest(),
                expires_at: claims.expires_at(),
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::jwt::policy::{DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME, JwtPolicy};
    use crate::jwt::testkit::{NOW, TestKey, jwks};
    use crate::jwt::verify_with_keys;

    /// Claims of a token verified by `key`, expiring at `exp`, and an identity for them.
    fn verified(key: &TestKey, jti: usize, exp: i64) -> (TokenDigest, VerifiedClaims, VerifiedIdentity) {
        let keys = KeySet::from_json(jwks(&[key.jwk()]).as_bytes(), &[Algorithm::Es256]).unwrap();
        let policy = JwtPolicy::new(
            "https://i",
            vec!["a".into()],
            vec![Algorithm::Es256],
            DEFAULT_LEEWAY,
            DEFAULT_MAX_LIFETIME,
        )
        .unwrap();
        let claims =
            json!({ "iss": "https://i", "aud": "a", "sub": "s", "iat": NOW, "exp": exp, "jti": jti });
        let token = key.token("ES256", &claims);
        let claims = verify_with_keys(&token, &policy, &keys, NOW).unwrap();
        let identity = serde_json::from_value(json!({
            "id": "oidc://s/s", "provider": "oidc", "source": "s", "issuer": "https://i", "subject": "s",
        }))
        .unwrap();
        (TokenDigest::of(&token), claims, VerifiedIdentity::new(identity))
    }

    fn cache(max_entries: usize) -> TokenCache {
        TokenCache::new(TokenCacheOptions { enabled: true, max_entries }).unwrap()
    }

    #[test]
    fn at_the_bound_room_is_made_and_the_newest_token_is_kept() {
        let key = TestKey::p256("k");
        let cache = cache(4);
        for jti in 0..50 {
            let (digest, claims, identity) = verified(&key, jti, NOW + 600);
            cache.insert(digest, &claims, &identity, NOW);
            assert!(cache.len() <= 4, "{} entries", cache.len());
            assert!(cache.get(&digest, NOW).is_some());
        }
    }

    #[test]
    fn expired_entries_make_room_before_live_ones() {
        let key = TestKey::p256("k");
        let cache = cache(2);
        let (live, claims, identity) = verified(&key, 0, NOW + 600);
        cache.insert(live, &claims, &identity, NOW);
        let (short, claims, identity) = verified(&key, 1, NOW + 10);
        cache.insert(short, &claims, &identity, NOW);
        let (newest, claims, identity) = verified(&key, 2, NOW + 600);
        cache.insert(newest, &claims, &identity, NOW + 20);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&live, NOW + 20).is_some());
        assert!(cache.get(&newest, NOW + 20).is_some());
        assert!(cache.get(&short, NOW + 5).is_none());
    }

    #[test]
    fn a_hit_vouches_only_while_the_key_set_holds_the_verifying_key() {
        let (key, other) = (TestKey::p256("k"), TestKey::p256("other"));
        let cache = cache(10);
        let (digest, claims, identity) = verified(&key, 0, NOW + 600);
        cache.insert(digest, &claims, &identity, NOW);
        let same =
            KeySet::from_json(jwks(&[key.jwk(), other.jwk()]).as_bytes(), &[Algorithm::Es256]).unwrap();
        assert!(cache.get(&digest, NOW).unwrap().still_holds(&same).is_some());
        let rotated = KeySet::from_json(jwks(&[other.jwk()]).as_bytes(), &[Algorithm::Es256]).unwrap();
        assert!(cache.get(&digest, NOW).unwrap().still_holds(&rotated).is_none());
        // Expired: no hit at all, and the entry is gone.
        assert!(cache.get(&digest, NOW + 600).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn options_off_or_zero_build_no_cache() {
        assert!(TokenCache::new(TokenCacheOptions { enabled: false, max_entries: 10 }).is_none());
        assert!(TokenCache::new(TokenCacheOptions { enabled: true, max_entries: 0 }).is_none());
        let defaults = TokenCacheOptions::default();
        assert!(defaults.enabled);
        assert_eq!(defaults.max_entries, 10_000);
    }
}
