use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::config::MAX_TTL_CAP;
use super::issue::{read_generate_answer, read_sts_answer};
use super::*;
use crate::build::{BuildContext, BuildError, BuildTarget};
use crate::config::kind_config;
use crate::oauth::token_type;
use crate::target::{CredentialTarget, Grant, SigningAlgorithm, TargetError};
use crate::targets::testkit::{self, GrantParts, NOW, assert_cache_keys, workflow};

const PROVIDER: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/tessera";

fn context(algs: &[SigningAlgorithm]) -> BuildContext {
    testkit::context(algs)
}

fn config(value: Value) -> GcpTargetConfig {
    kind_config(KIND, value).unwrap()
}

fn build(value: Value) -> Result<Arc<dyn CredentialTarget>, BuildError> {
    config(value).build(&context(&[SigningAlgorithm::Es256, SigningAlgorithm::Rs256]))
}

fn grant(params: Value) -> Grant {
    testkit::grant(testkit::identity(None), "gcp", None, Duration::from_secs(900), params)
}

#[test]
fn defaults_are_documented_values() {
    let c = config(json!({ "type": "gcp", "name": "gcp" }));
    assert_eq!(c.provider, None);
    assert_eq!(c.audience, None);
    assert_eq!(c.algorithm, SigningAlgorithm::Es256);
    assert_eq!(c.scopes, vec![CLOUD_PLATFORM_SCOPE.to_string()]);
    assert_eq!(c.sts_endpoint, DEFAULT_STS_ENDPOINT);
    assert_eq!(c.iamcredentials_endpoint, DEFAULT_IAMCREDENTIALS_ENDPOINT);
    assert_eq!(c.upstream.timeout, Duration::from_secs(5));
    assert_eq!(c.upstream.max_attempts, 3);
    assert!(!c.upstream.insecure_http);
    assert!(c.upstream.cache);
    assert_eq!(c.max_ttl, Duration::from_secs(3600));
    assert_eq!(c.default_ttl, Duration::from_secs(3600));
    let t = build(json!({ "type": "gcp", "name": "gcp" })).unwrap();
    assert_eq!(t.kind(), "gcp");
    assert_eq!(t.issued_token_type(), token_type::ACCESS_TOKEN);
    assert_eq!(t.issued_jwt(), None, "the platform issues, not Tessera");
    assert_eq!(t.grant_keys(), &["service_account", "scopes", "provider"]);
    assert_eq!(t.scope_param(), Some("service_account"));
    assert_eq!(t.required_grant_keys(), ["provider"], "no provider configured");
    let t = build(json!({ "type": "gcp", "name": "gcp", "provider": PROVIDER })).unwrap();
    assert!(t.required_grant_keys().is_empty());
}

#[test]
fn unknown_keys_are_refused() {
    let err =
        kind_config::<GcpTargetConfig>(KIND, json!({ "type": "gcp", "name": "g", "pool": "x" })).unwrap_err();
    assert!(err.to_string().contains("pool"), "{err}");
}

