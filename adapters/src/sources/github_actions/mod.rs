//! The `github_actions` source: GitHub Actions OIDC tokens (GitHub docs, "About security
//! hardening with OpenID Connect"), verified against GitHub's issuer
//! `https://token.actions.githubusercontent.com` (or a GitHub Enterprise Server or
//! enterprise-specific issuer), restricted to allow-listed repository owners.
//!
//! # Layout
//! - [`config`]: [`GithubActionsSourceConfig`], the `type: github_actions` entry, and its
//!   build.
//! - `verify`: the owner allow-list, and the Actions claims to
//!   [`Identity`](crate::identity::Identity).

use crate::jwt::JwtSource;

pub mod config;
mod verify;

pub use config::GithubActionsSourceConfig;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "github_actions";

/// GitHub.com's Actions issuer.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// A built `github_actions` source.
pub type GithubActionsSource = JwtSource<verify::GithubActionsClaims>;

#[cfg(test)]
mod tests;
