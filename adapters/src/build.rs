//! The build contract: how an adapter's config becomes the runtime object the broker holds
//! (vector's `SourceConfig::build(cx)`). Every kind's config implements [`BuildSource`] or
//! [`BuildTarget`]; the [`registry`](crate::registry) lists the kinds, and the broker builds
//! through it with one [`BuildContext`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::clock::Clock;
use crate::identity::IdShape;
use crate::observe::Observer;
use crate::source::IdentitySource;
use crate::target::{CredentialTarget, Signer};

/// What adapters get when they are built: injected so trait signatures stay stable as
/// needs grow.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub clock: Arc<dyn Clock>,
    /// Shared HTTP client: rustls, timeouts set, redirects off.
    pub http: reqwest::Client,
    /// Tessera's own signer, for targets.
    pub signer: Arc<dyn Signer>,
    /// Relative file paths in adapter configs resolve against this (the config file's
    /// directory).
    pub base_dir: PathBuf,
    /// Told about upstream traffic (key set fetches), for metrics.
    pub observer: Arc<dyn Observer>,
    /// The verified-token cache each JWT source keeps.
    pub token_cache: crate::jwt::TokenCacheOptions,
}

impl BuildContext {
    pub fn resolve(&self, path: &Path) -> PathBuf {
        crate::config::resolve(&self.base_dir, path)
    }
}

/// A config error found while building an adapter from its config.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    /// The config key at fault, dotted (`jwks_uri`), when one is.
    pub field: Option<&'static str>,
    pub message: String,
}

impl BuildError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { field: None, message: message.into() }
    }

    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self { field: Some(field), message: message.into() }
    }
}

/// Implemented by every source kind's config.
pub trait BuildSource {
    fn name(&self) -> &str;
    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError>;

    /// How the ids of this source's identities are made, for a config that builds.
    /// `None` when this config's ids cannot be told without building it.
    fn id_shape(&self) -> Option<IdShape>;
}

/// Implemented by every target kind's config.
pub trait BuildTarget {
    fn name(&self) -> &str;
    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError>;

    /// The `aud` of the JWTs Tessera signs for this target as its config sets them: the
    /// tokens it issues, or the ones it presents upstream (a web identity token, a client
    /// assertion). Any Tessera-signed JWT with an audience verifies wherever that audience
    /// is accepted, so the broker refuses a config where two targets that issue JWTs, or
    /// the admin listener and any target, share one. Empty when the config sets none (the
    /// audience then comes from each rule).
    fn audiences(&self) -> Vec<String>;
}
