//! `/metrics` of the broker and of the agent, read by Prometheus's own client library
//! (its strict OpenMetrics parser): `tessera_build_info` and the process metrics.

use std::sync::Arc;

use serde_json::Value;
use tessera_adapters::SystemClock;
use tessera_tests::agent::spawn_agent;
use tessera_tests::{BrokerOptions, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TARGET, RULES, oidc_source};

/// The families of an exposition, as `metrics_peer.py` parsed them.
fn parse(text: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.txt");
    std::fs::write(&path, text).unwrap();
    serde_json::from_str(&tessera_tests::python::run("metrics_peer.py", &[path.to_str().unwrap()])).unwrap()
}

/// The value of the only sample of `family`.
fn value(families: &Value, family: &str) -> f64 {
    let samples = families[family]["samples"].as_array().unwrap_or_else(|| panic!("no {family}: {families}"));
    assert_eq!(samples.len(), 1, "{family}: {samples:?}");
    samples[0][2].as_f64().unwrap()
}

/// The process metrics every Prometheus client library exports, with plausible values.
fn assert_process_metrics(families: &Value) {
    assert_eq!(families["process_cpu_seconds"]["type"], "counter");
    assert_eq!(families["process_cpu_seconds"]["samples"][0][0], "process_cpu_seconds_total");
    assert!(value(families, "process_cpu_seconds") > 0.0);
    for gauge in ["process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds"] {
        assert_eq!(families[gauge]["type"], "gauge", "{gauge}");
        assert!(value(families, gauge) >= 1.0, "{gauge}");
    }
    assert!(value(families, "process_max_fds") >= value(families, "process_open_fds"));
    let started = value(families, "process_start_time_seconds");
    let now = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs_f64();
    assert!(started > 1.7e9 && started <= now + 1.0, "{started} vs {now}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_brokers_metrics_carry_its_build_and_process_figures() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET)
            .mapping("10-services.yaml", RULES)
            .with_metrics(),
    )
    .await;
    let families = parse(&broker.metrics().await);
    let build = &families["tessera_build_info"];
    assert_eq!(build["type"], "gauge");
    let labels = &build["samples"][0][1];
    assert_eq!(labels["version"], env!("CARGO_PKG_VERSION"));
    assert!(!labels["commit"].as_str().unwrap().is_empty(), "{labels}");
    assert_eq!(value(&families, "tessera_build_info"), 1.0);
    assert_process_metrics(&families);
    assert_eq!(value(&families, "tessera_mapping_rules"), 2.0, "the broker's own metrics are there too");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_serves_metrics_too() {
    // A broker nobody listens on: the agent serves, but nothing yet.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let broker_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let body = "token_files:\n  - { target: internal-api, path: api.jwt }\n";
    let agent = spawn_agent(&broker_url, "a.b.c", body, Arc::new(SystemClock)).await;
    let resp = agent.http.get(format!("{}/metrics", agent.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let families = parse(&resp.text().await.unwrap());
    assert_eq!(value(&families, "tessera_agent_ready"), 0.0, "no credential yet");
    assert_eq!(families["tessera_build_info"]["samples"][0][1]["version"], env!("CARGO_PKG_VERSION"));
    assert_process_metrics(&families);
    agent.stop().await;
}
