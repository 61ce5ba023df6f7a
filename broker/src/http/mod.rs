//! The HTTP edge: actix-web routes, request limits, and the one mapping from errors to
//! RFC 6749 §5.2 bodies. Nothing else in the broker knows a wire format. [`admin`] holds
//! the admin listener's routes, [`admin_auth`] its authentication, [`host`] its `Host` check
//! against DNS rebinding; [`drain`] reads what a handler left of a request body so the
//! connection stays usable; [`server`] serves the public, admin and metrics listeners.
//!
//! Each listener's routes are one table of [`Endpoint`]s ([`PUBLIC`], [`admin::ADMIN`],
//! [`METRICS`]): the servers register exactly these, and a test holds the OpenAPI document
//! ([`OPENAPI`], served at `GET /openapi.json` on the admin listener) to them.
//!
//! The public listener is what workloads and clouds must reach, so nothing on it reveals
//! configuration: its `/v1/status` says only the version, readiness and whether a mapping
//! reload failed. The full status and `/metrics` are the admin listener's.

pub mod admin;
pub mod admin_auth;
pub mod drain;
pub(crate) mod error;
pub mod host;
pub mod introspect;
mod revoke;
pub mod server;
mod signals;
mod token;
mod watch;

use std::sync::Arc;

use actix_web::http::{Method, header};
use actix_web::{HttpResponse, Route, web};
use serde_json::json;

use crate::broker::Broker;

pub use error::{ErrorBody, WireError};
pub use server::{PublicStatus, Status};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use token::fuzz_token_request;

/// The OpenAPI 3.1 description of the public, admin and metrics listeners
/// (`docs/openapi.json`). Each operation is tagged with the listeners that serve it.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// One route a listener serves. The method lives here once: the route is built from it, and
/// the OpenAPI test reads it.
#[derive(Debug)]
pub struct Endpoint {
    /// `None`: any method the routes before it on the same path did not take (a 405 answer,
    /// not an operation of its own).
    pub method: Option<Method>,
    pub path: &'static str,
    handler: fn(Route) -> Route,
}

impl Endpoint {
    pub(crate) const fn new(method: Method, path: &'static str, handler: fn(Route) -> Route) -> Self {
        Self { method: Some(method), path, handler }
    }

    fn route(&self) -> Route {
        let route = match &self.method {
            Some(method) => web::method(method.clone()),
            None => web::route(),
        };
        (self.handler)(route)
    }
}

/// Register `endpoints`, in order, on a listener's app.
pub(crate) fn register(cfg: &mut web::ServiceConfig, endpoints: &[Endpoint]) {
    for endpoint in endpoints {
        cfg.route(endpoint.path, endpoint.route());
    }
}

/// Where the public listener serves the SPIFFE bundle of the trust domain the `spiffe`
/// targets issue JWT-SVIDs in.
pub const SPIFFE_BUNDLE_PATH: &str = "/v1/spiffe/bundle";

/// The public listener's routes: what workloads and clouds must reach.
pub static PUBLIC: &[Endpoint] = &[
    Endpoint::new(Method::POST, "/v1/token", |r| r.to(token::exchange)),
    Endpoint { method: None, path: "/v1/token", handler: |r| r.to(method_not_allowed) },
    Endpoint::new(Method::POST, "/v1/introspect", |r| r.to(introspect::introspect)),
    Endpoint { method: None, path: "/v1/introspect", handler: |r| r.to(method_not_allowed) },
    Endpoint::new(Method::POST, "/v1/revocations/watch", |r| r.to(watch::watch)),
    Endpoint { method: None, path: "/v1/revocations/watch", handler: |r| r.to(method_not_allowed) },
    Endpoint::new(Method::GET, "/.well-known/openid-configuration", |r| r.to(discovery)),
    Endpoint::new(Method::GET, "/.well-known/jwks.json", |r| r.to(jwks)),
    Endpoint::new(Method::GET, SPIFFE_BUNDLE_PATH, |r| r.to(spiffe_bundle)),
    Endpoint::new(Method::GET, "/healthz", |r| r.to(healthz)),
    Endpoint::new(Method::GET, "/readyz", |r| r.to(readyz)),
    Endpoint::new(Method::GET, "/v1/status", |r| r.to(public_status)),
];

