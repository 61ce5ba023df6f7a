//! The quickstart's demo issuer: a local OIDC issuer on loopback so Tessera can be tried
//! with no cloud account. It serves discovery, a JWKS, and `POST /token`, which mints a
//! short-lived RS256 token for any subject. It exists only when `demo_issuer:` is set,
//! binds loopback only (the config refuses anything else) and must never run in
//! production: anyone who can reach it can mint tokens it vouches for.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Map, Value, json};
use tessera_adapters::target::SigningAlgorithm;
use tessera_adapters::{Clock, Signer};

use crate::broker::StartError;
use crate::config::LoadedConfig;
use crate::issuer::{Issuer, IssuerConfig, IssuerError};

/// The longest token the demo issuer mints, in seconds.
const MAX_TTL: i64 = 3600;
const DEFAULT_TTL: i64 = 600;
/// Claims the caller cannot set: the issuer sets them.
const RESERVED: &[&str] = &["iss", "aud", "exp", "iat", "nbf", "jti", "ttl", "sub"];

/// A running demo issuer.
#[derive(Debug)]
pub struct DemoIssuer {
    handle: ServerHandle,
    url: String,
}

impl DemoIssuer {
    /// `http://<listen>`: the `iss` of its tokens.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// Start the demo issuer `config` asks for, if any: open (creating on first use) its
/// RS256 key and serve it on its loopback address. Call before [`crate::Broker::build`].
pub fn start(config: &LoadedConfig, clock: Arc<dyn Clock>) -> Result<Option<DemoIssuer>, StartError> {
    let Some(demo) = config.config.demo_issuer() else {
        return Ok(None);
    };
    let url = format!("http://{}", demo.listen);
    let issuer = open_issuer(&url, &demo.key_dir, &config.base_dir, Arc::clone(&clock))?;
    let listener = TcpListener::bind(demo.listen)
        .map_err(|e| StartError::Http(format!("demo issuer cannot listen on {}: {e}", demo.listen)))?;
    let handle = serve(listener, issuer, clock).map_err(|e| StartError::Http(e.to_string()))?;
    tracing::warn!(url = %url, "demo issuer running: it mints tokens for anyone who asks; never use it in production");
    Ok(Some(DemoIssuer { handle, url }))
}

/// Open (creating on first use) the demo issuer's RS256 key in `key_dir`.
fn open_issuer(
    url: &str,
    key_dir: &Path,
    base_dir: &Path,
    clock: Arc<dyn Clock>,
) -> Result<Arc<Issuer>, IssuerError> {
    let config: IssuerConfig = serde_json::from_value(json!({
        "url": url,
        "key_dir": key_dir,
        "algorithms": ["RS256"],
    }))
    .map_err(|e| IssuerError::Config(e.to_string()))?;
    Issuer::open(&config, base_dir, clock)
}

struct DemoState {
    issuer: Arc<Issuer>,
    clock: Arc<dyn Clock>,
}

/// Serve the demo issuer on `listener`; returns the server's handle.
fn serve(listener: TcpListener, issuer: Arc<Issuer>, clock: Arc<dyn Clock>) -> std::io::Result<ServerHandle> {
    let state = web::Data::new(DemoState { issuer, clock });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/.well-known/openid-configuration", web::get().to(discovery))
            .route("/.well-known/jwks.json", web::get().to(jwks))
            .route("/token", web::post().to(mint))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

async fn discovery(state: web::Data<DemoState>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(state.issuer.discovery_json().to_vec())
}

async fn jwks(state: web::Data<DemoState>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(state.issuer.jwks_json().to_vec())
}

/// `POST /token` with form fields `sub` (default `demo-workload`), `aud` (default
/// `tessera`), `ttl` in seconds (default 600, at most 3600); any other field becomes a
/// string claim (`-d team=payments`). Answers the token as text.
async fn mint(state: web::Data<DemoState>, form: web::Form<BTreeMap<String, String>>) -> HttpResponse {
    let form = form.into_inner();
    let ttl = match form.get("ttl").map(|t| t.parse::<i64>()) {
        None => DEFAULT_TTL,
        Some(Ok(t)) if (1..=MAX_TTL).contains(&t) => t,
        Some(_) => return HttpResponse::BadRequest().body(format!("ttl must be 1..={MAX_TTL} seconds\n")),
    };
    let now = state.clock.now();
    let mut claims = Map::new();
    claims.insert("iss".into(), Value::from(state.issuer.url()));
    claims.insert("sub".into(), Value::from(form.get("sub").map_or("demo-workload", String::as_str)));
    claims.insert("aud".into(), Value::from(form.get("aud").map_or("tessera", String::as_str)));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("nbf".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + ttl));
    claims.insert("jti".into(), Value::from(uuid::Uuid::new_v4().to_string()));
    for (k, v) in form.iter().filter(|(k, _)| !RESERVED.contains(&k.as_str())) {
        claims.insert(k.clone(), Value::from(v.as_str()));
    }
    match state.issuer.sign(SigningAlgorithm::Rs256, &claims) {
        Ok(token) => HttpResponse::Ok().content_type("text/plain").body(format!("{}\n", token.expose())),
        Err(e) => HttpResponse::InternalServerError().body(format!("{e}\n")),
    }
}
