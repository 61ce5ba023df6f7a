//! How long a revocation made on one replica takes to be enforced by another.
//!
//! Two real brokers share one PostgreSQL audit store (the machine's server) and one key
//! directory. For each round a revocation of one workload is made on replica A's admin
//! API; replica B is then asked to exchange that workload's token back to back until it
//! refuses. The time from A's answer to B's first refusal is the propagation time; each
//! round revokes a different workload. Prints the minimum, median, 90th percentile and
//! maximum over the rounds.
//!
//!     cargo bench -p tessera-tests --bench revocation [-- ROUNDS]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // bench code

use std::time::{Duration, Instant};

use serde_json::json;
use tessera_adapters::Clock as _;
use tessera_tests::postgres::TestPostgres;
use tessera_tests::{BrokerOptions, TestIssuer, TestKey, spawn_broker};

const SOURCE: &str = "- name: corp\n  type: oidc\n  issuer: {}\n  audiences: [tessera]\n  insecure_http: true\n  max_token_lifetime: 1h\n  leeway: 30s\n";
const TARGET: &str = "- name: internal-api\n  type: jwt\n  audience: https://internal-api.example\n  max_ttl: 1h\n  default_ttl: 15m\n";
const RULES: &str = "version: 1\nrules:\n  - name: services\n    match: { source: corp, subject: \"svc-*\" }\n    grant: { target: internal-api, ttl: 10m }\n";

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20);
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let db = TestPostgres::new();
    let keys = tempfile::tempdir().unwrap();
    let source = SOURCE.replace("{}", issuer.url());
    let options = || {
        let mut options = BrokerOptions::new(&source, TARGET)
            .mapping("10-services.yaml", RULES)
            .replica_of("https://tessera.bench.example", keys.path());
        options.audit = db.store_config();
        options.with_admin()
    };
    let (a, b) = (spawn_broker(options()).await, spawn_broker(options()).await);
    let admin = a.admin_url.clone().unwrap();
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let sub = format!("svc-{round}");
        let token = issuer.key(0).sign(&issuer.claims(&sub, "tessera", b.clock.now()));
        assert_eq!(b.exchange(&token, "internal-api").await.0, 200);
        let id = b.audit_events().pop().unwrap()["identity"]["id"].as_str().unwrap().to_string();
        let body = json!({ "match": { "kind": "identity", "id": id }, "reason": "bench" });
        let made = a.http.post(format!("{admin}/v1/revocations")).json(&body).send().await.unwrap();
        assert_eq!(made.status(), 201);
        let revoked = Instant::now();
        while b.exchange(&token, "internal-api").await.0 == 200 {
            assert!(revoked.elapsed() < Duration::from_secs(30), "replica B never refused");
        }
        times.push(revoked.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "revocation propagation to another replica over {rounds} rounds: min {:?}, median {:?}, p90 {:?}, max {:?}",
        times[0],
        at(0.5),
        at(0.9),
        times[times.len() - 1]
    );
}
