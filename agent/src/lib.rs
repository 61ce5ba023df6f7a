//! `tessera agent`: credentials for unmodified AWS, Google and Azure SDKs.
//!
//! The agent runs beside a workload. It reads the workload's native credential, exchanges
//! it at the broker's `POST /v1/token` like any other client, keeps each configured
//! credential fresh, and serves them, on loopback only, where SDKs already look
//! (docs/agent.md). It is a crate of its own, depending on `tessera-adapters` and never on
//! the broker, so the compiler keeps it a client; the `tessera` binary links it for
//! `tessera agent` and `tessera credential-process`.
//!
//! # Layout
//! - [`config`]: `agent.yaml`, loaded with file:line:column errors.
//! - [`subject`]: the native credential (token file, GCE metadata, Azure IMDS, signed AWS
//!   GetCallerIdentity).
//! - [`credentials`]: the kept credentials, their refresh tasks, backoff and health.
//! - [`serve`]: the ECS, GCE metadata, App Service and IMDS endpoints and `/healthz`,
//!   behind a `Host` check against DNS rebinding.
//! - [`credential_process`]: `tessera credential-process` for the AWS `credential_process`
//!   setting.
//! - [`exec_credential`]: `tessera credential-process --kubernetes`, a kubectl credential
//!   plugin printing an `ExecCredential`.
//! - [`exec`]: `tessera agent exec -- <command>`, a command run with a PostgreSQL login in
//!   its environment (and restarted with a new one before it expires, if asked).
//!
//! [`run`] serves a loaded config on a listener until a shutdown future resolves, which is
//! how tests start a real agent on `127.0.0.1:0`; [`run_file`] is `tessera agent --config`.

pub mod config;
pub mod credential_process;
pub mod credentials;
pub mod exec;
pub mod exec_credential;
pub mod serve;
pub mod subject;

use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use tessera_adapters::{Clock, Secret};

use self::config::LoadedAgentConfig;
use self::credentials::{BrokerClient, OutFile, Store, Want};
use self::serve::Served;
use self::subject::Subject;

pub use self::config::load;

