//! The `gcp` and `azure` targets end to end, against the testkit's fakes of Google's STS and
//! IAM Credentials APIs and of Entra's token endpoint. The fakes verify every JWT Tessera
//! presents the way the real services do: discovery at the `iss`, then its JWKS.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera_adapters::Clock;
use tessera_tests::entra::{FakeEntra, FederatedCredential};
use tessera_tests::google::{FakeGoogle, WorkloadIdentityProvider};
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::{last_reason, oidc_source};

const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const PROVIDER: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/tessera";
const SERVICE_ACCOUNT: &str = "app@payments-prod.iam.gserviceaccount.com";
const STORAGE_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const GRAPH: &str = "https://graph.microsoft.com/.default";

const GCP_RULES: &str = r#"version: 1
rules:
  - name: payments-reads-buckets
    match: { source: corp, subject: "svc-*" }
    grant:
      target: gcp-prod
      service_account: app@payments-prod.iam.gserviceaccount.com
      scopes: https://www.googleapis.com/auth/devstorage.read_only
      ttl: 30m
"#;

const AZURE_RULES: &str = r#"version: 1
rules:
  - name: payments-calls-graph
    match: { source: corp, subject: "svc-*" }
    grant:
      target: graph
      scope: https://graph.microsoft.com/.default
"#;

/// A broker trusting `issuer`, with `targets` and `rules`, on a clock the fake shares.
async fn broker_with(
    issuer: &TestIssuer,
    clock_user: impl FnOnce(Arc<dyn Clock>) -> String,
    rules: &str,
) -> TestBroker {
    let mut options = BrokerOptions::new(&oidc_source(issuer), "");
    options.targets = clock_user(options.clock.clone());
    spawn_broker(options.mapping("10-rules.yaml", rules)).await
}

fn token(issuer: &TestIssuer, broker: &TestBroker, sub: &str) -> String {
    issuer.key(0).sign(&issuer.claims(sub, "tessera", broker.clock.now()))
}

/// A broker with the `gcp-prod` target, its endpoints a fake Google's, and `rules`.
async fn gcp_broker(issuer: &TestIssuer, rules: &str) -> (FakeGoogle, TestBroker) {
    let mut fake = None;
    let broker = broker_with(
        issuer,
        |clock| {
            let google = FakeGoogle::start(Vec::new(), clock);
            let target = format!(
                "- name: gcp-prod\n  type: gcp\n  provider: {PROVIDER}\n  sts_endpoint: {url}\n  iamcredentials_endpoint: {url}\n  insecure_http: true\n  timeout: 2s\n",
                url = google.url()
            );
            fake = Some(google);
            target
        },
        rules,
    )
    .await;
    (fake.unwrap(), broker)
}

async fn gcp_setup() -> (TestIssuer, FakeGoogle, TestBroker) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let (google, broker) = gcp_broker(&issuer, GCP_RULES).await;
    // The provider trusts the broker's issuer URL, known once it listens.
    let provider = WorkloadIdentityProvider::new(PROVIDER, &broker.url);
    google.allow_impersonation(&provider.principal("oidc://corp/svc-payments"), SERVICE_ACCOUNT);
    google.add_provider(provider);
    (issuer, google, broker)
}