/// The metrics listener's one route, for Prometheus.
pub static METRICS: &[Endpoint] = &[Endpoint::new(Method::GET, "/metrics", |r| r.to(metrics))];

/// Register every public route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    register(cfg, PUBLIC);
}

/// `GET /metrics`, on the admin listener and the metrics listener.
pub(crate) async fn metrics(broker: web::Data<Arc<Broker>>) -> HttpResponse {
    broker.metrics().refresh_ages(broker.clock().now());
    broker.metrics().set_revocation_watches_open(broker.watches().open());
    match broker.metrics().encode() {
        Ok(text) => HttpResponse::Ok().content_type(crate::metrics::CONTENT_TYPE).body(text),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "POST"))
        .json(ErrorBody::fixed(WireError::MethodNotAllowed))
}

async fn discovery(broker: web::Data<Arc<Broker>>) -> HttpResponse {
    metadata(broker.issuer().discovery_json())
}

async fn jwks(broker: web::Data<Arc<Broker>>) -> HttpResponse {
    metadata(broker.issuer().jwks_json())
}

/// SPIFFE Trust Domain and Bundle §5: the bundle endpoint (`https_web` profile). Not found
/// when no `spiffe` target is configured.
async fn spiffe_bundle(broker: web::Data<Arc<Broker>>) -> HttpResponse {
    let Some((body, refresh_hint)) = broker.spiffe_bundle() else {
        return HttpResponse::NotFound().json(json!({ "error": "not_found" }));
    };
    // Caches must not hold it longer than consumers are told to wait before refreshing.
    let max_age = refresh_hint.as_secs().min(300);
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, format!("public, max-age={max_age}")))
        .body(body)
}

/// Issuer metadata may be cached briefly: a key is published long before it signs.
fn metadata(body: Arc<[u8]>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(body.to_vec())
}

pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(broker: web::Data<Arc<Broker>>) -> HttpResponse {
    if broker.ready() {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({ "status": "not ready" }))
    }
}

async fn public_status(broker: web::Data<Arc<Broker>>) -> HttpResponse {
    HttpResponse::Ok().json(PublicStatus::of(&broker))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

    /// `(listener tag, METHOD, path)` of every operation in the document.
    fn documented() -> BTreeSet<(String, String, String)> {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut operations = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item").iter() {
                if !METHODS.contains(&method.as_str()) {
                    continue;
                }
                let tags = operation["tags"].as_array().expect("every operation names its listeners");
                assert!(!tags.is_empty(), "{method} {path} names no listener");
                for tag in tags {
                    let tag = tag.as_str().expect("a tag").to_string();
                    operations.insert((tag, method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        operations
    }

    #[test]
    fn the_openapi_document_describes_exactly_the_routes_the_listeners_register() {
        let mut served = BTreeSet::new();
        for (listener, endpoints) in [("public", PUBLIC), ("admin", admin::ADMIN), ("metrics", METRICS)] {
            for endpoint in endpoints {
                match &endpoint.method {
                    Some(method) => {
                        let new = served.insert((
                            listener.to_string(),
                            method.to_string(),
                            endpoint.path.to_string(),
                        ));
                        assert!(new, "{listener} registers {method} {} twice", endpoint.path);
                    }
                    // A fallback answers the other methods of a documented path.
                    None => assert!(
                        endpoints.iter().any(|e| e.path == endpoint.path && e.method.is_some()),
                        "{listener}: a fallback on {} with no operation",
                        endpoint.path
                    ),
                }
            }
        }
        let documented = documented();
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(missing.is_empty(), "served but not in docs/openapi.json: {missing:?}");
        assert!(extra.is_empty(), "in docs/openapi.json but not served: {extra:?}");
        assert!(served.contains(&("admin".into(), "GET".into(), "/openapi.json".into())));
        assert!(!served.iter().any(|(l, _, p)| l == "public" && p == "/openapi.json"), "admin only");
    }
}
