//! Exchange throughput over HTTP on loopback, against the raw crypto it cannot avoid.
//!
//! Baseline, measured in the same run with the same library (aws-lc-rs) on every core:
//! one RS256 verification of a ~1 KB subject token plus one ES256 signature, the
//! cryptographic floor of an exchange. Then the real broker (source `oidc`, target `jwt`,
//! file audit sink) serves `POST /v1/token` while a load generator in this process (one
//! thread, raw HTTP/1.1 keep-alive connections) keeps CONCURRENCY requests in flight on
//! the same cores. The figure that matters is the
//! ratio exchanges/s ÷ (verify+sign)/s.
//!
//! The broker runs three times: without the SQL audit store, with the embedded SQLite
//! store, and with the machine's PostgreSQL (a database of its own). Every answered
//! exchange waits for its event's commit, so the store runs show what group commit keeps
//! of the rate: their ratio to the run without a store.
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
        "padding": "x".repeat(40),
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

/// A minimal HTTP/1.1 keep-alive client, so the load generator costs the two shared cores
/// as little as possible (the broker, not the client, is what is measured).
struct Conn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self { stream, buf: Vec::with_capacity(16 * 1024) }
    }

    /// Send one request and read its whole response; returns the status code.
    async fn roundtrip(&mut self, request: &[u8]) -> u16 {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(request).await.unwrap();
        self.buf.clear();
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap().to_ascii_lowercase();
                let status: u16 = head[9..12].parse().unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + length {
                    self.read_more().await;
                }
                return status;
            }
            self.read_more().await;
        }
    }

    async fn read_more(&mut self) {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

/// The exchange pipeline called directly, on its own runtime with one thread per core:
/// what the broker does per exchange without the HTTP edge and the kernel's TCP work.
fn pipeline_rate(broker: &Arc<tessera_broker::Broker>, token: &str, seconds: f64, threads: usize) -> f64 {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..threads * 4)
            .map(|_| {
                let (broker, token, count) = (broker.clone(), token.to_string(), count.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let request = tessera_broker::exchange::ExchangeRequest {
                            request_id: uuid::Uuid::new_v4().to_string(),
                            subject_token: tessera_adapters::SubjectToken {
                                token_type: tessera_adapters::SubjectTokenType::Jwt,
                                value: tessera_adapters::Secret::new(token.clone()),
                            },
                            audience: "internal-api".into(),
                            scope: None,
                            requested_token_type: None,
                            client_addr: Some("127.0.0.1".into()),
                            grant_type: tessera_broker::jwt_bearer::GrantType::TokenExchange,
                            actor_token: None,
                            txn: None,
                        };
                        broker.pipeline().exchange(request).await.unwrap();
                        count.fetch_add(1, Ordering::Relaxed);
                        // Let the other tasks of this thread run, as connections would.
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Exchanges/s over HTTP against `broker`, CONCURRENCY requests in flight.
async fn http_rate(broker: &tessera_tests::TestBroker, token: &str, seconds: f64) -> (f64, u64) {
    let addr: std::net::SocketAddr = broker.url.trim_start_matches("http://").parse().unwrap();
    let body = serde_urlencoded::to_string([
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", token),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("audience", "internal-api"),
    ])
    .unwrap();
    let request = Arc::new(
        format!(
            "POST /v1/token HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    );
    // Warm up: the key set is fetched and every connection has answered once.
    let mut conns = Vec::new();
    for _ in 0..CONCURRENCY {
        let mut c = Conn::open(addr).await;
        assert_eq!(c.roundtrip(&request).await, 200);
        conns.push(c);
    }
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (request, ok, failed) = (request.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let counter = if conn.roundtrip(&request).await == 200 { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (ok.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(), failed.load(Ordering::Relaxed))
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
        let postgres = tessera_tests::postgres::TestPostgres::new();
        // The JSON-lines file sink in every run; the SQL store varies.
        let stores = [
            ("no SQL store", "store:\n  enabled: false\n".to_string()),
            ("SQLite store (default)", String::new()),
            ("PostgreSQL store", postgres.store_config()),
        ];
        let mut baseline = None;
        let mut no_store_rate = 0.0;
        for (i, (name, store)) in stores.iter().enumerate() {
            let mut options = BrokerOptions::new(source.as_str(), target).mapping("r.yaml", rules);
            options.extra = format!("workers: {cores}\n");
            options.audit = store.clone();
            let broker = spawn_broker(options).await;
            let token = issuer.key(0).sign(&subject_claims(issuer.url(), broker.clock.now()));
            if i == 0 {
                let jwk = issuer.key(0).jwk();
                println!("subject token: RS256, {} bytes; issued token: ES256", token.len());
                let raw = raw_ops_per_second(&token, &jwk, seconds, cores);
                println!("baseline: RS256 verify + ES256 sign on {cores} threads: {raw:.0} ops/s");
                baseline = Some(raw);
            }
            let raw = baseline.unwrap();
            let (rate, failed) = http_rate(&broker, &token, seconds).await;
            println!(
                "broker, {name}: {rate:.0} exchanges/s over HTTP ({failed} failed, {CONCURRENCY} in flight, load generator on the same {cores} cores); ratio to verify+sign {:.2}",
                rate / raw
            );
            if i == 0 {
                let (shared, token_copy) = (broker.broker.clone(), token.clone());
                let in_process = tokio::task::spawn_blocking(move || pipeline_rate(&shared, &token_copy, seconds, cores))
                    .await
                    .unwrap();
                println!(
                    "pipeline in process, {name} (no HTTP, same verify/rules/sign/audit) on {cores} threads: {in_process:.0} exchanges/s, ratio {:.2}",
                    in_process / raw
                );
                no_store_rate = rate;
            } else {
                println!("  {name} ÷ no SQL store: {:.2}", rate / no_store_rate);
            }
            broker.stop().await;
        }
    });
}
