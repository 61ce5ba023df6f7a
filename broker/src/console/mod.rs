//! The operator console: server-rendered HTML pages under `/ui/` on the admin listener,
//! reading the same state and store the admin API reads.
//!
//! # Layout
//! - `session`: login with an admin token (or client certificate), session cookies, CSRF
//!   tokens, and the gate the admin authentication middleware hands `/ui` requests to.
//! - `layout`: the page shell, navigation, the login page, formatting helpers.
//! - `overview`, `graph`, `workloads`, `audit`, `explain`, `rules`, `impact`: one page each.
//! - `assets/`: the one stylesheet and the one script (hashing a pasted token in the
//!   browser), compiled into the binary.
//!
//! Pages are HTML forms and links (no client-side rendering); the only script computes a
//! token's SHA-256 with WebCrypto so the token never reaches the server when tracing it.
//! Every answer carries a Content-Security-Policy allowing nothing but this origin's own
//! stylesheet and script ([`CSP`]); pages never show a token or key, only fingerprints.

mod audit;
mod explain;
mod graph;
mod impact;
mod layout;
mod overview;
mod rules;
pub mod session;
mod workloads;

use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use maud::Markup;

use crate::audit::store::AuditStore;
use crate::broker::Broker;
use crate::http::Endpoint;
use crate::http::admin_auth::AdminCaller;

pub use session::Sessions;

/// Where the console lives on the admin listener.
pub const PREFIX: &str = "/ui";
/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const HTML: &str = "text/html; charset=utf-8";
const STYLESHEET: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");

/// The console's routes, registered on the admin listener with its API ([`crate::http::admin::ADMIN`]).
/// They answer HTML, not JSON, so the OpenAPI document does not describe them.
pub static ROUTES: &[Endpoint] = &[
    Endpoint::new(Method::GET, "/ui", |r| r.to(to_overview)),
    Endpoint::new(Method::GET, "/ui/", |r| r.to(overview::page)),
    Endpoint::new(Method::GET, "/ui/graph", |r| r.to(graph::page)),
    Endpoint::new(Method::GET, "/ui/workloads", |r| r.to(workloads::directory)),
    Endpoint::new(Method::GET, "/ui/workload", |r| r.to(workloads::workload)),
    Endpoint::new(Method::GET, "/ui/audit", |r| r.to(audit::page)),
    Endpoint::new(Method::GET, "/ui/explain", |r| r.to(explain::form)),
    Endpoint::new(Method::POST, "/ui/explain", |r| r.to(explain::run)),
    Endpoint::new(Method::GET, "/ui/rules", |r| r.to(rules::page)),
    Endpoint::new(Method::POST, "/ui/rules/reload", |r| r.to(rules::reload)),
    Endpoint::new(Method::GET, "/ui/impact", |r| r.to(impact::form)),
    Endpoint::new(Method::POST, "/ui/impact", |r| r.to(impact::run)),
    Endpoint::new(Method::GET, "/ui/login", |r| r.to(session::login_page)),
    Endpoint::new(Method::POST, "/ui/login", |r| r.to(session::login)),
    Endpoint::new(Method::POST, "/ui/logout", |r| r.to(session::logout)),
    Endpoint::new(Method::GET, "/ui/assets/console.css", |r| r.to(stylesheet)),
    Endpoint::new(Method::GET, "/ui/assets/console.js", |r| r.to(script)),
];

/// Register the console's routes and its form size limit.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // A pasted subject token is at most 16 KiB by default; forms carry little else.
    cfg.app_data(web::FormConfig::default().limit(64 * 1024).error_handler(|e, _| {
        let response = error_page(StatusCode::BAD_REQUEST, "Bad form", "The form could not be read.");
        actix_web::error::InternalError::from_response(e, response).into()
    }));
    crate::http::register(cfg, ROUTES);
}

/// Whether the admin listener hands `path` to the console's gate.
pub fn is_console_path(path: &str) -> bool {
    path == PREFIX || path.starts_with("/ui/")
}

/// Console paths served without a login: the login page and the assets it uses.
fn is_open_path(path: &str) -> bool {
    path == "/ui/login" || path.starts_with("/ui/assets/")
}

async fn to_overview() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/ui/")).finish()
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok().content_type("text/css; charset=utf-8").body(STYLESHEET)
}

