//! The `aws_sts` target against moto's STS: the credentials Tessera returns work for a later
//! boto3 call, the web identity token it sent verifies against its JWKS, the cache makes
//! one upstream call for many identical exchanges, and upstream failures are retried or
//! refused as they should be.

use std::time::Duration;

use serde_json::Value;
use tessera_adapters::Clock as _;
use tessera_tests::sts::StsPeer;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, python, spawn_broker};

use crate::{last_reason, oidc_source};

const AWS_CREDENTIALS: &str = "urn:tessera:params:oauth:token-type:aws-credentials";
const ROLE: &str = "arn:aws:iam::123456789012:role/workloads/payments-api";

pub(crate) fn target(sts: &StsPeer, extra: &str) -> String {
    format!(
        "- name: aws-prod\n  type: aws_sts\n  endpoint: {}\n  insecure_http: true\n  max_ttl: 1h\n  default_ttl: 15m\n  transitive_tag_keys: [team]\n  timeout: 2s\n{extra}",
        sts.url
    )
}

pub(crate) const RULES: &str = r#"version: 1
rules:
  - name: payments-assume-role
    match:
      source: corp
      subject: "svc-*"
    grant:
      target: aws-prod
      role_arn: arn:aws:iam::123456789012:role/workloads/payments-api
      session_name: "{subject}"
      ttl: 15m
      tags:
        team: payments
        workload: "{subject}"
"#;

async fn setup(extra_target: &str) -> (StsPeer, TestIssuer, TestBroker) {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), &target(&sts, extra_target))
            .mapping("10-aws.yaml", RULES)
            .with_metrics(),
    )
    .await;
    (sts, issuer, broker)
}

/// moto's STS, an issuer and a broker whose `aws-prod` target's rules are `rules`.
async fn setup_rules(rules: &str) -> (StsPeer, TestIssuer, TestBroker) {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), &target(&sts, "")).mapping("10-aws.yaml", rules),
    )
    .await;
    (sts, issuer, broker)
}

pub(crate) fn token(issuer: &TestIssuer, broker: &TestBroker, sub: &str) -> String {
    issuer.key(0).sign(&issuer.claims(sub, "tessera", broker.clock.now()))
}

