//! The `gcp` source: Google-signed ID tokens from the metadata server of Compute Engine,
//! GKE, Cloud Run and Cloud Functions (Google Cloud docs, "Verifying the identity of
//! instances": `.../service-accounts/default/identity?audience=...&format=full`),
//! verified against Google's keys, restricted to allow-listed projects or service
//! accounts.
//!
//! # Layout
//! - [`config`]: [`GcpSourceConfig`], the `type: gcp` entry, and its build.
//! - `verify`: the allow-lists, and the claims to [`Identity`](crate::identity::Identity).

use crate::jwt::JwtSource;

pub mod config;
mod verify;

pub use config::GcpSourceConfig;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "gcp";

/// Google's issuer, in the two spellings Google documents (OpenID Connect docs,
/// "Validating an ID token": `iss` is `https://accounts.google.com` or
/// `accounts.google.com`).
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// A built `gcp` source.
pub type GcpSource = JwtSource<verify::GcpClaims>;

#[cfg(test)]
mod tests;
