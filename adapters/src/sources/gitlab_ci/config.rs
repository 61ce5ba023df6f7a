//! The `gitlab_ci` source's config: one entry under `sources:` in `broker.yaml`.

use std::sync::Arc;

use serde::Deserialize;

use super::verify::GitlabCiClaims;
use super::{GITLAB_COM_ISSUER, GitlabCiSource};
use crate::build::{BuildContext, BuildError, BuildSource};
use crate::config::validate_name;
use crate::identity::IdShape;
use crate::jwt::{Algorithm, JwtSourceSettings, KindRules};
use crate::source::IdentitySource;

/// GitLab CI/CD jobs of allow-listed groups on one GitLab instance.
///
/// ```yaml
/// - name: gitlab
///   type: gitlab_ci
///   issuer: https://gitlab.example.com
///   audiences: [https://tessera.example.com]
///   allowed_namespaces: [platform]      # the group and its subgroups
/// ```
///
/// Beside the keys below, every key of [`JwtSourceSettings`]; `algorithms` defaults to
/// `[RS256]` (what GitLab signs with), `max_token_lifetime` to `24h` (tokens live as
/// long as the job's timeout), keys to OIDC discovery under `issuer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabCiSourceConfig {
    /// The source's name: 1-64 of `a-z`, `0-9`, `-`, `_`. Required.
    pub name: String,
    /// The instance's issuer: its external URL, exactly as tokens carry it. Default
    /// `https://gitlab.com`.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(flatten)]
    pub jwt: JwtSourceSettings,
    /// Groups or users whose projects are trusted, by path (`namespace_path`): a project
    /// is trusted when its namespace is one of these or a subgroup of one. Compared
    /// case-insensitively, as GitLab treats paths.
    #[serde(default)]
    pub allowed_namespaces: Vec<String>,
    /// Groups or users trusted by id (`namespace_id`): the project's own namespace,
    /// exactly (subgroups have ids of their own). Stable through renames.
    #[serde(default)]
    pub allowed_namespace_ids: Vec<u64>,
}

impl GitlabCiSourceConfig {
    /// The instance part of identity ids: the issuer's host, port and path.
    fn instance(&self) -> Result<String, BuildError> {
        let url = url::Url::parse(&self.issuer).map_err(|e| {
            BuildError::field("issuer", format!("issuer `{}` is not a URL: {e}", self.issuer))
        })?;
        let host = url.host_str().ok_or_else(|| BuildError::field("issuer", "issuer has no host"))?;
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(format!("{host}{port}{}", url.path().trim_end_matches('/')))
    }
}

fn default_issuer() -> String {
    GITLAB_COM_ISSUER.to_owned()
}

impl BuildSource for GitlabCiSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// `gitlab://{instance}/{project path}`.
    fn id_shape(&self) -> Option<IdShape> {
        let instance = self.instance().ok()?;
        Some(IdShape::literal(format!("gitlab://{instance}/")).field("namespace"))
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError> {
        validate_name(&self.name).map_err(|m| BuildError::field("name", m))?;
        // GitLab.com's issuer signs for every project on it, and a self-managed instance
        // may host groups that must not reach Tessera: trust is always per group.
        if self.allowed_namespaces.is_empty() && self.allowed_namespace_ids.is_empty() {
            return Err(BuildError::field(
                "allowed_namespaces",
                "name the groups to trust in allowed_namespaces (or allowed_namespace_ids): \
                 an instance's issuer signs tokens for every project on it",
            ));
        }
        if self.allowed_namespaces.iter().any(|n| n.is_empty() || n.starts_with('/') || n.ends_with('/')) {
            return Err(BuildError::field(
                "allowed_namespaces",
                "a namespace is a group path like `platform` or `platform/payments`",
            ));
        }
        let mapper = GitlabCiClaims {
            instance: self.instance()?,
            namespaces: self.allowed_namespaces.iter().map(|n| n.to_ascii_lowercase()).collect(),
            namespace_ids: self.allowed_namespace_ids.iter().map(u64::to_string).collect(),
        };
        let rules = KindRules::discovery(
            &self.name,
            vec![self.issuer.clone()],
            self.issuer.clone(),
            &[Algorithm::Rs256],
            crate::jwt::policy::DEFAULT_MAX_LIFETIME,
        );
        let verifier = self.jwt.verifier(rules, cx)?;
        Ok(Arc::new(GitlabCiSource::new(self.name.clone(), verifier, self.jwt.attributes.clone(), mapper)))
    }
}
