//! Forward a checked request to STS unchanged and read its answer strictly.
//!
//! The answer to GetCallerIdentity (STS API Reference, "GetCallerIdentity") is
//!
//! ```xml
//! <GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
//!   <GetCallerIdentityResult>
//!     <Arn>arn:aws:sts::123456789012:assumed-role/payments-api/run-1</Arn>
//!     <UserId>AROAEXAMPLE:run-1</UserId>
//!     <Account>123456789012</Account>
//!   </GetCallerIdentityResult>
//!   <ResponseMetadata><RequestId>...</RequestId></ResponseMetadata>
//! </GetCallerIdentityResponse>
//! ```
//!
//! and nothing else is accepted: one result, each of its three fields once, no other
//! elements, no DTD. Vault parses the same answer; a lenient parser is how a response with
//! two results or injected elements could name the wrong principal.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use roxmltree::{Document, Node, NodeType, ParsingOptions};

use super::request::CheckedRequest;
use crate::source::SourceError;

/// The STS API namespace, on every element of the answer.
pub const STS_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// Largest answer read; a real one is under 1 KiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Header values that hold credentials; marked sensitive so no HTTP-layer log shows them.
const SENSITIVE_HEADERS: &[&str] = &["authorization", "x-amz-security-token"];

/// What STS says the signer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallerIdentity {
    pub arn: String,
    pub user_id: String,
    pub account: String,
}

