//! Tessera: a cross-cloud workload identity broker.
//!
//! # Layout
//! - [`config`]: `broker.yaml` loading and validation, every error with file:line:column.
//! - [`mapping`]: mapping files: parse, validate, index, evaluate; the only maker of Grants.
//! - [`exchange`]: the pipeline, request -> source -> identity -> rule -> target -> response,
//!   audited whatever the outcome.
//! - [`issuer`]: Tessera's own signing keys, rotation, JWKS and discovery document.
//! - [`explain`]: why an identity (given, or verified from a token) gets which decision.
//! - [`http`]: actix-web routes, request limits and the one error -> RFC 6749 mapping; the
//!   admin listener's routes.
//! - [`metrics`]: the Prometheus registry behind `GET /metrics`.
//! - [`audit`]: audit events and sinks.
//! - [`demo`]: the quickstart's local token issuer (loopback only, off by default).
//! - [`agent`]: `tessera agent`, a client of the broker over HTTP that serves credentials
//!   to unmodified SDKs; [`agent::run`] serves one on a listener until shutdown.
//!
//! [`Broker::build`] turns a loaded config into a ready broker; [`run`] serves it on a
//! listener until a shutdown future resolves, which is how tests start the real server on
//! `127.0.0.1:0` ([`run_with_admin`] takes the admin listener too). While serving, the
//! mapping directory is watched and valid changes swap in. [`Adapters::build`] makes the
//! sources and targets alone, for the `tessera mappings` commands. A configured demo issuer is started with [`demo::start`] before the
//! broker is built, so the sources trusting it find it up.

pub mod agent;
pub mod audit;
pub mod cache;
pub mod config;
pub mod demo;
mod diagnostic;
pub mod exchange;
pub mod explain;
pub mod http;
pub mod issuer;
pub mod mapping;
pub mod metrics;
pub mod ratelimit;
pub mod redis;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use serde_json::json;
use tessera_adapters::build::BuildContext;
use tessera_adapters::target::{SignError, SigningAlgorithm};
use tessera_adapters::{Clock, CredentialTarget, IdentitySource, Secret, Signer};

use crate::config::{ConfigError, ConfigErrors, LimitsConfig, LoadedConfig};
use crate::exchange::{Pipeline, SourceRouter};
use crate::http::admin_auth::AdminAuth;
use crate::issuer::Issuer;
use crate::mapping::{Catalog, MappingSet, Reloader, RuleSlot, SourceInfo, TargetInfo, WatchOptions};
use crate::metrics::Metrics;

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
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("credential cache key in the key directory: {0}")]
    CacheKey(std::io::Error),
}

/// A built broker: issuer, sources, targets, rules and audit sink, ready to serve.
#[derive(Debug)]
pub struct Broker {
    config: LoadedConfig,
    issuer: Arc<Issuer>,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    reloader: Arc<Reloader>,
    clock: Arc<dyn Clock>,
    admin_auth: Option<Arc<AdminAuth>>,
    audit_store: Option<audit::store::AuditStore>,
}

/// The configured sources and targets, built, with the router that picks a source for a
/// token and the catalog mapping files are checked against.
#[derive(Debug)]
pub struct Adapters {
    pub sources: Vec<Arc<dyn IdentitySource>>,
    pub targets: Vec<Arc<dyn CredentialTarget>>,
    pub router: SourceRouter,
    pub catalog: Catalog,
}

impl Adapters {
    /// Build the sources and targets `config` names without Tessera's signing keys, for
    /// tools that check or explain mapping files: targets are built against a signer that
    /// refuses to sign. No key or audit file is touched and no network call is made here.
    pub fn build(config: &LoadedConfig, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let signer = Arc::new(NoSigner {
            issuer: config.config.issuer.url.to_string(),
            algorithms: config.config.issuer.algorithms.clone(),
        });
        Self::build_with(config, clock, signer, Arc::new(tessera_adapters::observe::NoObserver))
    }

    fn build_with(
        config: &LoadedConfig,
        clock: Arc<dyn Clock>,
        signer: Arc<dyn Signer>,
        observer: Arc<dyn tessera_adapters::observe::Observer>,
    ) -> Result<Self, StartError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StartError::Http(e.to_string()))?;
        let cx = BuildContext { clock, http, signer, base_dir: config.base_dir.clone(), observer };

        let mut errors: Vec<ConfigError> = Vec::new();
        let mut sources: Vec<Arc<dyn IdentitySource>> = Vec::new();
        for entry in &config.config.sources.value {
            match entry.value.build(&cx) {
                Ok(s) => sources.push(s),
                Err(e) => errors.push(entry_error(config, entry, "source", entry.value.name(), &e)),
            }
        }
        let mut targets: Vec<Arc<dyn CredentialTarget>> = Vec::new();
        for entry in &config.config.targets.value {
            match entry.value.build(&cx) {
                Ok(t) => targets.push(t),
                Err(e) => errors.push(entry_error(config, entry, "target", entry.value.name(), &e)),
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
        Ok(Self { sources, targets, router, catalog })
    }
}

