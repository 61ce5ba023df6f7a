//! The OpenAPI document (`docs/openapi.json`): served on the admin listener only, and held
//! to the live broker by schemathesis, which sends generated requests, valid and not, to
//! every operation of every listener and checks each answer against the document.

use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, python, spawn_broker};

use crate::{JWT_TARGET, RULES, oidc_source};

/// Generated cases per operation and phase: enough for schemathesis to reach every
/// documented refusal, few enough to stay within seconds.
const MAX_EXAMPLES: &str = "20";

/// A broker with the standard rules and its admin listener; the issuer must outlive it.
async fn admin_broker(tweak: impl FnOnce(BrokerOptions) -> BrokerOptions) -> (TestIssuer, TestBroker) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let options =
        BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET).mapping("10-services.yaml", RULES).with_admin();
    let broker = spawn_broker(tweak(options)).await;
    (issuer, broker)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_served_on_the_admin_listener_only() {
    let (_issuer, broker) = admin_broker(|o| o).await;
    let admin = broker.admin_url.as_deref().unwrap();
    let response = broker.http.get(format!("{admin}/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.unwrap();
    let on_disk = std::fs::read_to_string(python::root().join("docs/openapi.json")).unwrap();
    assert_eq!(text, on_disk, "the binary serves the document in the repository");

    let public = broker.http.get(format!("{}/openapi.json", broker.url)).send().await.unwrap();
    assert_eq!(public.status(), 404, "nothing on the public listener describes the admin API");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let (_issuer, broker) = admin_broker(BrokerOptions::with_metrics).await;
    let openapi = python::root().join("docs/openapi.json").display().to_string();
    let listeners = [
        format!("public={}", broker.url),
        format!("admin={}", broker.admin_url.as_deref().unwrap()),
        format!("metrics={}", broker.metrics_url.as_deref().unwrap()),
    ];
    let report = tokio::task::spawn_blocking(move || {
        let mut args = vec![openapi.as_str(), MAX_EXAMPLES];
        args.extend(listeners.iter().map(String::as_str));
        python::run("schemathesis_peer.py", &args)
    })
    .await
    .unwrap();
    // It ran: every listener's operations were tested, and requests reached the broker.
    for listener in ["public", "admin", "metrics"] {
        assert!(report.contains(&format!("== {listener} ")), "{report}");
    }
    assert!(!report.contains("No operations"), "{report}");
    assert!(!broker.audit_events().is_empty(), "some token requests got past the edge:\n{report}");
    broker.stop().await;
}

/// Found by schemathesis: a body `POST /v1/explain` could not read (not JSON, another
/// content type, a missing member) got actix's plain-text 400, not this API's JSON error.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_explain_body_gets_the_admin_apis_json_error() {
    let (_issuer, broker) = admin_broker(|o| o).await;
    let url = format!("{}/v1/explain", broker.admin_url.as_deref().unwrap());
    let cases = [
        ("application/json", "{not json"),
        ("text/plain", r#"{"identity": {"source": "corp"}, "audience": "internal-api"}"#),
        ("application/json", r#"{"identity": {"source": "corp"}}"#),
        ("application/json", r#"{"identity": {"source": "corp"}, "audience": "internal-api", "extra": 1}"#),
    ];
    for (content_type, body) in cases {
        let response =
            broker.http.post(&url).header("content-type", content_type).body(body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{content_type} {body}");
        assert_eq!(response.headers()["content-type"], "application/json", "{content_type} {body}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "invalid_request", "{answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    }
    let oversized = format!(r#"{{"audience": "{}"}}"#, "a".repeat(70 * 1024));
    let response = broker
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(oversized)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["content-type"], "application/json");
    broker.stop().await;
}
