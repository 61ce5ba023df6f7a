//! Tessera as a Transaction Token Service (draft-ietf-oauth-transaction-tokens-10).
//!
//! A Txn-Token request is an RFC 8693 token exchange with `requested_token_type`
//! `urn:ietf:params:oauth:token-type:txn_token` (draft §10.1). Tessera's readings:
//! - the requesting workload authenticates with its own platform token as an RFC 7523
//!   §2.2 client assertion (`client_assertion_type` `…:jwt-bearer`), verified by the
//!   configured sources like any subject token (draft §10.5 asks for signed client
//!   authentication JWTs); the rules match on that workload;
//! - `audience` names the trust domain, which a `txn_token` target's `audience` holds;
//! - the subject comes from `subject_token`: a JWT, ID token or JWT access token the
//!   sources verify, a Txn-Token of the trust domain (a replacement), or an unsigned JSON
//!   object where the rule names `unsigned_json`. Self-signed JWTs are refused: Tessera
//!   holds no key of the requesting workload to verify one with;
//! - the rule's `scopes` bound the Txn-Token's scope, and so does the subject token's own
//!   `scope` when it carries one (draft §17, "Scope Processing"): the rule is the trusted
//!   source of the scope a token without one is associated with;
//! - `request_details` becomes `tctx` and `request_context` becomes `rctx`, as given; a
//!   rule's `claims:` are `tctx` values the TTS asserts;
//! - a replacement keeps `txn`, `sub` and `aud`, may narrow the scope, may add context
//!   members but change none, never outlives the Txn-Token it replaces, and appends the
//!   requesting workload to `req_wl` (comma-separated: the draft keeps `req_wl` a string
//!   and leaves how to keep the call chain open).
//!
//! # Layout
//! - `context.rs`: strict parsing of the JSON objects a request carries, and the
//!   add-never-change rule of replacements.
//! - `verify.rs`: [`TxnTokenVerifier`], for Txn-Tokens presented as subject tokens.
//! - this file: the request the edge reads ([`TxnRequest`]), and [`run`], the service.

pub mod context;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tessera_adapters::jwt;
use tessera_adapters::oauth::client_assertion_type;
use tessera_adapters::oauth::token_type;
use tessera_adapters::targets::txn_token::{
    GRANT_SUBJECT_TOKEN_TYPES, GRANT_SUBJECTS, SubjectKind, is_scope_token, split_list,
};
use tessera_adapters::{
    CredentialTarget, Grant, Secret, SourceError, SubjectToken, SubjectTokenType, VerifiedIdentity,
};

pub use verify::{PriorTxn, TxnTokenVerifier};

use crate::exchange::{ExchangeError, ExchangeRequest, Exchanged, Pipeline, Trail};
use crate::http::error::WireError;
use crate::jwt_bearer::GrantType;
use crate::mapping::Request;
use crate::mapping::glob::Pattern;

/// What a Txn-Token request adds to a token exchange, read at the edge.
#[derive(Debug)]
pub struct TxnRequest {
    /// The requesting workload's own platform token (RFC 7523 §2.2 `client_assertion`).
    pub client_assertion: Secret<String>,
    /// The kind of `subject_token` (its value is the exchange's subject token).
    pub subject_kind: SubjectKind,
    /// The requested scope values, each once, in order.
    pub scopes: Vec<String>,
    /// `request_context` (draft §10.1): becomes `rctx`.
    pub request_context: Option<Map<String, Value>>,
    /// `request_details` (draft §10.1): becomes `tctx`.
    pub request_details: Option<Map<String, Value>>,
}

