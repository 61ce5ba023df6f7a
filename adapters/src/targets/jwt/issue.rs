//! Building and signing the claim set of a Tessera JWT (RFC 7519 §4).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::oauth::token_type;
use crate::target::{
    CredentialTarget, Grant, IssuedCredential, IssuedJwt, RequestDescription, Signer, SigningAlgorithm,
    TargetBase, TargetError,
};

/// The registered claims (RFC 7519 §4.1) Tessera always sets itself. Neither a target's
/// static claims nor a rule's claims may name them: a token whose `sub` or `exp` came from
/// a template would no longer say who it is for or how long it lives. Nor may they name
/// `act` (RFC 8693 §4.1): only a delegated request, verified, puts an actor in a token.
pub const RESERVED_CLAIMS: &[&str] = &["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "act"];

/// A configured `jwt` target, made by [`JwtTargetConfig`](super::JwtTargetConfig) once its
/// values are checked.
#[derive(Debug)]
pub struct JwtTarget {
    pub(super) base: TargetBase,
    pub(super) audience: String,
    pub(super) algorithm: SigningAlgorithm,
    pub(super) claims: Map<String, Value>,
    pub(super) signer: Arc<dyn Signer>,
    pub(super) clock: Arc<dyn Clock>,
}

impl JwtTarget {
    /// The `aud` of issued tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The claims `grant` decides and the token's lifetime: the target's static claims,
    /// then the rule's rendered claims, later ones winning, then the granted `scope`
    /// (RFC 8693 §4.2), written last: the mapping engine decided it, so no template can
    /// widen it. Every check a grant can fail happens here.
    fn granted(&self, grant: &Grant) -> Result<(Map<String, Value>, Duration), TargetError> {
        if grant.target() != self.base.name {
            return Err(TargetError::InvalidGrant(format!(
                "grant is for target `{}`, not `{}`",
                grant.target(),
                self.base.name
            )));
        }
        if let Some(name) = grant.claims().keys().find(|k| RESERVED_CLAIMS.contains(&k.as_str())) {
            return Err(TargetError::InvalidGrant(format!(
                "claim `{name}` is set by Tessera and cannot be granted"
            )));
        }
        let ttl = grant.ttl().min(self.base.max_ttl);
        if ttl.is_zero() {
            return Err(TargetError::InvalidGrant("granted lifetime is zero".into()));
        }
        let mut claims = Map::new();
        for (name, value) in self.claims.iter().chain(grant.claims()) {
            claims.insert(name.clone(), value.clone());
        }
        if let Some(scope) = grant.scope() {
            claims.insert("scope".into(), Value::from(scope));
        }
        Ok((claims, ttl))
    }

    /// The claim set for `grant` and its `exp`: the registered claims (RFC 7519 §4.1),
    /// which Tessera alone sets, and the [`granted`](Self::granted) ones.
    pub(super) fn claims(&self, grant: &Grant) -> Result<(Map<String, Value>, i64), TargetError> {
        let (granted, ttl) = self.granted(grant)?;
        let now = self.clock.now();
        // `ttl` is at most `max_ttl`, itself capped at a day, so this never saturates.
        let exp = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));

        let mut claims = Map::new();
        claims.insert("iss".into(), Value::from(self.signer.issuer()));
        claims.insert("sub".into(), Value::from(grant.identity().id.as_str()));
        claims.insert("aud".into(), Value::from(self.audience.as_str()));
        claims.insert("iat".into(), Value::from(now));
        claims.insert("nbf".into(), Value::from(now));
        claims.insert("exp".into(), Value::from(exp));
        claims.insert("jti".into(), Value::from(uuid::Uuid::new_v4().to_string()));
        claims.extend(granted);
        if let Some(act) = grant.act_claim(self.signer.issuer()) {
            claims.insert("act".into(), act);
        }
        Ok((claims, exp))
    }
}

#[async_trait]
impl CredentialTarget for JwtTarget {
    fn base(&self) -> &TargetBase {
        &self.base
    }

    fn issued_jwt(&self) -> Option<IssuedJwt> {
        Some(IssuedJwt { audience: self.audience.clone(), algorithm: self.algorithm })
    }

    /// Signing is local and cheap, and each token has its own `jti` for replay
    /// detection, which a cached token would repeat.
    fn cacheable(&self) -> bool {
        false
    }

    /// The granted claims and lifetime, and the identity id the token carries as `sub`.
    fn describe_request(&self, grant: &Grant) -> Result<RequestDescription, TargetError> {
        let (claims, ttl) = self.granted(grant)?;
        Ok(RequestDescription::new(grant)
            .with("claims", claims)
            .with("ttl", ttl.as_secs())
            .with("sub", grant.identity().id.as_str()))
    }

    async fn issue(&self, grant: &Grant) -> Result<IssuedCredential, TargetError> {
        let (claims, expires_at) = self.claims(grant)?;
        let access_token = self.signer.sign(self.algorithm, &claims)?;
        Ok(IssuedCredential {
            access_token,
            issued_token_type: token_type::JWT,
            token_type: "Bearer",
            expires_at,
            platform_credentials: None,
        })
    }
}
