//! The `github_actions` source's config: one entry under `sources:` in `broker.yaml`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::verify::GithubActionsClaims;
use super::{GITHUB_ISSUER, GithubActionsSource};
use crate::build::{BuildContext, BuildError, BuildSource};
use crate::config::validate_name;
use crate::identity::IdShape;
use crate::jwt::{Algorithm, JwtSourceSettings, KindRules};
use crate::source::IdentitySource;

/// GitHub Actions workflows of allow-listed repository owners.
///
/// ```yaml
/// - name: github
///   type: github_actions
///   audiences: [https://tessera.example.com]
///   allowed_owner_ids: [9919]          # github: prefer ids, they survive renames
/// ```
///
/// Beside the keys below, every key of [`JwtSourceSettings`]; `algorithms` defaults to
/// `[RS256]` (what GitHub signs with), `max_token_lifetime` to `1h`, keys to OIDC
/// discovery under `issuer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubActionsSourceConfig {
    /// The source's name: 1-64 of `a-z`, `0-9`, `-`, `_`. Required.
    pub name: String,
    /// The Actions issuer. Default `https://token.actions.githubusercontent.com`; an
    /// enterprise with a unique issuer URL uses
    /// `https://token.actions.githubusercontent.com/<enterprise>`, GitHub Enterprise
    /// Server `https://<hostname>/_services/token`.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(flatten)]
    pub jwt: JwtSourceSettings,
    /// Repository owners (organizations or users) whose workflows are trusted, by
    /// `repository_owner_id`. Stable: an owner keeps its id through renames.
    #[serde(default)]
    pub allowed_owner_ids: Vec<u64>,
    /// Repository owners trusted by login (`repository_owner`), compared
    /// case-insensitively as GitHub does. A renamed or deleted owner's login can be
    /// registered by someone else: prefer `allowed_owner_ids`.
    #[serde(default)]
    pub allowed_owners: Vec<String>,
}

fn default_issuer() -> String {
    GITHUB_ISSUER.to_owned()
}

/// GitHub's tokens live minutes; an hour leaves room without accepting long-lived ones.
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(3600);

impl BuildSource for GithubActionsSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// `github://{repository}`.
    fn id_shape(&self) -> Option<IdShape> {
        Some(IdShape::literal("github://").field("namespace"))
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError> {
        validate_name(&self.name).map_err(|m| BuildError::field("name", m))?;
        // One issuer serves every repository on GitHub: without an owner allow-list any
        // GitHub user could mint an accepted token from a repository of their own.
        if self.allowed_owner_ids.is_empty() && self.allowed_owners.is_empty() {
            return Err(BuildError::field(
                "allowed_owner_ids",
                "name the repository owners to trust in allowed_owner_ids (or allowed_owners): \
                 GitHub's issuer signs tokens for every repository on GitHub",
            ));
        }
        if self.allowed_owners.iter().any(String::is_empty) {
            return Err(BuildError::field("allowed_owners", "an owner must not be empty"));
        }
        let mapper = GithubActionsClaims {
            owner_ids: self.allowed_owner_ids.iter().map(u64::to_string).collect(),
            owners: self.allowed_owners.iter().map(|o| o.to_ascii_lowercase()).collect(),
        };
        let rules = KindRules::discovery(
            &self.name,
            vec![self.issuer.clone()],
            self.issuer.clone(),
            &[Algorithm::Rs256],
            DEFAULT_MAX_LIFETIME,
        );
        let verifier = self.jwt.verifier(rules, cx)?;
        Ok(Arc::new(GithubActionsSource::new(
            self.name.clone(),
            verifier,
            self.jwt.attributes.clone(),
            mapper,
        )))
    }
}
