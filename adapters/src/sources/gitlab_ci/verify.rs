//! Verified GitLab CI claims to the normalized identity.
//!
//! An ID token (GitLab docs, "OpenID Connect (OIDC) Authentication Using ID Tokens",
//! "Token payload") carries, beside the registered claims: `namespace_id`,
//! `namespace_path`, `project_id`, `project_path`, `user_id`, `user_login`, `user_email`,
//! `user_access_level`, `pipeline_id`, `pipeline_source`, `job_id`, `ref`, `ref_type`,
//! `ref_path`, `ref_protected`, `environment`, `environment_protected`,
//! `deployment_tier`, `environment_action`, `runner_id`, `runner_environment`, `sha`,
//! `project_visibility`, `ci_config_ref_uri`, `ci_config_sha`, `groups_direct`. Ids are
//! JSON strings (`"72"`), `runner_id` a number.

use super::KIND;
use crate::identity::Identity;
use crate::jwt::attributes::{REGISTERED_CLAIMS, flatten_claims};
use crate::jwt::{ClaimsMapper, VerifiedClaims, identity_base};
use crate::source::SourceError;

/// The instance and the namespace allow-list.
#[derive(Debug, Clone)]
pub struct GitlabCiClaims {
    /// The issuer's host (and port and path, if any): `gitlab.com`.
    pub(super) instance: String,
    /// Namespace paths, lower-cased.
    pub(super) namespaces: Vec<String>,
    /// Namespace ids, as text.
    pub(super) namespace_ids: Vec<String>,
}

impl GitlabCiClaims {
    fn allows(&self, namespace_path: &str, namespace_id: &str) -> bool {
        let path = namespace_path.to_ascii_lowercase();
        self.namespace_ids.iter().any(|id| id == namespace_id)
            || self.namespaces.iter().any(|allowed| {
                path == *allowed
                    || path.strip_prefix(allowed.as_str()).is_some_and(|rest| rest.starts_with('/'))
            })
    }
}

impl ClaimsMapper for GitlabCiClaims {
    const KIND: &'static str = KIND;

    /// The subject is `project_path:{group}/{project}:ref_type:...`.
    fn sketch(&self, mut identity: Identity) -> Result<Identity, String> {
        let project_path = identity
            .subject
            .strip_prefix("project_path:")
            .and_then(|rest| rest.split(':').next())
            .filter(|p| {
                p.split_once('/').is_some_and(|(group, project)| !group.is_empty() && !project.is_empty())
            })
            .map(str::to_owned)
            .ok_or("a GitLab CI subject is `project_path:GROUP/PROJECT:...`")?;
        identity.id = format!("gitlab://{}/{project_path}", self.instance);
        identity.tenant = project_path.split('/').next().map(str::to_owned);
        identity.namespace = Some(project_path);
        Ok(identity)
    }

    /// `id = gitlab://{instance}/{project_path}` (`gitlab://gitlab.com/my-group/my-project`).
    fn identity(&self, source: &str, claims: &VerifiedClaims) -> Result<Identity, SourceError> {
        let namespace_path = claims.required_str("namespace_path")?;
        let namespace_id = claims.required_id("namespace_id")?;
        let project_path = claims.required_str("project_path")?;
        claims.required_id("project_id")?;
        // The project lives in the namespace the token names.
        if !project_path
            .strip_prefix(namespace_path)
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
        {
            return Err(SourceError::InvalidClaim("project_path"));
        }
        if !self.allows(namespace_path, &namespace_id) {
            return Err(SourceError::Policy("project namespace is not on the allow-list".into()));
        }
        let subject = claims.required_str("sub")?.to_owned();
        let id = format!("gitlab://{}/{project_path}", self.instance);
        let mut identity = identity_base(KIND, source, claims, id, subject);
        // The top-level group: the administrative boundary, like a GitHub owner.
        identity.tenant = namespace_path.split('/').next().map(str::to_owned);
        identity.namespace = Some(project_path.to_owned());
        identity.instance = claims.text("job_id");
        flatten_claims(&mut identity, "gitlab", claims.claims(), &REGISTERED_CLAIMS);
        Ok(identity)
    }
}
