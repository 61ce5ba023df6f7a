use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::build::BuildTarget;
use crate::config::kind_config;
use crate::oauth::token_type;
use crate::target::{CredentialTarget, TargetError};
use crate::targets::testkit::{self, GrantParts, NOW, identity};

fn config(extra: Value) -> JwtGrantTargetConfig {
    let base = json!({ "name": "domain-b", "authorization_server": "https://tessera.b.example" });
    kind_config(KIND, testkit::entry(base, extra)).unwrap()
}

fn build(extra: Value) -> Result<Arc<dyn CredentialTarget>, String> {
    testkit::build_all_algorithms(&config(extra))
}

fn parts(scope: Option<&'static str>, claims: Value) -> GrantParts {
    GrantParts {
        identity: identity(Some("api")),
        rule: "payments-to-b",
        target: "domain-b",
        scope,
        ttl: Duration::from_secs(120),
        claims,
        params: json!({}),
    }
}

#[tokio::test]
async fn a_grant_names_the_foreign_server_and_is_a_jwt_but_no_access_token() {
    let target = build(json!({ "claims": { "domain": "a" } })).unwrap();
    let credential =
        target.issue(&parts(Some("ledger:read"), json!({ "team": "payments" })).grant()).await.unwrap();
    assert_eq!((credential.issued_token_type, credential.token_type), (token_type::JWT, "N_A"));
    let claims: Value = serde_json::from_str(credential.access_token.expose()).unwrap();
    assert_eq!(claims["iss"], "https://tessera.test");
    assert_eq!(claims["aud"], "https://tessera.b.example");
    assert_eq!(claims["sub"], "k8s://eks-prod/ns/payments/sa/api");
    assert_eq!((claims["iat"].clone(), claims["exp"].clone()), (json!(NOW), json!(NOW + 120)));
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!((claims["scope"].clone(), claims["team"].clone()), (json!("ledger:read"), json!("payments")));
    assert_eq!(claims["domain"], "a");
    assert_eq!(credential.expires_at, NOW + 120);
    assert!(!target.cacheable(), "each grant is redeemed once");
}

#[tokio::test]
async fn the_lifetime_is_capped_and_tessera_s_claims_are_its_own() {
    let target = build(json!({ "max_ttl": "1m", "default_ttl": "30s" })).unwrap();
    let credential = target.issue(&parts(None, json!({})).grant()).await.unwrap();
    assert_eq!(credential.expires_at, NOW + 60);
    for claim in ["aud", "jti", "scope"] {
        let err = target.issue(&parts(None, json!({ claim: "x" })).grant()).await.unwrap_err();
        assert!(matches!(err, TargetError::InvalidGrant(_)), "{claim}: {err:?}");
    }
}

#[test]
fn the_config_is_checked() {
    for (extra, field) in [
        (json!({ "authorization_server": "" }), "authorization_server"),
        (json!({ "authorization_server": " https://b" }), "authorization_server"),
        (json!({ "max_ttl": "2h" }), "max_ttl"),
        (json!({ "claims": { "aud": "x" } }), "claims"),
        (json!({ "claims": { "scope": "x" } }), "claims"),
    ] {
        let err = build(extra.clone()).unwrap_err();
        assert!(err.starts_with(field), "{extra}: {err}");
    }
    assert_eq!(config(json!({})).audiences(), ["https://tessera.b.example"]);
}