async fn exchange(broker: &TestBroker, token: &str) -> (u16, Value) {
    broker.exchange(token, "aws-prod").await
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_from_tessera_work_for_a_later_boto3_call() {
    let (sts, issuer, broker) = setup("").await;
    let (status, body) = exchange(&broker, &token(&issuer, &broker, "svc-payments")).await;
    assert_eq!(status, 200, "{body}\n{}", sts.log());
    assert_eq!(body["issued_token_type"], AWS_CREDENTIALS);
    assert_eq!(body["token_type"], "N_A");
    let creds = &body["aws_credentials"];
    let (key, secret, session) = (
        creds["AccessKeyId"].as_str().unwrap(),
        creds["SecretAccessKey"].as_str().unwrap(),
        creds["SessionToken"].as_str().unwrap(),
    );
    assert_eq!(body["access_token"], session, "the session token is the access token");
    let expires_in = body["expires_in"].as_i64().unwrap();
    // moto dates the session by its own clock; the broker's is fixed when it starts.
    assert!((880..=910).contains(&expires_in), "a 15 minute session: {expires_in}");
    assert!(creds["Expiration"].as_str().unwrap().ends_with('Z'));

    let who = sts.caller_identity(key, secret, session).await;
    assert_eq!(who.arn, "arn:aws:sts::123456789012:assumed-role/payments-api/svc-payments");
    assert_eq!(who.account, "123456789012");

    let calls = sts.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.role_arn, ROLE);
    assert_eq!(call.role_session_name, "svc-payments", "session name from the template");
    assert_eq!(call.duration_seconds.as_deref(), Some("900"), "the rule's ttl");
    assert!(!call.signed, "AssumeRoleWithWebIdentity is unsigned: the token is the credential");

    let event = broker.audit_events().pop().unwrap();
    assert_eq!(event["decision"], "allow");
    assert_eq!(event["cache"], "miss");
    assert_eq!(event["scope"], ROLE, "the role is the granted scope");
    let audit = broker.audit_text();
    for secret_value in [secret, session, call.web_identity_token.as_str()] {
        assert!(!audit.contains(secret_value), "no credential or token in the audit log");
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_identity_token_verifies_against_tesseras_jwks_with_aud_sub_and_tags() {
    let (sts, issuer, broker) = setup("").await;
    let (status, body) = exchange(&broker, &token(&issuer, &broker, "svc-payments")).await;
    assert_eq!(status, 200, "{body}");
    let sent = sts.calls().pop().unwrap().web_identity_token;

    // PyJWT, as any relying party would: keys from Tessera's JWKS, aud and iss required.
    let jwks = format!("{}/.well-known/jwks.json", broker.url);
    let url = broker.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        python::run("pyjwt_peer.py", &["verify", &jwks, &sent, "sts.amazonaws.com", &url])
    })
    .await
    .unwrap();
    let verified: Value = serde_json::from_str(&out).unwrap();
    let (header, claims) = (&verified["header"], &verified["claims"]);
    assert_eq!(header["alg"], "RS256", "AWS's default: RS256");
    assert_eq!(claims["sub"], "oidc://corp/svc-payments", "the identity id");
    assert_eq!(claims["aud"], "sts.amazonaws.com");
    assert_eq!(claims["iss"], broker.url);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300, "short-lived");
    let tags = &claims["https://aws.amazon.com/tags"];
    assert_eq!(tags["principal_tags"]["team"], serde_json::json!(["payments"]));
    assert_eq!(tags["principal_tags"]["workload"], serde_json::json!(["svc-payments"]));
    assert_eq!(tags["transitive_tag_keys"], serde_json::json!(["team"]));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_identical_exchanges_make_one_sts_call() {
    let (sts, issuer, broker) = setup("").await;
    // Hold the call long enough that every exchange arrives while it is in flight.
    sts.set_delay(Duration::from_millis(500));
    let token = token(&issuer, &broker, "svc-payments");
    let exchanges = (0..100).map(|_| exchange(&broker, &token));
    let answers = futures::future::join_all(exchanges).await;
    let mut keys = std::collections::HashSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        keys.insert(body["aws_credentials"]["AccessKeyId"].as_str().unwrap().to_string());
    }
    assert_eq!(sts.call_count(), 1, "one upstream call for all of them");
    assert_eq!(keys.len(), 1, "every exchange got the same session");
    let events = broker.audit_events();
    assert_eq!(events.len(), 100);
    assert_eq!(events.iter().filter(|e| e["cache"] == "miss").count(), 1);
    assert_eq!(events.iter().filter(|e| e["cache"] == "hit").count(), 99);
    let metrics = broker.metrics().await;
    assert!(metrics.contains("tessera_credential_cache_total{result=\"hit\"} 99"), "{metrics}");
    assert!(metrics.contains("tessera_credential_cache_total{result=\"miss\"} 1"), "{metrics}");

    // Another workload is another credential.
    let (status, _) = exchange(&broker, &self::token(&issuer, &broker, "svc-ledger")).await;
    assert_eq!(status, 200);
    assert_eq!(sts.call_count(), 2);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_credential_is_served_until_its_margin_and_never_past_a_revoked_rule() {
    let (sts, issuer, broker) = setup("").await;
    let first = token(&issuer, &broker, "svc-payments");
    let (status, body) = exchange(&broker, &first).await;
    assert_eq!(status, 200, "{body}");
    let key = body["aws_credentials"]["AccessKeyId"].clone();
    // Served until a fifth of its lifetime is left.
    let lifetime = body["expires_in"].as_i64().unwrap();
    let served_for = lifetime - lifetime / 5;

    // A new subject token for the same workload: a hit, whose expires_in is the truth.
    broker.clock.advance(60);
    let (status, again) = exchange(&broker, &token(&issuer, &broker, "svc-payments")).await;
    assert_eq!(status, 200);
    assert_eq!(again["aws_credentials"]["AccessKeyId"], key);
    assert_eq!(again["expires_in"], lifetime - 60, "{again}");
    assert_eq!(sts.call_count(), 1);
    assert_eq!(broker.audit_events().pop().unwrap()["cache"], "hit");

    // A hit still verifies the subject token.
    broker.clock.advance(400);
    let (status, _) = exchange(&broker, &first).await;
    assert_eq!(status, 400, "the first token has expired; the cache does not matter");
    assert_eq!(last_reason(&broker), "TS-SRC-EXPIRED");

    // The rule is revoked: the next exchange is refused though a credential is cached.
    broker.write_mappings(&[("10-aws.yaml", "version: 1\nrules: []\n")]);
    wait_for_rules(&broker, 0).await;
    let fresh = token(&issuer, &broker, "svc-payments");
    let (status, body) = exchange(&broker, &fresh).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_target");
    assert_eq!(sts.call_count(), 1);

    // Restored, the same rule renders the same grant: the cached session serves again.
    broker.write_mappings(&[("10-aws.yaml", RULES)]);
    wait_for_rules(&broker, 1).await;
    let (status, body) = exchange(&broker, &fresh).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["aws_credentials"]["AccessKeyId"], key);
    assert_eq!(sts.call_count(), 1);

    // Up to the safety margin it serves; within it, a new session is made.
    broker.clock.advance(served_for - 460 - 1);
    let (status, body) = exchange(&broker, &token(&issuer, &broker, "svc-payments")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["aws_credentials"]["AccessKeyId"], key, "one second before the margin");
    assert_eq!(sts.call_count(), 1);
    broker.clock.advance(1);
    let (status, body) = exchange(&broker, &token(&issuer, &broker, "svc-payments")).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["aws_credentials"]["AccessKeyId"], key);
    assert_eq!(sts.call_count(), 2);
    assert_eq!(broker.audit_events().pop().unwrap()["cache"], "miss");
    broker.stop().await;
}

