//! The `oidc` source's config: one entry under `sources:` in `broker.yaml`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::OidcSource;
use crate::config::{duration, validate_name};
use crate::jwt::jwks::{DEFAULT_MAX_STALE, DEFAULT_REFRESH_INTERVAL};
use crate::jwt::policy::{DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME};
use crate::jwt::{Algorithm, JwksCache, JwksLocation, JwksOptions, JwtPolicy, JwtVerifier};
use crate::registry::{BuildContext, BuildError, BuildSource};
use crate::source::IdentitySource;

/// Any OIDC provider or JWT issuer, verified by its published keys.
///
/// ```yaml
/// - name: corp-idp
///   type: oidc
///   issuer: https://idp.example.com
///   audiences: [tessera]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSourceConfig {
    /// The source's name: 1-64 of `a-z`, `0-9`, `-`, `_`. Required.
    pub name: String,
    /// The exact `iss` tokens must carry, compared as a string (a trailing `/` matters).
    /// Without `jwks_uri` or `jwks_file`, keys are found by OIDC discovery under this URL.
    /// Required.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one. Required, non-empty.
    pub audiences: Vec<String>,
    /// Pin the key-set URL and skip discovery. Default: none (discovery). Exclusive with
    /// `jwks_file`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// A static JWKS file, read when the source is built, never refreshed; relative paths
    /// resolve against the config file's directory. Default: none. Exclusive with
    /// `jwks_uri`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Accepted signature algorithms. Default `[RS256, ES256]`. `none` and `HS*` are
    /// refused.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Longest accepted token lifetime (`exp` minus `iat`, else `nbf`, else now).
    /// Default `24h`.
    #[serde(default = "default_max_lifetime", with = "duration")]
    pub max_token_lifetime: Duration,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`. Default `30s`, at most `60s`.
    #[serde(default = "default_leeway", with = "duration")]
    pub leeway: Duration,
    /// Allow `http://` key URLs on loopback hosts only; for tests. Default `false`.
    #[serde(default)]
    pub insecure_http: bool,
    /// How often keys are refetched in the background. Default `5m`, at least `10s`.
    #[serde(default = "default_refresh_interval", with = "duration")]
    pub jwks_refresh_interval: Duration,
    /// How long the last fetched keys keep serving while the issuer is unreachable.
    /// Default `24h`, at least `jwks_refresh_interval`.
    #[serde(default = "default_max_stale", with = "duration")]
    pub jwks_max_stale: Duration,
    /// The claim whose value is the identity's subject; it must be a non-empty string.
    /// Default `sub`.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim filling the identity's `tenant`. Dotted names reach into nested objects.
    /// Default: none.
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// The claim filling the identity's `namespace`. Default: none.
    #[serde(default)]
    pub namespace_claim: Option<String>,
    /// The claim filling the identity's `name`. Default: none.
    #[serde(default)]
    pub name_claim: Option<String>,
    /// The claim filling the identity's `instance`. Default: none.
    #[serde(default)]
    pub instance_claim: Option<String>,
}

fn default_algorithms() -> Vec<Algorithm> {
    Algorithm::DEFAULT.to_vec()
}

fn default_max_lifetime() -> Duration {
    DEFAULT_MAX_LIFETIME
}

fn default_leeway() -> Duration {
    DEFAULT_LEEWAY
}

fn default_refresh_interval() -> Duration {
    DEFAULT_REFRESH_INTERVAL
}

fn default_max_stale() -> Duration {
    DEFAULT_MAX_STALE
}

fn default_subject_claim() -> String {
    "sub".to_owned()
}

/// Which claims fill which identity fields.
#[derive(Debug, Clone)]
pub(crate) struct ClaimMapping {
    pub subject: String,
    pub tenant: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub instance: Option<String>,
}

impl OidcSourceConfig {
    fn claim_mapping(&self) -> Result<ClaimMapping, BuildError> {
        if self.subject_claim.is_empty() {
            return Err(BuildError::field("subject_claim", "subject_claim must not be empty"));
        }
        let optional = |field: &'static str, value: &Option<String>| match value {
            Some(claim) if claim.is_empty() => {
                Err(BuildError::field(field, format!("{field} must not be empty; leave it out instead")))
            }
            other => Ok(other.clone()),
        };
        Ok(ClaimMapping {
            subject: self.subject_claim.clone(),
            tenant: optional("tenant_claim", &self.tenant_claim)?,
            namespace: optional("namespace_claim", &self.namespace_claim)?,
            name: optional("name_claim", &self.name_claim)?,
            instance: optional("instance_claim", &self.instance_claim)?,
        })
    }

    fn location(&self, cx: &BuildContext) -> Result<JwksLocation, BuildError> {
        match (&self.jwks_uri, &self.jwks_file) {
            (Some(_), Some(_)) => {
                Err(BuildError::field("jwks_file", "jwks_uri and jwks_file are exclusive: name at most one"))
            }
            (Some(uri), None) => Ok(JwksLocation::Uri(uri.clone())),
            (None, Some(path)) => Ok(JwksLocation::File(cx.resolve(path))),
            (None, None) => Ok(JwksLocation::Discovery { issuer: self.issuer.clone() }),
        }
    }
}

impl BuildSource for OidcSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError> {
        validate_name(&self.name).map_err(|m| BuildError::field("name", m))?;
        let policy = JwtPolicy::new(
            self.issuer.clone(),
            self.audiences.clone(),
            self.algorithms.clone(),
            self.leeway,
            self.max_token_lifetime,
        )?;
        let claims = self.claim_mapping()?;
        let location = self.location(cx)?;
        if self.insecure_http {
            tracing::warn!(source = %self.name, "insecure_http is on: key sets may be fetched over plain http from loopback");
        }
        let options = JwksOptions {
            insecure_http: self.insecure_http,
            refresh_interval: self.jwks_refresh_interval,
            max_stale: self.jwks_max_stale,
            ..JwksOptions::default()
        };
        let keys = JwksCache::new(
            self.name.clone(),
            location,
            options,
            policy.algorithms(),
            cx.http.clone(),
            Arc::clone(&cx.clock),
        )?;
        let verifier = JwtVerifier::new(policy, keys, Arc::clone(&cx.clock));
        Ok(Arc::new(OidcSource::new(self.name.clone(), verifier, claims)))
    }
}
