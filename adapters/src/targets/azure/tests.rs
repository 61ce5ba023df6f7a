use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::config::MAX_TTL_CAP;
use super::issue::read_answer;
use super::*;
use crate::build::{BuildError, BuildTarget};
use crate::config::kind_config;
use crate::oauth::token_type;
use crate::target::{CredentialTarget, Grant, RuleParam, RuleText, SigningAlgorithm, TargetError};
use crate::targets::testkit::{self, GrantParts, NOW, assert_cache_keys, workflow};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const GRAPH: &str = "https://graph.microsoft.com/.default";

fn config(value: Value) -> AzureTargetConfig {
    kind_config(KIND, value).unwrap()
}

fn build(value: Value) -> Result<Arc<dyn CredentialTarget>, BuildError> {
    config(value).build(&testkit::context(&[SigningAlgorithm::Es256, SigningAlgorithm::Rs256]))
}

fn grant(scope: Option<&str>, params: Value) -> Grant {
    testkit::grant(testkit::identity(Some("api")), "graph", scope, Duration::from_secs(3600), params)
}

#[test]
fn defaults_are_documented_values() {
    let c = config(json!({ "type": "azure", "name": "graph" }));
    assert_eq!(c.tenant, None);
    assert_eq!(c.client_id, None);
    assert_eq!(c.scope, None);
    assert_eq!(c.audience, DEFAULT_AUDIENCE);
    assert_eq!(c.authority, DEFAULT_AUTHORITY);
    assert_eq!(c.upstream.timeout, Duration::from_secs(5));
    assert_eq!(c.upstream.max_attempts, 3);
    assert!(!c.upstream.insecure_http);
    assert!(c.upstream.cache);
    assert_eq!(c.max_ttl, Duration::from_secs(3600));
    assert_eq!(c.default_ttl, Duration::from_secs(3600));
    let t = build(json!({ "type": "azure", "name": "graph" })).unwrap();
    assert_eq!(t.kind(), "azure");
    assert_eq!(t.issued_token_type(), token_type::ACCESS_TOKEN);
    assert_eq!(t.issued_jwt(), None, "the platform issues, not Tessera");
    assert_eq!(t.grant_keys(), &["tenant", "client_id", "subject"]);
    assert_eq!(t.scope_param(), None, "the Entra scope is the rule's `scope`");
    assert!(t.cacheable());
    assert_eq!(t.required_grant_keys(), ["tenant", "client_id", "scope"], "nothing configured");
    let t =
        build(json!({ "type": "azure", "name": "graph", "tenant": TENANT, "client_id": CLIENT })).unwrap();
    assert_eq!(t.required_grant_keys(), ["scope"]);
}

#[test]
fn unknown_keys_are_refused() {
    let err = kind_config::<AzureTargetConfig>(KIND, json!({ "type": "azure", "name": "g", "secret": "x" }))
        .unwrap_err();
    assert!(err.to_string().contains("secret"), "{err}");
}

#[test]
fn build_errors_name_the_field() {
    let cases = [
        (json!({ "name": "Bad Name" }), "name"),
        (json!({ "name": "g", "tenant": "../common" }), "tenant"),
        (json!({ "name": "g", "client_id": "not-a-guid" }), "client_id"),
        (json!({ "name": "g", "scope": "https://graph.microsoft.com/User.Read" }), "scope"),
        (json!({ "name": "g", "audience": " " }), "audience"),
        (json!({ "name": "g", "authority": "http://login.microsoftonline.com" }), "authority"),
        (json!({ "name": "g", "authority": "http://10.0.0.1", "insecure_http": true }), "authority"),
        (json!({ "name": "g", "timeout": 0 }), "timeout"),
        (json!({ "name": "g", "max_attempts": 6 }), "max_attempts"),
        (json!({ "name": "g", "max_ttl": "3h" }), "max_ttl"),
        (json!({ "name": "g", "max_ttl": "30m", "default_ttl": "1h" }), "default_ttl"),
    ];
    for (mut value, field) in cases {
        value["type"] = json!("azure");
        let err = build(value.clone()).unwrap_err();
        assert_eq!(err.field, Some(field), "{value}: {err}");
    }
    assert_eq!(MAX_TTL_CAP, Duration::from_secs(7200));
}

#[test]
fn entra_needs_an_rs256_key() {
    let err = config(json!({ "type": "azure", "name": "g" }))
        .build(&testkit::context(&[SigningAlgorithm::Es256]))
        .unwrap_err();
    assert_eq!(err.field, Some("algorithm"));
    assert!(err.message.contains("RS256"), "{}", err.message);
}

