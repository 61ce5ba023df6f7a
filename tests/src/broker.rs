//! The real broker on `127.0.0.1:0`, configured from YAML snippets, with a manual clock,
//! its own temporary directory (keys, mappings, audit file) and a stop switch.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tessera_adapters::{Clock, ManualClock};
use tessera_broker::Broker;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What to run a broker with. `sources` and `targets` are YAML list items (`- name: ...`)
/// indented by two spaces or not at all; `mappings` are (file name, content) pairs.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub sources: String,
    pub targets: String,
    pub mappings: Vec<(String, String)>,
    pub algorithms: Vec<String>,
    /// Extra top-level YAML appended to the config.
    pub extra: String,
    /// Extra lines of the `audit:` block (`fail_open: true`, a `store:`), unindented.
    pub audit: String,
    pub clock: Arc<ManualClock>,
    /// Reuse this directory (keys survive a restart); a fresh one when `None`.
    pub dir: Option<Arc<tempfile::TempDir>>,
    /// Also serve the admin API, on its own `127.0.0.1:0` listener.
    pub admin: bool,
    /// Also serve the metrics listener, on its own `127.0.0.1:0` listener.
    pub metrics: bool,
    /// The issuer URL, when replicas share one (default: this broker's own URL).
    pub issuer_url: Option<String>,
    /// A key directory shared with other brokers (default: `keys` in the broker's directory).
    pub key_dir: Option<PathBuf>,
    /// Listen on this loopback port (a restarted broker keeps its URL); any free port when
    /// `None`.
    pub port: Option<u16>,
}

impl BrokerOptions {
    pub fn new(sources: &str, targets: &str) -> Self {
        Self {
            sources: sources.to_string(),
            targets: targets.to_string(),
            mappings: Vec::new(),
            algorithms: vec!["ES256".into(), "RS256".into()],
            extra: String::new(),
            audit: String::new(),
            clock: Arc::new(ManualClock::starting_now()),
            dir: None,
            admin: false,
            metrics: false,
            issuer_url: None,
            key_dir: None,
            port: None,
        }
    }

    /// Run as one replica of several: `issuer_url` and `key_dir` shared with the others.
    pub fn replica_of(mut self, issuer_url: &str, key_dir: &Path) -> Self {
        self.issuer_url = Some(issuer_url.to_string());
        self.key_dir = Some(key_dir.to_path_buf());
        self
    }

    /// Serve the admin API too; its address is [`TestBroker::admin_url`].
    pub fn with_admin(mut self) -> Self {
        self.admin = true;
        self
    }

    /// Serve the metrics listener too; its address is [`TestBroker::metrics_url`].
    pub fn with_metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    pub fn mapping(mut self, file: &str, content: &str) -> Self {
        self.mappings.push((file.to_string(), content.to_string()));
        self
    }
}