/// Why the Txn-Token service refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("no txn_token target has audience `{0}`")]
    UnknownTrustDomain(String),
    #[error("client assertion refused: {0}")]
    ClientAuthentication(SourceError),
    #[error("subject token refused: {0}")]
    Subject(SourceError),
    #[error("the rule does not accept subject tokens of type {0}")]
    SubjectTypeNotAllowed(&'static str),
    #[error("the rule does not allow transactions for subject `{0}`")]
    SubjectNotAllowed(String),
    #[error("scope `{0}` is not granted by the rule")]
    ScopeNotGranted(String),
    #[error("scope `{0}` is beyond the subject token's scope")]
    ScopeWidened(String),
    #[error("a replacement cannot change the Txn-Token's `{0}`")]
    IdentityChanged(&'static str),
    #[error("a replacement cannot change `{claim}` member `{member}`")]
    ContextChanged { claim: &'static str, member: String },
    #[error("the Txn-Token to replace has expired")]
    ReplacedExpired,
    #[error("this broker has no Txn-Token verifier")]
    NoVerifier,
}

impl TxnError {
    /// The greppable reason code for logs and audit.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownTrustDomain(_) => "TS-TXN-TRUST-DOMAIN",
            Self::ClientAuthentication(_) => "TS-TXN-CLIENT-AUTH",
            Self::Subject(e) => e.code(),
            Self::SubjectTypeNotAllowed(_) => "TS-TXN-SUBJECT-TYPE",
            Self::SubjectNotAllowed(_) => "TS-TXN-SUBJECT",
            Self::ScopeNotGranted(_) => "TS-TXN-SCOPE",
            Self::ScopeWidened(_) => "TS-TXN-SCOPE-WIDENED",
            Self::IdentityChanged(_) => "TS-TXN-SUB-CHANGE",
            Self::ContextChanged { .. } => "TS-TXN-CONTEXT-CHANGE",
            Self::ReplacedExpired => "TS-SRC-EXPIRED",
            Self::NoVerifier => "TS-TXN-NO-VERIFIER",
        }
    }

    /// Whether Tessera or an upstream failed, rather than the request being refused.
    pub fn is_failure(&self) -> bool {
        match self {
            Self::ClientAuthentication(SourceError::Upstream { .. })
            | Self::Subject(SourceError::Upstream { .. })
            | Self::NoVerifier => true,
            Self::UnknownTrustDomain(_)
            | Self::ClientAuthentication(_)
            | Self::Subject(_)
            | Self::SubjectTypeNotAllowed(_)
            | Self::SubjectNotAllowed(_)
            | Self::ScopeNotGranted(_)
            | Self::ScopeWidened(_)
            | Self::IdentityChanged(_)
            | Self::ContextChanged { .. }
            | Self::ReplacedExpired => false,
        }
    }
}

/// Read a Txn-Token request from the parameters the edge holds (`get` answers a known
/// parameter's value, an empty one as absent). Every check that needs no key or rule is
/// made here.
pub(crate) fn read_request<'p>(
    get: impl Fn(&str) -> Option<&'p str>,
    max_token_bytes: usize,
    request_id: &str,
    client_addr: Option<String>,
) -> Result<ExchangeRequest, WireError> {
    // draft §10.5 / RFC 7523 §2.2: the workload authenticates with a JWT assertion.
    if get("client_assertion_type") != Some(client_assertion_type::JWT_BEARER)
        || get("client_secret").is_some()
    {
        return Err(WireError::InvalidTxnClient);
    }
    let assertion = get("client_assertion").map(str::trim_ascii).filter(|a| !a.is_empty());
    let assertion = assertion.ok_or(WireError::InvalidTxnClient)?;
    let token = get("subject_token")
        .map(str::trim_ascii)
        .filter(|t| !t.is_empty())
        .ok_or(WireError::MissingSubjectToken)?;
    if token.len() > max_token_bytes || assertion.len() > max_token_bytes {
        return Err(WireError::TokenTooLarge);
    }
    let kind = get("subject_token_type").ok_or(WireError::MissingSubjectTokenType)?;
    let kind = SubjectKind::from_uri(kind).ok_or(WireError::UnsupportedSubjectTokenType)?;
    let audience = get("audience").ok_or(WireError::MissingAudience)?;
    // draft §10.1: `scope` is required.
    let scopes: Vec<String> =
        split_list(get("scope").unwrap_or("")).into_iter().map(str::to_string).collect();
    if scopes.is_empty() || !scopes.iter().all(|s| is_scope_token(s)) {
        return Err(WireError::TxnScope);
    }
    let object =
        |name| get(name).map(context::parse_object).transpose().map_err(|_| WireError::MalformedContext);
    let txn = TxnRequest {
        client_assertion: Secret::new(assertion.to_string()),
        subject_kind: kind,
        request_context: object("request_context")?,
        request_details: object("request_details")?,
        scopes,
    };
    let token_type =
        if kind == SubjectKind::IdToken { SubjectTokenType::IdToken } else { SubjectTokenType::Jwt };
    Ok(ExchangeRequest {
        request_id: request_id.to_string(),
        subject_token: SubjectToken { token_type, value: Secret::new(token.to_string()) },
        audience: audience.to_string(),
        scope: Some(txn.scopes.join(" ")),
        requested_token_type: Some(token_type::TXN_TOKEN.to_string()),
        client_addr,
        grant_type: GrantType::TokenExchange,
        actor_token: None,
        txn: Some(txn),
    })
}

/// Who the transaction is for, and what bounds its scope.
struct Subject {
    sub: String,
    /// The scope the subject token carries, when it carries one.
    scope: Option<Vec<String>>,
    /// The Txn-Token being replaced.
    prior: Option<PriorTxn>,
}

/// The `txn_token` target of trust domain `audience`.
fn target_for<'p>(pipeline: &'p Pipeline, audience: &str) -> Option<&'p Arc<dyn CredentialTarget>> {
    pipeline.targets().find(|t| {
        t.issued_token_type() == token_type::TXN_TOKEN
            && t.issued_jwt().is_some_and(|j| j.audience == audience)
    })
}