/// POST the request as given, with the source's timeout. The shared client follows no
/// redirects; a 3xx answer is a failure like any other non-200.
pub(crate) async fn get_caller_identity(
    http: &reqwest::Client,
    request: &CheckedRequest,
    timeout: Duration,
) -> Result<CallerIdentity, SourceError> {
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| SourceError::Malformed("signed request header name is not valid HTTP"))?;
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| SourceError::Malformed("signed request header value is not valid HTTP"))?;
        value.set_sensitive(SENSITIVE_HEADERS.contains(&name.as_str()));
        headers.insert(name, value);
    }
    let exchange = async {
        let mut response = http
            .post(request.url.clone())
            .headers(headers)
            .body(request.body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                upstream(true, format!("STS request failed: {}", crate::net::request_error(&request.url, &e)))
            })?;
        let status = response.status().as_u16();
        if response.content_length().is_some_and(|len| len > MAX_RESPONSE_BYTES as u64) {
            return Err(upstream(false, format!("STS answer over {MAX_RESPONSE_BYTES} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            upstream(true, format!("reading STS answer failed: {}", crate::net::request_failure(&e)))
        })? {
            if body.len().saturating_add(chunk.len()) > MAX_RESPONSE_BYTES {
                return Err(upstream(false, format!("STS answer over {MAX_RESPONSE_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| upstream(true, format!("STS did not answer within {}s", timeout.as_secs())))??;
    match status {
        200 => parse_response(&body).map_err(|why| upstream(false, format!("STS answer refused: {why}"))),
        400 | 403 => Err(refusal(&body)),
        429 | 500..=599 => Err(upstream(true, format!("STS answered {status}"))),
        _ => Err(upstream(false, format!("STS answered {status}"))),
    }
}

fn upstream(retryable: bool, cause: String) -> SourceError {
    SourceError::Upstream { retryable, cause }
}

/// What a 400 or 403 from STS means for the presented request. The error `Code` is the
/// only part read: the `Message` is free text and is neither logged nor kept.
fn refusal(body: &[u8]) -> SourceError {
    let code = error_code(body);
    tracing::info!(sts_error = code.as_deref().unwrap_or("unknown"), "STS refused a signed request");
    match code.as_deref() {
        // "Common Errors", STS API Reference: the request or its credentials are too old.
        Some("ExpiredToken" | "RequestExpired" | "TokenRefreshRequired") => SourceError::Expired,
        Some("Throttling" | "ThrottlingException" | "RequestLimitExceeded") => {
            upstream(true, "STS is throttling".to_owned())
        }
        Some("RegionDisabledException") => {
            SourceError::Policy("STS is not activated in the signed region for this account".to_owned())
        }
        // SignatureDoesNotMatch, InvalidClientTokenId, IncompleteSignature, AccessDenied,
        // MissingAuthenticationToken and anything unknown: STS did not vouch for the signer.
        _ => SourceError::BadSignature,
    }
}

/// The `Code` of an STS error answer (`<ErrorResponse><Error><Code>`), when it is a plain
/// identifier; used only to classify the refusal.
pub(crate) fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let doc = Document::parse_with_options(text, options()).ok()?;
    let root = doc.root_element();
    if root.tag_name().name() != "ErrorResponse" {
        return None;
    }
    let code = root
        .descendants()
        .find(|n| {
            n.is_element() && n.tag_name().name() == "Code" && n.parent_element().is_some_and(is_error)
        })?
        .text()?;
    let plain = !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric());
    plain.then(|| code.to_owned())
}

fn is_error(node: Node<'_, '_>) -> bool {
    node.tag_name().name() == "Error"
}

fn options<'a>() -> ParsingOptions<'a> {
    ParsingOptions { allow_dtd: false, nodes_limit: 1024, ..ParsingOptions::default() }
}

/// Parse a 200 answer to GetCallerIdentity, refusing every deviation from its schema.
pub(crate) fn parse_response(body: &[u8]) -> Result<CallerIdentity, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8")?;
    let doc =
        Document::parse_with_options(text, options()).map_err(|_| "not well-formed XML (or has a DTD)")?;
    let root = doc.root_element();
    if !is_sts(root, "GetCallerIdentityResponse") {
        return Err("root element is not GetCallerIdentityResponse");
    }
    let mut result = None;
    let mut metadata = 0;
    for child in elements(root)? {
        if is_sts(child, "GetCallerIdentityResult") {
            if result.replace(child).is_some() {
                return Err("more than one GetCallerIdentityResult");
            }
        } else if is_sts(child, "ResponseMetadata") {
            metadata += 1;
            if metadata > 1 {
                return Err("more than one ResponseMetadata");
            }
        } else {
            return Err("unexpected element in GetCallerIdentityResponse");
        }
    }
    let result = result.ok_or("no GetCallerIdentityResult")?;
    if result.attributes().len() != 0 {
        return Err("GetCallerIdentityResult has attributes");
    }
    let (mut arn, mut user_id, mut account) = (None, None, None);
    for field in elements(result)? {
        let slot = if is_sts(field, "Arn") {
            &mut arn
        } else if is_sts(field, "UserId") {
            &mut user_id
        } else if is_sts(field, "Account") {
            &mut account
        } else {
            return Err("unexpected element in GetCallerIdentityResult");
        };
        if slot.replace(leaf_text(field)?).is_some() {
            return Err("a field of GetCallerIdentityResult appears twice");
        }
    }
    match (arn, user_id, account) {
        (Some(arn), Some(user_id), Some(account)) => Ok(CallerIdentity { arn, user_id, account }),
        _ => Err("GetCallerIdentityResult lacks Arn, UserId or Account"),
    }
}

fn is_sts(node: Node<'_, '_>, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(STS_NAMESPACE)
}

/// The element children of `node`; anything else but whitespace is refused.
fn elements<'a, 'i>(node: Node<'a, 'i>) -> Result<Vec<Node<'a, 'i>>, &'static str> {
    let mut out = Vec::new();
    for child in node.children() {
        match child.node_type() {
            NodeType::Element => out.push(child),
            NodeType::Text if child.text().is_some_and(|t| t.trim().is_empty()) => {}
            _ => return Err("unexpected text, comment or instruction"),
        }
    }
    Ok(out)
}

/// The text of an element that holds only non-empty text and no attributes.
fn leaf_text(node: Node<'_, '_>) -> Result<String, &'static str> {
    if node.attributes().len() != 0 {
        return Err("a field has attributes");
    }
    let mut children = node.children();
    match (children.next(), children.next()) {
        (Some(only), None) if only.is_text() => {
            let text = only.text().unwrap_or_default();
            if text.is_empty() || text.len() > 2048 {
                return Err("a field is empty or too long");
            }
            Ok(text.to_owned())
        }
        _ => Err("a field is not plain text"),
    }
}
