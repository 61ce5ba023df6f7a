//! Every example config and mapping file in the repository loads, its inline tests pass,
//! and the quickstart works the way README.md says.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_adapters::{Clock, ManualClock};
use tessera_broker::Broker;
use tessera_tests::keys::verify_with_jwks;
use tessera_tests::postgres::TestPostgres;
use tessera_tests::python::root;
use tessera_tests::relying_party::get_json;

/// Every `broker.yaml` of `examples/<scenario>/` (and of its folders, for a scenario of
/// several brokers) and of the Kubernetes deployment.
fn example_configs() -> Vec<PathBuf> {
    let mut configs = crate::example_broker_configs();
    let deploy = root().join("deploy/kubernetes");
    configs.extend([deploy.join("base/broker.yaml"), deploy.join("overlays/replicas/broker.yaml")]);
    configs
}

/// Copy a directory tree (small example folders only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".data" {
            continue;
        }
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// Replace a `postgres://` store URL in `config` with a fresh local database's.
fn point_store_at_local_postgres(config: &Path) -> Option<TestPostgres> {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text.lines().find(|l| l.trim_start().starts_with("url: postgres://"))?;
    let db = TestPostgres::new();
    let indent = &line[..line.len() - line.trim_start().len()];
    std::fs::write(config, text.replace(line, &format!("{indent}url: {}", db.url()))).unwrap();
    Some(db)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_config_builds_and_its_mapping_tests_pass() {
    let configs = example_configs();
    assert!(!configs.is_empty());
    for config in configs {
        // Build in a scratch copy so no keys or audit files land in the checkout.
        let scratch = tempfile::tempdir().unwrap();
        for tree in ["examples", "mappings", "deploy"] {
            copy_tree(&root().join(tree), &scratch.path().join(tree));
        }
        let rel = config.strip_prefix(root()).unwrap();
        // An audit store on a cluster's PostgreSQL is this machine's, in a database of
        // this test's own: the example's store is created and migrated for real.
        let _db = point_store_at_local_postgres(&scratch.path().join(rel));
        let loaded = tessera_broker::config::load(&scratch.path().join(rel))
            .unwrap_or_else(|e| panic!("{}:\n{e}", config.display()));
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::starting_now());
        let broker =
            Broker::build(loaded, clock).await.unwrap_or_else(|e| panic!("{}:\n{e}", config.display()));
        let mappings = broker.pipeline().mappings();
        assert!(mappings.rule_count() > 0, "{}", config.display());
        let outcomes = mappings.run_tests();
        assert!(!outcomes.is_empty(), "{} has mapping tests", config.display());
        let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed).collect();
        assert!(failed.is_empty(), "{}: {failed:?}", config.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quickstart_works_as_the_readme_says() {
    let scratch = tempfile::tempdir().unwrap();
    copy_tree(&root().join("examples"), &scratch.path().join("examples"));
    copy_tree(&root().join("mappings"), &scratch.path().join("mappings"));
    let config_path = scratch.path().join("examples/quickstart/broker.yaml");
    let (broker_port, demo_port, admin_port) = (free_port(), free_port(), free_port());
    let text = std::fs::read_to_string(&config_path)
        .unwrap()
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{broker_port}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{demo_port}"))
        .replace("127.0.0.1:8090", &format!("127.0.0.1:{admin_port}"));
    std::fs::write(&config_path, text).unwrap();

    let loaded = tessera_broker::config::load(&config_path).unwrap();
    let listener = TcpListener::bind(loaded.config.listen).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::starting_now());
    let demo =
        tessera_broker::demo::start(&loaded, Arc::clone(&clock)).unwrap().expect("demo issuer configured");
    assert_eq!(demo.url(), format!("http://127.0.0.1:{demo_port}"));
    let broker = Broker::build(loaded, clock).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tessera_broker::run(broker, listener, async move {
        let _ = stopped.await;
    }));

    // README step: mint a demo token.
    let http = reqwest::Client::new();
    let token = http
        .post(format!("http://127.0.0.1:{demo_port}/token"))
        .form(&[("sub", "payments-api")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = token.trim();
    // README step: exchange it.
    let resp = http
        .post(format!("http://127.0.0.1:{broker_port}/v1/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", "internal-api"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let jwks =
        get_json(&http, &format!("http://127.0.0.1:{broker_port}/.well-known/jwks.json")).await.unwrap();
    let claims = verify_with_jwks(&jwks, body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "oidc://demo/payments-api");
    assert_eq!(claims["team"], "payments");

    // The deny rule of the quickstart holds too.
    let batch = http
        .post(format!("http://127.0.0.1:{demo_port}/token"))
        .form(&[("sub", "payments-batch-nightly")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp = http
        .post(format!("http://127.0.0.1:{broker_port}/v1/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", batch.trim()),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", "internal-api"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // README step: ask the admin API why.
    let explained: serde_json::Value = http
        .post(format!("http://127.0.0.1:{admin_port}/v1/explain"))
        .json(&serde_json::json!({ "subject_token": batch.trim(), "audience": "internal-api" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(explained["decision"]["decision"], "deny", "{explained}");
    assert_eq!(explained["decision"]["rule"], "no-payments-batch");
    assert_eq!(explained["verified_by"], "demo");

    // README step: the workload directory, from the embedded store in `.data/`.
    let directory = get_json(&http, &format!("http://127.0.0.1:{admin_port}/v1/workloads")).await.unwrap();
    let ids: Vec<&str> =
        directory["workloads"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{directory}");
    assert!(ids.contains(&"oidc://demo/payments-api"), "{directory}");
    assert!(scratch.path().join("examples/quickstart/.data/audit.db").exists());

    // README step: the console lists both workloads, and the denied one's page names the
    // rule that refused it.
    let page = |path: &str| {
        let url = format!("http://127.0.0.1:{admin_port}{path}");
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let workloads = page("/ui/workloads").await;
    for id in ["oidc://demo/payments-api", "oidc://demo/payments-batch-nightly"] {
        assert!(workloads.contains(&format!(">{id}</a>")), "{id} in the console: {workloads}");
    }
    let denied = page("/ui/workload?id=oidc%3A%2F%2Fdemo%2Fpayments-batch-nightly").await;
    assert!(denied.contains(">no-payments-batch</a>"), "{denied}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    demo.stop().await;
}
