//! Console sessions: a browser logs in once with an admin token (or its client certificate)
//! and gets a session cookie; every form it posts carries the session's CSRF token.
//!
//! - The session id is 32 random bytes, base64url, in a cookie that is `HttpOnly`,
//!   `SameSite=Strict`, `Path=/ui`, `Secure` when the admin listener serves HTTPS, and
//!   short-lived ([`LIFETIME`] from login, whatever the admin token's own expiry). The
//!   server keeps sessions in memory by the SHA-256 of their id, so a lookup's timing says
//!   nothing about a valid id.
//! - The CSRF token is another 32 random bytes per session, compared in constant time.
//!   The login form, posted before any session exists, uses a double-submit cookie
//!   (`Path=/ui/login`) compared the same way.
//! - Unauthenticated loopback admin listeners (no `admin.auth`) admit the console as they
//!   admit the API: a session is made on the first page, for its CSRF token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_adapters::Clock;

use crate::broker::Broker;
use crate::http::admin_auth::{AdminAuth, AdminCaller};

/// The session cookie's name.
pub const COOKIE: &str = "tessera_console";
/// The login form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "tessera_console_login";
/// How long a session lasts from login, in seconds.
pub const LIFETIME: i64 = 30 * 60;
/// Sessions kept at most; past it the oldest is dropped.
const MAX_SESSIONS: usize = 1024;

/// The console's sessions, shared by the admin listener's workers.
#[derive(Debug)]
pub struct Sessions {
    clock: Arc<dyn Clock>,
    secure: bool,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    caller: AdminCaller,
    created: i64,
    expires: i64,
}

/// The session a request came with (put in its extensions by [`admit`]) or was given.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub csrf: String,
    pub caller: AdminCaller,
    /// The cookie to set: `Some` for a session made by this request.
    pub new_cookie: Option<String>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // aws-lc's generator does not fail once initialized; an all-zero id would only make
    // this one session guessable, so refuse to go on rather than hand it out.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        tracing::error!(code = "TS-CONSOLE-RNG", "no random bytes for a console session");
        return String::new();
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

fn key(id: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, id.as_bytes()).as_ref());
    out
}

/// Whether two secrets are equal, in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

impl Sessions {
    /// `secure`: the admin listener serves HTTPS, so cookies are `Secure`.
    pub fn new(clock: Arc<dyn Clock>, secure: bool) -> Self {
        Self { clock, secure, sessions: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new session for `caller`: its id (for the cookie) and CSRF token.
    pub fn create(&self, caller: AdminCaller) -> Option<(String, String)> {
        let (id, csrf) = (random_token(), random_token());
        if id.is_empty() || csrf.is_empty() {
            return None;
        }
        let now = self.clock.now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions
            .insert(key(&id), Session { csrf: csrf.clone(), caller, created: now, expires: now + LIFETIME });
        Some((id, csrf))
    }

    /// The live session with this id.
    fn find(&self, id: &str) -> Option<Session> {
        let now = self.clock.now();
        self.lock().get(&key(id)).filter(|s| s.expires > now).cloned()
    }

    /// End the session with this id.
    pub fn remove(&self, id: &str) {
        self.lock().remove(&key(id));
    }

    /// The `Set-Cookie` value for session `id`.
    pub fn cookie(&self, id: &str) -> String {
        self.build(COOKIE, id, "/ui", LIFETIME)
    }

    /// The `Set-Cookie` value that deletes the session cookie.
    pub fn expired_cookie(&self) -> String {
        self.build(COOKIE, "", "/ui", 0)
    }

    /// The login form's double-submit cookie.
    pub fn login_cookie(&self, value: &str, max_age: i64) -> String {
        self.build(LOGIN_COOKIE, value, "/ui/login", max_age)
    }

    fn build(&self, name: &str, value: &str, path: &str, max_age: i64) -> String {
        let mut cookie = Cookie::build(name, value)
            .path(path)
            .http_only(true)
            .same_site(SameSite::Strict)
            .max_age(CookieDuration::seconds(max_age))
            .finish();
        cookie.set_secure(self.secure);
        cookie.to_string()
    }
}

/// Admit a console request (see [`crate::http::admin_auth::authenticate`]): the login page
/// and the assets are open; other pages need a live session, or, where the admin API would
/// admit the request as it is (no `admin.auth`, a client certificate, a bearer token), get
/// one. Refused page views go to the login page; refused posts get 403. Every answer
/// carries the console's security headers.
pub async fn admit(
    auth: Option<&AdminAuth>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let path = req.path().to_owned();
    let method = req.method().clone();
    let open = super::is_open_path(&path);
    let sessions = req.app_data::<web::Data<Sessions>>().cloned();
    let from_cookie = req
        .cookie(COOKIE)
        .and_then(|c| sessions.as_ref().and_then(|s| s.find(c.value())))
        .map(|s| ActiveSession { csrf: s.csrf, caller: s.caller, new_cookie: None });
    let caller = match (&from_cookie, auth) {
        (Some(session), _) => Ok(session.caller.clone()),
        (None, None) => Ok(AdminCaller::default()),
        (None, Some(auth)) => auth.check_request(&req),
    };
    let response = match caller {
        Ok(caller) => {
            if let Some(session) = from_cookie {
                req.extensions_mut().insert(session);
            }
            req.extensions_mut().insert(caller.clone());
            let response = next.call(req).await?.map_into_boxed_body();
            tracing::info!(method = %method, path, status = response.status().as_u16(), caller = %caller, "console request");
            response
        }
        _ if open => next.call(req).await?.map_into_boxed_body(),
        Err(reason) => {
            tracing::info!(method = %method, path, reason, peer = ?req.peer_addr(), "console request needs a login");
            let refused = if method == Method::GET || method == Method::HEAD {
                HttpResponse::SeeOther().insert_header((header::LOCATION, "/ui/login")).finish()
            } else {
                super::error_page(
                    StatusCode::FORBIDDEN,
                    "Not logged in",
                    "Log in again: your session has ended.",
                )
            };
            req.into_response(refused)
        }
    };
    Ok(with_security_headers(response))
}

/// The console's headers: a strict Content-Security-Policy (no inline script or style, no
/// other origin), no framing, no sniffing, no referrer, no caching.
fn with_security_headers(mut response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, super::CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, header::HeaderValue::from_static(value));
    }
    response
}

