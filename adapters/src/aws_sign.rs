//! The workload's side of the `aws_iam` source: sign a GetCallerIdentity request with AWS
//! credentials and encode it as a subject token of type
//! [`AwsSignedRequest`](crate::source::SubjectTokenType::AwsSignedRequest). Used by
//! `tessera aws sign-request`, by the agent, and by anything else holding AWS credentials;
//! the constants below are the wire format the source checks.
//!
//! The request is signed with SigV4 ("Create a signed AWS API request", AWS IAM User
//! Guide) over `Content-Type`, `Host`, `X-Amz-Date`, `X-Amz-Security-Token` (for temporary
//! credentials) and `X-Tessera-Server-Id`, as Vault's `iam` login signs
//! `X-Vault-AWS-IAM-Server-ID`.

use std::time::{Duration, UNIX_EPOCH};

pub use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use url::Url;

use crate::net::authority;
use crate::secret::Secret;

/// The one request body accepted: the STS Query API's GetCallerIdentity (STS API
/// Reference, "GetCallerIdentity"; the 2011-06-15 API version).
pub const GET_CALLER_IDENTITY_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
/// The header that binds a signed request to one Tessera; it must be signed. Lower case, as
/// SigV4 lists signed headers.
pub const SERVER_ID_HEADER: &str = "x-tessera-server-id";
/// The content type the STS Query API expects for a POST body.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// The header name as sent; compared case-insensitively.
pub const SERVER_ID_HEADER_NAME: &str = "X-Tessera-Server-Id";

/// Why a request could not be signed. Never carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("endpoint `{0}` is not an http(s) URL with path `/` and nothing else")]
    Endpoint(String),
    #[error("region `{0}` is not an AWS region name")]
    Region(String),
    #[error("server id must be 1-256 visible ASCII characters")]
    ServerId,
    #[error("SigV4 signing failed: {0}")]
    Signing(String),
}

/// The regional STS endpoint of the `aws` partition: `https://sts.{region}.amazonaws.com/`.
/// Regional endpoints are what AWS recommends over the global one ("Manage AWS STS in an
/// AWS Region", IAM User Guide).
pub fn regional_endpoint(region: &str) -> String {
    format!("https://sts.{region}.amazonaws.com/")
}

/// Sign `POST {endpoint}` with body `Action=GetCallerIdentity&Version=2011-06-15` as of
/// `now` (seconds since the Unix epoch) for the credential scope `{date}/{region}/sts`, and
/// return the subject token (docs/sources.md, `aws_iam`). The token is a bearer credential
/// for as long as the broker's `max_request_age` allows, so it is returned as a [`Secret`].
pub fn signed_request(
    credentials: &Credentials,
    region: &str,
    endpoint: &str,
    server_id: &str,
    now: i64,
) -> Result<Secret<String>, SignError> {
    let url = Url::parse(endpoint).map_err(|_| SignError::Endpoint(endpoint.to_owned()))?;
    if !matches!(url.scheme(), "https" | "http")
        || url.host_str().is_none()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(SignError::Endpoint(endpoint.to_owned()));
    }
    let region_ok = !region.is_empty()
        && region.len() <= 64
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        return Err(SignError::Region(region.to_owned()));
    }
    if server_id.is_empty() || server_id.len() > 256 || !server_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SignError::ServerId);
    }

    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(now).unwrap_or(0));
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SignError::Signing(e.to_string()))?
        .into();
    let unsigned = [("Content-Type", FORM_CONTENT_TYPE), (SERVER_ID_HEADER_NAME, server_id)];
    let signable = SignableRequest::new(
        "POST",
        url.as_str(),
        unsigned.iter().copied(),
        SignableBody::Bytes(GET_CALLER_IDENTITY_BODY.as_bytes()),
    )
    .map_err(|e| SignError::Signing(e.to_string()))?;
    let (instructions, _signature) =
        sign(signable, &params).map_err(|e| SignError::Signing(e.to_string()))?.into_parts();

    let mut headers = Map::new();
    // Host is signed from the URL; sending it too makes the token self-describing.
    headers.insert("Host".to_owned(), Value::String(authority(&url)));
    for (name, value) in unsigned {
        headers.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    for (name, value) in instructions.headers() {
        headers.insert(canonical_case(name), Value::String(value.to_owned()));
    }
    let token = json!({
        "method": "POST",
        "url": url.as_str(),
        "headers": headers,
        "body": GET_CALLER_IDENTITY_BODY,
    });
    Ok(Secret::new(URL_SAFE_NO_PAD.encode(token.to_string())))
}

/// `x-amz-date` -> `X-Amz-Date`: the spelling SDKs use; names are case-insensitive anyway.
fn canonical_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}
