use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::*;
use crate::build::{BuildContext, BuildTarget};
use crate::clock::ManualClock;
use crate::config::kind_config;
use crate::identity::Identity;
use crate::oauth::token_type;
use crate::secret::Secret;
use crate::source::VerifiedIdentity;
use crate::target::{CredentialTarget, Grant, IssuedJwt, SignError, Signer, SigningAlgorithm, TargetError};
use crate::targets::signed::LocalSigner;
use crate::targets::testkit::{GrantParts, assert_cache_keys, workflow};

const NOW: i64 = 1_700_000_000;

/// A signer whose "token" is the claim set as JSON, so tests can read back what was signed.
#[derive(Debug)]
struct RecordingSigner {
    algorithms: Vec<SigningAlgorithm>,
    signed_with: Mutex<Vec<SigningAlgorithm>>,
}

impl RecordingSigner {
    fn new(algorithms: &[SigningAlgorithm]) -> Arc<Self> {
        Arc::new(Self { algorithms: algorithms.to_vec(), signed_with: Mutex::new(Vec::new()) })
    }
}

impl Signer for RecordingSigner {
    fn issuer(&self) -> &str {
        "https://tessera.test"
    }

    fn algorithms(&self) -> Vec<SigningAlgorithm> {
        self.algorithms.clone()
    }

    fn sign(&self, alg: SigningAlgorithm, claims: &Map<String, Value>) -> Result<Secret<String>, SignError> {
        if !self.algorithms.contains(&alg) {
            return Err(SignError::NoActiveKey(alg.as_str()));
        }
        self.signed_with.lock().unwrap().push(alg);
        serde_json::to_string(claims).map(Secret::new).map_err(|_| SignError::Encoding)
    }
}

fn context(signer: Arc<RecordingSigner>) -> BuildContext {
    BuildContext {
        clock: Arc::new(ManualClock::new(NOW)),
        http: reqwest::Client::new(),
        signer,
        base_dir: PathBuf::from("."),
        observer: std::sync::Arc::new(crate::observe::NoObserver),
        token_cache: Default::default(),
    }
}

fn config(yaml_like: Value) -> JwtTargetConfig {
    kind_config(KIND, yaml_like).unwrap()
}

fn build(c: &JwtTargetConfig) -> Result<Arc<dyn CredentialTarget>, crate::build::BuildError> {
    c.build(&context(RecordingSigner::new(&[SigningAlgorithm::Es256, SigningAlgorithm::Rs256])))
}

fn grant(target: &str, ttl: Duration, scope: Option<&str>, claims: Value) -> Grant {
    let identity = Identity {
        id: "k8s://eks-prod/ns/payments/sa/api".into(),
        provider: "kubernetes".into(),
        source: "eks-prod".into(),
        issuer: "https://oidc.eks.example".into(),
        subject: "system:serviceaccount:payments:api".into(),
        tenant: Some("eks-prod".into()),
        namespace: Some("payments".into()),
        name: Some("api".into()),
        instance: None,
        region: None,
        attributes: BTreeMap::new(),
        withheld: Default::default(),
        expires_at: NOW + 600,
    };
    let Value::Object(claims) = claims else { panic!("claims must be an object") };
    Grant::new(
        VerifiedIdentity::new(identity),
        "rule-1",
        target,
        scope.map(str::to_string),
        ttl,
        claims,
        BTreeMap::new(),
    )
}

async fn issue_claims(
    target: &dyn CredentialTarget,
    grant: &Grant,
) -> Result<(Map<String, Value>, i64), TargetError> {
    let issued = target.issue(grant).await?;
    assert_eq!(issued.issued_token_type, token_type::JWT);
    assert_eq!(issued.token_type, "Bearer");
    assert!(issued.platform_credentials.is_none());
    let claims: Map<String, Value> = serde_json::from_str(issued.access_token.expose()).unwrap();
    Ok((claims, issued.expires_at))
}