/// The request's session, made now if it came without one (the caller was admitted
/// otherwise). `None` only when no random bytes could be had.
pub fn session_of(req: &HttpRequest) -> Option<ActiveSession> {
    if let Some(session) = req.extensions().get::<ActiveSession>() {
        return Some(session.clone());
    }
    let sessions = req.app_data::<web::Data<Sessions>>()?;
    let caller = req.extensions().get::<AdminCaller>().cloned().unwrap_or_default();
    let (id, csrf) = sessions.create(caller.clone())?;
    let session = ActiveSession { csrf, caller, new_cookie: Some(sessions.cookie(&id)) };
    req.extensions_mut().insert(session.clone());
    Some(session)
}

/// Whether a posted form's `csrf` field is the CSRF token of the session its cookie names.
/// A post without a session cookie has none to match.
pub fn csrf_ok(req: &HttpRequest, posted: &str) -> bool {
    req.extensions()
        .get::<ActiveSession>()
        .is_some_and(|s| s.new_cookie.is_none() && same_secret(&s.csrf, posted))
}

/// The body of `POST /ui/login`.
#[derive(Debug, serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

/// `GET /ui/login`: the form, with a fresh double-submit CSRF cookie; without
/// `admin.auth`, straight to the console.
pub async fn login_page(broker: web::Data<Arc<Broker>>, sessions: web::Data<Sessions>) -> HttpResponse {
    if broker.admin_auth().is_none() {
        return HttpResponse::SeeOther().insert_header((header::LOCATION, "/ui/")).finish();
    }
    let csrf = random_token();
    HttpResponse::Ok()
        .insert_header((header::SET_COOKIE, sessions.login_cookie(&csrf, 600)))
        .content_type(super::HTML)
        .body(super::layout::login(&csrf, None).into_string())
}

/// `POST /ui/login`: check the double-submit token, then the admin token (or the client
/// certificate) as the API would; a new session on success.
pub async fn login(
    req: HttpRequest,
    broker: web::Data<Arc<Broker>>,
    sessions: web::Data<Sessions>,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    let Some(auth) = broker.admin_auth() else {
        return HttpResponse::SeeOther().insert_header((header::LOCATION, "/ui/")).finish();
    };
    let cookie = req.cookie(LOGIN_COOKIE).map(|c| c.value().to_string()).unwrap_or_default();
    if !same_secret(&cookie, &form.csrf) {
        return super::error_page(
            StatusCode::FORBIDDEN,
            "Login refused",
            "The login form had no valid CSRF token. Open the login page again.",
        );
    }
    match auth.check_login(&form.token, &req) {
        Ok(caller) => match sessions.create(caller) {
            Some((id, _)) => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/ui/"))
                .append_header((header::SET_COOKIE, sessions.cookie(&id)))
                .append_header((header::SET_COOKIE, sessions.login_cookie("", 0)))
                .finish(),
            None => super::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Login failed",
                "No session could be made.",
            ),
        },
        Err(reason) => {
            let csrf = random_token();
            HttpResponse::Unauthorized()
                .insert_header((header::SET_COOKIE, sessions.login_cookie(&csrf, 600)))
                .content_type(super::HTML)
                .body(super::layout::login(&csrf, Some(&reason)).into_string())
        }
    }
}

/// The body of `POST /ui/logout`.
#[derive(Debug, serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /ui/logout`: end the session and delete its cookie.
pub async fn logout(
    req: HttpRequest,
    sessions: web::Data<Sessions>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    if !csrf_ok(&req, &form.csrf) {
        return super::csrf_refused();
    }
    if let Some(cookie) = req.cookie(COOKIE) {
        sessions.remove(cookie.value());
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/ui/login"))
        .insert_header((header::SET_COOKIE, sessions.expired_cookie()))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_adapters::ManualClock;

    #[test]
    fn sessions_expire_and_cookies_are_locked_down() {
        let clock = Arc::new(ManualClock::new(1_790_000_000));
        let sessions = Sessions::new(clock.clone(), true);
        let (id, csrf) = sessions.create(AdminCaller::default()).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&id).unwrap().len(), 32);
        assert_ne!(id, csrf);
        assert_eq!(sessions.find(&id).unwrap().csrf, csrf);
        assert!(sessions.find("not-a-session").is_none());
        let cookie = sessions.cookie(&id);
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/ui", "Max-Age=1800"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(!Sessions::new(clock.clone(), false).cookie(&id).contains("Secure"));
        clock.advance(LIFETIME);
        assert!(sessions.find(&id).is_none(), "a session ends after its lifetime");
    }

    #[test]
    fn secrets_compare_whole_and_never_empty() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", ""));
    }
}
