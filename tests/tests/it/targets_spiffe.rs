//! The `spiffe` target end to end: `POST /v1/token` issues JWT-SVIDs, `GET
//! /v1/spiffe/bundle` serves the trust domain's bundle, and py-spiffe (PyPI `spiffe`), a
//! SPIFFE library nobody here wrote, parses the bundle and validates the SVIDs, through a
//! key rotation.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera_adapters::Clock;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, python, spawn_broker};

use crate::{JWT_TYPE, TOKEN_EXCHANGE, oidc_source};

const TARGET: &str = "- name: svid\n  type: spiffe\n  trust_domain: tessera.test\n  audiences: [ledger, reports]\n  max_ttl: 10m\n  default_ttl: 5m\n  bundle_refresh_hint: 2m\n";

const RULES: &str = r#"version: 1
rules:
  - name: services-call-the-ledger
    match: { source: corp, subject: "svc-*" }
    grant: { target: svid, path: "/corp/{subject}", audience: ledger }
  - name: services-call-reports
    match: { source: corp, subject: "svc-*" }
    grant: { target: svid, path: "/corp/{subject}", audience: reports, ttl: 2m }
tests:
  - identity: { source: corp, provider: oidc, subject: svc-payments }
    audience: svid
    scope: ledger
    expect: { allow: services-call-the-ledger }
"#;

async fn broker() -> (TestIssuer, TestBroker) {
    let issuer = TestIssuer::start(vec![TestKey::ec("ec-1")]);
    let broker =
        spawn_broker(BrokerOptions::new(&oidc_source(&issuer), TARGET).mapping("10-svid.yaml", RULES)).await;
    (issuer, broker)
}

/// An SVID for the identity `subject` of source `corp`, for `scope`.
async fn svid(issuer: &TestIssuer, broker: &TestBroker, subject: &str, scope: &str) -> (u16, Value) {
    let now = broker.clock.now();
    let token = issuer.key(0).sign(&issuer.claims(subject, "tessera", now));
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", token.as_str()),
        ("subject_token_type", JWT_TYPE),
        ("audience", "svid"),
        ("scope", scope),
    ];
    let (status, _, body) = broker.post_form(&form).await;
    (status, body)
}

