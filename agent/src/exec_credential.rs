//! `tessera credential-process --kubernetes`: a kubectl (client-go) credential plugin. It
//! exchanges the workload's native token (a file: a CI job's OIDC token, a projected
//! service account token) at the broker for a `kubernetes` target's token and prints it as
//! a `client.authentication.k8s.io/v1` `ExecCredential` (Kubernetes "client-go credential
//! plugins"), so a kubeconfig `exec` entry gives kubectl a short-lived token and no
//! kubeconfig holds a secret.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tessera_adapters::Secret;
use tessera_adapters::clock::{Clock, SystemClock, format_rfc3339};

use crate::credentials::{BrokerClient, RefreshError, Want};
use crate::subject::Subject;

/// The `ExecCredential` API version kubectl sends and expects back.
pub const EXEC_CREDENTIAL_API_VERSION: &str = "client.authentication.k8s.io/v1";

/// Where the broker is, which target to ask, and the native token to present.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubernetesArgs {
    /// The broker's base URL (`https://`, or `http://` to a loopback address).
    #[arg(long, env = "TESSERA_BROKER_URL")]
    pub broker: Option<String>,
    /// The broker's `kubernetes` target for this cluster.
    #[arg(long, env = "TESSERA_AUDIENCE")]
    pub audience: Option<String>,
    /// A file holding the workload's native token (read at every call).
    #[arg(long, env = "TESSERA_SUBJECT_TOKEN_FILE")]
    pub subject_token_file: Option<PathBuf>,
    /// A scope to ask for, when the target's rules grant several.
    #[arg(long)]
    pub scope: Option<String>,
}

/// Why no `ExecCredential` could be printed. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum ExecCredentialError {
    #[error("--kubernetes needs {0}")]
    Missing(&'static str),
    #[error("the broker URL must be https, or http to a loopback address: {0}")]
    Url(String),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error(transparent)]
    Exchange(#[from] RefreshError),
    #[error("the broker issued a `{0}` token, not a bearer token")]
    NotBearer(String),
}

/// The `ExecCredential` for the target's current token.
pub async fn fetch(args: &KubernetesArgs) -> Result<Secret<String>, ExecCredentialError> {
    let broker =
        args.broker.as_deref().ok_or(ExecCredentialError::Missing("--broker or TESSERA_BROKER_URL"))?;
    let audience =
        args.audience.clone().ok_or(ExecCredentialError::Missing("--audience or TESSERA_AUDIENCE"))?;
    let file = args
        .subject_token_file
        .clone()
        .ok_or(ExecCredentialError::Missing("--subject-token-file or TESSERA_SUBJECT_TOKEN_FILE"))?;
    let url = url::Url::parse(broker).map_err(|_| ExecCredentialError::Url(broker.to_owned()))?;
    if !crate::credential_process::agent_url_allowed(&url) {
        return Err(ExecCredentialError::Url(broker.to_owned()));
    }
    let token_url = crate::token_url(&url).map_err(|_| ExecCredentialError::Url(broker.to_owned()))?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("tessera-credential-process/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ExecCredentialError::Http(e.to_string()))?;
    let client = BrokerClient { http, token_url, subject: Arc::new(Subject::File(file)) };
    let clock = SystemClock;
    let issued =
        client.exchange(&Want { target: audience, scope: args.scope.clone() }, || clock.now()).await?;
    if !issued.token_type.eq_ignore_ascii_case("bearer") {
        return Err(ExecCredentialError::NotBearer(issued.token_type));
    }
    let out = json!({
        "apiVersion": EXEC_CREDENTIAL_API_VERSION,
        "kind": "ExecCredential",
        "status": {
            "token": issued.access_token.expose(),
            "expirationTimestamp": format_rfc3339(issued.expires_at),
        },
    });
    Ok(Secret::new(out.to_string()))
}
