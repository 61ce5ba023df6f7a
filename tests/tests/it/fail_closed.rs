//! Rules that cannot be evaluated fail closed, through the real broker: a deny rule whose
//! `when:` fails applies and an allow rule's does not grant; a claim over the attribute
//! limits is withheld, and a deny rule that looks at it, by `match` or by `when`, refuses
//! the token instead of acting as if the token had no such claim.

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_tests::agent::tessera_binary;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TARGET, JWT_TYPE, RULES, oidc_source};

/// A broker trusting `issuer`, with the standard rules followed by the rule items `extra`.
async fn broker_with_rules(issuer: &TestIssuer, extra: &str) -> TestBroker {
    spawn_broker(
        BrokerOptions::new(&oidc_source(issuer), JWT_TARGET)
            .mapping("10-services.yaml", &format!("{RULES}{extra}"))
            .with_admin(),
    )
    .await
}

/// A token of `issuer` for `sub` with the claims of `extra` added.
fn token(issuer: &TestIssuer, broker: &TestBroker, sub: &str, extra: Value) -> String {
    let mut claims = issuer.claims(sub, "tessera", broker.clock.now());
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    issuer.key(0).sign(&claims)
}

/// Exchange `token` and expect a credential.
async fn granted(broker: &TestBroker, token: &str) {
    let (status, body) = broker.exchange(token, "internal-api").await;
    assert_eq!(status, 200, "{body}");
}

/// Exchange `token`, expect the rules' fixed refusal, and return its audit event.
async fn refused(broker: &TestBroker, token: &str) -> Value {
    let (status, body) = broker.exchange(token, "internal-api").await;
    assert_eq!(status, 400, "{body}");
    // The caller sees the fixed text; why is for the audit record.
    assert_eq!(
        body,
        json!({
            "error": "invalid_target",
            "error_description": "No rule allows this identity to obtain a credential for this audience.",
        })
    );
    let event = broker.audit_events().last().cloned().expect("an audit event");
    assert_eq!(event["decision"], "deny", "{event}");
    event
}

/// What `POST /v1/explain` says of `token` for `internal-api`.
async fn explain(broker: &TestBroker, token: &str) -> Value {
    let request =
        json!({ "subject_token": token, "subject_token_type": JWT_TYPE, "audience": "internal-api" });
    let (status, body) = broker.admin_post("/v1/explain", &request).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The rule named `rule` in an explanation's trace.
fn traced<'a>(explanation: &'a Value, rule: &str) -> &'a Value {
    explanation["trace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["rule"] == rule)
        .unwrap_or_else(|| panic!("{rule} not in the trace: {explanation:#}"))
}

const PROD_ONLY: &str = r#"  - name: prod-only
    effect: deny
    match: { source: corp }
    when: 'identity.attributes["oidc.env"] != "prod"'
    grant: { target: internal-api }
  - name: payments-batch
    match: { source: corp, subject: "batch-*" }
    when: 'identity.attributes["oidc.team"] == "payments"'
    grant: { target: internal-api }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_rule_whose_condition_fails_refuses_and_an_allow_rule_whose_condition_fails_does_not_grant() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker_with_rules(&issuer, PROD_ONLY).await;

    granted(&broker, &token(&issuer, &broker, "svc-a", json!({ "env": "prod" }))).await;
    let event = refused(&broker, &token(&issuer, &broker, "svc-a", json!({ "env": "dev" }))).await;
    assert_eq!((&event["reason"], &event["rule"]), (&json!("TS-MAP-DENIED"), &json!("prod-only")));

    // No `env` claim: the deny rule's condition fails, so the deny rule applies. Before,
    // it was skipped and `services-call-internal-api` granted.
    let no_env = token(&issuer, &broker, "svc-a", json!({}));
    let event = refused(&broker, &no_env).await;
    assert_eq!(event["reason"], "TS-MAP-DENY-CONDITION-ERROR", "{event}");
    assert_eq!(event["rule"], "prod-only");
    assert_eq!(
        event["detail"],
        r#"denied by rule `prod-only`, which could not be evaluated (deny rules fail closed): its condition `identity.attributes["oidc.env"] != "prod"` failed: no such key: `oidc.env` (guard it with `has()` or `in`)"#
    );

    // An allow rule whose condition fails does not apply: no rule grants.
    let event = refused(&broker, &token(&issuer, &broker, "batch-1", json!({ "env": "prod" }))).await;
    assert_eq!(event["reason"], "TS-MAP-NO-RULE", "{event}");
    granted(&broker, &token(&issuer, &broker, "batch-1", json!({ "env": "prod", "team": "payments" }))).await;

    // `POST /v1/explain` shows the deny rule as applied because its condition failed.
    let body = explain(&broker, &no_env).await;
    let error = json!({
        "kind": "condition",
        "condition": r#"identity.attributes["oidc.env"] != "prod""#,
        "error": "no such key: `oidc.env` (guard it with `has()` or `in`)",
    });
    assert_eq!(body["decision"], json!({ "decision": "deny_on_error", "rule": "prod-only", "error": error }));
    assert_eq!(
        traced(&body, "prod-only")["outcome"],
        json!({ "outcome": "applied_on_error", "error": error })
    );
    assert_eq!(traced(&body, "services-call-internal-api")["outcome"]["outcome"], "applied");
    assert_eq!(body["refusal"]["code"], "TS-MAP-DENY-CONDITION-ERROR");
    broker.stop().await;
}