/// Verify a JWT with the source its issuer routes to.
async fn verify_jwt(pipeline: &Pipeline, token: &SubjectToken) -> Result<VerifiedIdentity, SourceError> {
    let source = pipeline.router().route(token)?;
    source.verify(token).await
}

/// The scope values a verified JWT carries in `scope` (RFC 8693 §4.2), if any.
fn scope_claim(token: &str) -> Result<Option<Vec<String>>, SourceError> {
    match jwt::verified_claim(token, "scope") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(split_list(&s).into_iter().map(str::to_string).collect())),
        Some(_) => Err(SourceError::InvalidClaim("scope")),
    }
}

async fn subject(
    pipeline: &Pipeline,
    req: &ExchangeRequest,
    kind: SubjectKind,
    target: &dyn CredentialTarget,
) -> Result<Subject, ExchangeError> {
    let token = req.subject_token.value.expose();
    match kind {
        SubjectKind::Jwt | SubjectKind::IdToken | SubjectKind::AccessToken => {
            let verified = verify_jwt(pipeline, &req.subject_token).await.map_err(TxnError::Subject)?;
            let jti = jwt::verified_jti(token);
            let now_ms = pipeline.clock().now_millis();
            if let Some(revoked) =
                pipeline.revocations().identity(verified.identity(), jti.as_deref(), now_ms)
            {
                return Err(revoked.into());
            }
            let scope = scope_claim(token).map_err(TxnError::Subject)?;
            Ok(Subject { sub: verified.identity().id.clone(), scope, prior: None })
        }
        SubjectKind::TxnToken => {
            let verifier = pipeline.txn_tokens().ok_or(TxnError::NoVerifier)?;
            let jwt = target.issued_jwt().ok_or(TxnError::NoVerifier)?;
            let prior = verifier
                .verify(token, &jwt.audience, jwt.algorithm.as_str(), target.max_ttl())
                .map_err(TxnError::Subject)?;
            Ok(Subject { sub: prior.sub.clone(), scope: Some(prior.scope.clone()), prior: Some(prior) })
        }
        SubjectKind::UnsignedJson => {
            let object = context::parse_object(token).map_err(|_| {
                TxnError::Subject(SourceError::Malformed("unsigned_json subject is no JSON object"))
            })?;
            let sub = match object.get("sub") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(_) => return Err(TxnError::Subject(SourceError::InvalidClaim("sub")).into()),
                None => return Err(TxnError::Subject(SourceError::MissingClaim("sub")).into()),
            };
            let scope = match object.get("scope") {
                None => None,
                Some(Value::String(s)) => Some(split_list(s).into_iter().map(str::to_string).collect()),
                Some(_) => return Err(TxnError::Subject(SourceError::InvalidClaim("scope")).into()),
            };
            Ok(Subject { sub, scope, prior: None })
        }
    }
}

/// The `tctx` and `rctx` of a Txn-Token about to be issued.
struct Contexts {
    tctx: Map<String, Value>,
    rctx: Map<String, Value>,
}

/// The contexts of the new Txn-Token: the request's, over the replaced token's where there
/// is one (adding members, changing none), with the rule's claims as TTS-asserted `tctx`
/// members where the request set none.
fn contexts(
    txn: &TxnRequest,
    prior: Option<&PriorTxn>,
    rule_claims: &Map<String, Value>,
) -> Result<Contexts, TxnError> {
    let empty = Map::new();
    let details = txn.request_details.as_ref().unwrap_or(&empty);
    let request_context = txn.request_context.as_ref().unwrap_or(&empty);
    let (tctx, rctx) = match prior {
        None => (details.clone(), request_context.clone()),
        Some(prior) => {
            // A replacement naming the transaction's own values tries to change them.
            for added in [details, request_context] {
                for (name, held) in [("sub", &prior.sub), ("txn", &prior.txn)] {
                    if added.get(name).is_some_and(|v| v.as_str() != Some(held.as_str())) {
                        return Err(TxnError::IdentityChanged(if name == "sub" { "sub" } else { "txn" }));
                    }
                }
            }
            let tctx = context::extend_only(prior.tctx.clone(), details)
                .map_err(|c| TxnError::ContextChanged { claim: "tctx", member: c.member })?;
            let rctx = context::extend_only(prior.rctx.clone(), request_context)
                .map_err(|c| TxnError::ContextChanged { claim: "rctx", member: c.member })?;
            (tctx, rctx)
        }
    };
    let mut tctx = tctx;
    for (name, value) in rule_claims {
        tctx.entry(name.clone()).or_insert_with(|| value.clone());
    }
    Ok(Contexts { tctx, rctx })
}

