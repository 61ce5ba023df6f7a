//! Tessera's adapter contract and every adapter.
//!
//! # Layout
//! - [`identity`]: the normalized [`Identity`](identity::Identity) every source produces.
//! - [`source`]: the [`IdentitySource`](source::IdentitySource) trait and the
//!   [`VerifiedIdentity`](source::VerifiedIdentity) proof type only a source can make.
//! - [`target`]: the [`CredentialTarget`](target::CredentialTarget) trait, the
//!   [`Grant`](target::Grant) a target acts on, and the [`Signer`](target::Signer) targets
//!   sign through.
//! - [`build`]: the build contract, config to runtime object:
//!   [`BuildContext`](build::BuildContext), [`BuildSource`](build::BuildSource),
//!   [`BuildTarget`](build::BuildTarget).
//! - [`jwt`]: JWT verification shared by every JWT source: decoding, algorithm pinning,
//!   claim checks and the JWKS cache.
//! - [`aws_sign`]: the workload's side of the `aws_iam` source, a signed GetCallerIdentity
//!   request as a subject token (the agent and `tessera aws sign-request` use it).
//! - [`net`]: the rules of every URL adapters call (https, loopback-only plain http).
//! - [`oauth`]: the OAuth wire names (grant types, token types), written once.
//! - [`spiffe_id`]: SPIFFE IDs, which the `spiffe` source reads and the `spiffe` target
//!   writes.
//! - [`process`]: `tessera_build_info` and the process metrics both processes export.
//! - [`sources`] and [`targets`]: one folder per adapter kind.
//! - [`registry`]: one line per adapter kind, nothing else; the only place the broker
//!   learns of kinds. Adapters never import it: they implement [`build`].
//!
//! This crate knows nothing of HTTP serving, the broker or the agent: both depend on it,
//! never the other way round. Sources never issue and targets never verify.

pub mod aws_sign;
pub mod build;
pub mod clock;
pub mod config;
pub mod identity;
pub mod jwt;
pub mod net;
pub mod oauth;
pub mod observe;
pub mod process;
pub mod registry;
pub mod secret;
pub mod source;
pub mod sources;
pub mod spiffe_id;
pub mod target;
pub mod targets;

pub use clock::{Clock, ManualClock, SystemClock};
pub use identity::Identity;
pub use secret::Secret;
pub use source::{
    FetchFailure, IdentitySource, SourceError, SubjectToken, SubjectTokenType, VerifiedIdentity,
};
pub use target::{
    CredentialTarget, Grant, IssuedCredential, RequestDescription, RevokeError, RevokeReport, RuleParam,
    RuleText, Signer, TargetError,
};
