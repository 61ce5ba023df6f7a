//! The `circleci` source: CircleCI OIDC tokens (`$CIRCLE_OIDC_TOKEN_V2` in a job; CircleCI
//! docs, "Using OpenID Connect tokens in jobs"), verified against one organization's
//! issuer `https://oidc.circleci.com/org/{organization_id}`.
//!
//! This kind is also the worked example of docs/adapters.md: a JWT source is this
//! folder plus one line in `registry.rs`.
//!
//! # Layout
//! - [`config`]: [`CircleciSourceConfig`], the `type: circleci` entry, and its build.
//! - `verify`: the project allow-list, SSH reruns, and the claims to
//!   [`Identity`](crate::identity::Identity).

use crate::jwt::JwtSource;

pub mod config;
mod verify;

pub use config::CircleciSourceConfig;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "circleci";

/// The issuer of an organization's tokens.
pub fn issuer(organization_id: &str) -> String {
    format!("https://oidc.circleci.com/org/{organization_id}")
}

/// A built `circleci` source.
pub type CircleciSource = JwtSource<verify::CircleciClaims>;

#[cfg(test)]
mod tests;
