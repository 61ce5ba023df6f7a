//! The admin listener's `Host` check, against DNS rebinding: a web page that rebinds its
//! own name to 127.0.0.1 must not reach an admin API that is unauthenticated on loopback.
//! One middleware, [`check_host`], wraps the whole admin `App` outside authentication, so
//! it runs before authentication and before every handler, `/healthz` included.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use serde_json::json;
use tessera_adapters::net::{MISDIRECTED_MESSAGE, is_local_request};

use crate::broker::Broker;

/// Serve a request whose `Host` is a loopback address, `localhost` or one of `admin.hosts`;
/// refuse any other with 421 and a fixed JSON body.
pub async fn check_host(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let local = {
        let broker = req.app_data::<web::Data<Arc<Broker>>>();
        let names =
            broker.and_then(|b| b.config().config.admin()).map(|a| a.hosts.as_slice()).unwrap_or_default();
        let hosts: Vec<&[u8]> =
            req.headers().get_all(header::HOST).map(header::HeaderValue::as_bytes).collect();
        is_local_request(
            &hosts,
            req.uri().authority().map(|a| a.as_str()),
            names.iter().map(|n| n.value.as_str()),
        )
    };
    if local {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    tracing::warn!(
        code = "TS-ADMIN-HOST",
        host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()),
        method = %req.method(),
        path = req.path(),
        peer = req.peer_addr().map(|p| p.to_string()).as_deref(),
        "admin request refused: Host is not a name of this listener"
    );
    Ok(req.into_response(misdirected()))
}

/// 421 Misdirected Request (RFC 9110 §15.5.20), with the fixed body the agent's endpoints
/// answer too.
fn misdirected() -> HttpResponse {
    HttpResponse::build(StatusCode::MISDIRECTED_REQUEST)
        .json(json!({ "error": "misdirected_request", "message": MISDIRECTED_MESSAGE }))
}
