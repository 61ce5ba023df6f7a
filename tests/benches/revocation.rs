//! How long a revocation made on one replica takes to be enforced by another, by the store
//! poll alone and with Redis publish/subscribe.
//!
//! Two real brokers share one PostgreSQL audit store (the machine's server) and one key
//! directory; in the second configuration they also share the machine's Redis
//! (127.0.0.1:6379), so the replica that makes a revocation announces it and the other
//! reads the store at once instead of at its next poll. For each round a revocation of one
//! workload is made on replica A's admin API; replica B is then asked to exchange that
//! workload's token back to back until it refuses. Two times are taken from A's answer:
//! until B's set of revocations in force holds it (looked at every millisecond, in
//! process), and until B's first refusal (which also counts the exchange in flight when the
//! set changed). Each round revokes a different workload, at a random point of B's poll
//! cycle. Prints the minimum, median, 99th percentile and maximum over the rounds, per
//! configuration.
//!
//! Then the whole path to a workload, in both configurations: a real `tessera agent` per
//! round keeps a token file from replica B and holds its revocation watch open there (its
//! periodic check set to an hour, so only the watch can explain a drop); the revocation is
//! made on A, and
//! the time is taken from the request to A (B may act on A's notice before A's answer
//! arrives) until the agent has removed the token file (looked at every millisecond),
//! which it does right after it stops serving the credential.
//!
//!     cargo bench -p tessera-tests --bench revocation [-- ROUNDS]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // bench code

use std::time::{Duration, Instant};

use serde_json::json;
use tessera_adapters::Clock as _;
use tessera_tests::agent::spawn_agent;
use tessera_tests::postgres::TestPostgres;
use tessera_tests::redis::TestRedis;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

const SOURCE: &str = "- name: corp\n  type: oidc\n  issuer: {}\n  audiences: [tessera]\n  insecure_http: true\n  max_token_lifetime: 1h\n  leeway: 30s\n";
const TARGET: &str = "- name: internal-api\n  type: jwt\n  audience: https://internal-api.example\n  max_ttl: 1h\n  default_ttl: 15m\n";
const RULES: &str = "version: 1\nrules:\n  - name: services\n    match: { source: corp, subject: \"svc-*\" }\n    grant: { target: internal-api, ttl: 10m }\n";

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100);
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let redis = TestRedis::new();
    for (name, extra) in [("store poll only", String::new()), ("redis pub/sub", redis.config())] {
        let (enforced, refused) = measure(&issuer, &extra, rounds).await;
        for (what, times) in [("in B's set", enforced), ("B's first refusal", refused)] {
            report(&format!("revocation propagation, {name}, {what}"), &times);
        }
    }
    for (name, extra) in [("store poll only", String::new()), ("redis pub/sub", redis.config())] {
        let dropped = measure_agent(&issuer, &extra, rounds).await;
        report(&format!("revocation to agent drop, revoked on A, agent watching B, {name}"), &dropped);
    }
}

/// Print the minimum, median, 99th percentile and maximum of the sorted `times`.
fn report(what: &str, times: &[Duration]) {
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what}, {} rounds: min {:.1} ms, median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times.len(),
        ms(times[0]),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(times[times.len() - 1])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Two replicas on `db` sharing the key directory `keys` and one clock, with the admin
/// API and `extra` in their config.
async fn replicas(
    issuer: &TestIssuer,
    db: &TestPostgres,
    keys: &tempfile::TempDir,
    extra: &str,
) -> (TestBroker, TestBroker) {
    let source = SOURCE.replace("{}", issuer.url());
    let clock = std::sync::Arc::new(tessera_adapters::ManualClock::starting_now());
    let options = || {
        let mut options = BrokerOptions::new(&source, TARGET)
            .mapping("10-services.yaml", RULES)
            .replica_of("https://tessera.bench.example", keys.path());
        options.clock = std::sync::Arc::clone(&clock);
        options.audit = db.store_config();
        options.extra = extra.to_string();
        options.with_admin()
    };
    (spawn_broker(options()).await, spawn_broker(options()).await)
}

