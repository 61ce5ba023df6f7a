//! What SDKs already read, on loopback: the ECS container credentials endpoint, a GCE
//! metadata server subset, the Azure App Service managed identity endpoint and the IMDS
//! token path, and `/healthz`.
//!
//! Every request first passes [`check_host`], against DNS rebinding: a web page that
//! rebinds its name to 127.0.0.1 could otherwise read the GCE token (it can set
//! `Metadata-Flavor`, and IMDS's `Metadata` header) from the browser of whoever opens it.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use aws_lc_rs::digest;
use serde_json::{Value, json};
use tessera_adapters::Secret;
use tessera_adapters::net::{MISDIRECTED_MESSAGE, is_local_request};

use crate::config::{AwsConfig, AzureConfig, GcpConfig};
use crate::credentials::{Issued, Store, Unavailable, Want};
use crate::set;

/// The ECS endpoint's path (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
pub const ECS_PATH: &str = "/v1/aws/credentials";
/// The App Service endpoint's path (`IDENTITY_ENDPOINT`).
pub const APP_SERVICE_PATH: &str = "/v1/azure/token";
/// Azure IMDS's token path.
pub const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
/// The GCE metadata server's name, which a VM's SDKs may be pointed at through a hosts
/// entry: also accepted as `Host` on the GCE paths.
pub const GCE_METADATA_NAME: &str = "metadata.google.internal";

/// Everything the handlers need.
#[derive(Debug)]
pub struct Served {
    pub store: Arc<Store>,
    pub aws: Option<(AwsConfig, Secret<String>)>,
    pub gcp: Option<GcpConfig>,
    pub azure: Option<(AzureConfig, Secret<String>)>,
    /// Host names accepted besides loopback and `localhost` (`hosts`).
    pub hosts: Vec<String>,
}

/// The middleware wrapping the whole app: serve a request whose `Host` is a loopback
/// address, `localhost`, one of `hosts`, or on the GCE paths `metadata.google.internal`;
/// refuse any other with 421 and a fixed JSON body, before any handler sees it.
pub async fn check_host(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let local = {
        let names = req.app_data::<web::Data<Served>>().map(|s| s.hosts.as_slice()).unwrap_or_default();
        let gce = req.path() == "/" || req.path().starts_with("/computeMetadata/");
        let hosts: Vec<&[u8]> =
            req.headers().get_all(header::HOST).map(header::HeaderValue::as_bytes).collect();
        let names = names.iter().map(String::as_str).chain(gce.then_some(GCE_METADATA_NAME));
        is_local_request(&hosts, req.uri().authority().map(|a| a.as_str()), names)
    };
    if local {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    tracing::warn!(
        host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()),
        path = req.path(),
        "request refused: Host is not a name of the agent"
    );
    let body = json!({ "error": "misdirected_request", "message": MISDIRECTED_MESSAGE });
    Ok(req.into_response(no_store(StatusCode::MISDIRECTED_REQUEST).json(body)))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(metrics))
        .route(ECS_PATH, web::get().to(ecs))
        .route(APP_SERVICE_PATH, web::get().to(app_service))
        .route(IMDS_PATH, web::get().to(imds))
        .route("/", web::get().to(gce_ping))
        .route("/computeMetadata/v1/{path:.*}", web::get().to(gce));
}

async fn healthz(served: web::Data<Served>) -> HttpResponse {
    let (ok, body) = served.store.health();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    HttpResponse::build(status).insert_header(("cache-control", "no-store")).json(body)
}

/// `GET /metrics`: whether the agent can serve every credential (as `/healthz`), the
/// build and the process metrics, in the OpenMetrics text format.
async fn metrics(served: web::Data<Served>) -> HttpResponse {
    let (ready, _) = served.store.health();
    let mut out = format!(
        "# HELP tessera_agent_ready Whether every configured credential can be served, as /healthz says.\n\
         # TYPE tessera_agent_ready gauge\ntessera_agent_ready {}\n",
        u8::from(ready)
    );
    if tessera_adapters::process::encode(tessera_adapters::process::build(), &mut out).is_err() {
        return HttpResponse::InternalServerError().finish();
    }
    out.push_str("# EOF\n");
    no_store(StatusCode::OK).content_type(METRICS_CONTENT_TYPE).body(out)
}

