//! The `type: aws_sts` entry of `broker.yaml`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::issue::{AwsStsTarget, Settings, check_tag_key};
use crate::build::{BuildContext, BuildError, BuildTarget};
use crate::config::duration;
use crate::oauth::token_type::AWS_CREDENTIALS;
use crate::target::{CredentialTarget, SigningAlgorithm};
use crate::targets::base::{TargetBase, minutes, rs256};
use crate::targets::upstream::{self, UpstreamSettings};

/// The shortest session STS grants (`DurationSeconds` minimum).
pub const MIN_DURATION: Duration = Duration::from_secs(900);
/// The longest session STS grants (`DurationSeconds` maximum; the role's own maximum
/// session duration may be lower, in which case STS refuses the call).
pub const MAX_DURATION: Duration = Duration::from_secs(12 * 60 * 60);

/// An `aws_sts` target: AWS temporary credentials for the role a rule grants.
///
/// ```yaml
/// - name: aws-prod
///   type: aws_sts
///   region: eu-west-1
///   max_ttl: 1h
///   default_ttl: 15m
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsStsTargetConfig {
    /// The target's name; callers request it as `audience`.
    pub name: String,
    /// The region whose STS endpoint is called. Default: `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// The STS endpoint URL. Default: the regional endpoint of `region`
    /// (`https://sts.{region}.amazonaws.com`). Must be `https`, or `http` on a loopback
    /// host with `insecure_http`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The `aud` of the web identity token: the client ID registered with the IAM OIDC
    /// provider. Default: `sts.amazonaws.com`.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// The web identity token's algorithm; AWS accepts RS256 and ES256 from OIDC
    /// providers, and the issuer must have keys for it. Default: `RS256`.
    #[serde(default = "rs256")]
    pub algorithm: SigningAlgorithm,
    /// The longest session; rules asking for more are load errors. Default: `1h`; between
    /// `15m` and `12h`.
    #[serde(default = "minutes::<60>", with = "duration")]
    pub max_ttl: Duration,
    /// The session length when a rule names none. Default: `1h`; between `15m` and
    /// `max_ttl`.
    #[serde(default = "minutes::<60>", with = "duration")]
    pub default_ttl: Duration,
    /// Tag keys (from a rule's `tags`) that pass on to roles chained from the session
    /// (`transitive_tag_keys` of the tags claim). Default: none.
    #[serde(default)]
    pub transitive_tag_keys: Vec<String>,
    /// `timeout`, `max_attempts`, `insecure_http`, `cache`.
    #[serde(flatten)]
    pub upstream: UpstreamSettings,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_audience() -> String {
    "sts.amazonaws.com".into()
}

impl BuildTarget for AwsStsTargetConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// The web identity token's.
    fn audiences(&self) -> Vec<String> {
        vec![self.audience.clone()]
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError> {
        Ok(Arc::new(self.target(cx)?))
    }
}

impl AwsStsTargetConfig {
    /// The checked target, unwrapped (tests look at its requests).
    pub(super) fn target(&self, cx: &BuildContext) -> Result<AwsStsTarget, BuildError> {
        let base = TargetBase::new(super::KIND, AWS_CREDENTIALS, &self.name, self.max_ttl, self.default_ttl)?;

        let region_ok = !self.region.is_empty()
            && self.region.len() <= 32
            && self.region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(BuildError::field(
                "region",
                format!("`{}` is not an AWS region name (e.g. us-east-1)", self.region),
            ));
        }

        self.upstream.check(&self.name)?;
        let endpoint = match &self.endpoint {
            None => None,
            Some(raw) => Some(self.upstream.endpoint("endpoint", raw)?),
        };
        if self.audience.trim().is_empty() {
            return Err(BuildError::field("audience", "audience must not be empty"));
        }
        upstream::check_algorithm(
            cx,
            self.algorithm,
            &[SigningAlgorithm::Rs256, SigningAlgorithm::Es256],
            "AWS",
        )?;
        upstream::check_ttls(self.max_ttl, self.default_ttl, MIN_DURATION, MAX_DURATION)?;

        for key in &self.transitive_tag_keys {
            check_tag_key(key).map_err(|e| BuildError::field("transitive_tag_keys", e))?;
        }
        if self.transitive_tag_keys.len() > super::MAX_TAGS {
            return Err(BuildError::field(
                "transitive_tag_keys",
                format!("at most {} tag keys", super::MAX_TAGS),
            ));
        }

        Ok(AwsStsTarget::new(
            Settings {
                base,
                region: self.region.clone(),
                endpoint,
                audience: self.audience.clone(),
                algorithm: self.algorithm,
                transitive_tag_keys: self.transitive_tag_keys.clone(),
                upstream: self.upstream.clone(),
            },
            Arc::clone(&cx.signer),
            Arc::clone(&cx.clock),
        ))
    }
}