/// The sorted propagation times of `rounds` revocations between two fresh replicas
/// configured with `extra`: until B's set holds each, and until B refuses.
async fn measure(issuer: &TestIssuer, extra: &str, rounds: usize) -> (Vec<Duration>, Vec<Duration>) {
    let db = TestPostgres::new();
    let keys = tempfile::tempdir().unwrap();
    let (a, b) = replicas(issuer, &db, &keys, extra).await;
    // Let B subscribe before the first round.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let admin = a.admin_url.clone().unwrap();
    let (mut enforced, mut refused) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..rounds {
        let sub = format!("svc-{round}");
        let token = issuer.key(0).sign(&issuer.claims(&sub, "tessera", b.clock.now()));
        assert_eq!(b.exchange(&token, "internal-api").await.0, 200);
        let id = b.audit_events().pop().unwrap()["identity"]["id"].as_str().unwrap().to_string();
        let body = json!({ "match": { "kind": "identity", "id": id }, "reason": "bench" });
        let made = a.http.post(format!("{admin}/v1/revocations")).json(&body).send().await.unwrap();
        assert_eq!(made.status(), 201);
        let revoked = Instant::now();
        let made: serde_json::Value = made.json().await.unwrap();
        let made = made["id"].as_str().unwrap().to_string();
        let set = b.broker.pipeline().revocations();
        while !set.all().iter().any(|r| r.id == made) {
            assert!(revoked.elapsed() < Duration::from_secs(30), "replica B never read it");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        enforced.push(revoked.elapsed());
        while b.exchange(&token, "internal-api").await.0 == 200 {
            assert!(revoked.elapsed() < Duration::from_secs(30), "replica B never refused");
        }
        refused.push(revoked.elapsed());
        // Rounds start at random points of B's poll cycle, as revocations do.
        let mut pause = [0u8; 2];
        aws_lc_rs::rand::fill(&mut pause).unwrap();
        tokio::time::sleep(Duration::from_millis(20 + u64::from(u16::from_le_bytes(pause)) % 500)).await;
    }
    a.stop().await;
    b.stop().await;
    enforced.sort();
    refused.sort();
    (enforced, refused)
}

/// The sorted times from a revocation made on A until an agent watching B dropped the
/// revoked credential (its token file removed), over `rounds` agents.
async fn measure_agent(issuer: &TestIssuer, extra: &str, rounds: usize) -> Vec<Duration> {
    let db = TestPostgres::new();
    let keys = tempfile::tempdir().unwrap();
    let (a, b) = replicas(issuer, &db, &keys, extra).await;
    let clock = b.clock.clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let admin = a.admin_url.clone().unwrap();
    let mut dropped = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let sub = format!("svc-agent-{round}");
        let token = issuer.key(0).sign(&issuer.claims(&sub, "tessera", clock.now()));
        // The watches of earlier rounds' agents may still be held until their wait ends.
        let before = b.broker.watches().open();
        let agent = spawn_agent(
            &b.url,
            &token,
            "token_files:\n  - target: internal-api\n    path: internal-api.jwt\n\
             refresh:\n  revocation_check: 1h\n  min_backoff: 100ms\n  max_backoff: 500ms\n",
            clock.clone(),
        )
        .await;
        agent.wait_ready().await;
        let file = agent.dir.path().join("internal-api.jwt");
        let started = Instant::now();
        while b.broker.watches().open() <= before {
            assert!(started.elapsed() < Duration::from_secs(30), "the agent never watched");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let id =
            b.audit_events().into_iter().rev().find(|e| e["decision"] == "allow").unwrap()["identity"]["id"]
                .as_str()
                .unwrap()
                .to_string();
        let body = json!({ "match": { "kind": "identity", "id": id }, "reason": "bench" });
        // From the request to A: B may act on A's notice before A's answer arrives.
        let revoked = Instant::now();
        let made = a.http.post(format!("{admin}/v1/revocations")).json(&body).send().await.unwrap();
        assert_eq!(made.status(), 201);
        while file.exists() {
            assert!(revoked.elapsed() < Duration::from_secs(30), "the agent never dropped it");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        dropped.push(revoked.elapsed());
        agent.stop().await;
        // Rounds start at random points of B's poll cycle, as revocations do.
        let mut pause = [0u8; 2];
        aws_lc_rs::rand::fill(&mut pause).unwrap();
        tokio::time::sleep(Duration::from_millis(20 + u64::from(u16::from_le_bytes(pause)) % 500)).await;
    }
    a.stop().await;
    b.stop().await;
    dropped.sort();
    dropped
}
