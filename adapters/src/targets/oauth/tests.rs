use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::config::kind_config;
use crate::target::{CredentialTarget, TargetError};
use crate::targets::testkit::{self, GrantParts, NOW, identity, scripted_server};

fn config(url: &str, extra: Value) -> OauthTargetConfig {
    let base = json!({
        "name": "ledger", "token_endpoint": format!("{url}/token"), "insecure_http": true,
        "max_attempts": 1, "timeout": "2s",
    });
    kind_config(KIND, testkit::entry(base, extra)).unwrap()
}

fn build(url: &str, extra: Value) -> Result<Arc<dyn CredentialTarget>, String> {
    testkit::build_all_algorithms(&config(url, extra))
}

fn parts() -> GrantParts {
    GrantParts {
        identity: identity(Some("api")),
        rule: "to-ledger",
        target: "ledger",
        scope: Some("ledger:read"),
        ttl: Duration::from_secs(600),
        claims: json!({}),
        params: json!({}),
    }
}

/// The form of the one request the server got, decoded.
fn form(request: &str) -> Vec<(String, String)> {
    let body = request.split("\r\n\r\n").nth(1).unwrap();
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn a_jwt_bearer_grant_carries_a_tessera_assertion_and_client_credentials() {
    let ok = json!({ "access_token": "at-1", "token_type": "Bearer", "expires_in": 300 }).to_string();
    let server = scripted_server("application/json", vec![(200, ok)]).await;
    let target = build(
        &server.url,
        json!({ "audience": "ledger-api", "client_id": "domain a", "client_secret": "s3cr:et" }),
    )
    .unwrap();
    let credential = target.issue(&parts().grant()).await.unwrap();
    assert_eq!((credential.access_token.expose().as_str(), credential.token_type), ("at-1", "Bearer"));
    assert_eq!(credential.expires_at, NOW + 300, "the lifetime is the server's expires_in");
    let request = server.requests.lock().unwrap()[0].clone();
    let sent = form(&request);
    assert_eq!(param(&sent, "grant_type"), Some("urn:ietf:params:oauth:grant-type:jwt-bearer"));
    assert_eq!(param(&sent, "audience"), Some("ledger-api"));
    assert_eq!(param(&sent, "scope"), Some("ledger:read"));
    assert_eq!(param(&sent, "client_id"), None, "the client authenticates by HTTP Basic");
    // RFC 6749 §2.3.1: each part form-urlencoded before base64.
    assert!(request.to_ascii_lowercase().contains("authorization: basic zg9tywlu"), "{request}");
    let assertion: Value = serde_json::from_str(param(&sent, "assertion").unwrap()).unwrap();
    assert_eq!(assertion["sub"], "k8s://eks-prod/ns/payments/sa/api");
    assert_eq!(assertion["aud"], format!("{}/token", server.url));
    assert_eq!(assertion["iss"], "https://tessera.test");
    assert!(assertion["jti"].is_string());
}

#[tokio::test]
async fn token_exchange_sends_the_assertion_as_a_jwt_subject_token() {
    let ok = json!({ "access_token": "at-2", "token_type": "N_A", "issued_token_type": "x" }).to_string();
    let server = scripted_server("application/json", vec![(200, ok)]).await;
    let target = build(
        &server.url,
        json!({ "grant": "token_exchange", "assertion_audience": "https://b.example", "client_id": "a" }),
    )
    .unwrap();
    let credential = target.issue(&parts().grant()).await.unwrap();
    assert_eq!(credential.token_type, "N_A");
    assert_eq!(credential.expires_at, NOW + 600, "without expires_in, the granted lifetime");
    let sent = form(&server.requests.lock().unwrap()[0]);
    assert_eq!(param(&sent, "grant_type"), Some("urn:ietf:params:oauth:grant-type:token-exchange"));
    assert_eq!(param(&sent, "subject_token_type"), Some("urn:ietf:params:oauth:token-type:jwt"));
    assert_eq!(param(&sent, "client_id"), Some("a"), "without a secret the client id is in the body");
    let assertion: Value = serde_json::from_str(param(&sent, "subject_token").unwrap()).unwrap();
    assert_eq!(assertion["aud"], "https://b.example");
}

#[tokio::test]
async fn refusals_keep_only_the_error_code_and_failures_are_retryable() {
    let refused = json!({ "error": "invalid_grant", "error_description": "jti eyJ.x.y seen" }).to_string();
    let server = scripted_server("application/json", vec![(400, refused)]).await;
    let target = build(&server.url, json!({})).unwrap();
    match target.issue(&parts().grant()).await {
        Err(TargetError::UpstreamRejected(cause)) => assert_eq!(cause, "token endpoint: invalid_grant"),
        other => panic!("{other:?}"),
    }
    let server = scripted_server("application/json", vec![(503, "{}".into())]).await;
    let target = build(&server.url, json!({})).unwrap();
    assert!(matches!(
        target.issue(&parts().grant()).await,
        Err(TargetError::Upstream { retryable: true, .. })
    ));
    let dpop = json!({ "access_token": "at", "token_type": "DPoP", "expires_in": 60 }).to_string();
    let server = scripted_server("application/json", vec![(200, dpop)]).await;
    let target = build(&server.url, json!({})).unwrap();
    assert!(matches!(
        target.issue(&parts().grant()).await,
        Err(TargetError::Upstream { retryable: false, .. })
    ));
}

#[test]
fn the_config_is_checked() {
    for (extra, field) in [
        (json!({ "token_endpoint": "http://ledger.example/token" }), "token_endpoint"),
        (json!({ "client_secret": "x" }), "client_secret"),
        (json!({ "audience": "a\nb" }), "audience"),
        (json!({ "max_ttl": "25h" }), "max_ttl"),
    ] {
        let err = build("http://127.0.0.1:9", extra.clone()).unwrap_err();
        assert!(err.starts_with(field), "{extra}: {err}");
    }
    let c = config("http://127.0.0.1:9", json!({ "client_id": "a", "client_secret": "hidden-value" }));
    assert!(!format!("{c:?}").contains("hidden-value"), "the secret is redacted");
}
