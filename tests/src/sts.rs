//! moto's server as the real STS of the `aws_sts` target, behind a recording proxy.
//!
//! Real STS accepts `AssumeRoleWithWebIdentity` unsigned (the web identity token is the
//! credential), while moto with signature checking on (see [`moto`](crate::moto)) refuses
//! every unsigned call; so this moto runs with checking off. It answers with real
//! temporary credentials that later boto3 calls against it accept
//! ([`StsPeer::caller_identity`]).
//!
//! The proxy in front is what the broker calls. It records every `AssumeRoleWithWebIdentity`
//! request (so tests count upstream calls and read the web identity token Tessera sent),
//! can hold each call for a while (so concurrent exchanges overlap), and can answer in
//! moto's place with STS error documents (throttling, refusals, outages).

use std::collections::VecDeque;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::fake::FakeServer;
use crate::python;

/// One `AssumeRoleWithWebIdentity` request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct AssumeRoleCall {
    pub role_arn: String,
    pub role_session_name: String,
    pub duration_seconds: Option<String>,
    pub web_identity_token: String,
    /// The inline session policy (`Policy`), as sent.
    pub policy: Option<String>,
    /// The managed session policies (`PolicyArns.member.N.arn`), in order.
    pub policy_arns: Vec<String>,
    /// Whether the request carried an `Authorization` header (real STS needs none).
    pub signed: bool,
}

/// Who STS says a set of credentials belongs to (`GetCallerIdentity`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallerIdentity {
    pub user_id: String,
    pub account: String,
    pub arn: String,
}

#[derive(Debug, Default)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    calls: Mutex<Vec<AssumeRoleCall>>,
    delay: Mutex<Duration>,
    /// Answers given instead of forwarding, first to last; `down` answers every call.
    scripted: Mutex<VecDeque<(u16, String)>>,
    down: Mutex<Option<(u16, String)>>,
}

/// moto (signature checking off) and the recording proxy. Dropping it stops both.
#[derive(Debug)]
pub struct StsPeer {
    /// moto's own origin, for boto3 calls that bypass the proxy.
    pub moto_url: String,
    /// The proxy's origin: the `endpoint` of an `aws_sts` target.
    pub url: String,
    state: Arc<ProxyState>,
    /// Stops the proxy when the peer is dropped.
    _proxy: FakeServer,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl StsPeer {
    pub async fn start() -> Self {
        for _ in 0..3 {
            let port = {
                let probe = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
                probe.local_addr().expect("addr").port()
            };
            let log = tempfile::NamedTempFile::new().expect("moto log file");
            let mut child = Command::new(python::interpreter())
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
                .env_remove("MOTO_ACCOUNT_ID")
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("log handle"))
                .stderr(log.reopen().expect("log handle"))
                .spawn()
                .unwrap_or_else(|e| panic!("start moto with {}: {e}", python::interpreter().display()));
            let moto_url = format!("http://127.0.0.1:{port}");
            if !wait_ready(&mut child, &moto_url, &log).await {
                continue;
            }
            let (state, proxy) = proxy(moto_url.clone());
            let url = proxy.url().to_string();
            return Self { moto_url, url, state, _proxy: proxy, child, log };
        }
        panic!("moto could not be started on a free port");
    }

    /// Every `AssumeRoleWithWebIdentity` request the proxy received, answered or not.
    pub fn calls(&self) -> Vec<AssumeRoleCall> {
        self.state.calls.lock().expect("lock").clone()
    }

    pub fn call_count(&self) -> usize {
        self.state.calls.lock().expect("lock").len()
    }

