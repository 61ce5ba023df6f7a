//! The `kubernetes` target end to end with Debian's kubectl: a kubeconfig `exec` entry runs
//! `tessera credential-process --kubernetes`, which exchanges the workload's token at the
//! broker and hands kubectl an `ExecCredential`; kubectl presents the token to an HTTPS
//! server that authenticates it as kube-apiserver's JWT authenticator would, configured by
//! the `AuthenticationConfiguration` that `tessera trust` writes for the target (its CEL
//! claim mappings and validation rules evaluated by cel-python).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use tessera_adapters::Clock;
use tessera_tests::agent::tessera_binary;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, python, spawn_broker};

use crate::oidc_source;

const TARGET: &str = "- name: k8s-prod\n  type: kubernetes\n  audience: https://k8s-prod.test\n  max_ttl: 30m\n  default_ttl: 10m\n- name: internal-api\n  type: jwt\n  audience: https://internal-api.example\n";

const RULES: &str = r#"version: 1
rules:
  - name: ci-deploys-to-prod
    match: { source: corp, subject: "svc-deploy-*" }
    grant: { target: k8s-prod, username: "ci:{subject}", groups: "deployers payments-readers" }
  - name: services-call-internal-api
    match: { source: corp }
    grant: { target: internal-api }
tests:
  - identity: { source: corp, provider: oidc, subject: svc-deploy-web }
    audience: k8s-prod
    expect: { allow: ci-deploys-to-prod }
  - identity: { source: corp, provider: oidc, subject: svc-intern }
    audience: k8s-prod
    expect: { none: true }
"#;

/// `kube_peer.py serve`, killed on drop.
struct ApiServer {
    child: Child,
    url: String,
    log: PathBuf,
}

