//! The `spiffe` source: JWT-SVIDs (SPIFFE JWT-SVID specification) of allow-listed trust
//! domains, each verified against its own domain's bundle (SPIFFE Trust Domain and Bundle
//! specification: a bundle endpoint or file, whose `use: jwt-svid` keys are taken) or a
//! plain JWKS. The trust domain of a token's `sub` picks the keys: one domain's key never
//! verifies another's workload.
//!
//! Routing: JWT-SVIDs need not carry `iss` (JWT-SVID §3 registers only `sub`, `aud`,
//! `exp`). A source that names an `issuer` (SPIRE's `jwt_issuer`) is routed to by it; one
//! that does not takes the JWTs whose `iss` no other source names, and requires them to
//! carry no `iss` at all. At most one such source can be configured.
//!
//! # Layout
//! - [`config`]: [`SpiffeSourceConfig`], the `type: spiffe` entry, and its build.
//! - SPIFFE ID parsing (SPIFFE ID specification §2) is [`crate::spiffe_id`], shared with
//!   the `spiffe` target.
//! - `verify`: [`SpiffeSource`], which picks a trust domain's key set by the SPIFFE ID in
//!   `sub`, and that ID to [`Identity`](crate::identity::Identity).

use crate::jwt::Algorithm;

pub mod config;
mod verify;

pub use config::{SpiffeSourceConfig, TrustBundle, TrustDomains};
pub use verify::SpiffeSource;

/// The adapter kind, as written in `type:`.
pub const KIND: &str = "spiffe";

/// JWT-SVID §2.1's algorithms that Tessera verifies: all of them but ES512 (P-521),
/// which Tessera does not implement.
pub const JWT_SVID_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::Rs256,
    Algorithm::Rs384,
    Algorithm::Rs512,
    Algorithm::Es256,
    Algorithm::Es384,
    Algorithm::Ps256,
    Algorithm::Ps384,
    Algorithm::Ps512,
];

#[cfg(test)]
mod tests;
