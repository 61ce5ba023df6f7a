//! `POST /v1/introspect`: RFC 7662 token introspection on the public listener, for
//! relying services that accept Tessera-issued JWTs (see [`crate::introspect`]).
//!
//! The request is form-encoded (§2.1): `token`, optional `token_type_hint` (ignored: only
//! JWTs are introspected). The client authenticates with a Tessera-issued JWT for one of
//! `introspection.clients`, as `Authorization: Bearer` (RFC 6750 §2.1) or as an RFC 7523
//! §2.2 `client_assertion` (one method only, RFC 6749 §2.3); otherwise `401
//! invalid_client`. The answer is `{"active": false}` for any token not active, whatever
//! the reason (§2.2), and never cached.

use std::borrow::Cow;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt as _;
use serde_json::json;

use super::error::{ErrorBody, WireError};
use crate::broker::Broker;
use crate::introspect::RevocationView;

/// RFC 7523 §2.2.
const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// At most this many parameters: RFC 7662 and RFC 7523 client authentication use five.
const MAX_PARAMETERS: usize = 16;
/// The realm of `WWW-Authenticate` challenges.
const REALM: &str = "tessera-introspect";

/// An introspection request's parameters. Its `Debug` shows no value: they are tokens.
#[derive(Default)]
pub struct IntrospectionParams {
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
    pub client_id: Option<String>,
}

impl std::fmt::Debug for IntrospectionParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionParams")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("client_assertion", &self.client_assertion.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// Read the form body: each known parameter at most once (RFC 6749 §3.2), other names
/// counted and ignored (RFC 7662 §2.1 lets servers define more), empty values absent.
pub fn parse_form(body: &[u8], max_token_bytes: usize) -> Result<IntrospectionParams, WireError> {
    let mut params = IntrospectionParams::default();
    for (count, (name, value)) in url::form_urlencoded::parse(body).enumerate() {
        if count >= MAX_PARAMETERS {
            return Err(WireError::TooManyParameters);
        }
        let slot = match name.as_ref() {
            "token" => &mut params.token,
            "token_type_hint" => &mut params.token_type_hint,
            "client_assertion_type" => &mut params.client_assertion_type,
            "client_assertion" => &mut params.client_assertion,
            "client_id" => &mut params.client_id,
            _ => continue,
        };
        if slot.is_some() {
            return Err(WireError::RepeatedParameter);
        }
        if value.len() > max_token_bytes {
            return Err(WireError::TokenTooLarge);
        }
        *slot = Some(value).filter(|v| !v.is_empty()).map(Cow::into_owned);
    }
    Ok(params)
}

/// The body parser, for the cargo-fuzz target in `fuzz/`; `true` when it names a token.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_introspection_request(body: &[u8]) -> bool {
    parse_form(body, tessera_adapters::jwt::MAX_TOKEN_BYTES).is_ok_and(|p| p.token.is_some())
}

async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, WireError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence != "application/x-www-form-urlencoded" {
        return Err(WireError::ContentType);
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| WireError::MalformedBody)?;
        if body.len() + chunk.len() > limit {
            return Err(WireError::BodyTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The client's credential: the one method it used, or why none is usable.
fn client_credential<'a>(
    req: &'a HttpRequest,
    params: &'a IntrospectionParams,
) -> Result<&'a str, WireError> {
    let mut headers = req.headers().get_all(header::AUTHORIZATION);
    let bearer = match (headers.next(), headers.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => return Err(WireError::MultipleClientAuthentication),
        (Some(value), None) => {
            let value = value.to_str().map_err(|_| WireError::InvalidClient)?;
            match value.split_once(' ') {
                Some((scheme, token))
                    if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
                {
                    Some(token.trim())
                }
                _ => return Err(WireError::InvalidClient),
            }
        }
    };
    let assertion = match (&params.client_assertion_type, &params.client_assertion) {
        (None, None) => None,
        (Some(t), Some(a)) if t == JWT_BEARER_ASSERTION => Some(a.as_str()),
        _ => return Err(WireError::InvalidClient),
    };
    match (bearer, assertion) {
        (Some(_), Some(_)) => Err(WireError::MultipleClientAuthentication),
        (Some(token), None) | (None, Some(token)) => Ok(token),
        (None, None) => Err(WireError::InvalidClient),
    }
}

fn refuse(e: WireError) -> HttpResponse {
    let mut builder = HttpResponse::build(e.status());
    builder.insert_header((header::CACHE_CONTROL, "no-store"));
    if e == WireError::InvalidClient {
        builder.insert_header((header::WWW_AUTHENTICATE, format!(r#"Bearer realm="{REALM}""#)));
    }
    builder.json(ErrorBody::fixed(e))
}

pub async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    broker: web::Data<Arc<Broker>>,
) -> HttpResponse {
    let limits = broker.limits();
    let params = match read_body(&req, payload, limits.max_body_bytes).await {
        Ok(body) => parse_form(&body, limits.max_token_bytes),
        Err(e) => Err(e),
    };
    let params = match params {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    let credential = match client_credential(&req, &params) {
        Ok(c) => c,
        Err(e) => return refuse(e),
    };
    let Some(introspection) = broker.introspection() else {
        tracing::info!(
            code = "TS-INTROSPECT-OFF",
            "introspection refused: `introspection` is not configured"
        );
        return refuse(WireError::InvalidClient);
    };
    let view = RevocationView {
        set: broker.pipeline().revocations(),
        tokens: broker.revoked_tokens(),
        now_ms: broker.clock().now_millis(),
    };
    let client = match introspection.client(credential, &view) {
        Ok(sub) => sub,
        Err(e) => {
            tracing::info!(code = e.code(), reason = %e, "introspection client refused");
            return refuse(WireError::InvalidClient);
        }
    };
    let Some(token) = params.token.as_deref() else { return refuse(WireError::MissingToken) };
    let body = match introspection.introspect(token, &view) {
        Ok(active) => serde_json::Value::Object(active),
        Err(e) => {
            tracing::debug!(client = %client, code = e.code(), reason = %e, "introspected token not active");
            json!({ "active": false })
        }
    };
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 16 * 1024;

    #[test]
    fn the_form_keeps_known_parameters_once_and_ignores_others() {
        let p = parse_form(b"token=a.b.c&token_type_hint=access_token&other=1&client_id=", MAX).unwrap();
        assert_eq!(p.token.as_deref(), Some("a.b.c"));
        assert_eq!(p.token_type_hint.as_deref(), Some("access_token"));
        assert_eq!(p.client_id, None, "an empty value is absent");
        assert_eq!(parse_form(b"token=a&token=b", MAX).err(), Some(WireError::RepeatedParameter));
        let many = (0..17).map(|i| format!("p{i}=x")).collect::<Vec<_>>().join("&");
        assert_eq!(parse_form(many.as_bytes(), MAX).err(), Some(WireError::TooManyParameters));
        let long = format!("token={}", "a".repeat(MAX + 1));
        assert_eq!(parse_form(long.as_bytes(), MAX).err(), Some(WireError::TokenTooLarge));
        assert!(format!("{p:?}").contains("[redacted]") && !format!("{p:?}").contains("a.b.c"));
    }

    #[test]
    fn introspection_refusals_are_rfc_6749_errors() {
        let e = WireError::InvalidClient;
        assert_eq!((e.status().as_u16(), e.code()), (401, "invalid_client"));
        for e in [WireError::MultipleClientAuthentication, WireError::MissingToken] {
            assert_eq!((e.status().as_u16(), e.code()), (400, "invalid_request"));
        }
    }
}
