//! The `gcp` source's config: one entry under `sources:` in `broker.yaml`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::verify::GcpClaims;
use super::{GOOGLE_ISSUERS, GcpSource};
use crate::build::{BuildContext, BuildError, BuildSource};
use crate::config::validate_name;
use crate::identity::IdShape;
use crate::jwt::{Algorithm, JwtSourceSettings, KindRules};
use crate::source::IdentitySource;

/// Workloads on Google Cloud presenting metadata-server ID tokens.
///
/// ```yaml
/// - name: gcp
///   type: gcp
///   audiences: [https://tessera.example.com]
///   allowed_projects: [payments-prod]
///   allowed_service_accounts: [deployer@ci-tools.iam.gserviceaccount.com]
/// ```
///
/// Beside the keys below, every key of [`JwtSourceSettings`]; `algorithms` defaults to
/// `[RS256]` (what Google signs with), `max_token_lifetime` to `1h` (Google's ID tokens
/// live one hour), keys to OIDC discovery under `https://accounts.google.com` (override
/// with `jwks_uri` or `jwks_file`; the issuer itself cannot change).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSourceConfig {
    /// The source's name: 1-64 of `a-z`, `0-9`, `-`, `_`. Required.
    pub name: String,
    #[serde(flatten)]
    pub jwt: JwtSourceSettings,
    /// Projects whose workloads are trusted, by project id or project number (quoted in
    /// YAML). A token matches with the project of its Compute Engine claims
    /// (`format=full`) or the project its service account belongs to.
    #[serde(default)]
    pub allowed_projects: Vec<String>,
    /// Service accounts trusted wherever they run, by email or by unique id (the token's
    /// `sub`; stable, where an email can be reused after deletion).
    #[serde(default)]
    pub allowed_service_accounts: Vec<String>,
}

/// Google's ID tokens are valid for one hour.
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(3600);

impl BuildSource for GcpSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// `gcp://sa/{email}`.
    fn id_shape(&self) -> Option<IdShape> {
        Some(IdShape::literal("gcp://sa/").field("name"))
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError> {
        validate_name(&self.name).map_err(|m| BuildError::field("name", m))?;
        // accounts.google.com signs for every Google Cloud customer: trust must be pinned
        // to projects or service accounts, or anyone with a project gets in.
        if self.allowed_projects.is_empty() && self.allowed_service_accounts.is_empty() {
            return Err(BuildError::field(
                "allowed_projects",
                "name the projects (allowed_projects) or service accounts (allowed_service_accounts) \
                 to trust: Google's issuer signs tokens for every Google Cloud customer",
            ));
        }
        if self.allowed_projects.iter().any(String::is_empty) {
            return Err(BuildError::field("allowed_projects", "a project must not be empty"));
        }
        if self.allowed_service_accounts.iter().any(String::is_empty) {
            return Err(BuildError::field("allowed_service_accounts", "a service account must not be empty"));
        }
        let mapper = GcpClaims {
            projects: self.allowed_projects.clone(),
            service_accounts: self.allowed_service_accounts.iter().map(|s| s.to_ascii_lowercase()).collect(),
        };
        let rules = KindRules::discovery(
            &self.name,
            GOOGLE_ISSUERS.iter().map(|i| (*i).to_owned()).collect(),
            GOOGLE_ISSUERS[0].to_owned(),
            &[Algorithm::Rs256],
            DEFAULT_MAX_LIFETIME,
        );
        let verifier = self.jwt.verifier(rules, cx)?;
        Ok(Arc::new(GcpSource::new(self.name.clone(), verifier, self.jwt.attributes.clone(), mapper)))
    }
}
