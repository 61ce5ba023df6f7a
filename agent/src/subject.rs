//! The workload's native credential, obtained fresh before every exchange: a token file,
//! the GCE metadata server's identity endpoint, Azure IMDS, or a GetCallerIdentity request
//! signed with the ambient AWS credentials.

use std::path::PathBuf;
use tessera_adapters::net::{request_error, request_failure};

use aws_credential_types::provider::ProvideCredentials as _;
use serde::Deserialize;
use tessera_adapters::Secret;
use tessera_adapters::aws_sign::{regional_endpoint, signed_request};
use tessera_adapters::oauth::token_type;

use crate::config::{
    AwsSubjectConfig, AzureImdsConfig, GceMetadataConfig, LoadedAgentConfig, SubjectTokenConfig,
};

/// Largest native token read (the broker refuses more than 16 KiB anyway).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why the native credential could not be had. Never carries the credential.
#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error("cannot read the token file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("the token file {0} is empty or larger than 16 KiB")]
    FileContent(PathBuf),
    #[error("{service} is unreachable: {message}")]
    Unreachable { service: &'static str, message: String },
    #[error("{service} answered HTTP {status}")]
    Refused { service: &'static str, status: u16 },
    #[error("{service} answered something that is not a token")]
    Malformed { service: &'static str },
    #[error("no ambient AWS credentials: {0}")]
    NoAwsCredentials(String),
    #[error("signing GetCallerIdentity: {0}")]
    Sign(String),
}

impl SubjectError {
    /// The greppable code reported by `/healthz`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::File { .. } | Self::FileContent(_) => "TS-AGENT-SUBJECT-FILE",
            Self::Unreachable { .. } => "TS-AGENT-SUBJECT-UNREACHABLE",
            Self::Refused { .. } | Self::Malformed { .. } => "TS-AGENT-SUBJECT-REFUSED",
            Self::NoAwsCredentials(_) | Self::Sign(_) => "TS-AGENT-SUBJECT-AWS",
        }
    }
}

/// Where the native credential comes from, resolved against the config's directory.
#[derive(Debug, Clone)]
pub enum Subject {
    File(PathBuf),
    GceMetadata(GceMetadataConfig),
    AzureImds(AzureImdsConfig),
    Aws(AwsSubjectConfig),
}

impl Subject {
    pub fn from_config(loaded: &LoadedAgentConfig) -> Self {
        match &loaded.config.subject_token.value {
            SubjectTokenConfig::File(p) => Self::File(loaded.resolve(p)),
            SubjectTokenConfig::GceMetadata(g) => Self::GceMetadata(g.clone()),
            SubjectTokenConfig::AzureImds(a) => Self::AzureImds(a.clone()),
            SubjectTokenConfig::Aws(a) => Self::Aws(a.clone()),
        }
    }

    /// The RFC 8693 `subject_token_type` of what [`Subject::fetch`] returns.
    pub fn token_type(&self) -> &'static str {
        match self {
            Self::Aws(_) => token_type::AWS_SIGNED_REQUEST,
            Self::File(_) | Self::GceMetadata(_) | Self::AzureImds(_) => token_type::JWT,
        }
    }

    /// The current native credential; `now` dates an AWS signature.
    pub async fn fetch(&self, http: &reqwest::Client, now: i64) -> Result<Secret<String>, SubjectError> {
        match self {
            Self::File(path) => read_file(path).await,
            Self::GceMetadata(g) => gce_identity(http, g).await,
            Self::AzureImds(a) => azure_imds(http, a).await,
            Self::Aws(a) => aws_signed(a, now).await,
        }
    }
}

async fn read_file(path: &PathBuf) -> Result<Secret<String>, SubjectError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| SubjectError::File { path: path.clone(), message: e.to_string() })?;
    let token = text.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(SubjectError::FileContent(path.clone()));
    }
    Ok(Secret::new(token.to_string()))
}

