//! The admin listener: operator endpoints, served apart from the public listener; on
//! loopback only unless `admin.auth` is set. Authentication wraps the whole admin app
//! (see [`super::admin_auth`]): a route registered in [`configure`] is covered by it with
//! nothing more to do, and its handler finds the caller as an
//! [`AdminCaller`](super::admin_auth::AdminCaller) in the request's extensions.
//!
//! - `POST /v1/explain`: why an identity, or the holder of a subject token, gets which
//!   decision for an audience and scope (see [`crate::explain`]).
//! - `POST /v1/reload`: reload the mapping directory now; the result in the body.
//! - `GET /v1/status`: as on the public listener.
//!
//! Answers are JSON. Errors are `{"error": <code>, "message": <detail>}`: this API is
//! for operators, so details are not withheld as they are from workloads.

use std::path::Path;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use tessera_adapters::{Secret, SubjectToken, SubjectTokenType};

use crate::Broker;
use crate::explain::{self, ExplainRequest, Subject};
use crate::mapping::{ReloadOutcome, parse_identity};

/// Register the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/explain", web::post().to(explain))
        .route("/v1/reload", web::post().to(reload))
        .route("/v1/status", web::get().to(status))
        .route("/healthz", web::get().to(|| async { HttpResponse::Ok().json(json!({ "status": "ok" })) }));
}

fn bad_request(error: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": error, "message": message.into() }))
}

/// The body of `POST /v1/explain`: an `identity` (as in a mapping test case) or a
/// `subject_token` with its `subject_token_type`, and the request to explain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainBody {
    #[serde(default)]
    identity: Option<serde_json::Value>,
    #[serde(default)]
    subject_token: Option<String>,
    #[serde(default)]
    subject_token_type: Option<String>,
    audience: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_addr: Option<String>,
    /// Seconds since the epoch, or RFC 3339; default the broker's clock.
    #[serde(default)]
    now: Option<serde_json::Value>,
}

async fn explain(broker: web::Data<Arc<Broker>>, body: web::Json<ExplainBody>) -> HttpResponse {
    let body = body.into_inner();
    let subject = match (body.identity, body.subject_token) {
        (Some(identity), None) => match parse_identity(Path::new("identity"), &identity.to_string()) {
            Ok(identity) => Subject::Identity(Box::new(identity)),
            Err(e) => return bad_request("invalid_identity", e.to_string()),
        },
        (None, Some(token)) => {
            if token.len() > broker.limits().max_token_bytes {
                return bad_request("invalid_request", "subject_token is over the size limit");
            }
            let uri = body.subject_token_type.as_deref().unwrap_or(SubjectTokenType::JWT_URI);
            let Some(token_type) = SubjectTokenType::from_uri(uri) else {
                return bad_request("invalid_request", format!("unsupported subject_token_type `{uri}`"));
            };
            Subject::Token(SubjectToken { token_type, value: Secret::new(token) })
        }
        _ => return bad_request("invalid_request", "give either `identity` or `subject_token`"),
    };
    let now = match body.now {
        None => broker.clock().now(),
        Some(serde_json::Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or_default(),
        Some(serde_json::Value::String(s)) => match chrono::DateTime::parse_from_rfc3339(&s) {
            Ok(t) => t.timestamp(),
            Err(_) => {
                return bad_request("invalid_request", "`now` must be RFC 3339 or seconds since the epoch");
            }
        },
        Some(_) => {
            return bad_request("invalid_request", "`now` must be RFC 3339 or seconds since the epoch");
        }
    };
    let request = ExplainRequest {
        subject,
        audience: body.audience,
        scope: body.scope.filter(|s| !s.is_empty()),
        client_addr: body.client_addr,
        now,
    };
    let mappings = broker.pipeline().mappings();
    match explain::explain(broker.pipeline().router(), &mappings, request).await {
        Ok(explanation) => HttpResponse::Ok().json(explanation),
        Err(explain::ExplainError::Source(e)) => HttpResponse::BadRequest().json(json!({
            "error": "subject_token_refused",
            "code": e.code(),
            "message": e.to_string(),
        })),
    }
}

async fn reload(broker: web::Data<Arc<Broker>>) -> HttpResponse {
    let broker = broker.get_ref();
    match broker.reload_mappings(true).await {
        ReloadOutcome::Unchanged => HttpResponse::Ok().json(json!({ "result": "unchanged" })),
        ReloadOutcome::StillInvalid => HttpResponse::Ok().json(json!({ "result": "unchanged" })),
        ReloadOutcome::Reloaded { version, rules } => {
            HttpResponse::Ok().json(json!({ "result": "reloaded", "version": version, "rules": rules }))
        }
        ReloadOutcome::Refused(errors) => HttpResponse::UnprocessableEntity().json(json!({
            "result": "refused",
            "errors": errors.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })),
    }
}

async fn status(broker: web::Data<Arc<Broker>>) -> HttpResponse {
    HttpResponse::Ok().json(broker.status())
}
