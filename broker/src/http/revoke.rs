//! The admin listener's revocation routes: `POST /v1/revocations`, `GET /v1/revocations`,
//! `DELETE /v1/revocations/{id}`, `GET /v1/revocations/{id}/issued` (see
//! [`crate::revocation`]). Each change is committed to the audit store before it is
//! answered, takes effect on this broker's exchanges at once (an added one also purges the
//! credentials it names from the caches, and takes back what targets can take back before
//! it is answered), is announced to the other replicas through Redis when configured, and
//! is logged with its author.

use std::sync::Arc;

use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::admin::{bad_request, store, store_failed};
use super::admin_auth::AdminCaller;
use crate::broker::Broker;
use crate::revocation::{self, Change, MAX_FIELD, NewRevocation, Revocation};

/// Who is asking, as the admin authentication found them.
fn author(req: &HttpRequest) -> String {
    req.extensions().get::<AdminCaller>().map(ToString::to_string).unwrap_or_else(|| "anonymous".into())
}

/// An answer, or the refusal that ended the request early.
type Answer = Result<HttpResponse, HttpResponse>;

pub(super) async fn add(
    broker: web::Data<Arc<Broker>>,
    req: HttpRequest,
    body: web::Json<NewRevocation>,
) -> HttpResponse {
    add_revocation(&broker, &req, body.into_inner()).await.unwrap_or_else(|refused| refused)
}

async fn add_revocation(broker: &Broker, req: &HttpRequest, body: NewRevocation) -> Answer {
    let store = store(broker)?;
    let now_ms = broker.clock().now_millis();
    let expires_ms = body.validate(now_ms).map_err(|e| bad_request("invalid_revocation", e.to_string()))?;
    let revocation = Revocation::new(body.matcher, body.reason, author(req), now_ms, expires_ms);
    revocation::add(broker, store, &revocation).await.map_err(|e| store_failed(&e))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/revocations/{}", revocation.id)))
        .json(&revocation))
}

/// A revocation as listed: with whether it is in force now.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    revocation: &'a Revocation,
    in_force: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    #[serde(default)]
    removed: bool,
}

pub(super) async fn list(broker: web::Data<Arc<Broker>>, params: web::Query<ListParams>) -> HttpResponse {
    list_revocations(&broker, params.removed).await.unwrap_or_else(|refused| refused)
}

async fn list_revocations(broker: &Broker, removed: bool) -> Answer {
    let revocations = store(broker)?.revocations(removed).await.map_err(|e| store_failed(&e))?;
    let now_ms = broker.clock().now_millis();
    let listed: Vec<Listed<'_>> =
        revocations.iter().map(|r| Listed { in_force: r.in_force(now_ms), revocation: r }).collect();
    Ok(HttpResponse::Ok().json(json!({ "revocations": listed })))
}

pub(super) async fn remove(
    broker: web::Data<Arc<Broker>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    remove_revocation(&broker, &req, &id).await.unwrap_or_else(|refused| refused)
}

async fn remove_revocation(broker: &Broker, req: &HttpRequest, id: &str) -> Answer {
    let store = store(broker)?;
    if id.len() > MAX_FIELD {
        return Err(bad_request("invalid_request", "the revocation id is too long"));
    }
    let by = author(req);
    let removed =
        store.remove_revocation(id, &by, broker.clock().now_millis()).await.map_err(|e| store_failed(&e))?;
    let Some(revocation) = removed else {
        return Err(HttpResponse::NotFound().json(json!({
            "error": "no_such_revocation",
            "message": format!("no revocation `{id}` in force or expired (already removed, or never made)"),
        })));
    };
    broker.pipeline().revocations().remove(&revocation.id);
    broker.propagation().announce(Change::Removed, &revocation.id).await;
    tracing::warn!(revocation = %revocation.id, author = %by, reason = "TS-REVOKE-REMOVE", "revocation removed");
    Ok(HttpResponse::Ok().json(&revocation))
}

pub(super) async fn issued(broker: web::Data<Arc<Broker>>, id: web::Path<String>) -> HttpResponse {
    issued_by(&broker, &id).await.unwrap_or_else(|refused| refused)
}

/// What revocation `id` names that is still valid, by the audit store.
async fn issued_by(broker: &Broker, id: &str) -> Answer {
    let store = store(broker)?;
    if id.len() > MAX_FIELD {
        return Err(bad_request("invalid_request", "the revocation id is too long"));
    }
    let all = store.revocations(true).await.map_err(|e| store_failed(&e))?;
    let Some(revocation) = all.into_iter().find(|r| r.id == id) else {
        return Err(HttpResponse::NotFound().json(json!({
            "error": "no_such_revocation",
            "message": format!("no revocation `{id}`"),
        })));
    };
    let now_ms = broker.clock().now_millis();
    let targets: Vec<_> = broker.pipeline().targets().cloned().collect();
    let outstanding = crate::revocation::outstanding(store, &targets, &revocation, now_ms)
        .await
        .map_err(|e| store_failed(&e))?;
    let listed = Listed { in_force: revocation.in_force(now_ms), revocation: &revocation };
    let mut body = serde_json::to_value(&outstanding).unwrap_or_default();
    if let Some(object) = body.as_object_mut() {
        object.insert("revocation".into(), serde_json::to_value(&listed).unwrap_or_default());
    }
    Ok(HttpResponse::Ok().json(body))
}