#[test]
fn build_errors_name_the_field() {
    let cases = [
        (json!({ "type": "gcp", "name": "Bad" }), "name"),
        (json!({ "type": "gcp", "name": "g", "provider": "projects/1/pools/x" }), "provider"),
        (
            json!({ "type": "gcp", "name": "g", "provider": "//iam.googleapis.com/projects/abc/locations/global/workloadIdentityPools/pool/providers/prov" }),
            "provider",
        ),
        (
            json!({ "type": "gcp", "name": "g", "provider": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/prov" }),
            "provider",
        ),
        (json!({ "type": "gcp", "name": "g", "audience": "" }), "audience"),
        (json!({ "type": "gcp", "name": "g", "algorithm": "EdDSA" }), "algorithm"),
        (json!({ "type": "gcp", "name": "g", "scopes": [] }), "scopes"),
        (json!({ "type": "gcp", "name": "g", "scopes": ["a b"] }), "scopes"),
        (json!({ "type": "gcp", "name": "g", "sts_endpoint": "http://sts.googleapis.com" }), "sts_endpoint"),
        (
            json!({ "type": "gcp", "name": "g", "sts_endpoint": "http://10.0.0.1", "insecure_http": true }),
            "sts_endpoint",
        ),
        (
            json!({ "type": "gcp", "name": "g", "iamcredentials_endpoint": "ftp://x" }),
            "iamcredentials_endpoint",
        ),
        (json!({ "type": "gcp", "name": "g", "timeout": 0 }), "timeout"),
        (json!({ "type": "gcp", "name": "g", "max_ttl": "2h" }), "max_ttl"),
        (json!({ "type": "gcp", "name": "g", "max_ttl": "10m" }), "default_ttl"),
    ];
    for (value, field) in cases {
        let err = build(value.clone()).unwrap_err();
        assert_eq!(err.field, Some(field), "{value}: {err}");
    }
    assert_eq!(MAX_TTL_CAP, Duration::from_secs(3600));
    assert!(build(json!({ "type": "gcp", "name": "g", "provider": PROVIDER, "sts_endpoint": "http://127.0.0.1:1", "insecure_http": true })).is_ok());
}

#[test]
fn the_algorithm_must_be_one_the_issuer_has() {
    let err = config(json!({ "type": "gcp", "name": "g", "algorithm": "RS256" }))
        .build(&context(&[SigningAlgorithm::Es256]))
        .unwrap_err();
    assert_eq!(err.field, Some("algorithm"));
}

#[tokio::test]
async fn grants_without_a_provider_or_with_bad_values_are_refused_before_any_call() {
    // Port 9 on loopback: nothing listens, so a call would fail as Upstream, not InvalidGrant.
    let base = json!({ "type": "gcp", "name": "gcp", "sts_endpoint": "http://127.0.0.1:9", "iamcredentials_endpoint": "http://127.0.0.1:9", "insecure_http": true });
    let t = build(base.clone()).unwrap();
    assert!(matches!(t.issue(&grant(json!({}))).await, Err(TargetError::InvalidGrant(_))));
    let mut with_provider = base;
    with_provider["provider"] = json!(PROVIDER);
    let t = build(with_provider).unwrap();
    for params in [
        json!({ "provider": "//iam.googleapis.com/projects/1/x" }),
        json!({ "service_account": "../../evil" }),
        json!({ "service_account": "a@b@c.com" }),
        json!({ "scopes": "   " }),
    ] {
        let r = t.issue(&grant(params.clone())).await;
        assert!(matches!(r, Err(TargetError::InvalidGrant(_))), "{params}: {r:?}");
    }
    // A good grant reaches the (absent) upstream: a retryable upstream failure.
    let r = t.issue(&grant(json!({ "service_account": "app@proj.iam.gserviceaccount.com" }))).await;
    assert!(matches!(r, Err(TargetError::Upstream { retryable: true, .. })), "{r:?}");
}

#[test]
fn sts_answers_are_read_strictly() {
    let ok = json!({ "access_token": "ya29.fed", "issued_token_type": token_type::ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3599 });
    let (token, expires_in) = read_sts_answer(200, ok.to_string().as_bytes()).unwrap();
    assert_eq!(token.expose(), "ya29.fed");
    assert_eq!(expires_in, 3599);

    for bad in [
        json!({ "access_token": "", "issued_token_type": token_type::ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 1 }),
        json!({ "access_token": "t", "issued_token_type": token_type::JWT, "token_type": "Bearer", "expires_in": 1 }),
        json!({ "access_token": "t", "issued_token_type": token_type::ACCESS_TOKEN, "token_type": "N_A", "expires_in": 1 }),
        json!({ "access_token": "t", "issued_token_type": token_type::ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 0 }),
        json!({ "access_token": "t" }),
    ] {
        let r = read_sts_answer(200, bad.to_string().as_bytes());
        assert!(matches!(r, Err(TargetError::Upstream { retryable: false, .. })), "{bad}");
    }

    let refused = json!({ "error": "invalid_grant", "error_description": "The audience in ID Token [x] does not match the expected audience. token=eyJhbGci" });
    match read_sts_answer(400, refused.to_string().as_bytes()) {
        Err(TargetError::UpstreamRejected(m)) => {
            assert_eq!(m, "Google STS: invalid_grant");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(read_sts_answer(400, b"<html>"), Err(TargetError::UpstreamRejected(m)) if m == "Google STS: unknown")
    );
    assert!(matches!(read_sts_answer(503, b""), Err(TargetError::Upstream { retryable: true, .. })));
    assert!(matches!(read_sts_answer(429, b""), Err(TargetError::Upstream { retryable: true, .. })));
    assert!(matches!(read_sts_answer(302, b""), Err(TargetError::Upstream { retryable: false, .. })));
}

#[test]
fn generate_access_token_answers_are_read_strictly() {
    let ok = json!({ "accessToken": "ya29.sa", "expireTime": "2023-11-14T22:13:20Z" });
    let (token, expires_at) = read_generate_answer(200, ok.to_string().as_bytes()).unwrap();
    assert_eq!(token.expose(), "ya29.sa");
    assert_eq!(expires_at, NOW);
    for bad in [
        json!({ "accessToken": "t", "expireTime": "tomorrow" }),
        json!({ "accessToken": "", "expireTime": "2023-11-14T22:13:20Z" }),
        json!({ "expireTime": "2023-11-14T22:13:20Z" }),
    ] {
        let r = read_generate_answer(200, bad.to_string().as_bytes());
        assert!(matches!(r, Err(TargetError::Upstream { retryable: false, .. })), "{bad}");
    }
    let denied = json!({ "error": { "code": 403, "message": "Permission 'iam.serviceAccounts.getAccessToken' denied", "status": "PERMISSION_DENIED" } });
    assert!(matches!(
        read_generate_answer(403, denied.to_string().as_bytes()),
        Err(TargetError::UpstreamRejected(m)) if m == "IAM Credentials: PERMISSION_DENIED"
    ));
    assert!(matches!(read_generate_answer(404, b"{}"), Err(TargetError::UpstreamRejected(_))));
    assert!(matches!(read_generate_answer(500, b""), Err(TargetError::Upstream { retryable: true, .. })));
}

#[tokio::test]
async fn the_subject_token_names_the_identity_and_the_provider_audience() {
    let cx = context(&[SigningAlgorithm::Es256]);
    let c = config(json!({ "type": "gcp", "name": "gcp", "provider": PROVIDER }));
    let target = GcpTarget::new(
        super::issue::Settings {
            base: crate::targets::base::TargetBase::new(
                super::KIND,
                crate::oauth::token_type::ACCESS_TOKEN,
                "gcp",
                Duration::from_secs(3600),
                Duration::from_secs(3600),
            )
            .unwrap(),
            provider: c.provider.clone(),
            audience: None,
            algorithm: SigningAlgorithm::Es256,
            scopes: c.scopes.clone(),
            sts_endpoint: DEFAULT_STS_ENDPOINT.into(),
            iamcredentials_endpoint: DEFAULT_IAMCREDENTIALS_ENDPOINT.into(),
            upstream: crate::targets::upstream::UpstreamSettings::default(),
        },
        cx.http.clone(),
        Arc::clone(&cx.signer),
        Arc::clone(&cx.clock),
    );
    let claims = target.subject_claims(&grant(json!({})), PROVIDER, NOW);
    assert_eq!(claims["iss"], "https://tessera.test");
    assert_eq!(claims["sub"], "k8s://eks-prod/ns/payments/sa/api");
    assert_eq!(
        claims["aud"],
        "https://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/tessera"
    );
    assert_eq!(claims["exp"], NOW + 300);
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims[ID_CLAIM], "k8s://eks-prod/ns/payments/sa/api");
    assert_eq!(claims[RULE_CLAIM], "rule-1");

    // An id over Google's 127 bytes: `sub` is its compacted form, the full id beside it.
    let mut long = testkit::identity(None);
    long.id = format!("spiffe://example.org/{}", "region/eu/cluster/prod/ns/payments/".repeat(5));
    let g = testkit::grant(long.clone(), "gcp", None, Duration::from_secs(900), json!({}));
    let claims = target.subject_claims(&g, PROVIDER, NOW);
    let sub = claims["sub"].as_str().unwrap();
    assert_eq!(sub.len(), MAX_SUBJECT_BYTES);
    assert_eq!(sub, google_subject(&long.id));
    assert!(sub.starts_with("spiffe://example.org/region/eu/"), "{sub}");
    assert_eq!(claims[ID_CLAIM], long.id.as_str());
}

#[test]
fn every_input_of_the_google_calls_is_in_the_cache_key() {
    let t = build(json!({ "type": "gcp", "name": "gcp" })).unwrap();
    let key = |p: &GrantParts| t.describe_request(&p.grant()).unwrap().digest();
    let base = GrantParts {
        identity: workflow("deploy"),
        rule: "ci-reads-buckets",
        target: "gcp",
        scope: Some("app@proj.iam.gserviceaccount.com"),
        ttl: Duration::from_secs(900),
        claims: json!({}),
        params: json!({ "provider": PROVIDER, "service_account": "app@proj.iam.gserviceaccount.com" }),
    };
    let other_provider = PROVIDER.replace("providers/tessera", "providers/tessera-ci");
    let changed = [
        ("provider", base.with(|p| p.params["provider"] = json!(other_provider))),
        (
            "service account",
            base.with(|p| p.params["service_account"] = json!("ops@proj.iam.gserviceaccount.com")),
        ),
        (
            "scopes",
            base.with(|p| p.params["scopes"] = json!("https://www.googleapis.com/auth/devstorage.read_only")),
        ),
        ("ttl", base.with(|p| p.ttl = Duration::from_secs(1800))),
        // The subject token's `sub`.
        ("identity", base.with(|p| p.identity.id = "github://octo-org/ledger".into())),
        ("scope", base.with(|p| p.scope = Some("ops@proj.iam.gserviceaccount.com"))),
        ("claims", base.with(|p| p.claims = json!({ "env": "prod" }))),
        ("rule", base.with(|p| p.rule = "ci-writes-buckets")),
    ];
    // Google is told only the identity id: the workflow's name does not reach it.
    let same = [("workflow", base.with(|p| p.identity = workflow("release")))];
    assert_cache_keys(key, &base, &changed, &same);
}
