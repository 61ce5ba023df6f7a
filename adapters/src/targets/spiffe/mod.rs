//! The `spiffe` target: Tessera as the issuer of a SPIFFE trust domain. It issues JWT-SVIDs
//! (SPIFFE JWT-SVID specification) whose `sub` is a SPIFFE ID rendered from the identity by
//! the rule's `path`, signed by the issuer keys; the broker serves the trust domain's
//! bundle (SPIFFE Trust Domain and Bundle §4, the `https_web` bundle endpoint profile) so
//! SPIRE, Envoy and the SPIFFE libraries can validate them.
//!
//! # Layout
//! - `config.rs`: [`SpiffeTargetConfig`], the `type: spiffe` entry of `broker.yaml`, and
//!   its checks.
//! - `issue.rs`: [`SpiffeTarget`], which renders and checks the SPIFFE ID and audience of a
//!   grant and signs the SVID.

mod config;
mod issue;
#[cfg(test)]
mod tests;

pub use config::{MAX_TTL_CAP, SpiffeTargetConfig};
pub use issue::SpiffeTarget;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "spiffe";
