//! Google's Security Token Service and IAM Service Account Credentials API on loopback,
//! strict about the published request formats: the peer of the `gcp` target.
//!
//! - STS `POST /v1/token`, an RFC 8693 token exchange
//!   (<https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token>): a workload
//!   identity pool provider's subject JWT in, a federated access token out.
//! - IAM Credentials `POST /v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken`
//!   (<https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken>):
//!   the federated token as `Authorization: Bearer`, a service account's access token out.
//!
//! The subject token is checked as an OIDC provider of a workload identity pool checks it
//! (<https://cloud.google.com/iam/docs/workload-identity-federation-with-other-providers>):
//! `iss` is the provider's issuer URI; the key comes from the issuer's discovery document
//! (OpenID Connect Discovery 1.0 §4) and its `jwks_uri`, fetched over HTTP on every call;
//! the signature is RS256 or ES256; `aud` is one of the provider's allowed audiences (by
//! default `https://iam.googleapis.com/` and the provider's resource name without `//`);
//! `exp` is in the future, `iat` is not, and the token lives at most 24 hours; `sub`, which
//! the default mapping makes `google.subject`, is at most 127 bytes.
//!
//! Where the real service is lenient the fake is not, so a test sees exactly what Tessera
//! sends: STS takes only the form encoding of RFC 8693 §2.1 (Google also takes JSON), and
//! unknown form parameters are refused rather than ignored. Every refusal is recorded as a
//! [`Refusal`] beside the wire answer Google gives for it.
//!
//! Both APIs share one server: [`FakeGoogle::url`] is the `sts_endpoint` and the
//! `iamcredentials_endpoint`. Time comes from the injected [`Clock`], so a test shares the
//! broker's manual clock and moves both together.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use tessera_adapters::Clock;
use tessera_adapters::clock::format_rfc3339;

use crate::fake::{self, Endpoint, FakeServer, Faults, Logged, form_parameters, refuse};
use crate::relying_party::{content_type, decode_jws, fetch_jwks, media_type_is, signature_verifies};

/// RFC 8693 §2.1 `grant_type`.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3 token types STS names.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The scope that lets a federated token call `generateAccessToken` (with `IAM_SCOPE`).
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";

/// A federated token from STS lives one hour.
pub const FEDERATED_TOKEN_LIFETIME: i64 = 3600;
/// The longest `lifetime` `generateAccessToken` grants without the organization policy
/// `constraints/iam.allowServiceAccountCredentialLifetimeExtension`; also its default.
pub const MAX_IMPERSONATION_LIFETIME: i64 = 3600;
/// STS refuses subject tokens valid for longer than this (`exp - iat`).
pub const MAX_SUBJECT_TOKEN_LIFETIME: i64 = 24 * 3600;
/// `google.subject` may be at most this many bytes.
pub const MAX_SUBJECT_BYTES: usize = 127;

/// Form parameters of the STS `v1/token` request body.
const STS_PARAMETERS: [&str; 7] = [
    "grant_type",
    "audience",
    "scope",
    "requested_token_type",
    "subject_token",
    "subject_token_type",
    "options",
];

/// Fields of the `generateAccessToken` request body.
const GENERATE_FIELDS: [&str; 3] = ["delegates", "scope", "lifetime"];

/// The description of an injected failure.
const UNAVAILABLE: &str = "The service is currently unavailable.";

const AUTH_HELP: &str = "Expected OAuth 2 access token, login cookie or other valid authentication credential. \
     See https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// An OIDC provider of a workload identity pool.
#[derive(Debug, Clone)]
pub struct WorkloadIdentityProvider {
    /// `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`
    name: String,
    /// The pool's resource name, `name` without `/providers/PROVIDER`.
    pool: String,
    issuer_uri: String,
    allowed_audiences: Vec<String>,
}

impl WorkloadIdentityProvider {
    /// A provider trusting `issuer_uri`, with the default allowed audience. Panics if `name`
    /// is not a provider resource name.
    pub fn new(name: &str, issuer_uri: &str) -> Self {
        let pool = pool_of(name).unwrap_or_else(|| panic!("`{name}` is not a provider resource name"));
        Self {
            name: name.to_string(),
            pool,
            issuer_uri: issuer_uri.to_string(),
            allowed_audiences: vec![default_audience(name)],
        }
    }

