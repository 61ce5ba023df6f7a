//! A grant to a JWT authorization grant (draft-ietf-oauth-identity-chaining §2.3.2,
//! RFC 7523 §3): `iss` this issuer, `sub` the identity id, `aud` the foreign authorization
//! server, `exp` minutes away, `iat`, `nbf`, a fresh `jti` the foreign server keeps to
//! refuse a replay, the granted `scope`, and the claims the target and the rule add
//! (the draft's claims transcription: what the foreign domain needs to decide).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::target::{
    CredentialTarget, Grant, IssuedCredential, IssuedJwt, RequestDescription, SigningAlgorithm, TargetBase,
    TargetError,
};
use crate::targets::signed::{LocalSigner, granted_ttl, rule_claims};
use crate::targets::upstream::check_grant_target;

/// A configured `jwt_grant` target, made by
/// [`JwtGrantTargetConfig`](super::JwtGrantTargetConfig) once its values are checked.
#[derive(Debug)]
pub struct JwtGrantTarget {
    pub(super) base: TargetBase,
    pub(super) authorization_server: String,
    pub(super) algorithm: SigningAlgorithm,
    pub(super) claims: Map<String, Value>,
    pub(super) local: LocalSigner,
}

impl JwtGrantTarget {
    /// The claims `grant` decides and the grant's lifetime: the target's static claims,
    /// then the rule's, then the granted `scope`, which no template can widen.
    fn granted(&self, grant: &Grant) -> Result<(Map<String, Value>, Duration), TargetError> {
        check_grant_target(grant, &self.base.name)?;
        let ttl = granted_ttl(grant, self.base.max_ttl)?;
        let mut claims = self.claims.clone();
        claims.extend(rule_claims(grant, &["scope"])?);
        if let Some(scope) = grant.scope() {
            claims.insert("scope".into(), Value::from(scope));
        }
        Ok((claims, ttl))
    }
}

#[async_trait]
impl CredentialTarget for JwtGrantTarget {
    fn base(&self) -> &TargetBase {
        &self.base
    }

    fn issued_jwt(&self) -> Option<IssuedJwt> {
        Some(IssuedJwt { audience: self.authorization_server.clone(), algorithm: self.algorithm })
    }

    /// Each grant is redeemed once: the foreign server refuses a `jti` it has seen, so a
    /// cached grant would be refused the second time.
    fn cacheable(&self) -> bool {
        false
    }

    fn describe_request(&self, grant: &Grant) -> Result<RequestDescription, TargetError> {
        let (claims, ttl) = self.granted(grant)?;
        Ok(RequestDescription::new(grant)
            .with("sub", grant.identity().id.as_str())
            .with("claims", claims)
            .with("ttl", ttl.as_secs()))
    }

    async fn issue(&self, grant: &Grant) -> Result<IssuedCredential, TargetError> {
        let (granted, ttl) = self.granted(grant)?;
        let (mut claims, expires_at) = self.local.registered_claims(
            &grant.identity().id,
            Value::from(self.authorization_server.as_str()),
            ttl,
        );
        claims.extend(granted);
        let mut credential = self.local.issue(self.algorithm, &claims, expires_at)?;
        // §2.3.2: the grant is no access token; RFC 8693 §2.2.1 writes `N_A` for that.
        credential.token_type = "N_A";
        Ok(credential)
    }
}
