use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::issue::{check_rule_param, classify};
use super::*;
use crate::build::{BuildContext, BuildTarget};
use crate::config::kind_config;
use crate::oauth::token_type;
use crate::target::{
    CredentialTarget, Grant, PlatformCredentials, RuleParam, RuleText, SigningAlgorithm, TargetError,
};
use crate::targets::testkit::{self, GrantParts, JsonSigner, NOW, assert_cache_keys, workflow};

const ROLE: &str = "arn:aws:iam::123456789012:role/invoices-reader";

fn context() -> BuildContext {
    testkit::context(&[SigningAlgorithm::Es256, SigningAlgorithm::Rs256])
}

fn config(value: Value) -> AwsStsTargetConfig {
    kind_config(KIND, value).unwrap()
}

fn target(value: Value) -> AwsStsTarget {
    config(value).target(&context()).unwrap()
}

fn grant(target: &str, ttl: Duration, name: Option<&str>, params: Value) -> Grant {
    let scope = params.get("role_arn").and_then(Value::as_str).map(str::to_string);
    testkit::grant(testkit::identity(name), target, scope.as_deref(), ttl, params)
}

/// The credential cache's key: the digest of the request description.
fn cache_key(t: &AwsStsTarget, parts: &GrantParts) -> [u8; 32] {
    t.describe_request(&parts.grant()).unwrap().digest()
}

fn signed_claims(t: &AwsStsTarget, g: &Grant) -> Map<String, Value> {
    let req = t.request(g).unwrap();
    serde_json::from_str(req.token.expose()).unwrap()
}

#[test]
fn defaults_are_documented_values() {
    let c = config(json!({ "type": "aws_sts", "name": "aws-prod" }));
    assert_eq!(c.region, "us-east-1");
    assert_eq!(c.endpoint, None);
    assert!(!c.upstream.insecure_http);
    assert_eq!(c.audience, "sts.amazonaws.com");
    assert_eq!(c.algorithm, SigningAlgorithm::Rs256);
    assert_eq!(c.max_ttl, Duration::from_secs(3600));
    assert_eq!(c.default_ttl, Duration::from_secs(3600));
    assert!(c.transitive_tag_keys.is_empty());
    assert_eq!(c.upstream.timeout, Duration::from_secs(5));
    assert_eq!(c.upstream.max_attempts, 3);
    assert!(c.upstream.cache);
    let t = c.build(&context()).unwrap();
    assert_eq!(t.kind(), "aws_sts");
    assert_eq!(t.name(), "aws-prod");
    assert_eq!(
        t.grant_keys(),
        &[
            "role_arn",
            "session_name",
            "tags",
            "source_identity",
            "transitive_tag_keys",
            "policy",
            "policy_arns"
        ]
    );
    assert_eq!(t.scope_param(), Some("role_arn"));
    assert_eq!(t.issued_token_type(), token_type::AWS_CREDENTIALS);
    assert_eq!(t.issued_jwt(), None, "the platform issues, not Tessera");
    assert!(t.cacheable());
}

#[test]
fn unknown_keys_are_refused() {
    let err = kind_config::<AwsStsTargetConfig>(KIND, json!({ "type": "aws_sts", "name": "x", "role": "r" }))
        .unwrap_err();
    assert!(err.to_string().contains("role"), "{err}");
}

