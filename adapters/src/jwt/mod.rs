//! Shared JWT verification for every JWT source (DESIGN.md "JWT rules every JWT source
//! shares").
//!
//! # Layout
//! - [`alg`]: the pinned-algorithm vocabulary; `none` and HMAC cannot be named.
//! - `decode`: compact JWS splitting, strict base64url, strict JSON (no duplicate members),
//!   [`peek_issuer`] for routing by the unverified `iss`, and [`peek_subject`] for picking
//!   a key set by the unverified `sub`.
//! - [`keys`]: JWKS documents parsed into aws-lc-rs keys once per `kid`.
//! - [`jwks`]: where keys come from (discovery, pinned URI, file) and the cache that keeps
//!   them fresh.
//! - [`policy`]: a source's rules ([`JwtPolicy`]).
//! - `verify`: header checks, signature, then claims; [`JwtVerifier`] ties policy and cache.
//! - [`attributes`]: verified claims flattened into identity attributes, and the
//!   per-source `attributes:` mapping.
//! - [`source`]: the config keys every JWT kind shares and the generic [`JwtSource`].
//! - [`token_cache`]: tokens a source verified, remembered by their SHA-256 until they
//!   expire or their key leaves the key set.
//!
//! A source kind flattens [`JwtSourceSettings`] into its config, builds a [`JwtVerifier`]
//! from it with its [`KindRules`], and maps the [`VerifiedClaims`] to an identity its own
//! way (a [`ClaimsMapper`]).

pub mod alg;
pub mod attributes;
mod decode;
pub(crate) mod json;
pub mod jwks;
pub mod keys;
pub mod policy;
pub mod source;
pub mod token_cache;
mod verify;

#[cfg(test)]
pub(crate) mod testkit;

pub use alg::Algorithm;
pub use attributes::AttributeMapping;
pub use decode::{
    MAX_TOKEN_BYTES, UnverifiedClaims, peek_issuer, peek_subject, verified_claim, verified_jti,
};
pub use jwks::{JwksCache, JwksError, JwksLocation, JwksOptions};
pub use keys::{KeySet, KeySetError, KeyUse};
pub use policy::{HeaderRule, IssuerRule, JwtPolicy};
pub use source::{ClaimsMapper, JwtSource, JwtSourceSettings, KindRules, identity_base, sketch_base};
pub use token_cache::TokenCacheOptions;
pub use verify::{JwtVerifier, VerifiedClaims, lookup, verify_with_keys};

#[cfg(test)]
#[path = "wycheproof_tests.rs"]
mod wycheproof_tests;

#[cfg(test)]
#[path = "oracle_tests.rs"]
mod oracle_tests;
