//! The `kubernetes` source: projected service-account tokens (Kubernetes docs, "Managing
//! Service Accounts", "Bound service account tokens"), verified against the cluster
//! issuer's keys (`--service-account-issuer`, published at `/openid/v1/jwks` and through
//! OIDC discovery) or a static JWKS file.
//!
//! # Layout
//! - [`config`]: [`KubernetesSourceConfig`], the `type: kubernetes` entry, and its build.
//! - `verify`: the `kubernetes.io` claims to [`Identity`](crate::identity::Identity);
//!   legacy Secret-based tokens and tokens the API server would also accept are refused.

use crate::jwt::JwtSource;

pub mod config;
mod verify;

pub use config::KubernetesSourceConfig;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "kubernetes";

/// A built `kubernetes` source.
pub type KubernetesSource = JwtSource<verify::KubernetesClaims>;

#[cfg(test)]
mod tests;
