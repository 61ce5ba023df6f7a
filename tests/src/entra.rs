//! Entra ID's v2.0 token endpoint on loopback, strict about the published request format:
//! the peer of the `azure` target.
//!
//! `POST /{tenant}/oauth2/v2.0/token` with the client credentials grant and a federated
//! credential as the client assertion (RFC 7523 §2.2), as "Microsoft identity platform and
//! the OAuth 2.0 client credentials flow", third case, publishes it
//! (<https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow#third-case-access-token-request-with-a-federated-credential>):
//! form fields `client_id`, `scope` (`<resource>/.default`), `grant_type=client_credentials`,
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and
//! `client_assertion`.
//!
//! The assertion is checked against the application's federated identity credentials
//! (<https://learn.microsoft.com/entra/workload-id/workload-identity-federation>): its `iss`
//! names a credential's issuer, whose discovery document (OpenID Connect Discovery 1.0 §4)
//! and `jwks_uri` are fetched over HTTP on every call; the signature is RS256 ("Assertion
//! format", <https://learn.microsoft.com/entra/identity-platform/certificate-credentials#assertion-format>);
//! `exp` and `nbf` hold; then `sub` and `aud` match that credential exactly (case-sensitive).
//!
//! Refusals are answered as Entra answers them (RFC 6749 §5.2 plus `error_codes`,
//! `timestamp`, `trace_id`, `correlation_id` and `error_uri`, with the `AADSTS` code first
//! in `error_description`), and recorded as a [`Refusal`]. Where Entra ignores unknown form
//! parameters the fake refuses them, so a test sees exactly what Tessera sends. Time comes
//! from the injected [`Clock`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use tessera_adapters::Clock;
use tessera_adapters::clock::format_rfc3339;

use crate::fake::{self, Endpoint, FakeServer, Faults, Logged, form_parameters, refuse};
use crate::relying_party::{content_type, decode_jws, fetch_jwks, media_type_is, signature_verifies};

/// RFC 7523 §2.2: a JWT as client authentication.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The audience Entra recommends for federated identity credentials; a credential's
/// default.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// `expires_in` and `ext_expires_in` of an issued token, as Entra answers them.
pub const TOKEN_LIFETIME: i64 = 3599;

/// The form fields of the request, in the order the published example lists them.
const PARAMETERS: [&str; 5] =
    ["client_id", "scope", "grant_type", "client_assertion_type", "client_assertion"];

const FIC_HELP: &str = "Please check your federated identity credential Subject, Audience and Issuer against the \
     presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation";

/// A federated identity credential of an application: the external tokens it accepts as
/// the application's client assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedCredential {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

impl FederatedCredential {
    /// A credential for `subject` of `issuer`, with the default audience
    /// `api://AzureADTokenExchange`.
    pub fn new(issuer: &str, subject: &str) -> Self {
        Self {
            issuer: issuer.to_string(),
            subject: subject.to_string(),
            audiences: vec![TOKEN_EXCHANGE_AUDIENCE.to_string()],
        }
    }

    /// Replace the audiences.
    pub fn audiences(mut self, audiences: &[&str]) -> Self {
        self.audiences = audiences.iter().map(|a| a.to_string()).collect();
        self
    }
}

/// Why the fake refused a request. Each maps to Entra's answer (see [`Refusal::answer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not `application/x-www-form-urlencoded`, or not decodable as such.
    MalformedBody,
    /// A form parameter sent twice (RFC 6749 §3.1).
    DuplicateParameter(String),
    /// A form parameter the federated client credentials request does not have.
    UnknownParameter(String),
    /// A required form parameter is absent or empty.
    MissingParameter(&'static str),
    /// `grant_type` is not `client_credentials`.
    GrantType,
    /// `client_assertion_type` is not the RFC 7523 JWT bearer type.
    ClientAssertionType,
    /// The path names a tenant the fake does not have.
    UnknownTenant,
    /// `client_id` is not an application of the tenant.
    UnknownClient,
    /// `scope` holds more than one value.
    MultipleScopes,
    /// `scope` does not end with `/.default`.
    ScopeNotDefault,
    /// The assertion is not a compact JWS with JSON header and claims.
    MalformedAssertion,
    /// The assertion's `typ` is neither `JWT` nor `http://openid.net/specs/jwt/1.0`.
    HeaderType,
    /// The assertion's `alg` is not one Entra takes.
    Algorithm,
    /// A claim the assertion needs is absent or not of its type.
    MissingClaim(&'static str),
    /// The application has no federated identity credential at all.
    NoFederatedCredentials,
    /// No federated identity credential has the assertion's `iss`.
    WrongIssuer,
    /// The issuer's discovery document or JWKS could not be fetched.
    IssuerUnreachable,
    /// No RSA key of the issuer's JWKS has the assertion's `kid` (or the header has none).
    UnknownKid,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is not in the future.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// No credential of the issuer has the assertion's `sub`.
    WrongSubject,
    /// The credential with that issuer and subject lists none of the assertion's `aud`.
    WrongAudience,
    /// No such endpoint.
    NotFound,
    /// A failure the test injected, with its status.
    Injected(u16),
}

/// How Entra answers a refusal: the status, the RFC 6749 §5.2 `error` and the `AADSTS`
/// code (Entra's error code reference, <https://learn.microsoft.com/entra/identity-platform/reference-error-codes>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub error: &'static str,
    pub code: u64,
}

