//! Authentication of the admin listener: a Tessera-issued bearer JWT (RFC 6750), a client
//! certificate (mTLS), or both, as `admin.auth` says.
//!
//! One middleware, [`authenticate`], wraps the whole admin `App`, so every admin route,
//! present or added later to [`super::admin::configure`], is behind it; only `GET /healthz`
//! stays open, for probes. It also writes the one log line per admin request, with the
//! caller's identity (token `sub`, certificate subject) and never the token.
//!
//! - Tokens are verified in process against the keys Tessera publishes at
//!   `/.well-known/jwks.json` (active, next, and retired-but-published), with the shared
//!   JWT rules of `tessera_adapters::jwt`: algorithm pinned to the admin target's, `iss`
//!   this issuer, `aud` the target's audience, `typ: JWT`, `exp` required, `nbf`/`iat`
//!   with a small leeway, lifetime at most the target's `max_ttl`. The built target says
//!   what its tokens carry ([`CredentialTarget::issued_jwt`]); its config is not read here.
//! - Client certificates are verified during the handshake by rustls' WebPKI verifier
//!   against `client_ca`; [`client_certificate`] then records the verified leaf's subject
//!   on the connection.

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::rt::net::TcpStream;
use actix_web::{HttpMessage, HttpResponse};
use arc_swap::ArcSwapOption;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tessera_adapters::jwt::{Algorithm, HeaderRule, IssuerRule, JwtPolicy, KeySet, verify_with_keys};
use tessera_adapters::source::SourceError;
use tessera_adapters::{Clock, CredentialTarget};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::{
    AdminAuthConfig, AdminAuthRequire, AdminTlsConfig, ConfigError, ConfigErrors, LoadedConfig,
};
use crate::issuer::Issuer;

/// The `typ` header Tessera's signer writes (RFC 7519 §5.1), required of admin tokens.
const TOKEN_TYP: &str = "JWT";
/// Clock skew allowed on `exp`, `nbf` and `iat`: replicas sharing keys may disagree a little.
const LEEWAY: Duration = Duration::from_secs(30);
/// The one admin path that needs no authentication: liveness probes.
const OPEN_PATH: &str = "/healthz";
/// The realm of `WWW-Authenticate` challenges (RFC 6750 §3).
const REALM: &str = "tessera-admin";

/// The admin listener's authentication, built from `admin.auth` when the broker starts.
pub struct AdminAuth {
    jwt: Option<AdminTokenVerifier>,
    tls: Option<Arc<rustls::ServerConfig>>,
    require: AdminAuthRequire,
}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAuth")
            .field("jwt", &self.jwt)
            .field("tls", &self.tls.is_some())
            .field("require", &self.require)
            .finish()
    }
}

impl AdminAuth {
    /// Build what `admin.auth` asks for: `None` when the admin listener has no
    /// authentication (loopback only, checked when the config was loaded). `targets` are
    /// the built targets, one of which `admin.auth.jwt.target` names. Certificate and key
    /// files are read here; problems carry the file, line and column of the key naming the
    /// file.
    /// Check `admin.auth` as [`AdminAuth::build`] does, without the signing keys: the
    /// admin target and the TLS files. For `tessera check`.
    pub fn validate(
        config: &LoadedConfig,
        targets: &[Arc<dyn CredentialTarget>],
    ) -> Result<(), ConfigErrors> {
        let Some(auth) = config.config.admin().and_then(|a| a.auth()) else {
            return Ok(());
        };
        let mut errors = Vec::new();
        if let Some(jwt) = &auth.jwt
            && let Err(e) =
                admin_token_policy(config, &jwt.value.target, targets, config.config.issuer.url.as_str())
        {
            errors.push(e);
        }
        if let Some(tls) = &auth.tls
            && let Err(mut e) = server_config(config, &tls.value, auth)
        {
            errors.append(&mut e);
        }
        if errors.is_empty() { Ok(()) } else { Err(ConfigErrors(errors)) }
    }

