//! The `type: txn_token` entry of `broker.yaml`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::issue::TxnTokenTarget;
use crate::build::{BuildContext, BuildError, BuildTarget};
use crate::config::duration;
use crate::oauth::token_type::TXN_TOKEN;
use crate::target::{CredentialTarget, SigningAlgorithm};
use crate::targets::base::{TargetBase, es256, minutes};
use crate::targets::signed::check_signing;

/// The longest `max_ttl` a `txn_token` target may have: Txn-Tokens live "on the order of
/// minutes or less" (draft-ietf-oauth-transaction-tokens-10 §6).
pub const MAX_TTL_CAP: Duration = Duration::from_secs(60 * 60);

/// A `txn_token` target: Tessera acts as the Transaction Token Service of one trust domain.
///
/// ```yaml
/// - name: txn
///   type: txn_token
///   audience: trust-domain.example
///   max_ttl: 5m
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnTokenTargetConfig {
    /// The target's name, which rules grant.
    pub name: String,
    /// The trust domain: the `aud` of issued Txn-Tokens and the `audience` workloads
    /// request them with (draft §7.1). Required.
    pub audience: String,
    /// The signing algorithm; the issuer must have keys for it. Default: `ES256`.
    #[serde(default = "es256")]
    pub algorithm: SigningAlgorithm,
    /// The longest lifetime of a Txn-Token; rules asking for more are load errors.
    /// Default: `5m`; at most `1h`.
    #[serde(default = "minutes::<5>", with = "duration")]
    pub max_ttl: Duration,
    /// The lifetime used when a rule names none. Default: `5m`; at most `max_ttl`.
    #[serde(default = "minutes::<5>", with = "duration")]
    pub default_ttl: Duration,
}

impl BuildTarget for TxnTokenTargetConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn audiences(&self) -> Vec<String> {
        vec![self.audience.clone()]
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError> {
        let base = TargetBase::new(super::KIND, TXN_TOKEN, &self.name, self.max_ttl, self.default_ttl)?;
        if self.audience.trim().is_empty() || self.audience.trim() != self.audience {
            return Err(BuildError::field(
                "audience",
                "audience must name the trust domain, without surrounding spaces",
            ));
        }
        check_signing(cx, self.algorithm, self.max_ttl, MAX_TTL_CAP, self.default_ttl)?;
        Ok(Arc::new(TxnTokenTarget {
            base,
            audience: self.audience.clone(),
            algorithm: self.algorithm,
            signer: Arc::clone(&cx.signer),
            clock: Arc::clone(&cx.clock),
        }))
    }
}