/// A running broker. `stop` shuts it down; dropping it leaves the server to the runtime.
#[derive(Debug)]
pub struct TestBroker {
    pub url: String,
    /// The admin API's base URL, when [`BrokerOptions::admin`] asked for it.
    pub admin_url: Option<String>,
    /// The metrics listener's base URL, when [`BrokerOptions::metrics`] asked for it.
    pub metrics_url: Option<String>,
    pub dir: Arc<tempfile::TempDir>,
    pub clock: Arc<ManualClock>,
    pub broker: Arc<Broker>,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

fn indent(items: &str) -> String {
    items.lines().map(|l| format!("  {l}\n")).collect()
}

/// Write the config and mapping files into the broker's directory and start it.
pub async fn spawn_broker(options: BrokerOptions) -> TestBroker {
    try_spawn_broker(options).await.unwrap_or_else(|e| panic!("broker failed to start:\n{e}"))
}

/// Like [`spawn_broker`], but returns the start error (config, mappings) instead.
pub async fn try_spawn_broker(options: BrokerOptions) -> Result<TestBroker, String> {
    let dir = options.dir.clone().unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("tempdir")));
    let listener = TcpListener::bind(("127.0.0.1", options.port.unwrap_or(0))).map_err(|e| e.to_string())?;
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mappings = dir.path().join("mappings");
    std::fs::create_dir_all(&mappings).expect("mappings dir");
    for entry in std::fs::read_dir(&mappings).expect("read mappings") {
        std::fs::remove_file(entry.expect("entry").path()).expect("clear mappings");
    }
    for (name, content) in &options.mappings {
        std::fs::write(mappings.join(name), content).expect("write mapping");
    }
    let config = format!(
        "version: 1\nlisten: 127.0.0.1:0\nissuer:\n  url: {issuer}\n  key_dir: {keys}\n  algorithms: [{algs}]\n  key_reload_interval: 1s\nsources:\n{sources}targets:\n{targets}mappings: mappings\naudit:\n  sink: file\n  path: audit.jsonl\n{audit}{extra}",
        issuer = options.issuer_url.as_deref().unwrap_or(&url),
        keys = options.key_dir.as_deref().unwrap_or(Path::new("keys")).display(),
        algs = options.algorithms.join(", "),
        sources = indent(&options.sources),
        targets = indent(&options.targets),
        audit = indent(&options.audit),
        extra = options.extra,
    );
    let path = dir.path().join("broker.yaml");
    std::fs::write(&path, &config).expect("write config");
    let loaded = tessera_broker::config::load(&path).map_err(|e| e.to_string())?;
    let clock: Arc<dyn Clock> = options.clock.clone();
    let broker = Broker::build(loaded, clock).await.map_err(|e| e.to_string())?;
    let admin = options.admin.then(|| TcpListener::bind("127.0.0.1:0").expect("bind loopback"));
    // `admin.auth.tls` makes the admin listener serve HTTPS.
    let scheme = if broker.admin_auth().and_then(|a| a.tls()).is_some() { "https" } else { "http" };
    let admin_url = admin.as_ref().map(|l| format!("{scheme}://{}", l.local_addr().expect("addr")));
    let metrics = options.metrics.then(|| TcpListener::bind("127.0.0.1:0").expect("bind loopback"));
    let metrics_url = metrics.as_ref().map(|l| format!("http://{}", l.local_addr().expect("addr")));
    let (stop, stopped) = oneshot::channel::<()>();
    let listeners = tessera_broker::Listeners { public: listener, admin, metrics };
    let task = tokio::spawn(tessera_broker::run_on(Arc::clone(&broker), listeners, async move {
        let _ = stopped.await;
    }));
    Ok(TestBroker {
        url,
        admin_url,
        metrics_url,
        dir,
        clock: options.clock,
        broker,
        http: reqwest::Client::new(),
        stop: Some(stop),
        task: Some(task),
    })
}

