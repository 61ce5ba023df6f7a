//! How many RFC 7662 introspections per second one broker answers (`POST /v1/introspect`,
//! public listener, HTTP/1.1 keep-alive from a pool of concurrent clients), first with no
//! revocation in force, then with 200 revocations of other workloads and a rule revocation
//! whose tokens were found in the audit store. Each call verifies the client's token and
//! the token asked about.
//!
//!     cargo bench -p tessera-tests --bench introspect [-- SECONDS]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // bench code

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tessera_adapters::Clock as _;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

const SOURCE: &str = "- name: corp\n  type: oidc\n  issuer: {}\n  audiences: [tessera]\n  insecure_http: true\n  max_token_lifetime: 1h\n  leeway: 30s\n";
const TARGETS: &str = "- name: internal-api\n  type: jwt\n  audience: https://internal-api.example\n  max_ttl: 1h\n  default_ttl: 15m\n- name: introspect\n  type: jwt\n  audience: https://tessera.example/introspect\n  max_ttl: 1h\n  default_ttl: 1h\n";
const RULES: &str = "version: 1\nrules:\n  - name: services\n    match: { source: corp, subject: \"svc-*\" }\n    grant: { target: internal-api, ttl: 10m }\n  - name: others\n    match: { source: corp, subject: \"other-*\" }\n    grant: { target: internal-api, ttl: 10m }\n  - name: clients\n    match: { source: corp, subject: \"rs-*\" }\n    grant: { target: introspect, ttl: 1h }\n";
const CLIENTS: usize = 16;

async fn issued(issuer: &TestIssuer, broker: &TestBroker, sub: &str, audience: &str) -> String {
    let token = issuer.key(0).sign(&issuer.claims(sub, "tessera", broker.clock.now()));
    let (status, body) = broker.exchange(&token, audience).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// Introspections answered per second over `seconds`, and that every answer was `active`.
async fn measure(broker: &TestBroker, client: &str, token: &str, seconds: u64) -> (f64, bool) {
    let url = format!("{}/v1/introspect", broker.url);
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (url, client, token, done) =
            (url.clone(), client.to_string(), token.to_string(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut all_active = true;
            while Instant::now() < until {
                let answer: serde_json::Value = http
                    .post(&url)
                    .bearer_auth(&client)
                    .form(&[("token", token.as_str())])
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                all_active &= answer["active"] == true;
                done.fetch_add(1, Ordering::Relaxed);
            }
            all_active
        }));
    }
    let started = Instant::now();
    let mut all_active = true;
    for task in tasks {
        all_active &= task.await.unwrap();
    }
    (done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(), all_active)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let seconds: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5);
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let source = SOURCE.replace("{}", issuer.url());
    let mut options = BrokerOptions::new(&source, TARGETS).mapping("10-rules.yaml", RULES).with_admin();
    options.extra = "introspection:\n  clients: [introspect]\n".into();
    let broker = spawn_broker(options).await;
    let client = issued(&issuer, &broker, "rs-gateway", "introspect").await;
    let token = issued(&issuer, &broker, "svc-payments", "internal-api").await;

    let (rate, active) = measure(&broker, &client, &token, seconds).await;
    assert!(active);
    println!("introspection, no revocation: {rate:.0} introspections/s ({CLIENTS} concurrent clients)");

    let admin = broker.admin_url.clone().unwrap();
    for i in 0..10 {
        issued(&issuer, &broker, &format!("other-{i}"), "internal-api").await;
    }
    let mut revocations = vec![json!({ "kind": "rule", "rule": "others" })];
    revocations
        .extend((0..200).map(|i| json!({ "kind": "identity", "id": format!("oidc://corp/retired-{i}") })));
    for matcher in revocations {
        let made = broker
            .http
            .post(format!("{admin}/v1/revocations"))
            .json(&json!({ "match": matcher, "reason": "bench" }))
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 201);
    }
    let (rate, active) = measure(&broker, &client, &token, seconds).await;
    assert!(active);
    println!(
        "introspection, 201 revocations in force: {rate:.0} introspections/s ({CLIENTS} concurrent clients)"
    );
}
