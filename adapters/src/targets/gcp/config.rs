//! The `type: gcp` entry of `broker.yaml`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::issue::{
    CLOUD_PLATFORM_SCOPE, GcpTarget, Settings, check_provider, check_scope, provider_audience,
};
use crate::build::{BuildContext, BuildError, BuildTarget};
use crate::config::duration;
use crate::oauth::token_type::ACCESS_TOKEN;
use crate::target::{CredentialTarget, SigningAlgorithm};
use crate::targets::base::{TargetBase, es256, minutes};
use crate::targets::upstream::{self, UpstreamSettings};

/// Google's Security Token Service.
pub const DEFAULT_STS_ENDPOINT: &str = "https://sts.googleapis.com";
/// Google's IAM Service Account Credentials API.
pub const DEFAULT_IAMCREDENTIALS_ENDPOINT: &str = "https://iamcredentials.googleapis.com";

/// The longest lifetime Tessera asks for. `generateAccessToken` grants up to 1 hour unless
/// the organization policy `constraints/iam.allowServiceAccountCredentialLifetimeExtension`
/// allows more, and a federated token from STS lives 1 hour; a longer `max_ttl` would
/// promise what Google does not give.
pub const MAX_TTL_CAP: Duration = Duration::from_secs(60 * 60);

/// A `gcp` target: a Google Cloud access token through Workload Identity Federation.
///
/// ```yaml
/// - name: gcp-prod
///   type: gcp
///   provider: //iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/tessera
///   scopes: [https://www.googleapis.com/auth/cloud-platform]
///   max_ttl: 1h
///   default_ttl: 1h
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpTargetConfig {
    /// The target's name; callers request it as `audience`.
    pub name: String,
    /// The workload identity pool provider's full resource name,
    /// `//iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL_ID/providers/PROVIDER_ID`:
    /// the STS `audience`. A rule's `provider` grant key overrides it. Default: none, so
    /// every rule for this target must name one.
    #[serde(default)]
    pub provider: Option<String>,
    /// The `aud` of the JWT Tessera presents to STS. Default: the provider's resource name
    /// as a URL (`https://iam.googleapis.com/projects/...`), the audience a provider allows
    /// when it lists none.
    #[serde(default)]
    pub audience: Option<String>,
    /// The algorithm of that JWT; the issuer must have keys for it. Google accepts RS256
    /// and ES256. Default: `ES256`.
    #[serde(default = "es256")]
    pub algorithm: SigningAlgorithm,
    /// OAuth scopes of the issued token; a rule's `scopes` overrides them.
    /// Default: `[https://www.googleapis.com/auth/cloud-platform]`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Default: `https://sts.googleapis.com`. Tests point it at a local server.
    #[serde(default = "default_sts")]
    pub sts_endpoint: String,
    /// Default: `https://iamcredentials.googleapis.com`.
    #[serde(default = "default_iamcredentials")]
    pub iamcredentials_endpoint: String,
    /// `timeout`, `max_attempts`, `insecure_http`, `cache`.
    #[serde(flatten)]
    pub upstream: UpstreamSettings,
    /// The longest lifetime of an impersonated token. Default: `1h`; at most `1h`.
    #[serde(default = "minutes::<60>", with = "duration")]
    pub max_ttl: Duration,
    /// The lifetime asked for when a rule names none. Default: `1h`; at most `max_ttl`.
    #[serde(default = "minutes::<60>", with = "duration")]
    pub default_ttl: Duration,
}

fn default_scopes() -> Vec<String> {
    vec![CLOUD_PLATFORM_SCOPE.to_string()]
}

fn default_sts() -> String {
    DEFAULT_STS_ENDPOINT.to_string()
}

fn default_iamcredentials() -> String {
    DEFAULT_IAMCREDENTIALS_ENDPOINT.to_string()
}

impl BuildTarget for GcpTargetConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// The subject token's: `audience`, else the configured provider's (a rule's own
    /// `provider` is known only when mapping files load).
    fn audiences(&self) -> Vec<String> {
        match (&self.audience, &self.provider) {
            (Some(audience), _) => vec![audience.clone()],
            (None, Some(provider)) => vec![provider_audience(provider)],
            (None, None) => Vec::new(),
        }
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError> {
        let base = TargetBase::new(super::KIND, ACCESS_TOKEN, &self.name, self.max_ttl, self.default_ttl)?;
        if let Some(provider) = &self.provider {
            check_provider(provider).map_err(|e| BuildError::field("provider", e))?;
        }
        if let Some(audience) = &self.audience
            && audience.trim().is_empty()
        {
            return Err(BuildError::field("audience", "audience must not be empty"));
        }
        upstream::check_algorithm(
            cx,
            self.algorithm,
            &[SigningAlgorithm::Rs256, SigningAlgorithm::Es256],
            "Google",
        )?;
        if self.scopes.is_empty() {
            return Err(BuildError::field("scopes", "name at least one OAuth scope"));
        }
        for scope in &self.scopes {
            check_scope(scope).map_err(|e| BuildError::field("scopes", e))?;
        }
        self.upstream.check(&self.name)?;
        let sts = self.upstream.endpoint("sts_endpoint", &self.sts_endpoint)?;
        let iamcredentials =
            self.upstream.endpoint("iamcredentials_endpoint", &self.iamcredentials_endpoint)?;
        upstream::check_ttls(self.max_ttl, self.default_ttl, Duration::ZERO, MAX_TTL_CAP)?;
        Ok(Arc::new(GcpTarget::new(
            Settings {
                base,
                provider: self.provider.clone(),
                audience: self.audience.clone(),
                algorithm: self.algorithm,
                scopes: self.scopes.clone(),
                sts_endpoint: sts,
                iamcredentials_endpoint: iamcredentials,
                upstream: self.upstream.clone(),
            },
            cx.http.clone(),
            Arc::clone(&cx.signer),
            Arc::clone(&cx.clock),
        )))
    }
}
