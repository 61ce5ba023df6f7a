use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::registry::TargetConfig;
use crate::target::{CredentialTarget, RuleParam, RuleText, SigningAlgorithm, TargetError};
use crate::targets::testkit::{self, NOW};

fn build(extra: Value) -> Result<std::sync::Arc<dyn CredentialTarget>, String> {
    let entry =
        testkit::entry(json!({ "name": "txn", "type": "txn_token", "audience": "trust.example" }), extra);
    let config: TargetConfig = serde_json::from_value(entry).map_err(|e| e.to_string())?;
    config.build(&testkit::context(&[SigningAlgorithm::Es256])).map_err(|e| e.to_string())
}

fn grant(scope: Option<&str>, claims: Value) -> crate::target::Grant {
    let Value::Object(claims) = claims else { panic!("claims must be an object") };
    crate::target::Grant::new(
        crate::source::VerifiedIdentity::new(testkit::identity(Some("api"))),
        "rule-1",
        "txn",
        scope.map(str::to_string),
        Duration::from_secs(600),
        claims,
        Default::default(),
    )
}

/// What the test signer "signed": `{"typ": ..., "claims": ...}`.
async fn issued(target: &dyn CredentialTarget, g: &crate::target::Grant) -> (Value, i64, &'static str) {
    let c = target.issue(g).await.expect("issued");
    let token: Value = serde_json::from_str(c.access_token.expose()).unwrap();
    assert_eq!(c.issued_token_type, "urn:ietf:params:oauth:token-type:txn_token");
    (token, c.expires_at, c.token_type)
}

#[tokio::test]
async fn a_txn_token_carries_the_draft_claims_with_its_own_typ() {
    let target = build(json!({ "max_ttl": "5m" })).unwrap();
    let g = grant(
        Some("trade.stocks  trade.stocks orders.read"),
        json!({
            "sub": "user:alice",
            "tctx": { "action": "BUY" },
            "rctx": { "req_ip": "69.151.72.123" },
            "tier": "gold",
        }),
    );
    let (token, exp, token_type) = issued(target.as_ref(), &g).await;
    assert_eq!(token_type, "N_A");
    assert_eq!(token["typ"], TXN_TOKEN_TYP);
    let claims = &token["claims"];
    assert_eq!(claims["aud"], "trust.example");
    assert_eq!(claims["iss"], "https://tessera.test");
    assert_eq!(claims["sub"], "user:alice");
    assert_eq!(claims["scope"], "trade.stocks orders.read", "deduplicated, in order");
    assert_eq!(claims["req_wl"], g.identity().id.as_str());
    assert_eq!(claims["tctx"], json!({ "action": "BUY", "tier": "gold" }), "rule claims join tctx");
    assert_eq!(claims["rctx"], json!({ "req_ip": "69.151.72.123" }));
    assert_eq!(claims["iat"], NOW);
    assert_eq!(exp, NOW + 300, "capped at max_ttl");
    assert_eq!(claims["exp"], exp);
    assert!(uuid::Uuid::parse_str(claims["txn"].as_str().unwrap()).is_ok(), "a new transaction");
    let again = issued(target.as_ref(), &g).await.0;
    assert_ne!(again["claims"]["txn"], claims["txn"], "each new transaction its own txn");
}

#[tokio::test]
async fn a_replacement_keeps_txn_and_appends_the_requesting_workload() {
    let target = build(json!({})).unwrap();
    let g = grant(
        Some("trade.stocks"),
        json!({ "txn": "t-1", "sub": "user:alice", "req_wl": "gw", "tctx": { "tier": "silver" }, "tier": "gold" }),
    );
    let claims = issued(target.as_ref(), &g).await.0["claims"].clone();
    assert_eq!(claims["txn"], "t-1");
    assert_eq!(claims["req_wl"], format!("gw,{}", g.identity().id));
    assert_eq!(claims["tctx"]["tier"], "silver", "a rule claim never overrides tctx");
    assert!(claims.get("rctx").is_none());
}

#[tokio::test]
async fn grants_without_a_scope_or_with_bad_context_are_refused() {
    let target = build(json!({})).unwrap();
    for (scope, claims) in [
        (None, json!({})),
        (Some(" "), json!({})),
        (Some("a"), json!({ "tctx": "not an object" })),
        (Some("a"), json!({ "sub": "" })),
        (Some("a"), json!({ "txn": 5 })),
    ] {
        let g = grant(scope, claims.clone());
        assert!(matches!(target.issue(&g).await, Err(TargetError::InvalidGrant(_))), "{scope:?} {claims}");
        assert!(target.describe_request(&g).is_err());
    }
}

#[test]
fn config_is_checked() {
    for (extra, says) in [
        (json!({ "audience": "" }), "audience"),
        (json!({ "audience": " td" }), "audience"),
        (json!({ "max_ttl": "2h" }), "max_ttl"),
        (json!({ "default_ttl": "10m" }), "default_ttl"),
        (json!({ "algorithm": "RS256" }), "no RS256 key"),
        (json!({ "claims": {} }), "unknown field"),
    ] {
        let err = build(extra.clone()).expect_err("refused");
        assert!(err.contains(says), "{extra}: {err}");
    }
    let target = build(json!({})).unwrap();
    assert_eq!(target.max_ttl(), Duration::from_secs(300));
    assert!(!target.cacheable());
    assert_eq!(target.issued_jwt().unwrap().audience, "trust.example");
}

#[test]
fn grant_keys_are_literal_lists_of_known_values() {
    let target = build(json!({})).unwrap();
    let lit = |s| RuleParam::Text(RuleText::Literal(s));
    assert!(target.check_grant_param(GRANT_SCOPES, &lit("trade.stocks orders:read")).is_ok());
    assert!(target.check_grant_param(GRANT_SCOPES, &lit("  ")).is_err(), "empty");
    assert!(target.check_grant_param(GRANT_SCOPES, &lit("a\"b")).is_err(), "not a scope-token");
    assert!(target.check_grant_param(GRANT_SUBJECTS, &RuleParam::Text(RuleText::Template)).is_err());
    assert!(target.check_grant_param(GRANT_SUBJECTS, &RuleParam::Map(vec![])).is_err());
    assert!(target.check_grant_param(GRANT_SUBJECT_TOKEN_TYPES, &lit("jwt unsigned_json txn_token")).is_ok());
    let err = target.check_grant_param(GRANT_SUBJECT_TOKEN_TYPES, &lit("jwt self_signed")).unwrap_err();
    assert!(err.contains("self_signed"), "{err}");
    for kind in SubjectKind::ALL {
        assert_eq!(SubjectKind::from_name(kind.name()), Some(kind));
        assert_eq!(SubjectKind::from_uri(kind.uri()), Some(kind));
    }
    assert_eq!(split_list(" a b  a "), vec!["a", "b"]);
}