/// Serve one Txn-Token request: authenticate the requesting workload, let the rules decide,
/// establish the subject, narrow scope and context, and issue through the target.
pub(crate) async fn run(
    pipeline: &Pipeline,
    req: &ExchangeRequest,
    txn: &TxnRequest,
    trail: &mut Trail,
) -> Result<Exchanged, ExchangeError> {
    let target = target_for(pipeline, &req.audience)
        .ok_or_else(|| TxnError::UnknownTrustDomain(req.audience.clone()))?;
    trail.target = Some(target.name().to_string());

    let assertion = SubjectToken { token_type: SubjectTokenType::Jwt, value: txn.client_assertion.clone() };
    let workload = verify_jwt(pipeline, &assertion).await.map_err(TxnError::ClientAuthentication)?;
    trail.source = Some(workload.identity().source.clone());
    trail.identity = Some(workload.shared());
    let jti = tessera_adapters::jwt::verified_jti(assertion.value.expose());
    pipeline.admit(&workload, jti.as_deref(), GrantType::TokenExchange).await?;

    let mappings = pipeline.mappings();
    let request = Request {
        audience: target.name(),
        scope: None,
        client_addr: req.client_addr.as_deref(),
        now: pipeline.clock().now(),
    };
    let grant = mappings.authorize(&workload, &request).map_err(|d| {
        trail.rule = d.rule().map(str::to_string);
        ExchangeError::Denied(d)
    })?;
    trail.rule = Some(grant.rule().to_string());
    if let Some(revoked) = pipeline.revocations().rule(grant.rule(), pipeline.clock().now_millis()) {
        return Err(revoked.into());
    }

    let kinds = grant.param_str(GRANT_SUBJECT_TOKEN_TYPES).map(split_list);
    let allowed = match &kinds {
        Some(names) => names.contains(&txn.subject_kind.name()),
        None => SubjectKind::DEFAULT.contains(&txn.subject_kind),
    };
    if !allowed {
        return Err(TxnError::SubjectTypeNotAllowed(txn.subject_kind.name()).into());
    }
    let subject = subject(pipeline, req, txn.subject_kind, target.as_ref()).await?;
    // A pattern that does not compile matches nothing: the rule allows less, never more.
    let subjects = split_list(grant.param_str(GRANT_SUBJECTS).unwrap_or(""));
    if !subjects.iter().filter_map(|p| Pattern::parse(p).ok()).any(|p| p.matches(&subject.sub)) {
        return Err(TxnError::SubjectNotAllowed(subject.sub).into());
    }

    let granted = split_list(grant.scope().unwrap_or(""));
    for scope in &txn.scopes {
        if !granted.contains(&scope.as_str()) {
            return Err(TxnError::ScopeNotGranted(scope.clone()).into());
        }
        if subject.scope.as_ref().is_some_and(|held| !held.contains(scope)) {
            return Err(TxnError::ScopeWidened(scope.clone()).into());
        }
    }
    let scope = txn.scopes.join(" ");
    trail.scope = Some(scope.clone());

    let Contexts { tctx, rctx } = contexts(txn, subject.prior.as_ref(), grant.claims())?;
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::from(subject.sub.as_str()));
    if !tctx.is_empty() {
        claims.insert("tctx".into(), Value::Object(tctx));
    }
    if !rctx.is_empty() {
        claims.insert("rctx".into(), Value::Object(rctx));
    }
    let mut ttl = grant.ttl();
    if let Some(prior) = &subject.prior {
        claims.insert("txn".into(), Value::from(prior.txn.as_str()));
        claims.insert("req_wl".into(), Value::from(prior.req_wl.as_str()));
        // Never beyond the Txn-Token it replaces (draft §17 lets a TTS extend; Tessera
        // does not).
        let left = prior.expires_at - pipeline.clock().now();
        let left = u64::try_from(left).ok().filter(|s| *s > 0).ok_or(TxnError::ReplacedExpired)?;
        ttl = ttl.min(Duration::from_secs(left));
    }
    let grant = Grant::new(
        grant.verified().clone(),
        grant.rule(),
        grant.target(),
        Some(scope),
        ttl,
        claims,
        grant.params().clone(),
    );
    let credential = crate::cache::issue_measured(target.as_ref(), &grant, pipeline.metrics()).await?;
    let expires_in = (credential.expires_at - pipeline.clock().now()).max(0);
    Ok(Exchanged { credential, expires_in })
}

/// The request reader and the context parser, for the cargo-fuzz target in `fuzz/` (the
/// `fuzzing` feature only): `true` when `body`'s form is a well-formed Txn-Token request.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_txn_request(body: &[u8]) -> bool {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let get =
        |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let read = read_request(get, tessera_adapters::jwt::MAX_TOKEN_BYTES, "fuzz", None).is_ok();
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = context::parse_object(text);
    }
    read
}