#[test]
fn literal_grant_values_are_checked_when_rules_load() {
    let t = build(json!({ "type": "azure", "name": "graph" })).unwrap();
    let text = |s| RuleParam::Text(RuleText::Literal(s));
    assert!(t.check_grant_param("tenant", &text(TENANT)).is_ok());
    assert!(t.check_grant_param("tenant", &text("contoso.onmicrosoft.com")).is_ok());
    assert!(t.check_grant_param("tenant", &text("a/b")).is_err());
    assert!(t.check_grant_param("client_id", &text(CLIENT)).is_ok());
    assert!(t.check_grant_param("client_id", &text("app")).is_err());
    assert!(t.check_grant_param("subject", &text("")).is_err());
    assert!(t.check_grant_param("subject", &RuleParam::Text(RuleText::Template)).is_ok());
    assert!(t.check_grant_param("tenant", &RuleParam::Map(vec![])).is_err());
}

#[tokio::test]
async fn grants_missing_a_tenant_client_or_scope_are_refused_before_any_call() {
    let server = testkit::scripted_server("application/json", vec![(500, String::new())]).await;
    let t =
        build(json!({ "type": "azure", "name": "graph", "authority": server.url, "insecure_http": true }))
            .unwrap();
    for (scope, params) in [
        (Some(GRAPH), json!({ "client_id": CLIENT })),
        (Some(GRAPH), json!({ "tenant": TENANT })),
        (None, json!({ "tenant": TENANT, "client_id": CLIENT })),
        (Some("https://graph.microsoft.com/User.Read"), json!({ "tenant": TENANT, "client_id": CLIENT })),
        (Some(GRAPH), json!({ "tenant": "x/../y", "client_id": CLIENT })),
        (Some(GRAPH), json!({ "tenant": TENANT, "client_id": CLIENT, "subject": "a\nb" })),
    ] {
        let r = t.issue(&grant(scope, params.clone())).await;
        assert!(matches!(r, Err(TargetError::InvalidGrant(_))), "{scope:?} {params}: {r:?}");
    }
    assert_eq!(server.count.load(Ordering::SeqCst), 0);
}

fn form(request: &str) -> Map<String, Value> {
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with(&format!("POST /{TENANT}/oauth2/v2.0/token HTTP/1.1")), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/x-www-form-urlencoded"), "{head}");
    url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::from(v.into_owned())))
        .collect()
}