/// The environment variable holding the ECS endpoint's authorization token, as SDKs read it.
pub const ECS_TOKEN_ENV: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
/// The environment variable holding the App Service endpoint's secret, as SDKs read it.
pub const IDENTITY_HEADER_ENV: &str = "IDENTITY_HEADER";

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{what}: {message}")]
    Secret { what: &'static str, message: String },
    #[error("listen address {0} is not a loopback address")]
    NotLoopback(std::net::SocketAddr),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Exec(String),
    #[error("invalid agent configuration:\n{0}")]
    Config(#[from] tessera_adapters::config::ConfigErrors),
}

/// `tessera agent --config <path>`: load, bind the configured loopback address, serve with
/// the system clock until `shutdown`.
pub async fn run_file(
    path: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let loaded = load(path)?;
    let listen = loaded.config.listen.value;
    let listener = TcpListener::bind(listen)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    run(loaded, listener, Arc::new(tessera_adapters::SystemClock), shutdown).await?;
    tracing::info!("tessera agent stopped");
    Ok(())
}

/// Add `key` to a JSON object (no indexing, which could panic on a non-object).
pub(crate) fn set(object: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    if let serde_json::Value::Object(map) = object {
        map.insert(key.to_string(), value);
    }
}

/// Read a secret from `file` if given, else from the environment variable `env`.
fn secret(
    loaded: &LoadedAgentConfig,
    file: Option<&Path>,
    env: &str,
    what: &'static str,
) -> Result<Secret<String>, AgentError> {
    let value = match file {
        Some(path) => {
            let path = loaded.resolve(path);
            std::fs::read_to_string(&path).map_err(|e| AgentError::Secret {
                what,
                message: format!("cannot read {}: {e}", path.display()),
            })?
        }
        None => std::env::var(env).map_err(|_| AgentError::Secret {
            what,
            message: format!("set the environment variable {env} or name a file in the config"),
        })?,
    };
    let value = value.trim().to_string();
    if value.len() < 16 {
        return Err(AgentError::Secret { what, message: "must be at least 16 characters".to_string() });
    }
    Ok(Secret::new(value))
}

/// `{broker}/v1/token`, keeping a base path (`https://example.com/tessera` ->
/// `https://example.com/tessera/v1/token`).
pub(crate) fn token_url(broker: &url::Url) -> Result<url::Url, url::ParseError> {
    let mut base = broker.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.join("v1/token")
}

/// Every credential the config keeps, with the file it is written to, if any.
fn wants(loaded: &LoadedAgentConfig) -> Vec<(Want, Option<OutFile>)> {
    let c = &loaded.config;
    let mut wants = Vec::new();
    if let Some(a) = c.aws() {
        wants.push((Want { target: a.target.clone(), scope: a.scope.clone() }, None));
    }
    if let Some(g) = c.gcp() {
        if let Some(target) = &g.target {
            wants.push((Want { target: target.clone(), scope: g.scope.clone() }, None));
        }
        for target in g.id_token_targets.values() {
            wants.push((Want { target: target.clone(), scope: None }, None));
        }
    }
    if let Some(a) = c.azure() {
        for target in a.resources.values() {
            wants.push((Want { target: target.clone(), scope: None }, None));
        }
    }
    for f in &c.token_files {
        let f = &f.value;
        let file = OutFile::Token(loaded.resolve(&f.path));
        wants.push((Want { target: f.target.clone(), scope: f.scope.clone() }, Some(file)));
    }
    for p in &c.postgres {
        let p = &p.value;
        let file = p.passfile.as_ref().map(|path| OutFile::Passfile(loaded.resolve(path)));
        wants.push((Want { target: p.target.clone(), scope: p.scope.clone() }, file));
    }
    wants
}

/// The client that exchanges the native credential at the broker's token endpoint.
fn broker_client(loaded: &LoadedAgentConfig) -> Result<BrokerClient, AgentError> {
    let c = &loaded.config;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Refreshes are minutes apart: an idle pooled connection saves nothing and would
        // hold a draining broker replica open through a rolling restart.
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(5).min(c.timeout))
        .timeout(c.timeout)
        .user_agent(concat!("tessera-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AgentError::Http(e.to_string()))?;
    let token_url = token_url(&loaded.broker).map_err(|e| AgentError::Http(e.to_string()))?;
    Ok(BrokerClient { http, token_url, subject: Arc::new(Subject::from_config(loaded)) })
}

/// Serve the agent described by `loaded` on `listener` until `shutdown` resolves. Each
/// configured credential is obtained at once and kept fresh in the background.
pub async fn run(
    loaded: LoadedAgentConfig,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        return Err(AgentError::NotLoopback(local));
    }
    let c = &loaded.config;
    let aws = match c.aws() {
        Some(a) => Some((
            a.clone(),
            secret(&loaded, a.authorization_token_file.as_deref(), ECS_TOKEN_ENV, "aws.authorization token")?,
        )),
        None => None,
    };
    let azure = match c.azure() {
        Some(a) => Some((
            a.clone(),
            secret(&loaded, a.identity_header_file.as_deref(), IDENTITY_HEADER_ENV, "azure identity header")?,
        )),
        None => None,
    };

    let store = Arc::new(Store::new(wants(&loaded), Arc::clone(&clock), c.refresh()));
    let client = broker_client(&loaded)?;
    let mut tasks: Vec<_> = store
        .slots()
        .map(|slot| {
            tokio::spawn(credentials::refresh_loop(Arc::clone(&store), Arc::clone(slot), client.clone()))
        })
        .collect();
    if store.refresh.revocation_watch {
        tasks.extend(store.slots().map(|slot| {
            tokio::spawn(credentials::watch_loop(Arc::clone(&store), Arc::clone(slot), client.clone()))
        }));
    }

    let hosts = c.hosts.iter().map(|h| h.value.clone()).collect();
    let served = web::Data::new(Served { store, aws, gcp: c.gcp().cloned(), azure, hosts });
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(serve::check_host))
            .app_data(served.clone())
            .configure(serve::configure)
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    tracing::info!(listen = %local, broker = %loaded.broker, "tessera agent serving");
    let result = server.await;
    for task in tasks {
        task.abort();
    }
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_url_keeps_the_brokers_base_path() {
        let url = |s: &str| token_url(&url::Url::parse(s).unwrap()).unwrap().to_string();
        assert_eq!(url("https://tessera.example.com"), "https://tessera.example.com/v1/token");
        assert_eq!(url("https://example.com/tessera"), "https://example.com/tessera/v1/token");
        assert_eq!(url("https://example.com/tessera/"), "https://example.com/tessera/v1/token");
    }
}