/// The content type of the OpenMetrics text format.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Equal in constant time: both sides are hashed first, so neither length nor content
/// leaks through timing.
fn same_secret(presented: &[u8], expected: &Secret<String>) -> bool {
    let a = digest::digest(&digest::SHA256, presented);
    let b = digest::digest(&digest::SHA256, expected.expose().as_bytes());
    a.as_ref().iter().zip(b.as_ref()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a [u8]> {
    req.headers().get(name).map(|v| v.as_bytes())
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().finish()
}

fn no_store(status: StatusCode) -> HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.insert_header(("cache-control", "no-store"));
    b
}

fn unavailable_message(u: &Unavailable) -> String {
    match u {
        Unavailable::Unknown => "no such credential is configured".to_string(),
        Unavailable::Revoked => {
            "the broker revoked this workload's credentials (TS-AGENT-REVOKED); nothing is served".to_string()
        }
        Unavailable::NotReady(Some(code)) => format!("no valid credential yet (last error {code})"),
        Unavailable::NotReady(None) => "no valid credential yet".to_string(),
    }
}

/// `403` once the broker revoked the credential, so SDKs report a refusal rather than an
/// outage to retry; `503` while none is ready yet.
fn unavailable_status(u: &Unavailable) -> StatusCode {
    match u {
        Unavailable::Revoked => StatusCode::FORBIDDEN,
        Unavailable::Unknown | Unavailable::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The ECS container credentials endpoint, as botocore's `ContainerProvider` and the other
/// SDKs read it: `Authorization` must carry the token, the answer is
/// `{AccessKeyId, SecretAccessKey, Token, Expiration, RoleArn}`.
async fn ecs(req: HttpRequest, served: web::Data<Served>) -> HttpResponse {
    let Some((aws, token)) = &served.aws else {
        return not_found();
    };
    let error = |status: StatusCode, code: &str, message: &str| {
        no_store(status).json(json!({ "code": code, "message": message }))
    };
    match header(&req, "authorization") {
        None => {
            return error(StatusCode::UNAUTHORIZED, "Unauthorized", "the Authorization header is required");
        }
        Some(v) if !same_secret(v, token) => {
            return error(StatusCode::FORBIDDEN, "Forbidden", "the Authorization token is not valid");
        }
        Some(_) => {}
    }
    let want = Want { target: aws.target.clone(), scope: aws.scope.clone() };
    let issued = match served.store.get(&want) {
        Ok(i) => i,
        Err(u @ Unavailable::Revoked) => {
            return error(unavailable_status(&u), "AccessDenied", &unavailable_message(&u));
        }
        Err(u) => return error(unavailable_status(&u), "Unavailable", &unavailable_message(&u)),
    };
    let Some(creds) = &issued.aws else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "NotAwsCredentials",
            "the configured target does not issue AWS credentials",
        );
    };
    let mut body = json!({
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key.expose(),
        "Token": creds.session_token.expose(),
        "Expiration": creds.expiration,
    });
    if let Some(role) = &aws.scope {
        set(&mut body, "RoleArn", json!(role));
    }
    no_store(StatusCode::OK).json(body)
}

// ---- GCE metadata server ----

/// Every metadata answer carries `Metadata-Flavor: Google`; clients check it.
fn gce_response(status: StatusCode) -> HttpResponseBuilder {
    let mut b = no_store(status);
    b.insert_header(("metadata-flavor", "Google")).insert_header(("server", "Metadata Server for VM"));
    b
}

fn gce_text(status: StatusCode, text: impl Into<String>) -> HttpResponse {
    gce_response(status).content_type("application/text").body(text.into())
}

/// The metadata server's own request checks: `Metadata-Flavor: Google` required, and
/// anything forwarded (`X-Forwarded-For`) refused, so an open proxy cannot reach it.
fn gce_check(req: &HttpRequest) -> Result<(), HttpResponse> {
    if req.headers().contains_key("x-forwarded-for") {
        return Err(gce_text(
            StatusCode::FORBIDDEN,
            "Your client has issued a malformed or illegal request. Request had X-Forwarded-For header.\n",
        ));
    }
    if header(req, "metadata-flavor") != Some(b"Google") {
        return Err(gce_text(
            StatusCode::FORBIDDEN,
            "Your client has issued a malformed or illegal request. Missing Metadata-Flavor:Google header.\n",
        ));
    }
    Ok(())
}

/// google-auth's detection ping (`GET /` on `GCE_METADATA_IP`).
async fn gce_ping(req: HttpRequest, served: web::Data<Served>) -> HttpResponse {
    if served.gcp.is_none() {
        return not_found();
    }
    if let Err(r) = gce_check(&req) {
        return r;
    }
    gce_text(StatusCode::OK, "computeMetadata/\n")
}

async fn gce(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    served: web::Data<Served>,
) -> HttpResponse {
    let Some(gcp) = &served.gcp else {
        return not_found();
    };
    if let Err(r) = gce_check(&req) {
        return r;
    }
    let path = path.into_inner();
    let recursive = query.get("recursive").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    match path.as_str() {
        "project/project-id" => match &gcp.project_id {
            Some(id) => gce_text(StatusCode::OK, id.clone()),
            None => gce_text(StatusCode::NOT_FOUND, "not found\n"),
        },
        "universe/universe-domain" => gce_text(StatusCode::OK, "googleapis.com"),
        "instance/service-accounts" | "instance/service-accounts/" => {
            gce_text(StatusCode::OK, format!("default/\n{}/\n", gcp.email))
        }
        _ => {
            let Some(rest) = path.strip_prefix("instance/service-accounts/") else {
                return gce_text(StatusCode::NOT_FOUND, "not found\n");
            };
            let (account, item) = rest.split_once('/').unwrap_or((rest, ""));
            if account != "default" && account != gcp.email {
                return gce_text(StatusCode::NOT_FOUND, "not found\n");
            }
            service_account(gcp, item, recursive, &query, &served.store)
        }
    }
}

fn service_account(
    gcp: &GcpConfig,
    item: &str,
    recursive: bool,
    query: &HashMap<String, String>,
    store: &Store,
) -> HttpResponse {
    match item {
        "" if recursive => gce_response(StatusCode::OK).json(json!({
            "aliases": ["default"],
            "email": gcp.email,
            "scopes": gcp.scopes,
        })),
        "" => gce_text(StatusCode::OK, "aliases\nemail\nidentity\nscopes\ntoken\n"),
        "email" => gce_text(StatusCode::OK, gcp.email.clone()),
        "aliases" => gce_text(StatusCode::OK, "default\n"),
        "scopes" => gce_text(StatusCode::OK, gcp.scopes.iter().map(|s| format!("{s}\n")).collect::<String>()),
        "token" => {
            let Some(target) = &gcp.target else {
                return gce_text(StatusCode::NOT_FOUND, "this agent serves no access token\n");
            };
            let want = Want { target: target.clone(), scope: gcp.scope.clone() };
            match store.get(&want) {
                Ok(issued) => gce_response(StatusCode::OK).json(json!({
                    "access_token": issued.access_token.expose(),
                    "expires_in": expires_in(&issued, store),
                    "token_type": "Bearer",
                })),
                Err(u) => gce_text(unavailable_status(&u), unavailable_message(&u)),
            }
        }
        "identity" => {
            let Some(audience) = query.get("audience").filter(|a| !a.is_empty()) else {
                return gce_text(StatusCode::BAD_REQUEST, "non-empty audience parameter required\n");
            };
            let Some(target) = gcp.id_token_targets.get(audience) else {
                return gce_text(
                    StatusCode::FORBIDDEN,
                    "this agent issues no ID token for that audience (see gcp.id_token_targets)\n",
                );
            };
            let want = Want { target: target.clone(), scope: None };
            match store.get(&want) {
                Ok(issued) => gce_text(StatusCode::OK, issued.access_token.expose().clone()),
                Err(u) => gce_text(unavailable_status(&u), unavailable_message(&u)),
            }
        }
        _ => gce_text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn expires_in(issued: &Issued, store: &Store) -> i64 {
    (issued.expires_at - store.now()).max(0)
}

// ---- Azure ----

/// Resources compare without a trailing `/` (`https://graph.microsoft.com/` and
/// `https://graph.microsoft.com` are the same resource to Entra).
fn azure_target<'a>(azure: &'a AzureConfig, resource: &str) -> Option<&'a String> {
    let want = resource.trim_end_matches('/');
    azure.resources.iter().find(|(r, _)| r.trim_end_matches('/') == want).map(|(_, t)| t)
}

fn app_service_error(status: StatusCode, message: &str) -> HttpResponse {
    no_store(status).json(json!({ "statusCode": status.as_u16(), "message": message }))
}

/// The App Service managed identity endpoint (api-version 2019-08-01), as azure-identity's
/// `ManagedIdentityCredential` (through MSAL) calls it: `GET ?resource=&api-version=` with
/// `X-IDENTITY-HEADER`.
async fn app_service(
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    served: web::Data<Served>,
) -> HttpResponse {
    let Some((azure, secret)) = &served.azure else {
        return not_found();
    };
    match header(&req, "x-identity-header") {
        None => {
            return app_service_error(StatusCode::UNAUTHORIZED, "the X-IDENTITY-HEADER header is required");
        }
        Some(v) if !same_secret(v, secret) => {
            return app_service_error(StatusCode::FORBIDDEN, "the X-IDENTITY-HEADER value is not valid");
        }
        Some(_) => {}
    }
    if query.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return app_service_error(StatusCode::BAD_REQUEST, "api-version 2019-08-01 is required");
    }
    if let Err(r) = check_client_id(azure, &query, app_service_error) {
        return r;
    }
    let resource = query.get("resource").map(String::as_str).unwrap_or("");
    let Some(target) = azure_target(azure, resource) else {
        return app_service_error(StatusCode::BAD_REQUEST, "this agent issues no token for that resource");
    };
    let want = Want { target: target.clone(), scope: None };
    match served.store.get(&want) {
        Ok(issued) => {
            let mut body = json!({
                "access_token": issued.access_token.expose(),
                "expires_on": issued.expires_at.to_string(),
                "resource": resource,
                "token_type": "Bearer",
            });
            if let Some(id) = &azure.client_id {
                set(&mut body, "client_id", json!(id));
            }
            no_store(StatusCode::OK).json(body)
        }
        Err(u) => app_service_error(unavailable_status(&u), &unavailable_message(&u)),
    }
}

