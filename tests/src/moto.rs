//! moto's server as the real AWS peer of the `aws_iam` source (DESIGN.md "Testing against
//! real peers"): STS and IAM on loopback, with SigV4 signature checking on.
//!
//! moto checks signatures once `INITIAL_NO_AUTH_ACTION_COUNT` requests have been served
//! (moto `core/authorization.py`: the first N actions are let through unauthenticated, every
//! later one is verified against the IAM users and assumed-role sessions moto knows). The
//! server starts with N = [`SETUP_CALLS`], exactly the calls `aws_peer.py setup` makes to
//! create a user with an access key and a role in two accounts and to assume both roles;
//! the setup then proves that checking is on (a wrong secret is refused) before any test
//! runs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::python;

/// The unauthenticated calls `tests/peers/aws_peer.py setup` makes; the two must agree.
pub const SETUP_CALLS: u32 = 6;
/// moto's default account, where the user and the first role live.
pub const ACCOUNT: &str = "123456789012";
/// A second account holding a role of the same name.
pub const OTHER_ACCOUNT: &str = "210987654321";

/// Credentials moto issued, and who STS says they are.
#[derive(Debug, Clone, Deserialize)]
pub struct AwsCredentials {
    pub access_key: String,
    pub secret_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
    /// GetCallerIdentity's `UserId` for these credentials.
    pub user_id: String,
    /// The caller ARN STS returns.
    pub arn: String,
}

/// What `aws_peer.py setup` created.
#[derive(Debug, Clone, Deserialize)]
pub struct Principals {
    /// IAM user `deployer`, path `/ci/`, in [`ACCOUNT`].
    pub user: AwsCredentials,
    /// A session `run-1` of role `payments-api` (path `/workloads/`) in [`ACCOUNT`].
    pub role: AwsCredentials,
    /// A session `run-1` of role `payments-api` in [`OTHER_ACCOUNT`].
    pub other_account_role: AwsCredentials,
}

/// A running moto server, set up, killed on drop.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:{port}`: the origin to allow-list.
    pub origin: String,
    pub principals: Principals,
    server: Server,
}

/// A moto server that checks no signatures: its IAM takes what `tessera trust` writes
/// (OIDC providers, roles with trust policies) in any account and gives it back, with
/// IAM's own checks of policy documents.
#[derive(Debug)]
pub struct MotoIam {
    /// `http://127.0.0.1:{port}`.
    pub origin: String,
    server: Server,
}

impl MotoIam {
    pub async fn start() -> Self {
        let (origin, server) = start_server(None).await;
        Self { origin, server }
    }

    /// moto's log so far, for assertion messages.
    pub fn log(&self) -> String {
        read(self.server.log.path())
    }
}

/// Start moto on a free loopback port and wait until it answers. With `no_auth_calls`,
/// signatures are checked after that many calls; without, never.
async fn start_server(no_auth_calls: Option<u32>) -> (String, Server) {
    // The port is free when probed; another process may take it before moto binds it,
    // in which case moto exits and a new port is tried.
    for _ in 0..3 {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            probe.local_addr().expect("addr").port()
        };
        let mut server = Server::spawn(port, no_auth_calls);
        let origin = format!("http://127.0.0.1:{port}");
        if server.wait_ready(&origin).await {
            return (origin, server);
        }
    }
    panic!("moto could not be started on a free port");
}

/// The moto process and its log; the process is killed on drop.
#[derive(Debug)]
struct Server {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Moto {
    /// Start moto on a free loopback port, wait until it answers, and run the setup.
    pub async fn start() -> Self {
        let (origin, server) = start_server(Some(SETUP_CALLS)).await;
        let (url, other) = (origin.clone(), OTHER_ACCOUNT.to_string());
        let out = run_peer(vec!["setup".into(), url, other]).await;
        let principals = serde_json::from_str(&out).unwrap_or_else(|e| panic!("setup output {out}: {e}"));
        Self { origin, principals, server }
    }

    /// The STS URL requests are signed for: `http://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("{}/", self.origin)
    }

    /// A subject token signed by botocore (`aws_peer.py sign`) for `url` with `credentials`;
    /// `options` are `aws_peer.py sign` flags (`--wrong-secret`, `--no-server-id`, ...).
    pub async fn sign(
        &self,
        url: &str,
        credentials: &AwsCredentials,
        server_id: &str,
        options: &[&str],
    ) -> String {
        let mut args = vec!["sign".to_string()];
        args.extend(sign_args(url, credentials, server_id, options));
        run_peer(args).await
    }

    /// Several tokens from one interpreter (`aws_peer.py sign-batch`), in order.
    pub async fn sign_all(&self, requests: &[(&str, &AwsCredentials, &str, &[&str])]) -> Vec<String> {
        let batch: Vec<Vec<String>> = requests.iter().map(|(u, c, s, o)| sign_args(u, c, s, o)).collect();
        let out = run_peer(vec!["sign-batch".into(), serde_json::to_string(&batch).expect("json")]).await;
        let tokens: Vec<String> = out.lines().map(str::to_string).collect();
        assert_eq!(tokens.len(), requests.len(), "sign-batch output:\n{out}");
        tokens
    }

    /// moto's log so far, for assertion messages.
    pub fn log(&self) -> String {
        read(self.server.log.path())
    }
}

impl Server {
    fn spawn(port: u16, no_auth_calls: Option<u32>) -> Self {
        let log = tempfile::NamedTempFile::new().expect("moto log file");
        let mut command = Command::new(python::interpreter());
        if let Some(calls) = no_auth_calls {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", calls.to_string());
        }
        let child = command
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            // MOTO_ACCOUNT_ID would pin every request to one account, and the tests need two.
            .env_remove("MOTO_ACCOUNT_ID")
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log handle"))
            .stderr(log.reopen().expect("log handle"))
            .spawn()
            .unwrap_or_else(|e| panic!("start moto with {}: {e}", python::interpreter().display()));
        Self { child, log }
    }

    /// Poll until moto answers: `true`; `false` if it exited (its port was taken). Panics if
    /// it neither answers nor exits in 30 s.
    async fn wait_ready(&mut self, origin: &str) -> bool {
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let deadline = Instant::now() + Duration::from_secs(30);
        // moto's own API; it is not an AWS action, so it does not count towards
        // INITIAL_NO_AUTH_ACTION_COUNT.
        let probe = format!("{origin}/moto-api/data.json");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("moto exited ({status}):\n{}", read(self.log.path()));
                return false;
            }
            if http.get(&probe).send().await.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            assert!(Instant::now() < deadline, "moto did not start in 30s:\n{}", read(self.log.path()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sign_args(url: &str, credentials: &AwsCredentials, server_id: &str, options: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        url.into(),
        server_id.into(),
        "--access-key".into(),
        credentials.access_key.clone(),
        "--secret-key".into(),
        credentials.secret_key.clone(),
    ];
    if let Some(token) = &credentials.session_token {
        args.extend(["--session-token".into(), token.clone()]);
    }
    args.extend(options.iter().map(|o| o.to_string()));
    args
}

async fn run_peer(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        python::run("aws_peer.py", &args)
    })
    .await
    .expect("aws_peer task")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
