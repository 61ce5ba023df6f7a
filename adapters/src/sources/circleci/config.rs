//! The `circleci` source's config: one entry under `sources:` in `broker.yaml`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::verify::CircleciClaims;
use super::{CircleciSource, issuer};
use crate::build::{BuildContext, BuildError, BuildSource};
use crate::config::validate_name;
use crate::identity::IdShape;
use crate::jwt::{Algorithm, JwtSourceSettings, KindRules};
use crate::source::IdentitySource;

/// CircleCI jobs of one organization.
///
/// ```yaml
/// - name: circleci
///   type: circleci
///   organization_id: 9d9ad8e3-1c53-4d6b-8e6a-2a2e0c6f1b1e
///   audiences: [9d9ad8e3-1c53-4d6b-8e6a-2a2e0c6f1b1e]   # CircleCI's default aud
///   allowed_project_ids: [4f5a2c1e-0b8d-4e7f-9a6b-3c2d1e0f9a8b]
/// ```
///
/// Beside the keys below, every key of [`JwtSourceSettings`]; `algorithms` defaults to
/// `[RS256]` (what CircleCI signs with), `max_token_lifetime` to `1h` (tokens live one
/// hour), keys to OIDC discovery under the organization's issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircleciSourceConfig {
    /// The source's name: 1-64 of `a-z`, `0-9`, `-`, `_`. Required.
    pub name: String,
    /// The organization's id (a UUID, "Organization Settings > Overview"): tokens are
    /// issued by `https://oidc.circleci.com/org/{organization_id}`. Required.
    pub organization_id: String,
    #[serde(flatten)]
    pub jwt: JwtSourceSettings,
    /// Projects whose jobs are trusted, by project id. Default: every project of the
    /// organization.
    #[serde(default)]
    pub allowed_project_ids: Vec<String>,
    /// Accept tokens of jobs rerun with SSH, where a person has a shell in the job.
    /// Default `false`.
    #[serde(default)]
    pub allow_ssh_rerun: bool,
}

/// CircleCI's tokens live one hour.
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(3600);

impl BuildSource for CircleciSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// `circleci://{organization}/project/{project}`.
    fn id_shape(&self) -> Option<IdShape> {
        Some(IdShape::literal(format!("circleci://{}/project/", self.organization_id)).field("namespace"))
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError> {
        validate_name(&self.name).map_err(|m| BuildError::field("name", m))?;
        let id = &self.organization_id;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(BuildError::field(
                "organization_id",
                "organization_id is the organization's UUID, e.g. 9d9ad8e3-1c53-4d6b-8e6a-2a2e0c6f1b1e",
            ));
        }
        if self.allowed_project_ids.iter().any(String::is_empty) {
            return Err(BuildError::field("allowed_project_ids", "a project id cannot be empty"));
        }
        let issuer = issuer(id);
        let mapper = CircleciClaims {
            organization_id: id.to_ascii_lowercase(),
            projects: self.allowed_project_ids.iter().map(|p| p.to_ascii_lowercase()).collect(),
            allow_ssh_rerun: self.allow_ssh_rerun,
        };
        let rules = KindRules::discovery(
            &self.name,
            vec![issuer.clone()],
            issuer,
            &[Algorithm::Rs256],
            DEFAULT_MAX_LIFETIME,
        );
        let verifier = self.jwt.verifier(rules, cx)?;
        Ok(Arc::new(CircleciSource::new(self.name.clone(), verifier, self.jwt.attributes.clone(), mapper)))
    }
}
