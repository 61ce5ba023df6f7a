//! The `oidc` source: any OIDC provider or JWT issuer, verified with the shared JWT rules
//! (DESIGN.md "Sources") and mapped to an identity with configurable claims.
//!
//! # Layout
//! - [`config`]: [`OidcSourceConfig`], the `type: oidc` entry, and its build.
//! - `verify`: verified claims to [`Identity`](crate::identity::Identity).

use async_trait::async_trait;

use crate::jwt::JwtVerifier;
use crate::source::{IdentitySource, SourceError, SubjectToken, SubjectTokenType, VerifiedIdentity};

pub mod config;
mod verify;

use config::ClaimMapping;
pub use config::OidcSourceConfig;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "oidc";

/// A built `oidc` source.
#[derive(Debug)]
pub struct OidcSource {
    name: String,
    verifier: JwtVerifier,
    claims: ClaimMapping,
}

impl OidcSource {
    pub(crate) fn new(name: String, verifier: JwtVerifier, claims: ClaimMapping) -> Self {
        Self { name, verifier, claims }
    }
}

#[async_trait]
impl IdentitySource for OidcSource {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn accepts(&self, token_type: SubjectTokenType) -> bool {
        token_type.is_jwt()
    }

    fn issuers(&self) -> Vec<String> {
        vec![self.verifier.policy().issuer().to_owned()]
    }

    async fn verify(&self, token: &SubjectToken) -> Result<VerifiedIdentity, SourceError> {
        if !self.accepts(token.token_type) {
            return Err(SourceError::UnsupportedTokenType);
        }
        let claims = self.verifier.verify(token.value.expose()).await?;
        let identity = verify::identity(&self.name, &self.claims, &claims)?;
        Ok(VerifiedIdentity::new(identity))
    }

    fn ready(&self) -> bool {
        self.verifier.is_ready()
    }
}

#[cfg(test)]
mod tests;
