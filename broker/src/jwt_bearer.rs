//! The RFC 7523 §2.1 JWT bearer grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`):
//! what it adds to a token exchange. The `assertion` is verified by the configured sources
//! and mapped by the rules exactly as a subject token is; then the checks of RFC 7523 §3
//! that a source's verification does not make:
//! - `aud` must name this authorization server: its issuer URL or its token endpoint
//!   (§3, item 3), whatever audiences the source that verified it accepts;
//! - `exp` is required (item 4; every JWT source requires it too);
//! - `jti` is required, and an assertion is accepted once: its `jti` is kept in a replay
//!   cache until the assertion expires (item 7), in this process and, when `redis:` is
//!   configured, in Redis (`SET NX PX`), so a replica cannot accept what another did.
//!
//! Every refusal of the assertion is `invalid_grant` (§3.1), each with its reason code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use redis::AsyncCommands as _;
use serde_json::Value;
use tessera_adapters::{Clock, SourceError, jwt};

use crate::redis::SharedRedis;

/// The grant a token request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GrantType {
    /// RFC 8693: `subject_token` and `subject_token_type`.
    #[default]
    TokenExchange,
    /// RFC 7523 §2.1: `assertion`, a JWT.
    JwtBearer,
}

/// Why an assertion was refused, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    /// The source refused the assertion (signature, issuer, expiry, ...).
    #[error("assertion refused: {0}")]
    Invalid(SourceError),
    /// `aud` names neither this issuer nor its token endpoint (RFC 7523 §3, item 3).
    #[error("assertion `aud` does not name this authorization server")]
    Audience,
    /// No integer `exp` (RFC 7523 §3, item 4).
    #[error("assertion has no `exp`")]
    MissingExpiry,
    /// No `jti`, so its single use cannot be enforced (RFC 7523 §3, item 7).
    #[error("assertion has no `jti`")]
    MissingJti,
    /// This `jti` of this issuer was accepted before and has not expired.
    #[error("assertion was already used: its `jti` is in the replay cache")]
    Replayed,
    /// A revocation names the assertion's `jti`.
    #[error("assertion revoked by revocation {0}")]
    Revoked(String),
    /// The replay cache could not answer (Redis down, or full): refused, as an assertion
    /// whose single use cannot be checked may be a replay.
    #[error("replay cache unavailable: {0}")]
    ReplayCache(String),
}

impl AssertionError {
    /// The greppable reason code for logs and audit: the source's code for a refused
    /// assertion, so an expired one reads `TS-SRC-EXPIRED`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(e) => e.code(),
            Self::Audience => "TS-JWTB-AUDIENCE",
            Self::MissingExpiry => "TS-JWTB-EXP",
            Self::MissingJti => "TS-JWTB-JTI",
            Self::Replayed => "TS-JWTB-REPLAY",
            Self::Revoked(_) => "TS-REVOKED",
            Self::ReplayCache(_) => "TS-JWTB-REPLAY-CACHE",
        }
    }

    /// Whether Tessera failed rather than the assertion being refused.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::ReplayCache(_))
    }
}

/// Leeway on `exp`, as the JWT sources allow at most: a `jti` is kept this much longer than
/// its assertion lives, so the assertion cannot come back within the leeway.
const LEEWAY_SECS: i64 = 60;

/// Replay cache entries kept in memory at most; when full of live entries, assertions are
/// refused until some expire.
const MAX_ENTRIES: usize = 100_000;

/// Longest `jti` accepted; longer ones are no identifier an issuer makes.
const MAX_JTI_BYTES: usize = 256;

/// The checks RFC 7523 §3 asks of this authorization server.
#[derive(Debug)]
pub struct AssertionChecks {
    /// What `aud` may name: the issuer URL and the token endpoint.
    audiences: [String; 2],
    replay: ReplayCache,
}

impl AssertionChecks {
    pub fn new(issuer_url: &str, token_endpoint: String, clock: Arc<dyn Clock>) -> Self {
        Self {
            audiences: [issuer_url.to_string(), token_endpoint],
            replay: ReplayCache { clock, seen: Mutex::default(), shared: None },
        }
    }

    /// Share the replay cache with the other replicas through Redis.
    pub fn with_shared(mut self, redis: SharedRedis) -> Self {
        self.replay.shared = Some(redis);
        self
    }

    /// Check an assertion a source has verified, and record its `jti`.
    pub async fn check(&self, assertion: &str) -> Result<(), AssertionError> {
        let claims = jwt::verified_claims(assertion)
            .ok_or(AssertionError::Invalid(SourceError::Malformed("assertion is not a JWT")))?;
        let names_us = |v: &Value| v.as_str().is_some_and(|a| self.audiences.iter().any(|ours| ours == a));
        let audience_ok = match claims.get("aud") {
            Some(Value::Array(items)) => items.iter().any(names_us),
            Some(one) => names_us(one),
            None => false,
        };
        if !audience_ok {
            return Err(AssertionError::Audience);
        }
        let exp = claims.get("exp").and_then(Value::as_i64).ok_or(AssertionError::MissingExpiry)?;
        let jti = match claims.get("jti") {
            Some(Value::String(j)) if !j.is_empty() && j.len() <= MAX_JTI_BYTES => j,
            _ => return Err(AssertionError::MissingJti),
        };
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
        // One key per issuer and `jti`: two issuers may pick the same `jti`. Hashed, so the
        // key is short and holds nothing of the assertion.
        let key = tessera_adapters::secret::fingerprint(format!("{iss}\n{jti}").as_bytes());
        let until_ms = exp.saturating_add(LEEWAY_SECS).saturating_mul(1000);
        self.replay.claim(key, until_ms).await
    }
}