    pub fn build(
        config: &LoadedConfig,
        issuer: &Arc<Issuer>,
        targets: &[Arc<dyn CredentialTarget>],
        clock: &Arc<dyn Clock>,
    ) -> Result<Option<Arc<Self>>, ConfigErrors> {
        let Some(auth) = config.config.admin().and_then(|a| a.auth()) else {
            return Ok(None);
        };
        let mut errors = Vec::new();
        let jwt = match &auth.jwt {
            Some(jwt) => match AdminTokenVerifier::new(config, &jwt.value.target, targets, issuer, clock) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            None => None,
        };
        let tls = match &auth.tls {
            Some(tls) => match server_config(config, &tls.value, auth) {
                Ok(c) => Some(Arc::new(c)),
                Err(mut e) => {
                    errors.append(&mut e);
                    None
                }
            },
            None => None,
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Some(Arc::new(Self { jwt, tls, require: auth.require() })))
    }

    /// The rustls configuration of the admin listener, when it serves HTTPS.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.clone()
    }

    /// Whether a console login with `token` (pasted into the login form) and the
    /// request's client certificate, if any, would be admitted as an API request with
    /// `Authorization: Bearer <token>`. An empty token logs in on the certificate alone.
    /// The error says why not, never with the token.
    pub fn check_login(&self, token: &str, req: &actix_web::HttpRequest) -> Result<AdminCaller, String> {
        let header = format!("Bearer {}", token.trim());
        let authorization: Vec<&[u8]> =
            if token.trim().is_empty() { Vec::new() } else { vec![header.as_bytes()] };
        let certificate = req.conn_data::<ClientCertificate>();
        self.check(&authorization, certificate).map_err(|refusal| {
            tracing::warn!(code = refusal.code(), reason = %refusal, peer = ?req.peer_addr(), "console login refused");
            refusal.to_string()
        })
    }

    /// Admit a request as [`authenticate`] does, or say why not: for the console, whose
    /// pages answer a refusal with the login page rather than a JSON body.
    pub(crate) fn check_request(&self, req: &ServiceRequest) -> Result<AdminCaller, String> {
        let authorization: Vec<&[u8]> =
            req.headers().get_all(header::AUTHORIZATION).map(header::HeaderValue::as_bytes).collect();
        self.check(&authorization, req.conn_data::<ClientCertificate>()).map_err(|r| r.to_string())
    }

    /// Decide on a request from its `Authorization` header values and the connection's
    /// verified client certificate, if any.
    fn check(
        &self,
        authorization: &[&[u8]],
        certificate: Option<&ClientCertificate>,
    ) -> Result<AdminCaller, Refusal> {
        let certificate = certificate.map(|c| c.0.clone());
        let token = match (&self.jwt, authorization) {
            (_, []) => None,
            (Some(verifier), [value]) => Some(bearer(value).and_then(|t| verifier.verify(t))),
            (Some(_), _) => Some(Err(Refusal::InvalidRequest("more than one Authorization header"))),
            // Without `jwt`, an Authorization header is not a credential; it is ignored.
            (None, _) => None,
        };
        let subject = match token {
            Some(Ok(sub)) => Some(sub),
            // A token that is sent must be valid, whatever else the caller has.
            Some(Err(refusal)) => return Err(refusal),
            None => None,
        };
        let caller = AdminCaller { subject, certificate };
        let has_token = caller.subject.is_some();
        let has_cert = caller.certificate.is_some();
        let (wants_token, wants_cert) = (self.jwt.is_some(), self.tls.is_some());
        let ok = match self.require {
            AdminAuthRequire::All => (has_token || !wants_token) && (has_cert || !wants_cert),
            AdminAuthRequire::Any => has_token || has_cert,
        };
        if ok {
            Ok(caller)
        } else if wants_token && !has_token {
            Err(Refusal::NoToken)
        } else {
            Err(Refusal::NoCertificate)
        }
    }
}

