//! Tessera: a cross-cloud workload identity broker.
//!
//! # Layout
//! - [`config`]: `broker.yaml` loading and validation, every error with file:line:column.
//! - [`mapping`]: mapping files: parse, validate, index, evaluate; the only maker of Grants.
//! - [`exchange`]: the pipeline, request -> source -> identity -> rule -> target -> response,
//!   audited whatever the outcome.
//! - [`issuer`]: Tessera's own signing keys, rotation, JWKS and discovery document.
//! - [`http`]: actix-web routes, request limits and the one error -> RFC 6749 mapping.
//! - [`audit`]: audit events and sinks.
//! - [`demo`]: the quickstart's local token issuer (loopback only, off by default).
//!
//! [`Broker::build`] turns a loaded config into a ready broker; [`run`] serves it on a
//! listener until a shutdown future resolves, which is how tests start the real server on
//! `127.0.0.1:0`. A configured demo issuer is started with [`demo::start`] before the
//! broker is built, so the sources trusting it find it up.

pub mod audit;
pub mod config;
pub mod demo;
mod diagnostic;
pub mod exchange;
pub mod http;
pub mod issuer;
pub mod mapping;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use serde_json::json;
use tessera_adapters::registry::BuildContext;
use tessera_adapters::{Clock, CredentialTarget, IdentitySource, Signer};

use crate::config::{ConfigError, ConfigErrors, LimitsConfig, LoadedConfig};
use crate::exchange::{Pipeline, SourceRouter};
use crate::issuer::Issuer;
use crate::mapping::{Catalog, MappingSet, TargetInfo};

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("signing keys: {0}")]
    Issuer(#[from] issuer::IssuerError),
    #[error("mapping files:\n{0}")]
    Mapping(#[from] mapping::LoadErrors),
    #[error("audit sink: {0}")]
    Audit(#[from] audit::AuditError),
    #[error("HTTP client: {0}")]
    Http(String),
}

/// A built broker: issuer, sources, targets, rules and audit sink, ready to serve.
#[derive(Debug)]
pub struct Broker {
    config: LoadedConfig,
    issuer: Arc<Issuer>,
    pipeline: Pipeline,
}

impl Broker {
    /// Build everything the config names. Signing keys are created on first start; no
    /// network call is made here (key sets are fetched in the background).
    pub async fn build(config: LoadedConfig, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StartError> {
        let issuer = Issuer::open(&config.config.issuer, &config.base_dir, Arc::clone(&clock))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StartError::Http(e.to_string()))?;
        let cx = BuildContext {
            clock: Arc::clone(&clock),
            http,
            signer: Arc::clone(&issuer) as Arc<dyn Signer>,
            base_dir: config.base_dir.clone(),
        };

        let mut errors: Vec<ConfigError> = Vec::new();
        let mut sources: Vec<Arc<dyn IdentitySource>> = Vec::new();
        for entry in &config.config.sources.value {
            match entry.value.build(&cx) {
                Ok(s) => sources.push(s),
                Err(e) => errors.push(entry_error(&config, entry, "source", entry.value.name(), &e)),
            }
        }
        let mut targets: Vec<Arc<dyn CredentialTarget>> = Vec::new();
        for entry in &config.config.targets.value {
            match entry.value.build(&cx) {
                Ok(t) => targets.push(t),
                Err(e) => errors.push(entry_error(&config, entry, "target", entry.value.name(), &e)),
            }
        }
        let router = SourceRouter::new(&sources).map_err(|m| {
            let loc = &config.config.sources.referenced;
            ConfigError { file: config.path.clone(), line: loc.line(), column: loc.column(), message: m }
        });
        let router = match router {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                SourceRouter::default()
            }
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors).into());
        }

        let catalog = catalog(&sources, &targets);
        let mappings = MappingSet::load_dir(&config.mappings_dir(), &catalog)?;
        let audit_config = config.config.audit();
        let sink = audit::open_sink(&audit_config, &config.base_dir)?;
        let pipeline = Pipeline::new(
            Arc::clone(&clock),
            router,
            targets,
            Arc::new(mappings),
            sink,
            audit_config.fail_open,
        );
        Ok(Arc::new(Self { config, issuer, pipeline }))
    }

    pub fn issuer(&self) -> &Arc<Issuer> {
        &self.issuer
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn config(&self) -> &LoadedConfig {
        &self.config
    }

    pub fn limits(&self) -> LimitsConfig {
        self.config.config.limits()
    }

    /// Config, keys and rules are loaded. (Source key sets warming up is reported by
    /// `/v1/status`, not here: one issuer being down must not take every replica out.)
    pub fn ready(&self) -> bool {
        Signer::algorithms(self.issuer.as_ref()).into_iter().all(|alg| self.issuer.active_kid(alg).is_some())
    }

    /// What `/v1/status` reports.
    pub fn status(&self) -> serde_json::Value {
        let mappings = self.pipeline.mappings();
        let mut sources: Vec<serde_json::Value> = self
            .pipeline
            .router()
            .sources()
            .map(|s| json!({ "name": s.name(), "type": s.kind(), "ready": s.ready() }))
            .collect();
        sources.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let mut targets: Vec<serde_json::Value> =
            self.pipeline.targets().map(|t| json!({ "name": t.name(), "type": t.kind() })).collect();
        targets.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "config": { "path": self.config.path, "version": self.config.version },
            "issuer": { "url": self.issuer.url() },
            "mappings": {
                "version": mappings.version(),
                "rules": mappings.rule_count(),
                "last_reload_error": serde_json::Value::Null,
            },
            "sources": sources,
            "targets": targets,
        })
    }
}

fn entry_error<T>(
    config: &LoadedConfig,
    entry: &serde_saphyr::Spanned<T>,
    what: &str,
    name: &str,
    e: &tessera_adapters::registry::BuildError,
) -> ConfigError {
    let field = e.field.map(|f| format!(".{f}")).unwrap_or_default();
    ConfigErrors::at_entry(&config.path, entry, format!("{what} `{name}`{field}: {}", e.message))
}

fn catalog(sources: &[Arc<dyn IdentitySource>], targets: &[Arc<dyn CredentialTarget>]) -> Catalog {
    Catalog {
        targets: targets
            .iter()
            .map(|t| TargetInfo {
                name: t.name().to_string(),
                kind: t.kind(),
                max_ttl: t.max_ttl(),
                default_ttl: t.default_ttl(),
                grant_keys: t.grant_keys(),
                scope_param: t.scope_param(),
            })
            .collect(),
        sources: sources.iter().map(|s| s.name().to_string()).collect(),
    }
}

/// Serve `broker` on `listener` until `shutdown` resolves, then drain gracefully.
/// Starts the signing-key reloader.
pub async fn run(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Err(e) = broker.issuer.spawn_reloader() {
        tracing::error!(error = %e, "signing-key reloader not started");
    }
    let workers = broker
        .config
        .config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(2));
    let shared = Arc::clone(&broker);
    let limit = broker.limits().max_body_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(Arc::clone(&shared)))
            .app_data(web::PayloadConfig::new(limit))
            .configure(http::configure)
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    server.await
}