/// The signer of [`Adapters::build`]: targets can be built and checked, never sign.
#[derive(Debug)]
struct NoSigner {
    issuer: String,
    algorithms: Vec<SigningAlgorithm>,
}

impl Signer for NoSigner {
    fn issuer(&self) -> &str {
        &self.issuer
    }

    fn algorithms(&self) -> Vec<SigningAlgorithm> {
        self.algorithms.clone()
    }

    fn sign(
        &self,
        alg: SigningAlgorithm,
        _claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Secret<String>, SignError> {
        Err(SignError::NoActiveKey(alg.as_str()))
    }
}

impl Broker {
    /// Build everything the config names. Signing keys are created on first start; no
    /// network call is made here (key sets are fetched in the background).
    pub async fn build(config: LoadedConfig, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StartError> {
        let issuer = Issuer::open(&config.config.issuer, &config.base_dir, Arc::clone(&clock))?;
        let metrics = Arc::new(Metrics::new());
        let adapters = Adapters::build_with(
            &config,
            Arc::clone(&clock),
            Arc::clone(&issuer) as Arc<dyn Signer>,
            Arc::clone(&metrics) as Arc<dyn tessera_adapters::observe::Observer>,
        )?;
        let Adapters { targets, router, catalog, .. } = adapters;
        let admin_auth = AdminAuth::build(&config, &issuer, &targets, &clock)?;
        let mappings = MappingSet::load_dir(&config.mappings_dir(), &catalog)?;
        metrics.set_mapping_rules(mappings.rule_count());
        let reloader =
            Arc::new(Reloader::new(config.mappings_dir(), catalog, Arc::clone(&clock), Arc::clone(&metrics)));
        let (sink, audit_store) = audit::open(&config, Arc::clone(&metrics)).await?;
        let mut pipeline = Pipeline::new(
            Arc::clone(&clock),
            router,
            targets,
            Arc::new(mappings),
            sink,
            config.config.audit().fail_open,
            Arc::clone(&metrics),
        );
        let shared = config.config.redis().map(redis::SharedRedis::connect).transpose()?;
        if let Some(redis) = &shared {
            let key = cache::shared::load_or_create_key(issuer.key_dir()).map_err(StartError::CacheKey)?;
            let cache = cache::shared::SharedCache::new(redis.clone(), &key).map_err(StartError::CacheKey)?;
            pipeline = pipeline.with_shared_cache(cache);
            tracing::info!(redis = redis.url(), "credential cache and rate limits shared through redis");
        }
        if let Some(rate) = config.config.rate_limit() {
            pipeline =
                pipeline.with_rate_limit(ratelimit::RateLimiter::new(rate, Arc::clone(&clock), shared));
        }
        Ok(Arc::new(Self { config, issuer, pipeline, metrics, reloader, clock, admin_auth, audit_store }))
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

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The admin listener's authentication; `None` when `admin.auth` is not set.
    pub fn admin_auth(&self) -> Option<&Arc<AdminAuth>> {
        self.admin_auth.as_ref()
    }

    /// The SQL audit store, unless `audit.store.enabled: false`.
    pub fn audit_store(&self) -> Option<&audit::store::AuditStore> {
        self.audit_store.as_ref()
    }

    /// Reloads the mapping directory; see [`mapping::Reloader`].
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Reload the mapping directory now, off the async runtime; `force` reports an
    /// invalid directory again even when unchanged.
    pub async fn reload_mappings(self: &Arc<Self>, force: bool) -> mapping::ReloadOutcome {
        let me = Arc::clone(self);
        match tokio::task::spawn_blocking(move || me.reloader.reload(me.as_ref(), force)).await {
            Ok(outcome) => outcome,
            Err(e) => mapping::ReloadOutcome::Refused(mapping::LoadErrors(vec![mapping::LoadError {
                file: self.reloader.dir().to_path_buf(),
                line: 1,
                column: 1,
                message: format!("the reload failed: {e}"),
                hint: "see the broker's log".to_string(),
            }])),
        }
    }

    /// Config, keys and rules are loaded. (Source key sets warming up is reported by
    /// `/v1/status`, not here: one issuer being down must not take every replica out.)
    pub fn ready(&self) -> bool {
        Signer::algorithms(self.issuer.as_ref()).into_iter().all(|alg| self.issuer.active_kid(alg).is_some())
    }

    /// What `/v1/status` reports.
    pub fn status(&self) -> serde_json::Value {
        let mappings = self.pipeline.mappings();
        let reload = self.reloader.status();
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
                "files": mappings.file_count(),
                "dir": self.reloader.dir(),
                "last_reload_at": reload.last_reload_at,
                "last_reload_error": reload.last_reload_error,
                "reloads_ok": reload.reloads_ok,
                "reloads_failed": reload.reloads_failed,
            },
            "sources": sources,
            "targets": targets,
            "audit": { "store": self.audit_store.as_ref().map(|s| s.backend().as_str()) },
        })
    }
}