/// The credential part of `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme is
/// case-insensitive, RFC 7235 §2.1).
fn bearer(value: &[u8]) -> Result<&str, Refusal> {
    let value =
        std::str::from_utf8(value).map_err(|_| Refusal::InvalidRequest("Authorization is not text"))?;
    let (scheme, token) =
        value.split_once(' ').ok_or(Refusal::InvalidRequest("Authorization is not Bearer"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::InvalidRequest("Authorization is not Bearer"));
    }
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Err(Refusal::InvalidRequest("the Bearer token is empty"));
    }
    Ok(token)
}

/// Verifies admin bearer tokens against Tessera's own published keys.
struct AdminTokenVerifier {
    target: String,
    issuer: Arc<Issuer>,
    policy: JwtPolicy,
    clock: Arc<dyn Clock>,
    /// The JWKS document last parsed and its keys: parsed again only when the issuer
    /// serves a different document (a rotation, a retired key leaving).
    keys: ArcSwapOption<(Arc<[u8]>, KeySet)>,
}

impl fmt::Debug for AdminTokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminTokenVerifier")
            .field("target", &self.target)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What an admin token must be: issued by `issuer_url` for the `jwt` target `target`
/// names, with its algorithm, lifetime and `typ`.
fn admin_token_policy(
    config: &LoadedConfig,
    target: &serde_saphyr::Spanned<String>,
    targets: &[Arc<dyn CredentialTarget>],
    issuer_url: &str,
) -> Result<JwtPolicy, ConfigError> {
    let error = |message: String| ConfigErrors::at_entry(&config.path, target, message);
    // The config check made sure this names a `jwt` target, which issues Tessera JWTs.
    let built = targets.iter().find(|t| t.name() == target.value);
    let Some((jwt, max_ttl)) = built.and_then(|t| t.issued_jwt().map(|jwt| (jwt, t.max_ttl()))) else {
        return Err(error(format!("admin.auth.jwt.target `{}` is not a `jwt` target", target.value)));
    };
    let algorithm = Algorithm::from_name(jwt.algorithm.as_str()).ok_or_else(|| {
        error(format!("admin tokens cannot be verified with algorithm {}", jwt.algorithm.as_str()))
    })?;
    JwtPolicy::with_rules(
        IssuerRule::OneOf(vec![issuer_url.to_string()]),
        HeaderRule::Typ(TOKEN_TYP),
        vec![jwt.audience],
        vec![algorithm],
        LEEWAY,
        max_ttl,
    )
    .map_err(|e| error(format!("admin.auth.jwt.target `{}`: {}", target.value, e.message)))
}

impl AdminTokenVerifier {
    fn new(
        config: &LoadedConfig,
        target: &serde_saphyr::Spanned<String>,
        targets: &[Arc<dyn CredentialTarget>],
        issuer: &Arc<Issuer>,
        clock: &Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let policy = admin_token_policy(config, target, targets, issuer.url())?;
        Ok(Self {
            target: target.value.clone(),
            issuer: Arc::clone(issuer),
            policy,
            clock: Arc::clone(clock),
            keys: ArcSwapOption::empty(),
        })
    }

    /// The verified token's `sub`.
    fn verify(&self, token: &str) -> Result<String, Refusal> {
        let jwks = self.issuer.jwks_json();
        let cached = self.keys.load_full().filter(|cached| Arc::ptr_eq(&cached.0, &jwks));
        let cached = match cached {
            Some(cached) => cached,
            None => {
                let keys = KeySet::from_json(&jwks, self.policy.algorithms())
                    .map_err(|e| Refusal::Keys(e.to_string()))?;
                let fresh = Arc::new((jwks, keys));
                self.keys.store(Some(Arc::clone(&fresh)));
                fresh
            }
        };
        let claims =
            verify_with_keys(token, &self.policy, &cached.1, self.clock.now()).map_err(Refusal::Token)?;
        // The jwt target always sets `sub` (the identity id); a token without one is not ours.
        claims.required_str("sub").map(str::to_owned).map_err(Refusal::Token)
    }
}

