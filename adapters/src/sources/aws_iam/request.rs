//! The subject token: a signed `sts:GetCallerIdentity` request, decoded and checked before
//! any network call.
//!
//! Encoding (docs/sources.md, `aws_iam`): base64url without padding (RFC 4648 §5) of a JSON
//! object `{"method", "url", "headers", "body"}`, all strings except `headers`, an object
//! of string values whose names are compared case-insensitively and may each appear once.
//!
//! The checks follow Vault's hardened `iam` login (Vault's AWS auth method docs, "IAM auth
//! method"): the request can only be a GetCallerIdentity POST to an allow-listed STS
//! endpoint, it must be bound to this Tessera by a signed `X-Tessera-Server-Id`, and it must
//! be fresh. What only STS can check (the signature itself, the credentials behind it) is
//! left to STS.

use std::fmt;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use url::Url;

use crate::aws_sign::{GET_CALLER_IDENTITY_BODY, SERVER_ID_HEADER};
use crate::net::{authority, is_loopback};
use crate::secret::Secret;
use crate::source::SourceError;

/// SigV4's only algorithm name ("Create a signed AWS API request", AWS IAM User Guide).
pub const SIGV4_ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The largest token decoded; the HTTP edge already limits subject tokens to 16 KiB.
const MAX_TOKEN_CHARS: usize = 16 * 1024;
/// More headers than any SDK sends for this request.
const MAX_HEADERS: usize = 32;

/// Headers about the connection rather than the request: forwarding them could change how
/// the request is framed or routed, so a token carrying one is refused. `x-amz-target`
/// selects an operation in the JSON protocols, which only GetCallerIdentity may be.
const FORBIDDEN_HEADERS: &[&str] = &[
    "connection",
    "expect",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-amz-target",
];

/// What a source requires of a signed request; built once from the config.
#[derive(Debug, Clone)]
pub(crate) struct RequestPolicy {
    /// The required `X-Tessera-Server-Id` value.
    pub server_id: String,
    /// Allowed STS origins, `scheme://host[:port]` as [`url::Origin`] serializes them.
    pub endpoints: Vec<String>,
    pub insecure_http: bool,
    /// Seconds `X-Amz-Date` may be from now, either way.
    pub max_age: i64,
}

/// The token as decoded, not yet checked.
#[derive(Debug)]
pub(crate) struct RawRequest {
    method: String,
    url: String,
    /// Names as written; values hold credentials (Authorization, X-Amz-Security-Token).
    headers: Vec<(String, Secret<String>)>,
    body: String,
}

/// A request that passed every local check: what is forwarded to STS, and what the
/// identity is built from.
#[derive(Debug)]
pub(crate) struct CheckedRequest {
    pub url: Url,
    /// The headers to send, as given. `Host` and `Content-Length` are left to the HTTP
    /// client, which derives the same values from the URL and body.
    pub headers: Vec<(String, Secret<String>)>,
    pub body: &'static str,
    /// The credential scope's region.
    pub region: String,
    /// `X-Amz-Date`, seconds since the Unix epoch.
    pub signed_at: i64,
}

/// The token's JSON, as documented. serde refuses a member named twice, an unknown member
/// and a value of the wrong type; [`decode`] then refuses a header named twice in any case.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    method: String,
    url: String,
    headers: HeaderList,
    body: String,
}

/// A JSON object of string values, in order, duplicates kept so they can be refused.
struct HeaderList(Vec<(String, String)>);

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = HeaderList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header names to string values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderList, A::Error> {
                let mut list = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    if list.len() == MAX_HEADERS {
                        return Err(de::Error::custom("too many headers"));
                    }
                    list.push(entry);
                }
                Ok(HeaderList(list))
            }
        }
        de.deserialize_map(Entries)
    }
}

/// Decode the subject token. Refuses anything but the documented JSON shape.
pub(crate) fn decode(token: &str) -> Result<RawRequest, SourceError> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(SourceError::Malformed("signed request is too large"));
    }
    let json = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| SourceError::Malformed("signed request is not base64url"))?;
    let wire: Wire = serde_json::from_slice(&json)
        .map_err(|_| SourceError::Malformed("signed request is not the documented JSON object"))?;
    let mut headers: Vec<(String, Secret<String>)> = Vec::with_capacity(wire.headers.0.len());
    for (name, value) in wire.headers.0 {
        if !is_token(&name) || !is_header_value(&value) {
            return Err(SourceError::Malformed("signed request header name or value is not valid HTTP"));
        }
        if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            return Err(SourceError::Malformed("signed request names a header twice"));
        }
        headers.push((name, Secret::new(value)));
    }
    Ok(RawRequest { method: wire.method, url: wire.url, headers, body: wire.body })
}

