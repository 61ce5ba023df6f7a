//! Decoding a compact JWS (RFC 7515 §7.1) without trusting it: size and shape checks, strict
//! base64url, strict JSON. Nothing here verifies a signature; what comes out is either a
//! [`Header`] still to be checked against a policy, or [`UnverifiedClaims`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::json::{self, JsonError};
use crate::source::SourceError;

/// The largest token accepted, in bytes (DESIGN.md "The pipeline": token <= 16 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The three base64url segments of a compact JWS, not yet decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segments<'a> {
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
    /// `header "." payload`: the JWS signing input (RFC 7515 §5.2 step 8).
    pub signing_input: &'a str,
}

/// Split a token into its segments: at most [`MAX_TOKEN_BYTES`], exactly three parts.
/// Five parts is the JWE compact form (RFC 7516 §7.1), refused as a nested token.
pub(crate) fn split(token: &str) -> Result<Segments<'_>, SourceError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(SourceError::Malformed("token is larger than 16 KiB"));
    }
    if token.is_empty() {
        return Err(SourceError::Malformed("token is empty"));
    }
    let dots = token.bytes().filter(|b| *b == b'.').count();
    match dots {
        2 => {}
        4 => return Err(SourceError::NestedToken),
        _ => return Err(SourceError::Malformed("token does not have three parts")),
    }
    let mut parts = token.splitn(3, '.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SourceError::Malformed("token does not have three parts"));
    };
    // header.len() + 1 + payload.len() is the index of the second dot, a char boundary.
    let signing_input = token
        .get(..header.len() + 1 + payload.len())
        .ok_or(SourceError::Malformed("token does not have three parts"))?;
    Ok(Segments { header, payload, signature, signing_input })
}

/// Strict base64url without padding (RFC 7515 §2, §C): no `=`, no whitespace, no
/// non-canonical trailing bits.
pub(crate) fn b64(segment: &str, what: &'static str) -> Result<Vec<u8>, SourceError> {
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| SourceError::Malformed(what))
}

fn json_object(bytes: &[u8], what: Part) -> Result<Map<String, Value>, SourceError> {
    json::parse_object(bytes).map_err(|e| {
        SourceError::Malformed(match (what, e) {
            (Part::Header, JsonError::DuplicateMember) => "header has a duplicate member",
            (Part::Header, JsonError::Invalid) => "header is not valid JSON",
            (Part::Header, JsonError::NotAnObject) => "header is not a JSON object",
            (Part::Payload, JsonError::DuplicateMember) => "payload has a duplicate member",
            (Part::Payload, JsonError::Invalid) => "payload is not valid JSON",
            (Part::Payload, JsonError::NotAnObject) => "payload is not a JSON object",
        })
    })
}

#[derive(Debug, Clone, Copy)]
enum Part {
    Header,
    Payload,
}

/// A decoded JOSE header (RFC 7515 §4), not yet checked against any policy.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    /// `alg`, exactly as written.
    pub alg: String,
    pub kid: Option<String>,
    pub members: Map<String, Value>,
}

pub(crate) fn header(segment: &str) -> Result<Header, SourceError> {
    let members = json_object(&b64(segment, "header is not base64url")?, Part::Header)?;
    let alg = match members.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        Some(_) => return Err(SourceError::Malformed("header `alg` is not a string")),
        None => return Err(SourceError::Malformed("header has no `alg`")),
    };
    let kid = match members.get("kid") {
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(SourceError::Malformed("header `kid` is not a string")),
        None => None,
    };
    Ok(Header { alg, kid, members })
}

/// Claims decoded from a payload whose signature has not been checked. Only the verifier
/// and the routing peek look inside, and neither trusts what it reads.
#[derive(Debug, Clone)]
pub struct UnverifiedClaims(Map<String, Value>);

impl UnverifiedClaims {
    /// Decode a payload already base64-decoded (the verifier decodes before checking the
    /// signature, and parses the JSON only after).
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, SourceError> {
        json_object(bytes, Part::Payload).map(Self)
    }

    /// Give up the unverified marker; for the verifier, once the signature has verified.
    pub(crate) fn into_verified_map(self) -> Map<String, Value> {
        self.0
    }
}

