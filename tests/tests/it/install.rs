//! What a user installs: `tessera --version`, the license, the OCI image `scripts/image.sh`
//! builds (run with podman), the kustomize deployment and the systemd units.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use serde_json::Value;
use tessera_adapters::Clock;
use tessera_tests::agent::tessera_binary;
use tessera_tests::{TestIssuer, TestKey};

use crate::{JWT_TARGET, JWT_TYPE, RULES, TOKEN_EXCHANGE, oidc_source};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn version_names_the_commit_the_binary_was_built_from() {
    let line = tessera_tests::install::version_line();
    let build = tessera_tests::install::build_info();
    assert!(line.starts_with(&format!("tessera {} (commit ", env!("CARGO_PKG_VERSION"))), "{line}");
    let head =
        stdout(&run(Command::new("git").current_dir(root()).args(["rev-parse", "--short=12", "HEAD"])));
    let commit = build["commit"].as_str().unwrap();
    assert!(
        commit == head || commit == format!("{head}-modified"),
        "--version names {commit}, the checkout is at {head}"
    );
    let date = build["date"].as_str().unwrap();
    let shape: Vec<usize> = date.split('-').map(str::len).collect();
    assert!(shape == [4, 2, 2] && date.chars().all(|c| c.is_ascii_digit() || c == '-'), "{date}");
    let today = stdout(&run(Command::new("date").args(["-u", "+%F"])));
    assert!(date <= today.as_str(), "built {date}, today {today}");
}

#[test]
fn the_license_file_is_the_one_cargo_toml_names() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""), "Cargo.toml names another license");
    let license = std::fs::read_to_string(root().join("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));
    assert!(license.contains("END OF TERMS AND CONDITIONS"), "the license text is complete");
}

/// podman and buildah with the test suite's settings for this machine.
fn container_tool(tool: &str) -> Command {
    let mut cmd = Command::new(tool);
    cmd.env("CONTAINERS_CONF", root().join("tests/peers/containers.conf"));
    cmd
}

/// A tag no other test run uses.
fn unique_tag() -> String {
    let nanos = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_nanos();
    format!("localhost/tessera-test:{}-{nanos}", std::process::id())
}

/// Removes the container and the image when the test ends, passed or failed.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = container_tool("podman").args(["rm", "-f", "-t", "0", &self.container]).output();
        let _ = container_tool("podman").args(["rmi", "-f", &self.image]).output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_exchanges_a_token_as_a_non_root_user_without_a_shell() {
    let tag = unique_tag();
    let name = tag.rsplit(':').next().unwrap().replace('.', "-");
    let container = format!("tessera-test-{name}");
    let _cleanup = Cleanup { container: container.clone(), image: tag.clone() };
    let built = run(container_tool(root().join("scripts/image.sh").to_str().unwrap())
        .args(["--tag", &tag, "--binary"])
        .arg(tessera_binary()));
    assert_eq!(stdout(&built).lines().last(), Some(tag.as_str()));

    // The image: a non-root user, the binary as entrypoint, no shell, the CA bundle.
    let inspect = run(container_tool("podman").args(["image", "inspect", &tag]));
    let image: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let config = &image[0]["Config"];
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/local/bin/tessera"]));
    assert_eq!(
        config["Labels"]["org.opencontainers.image.revision"],
        tessera_tests::install::build_info()["commit"]
    );
    let shell = container_tool("podman")
        .args(["run", "--rm", "--entrypoint", "/bin/sh", &tag, "-c", "true"])
        .output()
        .unwrap();
    assert!(!shell.status.success(), "the image has a shell");

    // The broker in it trusts a test issuer on this host and exchanges its token.
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    std::fs::write(dir.path().join("mappings/10-services.yaml"), RULES).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let indent = |s: &str| s.lines().map(|l| format!("  {l}\n")).collect::<String>();
    let config = format!(
        "version: 1\nlisten: 127.0.0.1:{port}\nissuer:\n  url: {url}\n  key_dir: /var/lib/tessera/keys\n\
         data_dir: /var/lib/tessera\nsources:\n{}targets:\n{}mappings: mappings\naudit:\n  sink: stdout\n",
        indent(&oidc_source(&issuer)),
        indent(JWT_TARGET),
    );
    std::fs::write(dir.path().join("broker.yaml"), config).unwrap();
    // World-readable, as a ConfigMap mount is: the user in the image is not this one.
    run(Command::new("chmod").arg("-R").arg("a+rX").arg(dir.path()));
    run(container_tool("podman")
        .args(["run", "-d", "--name", &container, "--network", "host", "-v"])
        .arg(format!("{}:/etc/tessera:ro", dir.path().display()))
        .arg(&tag));

    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(resp) = http.get(format!("{url}/readyz")).send().await
            && resp.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let logs = || stdout(&container_tool("podman").args(["logs", &container]).output().unwrap());
    assert!(ready, "the containerized broker did not get ready:\n{}", logs());
    let now = tessera_adapters::SystemClock.now();
    let token = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", now));
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", token.as_str()),
        ("subject_token_type", JWT_TYPE),
        ("audience", "internal-api"),
    ];
    let resp = http.post(format!("{url}/v1/token")).form(&form).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", logs());
    assert_eq!(body["issued_token_type"], JWT_TYPE);

    // It runs as the image's user, and wrote its keys where the image gives it room.
    let top = run(container_tool("podman").args(["top", &container, "huser"]));
    assert!(stdout(&top).lines().skip(1).all(|u| u.trim() == "65532"), "{}", stdout(&top));
    assert!(logs().contains("\"decision\":\"allow\""), "the audit line is on stdout:\n{}", logs());
}