#[test]
fn build_errors_name_the_field() {
    let cases = [
        (json!({ "name": "Bad Name" }), "name"),
        (json!({ "name": "a", "region": "US East" }), "region"),
        (json!({ "name": "a", "endpoint": "http://127.0.0.1:1" }), "endpoint"),
        (json!({ "name": "a", "endpoint": "ftp://sts.example" }), "endpoint"),
        (json!({ "name": "a", "endpoint": "not a url" }), "endpoint"),
        (json!({ "name": "a", "endpoint": "https://user:pw@sts.example" }), "endpoint"),
        (json!({ "name": "a", "endpoint": "http://sts.example", "insecure_http": true }), "endpoint"),
        (json!({ "name": "a", "audience": " " }), "audience"),
        (json!({ "name": "a", "algorithm": "EdDSA" }), "algorithm"),
        (json!({ "name": "a", "max_ttl": "10m" }), "max_ttl"),
        (json!({ "name": "a", "max_ttl": "13h" }), "max_ttl"),
        (json!({ "name": "a", "default_ttl": "5m" }), "default_ttl"),
        (json!({ "name": "a", "max_ttl": "30m", "default_ttl": "1h" }), "default_ttl"),
        (json!({ "name": "a", "transitive_tag_keys": [""] }), "transitive_tag_keys"),
        (json!({ "name": "a", "timeout": 0 }), "timeout"),
        (json!({ "name": "a", "max_attempts": 0 }), "max_attempts"),
        (json!({ "name": "a", "max_attempts": 9 }), "max_attempts"),
    ];
    for (mut value, field) in cases {
        value["type"] = json!("aws_sts");
        let err = config(value.clone()).build(&context()).unwrap_err();
        assert_eq!(err.field, Some(field), "{value}: {err}");
    }
    let ok = config(
        json!({ "type": "aws_sts", "name": "a", "endpoint": "http://127.0.0.1:1/", "insecure_http": true }),
    );
    assert!(ok.build(&context()).is_ok(), "plain http is allowed when asked for");
}

#[test]
fn the_algorithm_must_be_one_the_issuer_has() {
    let c = config(json!({ "type": "aws_sts", "name": "a", "algorithm": "ES256" }));
    let cx = BuildContext { signer: Arc::new(JsonSigner(vec![SigningAlgorithm::Rs256])), ..context() };
    let err = c.build(&cx).unwrap_err();
    assert_eq!(err.field, Some("algorithm"));
    assert!(err.message.contains("ES256"), "{err}");
}

#[test]
fn the_web_identity_token_says_who_for_whom_and_briefly() {
    let t = target(json!({ "type": "aws_sts", "name": "aws-prod" }));
    let g = grant("aws-prod", Duration::from_secs(1800), Some("api"), json!({ "role_arn": ROLE }));
    let req = t.request(&g).unwrap();
    assert_eq!(req.role_arn, ROLE);
    assert_eq!(req.session_name, "api", "the identity's name by default");
    assert_eq!(req.duration_seconds, 1800);
    let claims: Map<String, Value> = serde_json::from_str(req.token.expose()).unwrap();
    assert_eq!(claims["iss"], "https://tessera.test");
    assert_eq!(claims["sub"], "k8s://eks-prod/ns/payments/sa/api");
    assert_eq!(claims["aud"], "sts.amazonaws.com");
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["exp"], NOW + 300);
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
    assert!(!claims.contains_key(TAGS_CLAIM), "no tags, no tags claim");

    let again = signed_claims(&t, &g);
    assert_ne!(again["jti"], claims["jti"]);

    let custom = target(json!({ "type": "aws_sts", "name": "aws-prod", "audience": "tessera-client" }));
    assert_eq!(signed_claims(&custom, &g)["aud"], "tessera-client");
}

#[test]
fn session_tags_travel_in_the_aws_tags_claim() {
    let t = target(json!({ "type": "aws_sts", "name": "a", "transitive_tag_keys": ["team", "absent"] }));
    let g = grant(
        "a",
        Duration::from_secs(900),
        Some("api"),
        json!({ "role_arn": ROLE, "tags": { "team": "payments", "env": "prod" } }),
    );
    let claims = signed_claims(&t, &g);
    assert_eq!(
        claims[TAGS_CLAIM],
        json!({
            "principal_tags": { "env": ["prod"], "team": ["payments"] },
            "transitive_tag_keys": ["team"],
        })
    );
}