/// The `iss` of a token, UNVERIFIED: for routing a token to the source that names this
/// issuer before any network call (DESIGN.md "The pipeline"). Applies the same size and
/// shape checks as verification; never use the result as a fact about the caller.
///
/// Only `iss` is read: the other members are skipped, not built, because the source's
/// verifier parses the whole payload strictly (duplicates refused) once it has chosen.
pub fn peek_issuer(token: &str) -> Result<String, SourceError> {
    #[derive(serde::Deserialize)]
    struct Peek {
        // serde refuses a duplicate `iss`, so the routing key is never ambiguous.
        iss: Option<Value>,
    }
    let segments = split(token)?;
    header(segments.header)?;
    let bytes = b64(segments.payload, "payload is not base64url")?;
    // A derived struct would also accept a JSON array; the payload must be an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(SourceError::Malformed("payload is not a JSON object"));
    }
    let peek: Peek = serde_json::from_slice(&bytes).map_err(|e| {
        if e.to_string().starts_with("duplicate field") {
            SourceError::Malformed("payload has a duplicate member")
        } else {
            SourceError::Malformed("payload is not a JSON object")
        }
    })?;
    match peek.iss {
        Some(Value::String(iss)) => Ok(iss),
        Some(_) => Err(SourceError::InvalidClaim("iss")),
        None => Err(SourceError::MissingClaim("iss")),
    }
}

/// The `sub` of a token, UNVERIFIED: for a source holding several key sets to pick the
/// one that must have signed the token (a `spiffe` source's trust domains). The payload
/// is parsed as strictly as verification parses it (a duplicate `sub` is refused), and the
/// token is then verified whole with the keys picked; never use the result otherwise.
pub fn peek_subject(token: &str) -> Result<String, SourceError> {
    let segments = split(token)?;
    header(segments.header)?;
    let claims = UnverifiedClaims::parse(&b64(segments.payload, "payload is not base64url")?)?;
    match claims.0.get("sub") {
        Some(Value::String(sub)) => Ok(sub.clone()),
        Some(_) => Err(SourceError::InvalidClaim("sub")),
        None => Err(SourceError::MissingClaim("sub")),
    }
}

/// The `jti` of a token that has been VERIFIED, for revocations by `jti`: its payload
/// parsed as strictly as verification parses it. `None` for a token without a string
/// `jti`, or one that is not a compact JWS. Never call it on a token not yet verified.
pub fn verified_jti(token: &str) -> Option<String> {
    let segments = split(token).ok()?;
    let claims = UnverifiedClaims::parse(&b64(segments.payload, "payload is not base64url").ok()?).ok()?;
    match claims.0.get("jti") {
        Some(Value::String(jti)) => Some(jti.clone()),
        _ => None,
    }
}

/// The claims of a token that has been VERIFIED, parsed as strictly as verification parses
/// them: for checks a grant adds after its source verified the token (the `aud` and `jti`
/// of an RFC 7523 assertion). `None` for a token that is not a compact JWS with a JSON
/// object payload. Never call it on a token not yet verified.
pub fn verified_claims(token: &str) -> Option<Map<String, Value>> {
    let segments = split(token).ok()?;
    let claims = UnverifiedClaims::parse(&b64(segments.payload, "payload is not base64url").ok()?).ok()?;
    Some(claims.0)
}

