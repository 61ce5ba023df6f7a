//! Several replicas: brokers sharing one issuer URL, one key directory and the real Redis
//! serve as one. A credential one obtained is a hit on the other, concurrent misses on
//! both make one upstream call, a token one signed verifies with the other's JWKS, and the
//! per-identity rate limit holds across them, and both write one PostgreSQL audit store
//! whose directory is the union. Without Redis each carries on alone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera_adapters::{Clock as _, ManualClock};
use tessera_tests::postgres::TestPostgres;
use tessera_tests::redis::TestRedis;
use tessera_tests::relying_party::{decode_jws, get_json, signature_verifies};
use tessera_tests::sts::StsPeer;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::targets_aws::{RULES, target, token};
use crate::{JWT_TARGET, oidc_source};

const ISSUER: &str = "https://tessera.replicas.example";

/// Two replicas of one deployment: same issuer URL, key directory, clock and `extra`.
async fn replicas(
    issuer: &TestIssuer,
    targets: &str,
    rules: &str,
    extra: &str,
) -> (tempfile::TempDir, TestBroker, TestBroker) {
    replicas_with_audit(issuer, targets, rules, extra, "").await
}

/// [`replicas`], both with the admin API and the same `audit:` lines.
async fn replicas_with_audit(
    issuer: &TestIssuer,
    targets: &str,
    rules: &str,
    extra: &str,
    audit: &str,
) -> (tempfile::TempDir, TestBroker, TestBroker) {
    let keys = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let options = || {
        let mut options = BrokerOptions::new(&oidc_source(issuer), targets)
            .mapping("10-rules.yaml", rules)
            .replica_of(ISSUER, keys.path());
        options.clock = Arc::clone(&clock);
        options.extra = extra.to_string();
        options.audit = audit.to_string();
        options.with_admin()
    };
    let a = spawn_broker(options()).await;
    let b = spawn_broker(options()).await;
    (keys, a, b)
}

