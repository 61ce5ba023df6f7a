use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::build::BuildTarget;
use crate::config::kind_config;
use crate::oauth::token_type;
use crate::target::{
    CredentialTarget, RuleParam, RuleText, SigningAlgorithm, TargetError, TrustDomainBundle,
};
use crate::targets::testkit::{self, GrantParts, NOW, assert_cache_keys, identity};

fn config(extra: Value) -> SpiffeTargetConfig {
    let base = json!({
        "name": "svid",
        "trust_domain": "tessera.example.com",
        "audiences": ["ledger", "spiffe://tessera.example.com/reports"],
    });
    kind_config(KIND, testkit::entry(base, extra)).unwrap()
}

fn build(extra: Value) -> Result<Arc<dyn CredentialTarget>, String> {
    testkit::build_all_algorithms(&config(extra))
}

fn parts(params: Value) -> GrantParts {
    GrantParts {
        identity: identity(Some("api")),
        rule: "payments-svid",
        target: "svid",
        scope: None,
        ttl: Duration::from_secs(300),
        claims: json!({}),
        params,
    }
}

async fn issued(target: &Arc<dyn CredentialTarget>, params: Value) -> Result<Value, TargetError> {
    let credential = target.issue(&parts(params).grant()).await?;
    assert_eq!(credential.issued_token_type, token_type::JWT);
    assert_eq!(credential.token_type, "Bearer");
    let claims: Value = serde_json::from_str(credential.access_token.expose()).unwrap();
    assert_eq!(claims["exp"], json!(credential.expires_at));
    Ok(claims)
}

#[tokio::test]
async fn an_svid_names_the_rendered_spiffe_id_and_one_audience() {
    let target = build(json!({})).unwrap();
    let claims =
        issued(&target, json!({ "path": "/ns/payments/sa/api", "audience": "ledger" })).await.unwrap();
    assert_eq!(claims["sub"], "spiffe://tessera.example.com/ns/payments/sa/api");
    assert_eq!(claims["aud"], "ledger", "one audience, as JWT-SVID §7.2 recommends");
    assert_eq!(claims["iss"], "https://tessera.test");
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["exp"], NOW + 300);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
}

#[tokio::test]
async fn the_lifetime_is_capped_and_short_by_default() {
    let target = build(json!({ "max_ttl": "10m" })).unwrap();
    assert_eq!(target.default_ttl(), Duration::from_secs(300));
    let grant =
        parts(json!({ "path": "/a", "audience": "ledger" })).with(|p| p.ttl = Duration::from_secs(3600));
    let credential = target.issue(&grant.grant()).await.unwrap();
    assert_eq!(credential.expires_at, NOW + 600);
    assert!(build(json!({ "max_ttl": "2h" })).unwrap_err().starts_with("max_ttl"));
}

#[tokio::test]
async fn ids_the_spiffe_id_specification_refuses_are_never_signed() {
    let target = build(json!({})).unwrap();
    for path in [
        "",
        "/",
        "ns/payments",
        "/ns//payments",
        "/ns/payments/",
        "/ns/./payments",
        "/ns/../payments",
        "/ns/pay ments",
        "/ns/pay%20ments",
        "/ns/payments?x=1",
        "/ns/payments#x",
        "/system:serviceaccount:payments:api",
        "/ns/päyments",
    ] {
        let err = issued(&target, json!({ "path": path, "audience": "ledger" })).await.unwrap_err();
        assert!(matches!(err, TargetError::InvalidGrant(_)), "{path:?}: {err:?}");
        assert!(
            target.describe_request(&parts(json!({ "path": path, "audience": "ledger" })).grant()).is_err()
        );
        // The same path written as a literal is a load error.
        assert!(
            target.check_grant_param("path", &RuleParam::Text(RuleText::Literal(path))).is_err(),
            "{path:?}"
        );
    }
    let long = format!("/{}", "a".repeat(2048));
    let err = issued(&target, json!({ "path": long, "audience": "ledger" })).await.unwrap_err();
    assert!(err.to_string().contains("2048"), "{err}");
    let fits = format!("/{}", "a".repeat(2048 - "spiffe://tessera.example.com/".len()));
    issued(&target, json!({ "path": fits, "audience": "ledger" })).await.unwrap();
}

