//! Impact replay: real exchanges recorded by a real broker, then `tessera mappings diff`
//! against edited rules (one tightened, one widened, one removed, one grant changed) names
//! exactly the workloads each edit affects; `unused` and `dependents` read the same
//! history. SQLite and PostgreSQL stores.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use serde_json::Value;
use tessera_adapters::Clock as _;
use tessera_tests::postgres::TestPostgres;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TARGET, oidc_source};

const CURRENT: &str = r#"version: 1
rules:
  - name: payments
    match: { source: corp, subject: svc-payments }
    grant: { target: internal-api }
  - name: batch
    match: { source: corp, subject: "svc-batch-*" }
    grant: { target: internal-api }
  - name: ledger
    match: { source: corp, subject: svc-ledger }
    grant: { target: internal-api }
  - name: reports
    match: { source: corp, subject: svc-reports }
    grant: { target: internal-api, ttl: 10m, claims: { tier: gold } }
  - name: no-interns
    effect: deny
    match: { subject: "svc-intern-*" }
    grant: { target: internal-api }
  - name: old-ci
    match: { source: corp, subject: "ci-*" }
    grant: { target: internal-api }
"#;

/// `batch` tightened, `payments` widened to alice, `ledger` removed, `reports` shorter and
/// silver; `no-interns` and `old-ci` as they were.
const PROPOSED: &str = r#"version: 1
rules:
  - name: payments
    match: { source: corp, subject: [svc-payments, alice] }
    grant: { target: internal-api }
  - name: batch
    match: { source: corp, subject: svc-batch-nightly }
    grant: { target: internal-api }
  - name: reports
    match: { source: corp, subject: svc-reports }
    grant: { target: internal-api, ttl: 5m, claims: { tier: silver } }
  - name: no-interns
    effect: deny
    match: { subject: "svc-intern-*" }
    grant: { target: internal-api }
  - name: old-ci
    match: { source: corp, subject: "ci-*" }
    grant: { target: internal-api }
"#;

/// Exchanges of every workload (svc-ledger twice), and one token that verifies as nobody.
async fn record(audit: &str) -> (TestIssuer, TestBroker) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let mut options = BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET).mapping("10-rules.yaml", CURRENT);
    options.audit = audit.to_string();
    let broker = spawn_broker(options).await;
    let subjects = [
        ("svc-payments", 200),
        ("svc-batch-nightly", 200),
        ("svc-batch-hourly", 200),
        ("svc-ledger", 200),
        ("svc-ledger", 200),
        ("svc-reports", 200),
        ("svc-intern-bob", 400),
        ("alice", 400),
    ];
    for (sub, expected) in subjects {
        let token = issuer.key(0).sign(&issuer.claims(sub, "tessera", broker.clock.now()));
        let (status, body) = broker.exchange(&token, "internal-api").await;
        assert_eq!(status, expected, "{sub}: {body}");
        broker.clock.advance(1);
    }
    let (status, _) = broker.exchange("not-a-jwt", "internal-api").await;
    assert_eq!(status, 400);
    (issuer, broker)
}

fn tessera(args: &[&str], config: &Path) -> Output {
    std::process::Command::new(tessera_tests::agent::tessera_binary())
        .args(["--log-format", "text"])
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn workloads<'a>(report: &'a Value, kind: &str) -> BTreeSet<&'a str> {
    report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == kind)
        .map(|c| c["workload"].as_str().unwrap())
        .collect()
}

fn change<'a>(report: &'a Value, workload: &str) -> &'a Value {
    report["changes"].as_array().unwrap().iter().find(|c| c["workload"] == workload).unwrap()
}