fn access_key(body: &Value) -> String {
    body["aws_credentials"]["AccessKeyId"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_one_replica_obtained_is_a_hit_on_the_other_and_sealed_in_redis() {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let redis = TestRedis::new();
    let (_keys, a, b) = replicas(&issuer, &target(&sts, ""), RULES, &redis.config()).await;
    let token = token(&issuer, &a, "svc-payments");

    let (status, first) = a.exchange(&token, "aws-prod").await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = b.exchange(&token, "aws-prod").await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(access_key(&first), access_key(&second), "the other replica served the same session");
    assert_eq!(sts.call_count(), 1, "one upstream call for both replicas");
    assert_eq!(a.audit_events().pop().unwrap()["cache"], "miss");
    assert_eq!(b.audit_events().pop().unwrap()["cache"], "hit");

    // Redis holds only ciphertext: no part of the credential appears in any value.
    let entries = redis.entries();
    assert!(entries.iter().any(|(k, _)| k.contains(":credential:")), "{entries:?}");
    let creds = &first["aws_credentials"];
    for field in ["AccessKeyId", "SecretAccessKey", "SessionToken"] {
        let secret = creds[field].as_str().unwrap().as_bytes();
        for (key, value) in &entries {
            assert!(!value.windows(secret.len()).any(|w| w == secret), "{field} readable in {key}");
        }
    }

    // Another workload is another credential, wherever it asks.
    let (status, other) = b.exchange(&self::token(&issuer, &a, "svc-ledger"), "aws-prod").await;
    assert_eq!(status, 200, "{other}");
    assert_ne!(access_key(&other), access_key(&first));
    assert_eq!(sts.call_count(), 2);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_on_two_replicas_make_one_upstream_call() {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let redis = TestRedis::new();
    let (_keys, a, b) = replicas(&issuer, &target(&sts, ""), RULES, &redis.config()).await;
    // Hold the call so every exchange, on both replicas, arrives while it is in flight.
    sts.set_delay(Duration::from_millis(500));
    let token = token(&issuer, &a, "svc-payments");
    let exchanges = (0..100).map(|i| {
        let broker = if i % 2 == 0 { &a } else { &b };
        broker.exchange(&token, "aws-prod")
    });
    let answers = futures::future::join_all(exchanges).await;
    let mut keys = HashSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        keys.insert(access_key(body));
    }
    assert_eq!(sts.call_count(), 1, "one upstream call for 100 exchanges on two replicas");
    assert_eq!(keys.len(), 1);
    let events: Vec<Value> = a.audit_events().into_iter().chain(b.audit_events()).collect();
    assert_eq!(events.len(), 100);
    assert_eq!(events.iter().filter(|e| e["cache"] == "miss").count(), 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_one_replica_signed_verifies_with_the_others_jwks() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let redis = TestRedis::new();
    let (_keys, a, b) = replicas(&issuer, JWT_TARGET, crate::RULES, &redis.config()).await;
    let token = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", a.clock.now()));
    let (status, body) = a.exchange(&token, "internal-api").await;
    assert_eq!(status, 200, "{body}");
    let jws = decode_jws(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(jws.claims["iss"], ISSUER, "both replicas are one issuer");
    let kid = jws.header["kid"].as_str().unwrap();
    let alg = jws.header["alg"].as_str().unwrap();
    let jwks = get_json(&b.http, &format!("{}/.well-known/jwks.json", b.url)).await.unwrap();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).expect("kid published by B");
    assert!(signature_verifies(jwk, alg, jws.signing_input.as_bytes(), &jws.signature));
    a.stop().await;
    b.stop().await;
}

const RATE: &str = "rate_limit:\n  requests: 3\n  per: 1m\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_holds_across_replicas() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let redis = TestRedis::new();
    let (_keys, a, b) =
        replicas(&issuer, JWT_TARGET, crate::RULES, &format!("{}{RATE}", redis.config())).await;
    let token = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", a.clock.now()));
    for broker in [&a, &b, &a] {
        assert_eq!(broker.exchange(&token, "internal-api").await.0, 200, "within the burst of 3");
    }
    for broker in [&b, &a] {
        let (status, headers, body) = broker.exchange_with_headers(&token, "internal-api").await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable");
        assert_eq!(headers["retry-after"], "20", "one more every 60s / 3");
    }
    let event = b.audit_events().pop().unwrap();
    assert_eq!((&event["decision"], &event["reason"]), (&"deny".into(), &"TS-EXC-RATE-LIMITED".into()));
    assert!(event["identity"]["id"].is_string(), "the limited identity is audited");

    let other = issuer.key(0).sign(&issuer.claims("svc-ledger", "tessera", a.clock.now()));
    assert_eq!(b.exchange(&other, "internal-api").await.0, 200, "each identity has its own budget");
    a.clock.advance(20);
    assert_eq!(b.exchange(&token, "internal-api").await.0, 200, "one more after the interval");
    assert_eq!(a.exchange(&token, "internal-api").await.0, 429);
    a.stop().await;
    b.stop().await;
}

/// Without `key_prefix`, each deployment writes under a prefix of its issuer URL's: two
/// deployments on one Redis keep their own rate budgets, the replicas of one share theirs.
#[tokio::test(flavor = "multi_thread")]
async fn deployments_on_one_redis_count_apart_and_replicas_of_one_count_together() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let id = uuid::Uuid::new_v4().simple();
    let (prod_url, staging_url) =
        (format!("https://tessera-prod-{id}.example"), format!("https://tessera-staging-{id}.example"));
    let (prod_redis, staging_redis) = (TestRedis::deployment(&prod_url), TestRedis::deployment(&staging_url));
    let (prod_keys, staging_keys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let clock = Arc::new(ManualClock::starting_now());
    let broker = |url: &str, keys: &tempfile::TempDir, redis: &TestRedis| {
        let mut options = BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET)
            .mapping("10-rules.yaml", crate::RULES)
            .replica_of(url, keys.path());
        options.clock = Arc::clone(&clock);
        options.extra = format!("{}{RATE}", redis.config());
        spawn_broker(options)
    };
    let prod_a = broker(&prod_url, &prod_keys, &prod_redis).await;
    let prod_b = broker(&prod_url, &prod_keys, &prod_redis).await;
    let staging = broker(&staging_url, &staging_keys, &staging_redis).await;
    let token = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", clock.now()));

    for broker in [&prod_a, &prod_b, &prod_a] {
        assert_eq!(broker.exchange(&token, "internal-api").await.0, 200, "within prod's burst of 3");
    }
    assert_eq!(prod_b.exchange(&token, "internal-api").await.0, 429, "prod's replicas share one budget");
    for _ in 0..3 {
        assert_eq!(staging.exchange(&token, "internal-api").await.0, 200, "staging has a budget of its own");
    }
    assert_eq!(staging.exchange(&token, "internal-api").await.0, 429);

    // Each deployment's schedule lives under its own prefix.
    for redis in [&prod_redis, &staging_redis] {
        let keys: Vec<String> = redis.entries().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 1, "{}: {keys:?}", redis.prefix);
        assert!(keys[0].starts_with(&format!("{}rate:", redis.prefix)), "{keys:?}");
    }
    assert_ne!(prod_redis.prefix, staging_redis.prefix);
    for broker in [prod_a, prod_b, staging] {
        broker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_each_replica_caches_and_counts_alone() {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    // Nothing listens on port 1: every Redis call fails at once.
    let down = format!("redis:\n  url: redis://127.0.0.1:1\n  timeout: 200ms\n{RATE}");
    let (_keys, a, b) = replicas(&issuer, &target(&sts, ""), RULES, &down).await;
    let token = token(&issuer, &a, "svc-payments");
    for broker in [&a, &a, &b] {
        let (status, body) = broker.exchange(&token, "aws-prod").await;
        assert_eq!(status, 200, "a Redis outage refuses nothing: {body}");
    }
    assert_eq!(sts.call_count(), 2, "each replica made its own call, and cached it");
    assert_eq!(a.audit_events().pop().unwrap()["cache"], "hit");
    assert_eq!(a.exchange(&token, "aws-prod").await.0, 200);
    assert_eq!(a.exchange(&token, "aws-prod").await.0, 429, "A counted its own 3");
    assert_eq!(b.exchange(&token, "aws-prod").await.0, 200, "B has counted only 1");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_init_fills_the_directory_replicas_start_from() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nissuer:\n  url: {ISSUER}\n  key_dir: keys\n  algorithms: [ES256, RS256]\nsources:\n{}targets:\n{}",
            indent(&oidc_source(&issuer)),
            indent(JWT_TARGET)
        ),
    )
    .unwrap();
    let init = || {
        let out = std::process::Command::new(tessera_tests::agent::tessera_binary())
            .args(["--log-format", "text", "keys", "init", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut files: Vec<String> = std::fs::read_dir(dir.path().join("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        files.sort();
        files
    };
    let first = init();
    assert_eq!(first.len(), 5, "current and next key per algorithm, and the cache key: {first:?}");
    assert!(first.contains(&"credential-cache.key".to_string()));
    assert_eq!(init(), first, "a second init keeps every key");

    // A replica started on the directory publishes exactly those keys.
    let options = BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET)
        .mapping("10-rules.yaml", crate::RULES)
        .replica_of(ISSUER, &dir.path().join("keys"));
    let broker = spawn_broker(options).await;
    let (_, jwks) = broker.get_json("/.well-known/jwks.json").await;
    let mut published: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| format!("{}.json", k["kid"].as_str().unwrap()))
        .collect();
    published.sort();
    let mut key_files: Vec<String> = first.into_iter().filter(|n| n.ends_with(".json")).collect();
    key_files.sort();
    assert_eq!(published, key_files);
    broker.stop().await;
}

fn indent(items: &str) -> String {
    items.lines().map(|l| format!("  {l}\n")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn both_replicas_write_one_audit_store_and_the_directory_is_the_union() {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let redis = TestRedis::new();
    let db = TestPostgres::new();
    let (_keys, a, b) =
        replicas_with_audit(&issuer, &target(&sts, ""), RULES, &redis.config(), &db.store_config()).await;

    let (status, _) = a.exchange(&token(&issuer, &a, "svc-payments"), "aws-prod").await;
    assert_eq!(status, 200);
    let (status, _) = b.exchange(&token(&issuer, &a, "svc-payments"), "aws-prod").await;
    assert_eq!(status, 200);
    let (status, _) = b.exchange(&token(&issuer, &a, "svc-ledger"), "aws-prod").await;
    assert_eq!(status, 200);
    let (status, _) = a.exchange(&token(&issuer, &a, "intruder"), "aws-prod").await;
    assert_eq!(status, 400);
    assert_eq!(sts.call_count(), 2, "one STS call per workload across both replicas");

    let (status, from_a) = a.admin_get("/v1/workloads").await;
    assert_eq!(status, 200, "{from_a}");
    let (_, from_b) = b.admin_get("/v1/workloads").await;
    assert_eq!(from_a, from_b, "one directory, whichever replica answers");
    let by_subject = |sub: &str| {
        from_a["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["identity"]["subject"] == sub)
            .unwrap_or_else(|| panic!("{sub} missing: {from_a:#}"))
            .clone()
    };
    assert_eq!(from_a["workloads"].as_array().unwrap().len(), 3, "{from_a:#}");
    let payments = by_subject("svc-payments");
    assert_eq!(payments["exchanges"]["allow"], 2, "one exchange on each replica: {payments}");
    assert_eq!(payments["targets"][0]["target"], "aws-prod");
    assert_eq!(payments["targets"][0]["exchanges"], 2);
    assert_eq!(by_subject("svc-ledger")["exchanges"]["allow"], 1);
    assert_eq!(by_subject("intruder")["exchanges"]["deny"], 1);

    // Both replicas' events, in one trail: the miss on one and the hit on the other.
    let (_, trail) = b.admin_get("/v1/audit?target=aws-prod").await;
    let events = trail["events"].as_array().unwrap();
    assert_eq!(events.len(), 4, "{trail:#}");
    let payments_cache: HashSet<&str> = events
        .iter()
        .filter(|e| e["identity"]["subject"] == "svc-payments")
        .map(|e| e["cache"].as_str().unwrap())
        .collect();
    assert_eq!(payments_cache, HashSet::from(["miss", "hit"]));
    a.stop().await;
    b.stop().await;
}
