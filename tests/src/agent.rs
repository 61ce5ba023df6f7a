//! The real `tessera agent` on `127.0.0.1:0`, configured from a YAML snippet, with its own
//! temporary directory holding the native token file and the endpoint secrets; the Python
//! SDK peers run against it with nothing but environment variables; and the `tessera`
//! binary, for what only a separate process can show (`credential_process`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera_adapters::Clock;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::python;

/// The ECS endpoint's authorization token every test agent is given.
pub const ECS_TOKEN: &str = "ecs-token-0123456789abcdef";
/// The App Service endpoint's `X-IDENTITY-HEADER` secret every test agent is given.
pub const IDENTITY_HEADER: &str = "identity-header-0123456789abcdef";

/// A running agent. `stop` shuts it down.
#[derive(Debug)]
pub struct TestAgent {
    pub url: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
}

impl TestAgent {
    /// The native token file the agent reads (`subject_token: { file: subject.jwt }`).
    pub fn subject_path(&self) -> PathBuf {
        self.dir.path().join("subject.jwt")
    }

    /// Replace the native token, as the kubelet rotates a projected token.
    pub fn write_subject(&self, token: &str) {
        write_subject(self.dir.path(), token);
    }

    /// `host:port`, as `GCE_METADATA_HOST` wants it.
    pub fn host(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    pub async fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut req = self.http.get(format!("{}{path}", self.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("GET agent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.expect("body"))
    }

    pub async fn health(&self) -> (u16, Value) {
        let (status, _, body) = self.get("/healthz", &[]).await;
        (status, serde_json::from_str(&body).expect("healthz is JSON"))
    }

    /// Wait until `/healthz` satisfies `done` (the agent works in the background); panics
    /// with the last answer after 30 s.
    pub async fn wait_health(&self, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.health().await;
            if done(status, &body) {
                return body;
            }
            assert!(Instant::now() < deadline, "agent never became {what}: {status} {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until every configured credential is served.
    pub async fn wait_ready(&self) -> Value {
        self.wait_health("ready", |status, _| status == 200).await
    }

    pub async fn stop(mut self) {
        // Close pooled keep-alive connections first, or a graceful stop waits them out.
        self.http = reqwest::Client::new();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(Duration::from_secs(30), task).await {
                Ok(joined) => joined.expect("agent task").expect("agent result"),
                Err(_) => panic!(
                    "the agent did not stop within 30 s; its threads:\n{}",
                    crate::broker::thread_stacks()
                ),
            }
        }
    }
}

fn write_subject(dir: &Path, token: &str) {
    let tmp = dir.join(".subject.jwt.tmp");
    std::fs::write(&tmp, token).expect("write subject token");
    std::fs::rename(&tmp, dir.join("subject.jwt")).expect("rename subject token");
}

/// Start an agent talking to `broker_url` with `subject` as its native token file and
/// `body` (YAML: `aws:`, `gcp:`, `azure:`, `token_files:`, `refresh:` ...) appended to its
/// config. Secrets come from files in its directory (`ecs-token`, `identity-header`).
pub async fn spawn_agent(broker_url: &str, subject: &str, body: &str, clock: Arc<dyn Clock>) -> TestAgent {
    let dir = tempfile::tempdir().expect("tempdir");
    write_subject(dir.path(), subject);
    std::fs::write(dir.path().join("ecs-token"), ECS_TOKEN).expect("write ecs token");
    std::fs::write(dir.path().join("identity-header"), IDENTITY_HEADER).expect("write identity header");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let config = format!(
        "version: 1\nbroker: {broker_url}\nlisten: {addr}\nsubject_token:\n  file: subject.jwt\n{body}",
        addr = url.trim_start_matches("http://"),
    );
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, &config).expect("write agent config");
    let loaded = tessera_agent::load(&path).unwrap_or_else(|e| panic!("agent config:\n{e}\n{config}"));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tessera_agent::run(loaded, listener, clock, async move {
            let _ = stopped.await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    TestAgent { url, dir, http: reqwest::Client::new(), stop: Some(stop), task: Some(task) }
}

/// Run `tests/peers/agent_peer.py` with `args` in an environment holding only the basics
/// (PATH, HOME in a scratch directory) plus `env`: no ambient cloud credential can leak in.
/// Returns its JSON output.
pub async fn run_peer(args: &[&str], env: &[(&str, &str)]) -> Value {
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let home = tempfile::tempdir().expect("scratch home");
        let empty = home.path().join("empty");
        std::fs::write(&empty, "").expect("empty file");
        let mut cmd = Command::new(python::interpreter());
        cmd.arg(python::root().join("tests/peers/agent_peer.py")).args(&args).env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.env("HOME", home.path())
            // Empty AWS files and a gcloud config directory with no ADC in it.
            .env("AWS_CONFIG_FILE", &empty)
            .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CLOUDSDK_CONFIG", home.path())
            .env("GCE_METADATA_TIMEOUT", "5")
            .env("NO_PROXY", "*");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run agent_peer.py");
        assert!(
            out.status.success(),
            "agent_peer.py {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("peer output {stdout}: {e}"))
    })
    .await
    .expect("peer task")
}

/// The `tessera` binary, built once per test process with the same cargo and profile that
/// built this test (cargo only hands `CARGO_BIN_EXE_*` to the broker crate's own tests).
pub fn tessera_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(python::root()).args([
            "build",
            "--quiet",
            "-p",
            "tessera-broker",
            "--bin",
            "tessera",
            "--message-format=json",
        ]);
        // The profile of this test binary: target/<profile>/deps/it-....
        let exe = std::env::current_exe().expect("test executable");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        if let Some(target_dir) = profile_dir.parent() {
            cmd.arg("--target-dir").arg(target_dir);
        }
        let out = cmd.output().expect("cargo build tessera");
        assert!(out.status.success(), "cargo build tessera:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "tessera")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported the tessera executable")
    })
    .clone()
}