/// A deny rule that refuses pull-request refs of `svc-*` workloads and an allow rule that
/// grants `deploy-*` workloads on the main branch, both looking at the ref by `match` or
/// both by `when`.
const REF_RULES: [(&str, &str); 2] = [
    (
        "match",
        r#"  - name: no-pull-requests
    effect: deny
    match: { source: corp, subject: "svc-*", attributes: { oidc.ref: "refs/pull/*" } }
    grant: { target: internal-api }
  - name: main-deploys
    match: { source: corp, subject: "deploy-*", attributes: { oidc.ref: refs/heads/main } }
    grant: { target: internal-api }
"#,
    ),
    (
        "when",
        r#"  - name: no-pull-requests
    effect: deny
    match: { source: corp, subject: "svc-*" }
    when: '"oidc.ref" in identity.attributes && identity.attributes["oidc.ref"].startsWith("refs/pull/")'
    grant: { target: internal-api }
  - name: main-deploys
    match: { source: corp, subject: "deploy-*" }
    when: '"oidc.ref" in identity.attributes && identity.attributes["oidc.ref"] == "refs/heads/main"'
    grant: { target: internal-api }
"#,
    ),
];

/// 2 KiB, over the 1 KiB attribute limit.
fn long_ref() -> String {
    format!("refs/heads/{}", "x".repeat(2048 - 11))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_over_the_attribute_limits_is_withheld_and_a_deny_rule_testing_it_refuses_the_token() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let long_ref = long_ref();
    for (path, rules) in REF_RULES {
        let broker = broker_with_rules(&issuer, rules).await;
        granted(&broker, &token(&issuer, &broker, "svc-a", json!({ "ref": "refs/heads/main" }))).await;
        let short_pr = token(&issuer, &broker, "svc-a", json!({ "ref": "refs/pull/7/merge" }));
        assert_eq!(refused(&broker, &short_pr).await["reason"], "TS-MAP-DENIED", "{path}");

        // The 2 KiB ref: the deny rule cannot tell what it is, so it applies, and the allow
        // rule beside it (`svc-*`) never grants.
        let event = refused(&broker, &token(&issuer, &broker, "svc-a", json!({ "ref": long_ref }))).await;
        assert_eq!(event["reason"], "TS-MAP-DENY-CONDITION-ERROR", "{path}: {event}");
        assert_eq!(event["rule"], "no-pull-requests", "{path}");
        let because = match path {
            "match" => {
                "`match` tests `attributes.oidc.ref`, whose value was withheld (over the attribute limits)"
            }
            _ => {
                r#"its condition `"oidc.ref" in identity.attributes && identity.attributes["oidc.ref"].startsWith("refs/pull/")` failed: it reads attribute `oidc.ref`, whose value was withheld (over the attribute limits)"#
            }
        };
        assert_eq!(
            event["detail"],
            format!(
                "denied by rule `no-pull-requests`, which could not be evaluated (deny rules fail closed): {because}"
            ),
            "{path}"
        );
        // The audit record names the key, never the value.
        assert_eq!(event["identity"]["withheld"], json!(["oidc.ref"]), "{event}");
        assert!(event["identity"]["attributes"].get("oidc.ref").is_none(), "{event}");

        // Past the count limit (128 attributes; claims are taken in name order, so `ref`
        // comes after `a000`..`a129`), a short pull-request ref is withheld too.
        let mut crowded = json!({ "ref": "refs/pull/7/merge" });
        for i in 0..130 {
            crowded[format!("a{i:03}")] = json!("v");
        }
        let event = refused(&broker, &token(&issuer, &broker, "svc-b", crowded)).await;
        assert_eq!(event["reason"], "TS-MAP-DENY-CONDITION-ERROR", "{path}: {event}");
        assert_eq!(event["identity"]["withheld"], json!(["oidc.a128", "oidc.a129", "oidc.ref"]), "{path}");

        // The allow rule that looks at the ref grants only on a value it can see.
        granted(&broker, &token(&issuer, &broker, "deploy-1", json!({ "ref": "refs/heads/main" }))).await;
        let event = refused(&broker, &token(&issuer, &broker, "deploy-1", json!({ "ref": long_ref }))).await;
        assert_eq!(event["reason"], "TS-MAP-NO-RULE", "{path}: {event}");

        // The directory shows each workload's withheld keys as last seen, never the value.
        let (status, dir) = broker.admin_get("/v1/workloads").await;
        assert_eq!(status, 200, "{dir}");
        let svc_a = dir["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == "oidc://corp/svc-a")
            .unwrap_or_else(|| panic!("{dir:#}"));
        assert_eq!(svc_a["identity"]["withheld"], json!(["oidc.ref"]), "{svc_a}");
        assert!(!dir.to_string().contains(&long_ref[..64]), "{path}: the value reached the directory");
        assert!(!broker.audit_text().contains(&long_ref[..64]), "{path}: the value reached the audit log");
        broker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_shows_a_deny_rule_applied_because_an_attribute_was_withheld() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker_with_rules(&issuer, REF_RULES[0].1).await;
    let long_ref = long_ref();
    let long = token(&issuer, &broker, "svc-a", json!({ "ref": long_ref }));

    let body = explain(&broker, &long).await;
    let error = json!({ "kind": "withheld_match", "field": "attributes.oidc.ref" });
    assert_eq!(body["identity"]["withheld"], json!(["oidc.ref"]));
    assert_eq!(
        body["decision"],
        json!({ "decision": "deny_on_error", "rule": "no-pull-requests", "error": error })
    );
    assert_eq!(
        traced(&body, "no-pull-requests")["outcome"],
        json!({ "outcome": "applied_on_error", "error": error })
    );
    assert_eq!(traced(&body, "services-call-internal-api")["outcome"]["outcome"], "applied");
    assert!(!body.to_string().contains(&long_ref[..64]), "the value is not shown");

    // The same through the CLI, verifying the token as the broker does.
    let out = tokio::task::spawn_blocking({
        let config = broker.path().join("broker.yaml");
        move || {
            let mut child = std::process::Command::new(tessera_binary())
                .args(["mappings", "explain", "--config"])
                .arg(&config)
                .args(["--token", "-", "--audience", "internal-api", "--now", "2026-01-05T09:00:00Z"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), long.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    assert!(lines.contains(&"          attributes.oidc.ref withheld (over the attribute limits)"), "{text}");
    let at = lines
        .iter()
        .position(|l| l.starts_with("  applies on error no-pull-requests (deny) at "))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        lines[at + 1..at + 3],
        [
            "                   `match` tests `attributes.oidc.ref`, whose value was withheld (over the attribute limits)",
            "                   a deny rule that cannot be evaluated applies (fail closed)",
        ],
        "{text}"
    );
    assert!(
        lines.contains(&"decision  deny by rule `no-pull-requests`, which could not be evaluated (deny rules fail closed)"),
        "{text}"
    );
    assert!(lines.last().unwrap().ends_with("[TS-MAP-DENY-CONDITION-ERROR]"), "{text}");
    assert!(!text.contains(&long_ref[..64]), "the value is not shown");
    broker.stop().await;
}