fn entry_error<T>(
    config: &LoadedConfig,
    entry: &serde_saphyr::Spanned<T>,
    what: &str,
    name: &str,
    e: &tessera_adapters::build::BuildError,
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
                target: Some(Arc::clone(t)),
            })
            .collect(),
        sources: sources
            .iter()
            .map(|s| SourceInfo { name: s.name().to_string(), kind: s.kind().to_string() })
            .collect(),
    }
}

impl RuleSlot for Broker {
    fn current(&self) -> Arc<MappingSet> {
        self.pipeline.mappings()
    }

    fn replace(&self, set: Arc<MappingSet>) {
        self.metrics.set_mapping_rules(set.rule_count());
        self.pipeline.replace_mappings(set);
    }
}

/// Serve `broker` on `listener` until `shutdown` resolves, then drain gracefully. Binds
/// the admin listener if the config has one. Starts the signing-key reloader and the
/// mapping directory watcher (which also reloads on `SIGHUP`).
pub async fn run(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let admin = match broker.config.config.admin() {
        Some(admin) => Some(TcpListener::bind(admin.listen).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {} (admin): {e}", admin.listen))
        })?),
        None => None,
    };
    run_with_admin(broker, listener, admin, shutdown).await
}

/// [`run`], with the admin listener given (tests bind `127.0.0.1:0`); `None` serves no
/// admin API whatever the config says.
pub async fn run_with_admin(
    broker: Arc<Broker>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Err(e) = broker.issuer.spawn_reloader() {
        tracing::error!(error = %e, "signing-key reloader not started");
    }
    let reload = broker.config.config.reload();
    let watcher = Arc::clone(&broker.reloader).spawn(
        Arc::clone(&broker) as Arc<dyn RuleSlot>,
        WatchOptions {
            watch: reload.watch,
            debounce: reload.debounce,
            poll_interval: Some(reload.poll_interval).filter(|d| !d.is_zero()),
            sighup: true,
        },
    );
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
    let admin_server = match admin {
        Some(listener) => {
            let shared = Arc::clone(&broker);
            let tls = broker.admin_auth.as_ref().and_then(|auth| auth.tls());
            let addr = listener.local_addr()?;
            let authenticated = broker.admin_auth.is_some();
            if !authenticated {
                tracing::info!(listen = %addr, "admin API serving, unauthenticated (loopback only)");
            } else if tls.is_none() && !addr.ip().is_loopback() {
                tracing::warn!(
                    listen = %addr,
                    "admin API serving plain HTTP off loopback: bearer tokens cross the network in clear unless a TLS proxy fronts it"
                );
            } else {
                tracing::info!(listen = %addr, https = tls.is_some(), "admin API serving, authenticated");
            }
            // The authentication middleware wraps the whole app, so every admin route,
            // whoever registers it in `configure`, is behind it.
            let server = HttpServer::new(move || {
                App::new()
                    .wrap(actix_web::middleware::from_fn(http::admin_auth::authenticate))
                    .app_data(web::Data::new(Arc::clone(&shared)))
                    .app_data(web::PayloadConfig::new(limit))
                    .app_data(web::JsonConfig::default().limit(limit))
                    .configure(http::admin::configure)
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(5);
            let server = match tls {
                Some(tls) => server
                    .on_connect(http::admin_auth::client_certificate)
                    .listen_rustls_0_23(listener, (*tls).clone())?,
                None => server.listen(listener)?,
            };
            Some(server.run())
        }
        None => None,
    };
    let handle = server.handle();
    let admin_handle = admin_server.as_ref().map(actix_web::dev::Server::handle);
    tokio::spawn(async move {
        shutdown.await;
        if let Some(admin) = admin_handle {
            admin.stop(true).await;
        }
        handle.stop(true).await;
    });
    let admin_task = admin_server.map(tokio::spawn);
    let result = server.await;
    watcher.abort();
    if let Some(task) = admin_task {
        match task.await {
            Ok(Err(e)) => tracing::error!(error = %e, "admin API failed"),
            Err(e) => tracing::error!(error = %e, "admin API task failed"),
            Ok(Ok(())) => {}
        }
    }
    result
}
