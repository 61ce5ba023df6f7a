//! Exchange throughput over HTTP on loopback, against the raw crypto it cannot avoid.
//!
//! Baseline, measured in the same run with the same library (aws-lc-rs) on every core:
//! one RS256 verification of a ~1 KB subject token plus one ES256 signature, the
//! cryptographic floor of an exchange. Then the real broker (source `oidc`, target `jwt`,
//! file audit sink) serves `POST /v1/token` while a load generator in this process keeps
//! CONCURRENCY requests in flight on the same two cores. The figure that matters is the
//! ratio exchanges/s ÷ (verify+sign)/s.
//!
//!     cargo bench -p tessera-tests --bench exchange [-- SECONDS]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // bench code

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::json;
use tessera_adapters::Clock as _;
use tessera_tests::{BrokerOptions, TestIssuer, TestKey, spawn_broker};

const CONCURRENCY: usize = 32;

fn subject_claims(issuer: &str, now: i64) -> serde_json::Value {
    // Padded to the ~1 KB of a typical Kubernetes or GitHub Actions token.
    json!({
        "iss": issuer, "sub": "svc-payments-api", "aud": "tessera",
        "iat": now, "nbf": now, "exp": now + 3600, "jti": uuid::Uuid::new_v4().to_string(),
        "repository": "octo-org/payments-api", "ref": "refs/heads/main",
        "workflow_ref": "octo-org/payments-api/.github/workflows/deploy.yml@refs/heads/main",
        "sha": "0123456789abcdef0123456789abcdef01234567", "run_id": "9876543210",
        "environment": "production", "runner_environment": "github-hosted",
        "padding": "x".repeat(360),
    })
}

fn raw_ops_per_second(token: &str, jwk: &serde_json::Value, seconds: f64, threads: usize) -> f64 {
    let n = B64.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = B64.decode(jwk["e"].as_str().unwrap()).unwrap();
    let rsa = Arc::new(
        RsaPublicKeyComponents { n, e }.to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256).unwrap(),
    );
    let ec = Arc::new(EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap());
    let (input, sig) = token.rsplit_once('.').unwrap();
    let (input, sig) = (Arc::new(input.as_bytes().to_vec()), Arc::new(B64.decode(sig).unwrap()));
    let claims =
        Arc::new(br#"{"iss":"http://127.0.0.1","sub":"oidc://corp/svc","aud":"x","exp":1}"#.to_vec());
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (rsa, ec, input, sig, claims, done, count) = (
                rsa.clone(),
                ec.clone(),
                input.clone(),
                sig.clone(),
                claims.clone(),
                done.clone(),
                count.clone(),
            );
            std::thread::spawn(move || {
                let rng = SystemRandom::new();
                while !done.load(Ordering::Relaxed) {
                    rsa.verify_sig(&input, &sig).unwrap();
                    std::hint::black_box(ec.sign(&rng, &claims).unwrap());
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    done.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let seconds: f64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5.0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async move {
        let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
        let source = format!(
            "- name: corp\n  type: oidc\n  issuer: {}\n  audiences: [tessera]\n  insecure_http: true\n",
            issuer.url()
        );
        let target = "- name: internal-api\n  type: jwt\n  max_ttl: 1h\n";
        let rules = "version: 1\nrules:\n  - name: all\n    match: { source: corp }\n    grant: { target: internal-api }\n";
        let mut options = BrokerOptions::new(source.as_str(), target).mapping("r.yaml", rules);
        options.extra = format!("workers: {cores}\n");
        let broker = spawn_broker(options).await;
        let token = issuer.key(0).sign(&subject_claims(issuer.url(), broker.clock.now()));
        let jwk = issuer.key(0).jwk();
        println!("subject token: RS256, {} bytes; issued token: ES256", token.len());

        let raw = raw_ops_per_second(&token, &jwk, seconds, cores);
        println!("baseline: RS256 verify + ES256 sign on {cores} threads: {raw:.0} ops/s");

        let client = reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY).build().unwrap();
        let url = format!("{}/v1/token", broker.url);
        let form = Arc::new(
            serde_urlencoded::to_string([
                ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                ("subject_token", token.as_str()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("audience", "internal-api"),
            ])
            .unwrap(),
        );
        // Warm up: key set fetched, connections open.
        for _ in 0..CONCURRENCY {
            let r = client.post(&url).header("content-type", "application/x-www-form-urlencoded").body(form.to_string()).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let start = Instant::now();
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (client, url, form, ok, failed) = (client.clone(), url.clone(), form.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let r = client
                            .post(&url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(form.to_string())
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status() == 200 => {
                                let _ = r.bytes().await;
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = start.elapsed().as_secs_f64();
        let rate = ok.load(Ordering::Relaxed) as f64 / elapsed;
        println!(
            "broker: {rate:.0} exchanges/s over HTTP ({} ok, {} failed, {CONCURRENCY} in flight, load generator on the same {cores} cores)",
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        );
        println!("ratio: exchanges/s / (verify+sign)/s = {:.2}", rate / raw);
        broker.stop().await;
    });
}
