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
    let mut options =
        BrokerOptions::new(&oidc_source(issuer), target).mapping("10-db.yaml", RULES).with_admin();
    options.dir = Some(dir);
    spawn_broker(options).await
}

/// A password-checking cluster, an issuer and a broker administering the cluster.
async fn setup() -> (PasswordPostgres, TestIssuer, TestBroker) {
    let cluster = tokio::task::spawn_blocking(PasswordPostgres::start).await.unwrap();
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker(&cluster, &issuer).await;
    (cluster, issuer, broker)
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
    let (cluster, issuer, broker) = setup().await;

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
    let (cluster, issuer, broker) = setup().await;
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

// ---- the agent: a password file, and `tessera agent exec` ----

/// `psql` with only `env` (and `PATH`): what it printed on stdout, or its stderr on failure.
async fn psql(cluster: &PasswordPostgres, env: &[(&str, &str)], sql: &str) -> Result<String, String> {
    let port = cluster.port.to_string();
    let mut cmd = std::process::Command::new("psql");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", &port);
    cmd.env("PGDATABASE", "app").args(["-Atc", sql]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// The user name in a one-line password file.
fn passfile_user(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.lines().count(), 1, "{text:?}");
    text.split(':').nth(3).unwrap().to_string()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 30 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_keeps_a_password_file_psql_logs_in_with_and_renews_it_before_expiry() {
    let (cluster, issuer, broker) = setup().await;
    let body = "postgres:\n  - target: orders-db\n    passfile: pgpass\nrefresh:\n  after: 0.9\n";
    let agent = tessera_tests::agent::spawn_agent(
        &broker.url,
        &token(&issuer, &broker, "svc-orders"),
        body,
        broker.clock.clone(),
    )
    .await;
    agent.wait_ready().await;
    let passfile = agent.dir.path().join("pgpass");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&passfile).unwrap().permissions().mode() & 0o777, 0o600);
    let first = passfile_user(&passfile);
    let path = passfile.to_string_lossy().to_string();
    let who = psql(&cluster, &[("PGPASSFILE", &path), ("PGUSER", &first)], "SELECT current_user").await;
    assert_eq!(who.as_deref(), Ok(first.as_str()), "libpq reads the password from the agent's file");
    let denied =
        psql(&cluster, &[("PGPASSFILE", &path), ("PGUSER", &first)], "SELECT * FROM app.salaries").await;
    assert!(denied.unwrap_err().contains("permission denied"));

    // At 90% of the login's 10 minutes the agent renews it (the broker's cache serves a
    // login until a fifth of its life is left, so this is a new one) and rewrites the file.
    let later = broker.clock.now() + 541;
    agent.write_subject(&issuer.key(0).sign(&issuer.claims("svc-orders", "tessera", later)));
    broker.clock.advance(541);
    wait_for("the password file's renewal", || passfile_user(&passfile) != first).await;
    let second = passfile_user(&passfile);
    let who = psql(&cluster, &[("PGPASSFILE", &path), ("PGUSER", &second)], "SELECT current_user").await;
    assert_eq!(who.as_deref(), Ok(second.as_str()));
    agent.stop().await;
    broker.stop().await;
}

/// An agent config for `tessera agent exec` in `dir`, with the subject token written.
fn exec_config(dir: &std::path::Path, broker: &TestBroker, subject: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("subject.jwt"), subject).unwrap();
    let config = format!(
        "version: 1\nbroker: {}\nsubject_token:\n  file: subject.jwt\npostgres:\n  - target: orders-db\nrefresh:\n  after: 0.9\n",
        broker.url
    );
    let path = dir.join("agent.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn tessera_agent_exec_runs_psql_with_the_login_and_exits_with_its_status() {
    let (_cluster, issuer, broker) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let config = exec_config(dir.path(), &broker, &token(&issuer, &broker, "svc-orders"));
    let run = |sql: &'static str| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(tessera_tests::agent::tessera_binary())
                .args(["agent", "exec", "--config"])
                .arg(&config)
                .args(["--", "psql", "-Atc", sql])
                .env_remove("PGPASSWORD")
                .env_remove("PGUSER")
                .output()
                .unwrap()
        })
    };
    let out =
        run("SELECT current_user LIKE 'tessera_svc_orders_%', (SELECT item FROM app.orders)").await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "t|tea",
        "psql logged in with the login from its environment"
    );
    let out = run("SELECT * FROM app.salaries").await.unwrap();
    assert_eq!(out.status.code(), Some(1), "psql's own exit status");
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_exec_restarts_the_command_with_a_new_login_before_the_old_one_expires() {
    let (_cluster, issuer, broker) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let config = exec_config(dir.path(), &broker, &token(&issuer, &broker, "svc-orders"));
    let loaded = tessera_agent::load(&config).unwrap();
    let logins = dir.path().join("logins");
    // Each start logs in with its environment and records who it is, then waits.
    let script = format!("psql -Atc 'SELECT current_user' >> {} && exec sleep 120", logins.display());
    let args = tessera_agent::exec::ExecArgs {
        target: None,
        restart_on_refresh: true,
        command: vec!["sh".into(), "-c".into(), script.into()],
    };
    let clock: Arc<dyn tessera_adapters::Clock> = broker.clock.clone();
    let task = tokio::spawn(async move { tessera_agent::exec::run(&loaded, &args, clock).await });
    let lines = || {
        std::fs::read_to_string(&logins)
            .map(|t| t.lines().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    wait_for("the first start", || lines().len() == 1).await;

    let later = broker.clock.now() + 541;
    std::fs::write(
        dir.path().join("subject.jwt"),
        issuer.key(0).sign(&issuer.claims("svc-orders", "tessera", later)),
    )
    .unwrap();
    broker.clock.advance(541);
    wait_for("the restart", || lines().len() == 2).await;
    let seen = lines();
    assert!(seen.iter().all(|u| u.starts_with("tessera_svc_orders_")), "{seen:?}");
    assert_ne!(seen[0], seen[1], "the restarted command logged in with a new login");
    assert!(!task.is_finished(), "exec keeps running the restarted command");
    task.abort();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sql_tessera_trust_prints_is_all_the_database_needs() {
    let db = TestPostgres::new();
    let tag = format!("t{}", &db.name[db.name.len() - 8..]);
    let (admin, group, owner) = (format!("{tag}_admin"), format!("{tag}_read"), format!("{tag}_owner"));
    tessera_tests::postgres::psql(&format!("CREATE ROLE {group} NOLOGIN; CREATE ROLE {owner} NOLOGIN"));
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let target = format!(
        "- name: orders-db\n  type: postgres\n  admin_url: postgres://{admin}@127.0.0.1:5432/{db}\n  groups: [{group}]\n  owner: {owner}\n  role_prefix: {tag}_l_\n",
        db = db.name
    );
    let rules = format!(
        "version: 1\nrules:\n  - name: read\n    match: {{ source: corp }}\n    grant: {{ target: orders-db, group: {group} }}\n"
    );
    let broker =
        spawn_broker(BrokerOptions::new(&oidc_source(&issuer), &target).mapping("10-db.yaml", &rules)).await;

    let config = broker.path().join("broker.yaml");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(tessera_tests::agent::tessera_binary())
            .args(["--log-format", "text", "trust", "orders-db", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let setup: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(setup["admin_role"], admin.as_str());
    assert_eq!(setup["rules"], serde_json::json!([{ "rule": "read", "group": group }]));
    for sql in
        setup["sql"].as_array().unwrap().iter().filter_map(Value::as_str).filter(|s| !s.starts_with("--"))
    {
        db.query(sql);
    }

    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-orders"), "orders-db").await;
    assert_eq!(status, 200, "{body}");
    let (user, _) = creds(&body);
    let member = db.query(&format!("SELECT pg_has_role('{user}', '{group}', 'MEMBER')"));
    assert_eq!(member, "t", "the admin the printed SQL made could create the login and grant the group");
    broker.stop().await;
    tessera_tests::postgres::psql(&format!(
        "DROP ROLE \"{user}\"; DROP ROLE {admin}; DROP ROLE {group}; DROP ROLE {owner}"
    ));
}

/// Issue 20: "revocation drops the role at once". A revocation naming a workload drops its
/// login before the revocation is answered; another workload's login stays; a second
/// revocation naming the same workload finds nothing left to drop and fails nothing.
#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_workload_drops_its_login_at_once() {
    let (cluster, issuer, broker) = setup().await;
    let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-orders"), "orders-db").await;
    assert_eq!(status, 200, "{body}");
    let identity = broker.audit_events().pop().unwrap()["identity"]["id"].as_str().unwrap().to_string();
    let (user, password) = creds(&body);
    let (status, other) = broker.exchange(&token(&issuer, &broker, "svc-billing"), "orders-db").await;
    assert_eq!(status, 200, "{other}");
    let (other_user, other_password) = creds(&other);
    let seen = login(&cluster, &user, &password, &["SELECT item FROM app.orders"]).await;
    assert_eq!(seen["connected"], true, "{seen}");

    let revoke = |matcher: Value| {
        let body = serde_json::json!({ "match": matcher, "reason": "repository compromised" });
        crate::revocations::call(&broker, "POST", "/v1/revocations", None, Some(body))
    };
    let (status, made) = revoke(serde_json::json!({ "kind": "identity", "id": identity })).await;
    assert_eq!(status, 201, "{made}");
    assert!(!role_exists(&cluster, &user), "dropped before the revocation was answered");
    let refused = login(&cluster, &user, &password, &[]).await;
    assert!(refused_password(&refused), "{refused}");
    assert!(role_exists(&cluster, &other_user), "another workload's login stays");
    let still = login(&cluster, &other_user, &other_password, &[]).await;
    assert_eq!(still["connected"], true, "{still}");

    // Again, by a glob naming the same workload: idempotent.
    let (status, again) =
        revoke(serde_json::json!({ "kind": "identity_glob", "pattern": "*svc-orders" })).await;
    assert_eq!(status, 201, "{again}");
    let id = made["id"].as_str().unwrap();
    let (status, listing) =
        crate::revocations::call(&broker, "GET", &format!("/v1/revocations/{id}/issued"), None, None).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["targets"][0]["action"], "dropped", "{listing}");
    assert_eq!(listing["credentials"][0]["identity"], identity.as_str());
    broker.stop().await;
}
