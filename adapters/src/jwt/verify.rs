//! JWS verification (RFC 7515 §5.2) and JWT claim validation (RFC 7519 §7.2), in the order
//! RFC 8725 asks for: header checks, key selection, signature, and only then the claims.

use std::sync::Arc;

use aws_lc_rs::signature::ParsedPublicKey;
use serde_json::{Map, Value};

use super::alg::Algorithm;
use super::decode::{self, Header, Segments, UnverifiedClaims};
use super::jwks::JwksCache;
use super::keys::{KeyDigest, KeySet, Selection};
use super::policy::{HeaderRule, IssuerRule, JwtPolicy};
use super::token_cache::{TokenCache, TokenCacheOptions};
use crate::clock::Clock;
use crate::source::SourceError;

/// Header members that point at keys or certificates outside the source's configured key
/// set. Trusting them lets a token bring its own key (RFC 8725 §3.10); they are refused,
/// never fetched.
const KEY_BEARING_HEADERS: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

/// Claims of a token whose signature, issuer, audience and times have been verified
/// against a [`JwtPolicy`]. Only the verifier makes one.
#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    algorithm: Algorithm,
    kid: Option<String>,
    issuer: Option<String>,
    audiences: Vec<String>,
    expires_at: i64,
    not_before: Option<i64>,
    issued_at: Option<i64>,
    claims: Map<String, Value>,
    /// The material of the key that verified the signature.
    key: KeyDigest,
}

impl VerifiedClaims {
    /// The digest of the verifying key's material, to tell later whether the key set
    /// still holds it.
    pub(crate) fn key_digest(&self) -> KeyDigest {
        self.key
    }

    /// The algorithm the signature verified with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The `kid` of the verifying key, as the header named it.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// `iss`, one of the policy's issuers; `None` only under [`IssuerRule::Absent`].
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// Every `aud` value; at least one is a configured audience.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// `exp`, seconds since the Unix epoch.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    pub fn not_before(&self) -> Option<i64> {
        self.not_before
    }

    pub fn issued_at(&self) -> Option<i64> {
        self.issued_at
    }

    /// Every claim of the payload, registered ones included.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// A claim by name; a name with dots that is not itself a top-level claim walks into
    /// nested objects (`kubernetes.io.namespace` finds `{"kubernetes.io": {"namespace":
    /// ...}}` only if no top-level claim is named so; see [`lookup`]).
    pub fn get(&self, name: &str) -> Option<&Value> {
        lookup(&self.claims, name)
    }

    /// A claim that must be a non-empty string: [`SourceError::MissingClaim`] when absent
    /// (or null), [`SourceError::InvalidClaim`] when of another type or empty.
    pub fn required_str(&self, name: &'static str) -> Result<&str, SourceError> {
        match self.get(name) {
            None | Some(Value::Null) => Err(SourceError::MissingClaim(name)),
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(_) => Err(SourceError::InvalidClaim(name)),
        }
    }

    /// A claim that must be a non-empty string or an integer (platforms disagree on how
    /// they spell numeric ids: GitHub and GitLab send `"74"`, Google sends `74`), as text.
    pub fn required_id(&self, name: &'static str) -> Result<String, SourceError> {
        match self.get(name) {
            None | Some(Value::Null) => Err(SourceError::MissingClaim(name)),
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
            Some(_) => Err(SourceError::InvalidClaim(name)),
        }
    }

    /// A scalar claim as text (strings, numbers, booleans); `None` when absent, null,
    /// empty, an object or an array, so an identity field built from it stays empty.
    pub fn text(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// Find `path` in `claims`: an exact top-level name first, else the dotted path through
/// nested objects, trying the longest name at each level (so `a.b.c` finds `{"a.b":
/// {"c": 1}}`).
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut cut = path.len();
    while let Some(dot) = path.get(..cut).and_then(|p| p.rfind('.')) {
        let (head, rest) = (path.get(..dot)?, path.get(dot + 1..)?);
        if let Some(Value::Object(inner)) = claims.get(head)
            && let Some(found) = lookup(inner, rest)
        {
            return Some(found);
        }
        cut = dot;
    }
    None
}

/// A token that passed the header checks, split and decoded, signature not yet checked.
pub(crate) struct Prepared<'a> {
    segments: Segments<'a>,
    header: Header,
    alg: Algorithm,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl Prepared<'_> {
    pub(crate) fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }

    pub(crate) fn alg(&self) -> Algorithm {
        self.alg
    }
}

