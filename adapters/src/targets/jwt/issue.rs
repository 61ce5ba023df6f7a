//! Building and signing the claim set of a Tessera JWT (RFC 7519 §4).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::target::{
    CredentialTarget, Grant, IssuedCredential, IssuedJwt, RequestDescription, SigningAlgorithm, TargetBase,
    TargetError,
};
use crate::targets::signed::{LocalSigner, granted_ttl, rule_claims};
use crate::targets::upstream::check_grant_target;

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
    pub(super) local: LocalSigner,
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
        check_grant_target(grant, &self.base.name)?;
        let mut claims = self.claims.clone();
        claims.extend(rule_claims(grant, &[])?);
        let ttl = granted_ttl(grant, self.base.max_ttl)?;
        if let Some(scope) = grant.scope() {
            claims.insert("scope".into(), Value::from(scope));
        }
        Ok((claims, ttl))
    }

    /// The claim set for `grant` and its `exp`: the registered claims (RFC 7519 §4.1),
    /// which Tessera alone sets, and the [`granted`](Self::granted) ones.
    pub(super) fn claims(&self, grant: &Grant) -> Result<(Map<String, Value>, i64), TargetError> {
        let (granted, ttl) = self.granted(grant)?;
        let (mut claims, exp) =
            self.local.registered_claims(&grant.identity().id, Value::from(self.audience.as_str()), ttl);
        claims.extend(granted);
        if let Some(act) = grant.act_claim(self.local.signer.issuer()) {
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
        self.local.issue(self.algorithm, &claims, expires_at)
    }
}
