//! `tessera agent` end to end: the real agent and broker on loopback, and the real SDKs
//! (boto3, google-auth, azure-identity) finding credentials through environment variables
//! only. Also: the agent rides out a broker restart, refreshes ahead of expiry, re-reads a
//! rotated native token, and refuses what it must.

use std::sync::Arc;

use serde_json::Value;
use tessera_adapters::{Clock, ManualClock};
use tessera_tests::agent::{ECS_TOKEN, IDENTITY_HEADER, TestAgent, run_peer, spawn_agent, tessera_binary};
use tessera_tests::entra::{FakeEntra, FederatedCredential};
use tessera_tests::google::{FakeGoogle, WorkloadIdentityProvider};
use tessera_tests::keys::verify_with_jwks;
use tessera_tests::sts::StsPeer;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TARGET, RULES, oidc_source};

pub(crate) const ROLE: &str = "arn:aws:iam::123456789012:role/workloads/payments-api";
pub(crate) const AWS_RULES: &str = r#"version: 1
rules:
  - name: payments-assume-role
    match: { source: corp, subject: "svc-*" }
    grant:
      target: aws-prod
      role_arn: arn:aws:iam::123456789012:role/workloads/payments-api
      session_name: "{subject}"
      ttl: 15m
"#;

fn subject(issuer: &TestIssuer, clock: &dyn Clock, sub: &str) -> String {
    issuer.key(0).sign(&issuer.claims(sub, "tessera", clock.now()))
}

fn clock_of(broker: &TestBroker) -> Arc<dyn Clock> {
    broker.clock.clone()
}

pub(crate) fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()
}

async fn jwks(broker_url: &str) -> Value {
    reqwest::get(format!("{broker_url}/.well-known/jwks.json")).await.unwrap().json().await.unwrap()
}

// ---- AWS ----

async fn aws_setup() -> (StsPeer, TestIssuer, TestBroker, TestAgent) {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let target = format!(
        "- name: aws-prod\n  type: aws_sts\n  endpoint: {}\n  insecure_http: true\n  max_ttl: 1h\n  default_ttl: 15m\n  timeout: 2s\n",
        sts.url
    );
    let broker =
        spawn_broker(BrokerOptions::new(&oidc_source(&issuer), &target).mapping("10-aws.yaml", AWS_RULES))
            .await;
    let agent = spawn_agent(
        &broker.url,
        &subject(&issuer, &*clock_of(&broker), "svc-payments"),
        &format!("aws:\n  target: aws-prod\n  scope: {ROLE}\n  authorization_token_file: ecs-token\n"),
        clock_of(&broker),
    )
    .await;
    agent.wait_ready().await;
    (sts, issuer, broker, agent)
}

