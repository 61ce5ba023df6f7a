//! Mapping files as ops meet them: every file in the repository passes
//! `tessera mappings check` and the JSON schema editors use, and the admin API explains
//! decisions for identities and for real tokens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use tessera_adapters::{Clock as _, ManualClock, SystemClock};
use tessera_broker::Adapters;
use tessera_broker::mapping::CheckReport;
use tessera_tests::python::root;
use tessera_tests::{BrokerOptions, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TARGET, JWT_TYPE, RULES, json_schema, oidc_source, schema_errors};

fn example_configs() -> Vec<PathBuf> {
    crate::example_broker_configs()
}

/// A plain test (no async runtime): sources are built without starting background key-set
/// refreshes, so nothing reaches for the network.
#[test]
fn every_example_mapping_directory_passes_check_without_warnings() {
    let configs = example_configs();
    assert!(!configs.is_empty());
    for config in configs {
        let loaded =
            tessera_broker::config::load(&config).unwrap_or_else(|e| panic!("{}:\n{e}", config.display()));
        let adapters =
            Adapters::build(&loaded, Arc::new(ManualClock::starting_now())).unwrap_or_else(|e| panic!("{e}"));
        let report = CheckReport::run(&loaded.mappings_dir(), &adapters.catalog, SystemClock.now());
        assert!(report.passed(true), "{}:\n{report}", config.display());
        assert!(!report.tests.is_empty(), "{} has mapping tests", config.display());
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Every mapping file in the repository: `mappings/`, each example's mapping directory
/// and the broker's valid fixtures.
fn mapping_files() -> Vec<PathBuf> {
    let mut dirs = vec![root().join("mappings"), root().join("broker/src/mapping/testdata/valid")];
    for config in example_configs() {
        let loaded = tessera_broker::config::load(&config).unwrap();
        dirs.push(loaded.mappings_dir());
    }
    let mut files: Vec<PathBuf> = dirs.iter().flat_map(|d| yaml_files(d)).collect();
    files.sort_by_key(|f| f.canonicalize().unwrap());
    files.dedup_by_key(|f| f.canonicalize().unwrap());
    files
}

fn validator() -> jsonschema::Validator {
    json_schema("mappings/schema.json")
}

#[test]
fn every_mapping_file_and_documented_example_matches_the_json_schema() {
    let validator = validator();
    let files = mapping_files();
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let errors = schema_errors(&validator, &std::fs::read_to_string(file).unwrap());
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    }
    // Whole files in the reference documentation are valid too.
    let docs = std::fs::read_to_string(root().join("docs/mappings.md")).unwrap();
    let blocks: Vec<&str> = docs
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.starts_with("version: 1"))
        .collect();
    assert!(
        blocks.len() >= 8,
        "docs/mappings.md has a full example per source kind ({} found)",
        blocks.len()
    );
    for block in blocks {
        let errors = schema_errors(&validator, block);
        assert!(errors.is_empty(), "docs/mappings.md example:\n{block}\n{errors:#?}");
    }
}

