//! The `aws_iam` source's config: one entry under `sources:` in `broker.yaml`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::AwsIamSource;
use super::request::RequestPolicy;
use crate::build::{BuildContext, BuildError, BuildSource};
use crate::config::{duration, validate_name};
use crate::identity::IdShape;
use crate::net::check_url;
use crate::source::IdentitySource;

/// Default and largest accepted age of a signed request. AWS itself accepts a SigV4
/// request for 15 minutes after its `X-Amz-Date` ("Signature Version 4 signing process",
/// AWS General Reference); a shorter window limits replay of a captured request.
pub const DEFAULT_MAX_REQUEST_AGE: Duration = Duration::from_secs(5 * 60);
pub const MAX_REQUEST_AGE: Duration = Duration::from_secs(15 * 60);
/// Default time allowed for the call to STS, connection to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest accepted `server_id`; it travels in a header of every signed request.
const MAX_SERVER_ID_LEN: usize = 256;

/// The regions of the `aws` partition with an STS endpoint (botocore's `endpoints.json`,
/// service `sts`). The default allow-list is the global endpoint plus one per region.
pub const AWS_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

/// The global STS endpoint of the `aws` partition.
pub const GLOBAL_STS_ENDPOINT: &str = "https://sts.amazonaws.com";

/// Workloads prove an AWS identity with a signed `sts:GetCallerIdentity` request, which
/// Tessera forwards to STS (Vault's `aws` auth method, `iam` type, is the model).
///
/// ```yaml
/// - name: aws-prod
///   type: aws_iam
///   server_id: tessera.example.com
///   allowed_accounts: ["123456789012"]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsIamSourceConfig {
    /// The source's name: 1-64 of `a-z`, `0-9`, `-`, `_`. Required.
    pub name: String,
    /// The value every signed request must carry, signed, in `X-Tessera-Server-Id`; it
    /// binds a request to this Tessera so another service cannot replay it here (Vault's
    /// `iam_server_id_header_value`). Required, non-empty, at most 256 visible ASCII
    /// characters.
    pub server_id: String,
    /// STS endpoints requests may be forwarded to, as `https://host[:port]`. Default: the
    /// global endpoint and every regional endpoint of the `aws` partition
    /// (`https://sts.amazonaws.com`, `https://sts.{region}.amazonaws.com`). An empty list
    /// is refused.
    #[serde(default = "default_sts_endpoints")]
    pub sts_endpoints: Vec<String>,
    /// Allow `http://` endpoints on loopback hosts only; for tests. Default `false`.
    #[serde(default)]
    pub insecure_http: bool,
    /// How far `X-Amz-Date` may be from now, in either direction. Default `5m`, at most
    /// `15m`.
    #[serde(default = "default_max_request_age", with = "duration")]
    pub max_request_age: Duration,
    /// Accounts whose principals are accepted (12-digit ids). Default: none, every
    /// account STS vouches for. If set, it must not be empty.
    #[serde(default)]
    pub allowed_accounts: Option<Vec<String>>,
    /// Time allowed for the call to STS. Default `10s`, 1s to 60s.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

/// The default allow-list: global and regional STS endpoints of the `aws` partition.
pub fn default_sts_endpoints() -> Vec<String> {
    std::iter::once(GLOBAL_STS_ENDPOINT.to_owned())
        .chain(AWS_REGIONS.iter().map(|r| format!("https://sts.{r}.amazonaws.com")))
        .collect()
}

fn default_max_request_age() -> Duration {
    DEFAULT_MAX_REQUEST_AGE
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

impl AwsIamSourceConfig {
    /// Each endpoint as the origin requests are compared with (`https://host[:port]`,
    /// lower-case, default port left out).
    fn endpoints(&self) -> Result<Vec<String>, BuildError> {
        if self.sts_endpoints.is_empty() {
            return Err(BuildError::field("sts_endpoints", "sts_endpoints must not be empty"));
        }
        let mut origins = Vec::with_capacity(self.sts_endpoints.len());
        for entry in &self.sts_endpoints {
            let bad = |why: &str| BuildError::field("sts_endpoints", format!("`{entry}`: {why}"));
            let url = Url::parse(entry).map_err(|e| bad(&e.to_string()))?;
            check_url(&url, self.insecure_http).map_err(|e| BuildError::field("sts_endpoints", e))?;
            if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                return Err(bad("write only scheme, host and port (STS is served at `/`)"));
            }
            let origin = url.origin().ascii_serialization();
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(origins)
    }

    fn server_id(&self) -> Result<String, BuildError> {
        let id = &self.server_id;
        let visible = id.bytes().all(|b| b.is_ascii_graphic());
        if id.is_empty() || id.len() > MAX_SERVER_ID_LEN || !visible {
            return Err(BuildError::field(
                "server_id",
                "server_id must be 1-256 visible ASCII characters (no spaces)",
            ));
        }
        Ok(id.clone())
    }

    fn allowed_accounts(&self) -> Result<Option<Vec<String>>, BuildError> {
        let Some(accounts) = &self.allowed_accounts else { return Ok(None) };
        if accounts.is_empty() {
            return Err(BuildError::field(
                "allowed_accounts",
                "allowed_accounts must not be empty; leave it out to accept every account",
            ));
        }
        for account in accounts {
            if !is_account_id(account) {
                return Err(BuildError::field(
                    "allowed_accounts",
                    format!("`{account}` is not a 12-digit AWS account id"),
                ));
            }
        }
        Ok(Some(accounts.clone()))
    }
}

/// Twelve ASCII digits.
pub(crate) fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

impl BuildSource for AwsIamSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// `aws://{account}/{role|user}/{name}`.
    fn id_shape(&self) -> Option<IdShape> {
        Some(
            IdShape::literal("aws://")
                .field("tenant")
                .then("/")
                .field("attributes.aws.principal_type")
                .then("/")
                .field("name"),
        )
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError> {
        validate_name(&self.name).map_err(|m| BuildError::field("name", m))?;
        let server_id = self.server_id()?;
        let endpoints = self.endpoints()?;
        if self.max_request_age.is_zero() || self.max_request_age > MAX_REQUEST_AGE {
            return Err(BuildError::field("max_request_age", "max_request_age must be between 1s and 15m"));
        }
        if self.timeout < Duration::from_secs(1) || self.timeout > MAX_TIMEOUT {
            return Err(BuildError::field("timeout", "timeout must be between 1s and 60s"));
        }
        let allowed_accounts = self.allowed_accounts()?;
        if self.insecure_http {
            tracing::warn!(source = %self.name, "insecure_http is on: signed requests may be forwarded over plain http to loopback");
        }
        let policy = RequestPolicy {
            server_id,
            endpoints,
            insecure_http: self.insecure_http,
            max_age: i64::try_from(self.max_request_age.as_secs()).unwrap_or(i64::MAX),
        };
        Ok(Arc::new(AwsIamSource {
            name: self.name.clone(),
            policy,
            allowed_accounts,
            timeout: self.timeout,
            http: cx.http.clone(),
            clock: Arc::clone(&cx.clock),
        }))
    }
}