#[test]
fn defaults_are_documented_values() {
    let c = config(json!({ "type": "jwt", "name": "internal-api" }));
    assert_eq!(c.audience, None);
    assert_eq!(c.algorithm, SigningAlgorithm::Es256);
    assert_eq!(c.max_ttl, Duration::from_secs(3600));
    assert_eq!(c.default_ttl, Duration::from_secs(900));
    assert!(c.claims.is_empty());
    let t = build(&c).unwrap();
    assert_eq!(t.kind(), "jwt");
    assert_eq!(t.name(), "internal-api");
    assert_eq!(t.max_ttl(), Duration::from_secs(3600));
    assert_eq!(t.default_ttl(), Duration::from_secs(900));
    assert!(t.grant_keys().is_empty());
    assert_eq!(t.scope_param(), None);
    let expected = IssuedJwt { audience: "internal-api".into(), algorithm: SigningAlgorithm::Es256 };
    assert_eq!(t.issued_jwt(), Some(expected));
    let c = config(
        json!({ "type": "jwt", "name": "admin", "audience": "https://admin.example", "algorithm": "RS256" }),
    );
    let expected = IssuedJwt { audience: "https://admin.example".into(), algorithm: SigningAlgorithm::Rs256 };
    assert_eq!(build(&c).unwrap().issued_jwt(), Some(expected));
}

#[test]
fn unknown_keys_are_refused() {
    let err = kind_config::<JwtTargetConfig>(KIND, json!({ "type": "jwt", "name": "x", "audiences": ["a"] }))
        .unwrap_err();
    assert!(err.to_string().contains("audiences"), "{err}");
}

#[test]
fn build_errors_name_the_field() {
    let cases = [
        (json!({ "type": "jwt", "name": "Bad Name" }), "name"),
        (json!({ "type": "jwt", "name": "a", "audience": " " }), "audience"),
        (json!({ "type": "jwt", "name": "a", "algorithm": "EdDSA" }), "algorithm"),
        (json!({ "type": "jwt", "name": "a", "max_ttl": "25h" }), "max_ttl"),
        (json!({ "type": "jwt", "name": "a", "max_ttl": 0 }), "max_ttl"),
        (json!({ "type": "jwt", "name": "a", "max_ttl": "10m", "default_ttl": "15m" }), "default_ttl"),
        (json!({ "type": "jwt", "name": "a", "default_ttl": 0 }), "default_ttl"),
        (json!({ "type": "jwt", "name": "a", "claims": { "sub": "me" } }), "claims"),
        (json!({ "type": "jwt", "name": "a", "claims": { "exp": 1 } }), "claims"),
    ];
    for (value, field) in cases {
        let err = build(&config(value.clone())).unwrap_err();
        assert_eq!(err.field, Some(field), "{value}: {err}");
    }
}

#[test]
fn algorithm_must_be_one_the_signer_has() {
    let c = config(json!({ "type": "jwt", "name": "azure", "algorithm": "RS256" }));
    let err = c.build(&context(RecordingSigner::new(&[SigningAlgorithm::Es256]))).unwrap_err();
    assert_eq!(err.field, Some("algorithm"));
    assert!(err.message.contains("RS256") && err.message.contains("ES256"), "{err}");
}

#[tokio::test]
async fn issued_token_carries_the_registered_claims() {
    let signer = RecordingSigner::new(&[SigningAlgorithm::Es256, SigningAlgorithm::Rs256]);
    let c = config(json!({
        "type": "jwt", "name": "internal-api", "audience": "https://api.internal",
        "algorithm": "RS256",
    }));
    let t = c.build(&context(Arc::clone(&signer))).unwrap();
    let g = grant("internal-api", Duration::from_secs(600), None, json!({}));
    let (claims, exp) = issue_claims(t.as_ref(), &g).await.unwrap();

    assert_eq!(claims["iss"], "https://tessera.test");
    assert_eq!(claims["sub"], "k8s://eks-prod/ns/payments/sa/api");
    assert_eq!(claims["aud"], "https://api.internal");
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["nbf"], NOW);
    assert_eq!(claims["exp"], NOW + 600);
    assert_eq!(exp, NOW + 600);
    assert!(!claims.contains_key("scope"));
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(jti).unwrap().get_version_num(), 4);
    assert_eq!(*signer.signed_with.lock().unwrap(), vec![SigningAlgorithm::Rs256]);

    let (again, _) = issue_claims(t.as_ref(), &g).await.unwrap();
    assert_ne!(again["jti"], claims["jti"], "every token has its own jti");
}

