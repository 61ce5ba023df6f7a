//! The HTTP edge: actix-web routes, request limits, and the one mapping from errors to
//! RFC 6749 §5.2 bodies. Nothing else in the broker knows a wire format. [`admin`] holds
//! the admin listener's routes, [`admin_auth`] its authentication, [`host`] its `Host` check
//! against DNS rebinding; [`server`] serves the
//! public, admin and metrics listeners.
//!
//! The public listener is what workloads and clouds must reach, so nothing on it reveals
//! configuration: its `/v1/status` says only the version, readiness and whether a mapping
//! reload failed. The full status and `/metrics` are the admin listener's.

pub mod admin;
pub mod admin_auth;
mod error;
pub mod host;
pub mod server;
mod token;

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::broker::Broker;

pub use error::{ErrorBody, WireError};
pub use server::{PublicStatus, Status};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use token::fuzz_token_request;

/// Register every public route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/token", web::post().to(token::exchange))
        .route("/v1/token", web::to(method_not_allowed))
        .route("/.well-known/openid-configuration", web::get().to(discovery))
        .route("/.well-known/jwks.json", web::get().to(jwks))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/v1/status", web::get().to(public_status));
}

/// `GET /metrics`, on the admin listener and the metrics listener.
pub(crate) async fn metrics(broker: web::Data<Arc<Broker>>) -> HttpResponse {
    broker.metrics().refresh_ages(broker.clock().now());
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

/// Issuer metadata may be cached briefly: a key is published long before it signs.
fn metadata(body: Arc<[u8]>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(body.to_vec())
}

async fn healthz() -> HttpResponse {
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
