//! What the targets that hand a Tessera-signed JWT to the workload share (`jwt`,
//! `jwt_grant`, `spiffe`, `kubernetes`; the build checks also `txn_token`): the registered
//! claims (RFC 7519 §4.1) Tessera alone sets, the rule's own claims beside them, and the
//! lifetime a grant gets.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::build::{BuildContext, BuildError};
use crate::clock::Clock;
use crate::oauth::token_type;
use crate::target::{Grant, IssuedCredential, Signer, SigningAlgorithm, TargetError};
use crate::targets::jwt::RESERVED_CLAIMS;

/// The build checks of a target whose tokens Tessera's issuer signs (`jwt`, `txn_token`):
/// the issuer has a key for `algorithm`, `max_ttl` is between 1s and `cap`, and
/// `default_ttl` between 1s and `max_ttl`.
pub(crate) fn check_signing(
    cx: &BuildContext,
    algorithm: SigningAlgorithm,
    max_ttl: Duration,
    cap: Duration,
    default_ttl: Duration,
) -> Result<(), BuildError> {
    crate::targets::upstream::check_issuer_key(cx, algorithm, "one of those")?;
    crate::targets::upstream::check_ttls(max_ttl, default_ttl, Duration::ZERO, cap)
}

/// The granted lifetime, capped at `max_ttl`; zero is refused.
pub(crate) fn granted_ttl(grant: &Grant, max_ttl: Duration) -> Result<Duration, TargetError> {
    let ttl = grant.ttl().min(max_ttl);
    if ttl.is_zero() {
        return Err(TargetError::InvalidGrant("granted lifetime is zero".into()));
    }
    Ok(ttl)
}

/// The rule's rendered claims, none of which may be one Tessera sets: the registered
/// claims, or one of `own` (the claims the target kind writes from its grant keys).
pub(crate) fn rule_claims(grant: &Grant, own: &[&str]) -> Result<Map<String, Value>, TargetError> {
    if let Some(name) =
        grant.claims().keys().find(|k| RESERVED_CLAIMS.contains(&k.as_str()) || own.contains(&k.as_str()))
    {
        return Err(TargetError::InvalidGrant(format!(
            "claim `{name}` is set by Tessera and cannot be granted"
        )));
    }
    Ok(grant.claims().clone())
}

/// The clock and signer of a target that signs locally.
#[derive(Debug, Clone)]
pub(crate) struct LocalSigner {
    pub signer: Arc<dyn Signer>,
    pub clock: Arc<dyn Clock>,
}

impl LocalSigner {
    /// The registered claims of a token for `sub` and `aud` living `ttl` from now, and its
    /// `exp`: `iss` (the issuer URL), `sub`, `aud`, `iat`, `nbf`, `exp` and a fresh `jti`.
    pub(crate) fn registered_claims(
        &self,
        sub: &str,
        aud: Value,
        ttl: Duration,
    ) -> (Map<String, Value>, i64) {
        let now = self.clock.now();
        // Every caller caps `ttl` at a day at most, so this never saturates.
        let exp = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let mut claims = Map::new();
        claims.insert("iss".into(), Value::from(self.signer.issuer()));
        claims.insert("sub".into(), Value::from(sub));
        claims.insert("aud".into(), aud);
        claims.insert("iat".into(), Value::from(now));
        claims.insert("nbf".into(), Value::from(now));
        claims.insert("exp".into(), Value::from(exp));
        claims.insert("jti".into(), Value::from(uuid::Uuid::new_v4().to_string()));
        (claims, exp)
    }

    /// Sign `claims` with `alg`: a JWT bearer token (`issued_token_type` RFC 8693's `jwt`).
    pub(crate) fn issue(
        &self,
        alg: SigningAlgorithm,
        claims: &Map<String, Value>,
        expires_at: i64,
    ) -> Result<IssuedCredential, TargetError> {
        Ok(IssuedCredential {
            access_token: self.signer.sign(alg, claims)?,
            issued_token_type: token_type::JWT,
            token_type: "Bearer",
            expires_at,
            platform_credentials: None,
        })
    }
}
