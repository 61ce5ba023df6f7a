//! The `jwt` target: a JWT (RFC 7519) signed by Tessera's own issuer, for any service that
//! trusts Tessera as an OIDC issuer.
//!
//! # Layout
//! - `config.rs`: [`JwtTargetConfig`], the `type: jwt` entry of `broker.yaml`, and its
//!   validation.
//! - `issue.rs`: [`JwtTarget`], which builds the claim set from a grant and signs it.

mod config;
mod issue;
#[cfg(test)]
mod tests;

pub use config::{JwtTargetConfig, MAX_TTL_CAP};
pub use issue::{JwtTarget, RESERVED_CLAIMS};

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "jwt";