#[tokio::test(flavor = "multi_thread")]
async fn boto3_takes_credentials_from_the_agents_ecs_endpoint() {
    let (sts, _issuer, broker, agent) = aws_setup().await;
    let uri = format!("{}/v1/aws/credentials", agent.url);
    let who = run_peer(
        &["aws-whoami", &sts.moto_url],
        &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri), ("AWS_CONTAINER_AUTHORIZATION_TOKEN", ECS_TOKEN)],
    )
    .await;
    assert_eq!(who["method"], "container-role", "{who}");
    assert_eq!(who["Arn"], "arn:aws:sts::123456789012:assumed-role/payments-api/svc-payments");
    assert_eq!(who["Account"], "123456789012");
    assert_eq!(sts.call_count(), 1, "one AssumeRoleWithWebIdentity, made by the agent's exchange");

    // What botocore read, exactly.
    let (status, headers, body) = agent.get("/v1/aws/credentials", &[("authorization", ECS_TOKEN)]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let creds: Value = serde_json::from_str(&body).unwrap();
    let mut keys: Vec<&str> = creds.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["AccessKeyId", "Expiration", "RoleArn", "SecretAccessKey", "Token"]);
    assert_eq!(creds["RoleArn"], ROLE);
    assert!(creds["Expiration"].as_str().unwrap().ends_with('Z'), "{creds}");

    // The audit trail shows the agent's exchange, never the secret key.
    let event = broker.audit_events().pop().unwrap();
    assert_eq!(event["decision"], "allow");
    assert_eq!(event["target"], "aws-prod");
    assert!(!broker.audit_text().contains(creds["SecretAccessKey"].as_str().unwrap()));
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ecs_endpoint_refuses_requests_without_the_authorization_token() {
    let (_sts, _issuer, broker, agent) = aws_setup().await;
    let (status, _, body) = agent.get("/v1/aws/credentials", &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("AccessKeyId") && !body.contains("Token\""), "{body}");
    let (status, _, body) =
        agent.get("/v1/aws/credentials", &[("authorization", "ecs-token-0123456789abcdeX")]).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("AccessKeyId"), "{body}");
    let (status, _, _) = agent.get("/v1/aws/credentials", &[("authorization", ECS_TOKEN)]).await;
    assert_eq!(status, 200);
    // Nothing but AWS is configured: the other endpoints do not exist.
    let (status, _, _) =
        agent.get("/computeMetadata/v1/project/project-id", &[("metadata-flavor", "Google")]).await;
    assert_eq!(status, 404);
    let (status, _, _) = agent.get("/v1/azure/token?resource=x&api-version=2019-08-01", &[]).await;
    assert_eq!(status, 404);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn botocore_uses_tessera_credential_process() {
    let (sts, _issuer, broker, agent) = aws_setup().await;
    let bin = tessera_binary();
    let config = agent.dir.path().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = us-east-1\ncredential_process = {} credential-process --url {}/v1/aws/credentials --token-file {}\n",
            bin.display(),
            agent.url,
            agent.dir.path().join("ecs-token").display()
        ),
    )
    .unwrap();
    let who =
        run_peer(&["aws-whoami", &sts.moto_url], &[("AWS_CONFIG_FILE", config.to_str().unwrap())]).await;
    assert_eq!(who["method"], "custom-process", "{who}");
    assert_eq!(who["Arn"], "arn:aws:sts::123456789012:assumed-role/payments-api/svc-payments");

    // The process itself: the AWS `credential_process` format, or a refusal with no secret.
    let out = std::process::Command::new(&bin)
        .args(["credential-process", "--url", &format!("{}/v1/aws/credentials", agent.url)])
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", ECS_TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["Version"], 1);
    for key in ["AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"] {
        assert!(printed[key].as_str().is_some_and(|v| !v.is_empty()), "{key}: {printed}");
    }
    let out = std::process::Command::new(&bin)
        .args([
            "--log-format",
            "text",
            "credential-process",
            "--url",
            &format!("{}/v1/aws/credentials", agent.url),
        ])
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "not-the-token-at-all")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTTP 403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    agent.stop().await;
    broker.stop().await;
}

// ---- Google ----

const PROVIDER: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/tessera";
const SERVICE_ACCOUNT: &str = "app@payments-prod.iam.gserviceaccount.com";
const RUN_AUDIENCE: &str = "https://payments-7d2f.a.run.app";
const GCP_RULES: &str = r#"version: 1
rules:
  - name: payments-reads-buckets
    match: { source: corp, subject: "svc-*" }
    grant:
      target: gcp-prod
      service_account: app@payments-prod.iam.gserviceaccount.com
      scopes: https://www.googleapis.com/auth/devstorage.read_only
      ttl: 30m
  - name: payments-invokes-run
    match: { source: corp, subject: "svc-*" }
    grant: { target: run-invoker, ttl: 10m }
"#;

async fn gcp_setup() -> (TestIssuer, FakeGoogle, TestBroker, TestAgent) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let mut options = BrokerOptions::new(&oidc_source(&issuer), "");
    let google = FakeGoogle::start(Vec::new(), options.clock.clone());
    options.targets = format!(
        "- name: gcp-prod\n  type: gcp\n  provider: {PROVIDER}\n  sts_endpoint: {url}\n  iamcredentials_endpoint: {url}\n  insecure_http: true\n  timeout: 2s\n- name: run-invoker\n  type: jwt\n  audience: {RUN_AUDIENCE}\n  max_ttl: 1h\n",
        url = google.url()
    );
    let broker = spawn_broker(options.mapping("10-gcp.yaml", GCP_RULES)).await;
    let provider = WorkloadIdentityProvider::new(PROVIDER, &broker.url);
    google.allow_impersonation(&provider.principal("oidc://corp/svc-payments"), SERVICE_ACCOUNT);
    google.add_provider(provider);
    let agent = spawn_agent(
        &broker.url,
        &subject(&issuer, &*clock_of(&broker), "svc-payments"),
        &format!(
            "gcp:\n  target: gcp-prod\n  email: {SERVICE_ACCOUNT}\n  project_id: payments-prod\n  id_token_targets:\n    '{RUN_AUDIENCE}': run-invoker\n"
        ),
        clock_of(&broker),
    )
    .await;
    agent.wait_ready().await;
    (issuer, google, broker, agent)
}