async fn script() -> HttpResponse {
    HttpResponse::Ok().content_type("text/javascript; charset=utf-8").body(SCRIPT)
}

/// A short page saying what went wrong, with `status`.
fn error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).content_type(HTML).body(layout::bare(title, message).into_string())
}

/// A post whose CSRF token is missing or wrong.
fn csrf_refused() -> HttpResponse {
    error_page(
        StatusCode::FORBIDDEN,
        "Refused: no valid CSRF token",
        "This form was not posted from a console page of this session. Reload the page and try again.",
    )
}

/// What every page handler starts from: the broker, the caller and their session.
struct Ctx {
    broker: Arc<Broker>,
    session: Option<session::ActiveSession>,
    path: String,
}

impl FromRequest for Ctx {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let broker = req.app_data::<web::Data<Arc<Broker>>>().map(|b| Arc::clone(b.get_ref()));
        std::future::ready(match broker {
            Some(broker) => {
                Ok(Self { broker, session: session::session_of(req), path: req.path().to_string() })
            }
            None => Err(actix_web::error::ErrorInternalServerError("the console has no broker")),
        })
    }
}

impl Ctx {
    fn csrf(&self) -> &str {
        self.session.as_ref().map_or("", |s| s.csrf.as_str())
    }

    fn caller(&self) -> AdminCaller {
        self.session.as_ref().map(|s| s.caller.clone()).unwrap_or_default()
    }

    fn now_ms(&self) -> i64 {
        self.broker.clock().now_millis()
    }

    /// The page `title` with `body` in the console's shell, as a 200 answer.
    fn render(&self, title: &str, body: Markup) -> HttpResponse {
        self.render_status(StatusCode::OK, title, body)
    }

    fn render_status(&self, status: StatusCode, title: &str, body: Markup) -> HttpResponse {
        let caller = self.caller();
        let page = layout::Page {
            title,
            path: &self.path,
            csrf: self.csrf(),
            caller: &caller,
            authenticated: self.broker.admin_auth().is_some(),
        };
        let mut response = HttpResponse::build(status);
        response.content_type(HTML);
        if let Some(cookie) = self.session.as_ref().and_then(|s| s.new_cookie.clone()) {
            response.insert_header((header::SET_COOKIE, cookie));
        }
        response.body(layout::page(&page, body).into_string())
    }

    /// The audit store, or the page saying there is none.
    fn store(&self, title: &str) -> Result<&AuditStore, HttpResponse> {
        self.broker.audit_store().ok_or_else(|| {
            self.render(
                title,
                maud::html! { p.notice { "This broker keeps no audit store (audit.store.enabled is false): there is nothing to show here." } },
            )
        })
    }

    /// The page for a store query that failed.
    fn store_failed(&self, title: &str, e: &crate::audit::store::StoreError) -> HttpResponse {
        tracing::error!(error = %e, "console: audit store query failed");
        self.render_status(
            StatusCode::SERVICE_UNAVAILABLE,
            title,
            maud::html! { p.error role="alert" { "The audit store did not answer: " (e.to_string()) } },
        )
    }
}

/// A query-string or form value with surrounding blanks removed; `None` when empty.
fn filled(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// The console's query strings as its pages read them: the directory's, the audit page's
/// and the graph's parameters, their cursors (each must read back as written) and filters.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_console_query(query: &str) {
    use crate::audit::store::{Cursor, WorkloadCursor};
    if let Ok(p) = serde_urlencoded::from_str::<workloads::DirectoryParams>(query) {
        let _ = attribute_filter(&p.attribute);
        if let Some(c) = filled(&p.cursor).and_then(|c| c.parse::<WorkloadCursor>().ok()) {
            assert_eq!(c.to_string().parse::<WorkloadCursor>().ok(), Some(c));
        }
    }
    if let Ok(p) = serde_urlencoded::from_str::<audit::AuditParams>(query) {
        let _ = filled(&p.issued_token).map(|f| audit::is_fingerprint(&f));
        if let Some(c) = filled(&p.cursor).and_then(|c| c.parse::<Cursor>().ok()) {
            assert_eq!(c.to_string().parse::<Cursor>().ok(), Some(c));
        }
    }
    let _ = serde_urlencoded::from_str::<graph::GraphParams>(query);
}

/// `key=value` of an attribute filter.
fn attribute_filter(value: &Option<String>) -> Option<(String, String)> {
    filled(value).and_then(|v| v.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
}