/// Wait for the watcher to load the rules; only one that never does fails, after a minute.
async fn wait_for_rules(broker: &TestBroker, count: usize) {
    for _ in 0..1200 {
        if broker.broker.pipeline().mappings().rule_count() == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the mappings never reached {count} rules");
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_false_calls_sts_for_every_exchange() {
    let (sts, issuer, broker) = setup("  cache: false\n").await;
    let token = token(&issuer, &broker, "svc-payments");
    for _ in 0..3 {
        let (status, body) = exchange(&broker, &token).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(sts.call_count(), 3);
    let events = broker.audit_events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().all(|e| e.get("cache").is_none()), "{events:?}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_and_a_refusal_is_not() {
    let (sts, issuer, broker) = setup("").await;
    sts.fail_next(&[(400, "Throttling"), (503, "ServiceUnavailable")]);
    let (status, body) = exchange(&broker, &token(&issuer, &broker, "svc-payments")).await;
    assert_eq!(status, 200, "the third attempt succeeds: {body}");
    assert_eq!(sts.call_count(), 3);

    sts.fail_next(&[(403, "AccessDenied")]);
    let (status, body) = exchange(&broker, &token(&issuer, &broker, "svc-ledger")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_target", "STS refusing the role is no permission");
    assert_eq!(sts.call_count(), 4, "a refusal is never retried");
    let event = broker.audit_events().pop().unwrap();
    assert_eq!(event["reason"], "TS-TGT-UPSTREAM-REJECTED");
    assert_eq!(event["decision"], "deny");
    assert!(event["detail"].as_str().unwrap().contains("AccessDenied"), "{event}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_sts_is_temporarily_unavailable_with_its_cause_audited_and_nothing_cached() {
    let (sts, issuer, broker) = setup("").await;
    sts.set_down(Some((503, "ServiceUnavailable")));
    let token = token(&issuer, &broker, "svc-payments");
    let (status, headers, body) = broker.exchange_with_headers(&token, "aws-prod").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(headers.contains_key("retry-after"));
    assert!(body.get("aws_credentials").is_none() && body.get("access_token").is_none(), "{body}");
    assert_eq!(sts.call_count(), 3, "max_attempts");
    let event = broker.audit_events().pop().unwrap();
    assert_eq!(event["decision"], "error");
    assert_eq!(event["reason"], "TS-TGT-UPSTREAM");
    let detail = event["detail"].as_str().unwrap();
    assert!(detail.contains("ServiceUnavailable") && detail.contains("after 3 attempts"), "{detail}");

    // The failure was not cached: STS back, the next exchange succeeds.
    sts.set_down(None);
    let (status, body) = exchange(&broker, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sts.call_count(), 4);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_sts_is_temporarily_unavailable() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let closed = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let target = format!(
        "- name: aws-prod\n  type: aws_sts\n  endpoint: http://127.0.0.1:{closed}\n  insecure_http: true\n  max_attempts: 2\n  timeout: 1s\n"
    );
    let broker =
        spawn_broker(BrokerOptions::new(&oidc_source(&issuer), &target).mapping("10-aws.yaml", RULES)).await;
    let (status, body) = exchange(&broker, &token(&issuer, &broker, "svc-payments")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(last_reason(&broker), "TS-TGT-UPSTREAM");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_sts_would_refuse_is_a_load_error_with_its_position() {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let bad = RULES
        .replace("role/workloads/payments-api", "user/deployer")
        .replace("team: payments", "aws:team: x");
    let err = tessera_tests::broker::try_spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), &target(&sts, "")).mapping("10-aws.yaml", &bad),
    )
    .await
    .unwrap_err();
    assert!(err.contains("10-aws.yaml:9:17"), "role_arn value position: {err}");
    assert!(err.contains("is not an IAM role ARN"), "{err}");
    assert!(err.contains("not starting with aws:"), "{err}");

    let without_role =
        RULES.replace("      role_arn: arn:aws:iam::123456789012:role/workloads/payments-api\n", "");
    let err = tessera_tests::broker::try_spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), &target(&sts, "")).mapping("10-aws.yaml", &without_role),
    )
    .await
    .unwrap_err();
    assert!(err.contains("10-aws.yaml:8:15"), "the grant's target position: {err}");
    assert!(err.contains("needs `role_arn` in every rule"), "{err}");

    let too_short = RULES.replace("ttl: 15m", "ttl: 5m");
    let err = tessera_tests::broker::try_spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), &target(&sts, "")).mapping("10-aws.yaml", &too_short),
    )
    .await
    .unwrap_err();
    assert!(err.contains("ttl 5m is below the minimum of target `aws-prod` (15m)"), "{err}");
    assert_eq!(sts.call_count(), 0);
}

