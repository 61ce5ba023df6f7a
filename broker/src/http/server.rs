//! Serving a built [`Broker`]: the public listener, the admin and metrics listeners, the
//! background tasks that keep keys and rules current while they serve, a graceful stop,
//! and the `/v1/status` bodies.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_http::HttpService;
use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Extensions, Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::rt::net::TcpStream;
use actix_web::{App, HttpServer, web};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::http;
use crate::mapping::{ReloadStatus, RuleSlot, WatchOptions};

/// The sockets a broker serves on: the public listener, and the admin and metrics
/// listeners if it has them.
#[derive(Debug)]
pub struct Listeners {
    pub public: TcpListener,
    pub admin: Option<TcpListener>,
    pub metrics: Option<TcpListener>,
}

/// Serve `broker` on `listener` until `shutdown` resolves, then drain gracefully. Binds
/// the admin and metrics listeners if the config has them. Starts the signing-key
/// reloader and the mapping directory watcher (which also reloads on `SIGHUP`).
pub async fn run(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = &broker.config().config;
    let admin = config.admin().map(|a| bind(a.listen, "admin")).transpose()?;
    let metrics = config.metrics().map(|m| bind(m.listen, "metrics")).transpose()?;
    run_on(broker, Listeners { public: listener, admin, metrics }, shutdown).await
}

fn bind(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}")))
}

/// [`run`], on listeners already bound (tests bind `127.0.0.1:0`): the admin and metrics
/// listeners given, whatever the config says.
pub async fn run_on(
    broker: Arc<Broker>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let watcher = start_background(&broker);
    let poller = crate::revocation::spawn_poller(Arc::clone(&broker));
    let subscriber = crate::revocation::spawn_subscriber(Arc::clone(&broker));
    let signal_pollers = crate::revocation::ssf_receive::spawn_pollers(&broker);
    let server = public_server(&broker, listeners.public)?;
    let mut others = Vec::new();
    if let Some(listener) = listeners.admin {
        others.push(("admin API", admin_server(&broker, listener)?));
    }
    if let Some(listener) = listeners.metrics {
        others.push(("metrics listener", metrics_server(&broker, listener)?));
    }
    stop_on(Arc::clone(&broker), shutdown, &server, others.iter().map(|(_, s)| s.handle()).collect());
    let others: Vec<_> = others.into_iter().map(|(what, s)| (what, tokio::spawn(s))).collect();
    let result = server.await;
    watcher.abort();
    for task in poller.into_iter().chain(subscriber) {
        task.abort();
    }
    for poller in signal_pollers {
        poller.abort();
    }
    for (what, task) in others {
        match task.await {
            Ok(Err(e)) => tracing::error!(error = %e, "{what} failed"),
            Err(e) => tracing::error!(error = %e, "{what} task failed"),
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
            .wrap(actix_web::middleware::from_fn(http::drain::read_rest))
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
    // One set of console sessions for every worker of the listener.
    let sessions = web::Data::new(crate::console::Sessions::new(Arc::clone(broker.clock()), tls.is_some()));
    let app = move || admin_app(Arc::clone(&shared), web::Data::clone(&sessions), limit);
    Ok(match tls {
        Some(tls) => admin_tls_server(app, listener, (*tls).clone())?,
        None => HttpServer::new(app).workers(1).disable_signals().shutdown_timeout(5).listen(listener)?.run(),
    })
}

/// The admin app. The authentication middleware wraps the whole app, so every admin
/// route, whoever registers it in `configure`, is behind it; the `Host` check is outside
/// it and runs first; outermost, what a refusal left of the body is read (see
/// [`http::drain`]).
fn admin_app(
    broker: Arc<Broker>,
    sessions: web::Data<crate::console::Sessions>,
    limit: usize,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let auth = broker.admin_auth().cloned();
    App::new()
        .wrap(actix_web::middleware::from_fn(move |req, next| {
            http::admin_auth::authenticate(auth.clone(), req, next)
        }))
        .wrap(actix_web::middleware::from_fn(http::host::check_host))
        .wrap(actix_web::middleware::from_fn(http::drain::read_rest))
        .app_data(web::Data::new(broker))
        .app_data(sessions)
        .app_data(web::PayloadConfig::new(limit))
        .app_data(web::JsonConfig::default().limit(limit).error_handler(http::admin::json_error))
        .configure(http::admin::configure)
        .configure(crate::console::configure)
}

/// The admin listener over TLS: `app` on HTTP/1.1 with the timeouts `HttpServer` uses, the
/// client certificate read as each connection opens. actix-web's own TLS listener would
/// bring its HTTP/2 stack, and the `h2` crate with it, into the broker; no listener of
/// Tessera's needs HTTP/2, so none serves it (the TLS config offers only `http/1.1`).
fn admin_tls_server<F, T, B>(
    app: F,
    listener: TcpListener,
    tls: rustls::ServerConfig,
) -> std::io::Result<Server>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    let server = actix_server::Server::build().workers(1).disable_signals().shutdown_timeout(5).listen(
        "tessera-admin-tls",
        listener,
        move || {
            // Nothing in the admin app reads the app config (no URL generation; `Host` is
            // checked from the request's own headers), so the default one serves.
            let app = actix_service::map_config(app(), |()| AppConfig::default());
            HttpService::build()
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .on_connect_ext(|io: &TlsStream<TcpStream>, extensions: &mut Extensions| {
                    http::admin_auth::client_certificate(io, extensions);
                })
                .h1(app)
                .rustls_0_23(tls.clone())
        },
    )?;
    Ok(server.run())
}

/// The metrics listener: `GET /metrics` and nothing else, for Prometheus.
fn metrics_server(broker: &Arc<Broker>, listener: TcpListener) -> std::io::Result<Server> {
    let shared = Arc::clone(broker);
    tracing::info!(listen = %listener.local_addr()?, "metrics serving");
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(Arc::clone(&shared)))
            .configure(|cfg| http::register(cfg, http::METRICS))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run())
}