impl Refusal {
    pub fn answer(&self) -> Answer {
        let answer = |status, error, code| Answer { status, error, code };
        match self {
            // AADSTS900144: The request body must contain the following parameter: '...'.
            Self::MalformedBody => answer(400, "invalid_request", 900_144),
            // AADSTS7000218: ... must contain ... 'client_assertion' or 'client_secret'.
            Self::MissingParameter("client_assertion") => answer(401, "invalid_client", 7_000_218),
            Self::MissingParameter(_) => answer(400, "invalid_request", 900_144),
            // AADSTS90100: InvalidRequestParameter.
            Self::DuplicateParameter(_) | Self::UnknownParameter(_) | Self::ClientAssertionType => {
                answer(400, "invalid_request", 90_100)
            }
            Self::GrantType => answer(400, "unsupported_grant_type", 70_003),
            Self::UnknownTenant => answer(400, "invalid_request", 90_002),
            Self::UnknownClient => answer(400, "unauthorized_client", 700_016),
            Self::MultipleScopes => answer(400, "invalid_scope", 70_011),
            Self::ScopeNotDefault => answer(400, "invalid_scope", 1_002_012),
            Self::MalformedAssertion | Self::MissingClaim(_) => answer(400, "invalid_request", 50_027),
            Self::HeaderType => answer(400, "invalid_request", 5_002_727),
            Self::Algorithm => answer(400, "invalid_request", 5_002_738),
            Self::NoFederatedCredentials => answer(400, "invalid_request", 70_021),
            Self::WrongIssuer => answer(401, "invalid_client", 700_211),
            Self::IssuerUnreachable => answer(400, "invalid_request", 501_661),
            Self::UnknownKid | Self::BadSignature => answer(401, "invalid_client", 700_027),
            Self::Expired | Self::NotYetValid => answer(401, "invalid_client", 700_024),
            Self::WrongSubject => answer(401, "invalid_client", 700_213),
            Self::WrongAudience => answer(401, "invalid_client", 700_212),
            Self::NotFound => answer(404, "invalid_request", 90_056),
            // AADSTS90055 TenantThrottlingError, AADSTS50000 TokenIssuanceError.
            Self::Injected(429) => answer(429, "temporarily_unavailable", 90_055),
            Self::Injected(status) if *status >= 500 => answer(*status, "temporarily_unavailable", 50_000),
            Self::Injected(status) => answer(*status, "invalid_request", 90_100),
        }
    }
}

impl fake::Refusal for Refusal {
    fn injected(status: u16) -> Self {
        Self::Injected(status)
    }
}

/// A refusal with the text Entra puts after its `AADSTS` code.
type Refused = fake::Refused<Refusal>;

/// One request to the token endpoint, as the fake read it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The tenant named in the path.
    pub tenant: String,
    pub content_type: Option<String>,
    /// The decoded form fields, in the order sent.
    pub form: Vec<(String, String)>,
    /// The assertion's claims, once its signature verified (also when a claim check then
    /// failed).
    pub claims: Option<Value>,
    pub status: u16,
    pub refusal: Option<Refusal>,
}

impl Logged<Refusal> for TokenRequest {
    fn answered(&mut self, status: u16, refusal: Option<Refusal>) {
        self.status = status;
        self.refusal = refusal;
    }
}

impl TokenRequest {
    /// A form field's value (the first, if sent twice).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// An access token the fake issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub access_token: String,
    pub tenant: String,
    pub client_id: String,
    pub scope: String,
    /// The assertion's `sub`.
    pub subject: String,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
}