/// `GET /computeMetadata/v1/instance/service-accounts/default/identity?audience=&format=full`
/// with `Metadata-Flavor: Google` ("Verifying the identity of instances", Compute Engine
/// docs).
async fn gce_identity(http: &reqwest::Client, g: &GceMetadataConfig) -> Result<Secret<String>, SubjectError> {
    const SERVICE: &str = "the GCE metadata server";
    let url = with_query(
        &format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/identity",
            g.endpoint.trim_end_matches('/')
        ),
        &[("audience", g.audience.as_str()), ("format", "full")],
        SERVICE,
    )?;
    let resp = metadata_get(http, url, ("Metadata-Flavor", "Google"), SERVICE).await?;
    let text = resp
        .text()
        .await
        .map_err(|e| SubjectError::Unreachable { service: SERVICE, message: request_failure(&e) })?;
    let token = text.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
        return Err(SubjectError::Malformed { service: SERVICE });
    }
    Ok(Secret::new(token.to_string()))
}

/// GET `url` from a metadata service with the header it requires of callers; any answer
/// but 200 is a refusal.
async fn metadata_get(
    http: &reqwest::Client,
    url: url::Url,
    (name, value): (&str, &str),
    service: &'static str,
) -> Result<reqwest::Response, SubjectError> {
    let endpoint = url.clone();
    let resp = http
        .get(url)
        .header(name, value)
        .send()
        .await
        .map_err(|e| SubjectError::Unreachable { service, message: request_error(&endpoint, &e) })?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(SubjectError::Refused { service, status });
    }
    Ok(resp)
}

fn with_query(base: &str, pairs: &[(&str, &str)], service: &'static str) -> Result<url::Url, SubjectError> {
    let mut url = url::Url::parse(base)
        .map_err(|e| SubjectError::Unreachable { service, message: format!("bad endpoint: {e}") })?;
    url.query_pairs_mut().extend_pairs(pairs);
    Ok(url)
}

#[derive(Deserialize)]
struct ImdsToken {
    access_token: String,
}

/// `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=` with
/// `Metadata: true` ("How to use managed identities for Azure resources on an Azure VM to
/// acquire an access token").
async fn azure_imds(http: &reqwest::Client, a: &AzureImdsConfig) -> Result<Secret<String>, SubjectError> {
    const SERVICE: &str = "Azure IMDS";
    let base = format!("{}/metadata/identity/oauth2/token", a.endpoint.trim_end_matches('/'));
    let mut query = vec![("api-version", "2018-02-01"), ("resource", a.resource.as_str())];
    if let Some(client_id) = &a.client_id {
        query.push(("client_id", client_id.as_str()));
    }
    let url = with_query(&base, &query, SERVICE)?;
    let resp = metadata_get(http, url, ("Metadata", "true"), SERVICE).await?;
    let body: ImdsToken = resp.json().await.map_err(|_| SubjectError::Malformed { service: SERVICE })?;
    if body.access_token.is_empty() || body.access_token.len() > MAX_TOKEN_BYTES {
        return Err(SubjectError::Malformed { service: SERVICE });
    }
    Ok(Secret::new(body.access_token))
}

/// The signing behind `tessera aws sign-request`, with the AWS SDK's default chain.
async fn aws_signed(a: &AwsSubjectConfig, now: i64) -> Result<Secret<String>, SubjectError> {
    let ambient = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let provider = ambient
        .credentials_provider()
        .ok_or_else(|| SubjectError::NoAwsCredentials("no credential provider is configured".into()))?;
    let credentials =
        provider.provide_credentials().await.map_err(|e| SubjectError::NoAwsCredentials(e.to_string()))?;
    let region = a
        .region
        .clone()
        .or_else(|| ambient.region().map(|r| r.as_ref().to_owned()))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let endpoint = a.endpoint.clone().unwrap_or_else(|| regional_endpoint(&region));
    signed_request(&credentials, &region, &endpoint, &a.server_id, now)
        .map_err(|e| SubjectError::Sign(e.to_string()))
}