fn gce_env(agent: &TestAgent) -> Vec<(&str, &str)> {
    vec![("GCE_METADATA_HOST", agent.host()), ("GCE_METADATA_IP", agent.host())]
}

#[tokio::test(flavor = "multi_thread")]
async fn google_auth_default_finds_the_agents_metadata_server() {
    let (_issuer, google, broker, agent) = gcp_setup().await;
    let got = run_peer(&["gcp-token"], &gce_env(&agent)).await;
    assert_eq!(got["credentials"], "google.auth.compute_engine.credentials.Credentials", "{got}");
    assert_eq!(got["project"], "payments-prod");
    assert_eq!(got["email"], SERVICE_ACCOUNT);
    let impersonated =
        google.issued_access_tokens().into_iter().find(|t| t.service_account.is_some()).unwrap();
    assert_eq!(got["token"], impersonated.access_token.as_str(), "the token Google issued through Tessera");

    let id = run_peer(&["gcp-id-token", RUN_AUDIENCE], &gce_env(&agent)).await;
    let claims = verify_with_jwks(&jwks(&broker.url).await, id["token"].as_str().unwrap());
    assert_eq!(claims["aud"], RUN_AUDIENCE);
    assert_eq!(claims["iss"], broker.url);
    assert_eq!(claims["sub"], "oidc://corp/svc-payments");
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_server_checks_requests_like_googles_and_refuses_unknown_audiences() {
    let (_issuer, _google, broker, agent) = gcp_setup().await;
    let flavor = [("metadata-flavor", "Google")];
    let identity =
        format!("/computeMetadata/v1/instance/service-accounts/default/identity?audience={RUN_AUDIENCE}");

    let (status, headers, body) = agent.get(&identity, &[]).await;
    assert_eq!(status, 403, "no Metadata-Flavor: {body}");
    assert_eq!(headers["metadata-flavor"], "Google");
    assert!(!body.contains("eyJ"));
    let (status, _, body) =
        agent.get(&identity, &[("metadata-flavor", "Google"), ("x-forwarded-for", "10.0.0.1")]).await;
    assert_eq!(status, 403, "forwarded: {body}");
    let (status, headers, token) = agent.get(&identity, &flavor).await;
    assert_eq!(status, 200);
    assert_eq!(headers["metadata-flavor"], "Google");
    assert_eq!(claims_of(&token)["aud"], RUN_AUDIENCE);

    let (status, _, body) = agent
        .get("/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://elsewhere.example", &flavor)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("eyJ"));

    let (status, headers, body) =
        agent.get("/computeMetadata/v1/instance/service-accounts/default/?recursive=true", &flavor).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["email"], SERVICE_ACCOUNT);
    assert_eq!(info["aliases"], serde_json::json!(["default"]));

    let (status, _, body) = agent
        .get(&format!("/computeMetadata/v1/instance/service-accounts/{SERVICE_ACCOUNT}/token"), &flavor)
        .await;
    assert_eq!(status, 200);
    let token: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(token["token_type"], "Bearer");
    let expires_in = token["expires_in"].as_i64().unwrap();
    assert!((1..=1800).contains(&expires_in), "{token}");
    let (status, _, _) = agent
        .get("/computeMetadata/v1/instance/service-accounts/other@x.iam.gserviceaccount.com/token", &flavor)
        .await;
    assert_eq!(status, 404);
    agent.stop().await;
    broker.stop().await;
}

