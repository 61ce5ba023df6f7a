//! The `kubernetes` target: bearer tokens for Kubernetes clusters that trust Tessera as a
//! JWT issuer through structured authentication configuration
//! (`AuthenticationConfiguration`, `apiserver.config.k8s.io/v1beta1` from Kubernetes 1.30,
//! `v1` from 1.34). A token carries the issuer's `iss`, the cluster's audience, and the
//! `username` and `groups` the rule grants; the cluster maps them to a user with the
//! claim mappings `tessera trust` writes for the target.
//!
//! # Layout
//! - `config.rs`: [`KubernetesTargetConfig`], the `type: kubernetes` entry of
//!   `broker.yaml`, and its checks.
//! - `issue.rs`: [`KubernetesTarget`], which checks a grant's username and groups and signs
//!   the token.

mod config;
mod issue;
#[cfg(test)]
mod tests;

pub use config::{KubernetesTargetConfig, MAX_TTL_CAP};
pub use issue::{GROUPS_CLAIM, KubernetesTarget, USERNAME_CLAIM};

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "kubernetes";
