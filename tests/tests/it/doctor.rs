//! `tessera doctor` against a real broker process: all green when the deployment is
//! sound, and a failing line naming the cause for each way it breaks.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use tessera_tests::agent::tessera_binary;
use tessera_tests::broker::BrokerProcess;
use tessera_tests::{TestIssuer, TestKey};

use crate::{JWT_TARGET, RULES, oidc_source};

/// `key_dir: keys`, the test issuer as source, the jwt target, the standard rules.
fn config(issuer: &TestIssuer) -> String {
    let indent = |s: &str| s.lines().map(|l| format!("  {l}\n")).collect::<String>();
    format!(
        "  key_dir: keys\nsources:\n{}targets:\n{}mappings: mappings\naudit:\n  sink: none\n",
        indent(&oidc_source(issuer)),
        indent(JWT_TARGET)
    )
}

fn write_mappings(dir: &Path) {
    std::fs::create_dir_all(dir.join("mappings")).unwrap();
    std::fs::write(dir.join("mappings/10-services.yaml"), RULES).unwrap();
}

/// Run `tessera doctor`; its exit status and the check lines (status, name, detail).
fn doctor(config: &Path) -> (bool, Vec<(String, String)>, String) {
    let out = Command::new(tessera_binary()).args(["doctor", "--config"]).arg(config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines = text
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let (status, rest) = l.split_once(' ').unwrap();
            (status.to_string(), rest.trim_start().to_string())
        })
        .collect();
    (out.status.success(), lines, text)
}

fn line<'a>(lines: &'a [(String, String)], name: &str) -> &'a (String, String) {
    lines
        .iter()
        .find(|(_, rest)| rest.starts_with(name))
        .unwrap_or_else(|| panic!("no `{name}` check in {lines:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_a_sound_deployment_and_names_each_broken_part() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let dir = tempfile::tempdir().unwrap();
    write_mappings(dir.path());
    let broker = BrokerProcess::start(dir.path(), &config(&issuer)).await;
    let path = dir.path().join("broker.yaml");

    let (ok, lines, text) = doctor(&path);
    assert!(ok, "{text}");
    assert!(lines.iter().all(|(status, _)| status == "ok"), "{text}");
    for name in [
        "config",
        "signing keys",
        "issuer discovery",
        "issuer jwks",
        "source corp (oidc)",
        "audit store",
        "clock",
    ] {
        line(&lines, name);
    }
    assert!(line(&lines, "issuer jwks").1.contains("publishes the 2 local key(s)"), "{text}");
    assert!(line(&lines, "source corp (oidc)").1.contains("key set fetched, 1 key(s)"), "{text}");
    assert!(
        text.contains(&format!("{} checks: {} ok, 0 warning(s), 0 failed", lines.len(), lines.len())),
        "{text}"
    );

    // Another deployment's config naming this broker's URL: its keys are not published there.
    let other = tempfile::tempdir().unwrap();
    write_mappings(other.path());
    let other_config = other.path().join("broker.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&other_config, &text).unwrap();
    let status = Command::new(tessera_binary())
        .args(["keys", "init", "--config"])
        .arg(&other_config)
        .status()
        .unwrap();
    assert!(status.success());
    let (ok, lines, text) = doctor(&other_config);
    assert!(!ok, "{text}");
    let jwks = line(&lines, "issuer jwks");
    assert_eq!(jwks.0, "FAIL", "{text}");
    assert!(jwks.1.contains("lacks local kid(s)"), "{text}");

    // A key file others can read.
    let key = std::fs::read_dir(other.path().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, lines, text) = doctor(&other_config);
    assert!(!ok);
    let keys = line(&lines, "signing keys");
    assert_eq!(keys.0, "FAIL", "{text}");
    assert!(keys.1.contains("0644") || keys.1.contains("644"), "{text}");

    // The broker gone and the issuer failing: the URL AWS would fetch and the source's keys fail.
    drop(broker);
    issuer.set_down(true);
    let (ok, lines, text) = doctor(&path);
    assert!(!ok);
    assert_eq!(line(&lines, "issuer discovery").0, "FAIL", "{text}");
    assert_eq!(line(&lines, "source corp (oidc)").0, "FAIL", "{text}");
    assert!(line(&lines, "issuer discovery").1.contains("Connection refused"), "{text}");
    assert!(line(&lines, "source corp (oidc)").1.contains(issuer.url()), "{text}");
}
