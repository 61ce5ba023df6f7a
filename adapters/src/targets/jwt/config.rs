//! The `type: jwt` entry of `broker.yaml`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::issue::{JwtTarget, RESERVED_CLAIMS};
use crate::build::{BuildContext, BuildError, BuildTarget};
use crate::config::duration;
use crate::oauth::token_type::JWT;
use crate::target::{CredentialTarget, SigningAlgorithm};
use crate::targets::base::{TargetBase, es256, minutes};
use crate::targets::signed::{LocalSigner, check_signing};

/// The longest `max_ttl` a `jwt` target may have. A bearer token that outlives a day is a
/// standing credential, which is what Tessera exists to remove.
pub const MAX_TTL_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// A `jwt` target: Tessera signs a JWT with its own issuer key.
///
/// ```yaml
/// - name: internal-api
///   type: jwt
///   audience: https://api.internal
///   algorithm: ES256
///   max_ttl: 1h
///   default_ttl: 15m
///   claims: { env: prod }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtTargetConfig {
    /// The target's name; callers request it as `audience`.
    pub name: String,
    /// The `aud` claim of issued tokens (RFC 7519 §4.1.3). Default: the target name.
    #[serde(default)]
    pub audience: Option<String>,
    /// The signing algorithm; the issuer must have keys for it (`issuer.algorithms`).
    /// Default: `ES256`.
    #[serde(default = "es256")]
    pub algorithm: SigningAlgorithm,
    /// The longest lifetime of an issued token; rules asking for more are load errors.
    /// Default: `1h`; at most `24h`.
    #[serde(default = "minutes::<60>", with = "duration")]
    pub max_ttl: Duration,
    /// The lifetime used when a rule names none. Default: `15m`; at most `max_ttl`.
    #[serde(default = "minutes::<15>", with = "duration")]
    pub default_ttl: Duration,
    /// Static claims added to every token. The registered claims Tessera sets itself
    /// (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`) cannot be named here; a rule's
    /// claims override these. Default: none.
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl BuildTarget for JwtTargetConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// `audience`, else the target's name.
    fn audiences(&self) -> Vec<String> {
        vec![self.audience.clone().unwrap_or_else(|| self.name.clone())]
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError> {
        let base = TargetBase::new(super::KIND, JWT, &self.name, self.max_ttl, self.default_ttl)?;

        let audience = self.audience.clone().unwrap_or_else(|| self.name.clone());
        if audience.trim().is_empty() {
            return Err(BuildError::field("audience", "audience must not be empty"));
        }

        check_signing(cx, self.algorithm, self.max_ttl, MAX_TTL_CAP, self.default_ttl)?;

        for name in self.claims.keys() {
            if RESERVED_CLAIMS.contains(&name.as_str()) {
                return Err(BuildError::field(
                    "claims",
                    format!("claim `{name}` is set by Tessera and cannot be configured"),
                ));
            }
            if name.is_empty() {
                return Err(BuildError::field("claims", "claim names must not be empty"));
            }
        }

        Ok(Arc::new(JwtTarget {
            base,
            audience,
            algorithm: self.algorithm,
            claims: self.claims.clone(),
            local: LocalSigner { signer: Arc::clone(&cx.signer), clock: Arc::clone(&cx.clock) },
        }))
    }
}
