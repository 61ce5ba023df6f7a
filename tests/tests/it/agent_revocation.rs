//! `tessera agent` and revocations: the agent exchanges again every
//! `refresh.revocation_check`, and once the broker refuses with the revocation error it
//! stops serving what it holds (the ECS endpoint answers `403`, which boto3 reports as a
//! credential error; token files are removed), until the revocation is lifted.

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_tests::agent::{ECS_TOKEN, run_peer, spawn_agent};
use tessera_tests::sts::StsPeer;
use tessera_tests::{BrokerOptions, TestIssuer, TestKey, spawn_broker};

use crate::agent::{AWS_RULES, ROLE};
use crate::{JWT_TARGET, RULES, oidc_source};

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_workloads_agent_stops_serving_and_serves_again_once_lifted() {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let targets = format!(
        "- name: aws-prod\n  type: aws_sts\n  endpoint: {}\n  insecure_http: true\n  max_ttl: 1h\n  default_ttl: 15m\n  timeout: 2s\n{JWT_TARGET}",
        sts.url
    );
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), &targets)
            .mapping("10-aws.yaml", AWS_RULES)
            .mapping("20-services.yaml", RULES)
            .with_admin(),
    )
    .await;
    let clock = broker.clock.clone();
    let subject = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", clock.now()));
    let agent = spawn_agent(
        &broker.url,
        &subject,
        &format!(
            "aws:\n  target: aws-prod\n  scope: {ROLE}\n  authorization_token_file: ecs-token\n\
             token_files:\n  - target: internal-api\n    path: internal-api.jwt\n\
             refresh:\n  revocation_check: 5s\n  min_backoff: 100ms\n  max_backoff: 500ms\n"
        ),
        clock.clone(),
    )
    .await;
    agent.wait_ready().await;
    let token_file = agent.dir.path().join("internal-api.jwt");
    assert!(token_file.exists());
    let uri = format!("{}/v1/aws/credentials", agent.url);
    let env = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", ECS_TOKEN),
    ];
    let who = run_peer(&["aws-whoami", &sts.moto_url], &env).await;
    assert_eq!(who["method"], "container-role", "{who}");

    // A check between refreshes, answered from the broker's cache: nothing new is issued.
    clock.advance(5);
    agent
        .wait_health("checked", |_, h| {
            h["credentials"].as_array().unwrap().iter().all(|c| c["refreshes"] == 2)
        })
        .await;
    assert_eq!(sts.call_count(), 1, "a check is answered from the broker's credential cache");

    let body = json!({
        "match": { "kind": "identity_glob", "pattern": "*/svc-payments" },
        "reason": "INC-1: runner compromised",
    });
    let (status, made) = broker.admin_post("/v1/revocations", &body).await;
    assert_eq!(status, 201, "{made}");

    // At the next check the agent learns of it and drops both credentials.
    clock.advance(5);
    let health = agent
        .wait_health("revoked", |_, h| {
            h["credentials"].as_array().unwrap().iter().all(|c| c["state"] == "revoked")
        })
        .await;
    assert_eq!(health["status"], "unavailable", "{health}");
    assert_eq!(health["credentials"][0]["last_error"]["code"], "TS-AGENT-REVOKED", "{health}");
    let (status, _, body) = agent.get("/v1/aws/credentials", &[("authorization", ECS_TOKEN)]).await;
    assert_eq!(status, 403, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["code"], "AccessDenied", "{answer}");
    assert!(!body.contains("AccessKeyId"), "{body}");
    assert!(!token_file.exists(), "the revoked token's file is removed");
    let refused = run_peer(&["aws-whoami-or-error", &sts.moto_url], &env).await;
    assert_eq!(refused["error"], "CredentialRetrievalError", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("revoked"), "{refused}");

    // Lifted: the agent's next attempt is issued a new credential, and boto3 works again.
    let id = made["id"].as_str().unwrap();
    let lifted = broker.http.delete(format!("{}/v1/revocations/{id}", broker.admin_url.as_deref().unwrap()));
    assert_eq!(lifted.send().await.unwrap().status(), 200);
    agent.wait_ready().await;
    assert!(token_file.exists(), "written again");
    let who = run_peer(&["aws-whoami", &sts.moto_url], &env).await;
    assert_eq!(who["method"], "container-role", "{who}");
    assert_eq!(sts.call_count(), 2, "the purged credential was not served again");
    agent.stop().await;
    broker.stop().await;
}