/// Replay the recorded exchanges of `broker` against PROPOSED and check the report names
/// exactly the workloads each edit touches.
fn the_report_names_exactly_the_affected_workloads(broker: &TestBroker) {
    let config = broker.path().join("broker.yaml");
    let proposed = tempfile::tempdir().unwrap();
    std::fs::write(proposed.path().join("10-rules.yaml"), PROPOSED).unwrap();
    let proposed_dir = proposed.path().to_str().unwrap();

    let report: Value = serde_json::from_str(&stdout(&tessera(
        &["mappings", "diff", "--proposed", proposed_dir, "--since", "1h", "--format", "json"],
        &config,
    )))
    .unwrap();
    assert_eq!(report["replayed"], 8, "{report:#}");
    assert_eq!(report["skipped"], 1, "the token that verified as nobody");
    assert_eq!(report["workloads"], 7);
    assert_eq!(
        workloads(&report, "newly_refused"),
        BTreeSet::from(["oidc://corp/svc-batch-hourly", "oidc://corp/svc-ledger"])
    );
    assert_eq!(workloads(&report, "newly_allowed"), BTreeSet::from(["oidc://corp/alice"]));
    assert_eq!(workloads(&report, "changed_grant"), BTreeSet::from(["oidc://corp/svc-reports"]));
    assert_eq!(report["changes"].as_array().unwrap().len(), 4, "{report:#}");

    let ledger = change(&report, "oidc://corp/svc-ledger");
    assert_eq!(ledger["exchanges"], 2);
    assert_eq!(
        ledger["before"],
        serde_json::json!({ "decision": "allow", "rule": "ledger", "reason": "TS-OK" })
    );
    assert_eq!(ledger["after"], serde_json::json!({ "decision": "deny", "reason": "TS-MAP-NO-RULE" }));
    let alice = change(&report, "oidc://corp/alice");
    assert_eq!(alice["before"]["reason"], "TS-MAP-NO-RULE");
    assert_eq!(alice["after"]["rule"], "payments");
    let reports = change(&report, "oidc://corp/svc-reports");
    assert_eq!(
        reports["differences"],
        serde_json::json!(["ttl: 10m -> 5m", "claims.tier: \"gold\" -> \"silver\""])
    );

    let by_rule: Vec<(&str, u64, u64, u64)> = report["by_rule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let n = |k: &str| g[k].as_u64().unwrap();
            (g["name"].as_str().unwrap(), n("newly_refused"), n("newly_allowed"), n("changed_grant"))
        })
        .collect();
    assert_eq!(
        by_rule,
        [("batch", 1, 0, 0), ("ledger", 2, 0, 0), ("payments", 0, 1, 0), ("reports", 0, 0, 1)]
    );
    let by_workload: Vec<&str> =
        report["by_workload"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(
        by_workload,
        [
            "oidc://corp/alice",
            "oidc://corp/svc-batch-hourly",
            "oidc://corp/svc-ledger",
            "oidc://corp/svc-reports"
        ]
    );
    let unused: Vec<&str> =
        report["unused_rules"].as_array().unwrap().iter().map(|r| r["rule"].as_str().unwrap()).collect();
    assert_eq!(unused, ["old-ci"]);

    // The console text names the same workloads; --fail-on makes it a gate.
    let text = stdout(&tessera(&["mappings", "diff", "--proposed", proposed_dir, "--since", "1h"], &config));
    assert!(text.contains("oidc://corp/svc-ledger -> internal-api: allowed by ledger -> refused (TS-MAP-NO-RULE); 2 requests, last seen"), "{text}");
    assert!(text.contains("newly refused: 2 workloads, 3 requests"), "{text}");
    assert!(!text.contains("svc-payments"), "unchanged workloads are not listed:\n{text}");
    let gate = tessera(
        &["mappings", "diff", "--proposed", proposed_dir, "--since", "1h", "--fail-on", "refused,allowed"],
        &config,
    );
    assert_eq!(gate.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gate.stderr).contains("newly refused, newly allowed"), "{gate:?}");
    // The files in force against themselves: nothing changes, the gate passes.
    let same = tessera(
        &[
            "mappings",
            "diff",
            "--proposed",
            broker.path().join("mappings").to_str().unwrap(),
            "--since",
            "1h",
            "--fail-on",
            "refused,allowed,changed",
        ],
        &config,
    );
    let same = stdout(&same);
    assert!(same.contains("newly refused: 0 workloads, 0 requests"), "{same}");
    assert!(
        same.contains("replayed 8 recorded requests of 7 workloads (1 without a verified identity skipped)"),
        "{same}"
    );

    // Dead rules and the workloads that depend on a rule, from the same history.
    let unused = stdout(&tessera(&["mappings", "unused", "--since", "30d"], &config));
    let names: Vec<&str> = unused.lines().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, ["old-ci"], "{unused}");
    let dependents: Value = serde_json::from_str(&stdout(&tessera(
        &["mappings", "dependents", "batch", "--format", "json"],
        &config,
    )))
    .unwrap();
    let ids: Vec<&str> =
        dependents["workloads"].as_array().unwrap().iter().map(|w| w["workload"].as_str().unwrap()).collect();
    assert_eq!(ids, ["oidc://corp/svc-batch-hourly", "oidc://corp/svc-batch-nightly"]);
    assert_eq!(dependents["exchanges"], 2);
    let missing = tessera(&["mappings", "dependents", "no-such-rule"], &config);
    assert!(!missing.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_names_the_workloads_each_edit_affects_sqlite() {
    let (_issuer, broker) = record("").await;
    the_report_names_exactly_the_affected_workloads(&broker);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_names_the_workloads_each_edit_affects_postgres() {
    let db = TestPostgres::new();
    let (_issuer, broker) = record(&db.store_config()).await;
    the_report_names_exactly_the_affected_workloads(&broker);
    let events: i64 = db.query("SELECT COUNT(*) FROM tessera_audit_events").parse().unwrap();
    assert_eq!(events, 9, "replay wrote nothing");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn proposed_files_that_do_not_load_are_reported_and_nothing_is_replayed() {
    let (_issuer, broker) = record("").await;
    let proposed = tempfile::tempdir().unwrap();
    std::fs::write(
        proposed.path().join("10-rules.yaml"),
        "version: 1\nrules:\n  - name: x\n    grant: { target: nowhere }\n",
    )
    .unwrap();
    let out = tessera(
        &["mappings", "diff", "--proposed", proposed.path().to_str().unwrap()],
        &broker.path().join("broker.yaml"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the proposed mapping files do not load"), "{stderr}");
    assert!(stderr.contains("10-rules.yaml:4:"), "{stderr}");
    broker.stop().await;
}
