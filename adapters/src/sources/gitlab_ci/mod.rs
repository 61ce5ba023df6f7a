//! The `gitlab_ci` source: GitLab CI/CD ID tokens (`id_tokens:` in `.gitlab-ci.yml`;
//! GitLab docs, "OpenID Connect (OIDC) Authentication Using ID Tokens", "Token payload"),
//! verified against one GitLab instance's issuer, restricted to allow-listed groups.
//!
//! # Layout
//! - [`config`]: [`GitlabCiSourceConfig`], the `type: gitlab_ci` entry, and its build.
//! - `verify`: the namespace allow-list, and the CI claims to
//!   [`Identity`](crate::identity::Identity).

use crate::jwt::JwtSource;

pub mod config;
mod verify;

pub use config::GitlabCiSourceConfig;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "gitlab_ci";

/// GitLab.com's issuer.
pub const GITLAB_COM_ISSUER: &str = "https://gitlab.com";

/// A built `gitlab_ci` source.
pub type GitlabCiSource = JwtSource<verify::GitlabCiClaims>;

#[cfg(test)]
mod tests;