#[tokio::test]
async fn audience_defaults_to_the_target_name() {
    let t = build(&config(json!({ "type": "jwt", "name": "internal-api" }))).unwrap();
    let g = grant("internal-api", Duration::from_secs(60), None, json!({}));
    let (claims, _) = issue_claims(t.as_ref(), &g).await.unwrap();
    assert_eq!(claims["aud"], "internal-api");
}

#[tokio::test]
async fn lifetime_is_capped_by_max_ttl_and_by_the_grant() {
    let t = build(&config(json!({ "type": "jwt", "name": "a", "max_ttl": "1h" }))).unwrap();

    let long = grant("a", Duration::from_secs(3 * 3600), None, json!({}));
    let (claims, exp) = issue_claims(t.as_ref(), &long).await.unwrap();
    assert_eq!(exp, NOW + 3600, "a grant beyond max_ttl is cut to max_ttl");
    assert_eq!(claims["exp"], NOW + 3600);

    let short = grant("a", Duration::from_secs(300), None, json!({}));
    let (_, exp) = issue_claims(t.as_ref(), &short).await.unwrap();
    assert_eq!(exp, NOW + 300, "a shorter grant is kept");

    let zero = grant("a", Duration::ZERO, None, json!({}));
    assert!(matches!(t.issue(&zero).await, Err(TargetError::InvalidGrant(_))));
}