/// An application registration: its client id and federated identity credentials.
#[derive(Debug, Clone)]
struct Application {
    tenant: String,
    client_id: String,
    credentials: Vec<FederatedCredential>,
}

#[derive(Debug)]
struct State {
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    applications: Mutex<Vec<Application>>,
    issued: Mutex<Vec<IssuedToken>>,
    token: Endpoint<TokenRequest>,
    refusals: Mutex<Vec<Refusal>>,
    faults: Faults,
}

impl State {
    /// The application registration (a tenant is known once it has one).
    fn application(&self, tenant: &str, client_id: &str) -> Result<Application, Refused> {
        let applications = self.applications.lock().expect("lock");
        let in_tenant: Vec<&Application> =
            applications.iter().filter(|a| a.tenant.eq_ignore_ascii_case(tenant)).collect();
        if in_tenant.is_empty() {
            return refuse(
                Refusal::UnknownTenant,
                format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are \
                     signing into the correct cloud. Check with your subscription administrator, this may \
                     happen if there are no active subscriptions for the tenant."
                ),
            );
        }
        match in_tenant.into_iter().find(|a| a.client_id.eq_ignore_ascii_case(client_id)) {
            Some(application) => Ok(application.clone()),
            None => refuse(
                Refusal::UnknownClient,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. \
                     This can happen if the application has not been installed by the administrator of the \
                     tenant or consented to by any user in the tenant. You may have sent your \
                     authentication request to the wrong tenant."
                ),
            ),
        }
    }

    fn refused(&self, reason: &Refusal) {
        self.refusals.lock().expect("lock").push(reason.clone());
    }
}

/// A running fake of Entra ID's token endpoint. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeEntra {
    state: Arc<State>,
    server: FakeServer,
}

impl FakeEntra {
    /// Start at `http://127.0.0.1:<port>` with no tenants, reading time from `clock`.
    pub fn start(clock: Arc<dyn Clock>) -> Self {
        let state = |_url| State {
            clock,
            http: fake::http_client(),
            applications: Mutex::default(),
            issued: Mutex::default(),
            token: Endpoint::default(),
            refusals: Mutex::default(),
            faults: Faults::default(),
        };
        let (state, server) = FakeServer::start(state, |routes| {
            routes
                .route("/{tenant}/oauth2/v2.0/token", web::post().to(token))
                .default_service(web::to(not_found));
        });
        Self { state, server }
    }

    /// The authority host (`authority` of the `azure` target).
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Register application `client_id` in `tenant`, with no federated credential yet.
    pub fn add_application(&self, tenant: &str, client_id: &str) {
        let mut applications = self.state.applications.lock().expect("lock");
        if !applications.iter().any(|a| a.tenant == tenant && a.client_id == client_id) {
            applications.push(Application {
                tenant: tenant.into(),
                client_id: client_id.into(),
                credentials: Vec::new(),
            });
        }
    }

    /// Add a federated identity credential to application `client_id` of `tenant`,
    /// registering the application if needed.
    pub fn add_federated_credential(&self, tenant: &str, client_id: &str, credential: FederatedCredential) {
        self.add_application(tenant, client_id);
        let mut applications = self.state.applications.lock().expect("lock");
        if let Some(application) =
            applications.iter_mut().find(|a| a.tenant == tenant && a.client_id == client_id)
        {
            application.credentials.push(credential);
        }
    }

    /// Requests that reached the token endpoint, refused and failed ones included; counted
    /// on arrival.
    pub fn token_calls(&self) -> usize {
        self.state.token.calls()
    }

    /// Every answered token request, in order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state.token.requests()
    }

    pub fn last_token_request(&self) -> Option<TokenRequest> {
        self.state.token.last()
    }

    /// Why each refused request was refused, in order.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.state.refusals.lock().expect("lock").clone()
    }

    /// Every token issued, in order.
    pub fn issued_access_tokens(&self) -> Vec<IssuedToken> {
        self.state.issued.lock().expect("lock").clone()
    }

    /// Answer the next `times` requests with `status` and an Entra error body.
    pub fn fail_next(&self, times: usize, status: u16) {
        self.state.token.fail_next(times, status);
    }

    /// Delays, outages and concurrency (see [`Faults`]).
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }
}