/// When `shutdown` resolves, drain every listener at once: stopping them one after the
/// other added their drain timeouts up, and a broker with a slow admin client took longer
/// to stop than its public listener's own timeout. Revocation watches held open are
/// answered first, so they do not hold the drain up.
fn stop_on(
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    public: &Server,
    mut others: Vec<actix_web::dev::ServerHandle>,
) {
    others.push(public.handle());
    tokio::spawn(async move {
        shutdown.await;
        broker.watches().stop();
        futures::future::join_all(others.iter().map(|handle| handle.stop(true))).await;
    });
}

/// The body of the public listener's `GET /v1/status`: what anyone who reaches the
/// listener may know. Nothing in it describes the configuration.
#[derive(Debug, Serialize)]
pub struct PublicStatus {
    version: &'static str,
    /// As `GET /readyz` says.
    ready: bool,
    /// Whether the mapping files on disk were refused and older rules serve.
    reload_failed: bool,
}

impl PublicStatus {
    pub fn of(broker: &Broker) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            ready: broker.ready(),
            reload_failed: broker.reloader().status().last_reload_error.is_some(),
        }
    }
}

/// The body of the admin listener's `GET /v1/status`: versions, paths, the mapping set and
/// its reloads, the sources (with whether their key sets are fetched) and targets, the
/// audit store.
#[derive(Debug, Serialize)]
pub struct Status<'a> {
    version: &'static str,
    build: BuildStatus,
    config: ConfigStatus<'a>,
    issuer: IssuerStatus<'a>,
    mappings: MappingsStatus<'a>,
    sources: Vec<SourceStatus<'a>>,
    targets: Vec<TargetStatus<'a>>,
    audit: AuditStatus,
}

/// The commit the binary was built from and the build date (`tessera --version`).
#[derive(Debug, Serialize)]
struct BuildStatus {
    commit: &'static str,
    date: &'static str,
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
            build: BuildStatus { commit: env!("TESSERA_COMMIT"), date: env!("TESSERA_BUILD_DATE") },
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