    /// Replace the allowed audiences (the provider's `allowedAudiences`).
    pub fn allowed_audiences(mut self, audiences: &[&str]) -> Self {
        self.allowed_audiences = audiences.iter().map(|a| a.to_string()).collect();
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The audience a provider allows when it lists none: its resource name as an
    /// `https://iam.googleapis.com/...` URL.
    pub fn default_audience(&self) -> String {
        default_audience(&self.name)
    }

    /// The IAM principal of the identity whose `google.subject` is `subject`:
    /// `principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/subject/SUBJECT`.
    pub fn principal(&self, subject: &str) -> String {
        format!("principal:{}/subject/{subject}", self.pool)
    }

    /// The IAM principal set of every identity in the pool (`principalSet://.../*`).
    pub fn all_identities(&self) -> String {
        format!("principalSet:{}/*", self.pool)
    }
}

fn default_audience(name: &str) -> String {
    format!("https:{name}")
}

/// The pool of a provider resource name, if `name` is one. Pool and provider ids are
/// lowercase letters, digits and dashes; the project is a project number.
fn pool_of(name: &str) -> Option<String> {
    let rest = name.strip_prefix("//iam.googleapis.com/projects/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [project, "locations", "global", "workloadIdentityPools", pool, "providers", provider] =
        parts.as_slice()
    else {
        return None;
    };
    let id = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let number = !project.is_empty() && project.bytes().all(|b| b.is_ascii_digit());
    (number && id(pool) && id(provider)).then(|| {
        format!("//iam.googleapis.com/projects/{project}/locations/global/workloadIdentityPools/{pool}")
    })
}

/// Why the fake refused a request. Each maps to the answer Google gives (see
/// [`Refusal::answer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// STS: the body is not `application/x-www-form-urlencoded`.
    ContentType,
    /// STS: the body does not decode as a form.
    MalformedBody,
    /// A form parameter sent twice (RFC 6749 §3.1).
    DuplicateParameter(String),
    /// A form parameter STS does not define.
    UnknownParameter(String),
    /// A required form parameter is absent or empty.
    MissingParameter(&'static str),
    /// `grant_type` is not the token exchange grant.
    GrantType,
    /// `requested_token_type` is not an access token.
    RequestedTokenType,
    /// `subject_token_type` is not a JWT or an ID token.
    SubjectTokenType,
    /// `audience` is not a workload identity pool provider resource name.
    AudienceFormat,
    /// `audience` names a provider the fake does not have.
    UnknownProvider,
    /// The subject token is not a compact JWS with JSON header and claims.
    MalformedToken,
    /// The subject token's `alg` is neither RS256 nor ES256.
    Algorithm,
    /// The subject token's header has no `kid`.
    MissingKid,
    /// No key of the issuer's JWKS has the token's `kid`.
    UnknownKid,
    /// The signature does not verify with the key named by `kid`.
    BadSignature,
    /// The issuer's discovery document or JWKS could not be fetched.
    IssuerUnreachable,
    /// `iss` is not the provider's issuer URI.
    WrongIssuer,
    /// `aud` is none of the provider's allowed audiences.
    WrongAudience,
    /// A claim the provider requires is absent or not of its type.
    MissingClaim(&'static str),
    /// `exp` is not in the future.
    Expired,
    /// `iat` is in the future.
    IssuedInFuture,
    /// `nbf` is in the future.
    NotYetValid,
    /// `exp - iat` is over 24 hours.
    LifetimeTooLong,
    /// `sub` is over 127 bytes.
    SubjectTooLong,
    /// IAM Credentials: no `Authorization: Bearer` header.
    MissingCredentials,
    /// IAM Credentials: a bearer token STS did not issue.
    UnknownToken,
    /// IAM Credentials: a federated token past its expiry.
    TokenExpired,
    /// IAM Credentials: the federated token has neither the cloud-platform nor the iam scope.
    InsufficientScope,
    /// IAM Credentials: the path names a project rather than the `-` wildcard.
    ProjectNotWildcard,
    /// IAM Credentials: the body is not `application/json`.
    JsonContentType,
    /// IAM Credentials: the body is not a JSON object.
    MalformedJson,
    /// IAM Credentials: a body field the API does not define.
    UnknownField(String),
    /// IAM Credentials: a required body field is absent or empty.
    MissingField(&'static str),
    /// IAM Credentials: a field of the wrong type.
    InvalidField(&'static str),
    /// IAM Credentials: `lifetime` is not a duration of 1s to 3600s.
    Lifetime,
    /// IAM Credentials: the principal may not impersonate the service account (or a
    /// delegate was named).
    PermissionDenied,
    /// No such endpoint.
    NotFound,
    /// A failure the test injected, with its status.
    Injected(u16),
}

/// How Google answers a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// STS: 400 with an RFC 6749 §5.2 body, `{"error", "error_description"}`.
    OAuth(&'static str),
    /// Google APIs (AIP-193): `{"error": {"code", "message", "status", "details"}}`, with a
    /// `google.rpc.ErrorInfo` detail when there is a `reason`.
    Rpc { code: u16, status: &'static str, reason: Option<&'static str> },
}

impl Refusal {
    pub fn answer(&self) -> Answer {
        let rpc = |code, status| Answer::Rpc { code, status, reason: None };
        match self {
            Self::ContentType
            | Self::MalformedBody
            | Self::DuplicateParameter(_)
            | Self::UnknownParameter(_)
            | Self::MissingParameter(_)
            | Self::RequestedTokenType
            | Self::SubjectTokenType
            | Self::AudienceFormat => Answer::OAuth("invalid_request"),
            Self::GrantType => Answer::OAuth("unsupported_grant_type"),
            Self::UnknownProvider => Answer::OAuth("invalid_target"),
            Self::MalformedToken
            | Self::Algorithm
            | Self::MissingKid
            | Self::UnknownKid
            | Self::BadSignature
            | Self::IssuerUnreachable
            | Self::WrongIssuer
            | Self::WrongAudience
            | Self::MissingClaim(_)
            | Self::Expired
            | Self::IssuedInFuture
            | Self::NotYetValid
            | Self::LifetimeTooLong
            | Self::SubjectTooLong => Answer::OAuth("invalid_grant"),
            Self::MissingCredentials => {
                Answer::Rpc { code: 401, status: "UNAUTHENTICATED", reason: Some("CREDENTIALS_MISSING") }
            }
            Self::UnknownToken => Answer::Rpc {
                code: 401,
                status: "UNAUTHENTICATED",
                reason: Some("ACCESS_TOKEN_TYPE_UNSUPPORTED"),
            },
            Self::TokenExpired => {
                Answer::Rpc { code: 401, status: "UNAUTHENTICATED", reason: Some("ACCESS_TOKEN_EXPIRED") }
            }
            Self::InsufficientScope => Answer::Rpc {
                code: 403,
                status: "PERMISSION_DENIED",
                reason: Some("ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
            },
            Self::PermissionDenied => {
                Answer::Rpc { code: 403, status: "PERMISSION_DENIED", reason: Some("IAM_PERMISSION_DENIED") }
            }
            Self::ProjectNotWildcard
            | Self::JsonContentType
            | Self::MalformedJson
            | Self::UnknownField(_)
            | Self::MissingField(_)
            | Self::InvalidField(_)
            | Self::Lifetime => rpc(400, "INVALID_ARGUMENT"),
            Self::NotFound => rpc(404, "NOT_FOUND"),
            Self::Injected(code) => rpc(*code, rpc_status(*code)),
        }
    }
}

/// The `google.rpc.Code` name Google pairs with an HTTP status.
fn rpc_status(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

impl fake::Refusal for Refusal {
    fn injected(status: u16) -> Self {
        Self::Injected(status)
    }
}

/// A refusal with the description Google would give.
type Refused = fake::Refused<Refusal>;

/// One request to STS `v1/token`, as the fake read it.
#[derive(Debug, Clone)]
pub struct StsRequest {
    pub content_type: Option<String>,
    /// The decoded form fields, in the order sent.
    pub form: Vec<(String, String)>,
    /// The subject token's claims, once its signature verified (also when a claim check
    /// then failed).
    pub claims: Option<Value>,
    pub status: u16,
    pub refusal: Option<Refusal>,
}

impl Logged<Refusal> for StsRequest {
    fn answered(&mut self, status: u16, refusal: Option<Refusal>) {
        self.status = status;
        self.refusal = refusal;
    }
}

impl StsRequest {
    /// A form field's value (the first, if sent twice).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One request to `generateAccessToken`, as the fake read it.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The service account named in the path.
    pub service_account: String,
    pub content_type: Option<String>,
    /// The bearer token of the `Authorization` header.
    pub bearer: Option<String>,
    /// The JSON body, if it parsed.
    pub body: Option<Value>,
    /// The principal the bearer token stands for, if STS issued it.
    pub principal: Option<String>,
    pub status: u16,
    pub refusal: Option<Refusal>,
}

impl Logged<Refusal> for GenerateRequest {
    fn answered(&mut self, status: u16, refusal: Option<Refusal>) {
        self.status = status;
        self.refusal = refusal;
    }
}

/// An access token the fake issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub access_token: String,
    /// `None` for a federated token from STS; the impersonated service account for one
    /// from `generateAccessToken`.
    pub service_account: Option<String>,
    /// The federated principal (`principal://...`).
    pub principal: String,
    pub scopes: Vec<String>,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
}

#[derive(Debug)]
struct State {
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    providers: Mutex<Vec<WorkloadIdentityProvider>>,
    /// (principal or principal set, service account) pairs holding
    /// `roles/iam.workloadIdentityUser`.
    impersonation: Mutex<Vec<(String, String)>>,
    issued: Mutex<Vec<IssuedToken>>,
    sts: Endpoint<StsRequest>,
    generate: Endpoint<GenerateRequest>,
    refusals: Mutex<Vec<Refusal>>,
    faults: Faults,
}

impl State {
    /// Whether `principal`, or a principal set it belongs to, holds
    /// `roles/iam.workloadIdentityUser` on `service_account`.
    fn may_impersonate(&self, principal: &str, service_account: &str) -> bool {
        let sets: Vec<String> = self
            .providers
            .lock()
            .expect("lock")
            .iter()
            .filter(|p| principal.starts_with(&format!("principal:{}/subject/", p.pool)))
            .map(WorkloadIdentityProvider::all_identities)
            .collect();
        self.impersonation
            .lock()
            .expect("lock")
            .iter()
            .any(|(member, sa)| sa == service_account && (member == principal || sets.contains(member)))
    }

    fn refused(&self, reason: &Refusal) {
        self.refusals.lock().expect("lock").push(reason.clone());
    }
}

/// A running fake of Google's STS and IAM Credentials APIs. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeGoogle {
    state: Arc<State>,
    server: FakeServer,
}

impl FakeGoogle {
    /// Start at `http://127.0.0.1:<port>` with these providers, reading time from `clock`.
    pub fn start(providers: Vec<WorkloadIdentityProvider>, clock: Arc<dyn Clock>) -> Self {
        let state = |_url| State {
            clock,
            http: fake::http_client(),
            providers: Mutex::new(providers),
            impersonation: Mutex::default(),
            issued: Mutex::default(),
            sts: Endpoint::default(),
            generate: Endpoint::default(),
            refusals: Mutex::default(),
            faults: Faults::default(),
        };
        let (state, server) = FakeServer::start(state, |routes| {
            routes
                .route("/v1/token", web::post().to(sts))
                .route("/v1/projects/{project}/serviceAccounts/{method}", web::post().to(generate))
                .default_service(web::to(not_found));
        });
        Self { state, server }
    }

    /// Add a provider (e.g. for an issuer whose URL is known only once it runs).
    pub fn add_provider(&self, provider: WorkloadIdentityProvider) {
        self.state.providers.lock().expect("lock").push(provider);
    }

    /// The base URL of both APIs.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Grant `principal` (from [`WorkloadIdentityProvider::principal`] or
    /// [`WorkloadIdentityProvider::all_identities`]) `roles/iam.workloadIdentityUser` on
    /// `service_account`.
    pub fn allow_impersonation(&self, principal: &str, service_account: &str) {
        self.state.impersonation.lock().expect("lock").push((principal.into(), service_account.into()));
    }

    /// Requests that reached STS, refused and failed ones included; counted on arrival.
    pub fn sts_calls(&self) -> usize {
        self.state.sts.calls()
    }

    /// Requests that reached `generateAccessToken`; counted on arrival.
    pub fn generate_calls(&self) -> usize {
        self.state.generate.calls()
    }

    /// Every answered STS request, in order.
    pub fn sts_requests(&self) -> Vec<StsRequest> {
        self.state.sts.requests()
    }

    pub fn last_sts_request(&self) -> Option<StsRequest> {
        self.state.sts.last()
    }

    /// Every answered `generateAccessToken` request, in order.
    pub fn generate_requests(&self) -> Vec<GenerateRequest> {
        self.state.generate.requests()
    }

    pub fn last_generate_request(&self) -> Option<GenerateRequest> {
        self.state.generate.last()
    }

    /// Why each refused request was refused, in order, across both APIs.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.state.refusals.lock().expect("lock").clone()
    }

    /// Every token issued, federated and impersonated, in order.
    pub fn issued_access_tokens(&self) -> Vec<IssuedToken> {
        self.state.issued.lock().expect("lock").clone()
    }

    /// Answer the next `times` STS requests with `status` and a Google error body.
    pub fn fail_next_sts(&self, times: usize, status: u16) {
        self.state.sts.fail_next(times, status);
    }

    /// Answer the next `times` `generateAccessToken` requests with `status`.
    pub fn fail_next_generate(&self, times: usize, status: u16) {
        self.state.generate.fail_next(times, status);
    }

    /// Delays, outages and concurrency (see [`Faults`]).
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }
}

async fn sts(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let request = StsRequest {
        content_type: content_type(&req),
        form: Vec::new(),
        claims: None,
        status: 200,
        refusal: None,
    };
    let run = async |request: &mut StsRequest| exchange(&state, &body, request).await;
    state.sts.answer(&state.faults, &state.refusals, request, UNAVAILABLE, run, error_response).await
}

/// The token exchange, checked in the order Google reads it: the request, the provider,
/// then the subject token.
async fn exchange(state: &State, body: &[u8], request: &mut StsRequest) -> Result<Value, Refused> {
    if !media_type_is(request.content_type.as_deref(), "application/x-www-form-urlencoded") {
        return refuse(
            Refusal::ContentType,
            "The request body must be form-encoded (application/x-www-form-urlencoded).",
        );
    }
    request.form = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .or_else(|_| refuse(Refusal::MalformedBody, "The request body is not form-encoded."))?;
    let form = parameters(&request.form)?;
    let required = |name: &'static str| match form.get(name) {
        Some(value) if !value.is_empty() => Ok(value.as_str()),
        _ => refuse(Refusal::MissingParameter(name), format!("Missing required parameter \"{name}\".")),
    };

    if required("grant_type")? != TOKEN_EXCHANGE {
        return refuse(Refusal::GrantType, format!("Unsupported grant type. Must be {TOKEN_EXCHANGE}."));
    }
    if required("requested_token_type")? != ACCESS_TOKEN_TYPE {
        return refuse(Refusal::RequestedTokenType, "Invalid value of requested_token_type in request.");
    }
    let subject_token_type = required("subject_token_type")?;
    if subject_token_type != JWT_TYPE && subject_token_type != ID_TOKEN_TYPE {
        return refuse(
            Refusal::SubjectTokenType,
            "Invalid value for \"subject_token_type\". An OIDC provider takes \
             urn:ietf:params:oauth:token-type:jwt or urn:ietf:params:oauth:token-type:id_token.",
        );
    }
    let subject_token = required("subject_token")?;
    let audience = required("audience")?;
    if pool_of(audience).is_none() {
        return refuse(
            Refusal::AudienceFormat,
            "Invalid value for \"audience\". This value should be the full resource name of the Identity \
             Provider. See https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token for the \
             list of possible formats.",
        );
    }
    let provider = state.providers.lock().expect("lock").iter().find(|p| p.name == audience).cloned();
    let Some(provider) = provider else {
        return refuse(
            Refusal::UnknownProvider,
            "The target service indicated by the \"audience\" parameters is invalid. This might either be \
             because the pool or provider is disabled or deleted or because it doesn't exist.",
        );
    };
    let scopes: Vec<String> = match form.get("scope") {
        Some(scope) => scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        None => Vec::new(),
    };
    if scopes.is_empty() {
        return refuse(Refusal::MissingParameter("scope"), "Scope(s) must be provided.");
    }

    let now = state.clock.now();
    let claims = verify_subject_token(state, &provider, subject_token, now, request).await?;
    let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
    let issued = IssuedToken {
        access_token: format!("ya29.fake-federated-{}", uuid::Uuid::new_v4().simple()),
        service_account: None,
        principal: provider.principal(subject),
        scopes,
        expires_at: now + FEDERATED_TOKEN_LIFETIME,
    };
    let answer = json!({
        "access_token": issued.access_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": FEDERATED_TOKEN_LIFETIME,
    });
    state.issued.lock().expect("lock").push(issued);
    Ok(answer)
}

/// The form as a map; each parameter at most once (RFC 6749 §3.1) and each one STS defines.
fn parameters(form: &[(String, String)]) -> Result<BTreeMap<String, String>, Refused> {
    form_parameters(
        form,
        &STS_PARAMETERS,
        |name| Refused {
            reason: Refusal::UnknownParameter(name.to_string()),
            description: format!("Unknown parameter \"{name}\"."),
        },
        |name| Refused {
            reason: Refusal::DuplicateParameter(name.to_string()),
            description: format!("Parameter \"{name}\" is included more than once."),
        },
    )
}

/// The subject token's checks, in order: its shape and algorithm, the issuer (before any
/// fetch, so only the provider's issuer is ever fetched), the key and signature, then the
/// audience, times and subject.
async fn verify_subject_token(
    state: &State,
    provider: &WorkloadIdentityProvider,
    token: &str,
    now: i64,
    request: &mut StsRequest,
) -> Result<Map<String, Value>, Refused> {
    let Some(jws) = decode_jws(token) else {
        return refuse(Refusal::MalformedToken, "Unable to parse the ID Token.");
    };
    let alg = jws.header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if alg != "RS256" && alg != "ES256" {
        return refuse(
            Refusal::Algorithm,
            format!("The ID Token is signed with `{alg}`; only RS256 and ES256 are supported."),
        );
    }
    let Some(kid) = jws.header.get("kid").and_then(Value::as_str) else {
        return refuse(Refusal::MissingKid, "The ID Token header has no kid.");
    };
    let Some(iss) = jws.claims.get("iss").and_then(Value::as_str) else {
        return refuse(Refusal::MissingClaim("iss"), "The ID Token has no iss claim.");
    };
    if iss != provider.issuer_uri {
        return refuse(
            Refusal::WrongIssuer,
            format!("The issuer in ID Token {iss} does not match the expected ones {}.", provider.issuer_uri),
        );
    }
    let keys = match fetch_jwks(&state.http, &provider.issuer_uri).await {
        Ok(keys) => keys,
        Err(cause) => {
            return refuse(Refusal::IssuerUnreachable, format!("Unable to fetch the issuer's keys: {cause}"));
        }
    };
    let Some(jwk) = keys.iter().find(|k| k.get("kid").and_then(Value::as_str) == Some(kid)) else {
        return refuse(Refusal::UnknownKid, format!("The kid `{kid}` is not in the issuer's JWKS."));
    };
    if !signature_verifies(jwk, alg, jws.signing_input.as_bytes(), &jws.signature) {
        return refuse(Refusal::BadSignature, "Invalid ID Token signature.");
    }
    request.claims = Some(Value::Object(jws.claims.clone()));
    let claims = jws.claims;

    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if audiences.is_empty() {
        return refuse(Refusal::MissingClaim("aud"), "The ID Token has no aud claim.");
    }
    if !audiences.iter().any(|a| provider.allowed_audiences.iter().any(|allowed| allowed == a)) {
        return refuse(
            Refusal::WrongAudience,
            format!(
                "The audience in ID Token [{}] does not match the expected audience.",
                audiences.join(", ")
            ),
        );
    }
    let time = |name: &'static str| claims.get(name).and_then(Value::as_f64).map(|t| t.floor() as i64);
    let Some(exp) = time("exp") else {
        return refuse(Refusal::MissingClaim("exp"), "The ID Token has no exp claim.");
    };
    let Some(iat) = time("iat") else {
        return refuse(Refusal::MissingClaim("iat"), "The ID Token has no iat claim.");
    };
    if exp <= now {
        return refuse(Refusal::Expired, format!("The ID Token expired at {}.", format_rfc3339(exp)));
    }
    if iat > now {
        return refuse(Refusal::IssuedInFuture, format!("The ID Token is issued in the future ({iat})."));
    }
    if time("nbf").is_some_and(|nbf| nbf > now) {
        return refuse(Refusal::NotYetValid, "The ID Token is not yet valid.");
    }
    if exp - iat > MAX_SUBJECT_TOKEN_LIFETIME {
        return refuse(Refusal::LifetimeTooLong, "The ID Token's lifetime is longer than 24 hours.");
    }
    let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
    if subject.is_empty() {
        return refuse(Refusal::MissingClaim("sub"), "The mapped attribute google.subject is empty.");
    }
    if subject.len() > MAX_SUBJECT_BYTES {
        return refuse(
            Refusal::SubjectTooLong,
            "The size of mapped attribute google.subject exceeds the 127 bytes limit. Either modify your \
             attribute mapping or the incoming assertion to produce a mapped attribute that is less than \
             127 bytes.",
        );
    }
    Ok(claims)
}

async fn generate(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let project = req.match_info().get("project").unwrap_or_default().to_string();
    let method = req.match_info().get("method").unwrap_or_default();
    let Some(service_account) = method.strip_suffix(":generateAccessToken").filter(|s| !s.is_empty()) else {
        return not_found(state, req).await;
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        .map(|(_, token)| token.trim().to_string());
    let request = GenerateRequest {
        service_account: service_account.to_string(),
        content_type: content_type(&req),
        bearer,
        body: None,
        principal: None,
        status: 200,
        refusal: None,
    };
    let run = async |request: &mut GenerateRequest| impersonate(&state, &project, &body, request);
    state.generate.answer(&state.faults, &state.refusals, request, UNAVAILABLE, run, error_response).await
}

/// `generateAccessToken`: the caller's credential first, as Google's front end checks it,
/// then the path and the body, then the IAM permission.
fn impersonate(
    state: &State,
    project: &str,
    body: &[u8],
    request: &mut GenerateRequest,
) -> Result<Value, Refused> {
    let now = state.clock.now();
    let Some(bearer) = request.bearer.clone() else {
        return refuse(
            Refusal::MissingCredentials,
            format!("Request is missing required authentication credential. {AUTH_HELP}"),
        );
    };
    let federated = state
        .issued
        .lock()
        .expect("lock")
        .iter()
        .find(|t| t.access_token == bearer && t.service_account.is_none())
        .cloned();
    let invalid = format!("Request had invalid authentication credentials. {AUTH_HELP}");
    let Some(federated) = federated else {
        return refuse(Refusal::UnknownToken, invalid);
    };
    if federated.expires_at <= now {
        return refuse(Refusal::TokenExpired, invalid);
    }
    request.principal = Some(federated.principal.clone());
    if !federated.scopes.iter().any(|s| s == CLOUD_PLATFORM_SCOPE || s == IAM_SCOPE) {
        return refuse(Refusal::InsufficientScope, "Request had insufficient authentication scopes.");
    }
    if project != "-" {
        return refuse(
            Refusal::ProjectNotWildcard,
            "The project in the resource name must be the `-` wildcard: projects/-/serviceAccounts/...",
        );
    }
    if !media_type_is(request.content_type.as_deref(), "application/json") {
        return refuse(
            Refusal::JsonContentType,
            "Invalid JSON payload received. The body must be application/json.",
        );
    }
    let fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => fields,
        _ => return refuse(Refusal::MalformedJson, "Invalid JSON payload received. Unexpected token."),
    };
    request.body = Some(Value::Object(fields.clone()));
    if let Some(unknown) = fields.keys().find(|k| !GENERATE_FIELDS.contains(&k.as_str())) {
        return refuse(
            Refusal::UnknownField(unknown.clone()),
            format!("Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."),
        );
    }
    let strings = |name: &'static str| -> Result<Vec<String>, Refused> {
        let invalid = || refuse(Refusal::InvalidField(name), format!("Invalid value at '{name}'."));
        match fields.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .map_or_else(invalid, Ok),
            Some(_) => invalid(),
        }
    };
    let scopes = strings("scope")?;
    if scopes.is_empty() || scopes.iter().any(String::is_empty) {
        return refuse(Refusal::MissingField("scope"), "Scope required.");
    }
    let delegates = strings("delegates")?;
    let lifetime = match fields.get("lifetime") {
        None => MAX_IMPERSONATION_LIFETIME,
        Some(value) => match value.as_str().and_then(parse_duration) {
            Some(seconds) if (1..=MAX_IMPERSONATION_LIFETIME).contains(&seconds) => seconds,
            _ => {
                return refuse(
                    Refusal::Lifetime,
                    format!(
                        "Invalid value at 'lifetime': the lifetime must be a duration from 1s to \
                         {MAX_IMPERSONATION_LIFETIME}s."
                    ),
                );
            }
        },
    };
    let permission =
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).";
    if !delegates.is_empty() {
        return refuse(Refusal::PermissionDenied, permission);
    }
    let allowed = state.may_impersonate(&federated.principal, &request.service_account);
    if !allowed {
        return refuse(Refusal::PermissionDenied, permission);
    }
    let issued = IssuedToken {
        access_token: format!("ya29.fake-impersonated-{}", uuid::Uuid::new_v4().simple()),
        service_account: Some(request.service_account.clone()),
        principal: federated.principal,
        scopes,
        expires_at: now + lifetime,
    };
    let answer =
        json!({ "accessToken": issued.access_token, "expireTime": format_rfc3339(issued.expires_at) });
    state.issued.lock().expect("lock").push(issued);
    Ok(answer)
}

/// A `google.protobuf.Duration` in its JSON form (`"3600s"`, `"1.5s"`), in whole seconds.
fn parse_duration(text: &str) -> Option<i64> {
    let number = text.strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 || number.ends_with('.')
    {
        return None;
    }
    whole.parse().ok()
}

fn error_response(refused: &Refused) -> HttpResponse {
    match refused.reason.answer() {
        Answer::OAuth(error) => HttpResponse::BadRequest()
            .json(json!({ "error": error, "error_description": refused.description })),
        Answer::Rpc { code, status, reason } => {
            let mut error = json!({ "code": code, "message": refused.description, "status": status });
            if let Some(reason) = reason {
                let domain =
                    if reason == "IAM_PERMISSION_DENIED" { "iam.googleapis.com" } else { "googleapis.com" };
                error["details"] = json!([{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": reason,
                    "domain": domain,
                }]);
            }
            let status = actix_web::http::StatusCode::from_u16(code)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            HttpResponse::build(status).json(json!({ "error": error }))
        }
    }
}

async fn not_found(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    let refused = Refused {
        reason: Refusal::NotFound,
        description: format!("The requested URL {} was not found on this server.", req.path()),
    };
    state.refused(&refused.reason);
    error_response(&refused)
}