/// A request for a user-assigned identity other than the configured one is refused.
fn check_client_id(
    azure: &AzureConfig,
    query: &HashMap<String, String>,
    error: fn(StatusCode, &str) -> HttpResponse,
) -> Result<(), HttpResponse> {
    let asked = query.get("client_id").filter(|c| !c.is_empty());
    let other_ids = ["object_id", "principal_id", "mi_res_id", "msi_res_id"];
    if other_ids.iter().any(|k| query.contains_key(*k)) {
        return Err(error(StatusCode::BAD_REQUEST, "only the agent's identity is served"));
    }
    match (asked, &azure.client_id) {
        (Some(a), Some(c)) if a != c => Err(error(StatusCode::BAD_REQUEST, "unknown client_id")),
        (Some(_), None) => Err(error(StatusCode::BAD_REQUEST, "unknown client_id")),
        _ => Ok(()),
    }
}

fn imds_error(status: StatusCode, description: &str) -> HttpResponse {
    let error = if status == StatusCode::BAD_REQUEST { "invalid_request" } else { "unavailable" };
    no_store(status).json(json!({ "error": error, "error_description": description }))
}

/// Azure IMDS's token path: `Metadata: true` required, nothing forwarded.
async fn imds(
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    served: web::Data<Served>,
) -> HttpResponse {
    let Some((azure, _)) = served.azure.as_ref().filter(|(a, _)| a.imds) else {
        return not_found();
    };
    if req.headers().contains_key("x-forwarded-for") || header(&req, "metadata") != Some(b"true") {
        return imds_error(StatusCode::BAD_REQUEST, "Required metadata header not specified");
    }
    if query.get("api-version").is_none_or(String::is_empty) {
        return imds_error(StatusCode::BAD_REQUEST, "Required query variable 'api-version' is missing");
    }
    let imds_error_fn: fn(StatusCode, &str) -> HttpResponse = imds_error;
    if let Err(r) = check_client_id(azure, &query, imds_error_fn) {
        return r;
    }
    let resource = query.get("resource").map(String::as_str).unwrap_or("");
    let Some(target) = azure_target(azure, resource) else {
        return imds_error(StatusCode::BAD_REQUEST, "this agent issues no token for that resource");
    };
    let want = Want { target: target.clone(), scope: None };
    match served.store.get(&want) {
        Ok(issued) => {
            let expires_in = expires_in(&issued, &served.store);
            let mut body: Value = json!({
                "access_token": issued.access_token.expose(),
                "refresh_token": "",
                "expires_in": expires_in.to_string(),
                "ext_expires_in": expires_in.to_string(),
                "expires_on": issued.expires_at.to_string(),
                "not_before": issued.issued_at.to_string(),
                "resource": resource,
                "token_type": "Bearer",
            });
            if let Some(id) = &azure.client_id {
                set(&mut body, "client_id", json!(id));
            }
            no_store(StatusCode::OK).json(body)
        }
        Err(u) => imds_error(unavailable_status(&u), &unavailable_message(&u)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_value_only() {
        let s = Secret::new("correct horse".to_string());
        assert!(same_secret(b"correct horse", &s));
        assert!(!same_secret(b"correct hors", &s));
        assert!(!same_secret(b"", &s));
        assert!(!same_secret(b"correct horse battery", &s));
    }

    #[test]
    fn azure_resources_match_with_or_without_a_trailing_slash() {
        let azure = AzureConfig {
            resources: [("https://graph.microsoft.com".to_string(), "graph".to_string())].into(),
            client_id: None,
            identity_header_file: None,
            imds: false,
        };
        assert_eq!(azure_target(&azure, "https://graph.microsoft.com/").map(String::as_str), Some("graph"));
        assert_eq!(azure_target(&azure, "https://graph.microsoft.com").map(String::as_str), Some("graph"));
        assert!(azure_target(&azure, "https://vault.azure.net").is_none());
        assert!(azure_target(&azure, "").is_none());
    }
}
