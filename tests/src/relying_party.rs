//! What the protocol fakes ([`google`](crate::google), [`entra`](crate::entra)) share as
//! relying parties of an OIDC issuer, like the real services: they read a compact JWS, fetch
//! the issuer's keys through discovery, and check a signature with aws-lc-rs (not with
//! Tessera's verifier, so the fakes are an independent check). What they share as test
//! servers is in [`fake`](crate::fake).

use actix_web::HttpRequest;
use actix_web::http::header;
use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value};

pub fn content_type(req: &HttpRequest) -> Option<String> {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Whether a `Content-Type` value names `expected`, parameters (`charset`) aside.
pub fn media_type_is(content_type: Option<&str>, expected: &str) -> bool {
    content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(expected))
}

/// A compact JWS (RFC 7515 §7.1) split and decoded, not yet verified.
#[derive(Debug)]
pub struct Jws {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    pub signing_input: String,
    pub signature: Vec<u8>,
}

pub fn decode_jws(token: &str) -> Option<Jws> {
    let mut parts = token.split('.');
    let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let object = |segment: &str| match serde_json::from_slice(&B64.decode(segment).ok()?).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    };
    Some(Jws {
        header: object(header)?,
        claims: object(claims)?,
        signing_input: format!("{header}.{claims}"),
        signature: B64.decode(signature).ok()?,
    })
}

/// The issuer's keys: its discovery document (OpenID Connect Discovery 1.0 §4), whose
/// `issuer` must be the issuer itself (§4.3), then the JWKS at its `jwks_uri`.
pub async fn fetch_jwks(http: &reqwest::Client, issuer: &str) -> Result<Vec<Value>, String> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let discovery = get_json(http, &url).await?;
    if discovery.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(format!("{url} names another issuer"));
    }
    let jwks_uri =
        discovery.get("jwks_uri").and_then(Value::as_str).ok_or(format!("{url} has no jwks_uri"))?;
    let jwks = get_json(http, jwks_uri).await?;
    jwks.get("keys").and_then(Value::as_array).cloned().ok_or(format!("{jwks_uri} has no keys"))
}

pub async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    response.json().await.map_err(|e| format!("{url}: {e}"))
}

/// RS256 (RFC 7518 §3.3) with an RSA JWK, or ES256 (§3.4) with a P-256 JWK. A JWK that
/// names another `alg`, or another use than `sig`, does not verify.
pub fn signature_verifies(jwk: &Value, alg: &str, input: &[u8], signature: &[u8]) -> bool {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let bytes = |name: &str| text(name).and_then(|s| B64.decode(s).ok());
    if text("alg").is_some_and(|a| a != alg) || text("use").is_some_and(|u| u != "sig") {
        return false;
    }
    match (alg, text("kty")) {
        ("RS256", Some("RSA")) => {
            let (Some(n), Some(e)) = (bytes("n"), bytes("e")) else { return false };
            RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input, signature)
                .is_ok()
        }
        ("ES256", Some("EC")) if text("crv") == Some("P-256") => {
            let (Some(x), Some(y)) = (bytes("x"), bytes("y")) else { return false };
            if x.len() != 32 || y.len() != 32 {
                return false;
            }
            let point = [&[4u8][..], &x, &y].concat();
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(input, signature)
                .is_ok()
        }
        _ => false,
    }
}