/// A claim of a token that has been VERIFIED, as [`verified_claims`] reads it: RFC 8693
/// `act` and `may_act` for delegation, the `scope` of an access token a Txn-Token request
/// presents. `None` for a token without the claim, or
/// one that is not a compact JWS. Never call it on a token not yet verified.
pub fn verified_claim(token: &str, name: &str) -> Option<Value> {
    verified_claims(token)?.remove(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", enc(header), enc(payload))
    }

    #[test]
    fn the_jti_of_a_verified_token_is_read_as_strictly_as_verification_reads_it() {
        let header = r#"{"alg":"RS256","typ":"JWT"}"#;
        assert_eq!(verified_jti(&token(header, r#"{"jti":"j-1"}"#)).as_deref(), Some("j-1"));
        assert_eq!(verified_jti(&token(header, r#"{"jti":7}"#)), None);
        assert_eq!(verified_jti(&token(header, r#"{"sub":"x"}"#)), None);
        assert_eq!(verified_jti(&token(header, r#"{"jti":"a","jti":"b"}"#)), None, "duplicate claims");
        assert_eq!(verified_jti("not-a-jwt"), None);
        let act = r#"{"act":{"sub":"a","act":{"sub":"b"}}}"#;
        assert_eq!(
            verified_claim(&token(header, act), "act"),
            Some(serde_json::json!({"sub":"a","act":{"sub":"b"}}))
        );
        assert_eq!(verified_claim(&token(header, act), "may_act"), None);
        assert_eq!(verified_claim(&token(header, r#"{"act":1,"act":2}"#), "act"), None, "duplicate claims");
    }

    #[test]
    fn peek_reads_iss_without_verifying() {
        let t = token(r#"{"alg":"RS256"}"#, r#"{"iss":"https://idp.example","sub":"x"}"#);
        assert_eq!(peek_issuer(&t).unwrap(), "https://idp.example");
    }

    #[test]
    fn peek_refuses_junk_as_malformed() {
        for junk in ["", "abc", "a.b", "a.b.c.d", "...", "!!!.@@@.###", "e30.e30.e30.e30.e30.e30"] {
            assert!(
                matches!(peek_issuer(junk), Err(SourceError::Malformed(_))),
                "{junk}: {:?}",
                peek_issuer(junk)
            );
        }
        assert!(matches!(peek_issuer("a.b.c.d.e"), Err(SourceError::NestedToken)));
        let not_object = token(r#"{"alg":"RS256"}"#, "[1]");
        assert!(matches!(peek_issuer(&not_object), Err(SourceError::Malformed(_))));
        let bad_header = token("[]", r#"{"iss":"x"}"#);
        assert!(matches!(peek_issuer(&bad_header), Err(SourceError::Malformed(_))));
    }

    #[test]
    fn peek_reports_missing_or_wrongly_typed_iss() {
        let t = token(r#"{"alg":"RS256"}"#, r#"{"sub":"x"}"#);
        assert!(matches!(peek_issuer(&t), Err(SourceError::MissingClaim("iss"))));
        let t = token(r#"{"alg":"RS256"}"#, r#"{"iss":["x"]}"#);
        assert!(matches!(peek_issuer(&t), Err(SourceError::InvalidClaim("iss"))));
    }

    #[test]
    fn peek_applies_size_and_duplicate_checks() {
        let big = format!("{}.{}.x", enc(r#"{"alg":"RS256"}"#), "A".repeat(MAX_TOKEN_BYTES));
        assert!(matches!(peek_issuer(&big), Err(SourceError::Malformed(_))));
        let dup = token(r#"{"alg":"RS256"}"#, r#"{"iss":"a","iss":"b"}"#);
        assert!(matches!(peek_issuer(&dup), Err(SourceError::Malformed("payload has a duplicate member"))));
    }

    #[test]
    fn peek_subject_reads_sub_as_strictly_as_verification_parses() {
        let t = token(r#"{"alg":"ES256"}"#, r#"{"sub":"spiffe://example.org/x"}"#);
        assert_eq!(peek_subject(&t).unwrap(), "spiffe://example.org/x");
        let dup =
            token(r#"{"alg":"ES256"}"#, r#"{"sub":"spiffe://a.example/x","sub":"spiffe://b.example/x"}"#);
        assert!(matches!(peek_subject(&dup), Err(SourceError::Malformed("payload has a duplicate member"))));
        let t = token(r#"{"alg":"ES256"}"#, r#"{"iss":"x"}"#);
        assert!(matches!(peek_subject(&t), Err(SourceError::MissingClaim("sub"))));
        let t = token(r#"{"alg":"ES256"}"#, r#"{"sub":1}"#);
        assert!(matches!(peek_subject(&t), Err(SourceError::InvalidClaim("sub"))));
        assert!(matches!(peek_subject("a.b"), Err(SourceError::Malformed(_))));
    }

    #[test]
    fn base64_must_be_strict() {
        let header = enc(r#"{"alg":"RS256"}"#);
        // `{"iss":"a"}` encodes to 15 characters; padded with `=` it is standard, not JWS.
        let payload = enc(r#"{"iss":"a"}"#);
        assert!(peek_issuer(&format!("{header}.{payload}.x")).is_ok());
        assert!(peek_issuer(&format!("{header}.{payload}=.x")).is_err());
        assert!(peek_issuer(&format!("{header}.{payload} .x")).is_err());
        let standard = payload.replace('-', "+").replace('_', "/");
        if standard != payload {
            assert!(peek_issuer(&format!("{header}.{standard}.x")).is_err());
        }
        // Non-zero trailing bits: the same bytes, a different (non-canonical) spelling.
        assert_eq!(b64("QQ", "x").unwrap(), b"A");
        assert!(b64("QR", "x").is_err());
    }

    #[test]
    fn split_finds_the_signing_input() {
        let s = split("aa.bb.cc").unwrap();
        assert_eq!((s.header, s.payload, s.signature, s.signing_input), ("aa", "bb", "cc", "aa.bb"));
        assert!(matches!(split("aa.bb.cc.dd.ee"), Err(SourceError::NestedToken)));
        assert!(matches!(split("aa.bb"), Err(SourceError::Malformed(_))));
    }
}
