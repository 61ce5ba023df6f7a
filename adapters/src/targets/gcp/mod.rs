//! The `gcp` target: a Google Cloud access token through Workload Identity Federation.
//!
//! Tessera signs a short-lived JWT about the workload and presents it to the Security
//! Token Service (`sts.googleapis.com`, `v1/token`, RFC 8693 token exchange), which returns
//! a federated access token for the workload identity pool provider that trusts Tessera's
//! issuer. When the rule names a `service_account`, the federated token is then exchanged
//! for that service account's access token through the IAM Service Account Credentials
//! API (`generateAccessToken`).
//!
//! References:
//! - <https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token>
//! - <https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken>
//! - <https://cloud.google.com/iam/docs/workload-identity-federation-with-other-providers>
//!
//! # Layout
//! - `config.rs`: [`GcpTargetConfig`], the `type: gcp` entry of `broker.yaml`.
//! - `issue.rs`: [`GcpTarget`]: the subject JWT, both calls, and how answers are read.
//! - `subject.rs`: the subject token's `sub` within Google's 127 bytes, and the claims
//!   carrying the full id and the granting rule.

mod config;
mod issue;
mod subject;
#[cfg(test)]
mod tests;

pub use config::{DEFAULT_IAMCREDENTIALS_ENDPOINT, DEFAULT_STS_ENDPOINT, GcpTargetConfig};
pub use issue::{CLOUD_PLATFORM_SCOPE, GcpTarget};
pub use subject::{ATTRIBUTE_MAPPING, ID_CLAIM, MAX_SUBJECT_BYTES, RULE_CLAIM, google_subject};

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "gcp";
