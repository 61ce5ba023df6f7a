//! `tessera agent` and revocations: the agent exchanges again every
//! `refresh.revocation_check`, and once the broker refuses with the revocation error it
//! stops serving what it holds (the ECS endpoint answers `403`, which boto3 reports as a
//! credential error; token files are removed), until the revocation is lifted. With its
//! revocation watch (the default) it learns of a revocation from the broker at once, on
//! whichever replica it was made, without waiting for the periodic check.

use serde_json::{Value, json};
use std::sync::Arc;
use tessera_adapters::Clock as _;

use tessera_adapters::ManualClock;
use tessera_tests::agent::{ECS_TOKEN, TestAgent, run_peer, spawn_agent};
use tessera_tests::postgres::TestPostgres;
use tessera_tests::redis::TestRedis;
use tessera_tests::sts::StsPeer;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

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

/// An agent keeping `internal-api`'s token in a file, whose periodic check (an hour) can
/// explain nothing a test sees: only the revocation watch can.
async fn watching_agent(broker_url: &str, subject: &str, clock: Arc<ManualClock>) -> TestAgent {
    let agent = spawn_agent(
        broker_url,
        subject,
        "token_files:\n  - target: internal-api\n    path: internal-api.jwt\n\
         refresh:\n  revocation_check: 1h\n  min_backoff: 100ms\n  max_backoff: 500ms\n",
        clock,
    )
    .await;
    agent.wait_ready().await;
    agent
}

/// Wait until `broker` holds `n` revocation watches (polled: no timing assertion; the
/// delay is measured by the `revocation` bench).
async fn watches_open(broker: &TestBroker, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while broker.broker.watches().open() != n {
        assert!(std::time::Instant::now() < deadline, "the broker never held {n} watches");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn all_revoked(agent: &TestAgent) -> Value {
    agent
        .wait_health("revoked", |_, h| {
            h["credentials"].as_array().unwrap().iter().all(|c| c["state"] == "revoked")
        })
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_watching_agent_drops_a_revoked_credential_without_waiting_for_its_check() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET).mapping("20-services.yaml", RULES).with_admin(),
    )
    .await;
    let clock = broker.clock.clone();
    let subject = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", clock.now()));
    let agent = watching_agent(&broker.url, &subject, clock.clone()).await;
    let token_file = agent.dir.path().join("internal-api.jwt");
    assert!(token_file.exists());
    watches_open(&broker, 1).await;

    let body =
        json!({ "match": { "kind": "identity_glob", "pattern": "*/svc-payments" }, "reason": "INC-3" });
    let (status, made) = broker.admin_post("/v1/revocations", &body).await;
    assert_eq!(status, 201, "{made}");
    // The clock stands still: the hourly check never comes; the watch alone tells the agent.
    let health = all_revoked(&agent).await;
    assert_eq!(health["credentials"][0]["last_error"]["code"], "TS-AGENT-REVOKED", "{health}");
    assert!(!token_file.exists(), "the revoked token's file is removed");
    let events = broker.audit_events();
    let allowed = events.iter().filter(|e| e["decision"] == "allow").count();
    assert_eq!(allowed, 1, "one exchange issued; watching made none: {events:?}");
    assert!(
        events.iter().filter(|e| e["decision"] != "allow").all(|e| e["reason"] == "TS-REVOKED"),
        "{events:?}"
    );
    assert_eq!(broker.broker.watches().open(), 0, "nothing is watched while nothing is served");

    // Lifted: the agent's retries are issued a new credential, which is watched in turn.
    let id = made["id"].as_str().unwrap();
    let lifted = broker.http.delete(format!("{}/v1/revocations/{id}", broker.admin_url.as_deref().unwrap()));
    assert_eq!(lifted.send().await.unwrap().status(), 200);
    agent.wait_ready().await;
    assert!(token_file.exists(), "written again");
    watches_open(&broker, 1).await;
    agent.stop().await;
    broker.stop().await;
}

/// Two replicas on one PostgreSQL store and Redis: a revocation made on A reaches the
/// agent watching B (B reads it from the store when A's notice wakes its poller).
#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_made_on_one_replica_reaches_the_agent_watching_another() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let db = TestPostgres::new();
    let redis = TestRedis::new();
    let keys = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let options = || {
        let mut options = BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET)
            .mapping("20-services.yaml", RULES)
            .replica_of("https://tessera.replicas.example", keys.path())
            .with_admin();
        options.clock = Arc::clone(&clock);
        options.audit = db.store_config();
        options.extra = redis.config();
        options
    };
    let (a, b) = (spawn_broker(options()).await, spawn_broker(options()).await);
    let subject = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", clock.now()));
    let agent = watching_agent(&b.url, &subject, clock.clone()).await;
    watches_open(&b, 1).await;

    let body =
        json!({ "match": { "kind": "identity_glob", "pattern": "*/svc-payments" }, "reason": "INC-4" });
    let (status, made) = a.admin_post("/v1/revocations", &body).await;
    assert_eq!(status, 201, "{made}");
    all_revoked(&agent).await;
    assert!(!agent.dir.path().join("internal-api.jwt").exists());
    assert_eq!(a.broker.watches().open(), 0, "the agent never talked to A");
    agent.stop().await;
    a.stop().await;
    b.stop().await;
}
