//! Verified GitHub Actions claims to the normalized identity.
//!
//! An Actions token (GitHub docs, "About security hardening with OpenID Connect",
//! "Understanding the OIDC token") carries, beside the registered claims:
//! `repository` (`octo-org/octo-repo`), `repository_id`, `repository_owner`,
//! `repository_owner_id`, `repository_visibility`, `ref`, `ref_type`, `ref_protected`,
//! `sha`, `environment`, `event_name`, `workflow`, `workflow_ref`, `workflow_sha`,
//! `job_workflow_ref`, `job_workflow_sha`, `run_id`, `run_number`, `run_attempt`,
//! `runner_environment`, `actor`, `actor_id`, `head_ref`, `base_ref`, and for
//! enterprises `enterprise`, `enterprise_id`. Ids are JSON strings (`"74"`).

use super::KIND;
use crate::identity::Identity;
use crate::jwt::attributes::{REGISTERED_CLAIMS, flatten_claims};
use crate::jwt::{ClaimsMapper, VerifiedClaims, identity_base};
use crate::source::SourceError;

/// The owner allow-list, checked on every token.
#[derive(Debug, Clone)]
pub struct GithubActionsClaims {
    /// `repository_owner_id` values, as text.
    pub(super) owner_ids: Vec<String>,
    /// `repository_owner` logins, lower-cased.
    pub(super) owners: Vec<String>,
}

impl ClaimsMapper for GithubActionsClaims {
    const KIND: &'static str = KIND;

    /// The subject is `repo:{owner}/{repository}:...`.
    fn sketch(&self, mut identity: Identity) -> Result<Identity, String> {
        let repository = identity
            .subject
            .strip_prefix("repo:")
            .and_then(|rest| rest.split(':').next())
            .filter(|r| r.split_once('/').is_some_and(|(owner, name)| !owner.is_empty() && !name.is_empty()))
            .map(str::to_owned)
            .ok_or("a GitHub Actions subject is `repo:OWNER/REPOSITORY:...`")?;
        identity.id = format!("github://{repository}");
        identity.tenant = repository.split('/').next().map(str::to_owned);
        identity.namespace = Some(repository);
        Ok(identity)
    }

    /// `id = github://{repository}` (`github://octo-org/octo-repo`).
    fn identity(&self, source: &str, claims: &VerifiedClaims) -> Result<Identity, SourceError> {
        let repository = claims.required_str("repository")?;
        let owner = claims.required_str("repository_owner")?;
        let owner_id = claims.required_id("repository_owner_id")?;
        claims.required_id("repository_id")?;
        // `repository` is `{owner}/{name}`: a token whose two claims disagree does not
        // describe one repository.
        if !repository.strip_prefix(owner).is_some_and(|rest| rest.len() > 1 && rest.starts_with('/')) {
            return Err(SourceError::InvalidClaim("repository"));
        }
        let by_id = self.owner_ids.contains(&owner_id);
        let by_name = self.owners.iter().any(|o| o.eq_ignore_ascii_case(owner));
        if !by_id && !by_name {
            return Err(SourceError::Policy("repository owner is not on the allow-list".into()));
        }
        let subject = claims.required_str("sub")?.to_owned();
        let mut identity = identity_base(KIND, source, claims, format!("github://{repository}"), subject);
        identity.tenant = Some(owner.to_owned());
        identity.namespace = Some(repository.to_owned());
        identity.name = claims.text("workflow");
        identity.instance = claims.text("run_id");
        flatten_claims(&mut identity, "github", claims.claims(), &REGISTERED_CLAIMS);
        Ok(identity)
    }
}
