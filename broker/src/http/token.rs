//! `POST /v1/token`: RFC 8693 token exchange, form-encoded (RFC 6749 §4.1.3 style) or JSON.

use std::fmt;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt as _;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize as _, Serialize};
use tessera_adapters::oauth::grant_type;
use tessera_adapters::{Secret, SubjectToken, SubjectTokenType};

use super::error::{ErrorBody, WireError};
use crate::broker::Broker;
use crate::exchange::ExchangeRequest;

/// The RFC 8693 §2.2.1 success body.
#[derive(Debug, Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    issued_token_type: &'a str,
    token_type: &'a str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aws_credentials: Option<&'a tessera_adapters::target::AwsCredentials>,
}

pub async fn exchange(
    req: HttpRequest,
    payload: web::Payload,
    broker: web::Data<Arc<Broker>>,
) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let limits = broker.limits();
    let parsed = match read_params(&req, payload, limits.max_body_bytes).await {
        Ok(params) => to_request(params, limits.max_token_bytes, &request_id, &req),
        Err(e) => Err(e),
    };
    let exchange_request = match parsed {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(request_id = %request_id, error = e.code(), cause = ?e, "token request refused at the edge");
            return refuse(e, &request_id);
        }
    };
    match broker.pipeline().exchange(exchange_request).await {
        Ok(done) => {
            let c = &done.credential;
            let body = TokenResponse {
                access_token: c.access_token.expose(),
                issued_token_type: c.issued_token_type,
                token_type: c.token_type,
                expires_in: done.expires_in,
                aws_credentials: c.aws_credentials.as_ref(),
            };
            no_store(HttpResponse::Ok(), &request_id).json(body)
        }
        Err(e) => refuse(WireError::from(&e), &request_id),
    }
}

/// RFC 6749 §5.1: token responses are never cached.
fn no_store(mut builder: actix_web::HttpResponseBuilder, request_id: &str) -> actix_web::HttpResponseBuilder {
    builder
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .insert_header(("x-request-id", request_id.to_string()));
    builder
}

fn refuse(e: WireError, request_id: &str) -> HttpResponse {
    let mut builder = no_store(HttpResponse::build(e.status()), request_id);
    if let Some(secs) = e.retry_after() {
        builder.insert_header((header::RETRY_AFTER, secs.to_string()));
    }
    builder.json(ErrorBody::fixed(e))
}

/// Request parameters in arrival order; values are strings in both encodings.
type Params = Vec<(String, String)>;

async fn read_params(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Params, WireError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let is_form = match essence.as_str() {
        "application/x-www-form-urlencoded" => true,
        "application/json" => false,
        _ => return Err(WireError::ContentType),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(WireError::BodyTooLarge);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| WireError::MalformedBody)?;
        if body.len() + chunk.len() > limit {
            return Err(WireError::BodyTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    if is_form {
        serde_urlencoded::from_bytes::<Params>(&body).map_err(|_| WireError::MalformedBody)
    } else {
        let mut de = serde_json::Deserializer::from_slice(&body);
        let pairs = JsonParams::deserialize(&mut de).map_err(|_| WireError::MalformedBody)?;
        de.end().map_err(|_| WireError::MalformedBody)?;
        Ok(pairs.0)
    }
}

fn to_request(
    params: Params,
    max_token_bytes: usize,
    request_id: &str,
    req: &HttpRequest,
) -> Result<ExchangeRequest, WireError> {
    let mut seen: Vec<&str> = Vec::with_capacity(params.len());
    for (k, _) in &params {
        if seen.contains(&k.as_str()) {
            return Err(WireError::RepeatedParameter);
        }
        seen.push(k);
    }
    let get = |name: &str| {
        params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    };

    match get("grant_type") {
        None => return Err(WireError::MissingGrantType),
        Some(grant_type::TOKEN_EXCHANGE) => {}
        Some(_) => return Err(WireError::UnsupportedGrantType),
    }
    if get("actor_token").is_some() || get("actor_token_type").is_some() || get("resource").is_some() {
        return Err(WireError::UnsupportedParameter);
    }
    let token = get("subject_token").ok_or(WireError::MissingSubjectToken)?;
    if token.len() > max_token_bytes {
        return Err(WireError::TokenTooLarge);
    }
    let token_type = get("subject_token_type").ok_or(WireError::MissingSubjectTokenType)?;
    let token_type = SubjectTokenType::from_uri(token_type).ok_or(WireError::UnsupportedSubjectTokenType)?;
    let audience = get("audience").ok_or(WireError::MissingAudience)?;
    let scope = get("scope");
    if scope.is_some_and(|s| s.split(' ').filter(|p| !p.is_empty()).count() > 1) {
        return Err(WireError::MultipleScopes);
    }
    Ok(ExchangeRequest {
        request_id: request_id.to_string(),
        subject_token: SubjectToken { token_type, value: Secret::new(token.to_string()) },
        audience: audience.to_string(),
        scope: scope.map(|s| s.trim().to_string()),
        requested_token_type: get("requested_token_type").map(str::to_string),
        client_addr: req.peer_addr().map(|a| a.ip().to_string()),
    })
}

/// A JSON object of string values, keeping duplicates so they can be refused.
struct JsonParams(Params);

impl<'de> serde::Deserialize<'de> for JsonParams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonParams;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonParams, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(JsonParams(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<JsonParams, E> {
                Err(E::custom("null body"))
            }
        }
        d.deserialize_map(V)
    }
}