/// The Dockerfile cannot be built here (it pulls its base images); what it promises is
/// checked against the rest of the repository instead.
#[test]
fn the_dockerfile_builds_with_the_supported_rust_and_runs_as_scripts_image_sh_does() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("rust-version in Cargo.toml");
    let stages: Vec<&str> = dockerfile.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage: {stages:?}");
    assert!(stages[0].contains(&format!("rust:{msrv}-")), "build stage {} != rust-version {msrv}", stages[0]);
    let last_stage = dockerfile.rsplit("FROM ").next().unwrap();
    let script = std::fs::read_to_string(root().join("scripts/image.sh")).unwrap();
    assert!(last_stage.contains("USER 65532:65532") && script.contains("--user 65532:65532"));
    for line in [
        "ENTRYPOINT [\"/usr/local/bin/tessera\"]",
        "CMD [\"serve\", \"--config\", \"/etc/tessera/broker.yaml\"]",
    ] {
        assert!(last_stage.contains(line), "{line}");
    }
    assert!(script.contains(r#"--cmd '["serve", "--config", "/etc/tessera/broker.yaml"]'"#));
}

/// The Kubernetes versions the manifests are validated against: 1.29 (native sidecars)
/// to the newest schema `kubernetes-validate` ships.
const KUBERNETES_VERSIONS: [&str; 5] = ["1.29.0", "1.31.0", "1.33.0", "1.35.0", "1.37.0"];

/// `kubectl kustomize dir`, validated strictly for every supported version, as documents.
fn render(dir: &str) -> Vec<Value> {
    let out = run(Command::new("kubectl").arg("kustomize").arg(root().join(dir)));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &out.stdout).unwrap();
    for version in KUBERNETES_VERSIONS {
        run(Command::new(tessera_tests::python::interpreter())
            .args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k", version])
            .arg(file.path()));
    }
    let text = String::from_utf8(out.stdout).unwrap();
    text.split("\n---\n")
        .map(|doc| serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}: {doc}")))
        .collect()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// broker.yaml as the Secret `tessera-config` holds it.
fn broker_yaml(docs: &[Value]) -> String {
    let data = object(docs, "Secret", "tessera-config")["data"]["broker.yaml"].as_str().unwrap();
    let data: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data).unwrap()).unwrap()
}

/// The broker container agrees with the image and with the broker.yaml it is given:
/// the image `scripts/image.sh` tags, its user, and a container port for each listener.
fn assert_broker_pod_fits(docs: &[Value]) {
    let pod = &object(docs, "Deployment", "tessera")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 65532, "the image's user");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], format!("localhost/tessera:{}", env!("CARGO_PKG_VERSION")));
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert!(container[probe]["httpGet"]["path"].is_string(), "{probe}");
    }
    let config: Value = serde_saphyr::from_str(&broker_yaml(docs)).unwrap();
    let port = |listen: &Value| listen.as_str().unwrap().rsplit(':').next().unwrap().parse::<u64>().unwrap();
    let ports: Vec<(String, u64)> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["containerPort"].as_u64().unwrap()))
        .collect();
    let expected = [
        ("http".to_string(), port(&config["listen"])),
        ("admin".to_string(), port(&config["admin"]["listen"])),
        ("metrics".to_string(), port(&config["metrics"]["listen"])),
    ];
    assert_eq!(ports, expected, "container ports and broker.yaml listeners");
    let metrics = object(docs, "Service", "tessera-metrics");
    assert_eq!(metrics["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(
        object(docs, "NetworkPolicy", "tessera")["spec"]["policyTypes"],
        serde_json::json!(["Ingress"])
    );
}