    /// Hold each call this long before answering.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().expect("lock") = delay;
    }

    /// Answer the next calls with these STS errors (HTTP status, error `Code`) instead of
    /// forwarding them, in order.
    pub fn fail_next(&self, errors: &[(u16, &str)]) {
        let mut scripted = self.state.scripted.lock().expect("lock");
        scripted.extend(errors.iter().map(|(status, code)| (*status, error_document(code))));
    }

    /// Answer every call with this STS error (`Some`) or forward again (`None`).
    pub fn set_down(&self, error: Option<(u16, &str)>) {
        *self.state.down.lock().expect("lock") = error.map(|(status, code)| (status, error_document(code)));
    }

    /// `GetCallerIdentity` by boto3 against moto with these credentials.
    pub async fn caller_identity(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: &str,
    ) -> CallerIdentity {
        let args: Vec<String> = vec![
            "whoami".into(),
            self.moto_url.clone(),
            "--access-key".into(),
            access_key_id.into(),
            "--secret-key".into(),
            secret_access_key.into(),
            "--session-token".into(),
            session_token.into(),
        ];
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            python::run("aws_peer.py", &args)
        })
        .await
        .expect("aws_peer task");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("whoami output {out}: {e}"))
    }

    /// The inline session policy moto keeps for the session of `access_key_id`, as moto
    /// parsed it from the request (its state, read through `/moto-api/data.json`).
    pub async fn session_policy(&self, access_key_id: &str) -> Option<String> {
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let data: serde_json::Value = http
            .get(format!("{}/moto-api/data.json", self.moto_url))
            .send()
            .await
            .expect("moto's data")
            .json()
            .await
            .expect("moto's data is JSON");
        let sessions = data["sts"]["AssumedRole"].as_array().expect("moto's sessions");
        let session = sessions
            .iter()
            .find(|s| s["access_key_id"] == access_key_id)
            .unwrap_or_else(|| panic!("moto has no session for {access_key_id}"));
        session["policy"].as_str().map(str::to_owned)
    }

    /// moto's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for StsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An STS error document (the Query API's `ErrorResponse`).
pub fn error_document(code: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>scripted {code}</Message></Error>\
         <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>"
    )
}

async fn wait_ready(child: &mut Child, origin: &str, log: &tempfile::NamedTempFile) -> bool {
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    let probe = format!("{origin}/moto-api/data.json");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("moto exited ({status}):\n{}", std::fs::read_to_string(log.path()).unwrap_or_default());
            return false;
        }
        if http.get(&probe).send().await.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        assert!(Instant::now() < deadline, "moto did not start in 30s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn proxy(upstream: String) -> (Arc<ProxyState>, FakeServer) {
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let state = |_url| ProxyState { upstream, http, ..ProxyState::default() };
    FakeServer::start_on(2, state, |routes| {
        routes.default_service(web::to(forward));
    })
}

async fn forward(req: HttpRequest, body: web::Bytes, state: web::Data<ProxyState>) -> HttpResponse {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let assume = field("Action").as_deref() == Some("AssumeRoleWithWebIdentity");
    if assume {
        state.calls.lock().expect("lock").push(AssumeRoleCall {
            role_arn: field("RoleArn").unwrap_or_default(),
            role_session_name: field("RoleSessionName").unwrap_or_default(),
            duration_seconds: field("DurationSeconds"),
            web_identity_token: field("WebIdentityToken").unwrap_or_default(),
            policy: field("Policy"),
            policy_arns: (1..).map_while(|n| field(&format!("PolicyArns.member.{n}.arn"))).collect(),
            signed: req.headers().contains_key("authorization"),
        });
        let delay = *state.delay.lock().expect("lock");
        tokio::time::sleep(delay).await;
        let scripted = state
            .down
            .lock()
            .expect("lock")
            .clone()
            .or_else(|| state.scripted.lock().expect("lock").pop_front());
        if let Some((status, document)) = scripted {
            return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
                .content_type("text/xml")
                .body(document);
        }
    }
    let mut upstream = state.http.post(format!("{}{}", state.upstream, req.uri())).body(body.to_vec());
    if let Some(ct) = req.headers().get("content-type").and_then(|v| v.to_str().ok()) {
        upstream = upstream.header("content-type", ct);
    }
    match upstream.send().await {
        Ok(answer) => {
            let status = actix_web::http::StatusCode::from_u16(answer.status().as_u16()).expect("status");
            let ct = answer
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/xml")
                .to_string();
            let bytes = answer.bytes().await.unwrap_or_default();
            HttpResponse::build(status).content_type(ct).body(bytes)
        }
        Err(e) => HttpResponse::BadGateway().body(format!("proxy: {e}")),
    }
}
