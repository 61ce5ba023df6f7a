//! What the operator console's pages cost on the embedded SQLite store: a store holding
//! EVENTS audit events (default 1,000,000) of WORKLOADS workloads (default 10,000), all in
//! the last hour, served by the real broker; each page is fetched over HTTP from the admin
//! listener (query + render + transfer), RUNS times, and the median and slowest printed.
//!
//!     cargo bench -p tessera-tests --bench console [-- EVENTS WORKLOADS RUNS]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // bench code

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tessera_adapters::{Clock as _, Identity, ManualClock};
use tessera_broker::audit::store::AuditStore;
use tessera_broker::audit::{AuditEvent, Decision, IdentityJson};
use tessera_broker::config::{AuditStoreConfig, SecretUrl};
use tessera_broker::metrics::Metrics;
use tessera_tests::{BrokerOptions, TestIssuer, TestKey, spawn_broker};

const TARGET: &str =
    "- name: api\n  type: jwt\n  audience: https://api.example\n  max_ttl: 1h\n  default_ttl: 15m\n";
const RULES: &str =
    "version: 1\nrules:\n  - name: services\n    match: { source: corp }\n    grant: { target: api }\n";

fn identity(i: usize) -> Identity {
    let namespace = format!("team-{}", i % 200);
    Identity {
        id: format!("oidc://corp/{namespace}/svc-{i}"),
        provider: "oidc".into(),
        source: "corp".into(),
        issuer: "https://idp.example".into(),
        subject: format!("svc-{i}"),
        tenant: Some("corp".into()),
        namespace: Some(namespace.clone()),
        name: Some(format!("svc-{i}")),
        instance: None,
        region: None,
        attributes: BTreeMap::from([("oidc.team".to_string(), namespace)]),
        withheld: Default::default(),
        expires_at: 1_900_000_000,
    }
}

fn event(n: usize, start_ms: i64, identity: &(IdentityJson, String)) -> AuditEvent {
    let deny = n.is_multiple_of(10);
    AuditEvent {
        event_id: None,
        time_ms: start_ms + i64::try_from(n / 300).unwrap(),
        time: String::new(),
        request_id: format!("r{n}"),
        decision: if deny { Decision::Deny } else { Decision::Allow },
        reason: if deny { "TS-MAP-DENIED".into() } else { "TS-OK".into() },
        detail: None,
        source: Some("corp".into()),
        identity_id: Some(identity.1.clone()),
        identity: Some(identity.0.clone()),
        actor_id: None,
        actor: None,
        target: "api".into(),
        scope: None,
        rule: Some(if deny { "no-batch".into() } else { format!("rule-{}", n % 50) }),
        cache: None,
        issued_ttl: (!deny).then_some(600),
        subject_token_fingerprint: "sha256:00".into(),
        actor_token_fingerprint: None,
        issued_token_fingerprint: (!deny).then(|| tessera_adapters::secret::fingerprint(&n.to_le_bytes())),
        client_addr: Some("10.0.0.7".into()),
        latency_ms: 1.0 + (n % 7) as f64,
    }
}

async fn fill(url: &SecretUrl, events: usize, workloads: usize, start_ms: i64) {
    let config = AuditStoreConfig { timeout: Duration::from_secs(120), ..AuditStoreConfig::default() };
    let store = AuditStore::open(&config, url, Arc::new(Metrics::new()), true).await.unwrap();
    let identities: Vec<(IdentityJson, String)> =
        (0..workloads).map(identity).map(|i| (IdentityJson::new(&i).unwrap(), i.id)).collect();
    futures::stream::iter(0..events)
        .for_each_concurrent(2048, |n| {
            let event = event(n, start_ms, &identities[n % workloads]);
            let store = store.clone();
            async move { store.write(&event).await.unwrap() }
        })
        .await;
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args().filter(|a| !a.starts_with('-')).nth(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let (events, workloads, runs) = (arg(1, 1_000_000), arg(2, 10_000), arg(3, 9));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let url = SecretUrl::new(format!("sqlite://{}", db.display()));
    let clock = Arc::new(ManualClock::starting_now());
    // Every event in the last hour, the newest a few seconds ago.
    let start_ms = clock.now_millis() - i64::try_from(events / 300).unwrap() - 5_000;
    let filled = Instant::now();
    fill(&url, events, workloads, start_ms).await;
    println!("filled {events} events of {workloads} workloads in {:.1} s", filled.elapsed().as_secs_f64());

    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let mut options =
        BrokerOptions::new(&tessera_tests_oidc(&issuer), TARGET).mapping("10-rules.yaml", RULES).with_admin();
    options.audit = format!("store:\n  url: {}\n", url.expose());
    options.clock = clock;
    let broker = spawn_broker(options).await;
    let admin = broker.admin_url.clone().unwrap();
    let pages = [
        ("directory, first page", "/ui/workloads"),
        ("directory, search", "/ui/workloads?q=svc-12"),
        ("directory, attribute", "/ui/workloads?attribute=oidc.team%3Dteam-7"),
        ("audit, first page", "/ui/audit"),
        ("audit, denied only", "/ui/audit?decision=deny"),
        ("audit, one workload", "/ui/audit?identity=oidc%3A%2F%2Fcorp%2Fteam-7%2Fsvc-7"),
        ("rules", "/ui/rules"),
        ("overview (all events in its hour)", "/ui/"),
        ("graph, 1 h, top 25", "/ui/graph?window=1h"),
        ("graph, 7 d, top 25", "/ui/graph?window=7d"),
        ("graph, 24 h, one attribute", "/ui/graph?window=24h&attribute=oidc.team%3Dteam-7"),
    ];
    let http = reqwest::Client::new();
    println!("{:<36} {:>10} {:>10}", "page", "median", "slowest");
    for (name, path) in pages {
        let mut took = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let response = http.get(format!("{admin}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            let body = response.text().await.unwrap();
            took.push(started.elapsed());
            assert!(body.contains("</html>"));
        }
        took.sort();
        println!(
            "{name:<36} {:>8.1}ms {:>8.1}ms",
            took[took.len() / 2].as_secs_f64() * 1e3,
            took[took.len() - 1].as_secs_f64() * 1e3
        );
    }
    broker.stop().await;
}

/// The `oidc` source of the integration tests, trusting `issuer`.
fn tessera_tests_oidc(issuer: &TestIssuer) -> String {
    format!(
        "- name: corp\n  type: oidc\n  issuer: {}\n  audiences: [tessera]\n  insecure_http: true\n",
        issuer.url()
    )
}