/// The `jti`s accepted, each until its assertion expires.
#[derive(Debug)]
struct ReplayCache {
    clock: Arc<dyn Clock>,
    seen: Mutex<HashMap<String, i64>>,
    shared: Option<SharedRedis>,
}

impl ReplayCache {
    /// Record `key` until `until_ms`; `Replayed` if it is recorded already, here or (with
    /// Redis) by any replica.
    async fn claim(&self, key: String, until_ms: i64) -> Result<(), AssertionError> {
        let now = self.clock.now_millis();
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if seen.get(&key).is_some_and(|until| *until > now) {
                return Err(AssertionError::Replayed);
            }
            if seen.len() >= MAX_ENTRIES {
                seen.retain(|_, until| *until > now);
                if seen.len() >= MAX_ENTRIES {
                    return Err(AssertionError::ReplayCache(format!("{MAX_ENTRIES} live entries")));
                }
            }
            seen.insert(key.clone(), until_ms);
        }
        let Some(redis) = &self.shared else { return Ok(()) };
        let ttl_ms = u64::try_from(until_ms.saturating_sub(now)).unwrap_or(0).max(1000);
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::PX(ttl_ms));
        let mut conn = redis.conn();
        let name = redis.key("jti", &key);
        let set: Result<Option<String>, _> =
            redis.timed("record assertion jti", conn.set_options(name, 1, options)).await;
        match set {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(AssertionError::Replayed),
            Err(e) => {
                // Not accepted, so not spent: the client may retry once Redis is back.
                self.seen.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
                Err(AssertionError::ReplayCache(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;
    use tessera_adapters::clock::ManualClock;

    use super::*;

    fn token(claims: &Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    fn checks(clock: &Arc<ManualClock>) -> AssertionChecks {
        AssertionChecks::new(
            "https://b.example",
            "https://b.example/v1/token".into(),
            Arc::clone(clock) as Arc<dyn Clock>,
        )
    }

    #[tokio::test]
    async fn aud_must_name_this_server_and_exp_and_jti_are_required() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let c = checks(&clock);
        let base = json!({ "iss": "https://a.example", "sub": "w", "exp": 1_000_300, "jti": "j-1" });
        let with = |k: &str, v: Value| {
            let mut claims = base.clone();
            claims[k] = v;
            token(&claims)
        };
        assert!(matches!(
            c.check(&with("aud", json!("https://c.example"))).await,
            Err(AssertionError::Audience)
        ));
        assert!(matches!(c.check(&token(&base)).await, Err(AssertionError::Audience)), "no aud");
        assert!(matches!(
            c.check(&with("aud", json!(["https://c.example", 5]))).await,
            Err(AssertionError::Audience)
        ));
        let mut no_jti = base.clone();
        no_jti["aud"] = json!("https://b.example");
        no_jti.as_object_mut().unwrap().remove("jti");
        assert!(matches!(c.check(&token(&no_jti)).await, Err(AssertionError::MissingJti)));
        no_jti["jti"] = json!(7);
        assert!(matches!(c.check(&token(&no_jti)).await, Err(AssertionError::MissingJti)));
        let mut no_exp = base.clone();
        no_exp["aud"] = json!("https://b.example");
        no_exp["exp"] = json!("1000300");
        assert!(matches!(c.check(&token(&no_exp)).await, Err(AssertionError::MissingExpiry)));
        c.check(&with("aud", json!(["https://c.example", "https://b.example/v1/token"])))
            .await
            .expect("token endpoint");
    }

    #[tokio::test]
    async fn a_jti_is_accepted_once_per_issuer_until_its_assertion_expires() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let c = checks(&clock);
        let claims =
            json!({ "iss": "https://a.example", "aud": "https://b.example", "exp": 1_000_300, "jti": "j-1" });
        c.check(&token(&claims)).await.expect("first use");
        let again = c.check(&token(&claims)).await;
        assert!(matches!(again, Err(AssertionError::Replayed)), "{again:?}");
        assert_eq!(AssertionError::Replayed.code(), "TS-JWTB-REPLAY");
        let mut other_issuer = claims.clone();
        other_issuer["iss"] = json!("https://c.example");
        c.check(&token(&other_issuer)).await.expect("another issuer's jti is its own");
        // Past its expiry and the leeway the assertion is refused by its source; its `jti`
        // may then be forgotten.
        clock.set(1_000_300 + LEEWAY_SECS + 1);
        c.check(&token(&claims)).await.expect("forgotten after expiry");
    }
}