// ---- Azure ----

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const AZURE_RULES: &str = r#"version: 1
rules:
  - name: payments-calls-graph
    match: { source: corp, subject: "svc-*" }
    grant:
      target: graph
      scope: https://graph.microsoft.com/.default
"#;

async fn azure_setup() -> (TestIssuer, FakeEntra, TestBroker, TestAgent) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let mut options = BrokerOptions::new(&oidc_source(&issuer), "");
    let entra = FakeEntra::start(options.clock.clone());
    options.targets = format!(
        "- name: graph\n  type: azure\n  tenant: {TENANT}\n  client_id: {CLIENT_ID}\n  authority: {}\n  insecure_http: true\n  timeout: 2s\n",
        entra.url()
    );
    let broker = spawn_broker(options.mapping("10-azure.yaml", AZURE_RULES)).await;
    entra.add_federated_credential(
        TENANT,
        CLIENT_ID,
        FederatedCredential::new(&broker.url, "oidc://corp/svc-payments"),
    );
    let agent = spawn_agent(
        &broker.url,
        &subject(&issuer, &*clock_of(&broker), "svc-payments"),
        &format!(
            "azure:\n  resources:\n    'https://graph.microsoft.com': graph\n  client_id: {CLIENT_ID}\n  identity_header_file: identity-header\n  imds: true\n"
        ),
        clock_of(&broker),
    )
    .await;
    agent.wait_ready().await;
    (issuer, entra, broker, agent)
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_identity_managed_identity_credential_uses_the_app_service_endpoint() {
    let (_issuer, entra, broker, agent) = azure_setup().await;
    let endpoint = format!("{}/v1/azure/token", agent.url);
    let got = run_peer(
        &["azure-token", "https://graph.microsoft.com/.default"],
        &[("IDENTITY_ENDPOINT", &endpoint), ("IDENTITY_HEADER", IDENTITY_HEADER)],
    )
    .await;
    let issued = entra.issued_access_tokens().pop().unwrap();
    assert_eq!(got["token"], issued.access_token.as_str(), "{got}");
    assert_eq!(got["expires_on"], issued.expires_at, "expiry as Entra set it");
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_azure_endpoints_refuse_wrong_secrets_and_unknown_resources() {
    let (_issuer, entra, broker, agent) = azure_setup().await;
    let query = "resource=https://graph.microsoft.com&api-version=2019-08-01";
    let path = format!("/v1/azure/token?{query}");
    let (status, _, body) = agent.get(&path, &[]).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = agent.get(&path, &[("x-identity-header", "identity-header-wrong-0123456")]).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("access_token"));
    let (status, headers, body) = agent.get(&path, &[("x-identity-header", IDENTITY_HEADER)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["resource"], "https://graph.microsoft.com");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["client_id"], CLIENT_ID);
    let issued = entra.issued_access_tokens().pop().unwrap();
    assert_eq!(answer["expires_on"], issued.expires_at.to_string(), "epoch seconds as a string");

    let (status, _, body) = agent
        .get(
            "/v1/azure/token?resource=https://vault.azure.net&api-version=2019-08-01",
            &[("x-identity-header", IDENTITY_HEADER)],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("access_token"));

    // The IMDS token path: `Metadata: true` or nothing.
    let imds = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://graph.microsoft.com";
    let (status, _, body) = agent.get(imds, &[]).await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = agent.get(imds, &[("metadata", "true")]).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["access_token"], issued.access_token.as_str());
    assert_eq!(answer["resource"], "https://graph.microsoft.com");
    assert!(answer["expires_in"].as_str().unwrap().parse::<i64>().unwrap() > 0, "{answer}");
    agent.stop().await;
    broker.stop().await;
}

// ---- Refresh, restart, native tokens ----

const AGENT_JWT: &str = "gcp:\n  email: runner@payments-prod.iam.gserviceaccount.com\n  id_token_targets:\n    'https://internal-api.example': internal-api\ntoken_files:\n  - target: internal-api\n    path: internal-api.jwt\nrefresh:\n  min_backoff: 50ms\n  max_backoff: 200ms\n";
const IDENTITY: &str =
    "/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://internal-api.example";