async fn token(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let request = TokenRequest {
        tenant: req.match_info().get("tenant").unwrap_or_default().to_string(),
        content_type: content_type(&req),
        form: Vec::new(),
        claims: None,
        status: 200,
        refusal: None,
    };
    let unavailable = "The service is temporarily unavailable.";
    let run = async |request: &mut TokenRequest| client_credentials(&state, &body, request).await;
    let refused = |refused: &Refused| error_response(&state, refused);
    state.token.answer(&state.faults, &state.refusals, request, unavailable, run, refused).await
}

/// The client credentials request, checked in order: the form, the tenant and application,
/// the scope, then the assertion.
async fn client_credentials(
    state: &State,
    body: &[u8],
    request: &mut TokenRequest,
) -> Result<Value, Refused> {
    let must_contain =
        |name: &str| format!("The request body must contain the following parameter: '{name}'.");
    let form_encoded = media_type_is(request.content_type.as_deref(), "application/x-www-form-urlencoded");
    let decoded = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body);
    request.form = match decoded {
        Ok(form) if form_encoded => form,
        _ => return refuse(Refusal::MalformedBody, must_contain("grant_type")),
    };
    let form = parameters(&request.form)?;
    let required = |name: &'static str| match form.get(name) {
        Some(value) if !value.is_empty() => Ok(value.as_str()),
        _ if name == "client_assertion" => refuse(
            Refusal::MissingParameter(name),
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ),
        _ => refuse(Refusal::MissingParameter(name), must_contain(name)),
    };

    let grant_type = required("grant_type")?;
    if grant_type != "client_credentials" {
        return refuse(
            Refusal::GrantType,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        );
    }
    let client_id = required("client_id")?;
    let scope = required("scope")?;
    let assertion = required("client_assertion")?;
    if required("client_assertion_type")? != JWT_BEARER {
        return refuse(
            Refusal::ClientAssertionType,
            "client_assertion_type parameter is empty or not valid.",
        );
    }
    let application = state.application(&request.tenant, client_id)?;
    if scope.split(' ').filter(|s| !s.is_empty()).count() != 1 {
        return refuse(
            Refusal::MultipleScopes,
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        );
    }
    if !scope.ends_with("/.default") {
        return refuse(
            Refusal::ScopeNotDefault,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope \
                 value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    }

    let now = state.clock.now();
    let subject = verify_assertion(state, &application, assertion, now, request).await?;
    let issued = IssuedToken {
        access_token: format!("fake-entra-{}", uuid::Uuid::new_v4().simple()),
        tenant: request.tenant.clone(),
        client_id: client_id.to_string(),
        scope: scope.to_string(),
        subject,
        expires_at: now + TOKEN_LIFETIME,
    };
    let answer = json!({
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME,
        "ext_expires_in": TOKEN_LIFETIME,
        "access_token": issued.access_token,
    });
    state.issued.lock().expect("lock").push(issued);
    Ok(answer)
}

/// The form as a map; each parameter at most once (RFC 6749 §3.1) and each one the request
/// defines.
fn parameters(form: &[(String, String)]) -> Result<BTreeMap<String, String>, Refused> {
    form_parameters(
        form,
        &PARAMETERS,
        |name| Refused {
            reason: Refusal::UnknownParameter(name.to_string()),
            description: format!("{name} parameter is not valid."),
        },
        |name| Refused {
            reason: Refusal::DuplicateParameter(name.to_string()),
            description: format!("{name} parameter is included more than once."),
        },
    )
}