/// Shape and header checks (RFC 7515 §5.2 steps 1-5, RFC 8725 §3.1, §3.10-3.11).
pub(crate) fn prepare<'a>(token: &'a str, policy: &JwtPolicy) -> Result<Prepared<'a>, SourceError> {
    let segments = decode::split(token)?;
    let header = decode::header(segments.header)?;
    let members = &header.members;
    // RFC 7519 §5.2: `cty: JWT` announces a nested token; RFC 7516 §4.1.2: `enc` is JWE.
    if let Some(cty) = members.get("cty") {
        let cty = cty.as_str().ok_or(SourceError::Malformed("header `cty` is not a string"))?;
        // RFC 7515 §4.1.10: `application/` may be left out of a media type.
        let media = match (cty.get(..12), cty.get(12..)) {
            (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case("application/") => rest,
            _ => cty,
        };
        if media.eq_ignore_ascii_case("JWT") {
            return Err(SourceError::NestedToken);
        }
    }
    if members.contains_key("enc") {
        return Err(SourceError::NestedToken);
    }
    for name in KEY_BEARING_HEADERS {
        if members.contains_key(name) {
            return Err(SourceError::ForbiddenHeader(name));
        }
    }
    // RFC 7515 §4.1.11: no extension is understood here, so any `crit` must be refused.
    if members.contains_key("crit") {
        return Err(SourceError::ForbiddenHeader("crit"));
    }
    // RFC 7797 §3, §6: `b64` changes what the signature covers and is only meaningful
    // listed in `crit`, refused above. A `b64` outside `crit` is ill-formed; another verifier
    // may honour it, so the token is refused rather than read one way here.
    if members.contains_key("b64") {
        return Err(SourceError::ForbiddenHeader("b64"));
    }
    match policy.header_rule() {
        HeaderRule::Open => {}
        HeaderRule::JwtSvid => check_jwt_svid_header(members)?,
        HeaderRule::Typ(expected) => match members.get("typ") {
            Some(Value::String(typ)) if typ.eq_ignore_ascii_case(expected) => {}
            _ => return Err(SourceError::Malformed("header `typ` is not the expected type")),
        },
    }
    let alg = Algorithm::from_name(&header.alg)
        .filter(|alg| policy.algorithms().contains(alg))
        .ok_or(SourceError::DisallowedAlgorithm)?;
    let payload = decode::b64(segments.payload, "payload is not base64url")?;
    let signature = decode::b64(segments.signature, "signature is not base64url")?;
    if signature.is_empty() {
        return Err(SourceError::Malformed("signature is empty"));
    }
    Ok(Prepared { segments, header, alg, payload, signature })
}

/// SPIFFE JWT-SVID §2: "Any header not described here, registered or private, MUST NOT
/// be included"; §2.3: `typ`, if set, is `JWT` or `JOSE`.
fn check_jwt_svid_header(members: &Map<String, Value>) -> Result<(), SourceError> {
    if members.keys().any(|name| !matches!(name.as_str(), "alg" | "kid" | "typ")) {
        return Err(SourceError::ForbiddenHeader("other than alg, kid, typ (JWT-SVID)"));
    }
    match members.get("typ") {
        None => Ok(()),
        Some(Value::String(typ)) if typ == "JWT" || typ == "JOSE" => Ok(()),
        Some(_) => Err(SourceError::Malformed("header `typ` is not JWT or JOSE (JWT-SVID)")),
    }
}

/// Verify the signature with `key`, then the claims against `policy` at time `now`.
pub(crate) fn finish(
    prepared: Prepared<'_>,
    (key, digest): (&ParsedPublicKey, KeyDigest),
    policy: &JwtPolicy,
    now: i64,
) -> Result<VerifiedClaims, SourceError> {
    check_signature(key, prepared.segments.signing_input.as_bytes(), &prepared.signature)?;
    let claims = UnverifiedClaims::parse(&prepared.payload)?.into_verified_map();
    check_claims(claims, (prepared.alg, prepared.header.kid, digest), policy, now)
}

/// RFC 7515 §5.2 step 8: the signature over the signing input, with the key selected for
/// the token's `alg` ([`KeySet::select`]), which was parsed for that algorithm alone. An
/// ECDSA signature is JOSE's fixed-width `R || S` (RFC 7518 §3.4), never DER.
pub(crate) fn check_signature(
    key: &ParsedPublicKey,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), SourceError> {
    key.verify_sig(signing_input, signature).map_err(|_| SourceError::BadSignature)
}

