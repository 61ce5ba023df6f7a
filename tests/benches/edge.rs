//! What the token endpoint's parameter handling costs, for the largest body it takes.
//!
//! The real broker (source `oidc`, target `jwt`, file audit sink, no SQL store) answers, one
//! request at a time over one keep-alive connection:
//! - a normal bad request: the four-parameter form without `audience`, refused at the edge;
//! - the worst-case form: 64 KiB of distinct three-character names (`abc&abd&...`);
//! - the worst-case JSON body: 64 KiB of distinct three-character members, all strings;
//! - a valid exchange, for scale.
//!
//! Each line gives the mean time per request and its ratio to the normal bad request; the
//! worst cases should stay the same order. Last, a valid exchange's latency is measured
//! alone and while 8 connections send the worst-case form back to back.
//!
//!     cargo bench -p tessera-tests --bench edge [-- SECONDS]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // bench code

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tessera_adapters::Clock as _;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

const MAX_BODY: usize = 64 * 1024;
const ATTACKERS: usize = 8;
const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// Distinct three-character names over `[a-z0-9]`, in order.
fn names() -> impl Iterator<Item = String> {
    let alphabet: Vec<char> = ('a'..='z').chain('0'..='9').collect();
    let n = alphabet.len();
    (0..n * n * n)
        .map(move |i| [alphabet[i / (n * n)], alphabet[i / n % n], alphabet[i % n]].iter().collect())
}

/// As many `abc&` names as fit in 64 KiB.
fn worst_form() -> (Vec<u8>, usize) {
    let mut body = String::new();
    let mut count = 0;
    for name in names() {
        if body.len() + name.len() + 1 > MAX_BODY {
            break;
        }
        body.push_str(&name);
        body.push('&');
        count += 1;
    }
    (body.into_bytes(), count)
}

/// As many `"abc":"",` members as fit in 64 KiB.
fn worst_json() -> (Vec<u8>, usize) {
    let mut body = String::from("{");
    let mut count = 0;
    for name in names() {
        let member = format!("\"{name}\":\"\"");
        if body.len() + member.len() + 2 > MAX_BODY {
            break;
        }
        if count > 0 {
            body.push(',');
        }
        body.push_str(&member);
        count += 1;
    }
    body.push('}');
    (body.into_bytes(), count)
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    serde_urlencoded::to_string(pairs).unwrap().into_bytes()
}

async fn post(http: &reqwest::Client, url: &str, content_type: &str, body: &[u8]) -> u16 {
    let resp = http
        .post(format!("{url}/v1/token"))
        .header("content-type", content_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    resp.bytes().await.unwrap();
    status
}

/// Mean time of one request, sent back to back for `seconds` on one connection, and how
/// many answers were not `expect` (a broker too busy to read a request head answers 408).
async fn mean(
    broker: &TestBroker,
    content_type: &str,
    body: &[u8],
    expect: u16,
    seconds: f64,
) -> (Duration, u32) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let (mut count, mut other) = (0u32, 0u32);
    while count == 0 || Instant::now() < deadline {
        if post(&http, &broker.url, content_type, body).await != expect {
            other += 1;
        }
        count += 1;
    }
    (start.elapsed() / count, other)
}

fn answers(other: u32, expect: u16) -> String {
    if other == 0 { String::new() } else { format!(" ({other} answers other than {expect})") }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let seconds: f64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3.0);
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
        options.audit = "store:\n  enabled: false\n".to_string();
        let broker = spawn_broker(options).await;
        let now = broker.clock.now();
        let token = issuer.key(0).sign(&json!({
            "iss": issuer.url(), "sub": "svc-payments", "aud": "tessera", "iat": now, "exp": now + 3600,
        }));
        let grant = ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange");
        let jwt_type = ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt");
        let bad = form(&[grant, ("subject_token", token.as_str()), jwt_type]);
        let valid = form(&[grant, ("subject_token", token.as_str()), jwt_type, ("audience", "internal-api")]);
        let (worst_form, form_names) = worst_form();
        let (worst_json, json_names) = worst_json();

        // Warm up: the key set is fetched, the first token verified.
        assert_eq!(post(&reqwest::Client::new(), &broker.url, FORM, &valid).await, 200);
        let (baseline, _) = mean(&broker, FORM, &bad, 400, seconds).await;
        println!("normal bad request (no audience), {} bytes: {:.0} µs", bad.len(), micros(baseline));
        let cases = [
            (format!("worst-case form, {form_names} names, {} bytes", worst_form.len()), FORM, &worst_form, 400),
            (format!("worst-case JSON, {json_names} members, {} bytes", worst_json.len()), JSON, &worst_json, 400),
            (format!("valid exchange, {} bytes", valid.len()), FORM, &valid, 200),
        ];
        for (name, content_type, body, status) in cases {
            let (t, other) = mean(&broker, content_type, body, status, seconds).await;
            println!(
                "{name}: {:.0} µs, {:.1}× the normal bad request{}",
                micros(t),
                t.as_secs_f64() / baseline.as_secs_f64(),
                answers(other, status)
            );
        }

        let (alone, _) = mean(&broker, FORM, &valid, 200, seconds).await;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let body = Arc::new(worst_form);
        let attackers: Vec<_> = (0..ATTACKERS)
            .map(|_| {
                let (stop, sent, body, url) = (stop.clone(), sent.clone(), body.clone(), broker.url.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    while !stop.load(Ordering::Relaxed) {
                        // Refused with 400, or with 408 by a broker too busy to read it.
                        if let Ok(resp) = http.post(format!("{url}/v1/token")).header("content-type", FORM).body(body.to_vec()).send().await {
                            let _ = resp.bytes().await;
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let started = Instant::now();
        let (attacked, refused) = mean(&broker, FORM, &valid, 200, seconds).await;
        stop.store(true, Ordering::Relaxed);
        let rate = sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        for a in attackers {
            a.await.unwrap();
        }
        println!(
            "valid exchange alone: {:.0} µs; while {ATTACKERS} connections send the worst-case form ({rate:.0} bodies/s): {:.0} µs, {:.1}×{}",
            micros(alone),
            micros(attacked),
            attacked.as_secs_f64() / alone.as_secs_f64(),
            answers(refused, 200)
        );
        broker.stop().await;
    });
}