impl ApiServer {
    fn start(dir: &Path, config: &Path) -> Self {
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let (cert, key, log) =
            (dir.join("apiserver.pem"), dir.join("apiserver-key.pem"), dir.join("seen.jsonl"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        std::fs::write(&log, "").unwrap();
        let mut child = Command::new(python::interpreter())
            .arg(python::root().join("tests/peers/kube_peer.py"))
            .arg("serve")
            .args([config, &cert, &key, &log])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start kube_peer.py");
        let mut port = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
        let url = format!("https://127.0.0.1:{}", port.trim());
        Self { child, url, log }
    }

    fn seen(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(command: &mut Command) -> (bool, String, String) {
    let out = command.output().expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A kubeconfig whose user runs `tessera credential-process --kubernetes` with `token`.
fn kubeconfig(dir: &Path, server: &ApiServer, broker: &TestBroker, token_file: &Path) -> PathBuf {
    let exec = json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": tessera_binary(),
        "args": ["credential-process", "--kubernetes", "--broker", broker.url, "--audience", "k8s-prod",
                 "--subject-token-file", token_file],
        "interactiveMode": "Never",
    });
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "prod", "cluster": { "server": server.url, "certificate-authority": dir.join("apiserver.pem") } }],
        "users": [{ "name": "tessera", "user": { "exec": exec } }],
        "contexts": [{ "name": "prod", "context": { "cluster": "prod", "user": "tessera" } }],
        "current-context": "prod",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn kubectl(kubeconfig: &Path, home: &Path) -> (bool, String, String) {
    run(Command::new("kubectl")
        .args(["--kubeconfig"])
        .arg(kubeconfig)
        .args(["get", "--raw", "/version"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NO_PROXY", "*"))
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_authenticates_with_tessera_through_the_generated_authentication_configuration() {
    let issuer = TestIssuer::start(vec![TestKey::ec("ec-1")]);
    let broker =
        spawn_broker(BrokerOptions::new(&oidc_source(&issuer), TARGET).mapping("10-k8s.yaml", RULES)).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, binary) = (broker.path().join("broker.yaml"), tessera_binary());
    let (ok, config, err) =
        run(Command::new(&binary).arg("trust").arg("k8s-prod").arg("--config").arg(&path));
    assert!(ok, "{err}");
    assert!(config.contains("# rule `ci-deploys-to-prod`"), "{config}");
    assert!(
        config.contains("user tessera:ci:{subject}; groups tessera:deployers, tessera:payments-readers"),
        "{config}"
    );
    let config_file = dir.path().join("authentication-config.yaml");
    std::fs::write(&config_file, &config).unwrap();

    let file = config_file.to_str().unwrap().to_owned();
    let checked: Value = serde_json::from_str(
        &tokio::task::spawn_blocking(move || python::run("kube_peer.py", &["check-config", &file]))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(checked["schema"], "ok");
    assert_eq!(checked["cel_expressions"], 7, "{checked}");
    let authenticator = &checked["document"]["jwt"][0];
    assert_eq!(authenticator["issuer"]["url"], broker.url.as_str());
    assert_eq!(authenticator["issuer"]["audiences"], json!(["https://k8s-prod.test"]));
    // kubernetes-validate knows API resources; AuthenticationConfiguration is a file of
    // kube-apiserver's, so its schema set has no entry for it.
    assert_ne!(checked["kubernetes_validate"], "validated", "{checked}");

    let server = ApiServer::start(dir.path(), &config_file);
    let token_file = dir.path().join("ci-token");
    let now = broker.clock.now();
    std::fs::write(&token_file, issuer.key(0).sign(&issuer.claims("svc-deploy-web", "tessera", now)))
        .unwrap();
    let kubeconfig = kubeconfig(dir.path(), &server, &broker, &token_file);
    let (ok, out, err) = kubectl(&kubeconfig, dir.path());
    assert!(ok, "kubectl failed: {err}\nserver saw: {:?}", server.seen());
    let version: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(version["gitVersion"], "v1.34.0-tessera-peer");
    let seen = server.seen();
    assert_eq!(
        seen.last().unwrap()["user"],
        json!({
            "username": "tessera:ci:svc-deploy-web",
            "groups": ["tessera:deployers", "tessera:payments-readers"],
            "uid": "oidc://corp/svc-deploy-web",
        }),
        "{seen:?}"
    );

    // No rule grants this identity the cluster: the plugin fails, kubectl sends nothing.
    std::fs::write(&token_file, issuer.key(0).sign(&issuer.claims("svc-intern", "tessera", now))).unwrap();
    let before = server.seen().len();
    let (ok, _, err) = kubectl(&kubeconfig, dir.path());
    assert!(!ok, "kubectl got through without a grant");
    assert!(err.contains("invalid_target"), "{err}");
    assert_eq!(server.seen().len(), before, "no request reached the cluster");

    // A token Tessera issued for another audience is refused by the cluster.
    let (status, body) = broker
        .exchange(&issuer.key(0).sign(&issuer.claims("svc-intern", "tessera", now)), "internal-api")
        .await;
    assert_eq!(status, 200, "{body}");
    let resp = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("apiserver.pem")).unwrap())
                .unwrap(),
        )
        .build()
        .unwrap()
        .get(format!("{}/version", server.url))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(
        server.seen().last().unwrap()["refused"].as_str().unwrap().contains("Audience"),
        "{:?}",
        server.seen()
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exec_credential_carries_the_token_and_its_expiry() {
    let binary = tessera_binary();
    let issuer = TestIssuer::start(vec![TestKey::ec("ec-1")]);
    let broker =
        spawn_broker(BrokerOptions::new(&oidc_source(&issuer), TARGET).mapping("10-k8s.yaml", RULES)).await;
    // The plugin dates the expiry by its own clock: the broker's is the wall clock too.
    broker.clock.set(tessera_adapters::SystemClock.now());
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("ci-token");
    std::fs::write(
        &token_file,
        issuer.key(0).sign(&issuer.claims("svc-deploy-api", "tessera", broker.clock.now())),
    )
    .unwrap();
    let (ok, out, err) = run(Command::new(&binary)
        .args(["credential-process", "--kubernetes", "--broker", &broker.url, "--audience", "k8s-prod"])
        .arg("--subject-token-file")
        .arg(&token_file));
    assert!(ok, "{err}");
    let credential: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(credential["kind"], "ExecCredential");
    let token = credential["status"]["token"].as_str().unwrap();
    let claims = crate::agent::claims_of(token);
    assert_eq!(claims["username"], "ci:svc-deploy-api");
    let expiry =
        chrono::DateTime::parse_from_rfc3339(credential["status"]["expirationTimestamp"].as_str().unwrap())
            .unwrap()
            .timestamp();
    // The plugin dates the expiry by its own clock from `expires_in`; the broker's clock
    // is the wall clock here, so the two agree within the second the exchange took.
    assert!((expiry - claims["exp"].as_i64().unwrap()).abs() <= 1, "{expiry} vs {claims}");

    // Missing pieces are named, and no token is printed.
    let (ok, out, err) = run(Command::new(&binary)
        .args(["credential-process", "--kubernetes", "--audience", "k8s-prod"])
        .env_remove("TESSERA_BROKER_URL"));
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("--broker"), "{err}");
    broker.stop().await;
}