/// Two rules for one repository's workflows: `aws-prod` names the session after the
/// workflow, `aws-dev` leaves the session name to its default, the workload's name (for
/// GitHub Actions, the workflow).
const WORKFLOW_RULES: &str = r#"version: 1
rules:
  - name: payments-workflows-prod
    match: { source: github, namespace: octo-org/payments }
    grant:
      target: aws-prod
      role_arn: arn:aws:iam::123456789012:role/workloads/payments-api
      session_name: "{name}"
      ttl: 15m
  - name: payments-workflows-dev
    match: { source: github, namespace: octo-org/payments }
    grant:
      target: aws-dev
      role_arn: arn:aws:iam::123456789012:role/workloads/payments-api
      ttl: 15m
"#;

/// A GitHub Actions token of `workflow` in `octo-org/payments`, signed by `issuer`.
fn workflow_token(issuer: &TestIssuer, broker: &TestBroker, workflow: &str, run_id: &str) -> String {
    let mut claims =
        issuer.claims("repo:octo-org/payments:ref:refs/heads/main", "tessera", broker.clock.now());
    let extra = serde_json::json!({
        "repository": "octo-org/payments",
        "repository_id": "1001",
        "repository_owner": "octo-org",
        "repository_owner_id": "65",
        "ref": "refs/heads/main",
        "workflow": workflow,
        "run_id": run_id,
    });
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    issuer.key(0).sign(&claims)
}

/// Every workflow of a repository has the identity id `github://octo-org/payments`; the
/// session STS is asked for differs by workflow, so the cache must tell them apart.
#[tokio::test(flavor = "multi_thread")]
async fn two_workflows_of_one_repository_get_two_sessions_each_named_for_its_workflow() {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let source = format!(
        "- name: github\n  type: github_actions\n  issuer: {}\n  audiences: [tessera]\n  allowed_owner_ids: [65]\n  insecure_http: true\n",
        issuer.url()
    );
    let targets = format!("{}{}", target(&sts, ""), target(&sts, "").replace("aws-prod", "aws-dev"));
    let broker =
        spawn_broker(BrokerOptions::new(&source, &targets).mapping("10-aws.yaml", WORKFLOW_RULES)).await;
    let deploy = workflow_token(&issuer, &broker, "deploy", "7001");
    let release = workflow_token(&issuer, &broker, "release", "7002");

    for audience in ["aws-prod", "aws-dev"] {
        let calls_before = sts.call_count();
        let (status, a) = broker.exchange(&deploy, audience).await;
        assert_eq!(status, 200, "{a}");
        let (status, b) = broker.exchange(&release, audience).await;
        assert_eq!(status, 200, "{b}");
        let events = broker.audit_events();
        assert_eq!(events[events.len() - 2]["identity"]["id"], "github://octo-org/payments");
        assert_eq!(events[events.len() - 1]["identity"]["id"], "github://octo-org/payments");
        assert_eq!(events[events.len() - 1]["cache"], "miss", "{audience}: the other workflow is not a hit");
        assert_eq!(sts.call_count(), calls_before + 2, "{audience}: one STS call per workflow");
        let names: Vec<String> =
            sts.calls()[calls_before..].iter().map(|c| c.role_session_name.clone()).collect();
        assert_eq!(names, ["deploy", "release"], "{audience}");

        // Each answer is a session of its own workflow, as STS itself says.
        for (answer, workflow) in [(&a, "deploy"), (&b, "release")] {
            let creds = &answer["aws_credentials"];
            let who = sts
                .caller_identity(
                    creds["AccessKeyId"].as_str().unwrap(),
                    creds["SecretAccessKey"].as_str().unwrap(),
                    creds["SessionToken"].as_str().unwrap(),
                )
                .await;
            assert_eq!(who.arn, format!("arn:aws:sts::123456789012:assumed-role/payments-api/{workflow}"));
        }

        // Another run of the first workflow asks for exactly its session: a hit.
        let again = workflow_token(&issuer, &broker, "deploy", "7003");
        let (status, c) = broker.exchange(&again, audience).await;
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["aws_credentials"]["AccessKeyId"], a["aws_credentials"]["AccessKeyId"]);
        assert_eq!(broker.audit_events().pop().unwrap()["cache"], "hit");
        assert_eq!(sts.call_count(), calls_before + 2, "{audience}: no call for the repeat");
    }
    broker.stop().await;
}