async fn id_token(agent: &TestAgent) -> (u16, String) {
    let (status, _, body) = agent.get(IDENTITY, &[("metadata-flavor", "Google")]).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_refreshed_ahead_of_expiry_from_the_rotated_native_token() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET).mapping("10-services.yaml", RULES),
    )
    .await;
    let clock: Arc<ManualClock> = broker.clock.clone();
    let agent =
        spawn_agent(&broker.url, &subject(&issuer, &*clock, "svc-payments"), AGENT_JWT, clock.clone()).await;
    let health = agent.wait_ready().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["credentials"][0]["state"], "fresh");
    let file = agent.dir.path().join("internal-api.jwt");
    let first = std::fs::read_to_string(&file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let (status, served) = id_token(&agent).await;
    assert_eq!((status, served.as_str()), (200, first.as_str()), "one credential, two ways out");
    let before = claims_of(&first);
    assert_eq!(before["sub"], "oidc://corp/svc-payments");
    assert_eq!(before["exp"].as_i64().unwrap() - before["iat"].as_i64().unwrap(), 600, "the rule's 10m");

    // The platform rotates the native token (another workload, to tell them apart); half the
    // credential's life passes.
    clock.advance(301);
    agent.write_subject(&subject(&issuer, &*clock, "svc-ledger"));
    agent.wait_health("refreshed", |_, h| h["credentials"][0]["refreshes"] == 2).await;
    let second = std::fs::read_to_string(&file).unwrap();
    assert_ne!(second, first);
    let after = claims_of(&second);
    assert_eq!(after["sub"], "oidc://corp/svc-ledger", "the rotated native token was read");
    assert_eq!(after["iat"].as_i64().unwrap(), before["iat"].as_i64().unwrap() + 301);
    assert!(after["exp"].as_i64().unwrap() > before["exp"].as_i64().unwrap());
    let (_, served) = id_token(&agent).await;
    assert_eq!(served, second);
    verify_with_jwks(&jwks(&broker.url).await, &second);
    assert_eq!(broker.audit_events().iter().filter(|e| e["decision"] == "allow").count(), 2);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_serves_through_a_broker_restart_and_recovers() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let options = BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET).mapping("10-services.yaml", RULES);
    let broker = spawn_broker(options.clone()).await;
    let (url, dir, clock) = (broker.url.clone(), broker.dir.clone(), broker.clock.clone());
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let agent = spawn_agent(&url, &subject(&issuer, &*clock, "svc-payments"), AGENT_JWT, clock.clone()).await;
    agent.wait_ready().await;
    let (_, first) = id_token(&agent).await;
    let first_kid = tessera_tests::keys::header_of(&first)["kid"].clone();

    broker.stop().await;
    // Past the refresh point: the agent tries, fails, and keeps serving what it has.
    clock.advance(320);
    agent.write_subject(&subject(&issuer, &*clock, "svc-payments"));
    let health = agent
        .wait_health("stale", |status, h| {
            status == 200 && h["credentials"][0]["last_error"]["code"] == "TS-AGENT-BROKER-UNREACHABLE"
        })
        .await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["credentials"][0]["state"], "stale");
    assert!(!health.to_string().contains(&first), "no token in the health report");
    let (status, served) = id_token(&agent).await;
    assert_eq!((status, served.as_str()), (200, first.as_str()), "the still-valid token is served");

    // The broker comes back on the same address with the same keys; the agent recovers.
    let broker =
        spawn_broker(BrokerOptions { dir: Some(dir.clone()), port: Some(port), ..options.clone() }).await;
    let health = agent.wait_health("recovered", |status, h| status == 200 && h["status"] == "ok").await;
    assert_eq!(health["credentials"][0]["consecutive_failures"], 0);
    let (_, second) = id_token(&agent).await;
    assert_ne!(second, first);
    let keys = jwks(&broker.url).await;
    verify_with_jwks(&keys, &second);
    assert_eq!(tessera_tests::keys::header_of(&second)["kid"], first_kid, "the keys survived the restart");
    broker.stop().await;

    // Down again, and this time the credential runs out: nothing expired is served.
    clock.advance(600);
    agent
        .wait_health("failing", |status, h| status == 503 && h["credentials"][0]["state"] == "failing")
        .await;
    let (status, body) = id_token(&agent).await;
    assert_eq!(status, 503, "{body}");
    assert!(!body.contains("eyJ"), "{body}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_listens_on_loopback_only() {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, "version: 1\nbroker: http://127.0.0.1:9\nsubject_token: { file: t }\ntoken_files: [{ target: api, path: out }]\n").unwrap();
    let loaded = tessera_agent::load(&path).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::starting_now());
    let e = tessera_agent::run(loaded, listener, clock, async {}).await.unwrap_err();
    assert!(e.to_string().contains("not a loopback address"), "{e}");

    // `tessera agent` refuses the config before binding anything, with the place to fix.
    std::fs::write(&path, "version: 1\nbroker: http://127.0.0.1:9\nlisten: 0.0.0.0:8200\nsubject_token: { file: t }\ntoken_files: [{ target: api, path: out }]\n").unwrap();
    let out = std::process::Command::new(tessera_binary())
        .args(["--log-format", "text", "agent", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("agent.yaml:3:9") && stderr.contains("not a loopback address"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gce_metadata_and_azure_imds_are_native_credentials_too() {
    // A broker that also trusts its own tokens (audience `tessera-self`): one agent serves
    // them as a metadata server and IMDS would, a second agent presents them as its native
    // credential.
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sources = format!(
        "{}- name: self\n  type: oidc\n  issuer: http://127.0.0.1:{port}\n  audiences: [tessera-self]\n  insecure_http: true\n  max_token_lifetime: 1h\n",
        oidc_source(&issuer)
    );
    let targets =
        format!("{JWT_TARGET}- name: self-jwt\n  type: jwt\n  audience: tessera-self\n  max_ttl: 1h\n");
    let rules = r#"version: 1
rules:
  - name: corp-gets-self-tokens
    match: { source: corp }
    grant: { target: self-jwt, ttl: 10m }
  - name: self-calls-internal-api
    match: { source: self }
    grant: { target: internal-api, ttl: 10m }
"#;
    let mut options = BrokerOptions::new(&sources, &targets).mapping("10-rules.yaml", rules);
    options.port = Some(port);
    let broker = spawn_broker(options).await;
    let clock = clock_of(&broker);
    let upstream = spawn_agent(
        &broker.url,
        &subject(&issuer, &*clock, "svc-payments"),
        "gcp:\n  email: vm@payments-prod.iam.gserviceaccount.com\n  id_token_targets: { tessera-self: self-jwt }\nazure:\n  resources: { 'api://tessera-self': self-jwt }\n  identity_header_file: identity-header\n  imds: true\n",
        Arc::clone(&clock),
    )
    .await;
    upstream.wait_ready().await;

    for native in [
        format!("gce_metadata: {{ audience: tessera-self, endpoint: '{}' }}", upstream.url),
        format!("azure_imds: {{ resource: 'api://tessera-self', endpoint: '{}' }}", upstream.url),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std::fs::write(
            &path,
            format!(
                "version: 1\nbroker: {}\nsubject_token:\n  {native}\ntoken_files:\n  - {{ target: internal-api, path: internal-api.jwt }}\nrefresh: {{ min_backoff: 50ms, max_backoff: 200ms }}\n",
                broker.url
            ),
        )
        .unwrap();
        let loaded = tessera_agent::load(&path).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tessera_agent::run(loaded, listener, Arc::clone(&clock), async move {
            let _ = stopped.await;
        }));
        let file = dir.path().join("internal-api.jwt");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !file.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{native}: no token file; audit: {}",
                broker.audit_text()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let token = std::fs::read_to_string(&file).unwrap();
        let claims = verify_with_jwks(&jwks(&broker.url).await, &token);
        assert_eq!(claims["aud"], "https://internal-api.example", "{native}");
        let sub = claims["sub"].as_str().unwrap();
        assert!(sub.starts_with("oidc://self/"), "{native}: exchanged the metadata service's token: {sub}");
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
    upstream.stop().await;
    broker.stop().await;
}

#[test]
fn every_example_agent_config_loads_and_its_manifests_point_at_it() {
    let root = tessera_tests::python::root();
    let mut found = 0;
    let example_dirs = std::fs::read_dir(root.join("examples")).unwrap().map(|e| e.unwrap().path());
    for dir in example_dirs.chain([root.join("deploy/kubernetes/agent-sidecar")]) {
        let path = dir.join("agent.yaml");
        if path.exists() {
            tessera_agent::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
            found += 1;
        }
    }
    assert!(found >= 2, "the Kubernetes sidecar and GitHub Actions examples");

    // The sidecar: the app container's environment names the agent's endpoint, both
    // containers take the ECS token from one Secret, and the agent reads the projected token.
    let dir = root.join("deploy/kubernetes/agent-sidecar");
    let agent = tessera_agent::load(&dir.join("agent.yaml")).unwrap();
    let listen = agent.config.listen.value;
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&std::fs::read_to_string(dir.join("deployment.yaml")).unwrap()).unwrap();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let sidecar = &pod["initContainers"][0];
    assert_eq!(sidecar["restartPolicy"], "Always");
    let env = |container: &Value, name: &str| -> Value {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let app = &pod["containers"][0];
    assert_eq!(
        env(app, "AWS_CONTAINER_CREDENTIALS_FULL_URI")["value"],
        format!("http://{listen}/v1/aws/credentials")
    );
    assert_eq!(
        env(app, "AWS_CONTAINER_AUTHORIZATION_TOKEN")["valueFrom"],
        env(sidecar, "AWS_CONTAINER_AUTHORIZATION_TOKEN")["valueFrom"]
    );
    let tessera_agent::config::SubjectTokenConfig::File(token) = &agent.config.subject_token.value else {
        panic!("the sidecar reads the projected token file");
    };
    let mount =
        sidecar["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "tessera-token").unwrap();
    assert_eq!(token.parent().unwrap(), std::path::Path::new(mount["mountPath"].as_str().unwrap()));
    let kustomization: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap()).unwrap();
    assert_eq!(kustomization["configMapGenerator"][0]["files"][0], "agent.yaml");

    // The workflow exports the agent's address as the metadata host.
    let dir = root.join("examples/agent-github-actions");
    let agent = tessera_agent::load(&dir.join("agent.yaml")).unwrap();
    let workflow = std::fs::read_to_string(dir.join("workflow.yml")).unwrap();
    let parsed: Value = serde_saphyr::from_str(&workflow).unwrap();
    assert!(parsed["jobs"]["release"]["steps"].as_array().unwrap().len() >= 4);
    assert_eq!(parsed["permissions"]["id-token"], "write");
    assert!(workflow.contains(&format!("GCE_METADATA_HOST={}", agent.config.listen.value)), "{workflow}");
}

/// Kills the child process when dropped, so a failing test leaves no agent behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tessera_agent_binary_signs_get_caller_identity_with_ambient_aws_credentials() {
    use tessera_tests::moto::Moto;
    let moto = Moto::start().await;
    let source = format!(
        "- name: aws\n  type: aws_iam\n  server_id: tessera.test\n  sts_endpoints: [\"{}\"]\n  insecure_http: true\n",
        moto.origin
    );
    let rules = "version: 1\nrules:\n  - name: aws-workloads\n    match: { source: aws }\n    grant: { target: internal-api, ttl: 10m }\n";
    let broker = spawn_broker(BrokerOptions::new(&source, JWT_TARGET).mapping("aws.yaml", rules)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nbroker: {}\nlisten: 127.0.0.1:{port}\nsubject_token:\n  aws: {{ server_id: tessera.test, region: us-east-1, endpoint: '{}' }}\ntoken_files:\n  - {{ target: internal-api, path: internal-api.jwt }}\n",
            broker.url,
            moto.url()
        ),
    )
    .unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let role = &moto.principals.role;
    // The real binary, whose AWS SDK default chain finds the role session in its
    // environment, as on a host with ambient credentials.
    let mut cmd = std::process::Command::new(tessera_binary());
    cmd.args(["--log-format", "text", "agent", "--config", config.to_str().unwrap()])
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", &role.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &role.secret_key)
        .env("AWS_CONFIG_FILE", &empty)
        .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(token) = &role.session_token {
        cmd.env("AWS_SESSION_TOKEN", token);
    }
    let _agent = KillOnDrop(cmd.spawn().unwrap());

    let file = dir.path().join("internal-api.jwt");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !file.exists() {
        assert!(std::time::Instant::now() < deadline, "no token file; audit: {}", broker.audit_text());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let claims = verify_with_jwks(&jwks(&broker.url).await, &std::fs::read_to_string(&file).unwrap());
    assert_eq!(claims["sub"], "aws://123456789012/role/payments-api", "{claims}");
    let event = broker.audit_events().pop().unwrap();
    assert_eq!(event["decision"], "allow");
    assert_eq!(event["identity"]["provider"], "aws_iam");
    let health: Value =
        reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    broker.stop().await;
}

/// DNS rebinding: a web page that rebinds its name to 127.0.0.1 can send `Metadata-Flavor`
/// and `Metadata: true` itself, so only its `Host` tells it from an SDK. Every endpoint
/// refuses other hosts before its own checks; the GCE paths also answer to
/// `metadata.google.internal`, and `hosts` adds names.
#[tokio::test(flavor = "multi_thread")]
async fn the_agent_refuses_requests_for_other_hosts_on_every_endpoint() {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let targets = format!(
        "{JWT_TARGET}- name: aws-prod\n  type: aws_sts\n  endpoint: {}\n  insecure_http: true\n  max_ttl: 1h\n  default_ttl: 15m\n  timeout: 2s\n",
        sts.url
    );
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), &targets)
            .mapping("10-aws.yaml", AWS_RULES)
            .mapping("20-services.yaml", RULES),
    )
    .await;
    let agent = spawn_agent(
        &broker.url,
        &subject(&issuer, &*clock_of(&broker), "svc-payments"),
        &format!(
            "hosts: [workload.local]\naws:\n  target: aws-prod\n  scope: {ROLE}\n  authorization_token_file: ecs-token\ngcp:\n  email: vm@payments-prod.iam.gserviceaccount.com\n  id_token_targets: {{ 'https://internal-api.example': internal-api }}\nazure:\n  resources: {{ 'api://internal-api': internal-api }}\n  identity_header_file: identity-header\n  imds: true\n"
        ),
        clock_of(&broker),
    )
    .await;
    agent.wait_ready().await;

    let ecs = ("/v1/aws/credentials", ("authorization", ECS_TOKEN));
    let gce_ping = ("/", ("metadata-flavor", "Google"));
    let gce_identity = (
        "/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://internal-api.example",
        ("metadata-flavor", "Google"),
    );
    let app_service = (
        "/v1/azure/token?resource=api://internal-api&api-version=2019-08-01",
        ("x-identity-header", IDENTITY_HEADER),
    );
    let imds = (
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://internal-api",
        ("metadata", "true"),
    );
    let health = ("/healthz", ("accept", "*/*"));
    let misdirected = serde_json::json!({
        "error": "misdirected_request",
        "message": "this listener answers only to a loopback address, localhost or a host name it is configured with",
    });
    let port = agent.host().rsplit(':').next().unwrap().to_string();
    let evil_port = format!("evil.example:{port}");
    let workload = format!("workload.local:{port}");
    for (path, secret) in [ecs, gce_ping, gce_identity, app_service, imds, health] {
        let (status, _, body) = agent.get(path, &[secret]).await;
        assert_eq!(status, 200, "{path} from loopback: {body}");
        for host in [
            "evil.example",
            evil_port.as_str(),
            "127.0.0.1.evil.example",
            "metadata.google.internal.evil.example",
        ] {
            let (status, headers, body) = agent.get(path, &[secret, ("host", host)]).await;
            assert_eq!(status, 421, "{path} for {host}: {body}");
            assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), misdirected, "{path}");
            assert_eq!(headers["cache-control"], "no-store");
        }
        let (status, _, body) = agent.get(path, &[secret, ("host", workload.as_str())]).await;
        assert_eq!(status, 200, "{path} for a configured name: {body}");
        let gce = path == "/" || path.starts_with("/computeMetadata/");
        let (status, _, body) = agent.get(path, &[secret, ("host", "metadata.google.internal")]).await;
        assert_eq!(status, if gce { 200 } else { 421 }, "{path} for metadata.google.internal: {body}");
    }
    agent.stop().await;
    broker.stop().await;
}
