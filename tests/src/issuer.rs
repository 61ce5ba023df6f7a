//! An OIDC issuer on loopback: discovery and JWKS over real HTTP, with fetch counters and
//! an outage switch, so tests see exactly what the broker fetched and when.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::fake::FakeServer;
use crate::keys::TestKey;

#[derive(Debug, Default)]
struct State {
    url: String,
    keys: Mutex<Vec<Arc<TestKey>>>,
    down: AtomicBool,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    other_requests: AtomicUsize,
}

/// A running test issuer. Dropping it stops the server.
#[derive(Debug)]
pub struct TestIssuer {
    state: Arc<State>,
    /// Stops the server when the issuer is dropped.
    _server: FakeServer,
}

impl TestIssuer {
    /// Start an issuer at `http://127.0.0.1:<port>` publishing `keys`.
    pub fn start(keys: Vec<TestKey>) -> Self {
        let keys = keys.into_iter().map(Arc::new).collect();
        let state = |url| State { url, keys: Mutex::new(keys), ..State::default() };
        let (state, server) = FakeServer::start(state, |routes| {
            routes
                .route("/.well-known/openid-configuration", web::get().to(discovery))
                .route("/jwks", web::get().to(jwks))
                .default_service(web::to(other));
        });
        Self { state, _server: server }
    }

    pub fn url(&self) -> &str {
        &self.state.url
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.state.url)
    }

    /// The key published at `index`.
    pub fn key(&self, index: usize) -> Arc<TestKey> {
        Arc::clone(&self.state.keys.lock().expect("lock")[index])
    }

    /// Publish another key (e.g. the issuer rotated).
    pub fn add_key(&self, key: TestKey) -> Arc<TestKey> {
        let key = Arc::new(key);
        self.state.keys.lock().expect("lock").push(Arc::clone(&key));
        key
    }

    /// Make every endpoint answer 503 (`true`) or serve again (`false`).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Requests to any path other than discovery and the JWKS (e.g. a `jku` the broker
    /// should never have fetched).
    pub fn other_requests(&self) -> usize {
        self.state.other_requests.load(Ordering::SeqCst)
    }

    /// Standard claims for a token from this issuer, valid for 5 minutes from `now`.
    pub fn claims(&self, sub: &str, aud: &str, now: i64) -> Value {
        json!({
            "iss": self.state.url,
            "sub": sub,
            "aud": aud,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid::Uuid::new_v4().to_string(),
        })
    }
}

async fn discovery(state: web::Data<State>) -> HttpResponse {
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok().json(json!({
        "issuer": state.url,
        "jwks_uri": format!("{}/jwks", state.url),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
}

async fn jwks(state: web::Data<State>) -> HttpResponse {
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = state.keys.lock().expect("lock").iter().map(|k| k.jwk()).collect();
    HttpResponse::Ok().json(json!({ "keys": keys }))
}

async fn other(state: web::Data<State>) -> HttpResponse {
    state.other_requests.fetch_add(1, Ordering::SeqCst);
    HttpResponse::NotFound().finish()
}
