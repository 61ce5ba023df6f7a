//! The admin listener: operator endpoints, served apart from the public listener; on
//! loopback only unless `admin.auth` is set. Authentication wraps the whole admin app
//! (see [`super::admin_auth`]): a route registered in [`configure`] is covered by it with
//! nothing more to do, and its handler finds the caller as an
//! [`AdminCaller`](super::admin_auth::AdminCaller) in the request's extensions.
//!
//! - `POST /v1/explain`: why an identity, or the holder of a subject token, gets which
//!   decision for an audience and scope (see [`crate::explain`]).
//! - `POST /v1/reload`: reload the mapping directory now; the result in the body.
//! - `GET /v1/status`: versions, paths, the mapping set and its last reload error,
//!   sources and targets, the audit store ([`Status`]).
//! - `GET /metrics`: Prometheus metrics, as on the metrics listener.
//! - `GET /v1/workloads`: the workload directory (`source`, `identity`, `seen_since`,
//!   `limit`).
//! - `GET /v1/audit`: audit events, newest first (`since`, `until`, `identity`, `target`,
//!   `source`, `decision`, `issued_token` (a fingerprint), `limit`, `cursor`).
//! - `POST /v1/revocations`, `GET /v1/revocations` (`removed=true`: removed ones too),
//!   `DELETE /v1/revocations/{id}`: revocations ([`crate::revocation`]), kept in the audit
//!   store; the author is the admin caller. `GET /v1/revocations/{id}/issued`: what the
//!   revocation names that is still valid, and what can take it back.
//! - `POST /v1/signals/events`: Security Event Tokens pushed by SSF transmitters (RFC
//!   8935; see [`super::signals`]).
//! - `GET /openapi.json`: the OpenAPI document of every listener ([`super::OPENAPI`]).
//!
//! The operator console's pages (`/ui/`, [`crate::console`]) are registered on the same
//! app, behind the same `Host` check and authentication; they answer HTML and are not in
//! the OpenAPI document.
//!
//! Answers are JSON. Errors are `{"error": <code>, "message": <detail>}`: this API is
//! for operators, so details are not withheld as they are from workloads.

use std::path::Path;
use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use tessera_adapters::oauth::token_type;
use tessera_adapters::{Secret, SubjectToken, SubjectTokenType};

use crate::audit::store::{AuditStore, Cursor, EventQuery, WorkloadQuery};
use crate::broker::Broker;
use crate::explain::{self, ExplainRequest, Subject};
use crate::http::{Endpoint, Status};
use crate::mapping::{ReloadOutcome, parse_identity};

/// The admin listener's routes, all behind its `Host` check and authentication (but
/// `/healthz`).
pub static ADMIN: &[Endpoint] = &[
    Endpoint::new(Method::POST, "/v1/explain", |r| r.to(explain)),
    Endpoint::new(Method::POST, "/v1/reload", |r| r.to(reload)),
    Endpoint::new(Method::GET, "/v1/status", |r| r.to(status)),
    Endpoint::new(Method::GET, "/metrics", |r| r.to(super::metrics)),
    Endpoint::new(Method::GET, "/v1/workloads", |r| r.to(workloads)),
    Endpoint::new(Method::GET, "/v1/audit", |r| r.to(audit_events)),
    Endpoint::new(Method::POST, "/v1/revocations", |r| r.to(super::revoke::add)),
    Endpoint::new(Method::GET, "/v1/revocations", |r| r.to(super::revoke::list)),
    Endpoint::new(Method::DELETE, "/v1/revocations/{id}", |r| r.to(super::revoke::remove)),
    Endpoint::new(Method::GET, "/v1/revocations/{id}/issued", |r| r.to(super::revoke::issued)),
    Endpoint::new(Method::POST, super::signals::PUSH_PATH, |r| r.to(super::signals::push)),
    Endpoint::new(Method::GET, "/openapi.json", |r| r.to(openapi)),
    Endpoint::new(Method::GET, "/healthz", |r| r.to(super::healthz)),
];

/// Register the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // A query string or JSON body that does not parse gets this API's JSON error, not
    // actix's text.
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| as_json_error(e)));
    super::register(cfg, ADMIN);
}

/// The body extractor's refusal (malformed JSON, wrong content type, over the limit) as
/// this API's JSON error, with the status actix chose (400, or 413 over the limit).
pub(crate) fn json_error(
    e: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    as_json_error(e)
}

fn as_json_error(e: impl actix_web::ResponseError + 'static) -> actix_web::Error {
    let body = HttpResponse::build(e.status_code())
        .json(json!({ "error": "invalid_request", "message": e.to_string() }));
    actix_web::error::InternalError::from_response(e, body).into()
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(super::OPENAPI)
}

pub(super) fn bad_request(error: &str, message: impl Into<String>) -> HttpResponse {
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
    /// The actor of a delegated request, written like `identity`.
    #[serde(default)]
    actor: Option<serde_json::Value>,
    audience: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_addr: Option<String>,
    /// Seconds since the epoch, or RFC 3339; default the broker's clock.
    #[serde(default)]
    now: Option<serde_json::Value>,
}