const TEMPLATED_RULES: &str = r#"version: 1
rules:
  - name: payments-assume-role
    match:
      source: corp
      subject: "svc-*"
    grant:
      target: aws-prod
      role_arn: "arn:aws:iam::123456789012:role/workloads/{attributes.oidc.role}"
      session_name: "{attributes.oidc.session}"
      ttl: 15m
      tags:
        team: "{attributes.oidc.team}"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_rendering_what_sts_refuses_is_invalid_target_before_any_call() {
    let (sts, issuer, broker) = setup_rules(TEMPLATED_RULES).await;
    let exchange_with = |role: &str, session: &str, team: &str| {
        let mut claims = issuer.claims("svc-payments", "tessera", broker.clock.now());
        claims["role"] = serde_json::json!(role);
        claims["session"] = serde_json::json!(session);
        claims["team"] = serde_json::json!(team);
        let token = issuer.key(0).sign(&claims);
        let broker = &broker;
        async move { broker.exchange_with_headers(&token, "aws-prod").await }
    };

    let (status, _, body) = exchange_with("payments-api", "svc-payments", "payments").await;
    assert_eq!(status, 200, "the templates render what STS takes: {body}");
    assert_eq!(sts.calls()[0].role_arn, ROLE);

    let refused = serde_json::json!({
        "error": "invalid_target",
        "error_description": "No rule allows this identity to obtain a credential for this audience.",
    });
    let long_team = "t".repeat(257);
    let cases = [
        (
            ("bad role", "svc-payments", "payments"),
            "`arn:aws:iam::123456789012:role/workloads/bad role` is not an IAM role ARN",
        ),
        (("payments-api", "x", "payments"), "session_name `x` is not 2 to 64 characters"),
        (("payments-api", "ci/deploy", "payments"), "session_name `ci/deploy` is not 2 to 64 characters"),
        (("payments-api", "svc-payments", "payments#1"), "the value of tag `team` must be at most 256"),
        (("payments-api", "svc-payments", long_team.as_str()), "the value of tag `team` must be at most 256"),
    ];
    for ((role, session, team), detail) in cases {
        let (status, headers, body) = exchange_with(role, session, team).await;
        assert_eq!((status, &body), (400, &refused), "{role:?} {session:?} {team:?}");
        assert!(!headers.contains_key("retry-after"));
        let event = broker.audit_events().pop().unwrap();
        assert_eq!(event["decision"], "deny", "{event}");
        assert_eq!(event["reason"], "TS-TGT-INVALID-GRANT", "{event}");
        assert_eq!(event["rule"], "payments-assume-role");
        assert!(event["detail"].as_str().unwrap().contains(detail), "{event}");
    }
    assert_eq!(sts.call_count(), 1, "STS never saw a refused grant");
    broker.stop().await;
}