#[tokio::test]
async fn the_client_credentials_request_carries_an_rs256_assertion_for_the_federated_credential() {
    let ok = json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "eyJ0eXAi.graph" });
    let server = testkit::scripted_server("application/json", vec![(200, ok.to_string())]).await;
    let t = build(json!({
        "type": "azure", "name": "graph", "tenant": TENANT, "client_id": CLIENT, "scope": GRAPH,
        "authority": server.url, "insecure_http": true,
    }))
    .unwrap();
    let issued = t.issue(&grant(None, json!({}))).await.unwrap();
    assert_eq!(issued.access_token.expose(), "eyJ0eXAi.graph");
    assert_eq!(issued.token_type, "Bearer");
    assert_eq!(issued.issued_token_type, token_type::ACCESS_TOKEN);
    assert_eq!(issued.expires_at, NOW + 3599);

    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let fields = form(&requests[0]);
    let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    assert_eq!(keys, ["client_assertion", "client_assertion_type", "client_id", "grant_type", "scope"]);
    assert_eq!(fields["client_id"], CLIENT);
    assert_eq!(fields["scope"], GRAPH);
    assert_eq!(fields["grant_type"], "client_credentials");
    assert_eq!(fields["client_assertion_type"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    // The test signer's "token" is the claim set itself.
    let claims: Value = serde_json::from_str(fields["client_assertion"].as_str().unwrap()).unwrap();
    assert_eq!(claims["iss"], "https://tessera.test");
    assert_eq!(claims["sub"], "k8s://eks-prod/ns/payments/sa/api", "the identity id by default");
    assert_eq!(claims["aud"], DEFAULT_AUDIENCE);
    assert_eq!(claims["exp"], NOW + 300);
    assert_eq!(claims["nbf"], NOW);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
}

#[tokio::test]
async fn rule_values_override_the_configured_ones() {
    let ok = json!({ "token_type": "Bearer", "expires_in": 600, "access_token": "t" });
    let server = testkit::scripted_server("application/json", vec![(200, ok.to_string())]).await;
    let t = build(json!({
        "type": "azure", "name": "graph", "tenant": "other.onmicrosoft.com", "client_id": "00000000-0000-0000-0000-000000000000",
        "authority": server.url, "insecure_http": true,
    }))
    .unwrap();
    let params = json!({ "tenant": TENANT, "client_id": CLIENT, "subject": "payments-api" });
    t.issue(&grant(Some("api://orders/.default"), params)).await.unwrap();
    let fields = form(&server.requests.lock().unwrap()[0]);
    assert_eq!(fields["client_id"], CLIENT);
    assert_eq!(fields["scope"], "api://orders/.default");
    let claims: Value = serde_json::from_str(fields["client_assertion"].as_str().unwrap()).unwrap();
    assert_eq!(claims["sub"], "payments-api");
}

#[tokio::test]
async fn failures_are_retried_and_refusals_are_not() {
    let ok = json!({ "token_type": "Bearer", "expires_in": 600, "access_token": "t" });
    let server = testkit::scripted_server(
        "application/json",
        vec![(503, String::new()), (429, String::new()), (200, ok.to_string())],
    )
    .await;
    let base = json!({ "type": "azure", "name": "graph", "tenant": TENANT, "client_id": CLIENT, "scope": GRAPH, "authority": server.url, "insecure_http": true });
    build(base.clone()).unwrap().issue(&grant(None, json!({}))).await.unwrap();
    assert_eq!(server.count.load(Ordering::SeqCst), 3);

    let refused = json!({
        "error": "invalid_client",
        "error_description": "AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: 'https://tessera.test'.",
        "error_codes": [70021],
    });
    let server = testkit::scripted_server("application/json", vec![(400, refused.to_string())]).await;
    let mut value = base;
    value["authority"] = json!(server.url);
    let r = build(value).unwrap().issue(&grant(None, json!({}))).await;
    match r {
        Err(TargetError::UpstreamRejected(m)) => assert_eq!(m, "Entra: invalid_client AADSTS70021"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.count.load(Ordering::SeqCst), 1);
}

#[test]
fn answers_are_read_strictly() {
    for bad in [
        json!({ "token_type": "Bearer", "expires_in": 600, "access_token": "" }),
        json!({ "token_type": "pop", "expires_in": 600, "access_token": "t" }),
        json!({ "token_type": "Bearer", "expires_in": 0, "access_token": "t" }),
        json!({ "access_token": "t" }),
    ] {
        let r = read_answer(200, bad.to_string().as_bytes());
        assert!(matches!(r, Err(TargetError::Upstream { retryable: false, .. })), "{bad}");
    }
    assert!(
        matches!(read_answer(400, b"<html>"), Err(TargetError::UpstreamRejected(m)) if m == "Entra: unknown")
    );
    let free_text = json!({ "error": "invalid grant with token eyJ.x", "error_codes": [] });
    assert!(
        matches!(read_answer(401, free_text.to_string().as_bytes()), Err(TargetError::UpstreamRejected(m)) if m == "Entra: unknown"),
        "free text never reaches an error"
    );
    assert!(matches!(read_answer(500, b""), Err(TargetError::Upstream { retryable: true, .. })));
    assert!(matches!(read_answer(302, b""), Err(TargetError::Upstream { retryable: false, .. })));
}

#[test]
fn every_input_of_the_entra_call_is_in_the_cache_key_and_the_identity_only_as_the_subject() {
    let t = build(json!({ "type": "azure", "name": "graph" })).unwrap();
    let key = |p: &GrantParts| t.describe_request(&p.grant()).unwrap().digest();
    let base = GrantParts {
        identity: workflow("deploy"),
        rule: "ci-reads-graph",
        target: "graph",
        scope: Some(GRAPH),
        ttl: Duration::from_secs(3600),
        claims: json!({}),
        params: json!({ "tenant": TENANT, "client_id": CLIENT }),
    };
    let changed = [
        ("tenant", base.with(|p| p.params["tenant"] = json!("contoso.onmicrosoft.com"))),
        ("client id", base.with(|p| p.params["client_id"] = json!("00000000-0000-0000-0000-000000000001"))),
        ("scope", base.with(|p| p.scope = Some("https://management.azure.com/.default"))),
        // The assertion's `sub` is the identity id unless the rule names a subject.
        ("identity", base.with(|p| p.identity.id = "github://octo-org/ledger".into())),
        ("subject", base.with(|p| p.params["subject"] = json!("ci"))),
        ("ttl", base.with(|p| p.ttl = Duration::from_secs(1800))),
        ("claims", base.with(|p| p.claims = json!({ "env": "prod" }))),
        ("rule", base.with(|p| p.rule = "ci-writes-graph")),
    ];
    let same = [("workflow", base.with(|p| p.identity = workflow("release")))];
    assert_cache_keys(key, &base, &changed, &same);

    let named = base.with(|p| p.params["subject"] = json!("ci"));
    let same = [(
        "identity under a named subject",
        named.with(|p| p.identity.id = "github://octo-org/ledger".into()),
    )];
    assert_cache_keys(key, &named, &[], &same);
}