#[test]
fn tags_beyond_sts_limits_are_invalid_grants() {
    let t = target(json!({ "type": "aws_sts", "name": "a" }));
    let many: Map<String, Value> = (0..=MAX_TAGS).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        json!(many),
        json!({ "k".repeat(MAX_TAG_KEY_LEN + 1): "v" }),
        json!({ "": "v" }),
        json!({ "k": "v".repeat(MAX_TAG_VALUE_LEN + 1) }),
        json!("not-a-map"),
    ];
    for tags in cases {
        let g = grant("a", Duration::from_secs(900), Some("api"), json!({ "role_arn": ROLE, "tags": tags }));
        assert!(matches!(t.request(&g), Err(TargetError::InvalidGrant(_))), "{tags}");
    }
    let fifty: Map<String, Value> = (0..MAX_TAGS).map(|i| (format!("k{i}"), json!("v"))).collect();
    let g = grant("a", Duration::from_secs(900), Some("api"), json!({ "role_arn": ROLE, "tags": fifty }));
    assert!(t.request(&g).is_ok(), "exactly 50 tags are fine");
}

#[test]
fn duration_is_clamped_to_sts_limits_and_max_ttl() {
    let t = target(json!({ "type": "aws_sts", "name": "a", "max_ttl": "2h" }));
    for (ttl, expected) in [(60, 900), (900, 900), (3600, 3600), (5 * 3600, 7200)] {
        let g = grant("a", Duration::from_secs(ttl), Some("api"), json!({ "role_arn": ROLE }));
        assert_eq!(t.request(&g).unwrap().duration_seconds, expected, "ttl {ttl}");
    }
}

#[test]
fn session_names_are_made_acceptable_to_sts() {
    assert_eq!(session_name("payments-api").as_deref(), Some("payments-api"));
    assert_eq!(session_name("k8s://eks/ns/p/sa/api").as_deref(), Some("k8s---eks-ns-p-sa-api"));
    assert_eq!(session_name("a@b.c,d=e+f_g").as_deref(), Some("a@b.c,d=e+f_g"));
    assert_eq!(session_name(&"x".repeat(100)).map(|s| s.len()), Some(64));
    assert_eq!(session_name("x"), None);
    assert_eq!(session_name(""), None);

    let t = target(json!({ "type": "aws_sts", "name": "a" }));
    let templated = grant(
        "a",
        Duration::from_secs(900),
        Some("api"),
        json!({ "role_arn": ROLE, "session_name": "payments-api@eks" }),
    );
    assert_eq!(t.request(&templated).unwrap().session_name, "payments-api@eks");
    let nameless = grant("a", Duration::from_secs(900), None, json!({ "role_arn": ROLE }));
    assert_eq!(
        t.request(&nameless).unwrap().session_name,
        "k8s---eks-prod-ns-payments-sa-api",
        "the id when there is no name"
    );
    let short_name = grant("a", Duration::from_secs(900), Some("x"), json!({ "role_arn": ROLE }));
    assert_eq!(t.request(&short_name).unwrap().session_name, "k8s---eks-prod-ns-payments-sa-api");
    // A rendered name is the rule's: one STS would refuse is refused, never changed.
    let long = "a".repeat(65);
    for rendered in ["x", "", "/", "payments/api", "payments api", long.as_str()] {
        let g = grant(
            "a",
            Duration::from_secs(900),
            Some("api"),
            json!({ "role_arn": ROLE, "session_name": rendered }),
        );
        match t.request(&g) {
            Err(TargetError::InvalidGrant(m)) => assert!(m.contains("session_name"), "{m}"),
            other => panic!("{rendered:?}: {other:?}"),
        }
    }
}

