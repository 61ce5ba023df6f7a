//! `tessera credential-process`: AWS credentials for the AWS CLI and SDKs'
//! `credential_process` setting ("Sourcing credentials with an external process", AWS SDKs
//! and Tools Reference Guide), taken from a running agent's ECS endpoint; with
//! `--kubernetes`, a Kubernetes `ExecCredential` for kubectl ([`crate::exec_credential`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tessera_adapters::Secret;

use super::ECS_TOKEN_ENV;

/// Where the agent is and how to authenticate to it.
#[derive(Debug, Clone, clap::Args)]
pub struct CredentialProcessArgs {
    /// The agent's ECS endpoint. Default: `AWS_CONTAINER_CREDENTIALS_FULL_URI`, else
    /// http://127.0.0.1:8200/v1/aws/credentials.
    #[arg(long, env = "AWS_CONTAINER_CREDENTIALS_FULL_URI", default_value = DEFAULT_URL)]
    pub url: String,
    /// A file holding the agent's authorization token. Default: the environment variable
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    #[arg(long, env = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Print a Kubernetes `client.authentication.k8s.io/v1` ExecCredential for kubectl
    /// instead: exchange `--subject-token-file` at `--broker` for `--audience`.
    #[arg(long)]
    pub kubernetes: bool,
    #[command(flatten)]
    pub kubernetes_args: crate::exec_credential::KubernetesArgs,
}

const DEFAULT_URL: &str = "http://127.0.0.1:8200/v1/aws/credentials";

/// Why no credentials could be printed. Never carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum CredentialProcessError {
    #[error("the agent URL must be http to a loopback address or https: {0}")]
    Url(String),
    #[error("no authorization token: {0}")]
    Token(String),
    #[error("the agent is unreachable: {0}")]
    Unreachable(String),
    #[error("the agent answered HTTP {0}")]
    Refused(u16),
    #[error("the agent answered something that is not AWS credentials")]
    Malformed,
    #[error(transparent)]
    Kubernetes(#[from] crate::exec_credential::ExecCredentialError),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EcsCredentials {
    access_key_id: String,
    secret_access_key: String,
    token: String,
    expiration: String,
}

/// Print the credentials on standard output, the one place the AWS tools (and kubectl)
/// read them.
pub async fn run(args: &CredentialProcessArgs) -> Result<(), CredentialProcessError> {
    let out = if args.kubernetes {
        crate::exec_credential::fetch(&args.kubernetes_args).await?
    } else {
        fetch(args).await?
    };
    println!("{}", out.expose());
    Ok(())
}

/// Whether a credential may be asked of `url`: `https`, or plain `http` to loopback only.
pub(crate) fn agent_url_allowed(url: &url::Url) -> bool {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    url.scheme() == "https" || (url.scheme() == "http" && loopback)
}

/// The `credential_process` JSON (`Version: 1`) for the agent's current AWS credentials.
pub async fn fetch(args: &CredentialProcessArgs) -> Result<Secret<String>, CredentialProcessError> {
    let url = url::Url::parse(&args.url).map_err(|_| CredentialProcessError::Url(args.url.clone()))?;
    if !agent_url_allowed(&url) {
        return Err(CredentialProcessError::Url(args.url.clone()));
    }
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CredentialProcessError::Token(format!("cannot read {}: {e}", path.display())))?,
        None => std::env::var(ECS_TOKEN_ENV)
            .map_err(|_| CredentialProcessError::Token(format!("set {ECS_TOKEN_ENV} or --token-file")))?,
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| CredentialProcessError::Unreachable(e.to_string()))?;
    let resp = http
        .get(url)
        .header("authorization", token.trim())
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| {
            CredentialProcessError::Unreachable(tessera_adapters::net::request_error(&args.url, &e))
        })?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(CredentialProcessError::Refused(status));
    }
    let c: EcsCredentials = resp.json().await.map_err(|_| CredentialProcessError::Malformed)?;
    let out = json!({
        "Version": 1,
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key,
        "SessionToken": c.token,
        "Expiration": c.expiration,
    });
    Ok(Secret::new(out.to_string()))
}