#[test]
fn the_schema_refuses_what_the_loader_refuses_by_shape() {
    let validator = validator();
    for broken in yaml_files(&root().join("broker/src/mapping/testdata/broken")) {
        let errors = schema_errors(&validator, &std::fs::read_to_string(&broken).unwrap());
        assert!(!errors.is_empty(), "{} passes the schema", broken.display());
    }
    let rule = |r: &str| format!("version: 1\nrules:\n  - {r}\n");
    let refused = [
        rule("{ name: r, match: { namespace: x }, grant: { target: t }, priority: 1 }"),
        rule("{ name: r, match: { nmae: x }, grant: { target: t } }"),
        rule("{ name: r, match: {}, grant: { target: t } }"),
        rule("{ name: r, match: { name: [] }, grant: { target: t } }"),
        rule("{ name: Bad Name, match: { name: x }, grant: { target: t } }"),
        rule("{ name: r, match: { name: x }, grant: { ttl: 5m } }"),
        rule("{ name: r, match: { name: x }, grant: { target: t, claims: { sub: x } } }"),
        rule("{ name: r, effect: deny, match: { name: x }, grant: { target: t, role_arn: x } }"),
        rule("{ name: r, effect: maybe, match: { name: x }, grant: { target: t } }"),
        rule("{ name: r, match: { name: x }, when: '', grant: { target: t } }"),
        "version: 2\nrules: []\n".to_string(),
        "version: 1\ntests:\n  - { identity: { name: x }, audience: t, expect: { none: true } }\n".to_string(),
        "version: 1\ntests:\n  - { identity: { source: s }, audience: t, expect: { allow: a, none: true } }\n".to_string(),
        "version: 1\ntests:\n  - { identity: { source: s }, audience: t, expect: { none: false } }\n".to_string(),
    ];
    for text in refused {
        assert!(!schema_errors(&validator, &text).is_empty(), "the schema accepts:\n{text}");
    }
    let accepted = rule(
        "{ name: r, match: { name: [x, \"y*\"], tenant: 012345678901, attributes: { github.ref: refs/heads/main } }, when: 'now.getHours() < 18', grant: { target: t, ttl: 15m, role_arn: x, tags: { team: t } } }",
    );
    assert_eq!(schema_errors(&validator, &accepted), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_explains_identities_and_real_tokens() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let rules = RULES.replace(
        "  - name: no-interns",
        "  - name: weekdays\n    match: { source: corp, subject: \"batch-*\" }\n    when: 'now.getDayOfWeek() >= 1 && now.getDayOfWeek() <= 5'\n    grant: { target: internal-api }\n  - name: no-interns",
    );
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET)
            .mapping("10-services.yaml", &rules)
            .with_admin(),
    )
    .await;

    // An identity as written in a test case; `now` a Saturday.
    let (status, body) = broker
        .admin_post(
            "/v1/explain",
            &json!({
                "identity": { "source": "corp", "subject": "batch-nightly" },
                "audience": "internal-api",
                "now": "2026-01-03T12:00:00Z",
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], json!({ "decision": "no_rule" }));
    assert!(body["verified_by"].is_null());
    assert_eq!(body["request"]["now"], "2026-01-03T12:00:00Z");
    let trace = body["trace"].as_array().unwrap();
    assert_eq!(trace.len(), 3, "every rule for the target: {body}");
    assert_eq!(trace[0]["rule"], "services-call-internal-api");
    assert_eq!(trace[0]["outcome"]["outcome"], "not_matched");
    assert_eq!(trace[0]["outcome"]["field"], "subject");
    assert_eq!(trace[0]["outcome"]["actual"], "batch-nightly");
    assert_eq!(trace[1]["rule"], "weekdays");
    assert_eq!(trace[1]["outcome"]["outcome"], "condition_false");
    assert_eq!(trace[1]["line"], 14);
    assert!(trace[1]["file"].as_str().unwrap().ends_with("10-services.yaml"));
    assert_eq!(body["refusal"]["code"], "TS-MAP-NO-RULE");

    // The same on a Monday is allowed, with the grant it would make.
    let (_, body) = broker
        .admin_post(
            "/v1/explain",
            &json!({
                "identity": { "source": "corp", "subject": "batch-nightly" },
                "audience": "internal-api",
                "now": 1767614400,
            }),
        )
        .await;
    assert_eq!(body["decision"], json!({ "decision": "allow", "rule": "weekdays" }), "{body}");
    assert_eq!(body["grant"]["ttl"], 900, "the target's default");

    // A real token, verified by the configured source.
    let token = issuer.key(0).sign(&issuer.claims("svc-intern-7", "tessera", broker.clock.now()));
    let (status, body) = broker
        .admin_post(
            "/v1/explain",
            &json!({ "subject_token": token, "subject_token_type": JWT_TYPE, "audience": "internal-api" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verified_by"], "corp");
    assert_eq!(body["identity"]["id"], "oidc://corp/svc-intern-7");
    assert_eq!(body["decision"], json!({ "decision": "deny", "rule": "no-interns" }));
    assert_eq!(body["trace"][0]["outcome"]["outcome"], "applied");
    assert!(!body.to_string().contains(&token), "the token is not echoed");

    // A forged token is refused with the source's reason, for the operator.
    let forged = TestKey::rsa("rsa-1").sign(&issuer.claims("svc-a", "tessera", broker.clock.now()));
    let (status, body) = broker
        .admin_post("/v1/explain", &json!({ "subject_token": forged, "audience": "internal-api" }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "subject_token_refused");
    // Another key under the issuer's kid: the signature, not the kid, is what fails.
    assert_eq!(body["code"], "TS-SRC-SIGNATURE", "{body}");

    // Bad requests say what is wrong.
    let (status, body) = broker
        .admin_post("/v1/explain", &json!({ "identity": { "nmae": "x" }, "audience": "internal-api" }))
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("unknown key `nmae`"), "{body}");
    let (status, _) = broker.admin_post("/v1/explain", &json!({ "audience": "internal-api" })).await;
    assert_eq!(status, 400);

    // The admin API is not on the public listener; metrics and the full status are the
    // admin listener's.
    let resp = broker.http.post(format!("{}/v1/explain", broker.url)).json(&json!({})).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp =
        broker.http.get(format!("{}/metrics", broker.admin_url.as_deref().unwrap())).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = resp.text().await.unwrap();
    assert!(text.contains("tessera_mapping_rules 3"), "{text}");
    assert!(text.contains("tessera_mapping_last_reload_success 1"), "{text}");
    let (status, body) = broker.admin_get("/v1/status").await;
    assert_eq!(status, 200);
    assert!(body["mappings"]["last_reload_error"].is_null());
    assert_eq!(body["mappings"]["files"], 1);
    broker.stop().await;
}
