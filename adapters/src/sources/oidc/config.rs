//! The `oidc` source's config: one entry under `sources:` in `broker.yaml`.

use std::sync::Arc;

use serde::Deserialize;

use super::OidcSource;
use super::verify::OidcClaims;
use crate::build::{BuildContext, BuildError, BuildSource};
use crate::config::validate_name;
use crate::identity::IdShape;
use crate::jwt::{Algorithm, JwtSourceSettings, KindRules};
use crate::source::IdentitySource;

/// Any OIDC provider or JWT issuer, verified by its published keys.
///
/// ```yaml
/// - name: corp-idp
///   type: oidc
///   issuer: https://idp.example.com
///   audiences: [tessera]
/// ```
///
/// Beside the keys below, every key of [`JwtSourceSettings`] (`audiences`, `jwks_uri`,
/// `jwks_file`, `algorithms` (default `[RS256, ES256]`), `max_token_lifetime` (default
/// `24h`), `leeway`, `insecure_http`, `jwks_refresh_interval`, `jwks_max_stale`,
/// `attributes`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSourceConfig {
    /// The source's name: 1-64 of `a-z`, `0-9`, `-`, `_`. Required.
    pub name: String,
    /// The exact `iss` tokens must carry, compared as a string (a trailing `/` matters).
    /// Without `jwks_uri` or `jwks_file`, keys are found by OIDC discovery under this URL.
    /// Required.
    pub issuer: String,
    #[serde(flatten)]
    pub jwt: JwtSourceSettings,
    /// The claim whose value is the identity's subject; it must be a non-empty string.
    /// Default `sub`.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim filling the identity's `tenant`. Dotted names reach into nested objects.
    /// Default: none.
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// The claim filling the identity's `namespace`. Default: none.
    #[serde(default)]
    pub namespace_claim: Option<String>,
    /// The claim filling the identity's `name`. Default: none.
    #[serde(default)]
    pub name_claim: Option<String>,
    /// The claim filling the identity's `instance`. Default: none.
    #[serde(default)]
    pub instance_claim: Option<String>,
}

fn default_subject_claim() -> String {
    "sub".to_owned()
}

impl OidcSourceConfig {
    fn claim_mapping(&self) -> Result<OidcClaims, BuildError> {
        if self.subject_claim.is_empty() {
            return Err(BuildError::field("subject_claim", "subject_claim must not be empty"));
        }
        let optional = |field: &'static str, value: &Option<String>| match value {
            Some(claim) if claim.is_empty() => {
                Err(BuildError::field(field, format!("{field} must not be empty; leave it out instead")))
            }
            other => Ok(other.clone()),
        };
        Ok(OidcClaims {
            subject: self.subject_claim.clone(),
            tenant: optional("tenant_claim", &self.tenant_claim)?,
            namespace: optional("namespace_claim", &self.namespace_claim)?,
            name: optional("name_claim", &self.name_claim)?,
            instance: optional("instance_claim", &self.instance_claim)?,
        })
    }
}

impl BuildSource for OidcSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// `oidc://{source}/{subject}`.
    fn id_shape(&self) -> Option<IdShape> {
        Some(IdShape::literal(format!("oidc://{}/", self.name)).field("subject"))
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError> {
        validate_name(&self.name).map_err(|m| BuildError::field("name", m))?;
        let claims = self.claim_mapping()?;
        let rules = KindRules::discovery(
            &self.name,
            vec![self.issuer.clone()],
            self.issuer.clone(),
            &Algorithm::DEFAULT,
            crate::jwt::policy::DEFAULT_MAX_LIFETIME,
        );
        let verifier = self.jwt.verifier(rules, cx)?;
        Ok(Arc::new(OidcSource::new(self.name.clone(), verifier, self.jwt.attributes.clone(), claims)))
    }
}