async fn validate(broker: &TestBroker, audience: &str, tokens: &[&str]) -> Value {
    let mut args = vec!["validate".to_string(), format!("{}/v1/spiffe/bundle", broker.url)];
    args.extend(["tessera.test".to_string(), audience.to_string()]);
    args.extend(tokens.iter().map(ToString::to_string));
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        python::run("spiffe_peer.py", &args)
    })
    .await
    .unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn py_spiffe_validates_the_svids_against_the_served_bundle() {
    let (issuer, broker) = broker().await;
    let (status, body) = svid(&issuer, &broker, "svc-payments", "ledger").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], JWT_TYPE);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    let ledger = body["access_token"].as_str().unwrap().to_string();
    let (status, body) = svid(&issuer, &broker, "svc-payments", "reports").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 120, "the rule's ttl");
    let reports = body["access_token"].as_str().unwrap().to_string();

    let seen = validate(&broker, "ledger", &[&ledger, &reports]).await;
    let bundle = &seen["bundle"];
    assert_eq!(bundle["trust_domain"], "tessera.test");
    assert_eq!(bundle["uses"], serde_json::json!(["jwt-svid"]));
    assert_eq!(bundle["spiffe_refresh_hint"], 120);
    assert_eq!(bundle["cache_control"], "public, max-age=120");
    assert_eq!(bundle["kids"].as_array().unwrap().len(), 2, "the ES256 active and next keys: {bundle}");
    let ok = &seen["results"][0];
    assert_eq!(ok["spiffe_id"], "spiffe://tessera.test/corp/svc-payments", "{seen}");
    assert_eq!(ok["audience"], serde_json::json!(["ledger"]));
    assert_eq!(ok["pyjwt"]["header"]["alg"], "ES256");
    assert_eq!(ok["pyjwt"]["header"]["typ"], "JWT", "JWT-SVID §2.3: JWT or JOSE");
    assert_eq!(ok["pyjwt"]["claims"]["iss"], broker.url.as_str());
    // The SVID for `reports` is refused where `ledger` is expected (JWT-SVID §3.2).
    assert!(seen["results"][1]["error"].is_string(), "{seen}");
    let other = validate(&broker, "reports", &[&reports]).await;
    assert_eq!(other["results"][0]["spiffe_id"], "spiffe://tessera.test/corp/svc-payments", "{other}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_that_renders_no_valid_spiffe_id_gets_invalid_target() {
    let (issuer, broker) = broker().await;
    for subject in ["svc-a:b", "svc-x/", "svc-a%2Fb"] {
        let (status, body) = svid(&issuer, &broker, subject, "ledger").await;
        assert_eq!(status, 400, "{subject}: {body}");
        assert_eq!(body["error"], "invalid_target", "{subject}: {body}");
    }
    let events = broker.audit_events();
    assert_eq!(events.len(), 3);
    for event in &events {
        assert_eq!(event["decision"], "deny", "{event}");
        assert_eq!(event["reason"], "TS-TGT-INVALID-GRANT", "{event}");
    }
    // A scope no rule grants is refused, and so is no scope when two rules apply.
    let (status, body) = svid(&issuer, &broker, "svc-payments", "payroll").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "{body}");
    let token = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", broker.clock.now()));
    let (status, body) = broker.exchange(&token, "svid").await;
    assert_eq!(status, 400, "{body}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_raises_the_bundle_sequence_and_old_svids_still_validate() {
    let (issuer, broker) = broker().await;
    let (_, body) = svid(&issuer, &broker, "svc-payments", "ledger").await;
    let before_rotation = body["access_token"].as_str().unwrap().to_string();
    let first = validate(&broker, "ledger", &[]).await["bundle"].clone();

    // The SVIDs are checked against the wall clock, so the rotation happens in a later
    // second of it (the sequence counts seconds), not on a clock moved ahead.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    broker.clock.set(tessera_adapters::SystemClock.now());
    let loaded = broker.broker.config();
    let clock: Arc<dyn Clock> = broker.clock.clone();
    tessera_broker::issuer::rotate(&loaded.config.issuer, &loaded.base_dir, clock, Duration::from_secs(900))
        .unwrap();
    // The broker's own reloader may have picked the rotation up already.
    broker.broker.issuer().reload().unwrap();
    let (_, body) = svid(&issuer, &broker, "svc-payments", "ledger").await;
    let after_rotation = body["access_token"].as_str().unwrap().to_string();

    let seen = validate(&broker, "ledger", &[&before_rotation, &after_rotation]).await;
    let rotated = &seen["bundle"];
    assert!(
        rotated["spiffe_sequence"].as_i64().unwrap() > first["spiffe_sequence"].as_i64().unwrap(),
        "{first} then {rotated}"
    );
    assert_eq!(rotated["kids"].as_array().unwrap().len(), 3, "active, next and the retired key: {rotated}");
    for result in seen["results"].as_array().unwrap() {
        assert_eq!(result["spiffe_id"], "spiffe://tessera.test/corp/svc-payments", "{seen}");
    }
    let kid = |r: &Value| r["pyjwt"]["header"]["kid"].as_str().unwrap().to_string();
    assert_ne!(kid(&seen["results"][0]), kid(&seen["results"][1]), "the new active key signs");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_spiffe_target_there_is_no_bundle() {
    let (_issuer, broker) = crate::standard().await;
    let (status, body) = broker.get_json("/v1/spiffe/bundle").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "not_found");
    broker.stop().await;
}

#[test]
fn tessera_trust_names_the_trust_domain_its_bundle_endpoint_and_the_granted_ids() {
    let path = python::root().join("examples/kubernetes-to-spiffe/broker.yaml");
    let loaded = tessera_broker::config::load(&path).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(tessera_adapters::ManualClock::starting_now());
    let adapters = tessera_broker::Adapters::build(&loaded, clock).unwrap();
    let set =
        tessera_broker::mapping::MappingSet::load_dir(&loaded.mappings_dir(), &adapters.catalog).unwrap();
    let out: Value =
        serde_json::from_str(&tessera_broker::trust::render(&loaded, &set, "svid", None).unwrap()).unwrap();
    assert_eq!(out["trust_domain"], "tessera.example.com");
    assert_eq!(out["bundle_endpoint_url"], "https://tessera.example.com/v1/spiffe/bundle");
    assert_eq!(out["bundle_endpoint_profile"], "https_web");
    assert!(
        out["spire_server_federation"].as_str().unwrap().contains("federates_with \"tessera.example.com\"")
    );
    assert_eq!(
        out["rules"][0]["spiffe_ids"],
        serde_json::json!(["spiffe://tessera.example.com/ns/payments/sa/api"])
    );
    assert_eq!(out["rules"][0]["audiences"], serde_json::json!(["ledger"]));
    assert_eq!(
        out["rules"][1]["spiffe_ids"],
        serde_json::json!(["spiffe://tessera.example.com/ns/{namespace}/sa/{name}"])
    );
    let format =
        tessera_broker::trust::render(&loaded, &set, "svid", Some(tessera_broker::trust::Format::Yaml));
    assert!(format.is_err(), "a spiffe target has only json");
}