/// Every check that needs no network call, in the order a reader would make them.
pub(crate) fn check(
    raw: RawRequest,
    policy: &RequestPolicy,
    now: i64,
) -> Result<CheckedRequest, SourceError> {
    if raw.method != "POST" {
        return Err(SourceError::InvalidClaim("method"));
    }
    if raw.body != GET_CALLER_IDENTITY_BODY {
        return Err(SourceError::InvalidClaim("body"));
    }
    let url = check_url(&raw.url, policy)?;
    check_plain_headers(&raw.headers, &url)?;
    let (region, signed_at) = check_signing(&raw.headers, policy, now)?;
    let headers = raw
        .headers
        .into_iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("host") && !n.eq_ignore_ascii_case("content-length"))
        .collect();
    Ok(CheckedRequest { url, headers, body: GET_CALLER_IDENTITY_BODY, region, signed_at })
}

/// The first header named `name` (any case).
fn header<'a>(headers: &'a [(String, Secret<String>)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.expose().as_str())
}

/// No header that would change where or how the request goes; `host`, `content-length`
/// and `content-type` fit the URL and the body.
fn check_plain_headers(headers: &[(String, Secret<String>)], url: &Url) -> Result<(), SourceError> {
    for (name, _) in headers {
        if let Some(forbidden) = FORBIDDEN_HEADERS.iter().find(|f| name.eq_ignore_ascii_case(f)) {
            return Err(SourceError::ForbiddenHeader(forbidden));
        }
        if name.len() > 6 && name.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("proxy-")) {
            return Err(SourceError::ForbiddenHeader("proxy-*"));
        }
    }
    if let Some(host) = header(headers, "host")
        && host != authority(url)
    {
        return Err(SourceError::InvalidClaim("host"));
    }
    if let Some(length) = header(headers, "content-length")
        && length != GET_CALLER_IDENTITY_BODY.len().to_string()
    {
        return Err(SourceError::InvalidClaim("content-length"));
    }
    let content_type = header(headers, "content-type").ok_or(SourceError::MissingClaim("content-type"))?;
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(SourceError::InvalidClaim("content-type"));
    }
    Ok(())
}

/// The SigV4 authorization: its scope fits the date, it signs `host`, `x-amz-date` and the
/// server id (which must be ours), every signed header is present, and it is fresh.
/// Returns the signing region and when it was signed.
fn check_signing(
    headers: &[(String, Secret<String>)],
    policy: &RequestPolicy,
    now: i64,
) -> Result<(String, i64), SourceError> {
    let header = |name: &str| header(headers, name);
    let authorization = header("authorization").ok_or(SourceError::MissingClaim("authorization"))?;
    let auth = parse_authorization(authorization)?;
    let date = header("x-amz-date").ok_or(SourceError::MissingClaim("x-amz-date"))?;
    let signed_at = parse_amz_date(date)?;
    if date.get(..8) != Some(auth.scope_date) {
        return Err(SourceError::InvalidClaim("credential scope"));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(SourceError::InvalidClaim("SignedHeaders"));
        }
    }
    // Every signed header but `host` (which the URL gives) must be present to be forwarded.
    for signed in &auth.signed_headers {
        if *signed != "host" && header(signed).is_none() {
            return Err(SourceError::InvalidClaim("SignedHeaders"));
        }
    }

    let server_id = header(SERVER_ID_HEADER).ok_or(SourceError::MissingClaim(SERVER_ID_HEADER))?;
    if !auth.signed_headers.contains(&SERVER_ID_HEADER) {
        return Err(SourceError::InvalidClaim(SERVER_ID_HEADER));
    }
    if verify_slices_are_equal(server_id.as_bytes(), policy.server_id.as_bytes()).is_err() {
        return Err(SourceError::AudienceMismatch);
    }

    if now.saturating_sub(signed_at) > policy.max_age {
        return Err(SourceError::Expired);
    }
    if signed_at.saturating_sub(now) > policy.max_age {
        return Err(SourceError::IssuedInFuture);
    }
    Ok((auth.region.to_owned(), signed_at))
}

