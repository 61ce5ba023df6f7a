//! Verified CircleCI claims to the normalized identity.
//!
//! A token (CircleCI docs, "Using OpenID Connect tokens in jobs", "Format of the
//! OpenID Connect ID token") carries `sub` = `org/{org}/project/{project}/user/{user}`
//! and, under the `oidc.circleci.com/` prefix, `project-id`, `context-ids` (an array),
//! `vcs-origin`, `vcs-ref` and `ssh-rerun` (a boolean).

use serde_json::{Map, Value};

use super::KIND;
use crate::identity::Identity;
use crate::jwt::attributes::flatten_claims;
use crate::jwt::{ClaimsMapper, VerifiedClaims, identity_base};
use crate::source::SourceError;

const PREFIX: &str = "oidc.circleci.com/";

/// The organization, the project allow-list, and whether SSH reruns are trusted.
#[derive(Debug, Clone)]
pub struct CircleciClaims {
    /// Lower-cased.
    pub(super) organization_id: String,
    /// Lower-cased; empty: every project of the organization.
    pub(super) projects: Vec<String>,
    pub(super) allow_ssh_rerun: bool,
}

impl ClaimsMapper for CircleciClaims {
    const KIND: &'static str = KIND;

    /// The subject is `org/{organization}/project/{project}/user/{user}`.
    fn sketch(&self, mut identity: Identity) -> Result<Identity, String> {
        let lower = identity.subject.to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let project = match parts.as_slice() {
            ["org", org, "project", project, ..] if *org == self.organization_id && !project.is_empty() => {
                (*project).to_owned()
            }
            _ => {
                return Err(format!(
                    "a CircleCI subject of this source is `org/{}/project/PROJECT/user/USER`",
                    self.organization_id
                ));
            }
        };
        identity.id = format!("circleci://{}/project/{project}", self.organization_id);
        identity.tenant = Some(self.organization_id.clone());
        identity.namespace = Some(project);
        Ok(identity)
    }

    /// `id = circleci://{organization}/project/{project}`.
    fn identity(&self, source: &str, claims: &VerifiedClaims) -> Result<Identity, SourceError> {
        let subject = claims.required_str("sub")?;
        let project = claims.required_str("oidc.circleci.com/project-id")?.to_ascii_lowercase();
        // The subject names the organization and the project the token claims: both
        // must be the ones this source trusts and the token's own project claim.
        let expected = format!("org/{}/project/{project}/", self.organization_id);
        if !subject.to_ascii_lowercase().starts_with(&expected) {
            return Err(SourceError::InvalidClaim("sub"));
        }
        if !self.projects.is_empty() && !self.projects.contains(&project) {
            return Err(SourceError::Policy("project is not on the allow-list".into()));
        }
        if !self.allow_ssh_rerun && claims.get("oidc.circleci.com/ssh-rerun") == Some(&Value::Bool(true)) {
            return Err(SourceError::Policy("token of a job rerun with SSH".into()));
        }
        let id = format!("circleci://{}/project/{project}", self.organization_id);
        let mut identity = identity_base(KIND, source, claims, id, subject.to_owned());
        identity.tenant = Some(self.organization_id.clone());
        identity.namespace = Some(project);
        identity.name = claims.text("oidc.circleci.com/vcs-origin");
        let platform: Map<String, Value> = claims
            .claims()
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|rest| (rest.to_owned(), v.clone())))
            .collect();
        flatten_claims(&mut identity, "circleci", &platform, &[]);
        Ok(identity)
    }
}
