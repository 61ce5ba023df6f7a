//! The `type: spiffe` entry of `broker.yaml`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::issue::SpiffeTarget;
use crate::build::{BuildContext, BuildError, BuildTarget};
use crate::config::duration;
use crate::oauth::token_type::JWT;
use crate::spiffe_id::valid_trust_domain;
use crate::target::{CredentialTarget, SigningAlgorithm};
use crate::targets::base::{TargetBase, es256, minutes};
use crate::targets::signed::LocalSigner;
use crate::targets::upstream::{check_algorithm, check_ttls};

/// The longest `max_ttl` of a `spiffe` target. JWT-SVIDs are bearer tokens that any of
/// their audiences can replay until they expire (JWT-SVID §7.1), so they stay short.
pub const MAX_TTL_CAP: Duration = Duration::from_secs(60 * 60);

/// The JWT-SVID algorithms (JWT-SVID §2.1) Tessera's issuer has keys for.
const SVID_ALGORITHMS: [SigningAlgorithm; 2] = [SigningAlgorithm::Es256, SigningAlgorithm::Rs256];

/// The longest `bundle_refresh_hint`: a week, SPIRE's longest default rotation step.
const MAX_REFRESH_HINT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A `spiffe` target: JWT-SVIDs of one trust domain, signed by Tessera's issuer.
///
/// ```yaml
/// - name: svid
///   type: spiffe
///   trust_domain: tessera.example.com
///   audiences: [ledger, spiffe://tessera.example.com/ledger]
///   algorithm: ES256
///   max_ttl: 15m
///   default_ttl: 5m
///   bundle_refresh_hint: 5m
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpiffeTargetConfig {
    /// The target's name; callers request it as `audience`.
    pub name: String,
    /// The trust domain the SVIDs are in (`example.org`, or `spiffe://example.org`): every
    /// `sub` is `spiffe://<trust_domain><path>`. All `spiffe` targets of a broker name the
    /// same one, whose bundle the broker serves. Required.
    pub trust_domain: String,
    /// The `aud` values SVIDs of this target may carry, one per SVID (JWT-SVID §7.2
    /// recommends a single audience); a rule's `audience` picks one. Required, not empty.
    pub audiences: Vec<String>,
    /// The signing algorithm: `ES256` or `RS256` (JWT-SVID §2.1 has no EdDSA); the issuer
    /// must have keys for it. Default: `ES256`.
    #[serde(default = "es256")]
    pub algorithm: SigningAlgorithm,
    /// The longest lifetime of an SVID. Default: `15m`; at most `1h`.
    #[serde(default = "minutes::<15>", with = "duration")]
    pub max_ttl: Duration,
    /// The lifetime used when a rule names none. Default: `5m`; at most `max_ttl`.
    #[serde(default = "minutes::<5>", with = "duration")]
    pub default_ttl: Duration,
    /// How often consumers of the bundle should fetch it again (`spiffe_refresh_hint`,
    /// SPIFFE Trust Domain and Bundle §4.1.2). Keep it well below the time between key
    /// rotations. Default: `5m`; `1s` to `7d`.
    #[serde(default = "default_refresh_hint", with = "duration")]
    pub bundle_refresh_hint: Duration,
}

fn default_refresh_hint() -> Duration {
    Duration::from_secs(5 * 60)
}

impl SpiffeTargetConfig {
    /// The trust domain name without `spiffe://`, as the SVIDs and the bundle carry it.
    pub fn trust_domain_name(&self) -> &str {
        self.trust_domain.strip_prefix("spiffe://").unwrap_or(&self.trust_domain)
    }

    fn checked_audiences(&self) -> Result<Vec<String>, BuildError> {
        if self.audiences.is_empty() {
            return Err(BuildError::field("audiences", "list at least one audience the SVIDs may carry"));
        }
        for (i, audience) in self.audiences.iter().enumerate() {
            if audience.trim().is_empty() || audience.chars().any(char::is_control) {
                return Err(BuildError::field("audiences", "an audience must be printable text, not empty"));
            }
            if self.audiences.iter().take(i).any(|a| a == audience) {
                return Err(BuildError::field("audiences", format!("`{audience}` is listed twice")));
            }
        }
        Ok(self.audiences.clone())
    }
}

impl BuildTarget for SpiffeTargetConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn audiences(&self) -> Vec<String> {
        self.audiences.clone()
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError> {
        let base = TargetBase::new(super::KIND, JWT, &self.name, self.max_ttl, self.default_ttl)?;
        let trust_domain = self.trust_domain_name();
        if !valid_trust_domain(trust_domain) {
            return Err(BuildError::field(
                "trust_domain",
                format!(
                    "`{}` is not a trust domain name (SPIFFE ID §2.1: at most 255 of lower-case letters, digits, '.', '-', '_')",
                    self.trust_domain
                ),
            ));
        }
        let audiences = self.checked_audiences()?;
        check_algorithm(cx, self.algorithm, &SVID_ALGORITHMS, "JWT-SVID (as Tessera signs it)")?;
        check_ttls(self.max_ttl, self.default_ttl, Duration::ZERO, MAX_TTL_CAP)?;
        if self.bundle_refresh_hint.is_zero() || self.bundle_refresh_hint > MAX_REFRESH_HINT {
            return Err(BuildError::field(
                "bundle_refresh_hint",
                "bundle_refresh_hint must be between 1s and 7d",
            ));
        }
        Ok(Arc::new(SpiffeTarget {
            base,
            trust_domain: trust_domain.to_owned(),
            audiences,
            algorithm: self.algorithm,
            refresh_hint: self.bundle_refresh_hint,
            local: LocalSigner { signer: Arc::clone(&cx.signer), clock: Arc::clone(&cx.clock) },
        }))
    }
}
