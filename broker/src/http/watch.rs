//! `POST /v1/revocations/watch`: a long poll that answers once the caller's own request is
//! revoked, or when its wait ends (see [`crate::revocation::watch`]).
//!
//! The body is the caller's token exchange request, form-encoded or JSON and read by the
//! token endpoint's parser, plus `fingerprint` (`sha256:<hex>` of the credential it holds,
//! optional) and `wait` (seconds, default 25, at most 60). Refusals are the token
//! endpoint's RFC 6749 bodies. The answer is `{"revoked": true, "code": "TS-REVOKED"}` or,
//! after the wait, `{"revoked": false}`: nothing about the revocation, nor anyone else.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use tessera_adapters::oauth::{grant_type, token_type};

use super::error::WireError;
use super::token::{no_store, read_params, refuse, to_request};
use crate::broker::Broker;
use crate::exchange::ExchangeError;
use crate::jwt_bearer::GrantType;
use crate::revocation::Matcher;
use crate::revocation::watch::{DEFAULT_WAIT_SECS, MAX_WAIT_SECS};

/// The parameters a watch takes besides the token request's.
const EXTRA: &[&str] = &["fingerprint", "wait"];

/// How a watch ended, for the answer and the metric.
enum Outcome {
    Revoked,
    Unchanged,
    Refused(WireError),
    Busy,
    Stopping,
}

pub async fn watch(req: HttpRequest, payload: web::Payload, broker: web::Data<Arc<Broker>>) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let outcome = run(&req, payload, &broker).await;
    let label = match &outcome {
        Outcome::Revoked => "revoked",
        Outcome::Unchanged => "unchanged",
        Outcome::Refused(_) => "refused",
        Outcome::Busy => "busy",
        Outcome::Stopping => "stopping",
    };
    broker.metrics().revocation_watch(label);
    match outcome {
        Outcome::Revoked => {
            no_store(HttpResponse::Ok(), &request_id).json(json!({ "revoked": true, "code": "TS-REVOKED" }))
        }
        Outcome::Unchanged => no_store(HttpResponse::Ok(), &request_id).json(json!({ "revoked": false })),
        Outcome::Refused(e) => {
            tracing::debug!(request_id = %request_id, error = e.code(), cause = e.description(), "revocation watch refused");
            refuse(e, &request_id)
        }
        Outcome::Busy => refuse(WireError::TooManyWatches, &request_id),
        Outcome::Stopping => refuse(WireError::Stopping, &request_id),
    }
}

async fn run(req: &HttpRequest, payload: web::Payload, broker: &Broker) -> Outcome {
    let limits = broker.limits();
    let params = match read_params(req, payload, limits.max_body_bytes, EXTRA).await {
        Ok(params) => params,
        Err(e) => return Outcome::Refused(e),
    };
    let fingerprint = match params.get("fingerprint").map(str::to_string) {
        Some(f) if (Matcher::IssuedToken { fingerprint: f.clone() }).validate().is_err() => {
            return Outcome::Refused(WireError::InvalidFingerprint);
        }
        f => f,
    };
    let wait = match params.get("wait").map(str::parse::<u64>) {
        None => DEFAULT_WAIT_SECS,
        Some(Ok(secs)) => secs.min(MAX_WAIT_SECS),
        Some(Err(_)) => return Outcome::Refused(WireError::InvalidWait),
    };
    // Only a token exchange is watched: a JWT bearer grant's assertion is good once, and a
    // Txn-Token lives for minutes.
    if params.get("grant_type") == Some(grant_type::JWT_BEARER)
        || params.get("requested_token_type") == Some(token_type::TXN_TOKEN)
    {
        return Outcome::Refused(WireError::WatchGrantType);
    }
    let client_addr = req.peer_addr().map(|a| a.ip().to_string());
    let request = match to_request(params, limits.max_token_bytes, "watch", client_addr) {
        Ok(r) if r.grant_type == GrantType::TokenExchange && r.txn.is_none() => r,
        Ok(_) => return Outcome::Refused(WireError::WatchGrantType),
        Err(e) => return Outcome::Refused(e),
    };
    let watches = broker.watches();
    if watches.stopping() {
        return Outcome::Stopping;
    }
    let Some(_permit) = watches.admit() else { return Outcome::Busy };
    let set = broker.pipeline().revocations();
    // Subscribed before the check, so a change made in between is not missed.
    let mut changes = set.subscribe();
    let watched = match broker.pipeline().watched(&request, fingerprint).await {
        Ok(watched) => watched,
        Err(e) => return refused(&e),
    };
    let deadline = tokio::time::sleep(Duration::from_secs(wait));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Outcome::Unchanged;
                }
                if let Some(revoked) = watched.revoked(set, broker.clock().now_millis()) {
                    return refused(&ExchangeError::Revoked(revoked));
                }
            }
            () = &mut deadline => return Outcome::Unchanged,
            () = watches.stopped() => return Outcome::Stopping,
        }
    }
}

/// An exchange refusal as the watch answers it: a revocation the exchange would refuse
/// with the revocation error is `revoked`; every other refusal (a revoked subject token
/// among them, which the exchange answers `invalid_request`) is the token endpoint's.
fn refused(e: &ExchangeError) -> Outcome {
    match WireError::from(e) {
        WireError::Revoked => Outcome::Revoked,
        other => Outcome::Refused(other),
    }
}
