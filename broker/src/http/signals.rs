//! `POST /v1/signals/events` on the admin listener: Security Event Tokens pushed by the
//! transmitters `signals.receive` names (RFC 8935). Transmitters reach the admin listener
//! as any operator client does: from loopback, or with the admin credential (bearer JWT or
//! client certificate) when `admin.auth` is set; the SET's own signature is what
//! authenticates its content.
//!
//! The body is the SET itself, `Content-Type: application/secevent+jwt`, at most
//! `signals.max_set_bytes`. Answers: `202 Accepted` with no body once taken (revocations
//! made, unknown events recorded); `400` with `{"err", "description"}` (RFC 8935 §2.3, the
//! codes of [`set_error_code`]) when refused; `503` with `Retry-After` when Tessera cannot
//! take it now (the transmitter's keys or the store unreachable), for the transmitter to
//! deliver again.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt as _;
use serde_json::json;

use super::error::set_error_code;
use crate::broker::Broker;
use crate::revocation::ssf::SET_TYP;
use crate::revocation::ssf_receive::ReceiveError;

/// Where transmitters push.
pub const PUSH_PATH: &str = "/v1/signals/events";

/// RFC 8935 §2.3: `400` with the error code and a description.
fn refused(err: &str, description: impl Into<String>) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "err": err, "description": description.into() }))
}

pub(super) async fn push(
    broker: web::Data<Arc<Broker>>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let Some(receiver) = broker.signals().map(|s| s.receiver()).filter(|r| r.is_configured()) else {
        return refused(
            "access_denied",
            "this broker receives no security events (signals.receive is empty)",
        );
    };
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if !media.eq_ignore_ascii_case(&format!("application/{SET_TYP}")) {
        return refused("invalid_request", "Content-Type must be application/secevent+jwt");
    }
    let limit = receiver.max_set_bytes();
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return refused("invalid_request", "the request body could not be read");
        };
        if body.len().saturating_add(chunk.len()) > limit {
            return refused("invalid_request", format!("the SET is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let Ok(token) = std::str::from_utf8(&body) else {
        return refused("invalid_request", "the body is not a compact JWS");
    };
    match receiver.receive(&broker, token.trim_ascii()).await {
        Ok(_) => HttpResponse::Accepted().finish(),
        Err(ReceiveError::Refused(e)) => refused(set_error_code(&e), e.to_string()),
        Err(ReceiveError::Unavailable(_)) => HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .json(json!({ "error": "temporarily_unavailable", "message": "the security event could not be taken now; deliver it again" })),
    }
}