#[tokio::test(flavor = "multi_thread")]
async fn gcp_exchanges_at_google_sts_then_impersonates_the_service_account() {
    let (issuer, google, broker) = gcp_setup().await;
    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-payments"), "gcp-prod").await;
    assert_eq!(status, 200, "{body}\n{:?}", google.refusals());
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 1800, "the rule's ttl is the impersonation lifetime");

    let issued = google.issued_access_tokens();
    let impersonated = issued.iter().find(|t| t.service_account.is_some()).unwrap();
    assert_eq!(body["access_token"], impersonated.access_token.as_str());
    assert_eq!(impersonated.service_account.as_deref(), Some(SERVICE_ACCOUNT));
    assert_eq!(impersonated.scopes, vec![STORAGE_SCOPE.to_string()]);

    let sts = google.last_sts_request().unwrap();
    assert_eq!(sts.field("audience"), Some(PROVIDER));
    assert_eq!(
        sts.field("scope"),
        Some("https://www.googleapis.com/auth/cloud-platform"),
        "the federated token only has to call generateAccessToken"
    );
    let claims = sts.claims.as_ref().expect("the fake verified the subject token");
    assert_eq!(claims["iss"], broker.url);
    assert_eq!(claims["sub"], "oidc://corp/svc-payments");
    assert_eq!(claims["aud"], format!("https:{PROVIDER}"), "the provider's default audience");
    let generate = google.last_generate_request().unwrap();
    assert_eq!(generate.service_account, SERVICE_ACCOUNT);
    assert_eq!(generate.body.as_ref().unwrap()["lifetime"], "1800s");

    let event = broker.audit_events().pop().unwrap();
    assert_eq!(event["decision"], "allow");
    assert_eq!(event["cache"], "miss");
    assert_eq!(event["scope"], SERVICE_ACCOUNT);
    let audit = broker.audit_text();
    for t in &issued {
        assert!(!audit.contains(&t.access_token), "no Google token in the audit log");
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcp_serves_a_hundred_concurrent_exchanges_with_one_call_to_each_api() {
    let (issuer, google, broker) = gcp_setup().await;
    google.faults().set_delay(Duration::from_millis(300));
    let token = token(&issuer, &broker, "svc-payments");
    let answers = futures::future::join_all((0..100).map(|_| broker.exchange(&token, "gcp-prod"))).await;
    let tokens: std::collections::HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["access_token"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!((google.sts_calls(), google.generate_calls()), (1, 1));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcp_refusals_and_outages_reach_the_caller_as_rfc_6749_errors() {
    let (issuer, google, broker) = gcp_setup().await;
    // No IAM binding lets this identity impersonate the service account.
    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-ledger"), "gcp-prod").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_target");
    let event = broker.audit_events().pop().unwrap();
    assert_eq!(event["reason"], "TS-TGT-UPSTREAM-REJECTED");
    assert_eq!(event["detail"], "upstream refused: IAM Credentials: PERMISSION_DENIED");

    // 503 twice, then served: retried within max_attempts.
    google.fail_next_sts(2, 503);
    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-payments"), "gcp-prod").await;
    assert_eq!(status, 200, "{body}");

    google.faults().set_down(true);
    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-other"), "gcp-prod").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(last_reason(&broker), "TS-TGT-UPSTREAM");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcp_only_a_failure_a_retry_may_fix_comes_with_retry_after() {
    let (issuer, google, broker) = gcp_setup().await;
    google.faults().set_down(true);
    let (status, headers, body) =
        broker.exchange_with_headers(&token(&issuer, &broker, "svc-payments"), "gcp-prod").await;
    assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    assert_eq!(headers.get("retry-after").unwrap(), "5");
    google.faults().set_down(false);

    // A status Google STS never answers a token exchange with: not retried, and the caller
    // is not told to retry either.
    let calls = google.sts_calls();
    google.fail_next_sts(1, 404);
    let (status, headers, body) =
        broker.exchange_with_headers(&token(&issuer, &broker, "svc-payments"), "gcp-prod").await;
    assert_eq!(
        (status, body),
        (
            503,
            serde_json::json!({
                "error": "temporarily_unavailable",
                "error_description": "A service Tessera depends on gave an answer Tessera cannot use.",
            })
        )
    );
    assert!(!headers.contains_key("retry-after"), "{headers:?}");
    assert_eq!(google.sts_calls(), calls + 1, "not retried");
    let event = broker.audit_events().pop().unwrap();
    assert_eq!(
        (event["decision"].as_str(), event["reason"].as_str()),
        (Some("error"), Some("TS-TGT-UPSTREAM"))
    );
    assert_eq!(event["detail"], "upstream failure: Google STS answered 404");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcp_a_templated_service_account_google_would_refuse_is_invalid_target_before_any_call() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let rules =
        GCP_RULES.replace(SERVICE_ACCOUNT, "\"{attributes.oidc.sa}@payments-prod.iam.gserviceaccount.com\"");
    let (google, broker) = gcp_broker(&issuer, &rules).await;
    for sa in ["App", "app/../other", "app name"] {
        let mut claims = issuer.claims("svc-payments", "tessera", broker.clock.now());
        claims["sa"] = serde_json::json!(sa);
        let (status, body) = broker.exchange(&issuer.key(0).sign(&claims), "gcp-prod").await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")), "{sa}: {body}");
        let event = broker.audit_events().pop().unwrap();
        assert_eq!(
            (event["decision"].as_str(), event["reason"].as_str()),
            (Some("deny"), Some("TS-TGT-INVALID-GRANT"))
        );
        assert!(event["detail"].as_str().unwrap().contains("is not a service account email"), "{event}");
    }
    assert_eq!((google.sts_calls(), google.generate_calls()), (0, 0), "Google never saw them");
    broker.stop().await;
}

/// A rule for direct resource access (no service account), for workloads whose ids are
/// longer than Google's 127-byte `google.subject`.
const GCP_DIRECT_RULES: &str = r#"version: 1
rules:
  - name: pipelines-read-ledger
    match: { source: corp, subject: "pipeline-*" }
    grant: { target: gcp-prod, scopes: https://www.googleapis.com/auth/devstorage.read_only }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn gcp_a_long_identity_is_compacted_to_googles_127_bytes_with_its_full_id_beside() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let (google, broker) = gcp_broker(&issuer, GCP_DIRECT_RULES).await;
    google.add_provider(WorkloadIdentityProvider::new(PROVIDER, &broker.url));
    let sub = format!("pipeline-{}", "nightly-reconciliation-of-ledger-entries-".repeat(4));
    let id = format!("oidc://corp/{sub}");
    assert!(id.len() > 127);

    let (status, body) = broker.exchange(&token(&issuer, &broker, &sub), "gcp-prod").await;
    assert_eq!(status, 200, "{body}\n{:?}", google.refusals());
    let compact = tessera_adapters::targets::gcp::google_subject(&id);
    let claims = google.last_sts_request().unwrap().claims.expect("the fake verified the subject token");
    assert_eq!(claims["sub"], compact.as_ref(), "google.subject fits");
    assert_eq!(compact.len(), 127);
    assert!(id.starts_with(compact.split('~').next().unwrap()), "a readable prefix: {compact}");
    assert_eq!(claims["tessera_id"], id.as_str(), "the full id, for attribute.tessera_id");
    assert_eq!(claims["tessera_rule"], "pipelines-read-ledger", "for attribute.tessera_rule");
    // The federated token is the credential: its principal is the compacted subject's.
    let issued = google.issued_access_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(body["access_token"], issued[0].access_token.as_str());
    let provider = WorkloadIdentityProvider::new(PROVIDER, &broker.url);
    assert_eq!(issued[0].principal, provider.principal(&compact));

    // Another long id sharing the first 83 bytes gets a subject of its own.
    let other = format!("{sub}x");
    let (status, _) = broker.exchange(&token(&issuer, &broker, &other), "gcp-prod").await;
    assert_eq!(status, 200);
    let claims = google.last_sts_request().unwrap().claims.unwrap();
    assert_ne!(claims["sub"], compact.as_ref());
    assert_eq!(claims["sub"].as_str().unwrap().len(), 127);
    broker.stop().await;
}

async fn azure_setup() -> (TestIssuer, FakeEntra, TestBroker) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let (entra, broker) = azure_broker(&issuer, AZURE_RULES).await;
    entra.add_federated_credential(
        TENANT,
        CLIENT_ID,
        FederatedCredential::new(&broker.url, "oidc://corp/svc-payments"),
    );
    (issuer, entra, broker)
}

/// A broker with the `graph` target, its authority a fake Entra's, and `rules`.
async fn azure_broker(issuer: &TestIssuer, rules: &str) -> (FakeEntra, TestBroker) {
    let mut fake = None;
    let broker = broker_with(
        issuer,
        |clock| {
            let entra = FakeEntra::start(clock);
            let target = format!(
                "- name: graph\n  type: azure\n  tenant: {TENANT}\n  client_id: {CLIENT_ID}\n  authority: {}\n  insecure_http: true\n  timeout: 2s\n",
                entra.url()
            );
            fake = Some(entra);
            target
        },
        rules,
    )
    .await;
    (fake.unwrap(), broker)
}

/// Two rules for two groups of workloads, one subject: one federated identity credential
/// on the application serves them all, and Tessera decides per workload.
const AZURE_SHARED_SUBJECT_RULES: &str = r#"version: 1
rules:
  - name: payments-calls-graph
    match: { source: corp, subject: "svc-payments-*" }
    grant: { target: graph, scope: https://graph.microsoft.com/.default, subject: tessera-graph }
  - name: ledger-calls-graph
    match: { source: corp, subject: "svc-ledger-*" }
    grant: { target: graph, scope: https://graph.microsoft.com/.default, subject: tessera-graph }
"#;

/// The federated identity credentials `tessera trust graph --format az` prints for the
/// broker's own config and rules, as Python's shlex splits the commands: `--parameters`.
fn printed_credentials(broker: &TestBroker) -> Vec<Value> {
    use tessera_broker::trust::{self, Format};
    let loaded = tessera_broker::config::load(&broker.path().join("broker.yaml")).unwrap();
    let adapters = tessera_broker::Adapters::build(&loaded, broker.clock.clone()).unwrap();
    let set =
        tessera_broker::mapping::MappingSet::load_dir(&loaded.mappings_dir(), &adapters.catalog).unwrap();
    let text = trust::render(&loaded, &set, "graph", Some(Format::Az)).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let words = tessera_tests::python::run("trust_peer.py", &["shell", file.path().to_str().unwrap()]);
    let commands: Vec<Vec<String>> = serde_json::from_str(&words).unwrap();
    commands
        .iter()
        .map(|c| {
            assert_eq!(c[..7].join(" "), format!("az ad app federated-credential create --id {CLIENT_ID}"));
            serde_json::from_str(&c[8]).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_one_federated_credential_serves_every_workload_its_rules_allow() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let (entra, broker) = azure_broker(&issuer, AZURE_SHARED_SUBJECT_RULES).await;
    let credentials = printed_credentials(&broker);
    assert_eq!(credentials.len(), 1, "one credential for both rules: {credentials:?}");
    let printed = &credentials[0];
    assert_eq!(printed["subject"], "tessera-graph");
    assert_eq!(printed["issuer"], broker.url.as_str());
    assert_eq!(printed["audiences"], serde_json::json!(["api://AzureADTokenExchange"]));
    assert_eq!(printed["description"], "Tessera rules ledger-calls-graph, payments-calls-graph");
    // Entra holds exactly what was printed.
    entra.add_federated_credential(
        TENANT,
        CLIENT_ID,
        FederatedCredential::new(printed["issuer"].as_str().unwrap(), printed["subject"].as_str().unwrap()),
    );

    let mut tokens = Vec::new();
    for workload in ["svc-payments-api", "svc-payments-worker", "svc-ledger-api"] {
        let (status, body) = broker.exchange(&token(&issuer, &broker, workload), "graph").await;
        assert_eq!(status, 200, "{workload}: {body}\n{:?}", entra.refusals());
        let claims = entra.last_token_request().unwrap().claims.unwrap();
        assert_eq!(claims["sub"], "tessera-graph", "{workload}");
        let event = broker.audit_events().pop().unwrap();
        assert_eq!(
            event["identity"]["id"],
            format!("oidc://corp/{workload}"),
            "the audit names the workload"
        );
        assert_eq!(
            event["rule"],
            if workload.starts_with("svc-ledger") { "ledger-calls-graph" } else { "payments-calls-graph" }
        );
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    // Both payments workloads ask Entra for the same thing (the assertion's `sub` is the
    // rule's subject, not the workload): one call, one cached token. The ledger rule's
    // request differs by its rule, so it has its own.
    assert_eq!(entra.token_calls(), 2);
    assert_eq!(tokens[0], tokens[1]);
    assert_ne!(tokens[0], tokens[2]);
    // The per-workload decision is Tessera's: a workload no rule names never reaches Entra.
    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-search-api"), "graph").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")));
    assert_eq!(entra.token_calls(), 2, "Entra never saw it");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_presents_a_client_assertion_entra_accepts_for_the_federated_credential() {
    let (issuer, entra, broker) = azure_setup().await;
    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-payments"), "graph").await;
    assert_eq!(status, 200, "{body}\n{:?}", entra.refusals());
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");
    let issued = entra.issued_access_tokens().pop().unwrap();
    assert_eq!(body["access_token"], issued.access_token.as_str());
    assert_eq!(body["expires_in"], issued.expires_at - broker.clock.now());
    assert_eq!((issued.tenant.as_str(), issued.client_id.as_str()), (TENANT, CLIENT_ID));
    assert_eq!(issued.scope, GRAPH);

    let request = entra.last_token_request().unwrap();
    assert_eq!(request.field("grant_type"), Some("client_credentials"));
    let claims: &Value = request.claims.as_ref().expect("the fake verified the assertion");
    assert_eq!(claims["sub"], "oidc://corp/svc-payments");
    assert_eq!(claims["aud"], "api://AzureADTokenExchange");
    assert_eq!(claims["iss"], broker.url);
    assert_eq!(broker.audit_events().pop().unwrap()["cache"], "miss");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_serves_a_hundred_concurrent_exchanges_with_one_token_request() {
    let (issuer, entra, broker) = azure_setup().await;
    entra.faults().set_delay(Duration::from_millis(300));
    let token = token(&issuer, &broker, "svc-payments");
    let answers = futures::future::join_all((0..100).map(|_| broker.exchange(&token, "graph"))).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{:?}", answers.first());
    assert_eq!(entra.token_calls(), 1);
    let events = broker.audit_events();
    assert_eq!(events.iter().filter(|e| e["cache"] == "hit").count(), 99);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_refusals_name_the_aadsts_code_only_in_the_audit_record() {
    let (issuer, entra, broker) = azure_setup().await;
    // No federated credential names this subject.
    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-ledger"), "graph").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_target");
    assert!(!body.to_string().contains("AADSTS"), "{body}");
    let event = broker.audit_events().pop().unwrap();
    assert_eq!(event["reason"], "TS-TGT-UPSTREAM-REJECTED");
    assert_eq!(event["detail"], "upstream refused: Entra: invalid_client AADSTS700213");
    assert_eq!(entra.token_calls(), 1, "a refusal is not retried");

    entra.fail_next(2, 503);
    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-payments"), "graph").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(entra.token_calls(), 4);
    broker.stop().await;
}