#[test]
fn the_sqlite_overlay_keeps_one_replica_and_its_data_on_a_volume() {
    let docs = render("deploy/kubernetes/overlays/sqlite");
    assert_broker_pod_fits(&docs);
    let spec = &object(&docs, "Deployment", "tessera")["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["strategy"]["type"], "Recreate", "one SQLite writer at a time");
    let volumes = spec["template"]["spec"]["volumes"].as_array().unwrap();
    let data = volumes.iter().find(|v| v["name"] == "data").unwrap();
    assert_eq!(data["persistentVolumeClaim"]["claimName"], "tessera-data");
    assert!(data.get("emptyDir").is_none(), "{data}");
    object(&docs, "PersistentVolumeClaim", "tessera-data");
}

#[test]
fn the_replicas_overlay_shares_keys_postgres_and_redis() {
    let docs = render("deploy/kubernetes/overlays/replicas");
    assert_broker_pod_fits(&docs);
    let spec = &object(&docs, "Deployment", "tessera")["spec"];
    assert_eq!(spec["replicas"], 3);
    let volumes = spec["template"]["spec"]["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["secret"]["secretName"] == "tessera-keys"), "{volumes:?}");
    let pdb = &object(&docs, "PodDisruptionBudget", "tessera")["spec"];
    assert_eq!(pdb["minAvailable"], 2);
    assert!(pdb.get("maxUnavailable").is_none(), "{pdb}");
    let config = broker_yaml(&docs);
    assert!(
        config.contains("url: postgres://") && config.contains("url: redis://"),
        "the overlay's own broker.yaml"
    );
}

#[test]
fn the_agent_sidecar_renders_for_every_supported_version() {
    let docs = render("deploy/kubernetes/agent-sidecar");
    let pod = &object(&docs, "Deployment", "payments-api")["spec"]["template"]["spec"];
    let agent = &pod["initContainers"][0];
    assert_eq!(agent["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(agent["image"], format!("localhost/tessera:{}", env!("CARGO_PKG_VERSION")));
}

/// Each unit passes `systemd-analyze verify` with no warning, and its hardening rates
/// "OK" (exposure under 2) in `systemd-analyze security`. `ExecStart` names the binary
/// this test built, since verify checks that it exists.
#[test]
fn the_systemd_units_verify_and_are_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let binary = tessera_binary();
    for unit in ["tessera.service", "tessera-agent.service"] {
        let text = std::fs::read_to_string(root().join("deploy/systemd").join(unit)).unwrap();
        assert!(text.contains("ExecStart=/usr/local/bin/tessera "), "{unit}");
        let path = dir.path().join(unit);
        std::fs::write(&path, text.replace("/usr/local/bin/tessera", binary.to_str().unwrap())).unwrap();
        let verify = run(Command::new("systemd-analyze").arg("verify").arg(&path));
        let warnings = String::from_utf8_lossy(&verify.stderr);
        assert!(warnings.trim().is_empty(), "{unit}: {warnings}");
        let security = run(Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&path));
        let report = String::from_utf8_lossy(&security.stdout);
        let exposure: f64 = report
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?.1.split_once(": ")?.1.split(' ').next()
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no exposure level in {report}"));
        assert!(exposure < 2.0, "{unit}: exposure {exposure}\n{report}");
    }
}

/// README promises the Rust version Cargo.toml declares: no dependency in the lock file
/// may declare a newer one.
#[test]
fn no_dependency_needs_a_newer_rust_than_the_declared_minimum() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out =
        run(Command::new(cargo).current_dir(root()).args(["metadata", "--format-version", "1", "--locked"]));
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let version = |v: &str| -> (u64, u64) {
        let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap_or(0))
    };
    let packages = metadata["packages"].as_array().unwrap();
    let ours =
        packages.iter().find(|p| p["name"] == "tessera-broker").unwrap()["rust_version"].as_str().unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains(&format!("Rust {ours} or newer")), "README names rust-version {ours}");
    let newer: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > version(ours)).then(|| format!("{} {} needs {needs}", p["name"], p["version"]))
        })
        .collect();
    assert!(packages.len() > 100 && newer.is_empty(), "{newer:?}");
}

/// `tessera check` validates and nothing else: no key directory or audit database
/// appears, and sources on unreachable issuers do not matter. What `serve` would refuse
/// (here, an admin target that does not exist) it refuses too.
#[test]
fn check_creates_no_keys_opens_no_store_and_uses_no_network() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    std::fs::write(dir.path().join("mappings/10-services.yaml"), RULES).unwrap();
    // Port 9 on loopback: nothing listens, so a fetch would fail the check.
    let source = "- name: corp\n  type: oidc\n  issuer: http://127.0.0.1:9\n  audiences: [tessera]\n  insecure_http: true\n";
    let indent = |s: &str| s.lines().map(|l| format!("  {l}\n")).collect::<String>();
    let config = |admin: &str| {
        format!(
            "version: 1\nlisten: 127.0.0.1:0\nissuer:\n  url: http://127.0.0.1:8080\n  key_dir: keys\n\
             data_dir: data\nsources:\n{}targets:\n{}mappings: mappings\n{admin}",
            indent(source),
            indent(JWT_TARGET),
        )
    };
    let path = dir.path().join("broker.yaml");
    std::fs::write(&path, config("")).unwrap();
    let out = run(Command::new(tessera_binary()).args(["check", "--config"]).arg(&path));
    assert!(stdout(&out).contains(": ok (2 rules"), "{}", stdout(&out));
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    left.sort();
    assert_eq!(left, ["broker.yaml", "mappings"], "check wrote nothing");

    std::fs::write(&path, config("admin:\n  listen: 127.0.0.1:0\n  auth:\n    jwt:\n      target: corp\n"))
        .unwrap();
    let refused = Command::new(tessera_binary()).args(["check", "--config"]).arg(&path).output().unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("broker.yaml:24:15: admin.auth.jwt.target `corp` is not a configured target"),
        "{message}"
    );
    assert!(!dir.path().join("keys").exists() && !dir.path().join("data").exists());
}