/// `https://` (or loopback `http://` under `insecure_http`), path `/`, nothing else, and
/// an allow-listed origin. A query string is refused outright: STS reads parameters from
/// the query as well as the body, so one could change the action.
fn check_url(raw: &str, policy: &RequestPolicy) -> Result<Url, SourceError> {
    let url = Url::parse(raw).map_err(|_| SourceError::Malformed("signed request url is not a URL"))?;
    if url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(SourceError::InvalidClaim("url"));
    }
    let scheme_ok = match url.scheme() {
        "https" => true,
        "http" => policy.insecure_http && is_loopback(&url),
        _ => false,
    };
    let origin = url.origin().ascii_serialization();
    if !scheme_ok || !policy.endpoints.contains(&origin) {
        return Err(SourceError::UntrustedIssuer);
    }
    Ok(url)
}

/// The parts of a SigV4 `Authorization` header Tessera checks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Authorization<'a> {
    pub scope_date: &'a str,
    pub region: &'a str,
    pub signed_headers: Vec<&'a str>,
}

/// `AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/REGION/sts/aws4_request,
/// SignedHeaders=h1;h2, Signature=<64 hex>` ("Authentication Method: HTTP Authorization
/// header", Amazon S3 API Reference, which spells out the SigV4 header for every service).
pub(crate) fn parse_authorization(value: &str) -> Result<Authorization<'_>, SourceError> {
    let malformed = SourceError::Malformed("Authorization is not a SigV4 header");
    let (algorithm, rest) = value.split_once(' ').ok_or(SourceError::DisallowedAlgorithm)?;
    if algorithm != SIGV4_ALGORITHM {
        return Err(SourceError::DisallowedAlgorithm);
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part
            .trim()
            .split_once('=')
            .ok_or(SourceError::Malformed("Authorization is not a SigV4 header"))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(malformed),
        };
        if slot.replace(val).is_some() {
            return Err(malformed);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed_headers, signature)
    else {
        return Err(malformed);
    };
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(malformed);
    }
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope.as_slice() else {
        return Err(malformed);
    };
    let key_ok =
        !key_id.is_empty() && key_id.len() <= 128 && key_id.bytes().all(|b| b.is_ascii_alphanumeric());
    let date_ok = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
    let region_ok = !region.is_empty()
        && region.len() <= 64
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !key_ok || !date_ok || !region_ok {
        return Err(malformed);
    }
    if *service != "sts" || *terminator != "aws4_request" {
        return Err(SourceError::InvalidClaim("credential scope"));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    // SigV4 lists signed header names in lower case, sorted, each once.
    let well_formed = names.iter().all(|n| is_token(n) && !n.bytes().any(|b| b.is_ascii_uppercase()))
        && names.windows(2).all(|w| matches!(w, [a, b] if a < b));
    if !well_formed {
        return Err(malformed);
    }
    Ok(Authorization { scope_date: date, region, signed_headers: names })
}

/// `YYYYMMDD'T'HHMMSS'Z'` (SigV4's ISO 8601 basic format) to seconds since the epoch.
pub(crate) fn parse_amz_date(text: &str) -> Result<i64, SourceError> {
    let malformed = SourceError::Malformed("X-Amz-Date is not YYYYMMDD'T'HHMMSS'Z'");
    let b = text.as_bytes();
    let shape = b.len() == 16
        && b.get(8) == Some(&b'T')
        && b.get(15) == Some(&b'Z')
        && b.iter().enumerate().all(|(i, c)| i == 8 || i == 15 || c.is_ascii_digit());
    if !shape {
        return Err(malformed);
    }
    let num = |from: usize, to: usize| text.get(from..to).and_then(|s| s.parse::<i64>().ok()).unwrap_or(-1);
    let (year, month, day) = (num(0, 4), num(4, 6), num(6, 8));
    let (hour, minute, second) = (num(9, 11), num(11, 13), num(13, 15));
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(malformed);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A proleptic Gregorian date to days since 1970-01-01 (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An RFC 9110 §5.6.2 token: what a header name may be.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible ASCII, spaces and tabs; no CR or LF (RFC 9110 §5.5, without obsolete text).
fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}
