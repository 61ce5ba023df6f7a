//! Impact replay over a large history: a SQLite audit store holding EVENTS recorded
//! requests (default 1,000,000) of 2,000 workloads, read back read-only and decided by the
//! current and a proposed set of 400 rules (`tessera mappings diff`). Prints events/s for
//! the whole replay (store read + both decisions) and for the decisions alone.
//!
//!     cargo bench -p tessera-broker --bench replay [-- EVENTS]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // bench code

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tessera_adapters::Identity;
use tessera_broker::audit::store::AuditStore;
use tessera_broker::audit::store::history::History;
use tessera_broker::audit::{AuditEvent, Decision, IdentityJson};
use tessera_broker::config::{AuditStoreConfig, SecretUrl};
use tessera_broker::mapping::{Catalog, Impact, MappingSet, Recorded, SourceInfo, TargetInfo};
use tessera_broker::metrics::Metrics;

const WORKLOADS: usize = 2000;
const TEAMS: usize = 200;
const START_MS: i64 = 1_790_000_000_000;

fn catalog() -> Catalog {
    Catalog {
        targets: vec![TargetInfo::plain_jwt("api"), TargetInfo::plain_jwt("reports")],
        sources: vec![SourceInfo { name: "eks-prod".into(), kind: "kubernetes".into() }],
    }
}

/// Two rules per team (one per target). The proposed set tightens every 10th team's API
/// rule to one workload, drops every 25th team's reports rule and shortens every 7th
/// team's TTL.
fn rules(proposed: bool) -> String {
    let mut text = String::from("version: 1\nrules:\n");
    for team in 0..TEAMS {
        let name =
            if proposed && team.is_multiple_of(10) { "svc-0".to_string() } else { "svc-*".to_string() };
        let ttl = if proposed && team.is_multiple_of(7) { "5m" } else { "10m" };
        writeln!(
            text,
            "  - name: api-{team}\n    match: {{ source: eks-prod, namespace: team-{team}, name: \"{name}\" }}\n    grant: {{ target: api, ttl: {ttl}, claims: {{ team: \"{{namespace}}\" }} }}"
        )
        .unwrap();
        if !(proposed && team.is_multiple_of(25)) {
            writeln!(
                text,
                "  - name: reports-{team}\n    match: {{ source: eks-prod, namespace: team-{team} }}\n    when: 'identity.attributes[\"env\"] == \"prod\"'\n    grant: {{ target: reports }}"
            )
            .unwrap();
        }
    }
    text
}

fn identity(i: usize) -> Identity {
    let (namespace, name) = (format!("team-{}", i % TEAMS), format!("svc-{}", i / TEAMS));
    Identity {
        id: format!("k8s://eks-prod/ns/{namespace}/sa/{name}"),
        provider: "kubernetes".into(),
        source: "eks-prod".into(),
        issuer: "https://oidc.eks.example/id/0123".into(),
        subject: format!("system:serviceaccount:{namespace}:{name}"),
        tenant: Some("eks-prod".into()),
        namespace: Some(namespace),
        name: Some(name),
        instance: Some(format!("pod-{i}")),
        region: Some("eu-west-1".into()),
        attributes: BTreeMap::from([
            ("env".to_string(), "prod".to_string()),
            ("k8s.pod_uid".to_string(), format!("5b0e4a3e-0000-4000-8000-{i:012}")),
        ]),
        withheld: Default::default(),
        expires_at: 1_900_000_000,
    }
}

fn event(n: usize, identity: &IdentityJson, id: &str) -> AuditEvent {
    let time_ms = START_MS + i64::try_from(n).unwrap();
    AuditEvent {
        event_id: None,
        time_ms,
        time: String::new(),
        request_id: format!("r{n}"),
        decision: Decision::Allow,
        reason: "TS-OK".into(),
        detail: None,
        source: Some("eks-prod".into()),
        identity_id: Some(id.to_string()),
        identity: Some(identity.clone()),
        actor_id: None,
        actor: None,
        target: if n.is_multiple_of(3) { "reports".into() } else { "api".into() },
        scope: None,
        rule: None,
        cache: None,
        issued_ttl: Some(600),
        subject_token_fingerprint: "sha256:00".into(),
        actor_token_fingerprint: None,
        issued_token_fingerprint: None,
        client_addr: Some("10.0.0.7".into()),
        latency_ms: 1.0,
    }
}

/// Fill a fresh store with `events` events, written as a busy broker would.
async fn fill(url: &SecretUrl, events: usize) {
    // A long commit timeout: the bench measures replay, not how the writer keeps up.
    let config = AuditStoreConfig { timeout: Duration::from_secs(60), ..AuditStoreConfig::default() };
    let store = AuditStore::open(&config, url, Arc::new(Metrics::new()), true).await.unwrap();
    let identities: Vec<(IdentityJson, String)> =
        (0..WORKLOADS).map(identity).map(|i| (IdentityJson::new(&i).unwrap(), i.id)).collect();
    futures::stream::iter(0..events)
        .for_each_concurrent(1024, |n| {
            let (json, id) = &identities[n % WORKLOADS];
            let event = event(n, json, id);
            let store = store.clone();
            async move { store.write(&event).await.unwrap() }
        })
        .await;
}

#[tokio::main]
async fn main() {
    let events: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let catalog = catalog();
    let load = |proposed| {
        MappingSet::load_files(&[(PathBuf::from("rules.yaml"), rules(proposed))], &catalog).unwrap()
    };
    let (current, proposed) = (load(false), load(true));
    let dir = tempfile::tempdir().unwrap();
    let url = SecretUrl::new(format!("sqlite://{}", dir.path().join("audit.db").display()));
    let started = Instant::now();
    fill(&url, events).await;
    println!("recorded {events} events in {:.1?}", started.elapsed());

    let history = History::open(&AuditStoreConfig::default(), &url).await.unwrap();
    let started = Instant::now();
    let mut impact = Impact::new(&current, &proposed);
    let folding = impact.folding();
    let skipped = history.requests(0, folding, |r| impact.add(r)).await.unwrap();
    let report = impact.report(skipped);
    let elapsed = started.elapsed();
    assert_eq!(report.replayed, events as u64);
    assert!(!report.changes.is_empty());
    println!(
        "replayed {} events (store read + current and proposed decisions) in {elapsed:.2?}: {:.0} events/s; {} change lines",
        report.replayed,
        report.replayed as f64 / elapsed.as_secs_f64(),
        report.changes.len()
    );

    let identities: Vec<Identity> = (0..WORKLOADS).map(identity).collect();
    let started = Instant::now();
    let mut impact = Impact::new(&current, &proposed);
    for n in 0..events {
        let target = if n.is_multiple_of(3) { "reports" } else { "api" };
        let time_ms = START_MS + i64::try_from(n).unwrap();
        let identity = &identities[n % WORKLOADS];
        impact.add(&Recorded {
            time_ms,
            exchanges: 1,
            identity,
            audience: target,
            scope: None,
            client_addr: Some("10.0.0.7"),
        });
    }
    let elapsed = started.elapsed();
    println!(
        "decided {events} recorded requests by both sets alone in {elapsed:.2?}: {:.0} events/s",
        events as f64 / elapsed.as_secs_f64()
    );
}
