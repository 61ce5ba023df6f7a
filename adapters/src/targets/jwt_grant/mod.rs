//! The `jwt_grant` target: a JWT authorization grant for the authorization server of
//! another trust domain (draft-ietf-oauth-identity-chaining §2.3, RFC 7523 §2.1). The
//! workload gets it from a token exchange with `requested_token_type`
//! `urn:ietf:params:oauth:token-type:jwt` and presents it to the foreign authorization
//! server as `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, which answers with
//! an access token of its own domain.
//!
//! # Layout
//! - `config.rs`: [`JwtGrantTargetConfig`], the `type: jwt_grant` entry of `broker.yaml`.
//! - `issue.rs`: [`JwtGrantTarget`], which builds the grant's claims and signs it.

mod config;
mod issue;
#[cfg(test)]
mod tests;

pub use config::{JwtGrantTargetConfig, MAX_TTL_CAP};
pub use issue::JwtGrantTarget;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "jwt_grant";