/// The assertion's checks, in order: its shape, `typ` and `alg`; `iss` against the
/// application's credentials (before any fetch, so only a trusted issuer is fetched); the
/// key and signature; `exp` and `nbf`; then `sub` and `aud`. Returns the subject.
async fn verify_assertion(
    state: &State,
    application: &Application,
    assertion: &str,
    now: i64,
    request: &mut TokenRequest,
) -> Result<String, Refused> {
    let malformed = "JWT token is invalid or malformed.";
    let Some(jws) = decode_jws(assertion) else {
        return refuse(Refusal::MalformedAssertion, malformed);
    };
    if let Some(typ) = jws.header.get("typ")
        && typ != "JWT"
        && typ != "http://openid.net/specs/jwt/1.0"
    {
        return refuse(
            Refusal::HeaderType,
            "Invalid JWT header type specified, must be 'JWT' or 'http://openid.net/specs/jwt/1.0'.",
        );
    }
    let alg = jws.header.get("alg").and_then(Value::as_str).unwrap_or_default();
    // Entra's answer lists HS256 with RS256; a federated credential's JWKS has no HMAC key,
    // so an HS256 assertion fails at the key.
    if alg != "RS256" && alg != "HS256" {
        return refuse(
            Refusal::Algorithm,
            format!(
                "Invalid JWT token. '{alg}' is not a supported signature algorithm. Supported signing \
                 algorithms are: 'RS256, HS256'"
            ),
        );
    }
    let text = |name: &'static str| match jws.claims.get(name).and_then(Value::as_str) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => refuse(Refusal::MissingClaim(name), malformed),
    };
    let (iss, sub) = (text("iss")?, text("sub")?);
    let audiences: Vec<&str> = match jws.claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if audiences.is_empty() {
        return refuse(Refusal::MissingClaim("aud"), malformed);
    }
    if application.credentials.is_empty() {
        return refuse(
            Refusal::NoFederatedCredentials,
            format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: \
                 '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'. \
                 https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
                audiences.join(",")
            ),
        );
    }
    let of_issuer: Vec<&FederatedCredential> =
        application.credentials.iter().filter(|c| c.issuer == iss).collect();
    if of_issuer.is_empty() {
        return refuse(
            Refusal::WrongIssuer,
            format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'. {FIC_HELP}"
            ),
        );
    }
    let keys = match fetch_jwks(&state.http, iss).await {
        Ok(keys) => keys,
        Err(_) => return refuse(Refusal::IssuerUnreachable, "Request to External OIDC endpoint failed."),
    };
    let kid = jws.header.get("kid").and_then(Value::as_str);
    let jwk = keys.iter().find(|k| {
        alg == "RS256"
            && kid.is_some()
            && k.get("kid").and_then(Value::as_str) == kid
            && k.get("kty").and_then(Value::as_str) == Some("RSA")
    });
    let Some(jwk) = jwk else {
        return refuse(
            Refusal::UnknownKid,
            format!(
                "Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of \
                 key used by client: '{}']",
                kid.unwrap_or_default()
            ),
        );
    };
    if !signature_verifies(jwk, "RS256", jws.signing_input.as_bytes(), &jws.signature) {
        return refuse(Refusal::BadSignature, "Client assertion contains an invalid signature.");
    }
    request.claims = Some(Value::Object(jws.claims.clone()));

    let time = |name: &str| jws.claims.get(name).and_then(Value::as_f64).map(|t| t.floor() as i64);
    let Some(exp) = time("exp") else {
        return refuse(Refusal::MissingClaim("exp"), malformed);
    };
    let nbf = time("nbf");
    let out_of_range = |reason| {
        refuse(
            reason,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from \
                 {}, expiry time of assertion {}. Review the documentation at \
                 https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
                format_rfc3339(now),
                format_rfc3339(nbf.unwrap_or(0)),
                format_rfc3339(exp)
            ),
        )
    };
    if exp <= now {
        return out_of_range(Refusal::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now) {
        return out_of_range(Refusal::NotYetValid);
    }
    let of_subject: Vec<&&FederatedCredential> = of_issuer.iter().filter(|c| c.subject == sub).collect();
    if of_subject.is_empty() {
        return refuse(
            Refusal::WrongSubject,
            format!(
                "No matching federated identity record found for presented assertion subject '{sub}'. {FIC_HELP}"
            ),
        );
    }
    if !of_subject.iter().any(|c| audiences.iter().any(|a| c.audiences.iter().any(|allowed| allowed == a))) {
        return refuse(
            Refusal::WrongAudience,
            format!(
                "No matching federated identity record found for presented assertion audience '{}'. {FIC_HELP}",
                audiences.join(",")
            ),
        );
    }
    Ok(sub.to_string())
}

/// Entra's error body: RFC 6749 §5.2 `error` and `error_description` (the `AADSTS` code,
/// the message, then trace id, correlation id and time), plus `error_codes`, `timestamp`
/// (`2016-01-09 02:02:12Z`), `trace_id`, `correlation_id` and `error_uri`.
fn error_response(state: &State, refused: &Refused) -> HttpResponse {
    let Answer { status, error, code } = refused.reason.answer();
    let timestamp = format_rfc3339(state.clock.now()).replacen('T', " ", 1);
    let trace_id = uuid::Uuid::new_v4().to_string();
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
            refused.description
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)).json(body)
}

async fn not_found(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    let refused = Refused {
        reason: Refusal::NotFound,
        description: format!("The request to {} is not a token request.", req.path()),
    };
    state.refused(&refused.reason);
    error_response(&state, &refused)
}
