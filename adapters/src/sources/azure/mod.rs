//! The `azure` source: Microsoft Entra access tokens of managed identities (Azure docs,
//! "How to use managed identities for Azure resources on an Azure VM to acquire an access
//! token"; Microsoft identity platform, "Access tokens", "Access token claims
//! reference"), v1 and v2, verified against Entra's keys and restricted to allow-listed
//! tenants.
//!
//! # Layout
//! - [`config`]: [`AzureSourceConfig`], the `type: azure` entry, and its build.
//! - `verify`: tenant and token-kind checks, and the claims to
//!   [`Identity`](crate::identity::Identity).

use crate::jwt::JwtSource;

pub mod config;
mod verify;

pub use config::AzureSourceConfig;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "azure";

/// A built `azure` source.
pub type AzureSource = JwtSource<verify::AzureClaims>;

#[cfg(test)]
mod tests;
