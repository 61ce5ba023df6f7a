//! The `oauth` target: an access token from any OAuth 2.0 authorization server that trusts
//! Tessera's issuer. Tessera signs an assertion for the workload (`iss` its issuer, `sub`
//! the identity id, `aud` the server, five minutes, a fresh `jti`) and redeems it at the
//! server's token endpoint, by the RFC 7523 §2.1 JWT bearer grant or by RFC 8693 token
//! exchange, optionally authenticating as a client (RFC 6749 §2.3.1). This reaches another
//! Tessera (identity chaining across trust domains), Keycloak, and services that accept
//! workload identity federation this way.
//!
//! # Layout
//! - `config.rs`: [`OauthTargetConfig`], the `type: oauth` entry of `broker.yaml`.
//! - `issue.rs`: [`OauthTarget`]: the assertion, the token request and reading the answer.

mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod issue;
#[cfg(test)]
mod tests;

pub use config::{MAX_TTL_CAP, OauthGrant, OauthTargetConfig};
pub use issue::OauthTarget;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "oauth";
