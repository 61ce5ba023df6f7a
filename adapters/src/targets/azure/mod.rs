//! The `azure` target: a Microsoft Entra access token through a workload identity
//! federation credential.
//!
//! Tessera signs a JWT about the workload (RS256, audience `api://AzureADTokenExchange`)
//! and presents it as the `client_assertion` of an OAuth 2.0 client credentials request to
//! the tenant's v2.0 token endpoint. Entra accepts it when the application (or user-assigned
//! managed identity) has a federated identity credential naming Tessera's issuer, the
//! assertion's `sub` and its audience.
//!
//! References:
//! - <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow#third-case-access-token-request-with-a-federated-credential>
//! - <https://learn.microsoft.com/entra/identity-platform/certificate-credentials#assertion-format>
//! - <https://learn.microsoft.com/entra/workload-id/workload-identity-federation-create-trust>
//!
//! # Layout
//! - `config.rs`: [`AzureTargetConfig`], the `type: azure` entry of `broker.yaml`.
//! - `issue.rs`: [`AzureTarget`]: the assertion, the token request and how answers are read.

mod config;
mod issue;
#[cfg(test)]
mod tests;

pub use config::{AzureTargetConfig, DEFAULT_AUDIENCE, DEFAULT_AUTHORITY};
pub use issue::AzureTarget;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "azure";