/// Who to explain for: an identity as written in a test case (YAML or JSON), or a subject
/// token of `token_type` (default a JWT). Exactly one must be given. The error is the
/// admin API's code and message. Shared with the console's explain page.
pub(crate) fn explain_subject(
    broker: &Broker,
    identity: Option<&str>,
    token: Option<String>,
    token_type: Option<&str>,
) -> Result<Subject, (&'static str, String)> {
    match (identity, token) {
        (Some(identity), None) => match parse_identity(Path::new("identity"), identity) {
            Ok(identity) => Ok(Subject::Identity(Box::new(identity))),
            Err(e) => Err(("invalid_identity", e.to_string())),
        },
        (None, Some(token)) => {
            if token.len() > broker.limits().max_token_bytes {
                return Err(("invalid_request", "subject_token is over the size limit".into()));
            }
            let uri = token_type.unwrap_or(token_type::JWT);
            let Some(token_type) = SubjectTokenType::from_uri(uri) else {
                return Err(("invalid_request", format!("unsupported subject_token_type `{uri}`")));
            };
            Ok(Subject::Token(SubjectToken { token_type, value: Secret::new(token) }))
        }
        _ => Err(("invalid_request", "give either `identity` or `subject_token`".into())),
    }
}

async fn explain(broker: web::Data<Arc<Broker>>, body: web::Json<ExplainBody>) -> HttpResponse {
    let body = body.into_inner();
    let identity = body.identity.map(|i| i.to_string());
    let subject = match explain_subject(
        &broker,
        identity.as_deref(),
        body.subject_token,
        body.subject_token_type.as_deref(),
    ) {
        Ok(subject) => subject,
        Err((error, message)) => return bad_request(error, message),
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
    let actor = match body.actor.map(|a| a.to_string()) {
        None => None,
        Some(text) => match parse_identity(Path::new("actor"), &text) {
            Ok(actor) => Some(actor),
            Err(e) => return bad_request("invalid_identity", e.to_string()),
        },
    };
    let request = ExplainRequest {
        subject,
        actor,
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
    HttpResponse::Ok().json(Status::of(&broker))
}

/// Default page size of `/v1/workloads` and `/v1/audit`.
const DEFAULT_PAGE: u32 = 100;

pub(super) fn store(broker: &Broker) -> Result<&AuditStore, HttpResponse> {
    broker.audit_store().ok_or_else(|| {
        HttpResponse::NotFound().json(json!({
            "error": "no_audit_store",
            "message": "this broker keeps no audit store (audit.store.enabled is false)",
        }))
    })
}

pub(super) fn store_failed(e: &crate::audit::store::StoreError) -> HttpResponse {
    tracing::error!(error = %e, "audit store query failed");
    HttpResponse::ServiceUnavailable().json(json!({ "error": "store_unavailable", "message": e.to_string() }))
}

/// An instant in a query string: RFC 3339, or seconds since the epoch; in milliseconds.
fn instant_ms(name: &str, value: Option<&str>) -> Result<Option<i64>, HttpResponse> {
    let Some(value) = value else { return Ok(None) };
    if let Ok(seconds) = value.parse::<i64>() {
        return Ok(Some(seconds.saturating_mul(1000)));
    }
    chrono::DateTime::parse_from_rfc3339(value).map(|t| Some(t.timestamp_millis())).map_err(|_| {
        bad_request("invalid_request", format!("`{name}` must be RFC 3339 or seconds since the epoch"))
    })
}

fn page_limit(limit: Option<u32>) -> Result<u32, HttpResponse> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=crate::audit::store::MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(bad_request(
            "invalid_request",
            format!("`limit` must be between 1 and {}", crate::audit::store::MAX_PAGE),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadParams {
    source: Option<String>,
    identity: Option<String>,
    seen_since: Option<String>,
    limit: Option<u32>,
}

impl WorkloadParams {
    fn query(self) -> Result<WorkloadQuery, HttpResponse> {
        Ok(WorkloadQuery {
            source: self.source,
            identity: self.identity,
            seen_since_ms: instant_ms("seen_since", self.seen_since.as_deref())?,
            limit: page_limit(self.limit)?,
            ..WorkloadQuery::default()
        })
    }
}

async fn workloads(broker: web::Data<Arc<Broker>>, params: web::Query<WorkloadParams>) -> HttpResponse {
    let (store, query) = match (store(broker.get_ref()), params.into_inner().query()) {
        (Ok(store), Ok(query)) => (store, query),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    match store.workloads(&query).await {
        Ok(workloads) => HttpResponse::Ok().json(json!({ "workloads": workloads })),
        Err(e) => store_failed(&e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    since: Option<String>,
    until: Option<String>,
    identity: Option<String>,
    target: Option<String>,
    source: Option<String>,
    decision: Option<String>,
    issued_token: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl AuditParams {
    fn query(self) -> Result<EventQuery, HttpResponse> {
        if let Some(d) = self.decision.as_deref()
            && !matches!(d, "allow" | "deny" | "error")
        {
            return Err(bad_request("invalid_request", "`decision` must be allow, deny or error"));
        }
        let cursor = self
            .cursor
            .as_deref()
            .map(str::parse::<Cursor>)
            .transpose()
            .map_err(|e| bad_request("invalid_request", e))?;
        Ok(EventQuery {
            since_ms: instant_ms("since", self.since.as_deref())?,
            until_ms: instant_ms("until", self.until.as_deref())?,
            identity: self.identity,
            target: self.target,
            source: self.source,
            decision: self.decision,
            issued_token_fingerprint: self.issued_token,
            limit: page_limit(self.limit)?,
            cursor,
        })
    }
}

async fn audit_events(broker: web::Data<Arc<Broker>>, params: web::Query<AuditParams>) -> HttpResponse {
    let (store, query) = match (store(broker.get_ref()), params.into_inner().query()) {
        (Ok(store), Ok(query)) => (store, query),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    match store.events(&query).await {
        Ok(page) => HttpResponse::Ok().json(page),
        Err(e) => store_failed(&e),
    }
}
