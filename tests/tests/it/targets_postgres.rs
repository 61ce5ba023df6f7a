//! The `postgres` target end to end, through `POST /v1/token`, against PostgreSQL itself:
//! a cluster of the test's own that checks passwords (the machine's trusts loopback, so a
//! login there would prove nothing about the password), logged into by psycopg as an
//! application would. The login works with its password only, reads what its group may
//! and nothing else, stops working at its `VALID UNTIL`, and is dropped by the sweep once
//! expired, with what it made handed to the owner.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera_adapters::Clock as _;
use tessera_tests::postgres::{PasswordPostgres, TestPostgres};
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, python, spawn_broker};

use crate::{last_reason, oidc_source};

const POSTGRES_CREDENTIALS: &str = "urn:tessera:params:oauth:token-type:postgres-credentials";

const RULES: &str = r#"version: 1
rules:
  - name: services-read-orders
    match:
      source: corp
      subject: "svc-*"
    grant:
      target: orders-db
      group: orders_read
      ttl: 10m
"#;

/// A broker whose `orders-db` target administers `cluster`; the admin URL (with its
/// password) is read from a file, as a deployment would keep it.
async fn broker(cluster: &PasswordPostgres, issuer: &TestIssuer) -> TestBroker {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(dir.path().join("orders-db-admin-url"), cluster.admin_url()).unwrap();
    let target = "- name: orders-db\n  type: postgres\n  admin_url: ${file:orders-db-admin-url}\n  groups: [orders_read]\n  owner: app_owner\n  sweep_interval: 1s\n  timeout: 5s\n";
    let mut options = BrokerOptions::new(&oidc_source(issuer), target).mapping("10-db.yaml", RULES);
    options.dir = Some(dir);
    spawn_broker(options).await
}

fn token(issuer: &TestIssuer, broker: &TestBroker, sub: &str) -> String {
    issuer.key(0).sign(&issuer.claims(sub, "tessera", broker.clock.now()))
}

/// psycopg logs in as `user` with `password` and runs `statements`.
async fn login(cluster: &PasswordPostgres, user: &str, password: &str, statements: &[&str]) -> Value {
    let port = cluster.port.to_string();
    let mut args: Vec<String> =
        ["login", "127.0.0.1", &port, "app", user, password].iter().map(|s| s.to_string()).collect();
    args.extend(statements.iter().map(|s| s.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        python::run("postgres_peer.py", &args)
    })
    .await
    .unwrap();
    serde_json::from_str(&out).unwrap()
}

/// The server refused the login at authentication (libpq gives no SQLSTATE for a refused
/// connection, only the server's message; PostgreSQL says the same for a wrong password,
/// an expired one and a role that does not exist).
fn refused_password(outcome: &Value) -> bool {
    outcome["connected"] == false
        && outcome["error"].as_str().is_some_and(|e| e.contains("password authentication failed for user"))
}

fn creds(body: &Value) -> (String, String) {
    let c = &body["postgres_credentials"];
    (c["username"].as_str().unwrap().to_string(), c["password"].as_str().unwrap().to_string())
}