#[tokio::test]
async fn reserved_claims_cannot_be_granted() {
    let t = build(&config(json!({ "type": "jwt", "name": "a" }))).unwrap();
    for name in RESERVED_CLAIMS {
        let g = grant("a", Duration::from_secs(60), None, json!({ *name: "x" }));
        match t.issue(&g).await {
            Err(TargetError::InvalidGrant(msg)) => assert!(msg.contains(name), "{msg}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn static_and_grant_claims_merge_with_the_grant_winning() {
    let t = build(&config(json!({
        "type": "jwt", "name": "a",
        "claims": { "env": "prod", "team": "platform", "labels": { "tier": 1 } },
    })))
    .unwrap();
    let g = grant("a", Duration::from_secs(60), None, json!({ "team": "payments", "run": 7 }));
    let (claims, _) = issue_claims(t.as_ref(), &g).await.unwrap();
    assert_eq!(claims["env"], "prod");
    assert_eq!(claims["labels"], json!({ "tier": 1 }));
    assert_eq!(claims["team"], "payments");
    assert_eq!(claims["run"], 7);
}

#[tokio::test]
async fn granted_scope_is_a_claim_no_template_can_change() {
    let t = build(&config(json!({ "type": "jwt", "name": "a", "claims": { "scope": "all" } }))).unwrap();

    let scoped = grant("a", Duration::from_secs(60), Some("invoices:read"), json!({ "scope": "x" }));
    let (claims, _) = issue_claims(t.as_ref(), &scoped).await.unwrap();
    assert_eq!(claims["scope"], "invoices:read");

    let unscoped = grant("a", Duration::from_secs(60), None, json!({}));
    let (claims, _) = issue_claims(t.as_ref(), &unscoped).await.unwrap();
    assert_eq!(claims["scope"], "all", "without a granted scope a configured one stands");
}

#[tokio::test]
async fn a_grant_for_another_target_is_refused() {
    let t = build(&config(json!({ "type": "jwt", "name": "a" }))).unwrap();
    let g = grant("b", Duration::from_secs(60), None, json!({}));
    assert!(matches!(t.issue(&g).await, Err(TargetError::InvalidGrant(_))));
}

#[tokio::test]
async fn signing_failures_surface_as_signing_errors() {
    let signer = RecordingSigner::new(&[SigningAlgorithm::Es256]);
    let cx = context(Arc::clone(&signer));
    let t = config(json!({ "type": "jwt", "name": "a" })).build(&cx).unwrap();
    // The issuer lost its key after the target was built (a config reload, say).
    let broken = JwtTarget {
        base: t.base().clone(),
        audience: "a".into(),
        algorithm: SigningAlgorithm::EdDsa,
        claims: Map::new(),
        local: LocalSigner { signer, clock: Arc::new(ManualClock::new(NOW)) },
    };
    let g = grant("a", Duration::from_secs(60), None, json!({}));
    assert!(t.issue(&g).await.is_ok());
    let err = broken.issue(&g).await.unwrap_err();
    assert!(matches!(err, TargetError::Signing(SignError::NoActiveKey("EdDSA"))), "{err:?}");
}

#[test]
fn the_request_description_holds_every_claim_and_the_subject() {
    let t = build(&config(json!({ "type": "jwt", "name": "internal-api", "claims": { "env": "prod" } })))
        .unwrap();
    let key = |p: &GrantParts| t.describe_request(&p.grant()).unwrap().digest();
    let base = GrantParts {
        identity: workflow("deploy"),
        rule: "ci-calls-api",
        target: "internal-api",
        scope: None,
        ttl: Duration::from_secs(900),
        claims: json!({ "team": "payments" }),
        params: json!({}),
    };
    let changed = [
        ("claims", base.with(|p| p.claims = json!({ "team": "ledger" }))),
        ("scope", base.with(|p| p.scope = Some("invoices:read"))),
        ("ttl", base.with(|p| p.ttl = Duration::from_secs(1800))),
        ("identity", base.with(|p| p.identity.id = "github://octo-org/ledger".into())),
        ("rule", base.with(|p| p.rule = "ci-releases")),
    ];
    let same = [("workflow", base.with(|p| p.identity = workflow("release")))];
    assert_cache_keys(key, &base, &changed, &same);

    let described = t.describe_request(&base.grant()).unwrap();
    assert_eq!(described.request()["sub"], "github://octo-org/payments");
    assert_eq!(described.request()["claims"], json!({ "env": "prod", "team": "payments" }));
    assert_eq!(described.request()["ttl"], 900);
}

/// RFC 8693 §4.1: a delegated grant's token carries `act`, the current actor outermost and
/// the prior chain inside it; a rule cannot write `act` itself.
#[tokio::test]
async fn a_delegated_grant_carries_the_act_chain_and_rules_cannot_forge_it() {
    let c = config(json!({ "type": "jwt", "name": "api", "audience": "https://api.example" }));
    let target = build(&c).unwrap();
    let actor = VerifiedIdentity::new(workflow("deploy"));
    let prior = json!({ "sub": "github://octo-org/release", "iss": "https://tessera.test" });
    let delegated = grant("api", Duration::from_secs(600), None, json!({}))
        .with_delegation(Some(actor), Some(prior.clone()));
    let (claims, _) = issue_claims(target.as_ref(), &delegated).await.unwrap();
    assert_eq!(claims["sub"], "k8s://eks-prod/ns/payments/sa/api", "the subject stays the subject");
    assert_eq!(
        claims["act"],
        json!({ "sub": "github://octo-org/payments", "iss": "https://tessera.test", "act": prior })
    );
    let (plain, _) = issue_claims(target.as_ref(), &grant("api", Duration::from_secs(600), None, json!({})))
        .await
        .unwrap();
    assert!(plain.get("act").is_none());
    let forged = grant("api", Duration::from_secs(600), None, json!({ "act": { "sub": "admin" } }));
    assert!(matches!(issue_claims(target.as_ref(), &forged).await, Err(TargetError::InvalidGrant(_))));
}