/// Who made an admin request, as authenticated; put in the request's extensions for the
/// handlers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminCaller {
    /// The `sub` of a verified admin token: the identity id the token was issued to.
    pub subject: Option<String>,
    /// The verified client certificate's subject and SANs.
    pub certificate: Option<String>,
}

impl fmt::Display for AdminCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.subject, &self.certificate) {
            (Some(sub), Some(cert)) => write!(f, "{sub} (certificate {cert})"),
            (Some(sub), None) => f.write_str(sub),
            (None, Some(cert)) => write!(f, "certificate {cert}"),
            (None, None) => f.write_str("anonymous"),
        }
    }
}

/// A verified client certificate's subject, recorded on its connection.
#[derive(Debug, Clone)]
struct ClientCertificate(String);

/// Why an admin request was refused. The detail goes to the log and, this being the
/// operators' API, to the body; never the token itself.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("no bearer token")]
    NoToken,
    #[error("no client certificate")]
    NoCertificate,
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("the bearer token was refused: {0}")]
    Token(SourceError),
    #[error("Tessera's key set could not be read: {0}")]
    Keys(String),
}

impl Refusal {
    fn code(&self) -> &'static str {
        match self {
            Self::NoToken => "TS-ADMIN-NO-TOKEN",
            Self::NoCertificate => "TS-ADMIN-NO-CERT",
            Self::InvalidRequest(_) => "TS-ADMIN-BAD-AUTHORIZATION",
            Self::Token(e) => e.code(),
            Self::Keys(_) => "TS-ADMIN-KEYS",
        }
    }

    /// RFC 6750 §3: 401 with a `Bearer` challenge, carrying an error code unless the
    /// request had no credentials at all (§3.1).
    fn response(&self, challenge: bool) -> HttpResponse {
        let (status, error) = match self {
            Self::NoToken => (StatusCode::UNAUTHORIZED, None),
            // Only reachable with a certificate required and none presented, which the
            // handshake already refuses: no Bearer challenge would help.
            Self::NoCertificate => (StatusCode::FORBIDDEN, None),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, Some("invalid_request")),
            Self::Token(_) => (StatusCode::UNAUTHORIZED, Some("invalid_token")),
            Self::Keys(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        let mut response = HttpResponse::build(status);
        if challenge && matches!(status, StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST) {
            let value = match error {
                Some(error) => format!(r#"Bearer realm="{REALM}", error="{error}""#),
                None => format!(r#"Bearer realm="{REALM}""#),
            };
            response.insert_header((header::WWW_AUTHENTICATE, value));
        }
        let body_error = match self {
            Self::NoToken | Self::NoCertificate => "unauthorized",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Token(_) => "invalid_token",
            Self::Keys(_) => "server_error",
        };
        response.json(json!({ "error": body_error, "message": self.to_string(), "code": self.code() }))
    }
}

/// The admin middleware: authenticate (unless the path is `/healthz` or the listener has
/// no authentication), then log one line per request with the caller's identity.
/// `auth` is the listener's policy, handed over when the app is built (`None`: the
/// listener has no authentication).
pub async fn authenticate(
    auth: Option<Arc<AdminAuth>>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let method = req.method().clone();
    let path = req.path().to_owned();
    let peer = req.peer_addr().map(|p| p.to_string());
    if path == OPEN_PATH {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    // The console's pages log in with a session cookie and answer refusals with the login
    // page; it admits them by the same rules.
    if crate::console::is_console_path(&path) {
        return crate::console::session::admit(auth.as_deref(), req, next).await;
    }
    let caller = match &auth {
        None => AdminCaller::default(),
        Some(auth) => {
            let authorization: Vec<&[u8]> =
                req.headers().get_all(header::AUTHORIZATION).map(header::HeaderValue::as_bytes).collect();
            let certificate = req.conn_data::<ClientCertificate>();
            match auth.check(&authorization, certificate) {
                Ok(caller) => caller,
                Err(refusal) => {
                    tracing::warn!(
                        code = refusal.code(),
                        reason = %refusal,
                        method = %method,
                        path,
                        peer = peer.as_deref(),
                        client_certificate = certificate.map(|c| c.0.as_str()),
                        "admin request refused"
                    );
                    let response = refusal.response(auth.jwt.is_some());
                    return Ok(req.into_response(response));
                }
            }
        }
    };
    req.extensions_mut().insert(caller.clone());
    let response = next.call(req).await?;
    tracing::info!(
        method = %method,
        path,
        status = response.status().as_u16(),
        caller = %caller,
        sub = caller.subject.as_deref(),
        client_certificate = caller.certificate.as_deref(),
        peer = peer.as_deref(),
        "admin request"
    );
    Ok(response.map_into_boxed_body())
}

/// `HttpServer::on_connect` hook of the HTTPS admin listener: record the verified client
/// certificate's subject on the connection. rustls verified the chain to `client_ca`
/// during the handshake; this only reads it.
pub fn client_certificate(conn: &dyn Any, extensions: &mut Extensions) {
    let Some(tls) = conn.downcast_ref::<TlsStream<TcpStream>>() else {
        return;
    };
    let (_, session) = tls.get_ref();
    if let Some(leaf) = session.peer_certificates().and_then(<[CertificateDer<'_>]>::first) {
        extensions.insert(ClientCertificate(describe_certificate(leaf)));
    }
}

/// `subject` plus any DNS, URI, email or IP SANs: what names the caller in the log.
fn describe_certificate(der: &CertificateDer<'_>) -> String {
    let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
        return "unparsable certificate".to_string();
    };
    let mut text = cert.subject().to_string();
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        let names: Vec<String> = sans
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(n) => Some(format!("DNS:{n}")),
                GeneralName::URI(u) => Some(format!("URI:{u}")),
                GeneralName::RFC822Name(e) => Some(format!("email:{e}")),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => <[u8; 4]>::try_from(*ip).ok().map(|o| format!("IP:{}", std::net::Ipv4Addr::from(o))),
                    16 => {
                        <[u8; 16]>::try_from(*ip).ok().map(|o| format!("IP:{}", std::net::Ipv6Addr::from(o)))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        if !names.is_empty() {
            text.push_str(&format!(" [{}]", names.join(", ")));
        }
    }
    if text.is_empty() { "certificate with an empty subject".to_string() } else { text }
}

/// rustls on aws-lc-rs serving `cert`/`key` and verifying client certificates against
/// `client_ca`. With `require: any` a client may connect without a certificate (and must
/// then bring a token); a certificate it does present must verify either way. ALPN offers
/// `http/1.1` only: Tessera serves no HTTP/2 (see `server::admin_tls_server`).
fn server_config(
    config: &LoadedConfig,
    tls: &AdminTlsConfig,
    auth: &AdminAuthConfig,
) -> Result<rustls::ServerConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let at = |entry: &serde_saphyr::Spanned<PathBuf>, message: String| {
        ConfigErrors::at_entry(&config.path, entry, message)
    };
    let mut read = |entry: &serde_saphyr::Spanned<PathBuf>, what: &str| -> Option<(PathBuf, Vec<u8>)> {
        let path = config.resolve(&entry.value);
        match std::fs::read(&path) {
            Ok(bytes) => Some((path, bytes)),
            Err(e) => {
                errors.push(at(entry, format!("cannot read admin.auth.tls.{what} {}: {e}", path.display())));
                None
            }
        }
    };
    let cert = read(&tls.cert, "cert");
    let key = read(&tls.key, "key");
    let ca = read(&tls.client_ca, "client_ca");
    let certs = cert.and_then(|(path, bytes)| {
        pem_certificates(&path, &bytes, "cert").map_err(|m| errors.push(at(&tls.cert, m))).ok()
    });
    let key = key.and_then(|(path, bytes)| {
        PrivateKeyDer::from_pem_slice(&bytes)
            .map_err(|e| {
                errors.push(at(
                    &tls.key,
                    format!("admin.auth.tls.key {}: no PEM private key: {e}", path.display()),
                ))
            })
            .ok()
    });
    let roots = ca.and_then(|(path, bytes)| {
        let certs = pem_certificates(&path, &bytes, "client_ca")
            .map_err(|m| errors.push(at(&tls.client_ca, m)))
            .ok()?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            if let Err(e) = roots.add(cert) {
                errors.push(at(
                    &tls.client_ca,
                    format!("admin.auth.tls.client_ca {}: not a usable CA certificate: {e}", path.display()),
                ));
                return None;
            }
        }
        Some(roots)
    });
    let (Some(certs), Some(key), Some(roots)) = (certs, key, roots) else {
        return Err(errors);
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
    if auth.jwt.is_some() && auth.require() == AdminAuthRequire::Any {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier =
        verifier.build().map_err(|e| vec![at(&tls.client_ca, format!("admin.auth.tls.client_ca: {e}"))])?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| vec![at(&tls.cert, format!("admin.auth.tls: {e}"))])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map(|mut config| {
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            config
        })
        .map_err(|e| {
            vec![at(&tls.key, format!("admin.auth.tls.cert and key do not make a usable pair: {e}"))]
        })
}

fn pem_certificates(path: &Path, bytes: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("admin.auth.tls.{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("admin.auth.tls.{what} {}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials_are_parsed_strictly() {
        assert_eq!(bearer(b"Bearer abc.def.ghi").ok(), Some("abc.def.ghi"));
        assert_eq!(bearer(b"bearer abc").ok(), Some("abc"));
        assert!(matches!(bearer(b"Basic dXNlcjpwdw=="), Err(Refusal::InvalidRequest(_))));
        assert!(matches!(bearer(b"Bearer"), Err(Refusal::InvalidRequest(_))));
        assert!(matches!(bearer(b"Bearer   "), Err(Refusal::InvalidRequest(_))));
        assert!(matches!(bearer(&[0xff, 0xfe]), Err(Refusal::InvalidRequest(_))));
    }

    #[test]
    fn a_client_certificate_is_named_by_its_subject_and_sans() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["ops.example".to_string(), "10.1.2.3".to_string()]).unwrap();
        let uri = rcgen::string::Ia5String::try_from("spiffe://corp/ops").unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(uri));
        params.distinguished_name.push(rcgen::DnType::CommonName, "ops-oncall");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Corp");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            describe_certificate(cert.der()),
            "CN=ops-oncall, O=Corp [DNS:ops.example, IP:10.1.2.3, URI:spiffe://corp/ops]"
        );
        assert_eq!(describe_certificate(&CertificateDer::from(vec![1, 2, 3])), "unparsable certificate");
    }

    #[test]
    fn the_caller_reads_as_who_authenticated() {
        let both =
            AdminCaller { subject: Some("oidc://corp/alice".into()), certificate: Some("CN=alice".into()) };
        assert_eq!(both.to_string(), "oidc://corp/alice (certificate CN=alice)");
        let cert = AdminCaller { subject: None, certificate: Some("CN=alice".into()) };
        assert_eq!(cert.to_string(), "certificate CN=alice");
        assert_eq!(AdminCaller::default().to_string(), "anonymous");
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        let header = |r: &HttpResponse| {
            r.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap_or_default().to_string())
        };
        let none = Refusal::NoToken.response(true);
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&none).as_deref(), Some(r#"Bearer realm="tessera-admin""#));
        let bad = Refusal::Token(SourceError::Expired).response(true);
        assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&bad).as_deref(), Some(r#"Bearer realm="tessera-admin", error="invalid_token""#));
        let cert_only = Refusal::NoCertificate.response(false);
        assert_eq!(cert_only.status(), StatusCode::FORBIDDEN);
        assert_eq!(header(&cert_only), None);
    }
}