#[test]
fn role_arns_are_checked_before_any_call() {
    let t = target(json!({ "type": "aws_sts", "name": "a" }));
    for arn in [
        "",
        "invoices-reader",
        "arn:aws:iam::12345:role/x",
        "arn:aws:iam::123456789012:user/x",
        "arn:aws:s3:::bucket",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/bad role",
        "arn:aws:iam::123456789012:role/bad\nrole",
        "arn:aws:iam::123456789012:role/team path/x",
        "arn:aws:iam::123456789012:role//x",
        "arn:aws:iam::123456789012:role/x/",
        "arn:aws:iam::123456789012:rolex",
        "arn:aws:iam::123456789012:role/x#y",
    ] {
        let g = grant("a", Duration::from_secs(900), Some("api"), json!({ "role_arn": arn }));
        assert!(matches!(t.request(&g), Err(TargetError::InvalidGrant(_))), "{arn}");
    }
    let missing = grant("a", Duration::from_secs(900), Some("api"), json!({}));
    assert!(matches!(t.request(&missing), Err(TargetError::InvalidGrant(_))));
    let other = grant("b", Duration::from_secs(900), Some("api"), json!({ "role_arn": ROLE }));
    assert!(matches!(t.request(&other), Err(TargetError::InvalidGrant(_))));
    let path = grant(
        "a",
        Duration::from_secs(900),
        Some("api"),
        json!({ "role_arn": "arn:aws-cn:iam::123456789012:role/team/x" }),
    );
    assert!(t.request(&path).is_ok());
    let longest = format!("arn:aws:iam::123456789012:role/{}/{}", "p".repeat(510), "n".repeat(64));
    for (arn, ok) in [
        (longest.clone(), true),
        (longest.replace("/nn", "/nnn"), false),
        (longest.replace("/pp", "/ppp"), false),
        ("arn:aws:iam::123456789012:role/a/b/c!~/x_+=,.@-".to_string(), true),
    ] {
        let g = grant("a", Duration::from_secs(900), Some("api"), json!({ "role_arn": arn }));
        assert_eq!(t.request(&g).is_ok(), ok, "{arn}");
        assert_eq!(
            check_rule_param("role_arn", &RuleParam::Text(RuleText::Literal(&arn))).is_ok(),
            ok,
            "{arn}"
        );
    }
}