impl TestBroker {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// POST a form to `/v1/token`; returns status, headers and the JSON body.
    pub async fn post_form(&self, form: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
        let resp =
            self.http.post(format!("{}/v1/token", self.url)).form(form).send().await.expect("POST /v1/token");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    /// A standard JWT-for-JWT exchange of `token` for `audience`.
    pub async fn exchange(&self, token: &str, audience: &str) -> (u16, Value) {
        let (status, _, body) = self.exchange_with_headers(token, audience).await;
        (status, body)
    }

    /// [`TestBroker::exchange`], with the response headers (`Retry-After`, ...).
    pub async fn exchange_with_headers(
        &self,
        token: &str,
        audience: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.post_form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", audience),
        ])
        .await
    }

    /// POST JSON to the admin API; returns status and JSON body.
    pub async fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        let base = self.admin_url.as_deref().expect("spawned with_admin()");
        let resp = self.http.post(format!("{base}{path}")).json(body).send().await.expect("POST admin");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// GET from the admin API; returns status and JSON body.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let base = self.admin_url.as_deref().expect("spawned with_admin()");
        let resp = self.http.get(format!("{base}{path}")).send().await.expect("GET admin");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// The Prometheus metrics text, from the metrics listener if it has one, else from the
    /// admin API.
    pub async fn metrics(&self) -> String {
        let base = self.metrics_url.as_deref().or(self.admin_url.as_deref());
        let base = base.expect("spawned with_metrics() or with_admin()");
        let resp = self.http.get(format!("{base}/metrics")).send().await.expect("GET /metrics");
        assert_eq!(resp.status(), 200, "GET {base}/metrics");
        resp.text().await.expect("metrics text")
    }

    /// Replace the mapping directory's files with `files` (name, content), each written
    /// whole to a temporary name and renamed into place, as deploy tools do.
    pub fn write_mappings(&self, files: &[(&str, &str)]) {
        let dir = self.dir.path().join("mappings");
        for entry in std::fs::read_dir(&dir).expect("read mappings") {
            let path = entry.expect("entry").path();
            if !files.iter().any(|(name, _)| path.file_name().is_some_and(|n| n == *name)) {
                std::fs::remove_file(path).expect("remove mapping");
            }
        }
        for (name, content) in files {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, content).expect("write mapping");
            std::fs::rename(&tmp, dir.join(name)).expect("rename mapping");
        }
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.url)).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// Every audit event written so far.
    pub fn audit_events(&self) -> Vec<Value> {
        let path: PathBuf = self.dir.path().join("audit.jsonl");
        // The sink creates the file as the broker starts: a missing file is a failure, never
        // an empty trail that every check over its events would pass.
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    /// The raw audit file, for asserting what never appears in it.
    pub fn audit_text(&self) -> String {
        let path = self.dir.path().join("audit.jsonl");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Stop serving and wait for the server to finish.
    pub async fn stop(mut self) {
        // Close pooled keep-alive connections first, or a graceful stop waits them out.
        self.http = reqwest::Client::new();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // Graceful shutdown drains within the server's 10 s shutdown timeout; waiting
            // longer means it hung, which must fail the test rather than stall the suite.
            match tokio::time::timeout(std::time::Duration::from_secs(30), task).await {
                Ok(joined) => joined.expect("server task").expect("server result"),
                Err(_) => panic!(
                    "the broker did not stop within 30 s of a graceful shutdown; its threads:\n{}",
                    thread_stacks()
                ),
            }
        }
    }
}

/// Every thread's stack in this process, from gdb, to say where a stop that hangs waits;
/// what went wrong instead, when gdb is missing or cannot attach.
pub(crate) fn thread_stacks() -> String {
    let pid = std::process::id().to_string();
    let out = std::process::Command::new("gdb")
        .args(["-p", &pid, "-batch", "-nx", "-ex", "thread apply all bt 40"])
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        Err(e) => format!("(gdb could not run: {e})"),
    }
}

/// `tessera serve` as a child process, for what only a process can show (being killed).
/// Killed when dropped.
#[derive(Debug)]
pub struct BrokerProcess {
    pub url: String,
    child: std::process::Child,
}

impl BrokerProcess {
    /// Write `config` (with `listen:` and the issuer URL left to this function: the text
    /// must not set them) into `dir` as broker.yaml, start the binary, wait until ready.
    pub async fn start(dir: &Path, config: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let url = format!("http://127.0.0.1:{port}");
        let text = format!("version: 1\nlisten: 127.0.0.1:{port}\nissuer:\n  url: {url}\n{config}");
        let path = dir.join("broker.yaml");
        std::fs::write(&path, text).expect("write config");
        let log = std::fs::File::create(dir.join("broker.log")).expect("log file");
        let child = std::process::Command::new(crate::agent::tessera_binary())
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tessera serve");
        let me = Self { url, child };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(resp) = http.get(format!("{}/readyz", me.url)).send().await
                && resp.status().is_success()
            {
                return me;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "tessera serve did not get ready:\n{}",
            std::fs::read_to_string(dir.join("broker.log")).unwrap_or_default()
        );
    }

    /// SIGKILL: no shutdown, no flushing, as when a node dies.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