fn check_claims(
    claims: Map<String, Value>,
    (algorithm, kid, key): (Algorithm, Option<String>, KeyDigest),
    policy: &JwtPolicy,
    now: i64,
) -> Result<VerifiedClaims, SourceError> {
    // RFC 7519 §4.1.1, exact string comparison: no case folding, no trailing-slash games.
    let issuer = match (policy.issuer_rule(), claims.get("iss")) {
        (IssuerRule::OneOf(issuers), Some(Value::String(iss))) => {
            if !issuers.contains(iss) {
                return Err(SourceError::IssuerMismatch);
            }
            Some(iss.clone())
        }
        (IssuerRule::OneOf(_), Some(_)) => return Err(SourceError::InvalidClaim("iss")),
        (IssuerRule::OneOf(_), None) => return Err(SourceError::MissingClaim("iss")),
        (IssuerRule::Absent, None) => None,
        (IssuerRule::Absent, Some(_)) => return Err(SourceError::IssuerMismatch),
    };

    // RFC 7519 §4.1.4-4.1.6: NumericDate. Only JSON integers from 0 (the epoch) on: a
    // string, a float, a bool or a date before 1970 is an invalid claim, never an absent one.
    let expires_at = numeric_date(&claims, "exp")?.ok_or(SourceError::MissingClaim("exp"))?;
    let not_before = numeric_date(&claims, "nbf")?;
    let issued_at = numeric_date(&claims, "iat")?;
    let leeway = policy.leeway();
    if now > expires_at.saturating_add(leeway) {
        return Err(SourceError::Expired);
    }
    if not_before.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(SourceError::NotYetValid);
    }
    if issued_at.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(SourceError::IssuedInFuture);
    }
    let start = issued_at.or(not_before);
    if start.is_some_and(|start| expires_at < start) {
        return Err(SourceError::InvalidClaim("exp"));
    }
    if expires_at.saturating_sub(start.unwrap_or(now)) > policy.max_lifetime() {
        return Err(SourceError::LifetimeTooLong);
    }

    // RFC 7519 §4.1.3: a string or an array of strings; one must be ours.
    let audiences = match claims.get("aud") {
        None => return Err(SourceError::MissingClaim("aud")),
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(SourceError::InvalidClaim("aud")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(SourceError::InvalidClaim("aud")),
    };
    if !audiences.iter().any(|aud| policy.audiences().contains(aud)) {
        return Err(SourceError::AudienceMismatch);
    }

    Ok(VerifiedClaims { algorithm, kid, issuer, audiences, expires_at, not_before, issued_at, claims, key })
}

fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, SourceError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            n.as_i64().filter(|secs| *secs >= 0).map(Some).ok_or(SourceError::InvalidClaim(name))
        }
        Some(_) => Err(SourceError::InvalidClaim(name)),
    }
}

fn selection_error(selection: &Selection<'_>) -> SourceError {
    match selection {
        // The kid names a key whose type or own `alg` does not fit the token's `alg`.
        Selection::Incompatible => SourceError::DisallowedAlgorithm,
        Selection::Found(..) | Selection::Missing | Selection::Ambiguous => SourceError::UnknownKey,
    }
}

/// Verify a token against a key set already at hand, with no network: what
/// [`JwtVerifier::verify`] does once it has keys.
pub fn verify_with_keys(
    token: &str,
    policy: &JwtPolicy,
    keys: &KeySet,
    now: i64,
) -> Result<VerifiedClaims, SourceError> {
    let prepared = prepare(token, policy)?;
    match keys.select(prepared.kid(), prepared.alg()) {
        Selection::Found(key, digest) => finish(prepared, (key, digest), policy, now),
        other => Err(selection_error(&other)),
    }
}

/// A JWS whose header passed the shared rules and whose signature verified against the
/// key set, with its payload parsed strictly but none of its claims checked: for tokens
/// whose claims follow another profile than RFC 7519 §7.2's (a Security Event Token,
/// RFC 8417, has no `exp`), which the caller checks itself. Only
/// [`JwtVerifier::verify_signature`] makes one.
#[derive(Debug, Clone)]
pub struct SignedPayload {
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl SignedPayload {
    /// Every JOSE header member.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// Every payload member, none checked.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
}

/// A source's JWT verifier: its policy plus its key cache. Every JWT source kind holds one
/// and maps the [`VerifiedClaims`] to an identity its own way.
#[derive(Debug)]
pub struct JwtVerifier {
    policy: JwtPolicy,
    keys: Arc<JwksCache>,
    clock: Arc<dyn Clock>,
    /// Tokens this verifier's source verified before; see [`super::token_cache`].
    cache: Option<TokenCache>,
}

impl JwtVerifier {
    /// `keys` must have been built for `policy.algorithms()`. No token cache.
    pub fn new(policy: JwtPolicy, keys: Arc<JwksCache>, clock: Arc<dyn Clock>) -> Self {
        Self { policy, keys, clock, cache: None }
    }