#[tokio::test]
async fn the_audience_is_one_the_target_lists() {
    let target = build(json!({})).unwrap();
    let err = issued(&target, json!({ "path": "/a", "audience": "payroll" })).await.unwrap_err();
    assert!(matches!(err, TargetError::InvalidGrant(_)), "{err:?}");
    let err = issued(&target, json!({ "path": "/a" })).await.unwrap_err();
    assert!(err.to_string().contains("no `audience`"), "{err}");
    assert_eq!(target.required_grant_keys(), vec!["path", "audience"]);
    assert!(target.check_grant_param("audience", &RuleParam::Text(RuleText::Literal("payroll"))).is_err());
    assert!(target.check_grant_param("audience", &RuleParam::Text(RuleText::Literal("ledger"))).is_ok());
    assert_eq!(target.scope_param(), Some("audience"), "a request's scope picks the audience");

    let single = build(json!({ "audiences": ["ledger"] })).unwrap();
    assert_eq!(single.required_grant_keys(), vec!["path"]);
    let claims = issued(&single, json!({ "path": "/a" })).await.unwrap();
    assert_eq!(claims["aud"], "ledger");
}

#[tokio::test]
async fn rule_claims_ride_along_but_never_replace_what_tessera_sets() {
    let target = build(json!({})).unwrap();
    let grant = parts(json!({ "path": "/a", "audience": "ledger" }))
        .with(|p| p.claims = json!({ "team": "payments" }));
    let credential = target.issue(&grant.grant()).await.unwrap();
    let claims: Value = serde_json::from_str(credential.access_token.expose()).unwrap();
    assert_eq!(claims["team"], "payments");
    for reserved in ["sub", "aud", "exp", "iss", "jti"] {
        let grant = parts(json!({ "path": "/a", "audience": "ledger" }))
            .with(|p| p.claims = json!({ reserved: "spiffe://tessera.example.com/admin" }));
        assert!(
            matches!(target.issue(&grant.grant()).await, Err(TargetError::InvalidGrant(_))),
            "{reserved}"
        );
    }
}

#[test]
fn the_config_is_checked() {
    let cases = [
        (json!({ "trust_domain": "Tessera.example.com" }), "trust_domain"),
        (json!({ "trust_domain": "spiffe://" }), "trust_domain"),
        (json!({ "trust_domain": "example.com:8443" }), "trust_domain"),
        (json!({ "audiences": [] }), "audiences"),
        (json!({ "audiences": ["a", "a"] }), "audiences"),
        (json!({ "audiences": [" "] }), "audiences"),
        (json!({ "algorithm": "EdDSA" }), "algorithm"),
        (json!({ "default_ttl": "20m" }), "default_ttl"),
        (json!({ "bundle_refresh_hint": "30d" }), "bundle_refresh_hint"),
    ];
    for (extra, field) in cases {
        let err = build(extra.clone()).unwrap_err();
        assert!(err.starts_with(field), "{extra}: {err}");
    }
    let no_rs = config(json!({ "algorithm": "RS256" })).build(&testkit::context(&[SigningAlgorithm::Es256]));
    assert_eq!(no_rs.unwrap_err().field, Some("algorithm"));
    let built =
        build(json!({ "trust_domain": "spiffe://tessera.example.com", "algorithm": "RS256" })).unwrap();
    assert_eq!(
        built.trust_domain(),
        Some(TrustDomainBundle {
            trust_domain: "tessera.example.com".into(),
            algorithm: SigningAlgorithm::Rs256,
            refresh_hint: Duration::from_secs(300),
        })
    );
    assert_eq!(config(json!({})).audiences(), vec!["ledger", "spiffe://tessera.example.com/reports"]);
    assert!(!built.cacheable());
}

#[test]
fn everything_that_shapes_the_svid_is_in_its_cache_key() {
    let target = build(json!({})).unwrap();
    let key = |p: &GrantParts| target.describe_request(&p.grant()).unwrap().digest();
    let base = parts(json!({ "path": "/ns/payments/sa/api", "audience": "ledger" }));
    let changed = [
        ("path", base.with(|p| p.params["path"] = json!("/ns/payments/sa/web"))),
        ("audience", base.with(|p| p.params["audience"] = json!("spiffe://tessera.example.com/reports"))),
        ("ttl", base.with(|p| p.ttl = Duration::from_secs(60))),
        ("claim", base.with(|p| p.claims = json!({ "team": "payments" }))),
        // The SVID carries the identity only through its rendered path, yet another
        // identity granted the same path gets an SVID of its own, never a shared one.
        ("identity", base.with(|p| p.identity.id = "k8s://eks-prod/ns/payments/sa/web".into())),
    ];
    assert_cache_keys(key, &base, &changed, &[]);
}