#[test]
fn sts_errors_keep_only_the_code() {
    match classify(Some("InvalidIdentityToken"), Some(400)) {
        TargetError::UpstreamRejected(cause) => assert_eq!(cause, "STS InvalidIdentityToken (HTTP 400)"),
        other => panic!("{other:?}"),
    }
    match classify(Some("token eyJhbGci.x.y was bad"), Some(400)) {
        TargetError::UpstreamRejected(cause) => assert_eq!(cause, "STS error (HTTP 400)"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sts_errors_are_refusals_or_retryable_failures() {
    for code in [
        "AccessDenied",
        "InvalidIdentityToken",
        "ExpiredTokenException",
        "IDPRejectedClaim",
        "ValidationError",
    ] {
        assert!(matches!(classify(Some(code), Some(400)), TargetError::UpstreamRejected(_)), "{code}");
    }
    for (code, status) in [
        (Some("Throttling"), 400),
        (Some("IDPCommunicationError"), 400),
        (None, 503),
        (Some("InternalFailure"), 500),
    ] {
        assert!(
            matches!(classify(code, Some(status)), TargetError::Upstream { retryable: true, .. }),
            "{code:?} {status}"
        );
    }
}

async fn scripted_sts(answers: Vec<(u16, String)>) -> (String, Arc<AtomicUsize>) {
    let server = testkit::scripted_server("text/xml", answers).await;
    (server.url, server.count)
}

fn sts_error(code: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>{code}</Code><Message>nope</Message></Error><RequestId>r</RequestId></ErrorResponse>"#
    )
}

fn sts_ok() -> String {
    r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>secret</SecretAccessKey><SessionToken>session</SessionToken><Expiration>2023-11-14T23:13:20Z</Expiration></Credentials><SubjectFromWebIdentityToken>k8s://x</SubjectFromWebIdentityToken><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/invoices-reader/api</Arn><AssumedRoleId>AROA:api</AssumedRoleId></AssumedRoleUser></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>"#.into()
}

fn sts_target(url: &str, attempts: u32) -> AwsStsTarget {
    target(json!({
        "type": "aws_sts", "name": "a", "endpoint": url, "insecure_http": true,
        "max_attempts": attempts, "timeout": 2,
    }))
}

fn any_grant() -> Grant {
    grant("a", Duration::from_secs(900), Some("api"), json!({ "role_arn": ROLE }))
}

#[tokio::test]
async fn retryable_failures_are_retried_then_succeed() {
    let (url, count) =
        scripted_sts(vec![(400, sts_error("Throttling")), (503, String::new()), (200, sts_ok())]).await;
    let issued = sts_target(&url, 3).issue(&any_grant()).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert_eq!(issued.issued_token_type, token_type::AWS_CREDENTIALS);
    assert_eq!(issued.token_type, "N_A");
    assert_eq!(issued.access_token.expose(), "session");
    let Some(PlatformCredentials::Aws(aws)) = issued.platform_credentials else {
        panic!("no AWS credentials")
    };
    assert_eq!(aws.access_key_id, "ASIAEXAMPLE");
    assert_eq!(aws.secret_access_key.expose(), "secret");
    assert_eq!(aws.session_token.expose(), "session");
    assert_eq!(aws.expiration, "2023-11-14T23:13:20Z");
    assert_eq!(issued.expires_at, 1_700_003_600);
}

#[tokio::test]
async fn retries_are_bounded() {
    let (url, count) = scripted_sts(vec![(500, sts_error("InternalFailure"))]).await;
    let err = sts_target(&url, 3).issue(&any_grant()).await.unwrap_err();
    assert!(matches!(err, TargetError::Upstream { retryable: true, .. }), "{err:?}");
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn refusals_are_not_retried() {
    for code in ["AccessDenied", "InvalidIdentityToken", "ExpiredTokenException"] {
        let (url, count) = scripted_sts(vec![(400, sts_error(code))]).await;
        let err = sts_target(&url, 3).issue(&any_grant()).await.unwrap_err();
        match err {
            TargetError::UpstreamRejected(cause) => assert!(cause.contains(code), "{cause}"),
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(count.load(Ordering::SeqCst), 1, "{code}");
    }
}

#[tokio::test]
async fn an_answer_without_credentials_is_no_credential() {
    let empty = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"#;
    let (url, _) = scripted_sts(vec![(200, empty.into())]).await;
    let err = sts_target(&url, 1).issue(&any_grant()).await.unwrap_err();
    assert!(matches!(err, TargetError::Upstream { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_retryable_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = sts_target(&format!("http://127.0.0.1:{port}"), 2).issue(&any_grant()).await.unwrap_err();
    match err {
        TargetError::Upstream { retryable: true, cause } => assert!(cause.contains("2 attempt"), "{cause}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let t = target(json!({
        "type": "aws_sts", "name": "a", "endpoint": url, "insecure_http": true, "max_attempts": 1, "timeout": 1,
    }));
    // The endpoint never answers: only the target's own timeout ends the call. The outer
    // bound only turns a missing timeout into a failure instead of a hang.
    let err = tokio::time::timeout(Duration::from_secs(60), t.issue(&any_grant()))
        .await
        .expect("the target's timeout ends the call")
        .unwrap_err();
    assert!(matches!(err, TargetError::Upstream { retryable: true, .. }), "{err:?}");
}

#[test]
fn every_input_of_the_sts_call_is_in_the_cache_key() {
    const OTHER_ROLE: &str = "arn:aws:iam::123456789012:role/ledger-writer";
    let prod = target(json!({ "type": "aws_sts", "name": "aws-prod" }));
    let dev = target(json!({ "type": "aws_sts", "name": "aws-dev" }));
    let key = |p: &GrantParts| cache_key(if p.target == "aws-dev" { &dev } else { &prod }, p);
    let base = GrantParts {
        identity: workflow("deploy"),
        rule: "ci-deploys",
        target: "aws-prod",
        scope: Some(ROLE),
        ttl: Duration::from_secs(900),
        claims: json!({}),
        params: json!({ "role_arn": ROLE, "tags": { "team": "payments" } }),
    };
    let changed = [
        ("scope", base.with(|p| p.scope = Some(OTHER_ROLE))),
        ("role", base.with(|p| p.params["role_arn"] = json!(OTHER_ROLE))),
        ("session name", base.with(|p| p.params["session_name"] = json!("deploy-7001"))),
        // Another workflow of the same repository: the same identity id, another name,
        // which is the session name when the rule names none.
        ("workflow", base.with(|p| p.identity = workflow("release"))),
        ("tags", base.with(|p| p.params["tags"]["team"] = json!("ledger"))),
        ("source identity", base.with(|p| p.params["source_identity"] = json!("deploy@octo-org"))),
        ("transitive tag keys", base.with(|p| p.params["transitive_tag_keys"] = json!("team"))),
        ("policy", base.with(|p| p.params["policy"] = json!(POLICY))),
        (
            "policy arns",
            base.with(|p| p.params["policy_arns"] = json!("arn:aws:iam::aws:policy/ReadOnlyAccess")),
        ),
        ("tag keys", base.with(|p| p.params["tags"] = json!({ "team": "payments", "env": "prod" }))),
        ("claims", base.with(|p| p.claims = json!({ "env": "prod" }))),
        ("ttl", base.with(|p| p.ttl = Duration::from_secs(1800))),
        ("rule", base.with(|p| p.rule = "ci-releases")),
        ("target", base.with(|p| p.target = "aws-dev")),
        ("identity", base.with(|p| p.identity.id = "github://octo-org/ledger".into())),
    ];
    // A new run of the same workflow asks STS for exactly the same session.
    let same = [
        ("run", base.with(|p| p.identity.instance = Some("7002".into()))),
        (
            "attributes",
            base.with(|p| p.identity.attributes = [("github.run_attempt".into(), "2".into())].into()),
        ),
    ];
    assert_cache_keys(key, &base, &changed, &same);
}

#[test]
fn doctor_reaches_the_configured_endpoint_or_the_regions() {
    let regional = target(json!({ "type": "aws_sts", "name": "a", "region": "eu-west-1" }));
    assert_eq!(regional.upstream_endpoints(), ["https://sts.eu-west-1.amazonaws.com"]);
    let china = target(json!({ "type": "aws_sts", "name": "a", "region": "cn-north-1" }));
    assert_eq!(china.upstream_endpoints(), ["https://sts.cn-north-1.amazonaws.com.cn"]);
    let pinned =
        target(json!({ "type": "aws_sts", "name": "a", "endpoint": "https://sts.example.internal" }));
    assert_eq!(pinned.upstream_endpoints(), ["https://sts.example.internal"]);
}

const POLICY: &str = r#"{
    "Version": "2012-10-17",
    "Statement": [{ "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::invoices/*" }]
}"#;

fn extras_grant(params: Value) -> Grant {
    let mut all = json!({ "role_arn": ROLE, "tags": { "team": "payments", "env": "prod" } });
    for (k, v) in params.as_object().unwrap() {
        all[k] = v.clone();
    }
    grant("a", Duration::from_secs(900), Some("api"), all)
}

#[test]
fn the_source_identity_travels_in_its_claim_and_is_checked_as_sts_does() {
    let t = target(json!({ "type": "aws_sts", "name": "a" }));
    let claims = signed_claims(&t, &extras_grant(json!({ "source_identity": "payments-api@eks-prod" })));
    assert_eq!(claims[SOURCE_IDENTITY_CLAIM], "payments-api@eks-prod");
    assert!(!signed_claims(&t, &extras_grant(json!({}))).contains_key(SOURCE_IDENTITY_CLAIM));
    let long = "a".repeat(65);
    for bad in
        ["x", "", "payments api", "k8s://eks/ns/p", "a/b", long.as_str(), "aws:x", "AWS:x", "payments:api"]
    {
        match t.request(&extras_grant(json!({ "source_identity": bad }))) {
            Err(TargetError::InvalidGrant(m)) => assert!(m.contains("source_identity"), "{m}"),
            other => panic!("{bad:?}: {other:?}"),
        }
        let literal = check_rule_param("source_identity", &RuleParam::Text(RuleText::Literal(bad)));
        assert!(literal.is_err(), "{bad:?} is refused when the mapping file loads");
    }
    for good in ["ab", "a_b+c=d,e.f@g-h", &"z".repeat(64)] {
        assert!(t.request(&extras_grant(json!({ "source_identity": good }))).is_ok(), "{good}");
    }
    assert!(check_rule_param("source_identity", &RuleParam::Text(RuleText::Template)).is_ok());
}

#[test]
fn a_rules_transitive_tag_keys_join_the_targets_and_must_be_its_tags() {
    let t = target(json!({ "type": "aws_sts", "name": "a", "transitive_tag_keys": ["team"] }));
    let claims = signed_claims(&t, &extras_grant(json!({ "transitive_tag_keys": "env" })));
    assert_eq!(claims[TAGS_CLAIM]["transitive_tag_keys"], json!(["env", "team"]));
    let spaced = signed_claims(&t, &extras_grant(json!({ "transitive_tag_keys": " env , team " })));
    assert_eq!(spaced[TAGS_CLAIM]["transitive_tag_keys"], json!(["env", "team"]));
    for bad in ["absent", "env,", "aws:x", ""] {
        assert!(
            matches!(
                t.request(&extras_grant(json!({ "transitive_tag_keys": bad }))),
                Err(TargetError::InvalidGrant(_))
            ),
            "{bad:?}"
        );
    }
    let template = check_rule_param("transitive_tag_keys", &RuleParam::Text(RuleText::Template));
    assert!(template.unwrap_err().contains("literal"));
}

#[tokio::test]
async fn session_policies_are_sent_compact_with_their_arns() {
    let server = testkit::scripted_server("text/xml", vec![(200, sts_ok())]).await;
    let t = sts_target(&server.url, 1);
    let arns = "arn:aws:iam::aws:policy/ReadOnlyAccess arn:aws:iam::123456789012:policy/team/invoices-read";
    t.issue(&extras_grant(json!({ "policy": POLICY, "policy_arns": arns }))).await.unwrap();
    let request = server.requests.lock().unwrap().pop().unwrap();
    let body = request.split("\r\n\r\n").nth(1).unwrap();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let sent: Value = serde_json::from_str(field("Policy").unwrap()).unwrap();
    assert_eq!(sent, serde_json::from_str::<Value>(POLICY).unwrap());
    assert!(!field("Policy").unwrap().contains(' '), "compact: {:?}", field("Policy"));
    assert_eq!(field("PolicyArns.member.1.arn"), Some("arn:aws:iam::aws:policy/ReadOnlyAccess"));
    assert_eq!(field("PolicyArns.member.2.arn"), Some("arn:aws:iam::123456789012:policy/team/invoices-read"));
    assert_eq!(field("PolicyArns.member.3.arn"), None);

    let plain = testkit::scripted_server("text/xml", vec![(200, sts_ok())]).await;
    sts_target(&plain.url, 1).issue(&any_grant()).await.unwrap();
    let request = plain.requests.lock().unwrap().pop().unwrap();
    assert!(!request.contains("Policy"), "no policy, no parameter: {request}");
}

#[test]
fn session_policies_are_checked_before_any_call() {
    let t = target(json!({ "type": "aws_sts", "name": "a" }));
    let big = format!(
        r#"{{"Statement":{{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::{}"}}}}"#,
        "b".repeat(MAX_POLICY_CHARS)
    );
    let bad_policies = [
        "not json",
        "[]",
        r#"{"Version":"2012-10-17"}"#,
        r#"{"Statement":[]}"#,
        r#"{"Statement":{"Effect":"Allow"},"Statement":{"Effect":"Deny"}}"#,
        r#"{"Statement":{"Resource":"arn:aws:s3:::b/\u2603"}}"#,
        big.as_str(),
    ];
    for policy in bad_policies {
        assert!(
            matches!(
                t.request(&extras_grant(json!({ "policy": policy }))),
                Err(TargetError::InvalidGrant(_))
            ),
            "{policy}"
        );
        assert!(check_rule_param("policy", &RuleParam::Text(RuleText::Literal(policy))).is_err(), "{policy}");
    }
    assert_eq!(session_policy(POLICY).unwrap().len(), 118, "whitespace does not count against the limit");
    let eleven: Vec<String> =
        (0..=MAX_POLICY_ARNS).map(|i| format!("arn:aws:iam::aws:policy/P{i}")).collect();
    let bad_arns = [
        String::new(),
        eleven.join(" "),
        "arn:aws:iam::aws:policy/P arn:aws:iam::aws:policy/P".into(),
        "arn:aws:iam::123456789012:role/not-a-policy".into(),
        "arn:aws:s3:::bucket".into(),
        "arn:aws:iam::12345:policy/P".into(),
        format!("arn:aws:iam::aws:policy/{}", "n".repeat(129)),
    ];
    for arns in &bad_arns {
        assert!(
            matches!(
                t.request(&extras_grant(json!({ "policy_arns": arns }))),
                Err(TargetError::InvalidGrant(_))
            ),
            "{arns}"
        );
    }
    let ten = eleven[..MAX_POLICY_ARNS].join(" ");
    assert!(t.request(&extras_grant(json!({ "policy_arns": ten }))).is_ok());
    // The inline and managed policies share one plaintext limit.
    let near = format!(
        r#"{{"Statement":{{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::{}"}}}}"#,
        "b".repeat(MAX_POLICY_CHARS - 100)
    );
    assert!(t.request(&extras_grant(json!({ "policy": near }))).is_ok());
    let both = extras_grant(json!({ "policy": near, "policy_arns": ten }));
    match t.request(&both) {
        Err(TargetError::InvalidGrant(m)) => assert!(m.contains("2048"), "{m}"),
        other => panic!("{other:?}"),
    }
    for key in ["policy", "policy_arns"] {
        let template = check_rule_param(key, &RuleParam::Text(RuleText::Template));
        assert!(template.unwrap_err().contains("literal"), "{key}: templates could inject statements");
        assert!(check_rule_param(key, &RuleParam::Map(vec![])).is_err(), "{key}");
    }
}

/// RFC 8693 delegation: the web identity token names the actor in `act`, the rule may make
/// the actor the session's source identity, and the session is cached per actor.
#[test]
fn a_delegated_grant_names_the_actor_in_the_web_identity_token() {
    let t = target(json!({ "type": "aws_sts", "name": "aws-prod" }));
    let params = json!({ "role_arn": ROLE, "source_identity": "deploy" });
    let plain = grant("aws-prod", Duration::from_secs(900), Some("api"), params);
    let actor = crate::source::VerifiedIdentity::new(workflow("deploy"));
    let delegated =
        plain.clone().with_delegation(Some(actor), Some(json!({ "sub": "ci", "iss": "https://idp" })));
    let claims = signed_claims(&t, &delegated);
    assert_eq!(
        claims["act"],
        json!({ "sub": "github://octo-org/payments", "iss": "https://tessera.test", "act": { "sub": "ci", "iss": "https://idp" } })
    );
    assert_eq!(claims[SOURCE_IDENTITY_CLAIM], "deploy");
    assert!(signed_claims(&t, &plain).get("act").is_none());
    assert_ne!(
        t.describe_request(&plain).unwrap().digest(),
        t.describe_request(&delegated).unwrap().digest(),
        "a delegated session is never served undelegated"
    );
}