    /// Keep verified tokens in a cache of this verifier's own, as `options` say.
    pub fn with_token_cache(mut self, options: TokenCacheOptions) -> Self {
        self.cache = TokenCache::new(options);
        self
    }

    pub(crate) fn token_cache(&self) -> Option<&TokenCache> {
        self.cache.as_ref()
    }

    /// The time as this verifier's clock reads it, seconds since the Unix epoch.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn policy(&self) -> &JwtPolicy {
        &self.policy
    }

    pub fn keys(&self) -> &Arc<JwksCache> {
        &self.keys
    }

    /// Whether keys are at hand (for readiness).
    pub fn is_ready(&self) -> bool {
        self.keys.is_warm()
    }

    /// Fetch the key set now (through discovery where configured): the kids it holds,
    /// or why the fetch failed.
    pub async fn probe(&self) -> Result<String, String> {
        let keys = self.keys.refresh().await.map_err(|e| e.to_string())?;
        let kids = keys.kids();
        if kids.is_empty() {
            return Err("the key set holds no usable key".to_string());
        }
        Ok(format!("key set fetched, {} key(s): {}", kids.len(), kids.join(", ")))
    }

    /// The checks [`verify`](Self::verify) makes before it needs a key: the token's shape,
    /// its header against the policy, and an `iss` the policy requires to be absent. For
    /// a source that picks one of several verifiers by what the token says (a `spiffe`
    /// source's trust domains), so every token meets these first, as with one verifier.
    pub fn precheck(&self, token: &str) -> Result<(), SourceError> {
        self.before_keys(token).map(|_| ())
    }

    fn before_keys<'a>(&self, token: &'a str) -> Result<Prepared<'a>, SourceError> {
        let prepared = prepare(token, &self.policy)?;
        // A source requiring no `iss` is routed to by token type, so routing cannot turn
        // away tokens that name an issuer: do it here, before any key fetch they could
        // cause (DESIGN.md "The pipeline": no network call for issuers nobody trusts).
        if *self.policy.issuer_rule() == IssuerRule::Absent {
            match decode::peek_issuer(token) {
                Err(SourceError::MissingClaim("iss")) => {}
                Ok(_) | Err(SourceError::InvalidClaim("iss")) => return Err(SourceError::IssuerMismatch),
                Err(other) => return Err(other),
            }
        }
        Ok(prepared)
    }

    /// The key set to verify `prepared` with: the cached one, or one refetched (throttled,
    /// see [`JwksCache::refresh_for_unknown_kid`]) when it has no key for the token's `kid`.
    async fn keys_for(&self, prepared: &Prepared<'_>) -> Result<Arc<KeySet>, SourceError> {
        let keys = self.keys.keys().await?;
        if matches!(keys.select(prepared.kid(), prepared.alg()), Selection::Missing) {
            return self.keys.refresh_for_unknown_kid(&keys).await.ok_or(SourceError::UnknownKey);
        }
        Ok(keys)
    }

    /// Verify a compact JWS's header and signature as [`verify`](Self::verify) does
    /// (pinned algorithms, refused headers, `kid` selection with one throttled refetch),
    /// and parse its payload strictly, without checking any claim: see [`SignedPayload`].
    pub async fn verify_signature(&self, token: &str) -> Result<SignedPayload, SourceError> {
        let prepared = self.before_keys(token)?;
        let keys = self.keys_for(&prepared).await?;
        match keys.select(prepared.kid(), prepared.alg()) {
            Selection::Found(key, _) => {
                check_signature(key, prepared.segments.signing_input.as_bytes(), &prepared.signature)?;
                let claims = UnverifiedClaims::parse(&prepared.payload)?.into_verified_map();
                Ok(SignedPayload { header: prepared.header.members, claims })
            }
            other => Err(selection_error(&other)),
        }
    }

    /// Verify a compact JWS. An unknown `kid` refetches the key set (throttled, see
    /// [`JwksCache::refresh_for_unknown_kid`]) before failing with
    /// [`SourceError::UnknownKey`].
    pub async fn verify(&self, token: &str) -> Result<VerifiedClaims, SourceError> {
        let prepared = self.before_keys(token)?;
        let keys = self.keys_for(&prepared).await?;
        match keys.select(prepared.kid(), prepared.alg()) {
            // Read the clock after any fetch: a slow fetch must not stretch validity.
            Selection::Found(key, digest) => finish(prepared, (key, digest), &self.policy, self.clock.now()),
            other => Err(selection_error(&other)),
        }
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
