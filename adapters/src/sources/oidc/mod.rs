//! The `oidc` source: any OIDC provider or JWT issuer, verified with the shared JWT rules
//! (DESIGN.md "Sources") and mapped to an identity with configurable claims.
//!
//! # Layout
//! - [`config`]: [`OidcSourceConfig`], the `type: oidc` entry, and its build.
//! - `verify`: verified claims to [`Identity`](crate::identity::Identity).

use crate::jwt::JwtSource;

pub mod config;
mod verify;

pub use config::OidcSourceConfig;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "oidc";

/// A built `oidc` source.
pub type OidcSource = JwtSource<verify::OidcClaims>;

#[cfg(test)]
mod tests;