/// A rule using every session extra: a source identity from a template, a transitive tag
/// key of its own, and session policies. The policy's braces are doubled, as every literal
/// brace in a grant value is (`${{aws:PrincipalTag/team}}` is AWS's policy variable).
const SESSION_RULES: &str = r#"version: 1
rules:
  - name: payments-scoped
    match: { source: corp, subject: "svc-*" }
    grant:
      target: aws-prod
      role_arn: arn:aws:iam::123456789012:role/workloads/payments-api
      source_identity: "{subject}@corp"
      tags: { team: payments, env: prod }
      transitive_tag_keys: env
      policy: |
        {{
          "Version": "2012-10-17",
          "Statement": [{{
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::invoices/${{aws:PrincipalTag/team}}/*"
          }}]
        }}
      policy_arns: arn:aws:iam::aws:policy/ReadOnlyAccess arn:aws:iam::123456789012:policy/invoices/read
"#;

#[tokio::test(flavor = "multi_thread")]
async fn source_identity_transitive_tags_and_session_policies_reach_sts() {
    let (sts, issuer, broker) = setup_rules(SESSION_RULES).await;
    let (status, body) = exchange(&broker, &token(&issuer, &broker, "svc-payments")).await;
    assert_eq!(status, 200, "{body}\n{}", sts.log());
    let call = sts.calls().pop().unwrap();
    let policy = r#"{"Statement":[{"Action":"s3:GetObject","Effect":"Allow","Resource":"arn:aws:s3:::invoices/${aws:PrincipalTag/team}/*"}],"Version":"2012-10-17"}"#;
    assert_eq!(call.policy.as_deref(), Some(policy), "compact JSON, the policy variable intact");
    assert_eq!(
        call.policy_arns,
        ["arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::123456789012:policy/invoices/read"]
    );
    // moto took the request: its session holds the policy it parsed from it.
    let key = body["aws_credentials"]["AccessKeyId"].as_str().unwrap();
    assert_eq!(sts.session_policy(key).await.as_deref(), Some(policy));

    // The source identity and the tags travel in the web identity token, verified here as
    // STS would: against Tessera's JWKS.
    let jwks = format!("{}/.well-known/jwks.json", broker.url);
    let (url, sent) = (broker.url.clone(), call.web_identity_token);
    let out = tokio::task::spawn_blocking(move || {
        python::run("pyjwt_peer.py", &["verify", &jwks, &sent, "sts.amazonaws.com", &url])
    })
    .await
    .unwrap();
    let claims = &serde_json::from_str::<Value>(&out).unwrap()["claims"];
    assert_eq!(claims["https://aws.amazon.com/source_identity"], "svc-payments@corp");
    let tags = &claims["https://aws.amazon.com/tags"];
    assert_eq!(tags["principal_tags"], serde_json::json!({ "team": ["payments"], "env": ["prod"] }));
    // `team` from the target's transitive_tag_keys, `env` from the rule's.
    assert_eq!(tags["transitive_tag_keys"], serde_json::json!(["env", "team"]));

    // A source identity STS would refuse is refused before any call.
    let calls = sts.call_count();
    let (status, body) = exchange(&broker, &token(&issuer, &broker, "svc-pay ments")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")), "{body}");
    let event = broker.audit_events().pop().unwrap();
    assert_eq!(event["reason"], "TS-TGT-INVALID-GRANT", "{event}");
    assert!(event["detail"].as_str().unwrap().contains("source_identity"), "{event}");
    assert_eq!(sts.call_count(), calls);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn templated_session_policies_and_bad_literals_are_load_errors() {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let load = |rules: String| {
        let options =
            BrokerOptions::new(&oidc_source(&issuer), &target(&sts, "")).mapping("10-aws.yaml", &rules);
        async move { tessera_tests::broker::try_spawn_broker(options).await.unwrap_err() }
    };
    // Identity data spliced into policy JSON could add a statement: refused.
    let err = load(SESSION_RULES.replace("${{aws:PrincipalTag/team}}", "{subject}")).await;
    assert!(err.contains("10-aws.yaml:12:9"), "the policy's position: {err}");
    assert!(err.contains("`policy` must be literal text, not a template"), "{err}");
    let err = load(SESSION_RULES.replace("invoices/read", "{subject}")).await;
    assert!(err.contains("`policy_arns` must be literal text, not a template"), "{err}");
    let err = load(SESSION_RULES.replace("\"{subject}@corp\"", "aws:ci")).await;
    assert!(err.contains("source_identity `aws:ci` is not 2 to 64 characters"), "{err}");
    let err = load(SESSION_RULES.replace("\"Statement\"", "\"Statements\"")).await;
    assert!(err.contains("`policy` has no `Statement`"), "{err}");
    assert_eq!(sts.call_count(), 0);
}