fn role_exists(cluster: &PasswordPostgres, role: &str) -> bool {
    cluster.superuser("app", &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")) == "1"
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_logs_in_with_its_login_and_reads_only_what_its_group_may() {
    let cluster = tokio::task::spawn_blocking(PasswordPostgres::start).await.unwrap();
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker(&cluster, &issuer).await;

    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-orders"), "orders-db").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], POSTGRES_CREDENTIALS);
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(body["expires_in"], 600, "the rule's ttl");
    let (user, password) = creds(&body);
    assert_eq!(body["access_token"], password.as_str(), "the password is the access token");
    let c = &body["postgres_credentials"];
    assert_eq!(
        (c["host"].as_str(), c["port"].as_u64(), c["database"].as_str()),
        (Some("127.0.0.1"), Some(u64::from(cluster.port)), Some("app"))
    );
    assert!(user.starts_with("tessera_svc_orders_"), "{user}");
    assert!(c["expires_at"].as_str().unwrap().ends_with('Z'));

    let seen =
        login(&cluster, &user, &password, &["SELECT item FROM app.orders", "SELECT * FROM app.salaries"])
            .await;
    assert_eq!(seen["connected"], true, "{seen}");
    assert_eq!(seen["user"], user.as_str());
    assert_eq!(seen["results"][0]["rows"], serde_json::json!([["tea"]]), "the group's table: {seen}");
    assert_eq!(seen["results"][1]["sqlstate"], "42501", "a table outside the grant: {seen}");

    let wrong = login(&cluster, &user, "not-the-password", &[]).await;
    assert_eq!(wrong["connected"], false, "{wrong}");
    assert!(refused_password(&wrong), "the cluster checks the password: {wrong}");

    // One login per workload and grant per lifetime: the same exchange again is served
    // the same login.
    let (status, again) = broker.exchange(&token(&issuer, &broker, "svc-orders"), "orders-db").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(creds(&again), (user.clone(), password.clone()));
    let events = broker.audit_events();
    assert_eq!(events.iter().map(|e| e["cache"].as_str().unwrap_or("")).collect::<Vec<_>>(), ["miss", "hit"]);
    assert_eq!(events[0]["scope"], "orders_read", "the group is the granted scope");
    let audit = broker.audit_text();
    assert!(
        !audit.contains(&password) && !audit.contains(PasswordPostgres::ADMIN_PASSWORD),
        "no password in the audit log"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_login_is_refused_by_the_server_and_dropped_by_the_sweep() {
    let cluster = tokio::task::spawn_blocking(PasswordPostgres::start).await.unwrap();
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker(&cluster, &issuer).await;
    let real_now = broker.clock.now();

    // Issued an hour ago by the broker's clock: its VALID UNTIL has passed by the server's,
    // which refuses the right password.
    broker.clock.set(real_now - 3600);
    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-old"), "orders-db").await;
    assert_eq!(status, 200, "{body}");
    let (old_user, old_password) = creds(&body);
    let refused = login(&cluster, &old_user, &old_password, &[]).await;
    assert_eq!(refused["connected"], false, "{refused}");
    assert!(refused_password(&refused), "{refused}");
    assert!(role_exists(&cluster, &old_user), "not swept yet: not expired by the broker's clock");

    broker.clock.set(real_now);
    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-new"), "orders-db").await;
    assert_eq!(status, 200, "{body}");
    let (user, password) = creds(&body);
    let made = login(&cluster, &user, &password, &["CREATE TABLE app.made_by_login (id int)"]).await;
    assert_eq!(made["results"][0]["ok"], true, "{made}");

    // Past the login's expiry by the broker's clock, the sweep (every second) drops both.
    broker.clock.advance(601);
    for _ in 0..200 {
        if !role_exists(&cluster, &user) && !role_exists(&cluster, &old_user) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !role_exists(&cluster, &user) && !role_exists(&cluster, &old_user),
        "the sweep dropped both logins"
    );
    let gone = login(&cluster, &user, &password, &[]).await;
    assert!(refused_password(&gone), "{gone}");
    let owner =
        cluster.superuser("app", "SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_login'");
    assert_eq!(owner, "app_owner", "what the login made is kept, owned by the owner");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_group_is_refused_and_an_unreachable_database_is_temporarily_unavailable() {
    let db = TestPostgres::new();
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let missing = format!("g_{}", &db.name[db.name.len() - 12..]);
    let targets = format!(
        "- name: orders-db\n  type: postgres\n  admin_url: {url}\n  groups: [{missing}]\n  owner: postgres\n\
         - name: down-db\n  type: postgres\n  admin_url: postgres://nobody@127.0.0.1:1/app\n  groups: [orders_read]\n  owner: app_owner\n  timeout: 1s\n",
        url = db.url()
    );
    let rules = format!(
        "version: 1\nrules:\n  - name: missing-group\n    match: {{ source: corp }}\n    grant: {{ target: orders-db, group: {missing} }}\n  - name: down\n    match: {{ source: corp }}\n    grant: {{ target: down-db, group: orders_read }}\n"
    );
    let broker =
        spawn_broker(BrokerOptions::new(&oidc_source(&issuer), &targets).mapping("10-db.yaml", &rules)).await;
    let subject = token(&issuer, &broker, "svc-orders");

    let (status, body) = broker.exchange(&subject, "orders-db").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")), "{body}");
    assert_eq!(last_reason(&broker), "TS-TGT-UPSTREAM-REJECTED");

    let (status, headers, body) = broker
        .post_form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", &subject),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", "down-db"),
        ])
        .await;
    assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    assert!(headers.contains_key("retry-after"));
    broker.stop().await;
}
