//! The `type: jwt_grant` entry of `broker.yaml`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::issue::JwtGrantTarget;
use crate::build::{BuildContext, BuildError, BuildTarget};
use crate::config::duration;
use crate::oauth::token_type::JWT;
use crate::target::{CredentialTarget, SigningAlgorithm};
use crate::targets::base::{TargetBase, es256, minutes};
use crate::targets::jwt::RESERVED_CLAIMS;
use crate::targets::signed::LocalSigner;
use crate::targets::upstream::{check_algorithm, check_ttls};

/// The longest `max_ttl` of a `jwt_grant` target. A grant is redeemed at once
/// (draft-ietf-oauth-identity-chaining §2.3: short-lived); an hour is already generous.
pub const MAX_TTL_CAP: Duration = Duration::from_secs(60 * 60);

/// A `jwt_grant` target: grants for one foreign authorization server.
///
/// ```yaml
/// - name: domain-b
///   type: jwt_grant
///   authorization_server: https://tessera.b.example
///   max_ttl: 5m
///   default_ttl: 1m
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtGrantTargetConfig {
    /// The target's name; callers request it as `audience`.
    pub name: String,
    /// The foreign authorization server, as its `aud` check expects it (RFC 7523 §3,
    /// item 3): its issuer identifier or its token endpoint URL. Required.
    pub authorization_server: String,
    /// The signing algorithm: `ES256`, `RS256` or `EdDSA`; the issuer must have keys for
    /// it, and the foreign server must accept it. Default: `ES256`.
    #[serde(default = "es256")]
    pub algorithm: SigningAlgorithm,
    /// The longest lifetime of a grant. Default: `5m`; at most `1h`.
    #[serde(default = "minutes::<5>", with = "duration")]
    pub max_ttl: Duration,
    /// The lifetime used when a rule names none. Default: `1m`; at most `max_ttl`.
    #[serde(default = "minutes::<1>", with = "duration")]
    pub default_ttl: Duration,
    /// Static claims added to every grant; a rule's claims override them. The registered
    /// claims Tessera sets (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`) and `scope`
    /// cannot be named here. Default: none.
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl BuildTarget for JwtGrantTargetConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// The foreign authorization server's.
    fn audiences(&self) -> Vec<String> {
        vec![self.authorization_server.clone()]
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError> {
        // draft-ietf-oauth-identity-chaining §2.3.2: the grant is a JWT.
        let base = TargetBase::new(super::KIND, JWT, &self.name, self.max_ttl, self.default_ttl)?;
        let server = self.authorization_server.as_str();
        if server.trim() != server || server.is_empty() || server.chars().any(char::is_control) {
            return Err(BuildError::field(
                "authorization_server",
                "the authorization server must be printable text, not empty, without surrounding spaces",
            ));
        }
        check_algorithm(cx, self.algorithm, &SigningAlgorithm::ALL, "a jwt_grant target")?;
        check_ttls(self.max_ttl, self.default_ttl, Duration::ZERO, MAX_TTL_CAP)?;
        for name in self.claims.keys() {
            if RESERVED_CLAIMS.contains(&name.as_str()) || name == "scope" || name.is_empty() {
                return Err(BuildError::field(
                    "claims",
                    format!("claim `{name}` is set by Tessera and cannot be configured"),
                ));
            }
        }
        Ok(Arc::new(JwtGrantTarget {
            base,
            authorization_server: server.to_owned(),
            algorithm: self.algorithm,
            claims: self.claims.clone(),
            local: LocalSigner { signer: Arc::clone(&cx.signer), clock: Arc::clone(&cx.clock) },
        }))
    }
}
