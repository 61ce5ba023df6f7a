use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::build::BuildTarget;
use crate::config::kind_config;
use crate::target::{CredentialTarget, IssuedJwt, RuleParam, RuleText, SigningAlgorithm, TargetError};
use crate::targets::testkit::{self, GrantParts, NOW, assert_cache_keys, identity};

fn config(extra: Value) -> KubernetesTargetConfig {
    let base = json!({ "name": "k8s-prod", "audience": "https://k8s-prod.example.com" });
    kind_config(KIND, testkit::entry(base, extra)).unwrap()
}

fn build(extra: Value) -> Result<Arc<dyn CredentialTarget>, String> {
    testkit::build_all_algorithms(&config(extra))
}

fn parts(params: Value) -> GrantParts {
    GrantParts {
        identity: identity(Some("api")),
        rule: "ci-deploys",
        target: "k8s-prod",
        scope: None,
        ttl: Duration::from_secs(600),
        claims: json!({}),
        params,
    }
}

async fn issued(target: &Arc<dyn CredentialTarget>, params: Value) -> Result<Value, TargetError> {
    let credential = target.issue(&parts(params).grant()).await?;
    assert_eq!(credential.token_type, "Bearer");
    Ok(serde_json::from_str(credential.access_token.expose()).unwrap())
}

#[tokio::test]
async fn a_token_carries_the_clusters_audience_and_the_granted_user() {
    let target = build(json!({})).unwrap();
    let claims =
        issued(&target, json!({ "username": "ci-deployer", "groups": "deployers payments-readers" }))
            .await
            .unwrap();
    assert_eq!(claims["iss"], "https://tessera.test");
    assert_eq!(claims["aud"], "https://k8s-prod.example.com");
    assert_eq!(claims["sub"], "k8s://eks-prod/ns/payments/sa/api");
    assert_eq!(claims[USERNAME_CLAIM], "ci-deployer");
    assert_eq!(claims[GROUPS_CLAIM], json!(["deployers", "payments-readers"]));
    assert_eq!(claims["exp"], NOW + 600);
    assert_eq!(
        target.issued_jwt(),
        Some(IssuedJwt {
            audience: "https://k8s-prod.example.com".into(),
            algorithm: SigningAlgorithm::Es256
        })
    );
}

#[tokio::test]
async fn without_grant_keys_the_username_is_the_identity_and_there_are_no_groups() {
    let target = build(json!({ "audience": null })).unwrap();
    let claims = issued(&target, json!({})).await.unwrap();
    assert_eq!(claims[USERNAME_CLAIM], "k8s://eks-prod/ns/payments/sa/api");
    assert!(claims.get(GROUPS_CLAIM).is_none());
    assert_eq!(claims["aud"], "k8s-prod", "the audience defaults to the target name");
}

#[tokio::test]
async fn kubernetes_own_names_and_unprintable_ones_are_refused() {
    let target = build(json!({})).unwrap();
    for params in [
        json!({ "username": "system:admin" }),
        json!({ "username": "" }),
        json!({ "username": "a\nb" }),
        json!({ "username": " padded" }),
        json!({ "groups": "deployers system:masters" }),
        json!({ "groups": "   " }),
        json!({ "groups": "a a" }),
    ] {
        let err = issued(&target, params.clone()).await.unwrap_err();
        assert!(matches!(err, TargetError::InvalidGrant(_)), "{params}: {err:?}");
    }
    let many = (0..65).map(|i| format!("g{i}")).collect::<Vec<_>>().join(" ");
    assert!(issued(&target, json!({ "groups": many })).await.is_err());
}

#[test]
fn literals_are_checked_when_rules_load_and_groups_are_never_templates() {
    let target = build(json!({})).unwrap();
    let check = |key: &str, value: RuleParam<'_>| target.check_grant_param(key, &value);
    assert!(check("username", RuleParam::Text(RuleText::Literal("system:kube-proxy"))).is_err());
    assert!(check("username", RuleParam::Text(RuleText::Template)).is_ok());
    assert!(check("groups", RuleParam::Text(RuleText::Literal("deployers readers"))).is_ok());
    assert!(check("groups", RuleParam::Text(RuleText::Literal("system:masters"))).is_err());
    let err = check("groups", RuleParam::Text(RuleText::Template)).unwrap_err();
    assert!(err.contains("templates"), "{err}");
    assert!(check("groups", RuleParam::Map(vec![])).is_err());
}

#[test]
fn the_config_is_checked() {
    for (extra, field) in [
        (json!({ "algorithm": "EdDSA" }), "algorithm"),
        (json!({ "max_ttl": "13h" }), "max_ttl"),
        (json!({ "audience": "" }), "audience"),
        (json!({ "username_prefix": "it's:" }), "username_prefix"),
        (json!({ "groups_prefix": "system:" }), "groups_prefix"),
        (json!({ "certificate_authority": "/nonexistent/ca.pem" }), "certificate_authority"),
    ] {
        let err = build(extra.clone()).unwrap_err();
        assert!(err.starts_with(field), "{extra}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(
        &key,
        "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = build(json!({ "certificate_authority": key })).unwrap_err();
    assert!(err.contains("no private key"), "{err}");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
    build(json!({ "certificate_authority": ca })).unwrap();
    assert_eq!(config(json!({})).audiences(), vec!["https://k8s-prod.example.com"]);
}

#[test]
fn everything_that_shapes_the_token_is_in_its_cache_key() {
    let target = build(json!({})).unwrap();
    let key = |p: &GrantParts| target.describe_request(&p.grant()).unwrap().digest();
    let base = parts(json!({ "username": "ci-deployer", "groups": "deployers" }));
    let changed = [
        ("username", base.with(|p| p.params["username"] = json!("ci-reader"))),
        ("groups", base.with(|p| p.params["groups"] = json!("deployers readers"))),
        ("ttl", base.with(|p| p.ttl = Duration::from_secs(60))),
        ("identity", base.with(|p| p.identity.id = "k8s://eks-prod/ns/payments/sa/web".into())),
        ("claim", base.with(|p| p.claims = json!({ "team": "payments" }))),
    ];
    assert_cache_keys(key, &base, &changed, &[]);
}
