//! Serving a built [`Broker`]: the public listener, the admin listener, the background
//! tasks that keep keys and rules current while they serve, a graceful stop, and the
//! `/v1/status` body.

use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::http;
use crate::mapping::{ReloadStatus, RuleSlot, WatchOptions};

/// Serve `broker` on `listener` until `shutdown` resolves, then drain gracefully. Binds
/// the admin listener if the config has one. Starts the signing-key reloader and the
/// mapping directory watcher (which also reloads on `SIGHUP`).
pub async fn run(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let admin = match broker.config().config.admin() {
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
    let watcher = start_background(&broker);
    let server = public_server(&broker, listener)?;
    let admin_server = admin.map(|listener| admin_server(&broker, listener)).transpose()?;
    stop_on(shutdown, &server, admin_server.as_ref());
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

/// Start the signing-key reloader and the mapping directory watcher; the watcher's task is
/// returned, to be stopped with the server.
fn start_background(broker: &Arc<Broker>) -> JoinHandle<()> {
    if let Err(e) = broker.issuer().spawn_reloader() {
        tracing::error!(error = %e, "signing-key reloader not started");
    }
    let reload = broker.config().config.reload();
    Arc::clone(broker.reloader()).spawn(
        Arc::clone(broker) as Arc<dyn RuleSlot>,
        WatchOptions {
            watch: reload.watch,
            debounce: reload.debounce,
            poll_interval: Some(reload.poll_interval).filter(|d| !d.is_zero()),
            sighup: true,
        },
    )
}

/// The public listener: token exchange, issuer metadata, probes. One worker per core
/// unless `workers` says otherwise.
fn public_server(broker: &Arc<Broker>, listener: TcpListener) -> std::io::Result<Server> {
    let workers = broker
        .config()
        .config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(2));
    let shared = Arc::clone(broker);
    let limit = broker.limits().max_body_bytes;
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(Arc::clone(&shared)))
            .app_data(web::PayloadConfig::new(limit))
            .configure(http::configure)
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run())
}

/// The admin listener, behind its authentication; HTTPS when `admin.auth.tls` is set.
fn admin_server(broker: &Arc<Broker>, listener: TcpListener) -> std::io::Result<Server> {
    let shared = Arc::clone(broker);
    let limit = broker.limits().max_body_bytes;
    let tls = broker.admin_auth().and_then(|auth| auth.tls());
    let addr = listener.local_addr()?;
    let authenticated = broker.admin_auth().is_some();
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
    // The authentication middleware wraps the whole app, so every admin route, whoever
    // registers it in `configure`, is behind it.
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
    Ok(server.run())
}

/// When `shutdown` resolves, stop the admin listener, then drain the public one.
fn stop_on(shutdown: impl Future<Output = ()> + Send + 'static, public: &Server, admin: Option<&Server>) {
    let handle = public.handle();
    let admin_handle = admin.map(Server::handle);
    tokio::spawn(async move {
        shutdown.await;
        if let Some(admin) = admin_handle {
            admin.stop(true).await;
        }
        handle.stop(true).await;
    });
}

/// The body of `GET /v1/status`: versions, paths, the mapping set and its reloads, the
/// sources (with whether their key sets are fetched) and targets, the audit store.
#[derive(Debug, Serialize)]
pub struct Status<'a> {
    version: &'static str,
    config: ConfigStatus<'a>,
    issuer: IssuerStatus<'a>,
    mappings: MappingsStatus<'a>,
    sources: Vec<SourceStatus<'a>>,
    targets: Vec<TargetStatus<'a>>,
    audit: AuditStatus,
}

#[derive(Debug, Serialize)]
struct ConfigStatus<'a> {
    path: &'a Path,
    version: &'a str,
}

#[derive(Debug, Serialize)]
struct IssuerStatus<'a> {
    url: &'a str,
}

#[derive(Debug, Serialize)]
struct MappingsStatus<'a> {
    version: String,
    rules: usize,
    files: usize,
    dir: &'a Path,
    #[serde(flatten)]
    reload: ReloadStatus,
}

#[derive(Debug, Serialize)]
struct SourceStatus<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    ready: bool,
}

#[derive(Debug, Serialize)]
struct TargetStatus<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Serialize)]
struct AuditStatus {
    /// `sqlite` or `postgres`; `null` without a store.
    store: Option<&'static str>,
}

impl<'a> Status<'a> {
    /// What `broker` reports now.
    pub fn of(broker: &'a Broker) -> Self {
        let pipeline = broker.pipeline();
        let mappings = pipeline.mappings();
        let mut sources: Vec<SourceStatus<'a>> = pipeline
            .router()
            .sources()
            .map(|s| SourceStatus { name: s.name(), kind: s.kind(), ready: s.ready() })
            .collect();
        sources.sort_by(|a, b| a.name.cmp(b.name));
        let mut targets: Vec<TargetStatus<'a>> =
            pipeline.targets().map(|t| TargetStatus { name: t.name(), kind: t.kind() }).collect();
        targets.sort_by(|a, b| a.name.cmp(b.name));
        let config = broker.config();
        Self {
            version: env!("CARGO_PKG_VERSION"),
            config: ConfigStatus { path: &config.path, version: &config.version },
            issuer: IssuerStatus { url: broker.issuer().url() },
            mappings: MappingsStatus {
                version: mappings.version().to_string(),
                rules: mappings.rule_count(),
                files: mappings.file_count(),
                dir: broker.reloader().dir(),
                reload: broker.reloader().status(),
            },
            sources,
            targets,
            audit: AuditStatus { store: broker.audit_store().map(|s| s.backend().as_str()) },
        }
    }
}
