//! The SQL audit store: every exchange recorded before its answer, the workload directory
//! kept from the events, `GET /v1/audit` and `GET /v1/workloads` reading them, and
//! `tessera workloads`. SQLite is the embedded default; PostgreSQL is the machine's real
//! server, one database per test.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tessera_adapters::Clock as _;
use tessera_tests::broker::BrokerProcess;
use tessera_tests::postgres::TestPostgres;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TARGET, RULES, oidc_source};

fn token(issuer: &TestIssuer, broker: &TestBroker, sub: &str) -> String {
    issuer.key(0).sign(&issuer.claims(sub, "tessera", broker.clock.now()))
}

fn fingerprint(token: &str) -> String {
    tessera_adapters::Secret::new(token.to_string()).fingerprint()
}

async fn broker_with(issuer: &TestIssuer, audit: &str) -> TestBroker {
    let mut options =
        BrokerOptions::new(&oidc_source(issuer), JWT_TARGET).mapping("10-services.yaml", RULES).with_admin();
    options.audit = audit.to_string();
    spawn_broker(options).await
}

/// The identity id the broker gave `sub`, from the JSON-lines audit trail.
fn identity_id(broker: &TestBroker, sub: &str) -> String {
    broker
        .audit_events()
        .iter()
        .filter_map(|e| e["identity"].as_object())
        .find(|i| i["subject"] == sub)
        .map(|i| i["id"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no audited identity for {sub}"))
}

fn workload<'a>(workloads: &'a Value, id: &str) -> &'a Value {
    workloads["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in the directory: {workloads:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_store_records_every_exchange_and_the_directory_lists_each_workload() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker_with(&issuer, "").await;
    let mut issued = Vec::new();
    let mut presented = Vec::new();
    for _ in 0..3 {
        let t = token(&issuer, &broker, "svc-payments");
        let (status, body) = broker.exchange(&t, "internal-api").await;
        assert_eq!(status, 200, "{body}");
        issued.push(body["access_token"].as_str().unwrap().to_string());
        presented.push(t);
        broker.clock.advance(1);
    }
    for sub in ["svc-intern-bob", "alice"] {
        let t = token(&issuer, &broker, sub);
        let (status, _) = broker.exchange(&t, "internal-api").await;
        assert_eq!(status, 400, "{sub} is refused");
        presented.push(t);
    }
    let (status, _) = broker.exchange("not-a-jwt", "internal-api").await;
    assert_eq!(status, 400);

    // The directory: one entry per verified identity, with what it reached and was refused.
    let (status, dir) = broker.admin_get("/v1/workloads").await;
    assert_eq!(status, 200, "{dir}");
    assert_eq!(dir["workloads"].as_array().unwrap().len(), 3, "{dir:#}");
    let payments = workload(&dir, &identity_id(&broker, "svc-payments"));
    assert_eq!(payments["source"], "corp");
    assert_eq!(payments["identity"]["subject"], "svc-payments");
    assert_eq!(payments["exchanges"], serde_json::json!({ "allow": 3, "deny": 0, "error": 0 }));
    assert_eq!(payments["targets"][0]["target"], "internal-api");
    assert_eq!(payments["targets"][0]["exchanges"], 3);
    assert_eq!(payments["refusals"], serde_json::json!([]));
    assert!(payments["first_seen"].as_str().unwrap() < payments["last_seen"].as_str().unwrap(), "{payments}");
    let intern = workload(&dir, &identity_id(&broker, "svc-intern-bob"));
    assert_eq!(intern["exchanges"]["deny"], 1);
    assert_eq!(intern["refusals"][0]["reason"], "TS-MAP-DENIED", "{intern}");
    let alice = workload(&dir, &identity_id(&broker, "alice"));
    assert_eq!(alice["refusals"][0]["reason"], "TS-MAP-NO-RULE", "{alice}");
    let (_, only_payments) =
        broker.admin_get(&format!("/v1/workloads?identity={}", identity_id(&broker, "svc-payments"))).await;
    assert_eq!(only_payments["workloads"].as_array().unwrap().len(), 1);

    // Every event, the unverifiable token's too, newest first, page by page.
    let (_, all) = broker.admin_get("/v1/audit").await;
    let events = all["events"].as_array().unwrap();
    assert_eq!(events.len(), 6, "{all:#}");
    assert!(all["next_cursor"].is_null());
    assert_eq!(events[0]["reason"], "TS-SRC-MALFORMED", "newest first: {:#}", events[0]);
    let mut seen = Vec::new();
    let mut path = "/v1/audit?limit=4".to_string();
    loop {
        let (status, page) = broker.admin_get(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["events"].as_array().unwrap().iter().map(|e| e["event_id"].clone()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/audit?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    let all_ids: Vec<Value> = events.iter().map(|e| e["event_id"].clone()).collect();
    assert_eq!(seen, all_ids, "pages are the whole list, in order, once each");

    let (_, denied) = broker.admin_get("/v1/audit?decision=deny").await;
    assert_eq!(denied["events"].as_array().unwrap().len(), 3);
    let id = identity_id(&broker, "svc-payments");
    let (_, mine) = broker.admin_get(&format!("/v1/audit?identity={id}&target=internal-api")).await;
    assert_eq!(mine["events"].as_array().unwrap().len(), 3);
    let (_, traced) = broker.admin_get(&format!("/v1/audit?issued_token={}", fingerprint(&issued[1]))).await;
    let traced = traced["events"].as_array().unwrap();
    assert_eq!(traced.len(), 1, "a leaked token leads to the one exchange that issued it");
    assert_eq!(traced[0]["identity"]["subject"], "svc-payments");
    assert_eq!(traced[0]["subject_token_fingerprint"], fingerprint(&presented[1]));
    let future = broker.clock.now() + 3600;
    let (_, none) = broker.admin_get(&format!("/v1/audit?since={future}")).await;
    assert_eq!(none["events"], serde_json::json!([]));

    // Bad filters get this API's JSON errors.
    for bad in ["decision=maybe", "cursor=zzz", "limit=0", "since=yesterday", "colour=blue"] {
        let (status, body) = broker.admin_get(&format!("/v1/audit?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_request", "{bad}: {body}");
    }

    // No token, presented or issued, is anywhere in the database's files.
    let data = broker.path().join("data");
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(bytes.len() > 4096, "the store is in {}", data.display());
    for token in presented.iter().chain(&issued) {
        let signature = token.rsplit('.').next().unwrap().as_bytes();
        assert!(!bytes.windows(signature.len()).any(|w| w == signature), "a token is in the store");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tessera_workloads_prints_the_directory_as_a_table_and_as_json() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker_with(&issuer, "").await;
    let (status, _) = broker.exchange(&token(&issuer, &broker, "svc-payments"), "internal-api").await;
    assert_eq!(status, 200);
    let (status, _) = broker.exchange(&token(&issuer, &broker, "svc-intern-bob"), "internal-api").await;
    assert_eq!(status, 400);
    let config = broker.path().join("broker.yaml");
    let run = |format: &str| {
        let out = std::process::Command::new(tessera_tests::agent::tessera_binary())
            .args(["--log-format", "text", "workloads", "--format", format, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let json: Value = serde_json::from_str(&run("json")).unwrap();
    let ids: HashSet<&str> = json["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["identity"]["subject"].as_str().unwrap())
        .collect();
    assert_eq!(ids, HashSet::from(["svc-payments", "svc-intern-bob"]));
    let table = run("text");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("IDENTITY"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    let payments = lines.iter().find(|l| l.contains("svc-payments")).unwrap();
    assert!(payments.contains("internal-api×1"), "{table}");
    let intern = lines.iter().find(|l| l.contains("svc-intern-bob")).unwrap();
    assert!(intern.contains("refused: internal-api:TS-MAP-DENIED×1"), "{table}");

    // A config whose store was never written is an error, not an empty store made on read.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::copy(&config, fresh.path().join("broker.yaml")).unwrap();
    let out = std::process::Command::new(tessera_tests::agent::tessera_binary())
        .args(["--log-format", "text", "workloads", "--config"])
        .arg(fresh.path().join("broker.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has the broker run"), "{out:?}");
    assert!(!fresh.path().join("data").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_outage_fails_exchanges_closed_and_they_recover_with_it() {
    let db = TestPostgres::new();
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let closed = broker_with(&issuer, &format!("{}  timeout: 1s\n", db.store_config())).await;
    let open = broker_with(&issuer, &format!("fail_open: true\n{}  timeout: 1s\n", db.store_config())).await;
    let (status, body) = closed.exchange(&token(&issuer, &closed, "svc-payments"), "internal-api").await;
    assert_eq!(status, 200, "{body}");

    db.set_available(false);
    let (status, body) = closed.exchange(&token(&issuer, &closed, "svc-payments"), "internal-api").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body.get("access_token").is_none());
    // The JSON-lines trail records the failure, not a grant.
    let line = closed.audit_events().pop().unwrap();
    assert_eq!(line["decision"], "error");
    assert_eq!(line["reason"], "TS-AUD-WRITE");
    assert!(line.get("issued_token_fingerprint").is_none(), "{line}");
    let text = closed.metrics().await;
    assert!(text.contains("tessera_audit_store_commits_total{result=\"error\"}"), "{text}");
    assert!(!text.contains("tessera_audit_store_commits_total{result=\"error\"} 0"), "{text}");
    // With fail_open, the credential goes out unrecorded in the store.
    let (status, body) = open.exchange(&token(&issuer, &open, "svc-ledger"), "internal-api").await;
    assert_eq!(status, 200, "{body}");

    db.set_available(true);
    // Waits for the recovery itself; only a store that never comes back fails, after a
    // minute or more of tries.
    let mut recovered = None;
    for _ in 0..300 {
        let (status, body) = closed.exchange(&token(&issuer, &closed, "svc-payments"), "internal-api").await;
        if status == 200 {
            recovered = Some(body);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let recovered = recovered.expect("exchanges succeed again once the store is back");
    let allowed =
        db.query("SELECT issued_token_fingerprint FROM tessera_audit_events WHERE decision = 'allow'");
    let allowed: HashSet<&str> = allowed.lines().collect();
    assert_eq!(allowed.len(), 2, "the two exchanges answered while the store was up: {allowed:?}");
    assert!(allowed.contains(fingerprint(recovered["access_token"].as_str().unwrap()).as_str()));
    closed.stop().await;
    open.stop().await;
}

/// Kill `tessera serve` while 8 clients exchange as fast as they can; every exchange that
/// got a 200 must be in the store. `store` is the `audit.store` block (empty: SQLite).
async fn killed_mid_load_loses_nothing(store: &str, verify: impl AsyncFnOnce(&Path, Vec<String>)) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    std::fs::write(dir.path().join("mappings/10-services.yaml"), RULES).unwrap();
    let indent = |s: &str| s.lines().map(|l| format!("  {l}\n")).collect::<String>();
    let config = format!(
        "  key_dir: keys\nsources:\n{}targets:\n{}mappings: mappings\naudit:\n  sink: none\n{}",
        indent(&oidc_source(&issuer)),
        indent(JWT_TARGET),
        indent(store),
    );
    let mut broker = BrokerProcess::start(dir.path(), &config).await;
    let now = tessera_adapters::SystemClock.now();
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let http = reqwest::Client::new();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let token = issuer.key(0).sign(&issuer.claims(&format!("svc-{i}"), "tessera", now));
            let (http, url, answered) = (http.clone(), broker.url.clone(), Arc::clone(&answered));
            tokio::spawn(async move {
                loop {
                    let form = [
                        ("grant_type", crate::TOKEN_EXCHANGE),
                        ("subject_token", token.as_str()),
                        ("subject_token_type", crate::JWT_TYPE),
                        ("audience", "internal-api"),
                    ];
                    let Ok(resp) = http.post(format!("{url}/v1/token")).form(&form).send().await else {
                        break;
                    };
                    if resp.status() != 200 {
                        continue;
                    }
                    // A body cut off by the kill is not an answer the client got.
                    let Ok(body) = resp.json::<Value>().await else { break };
                    answered.lock().unwrap().push(body["access_token"].as_str().unwrap().to_string());
                }
            })
        })
        .collect();
    let load = async {
        while answered.lock().unwrap().len() < 300 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), load).await.unwrap_or_else(|_| {
        let log = std::fs::read_to_string(dir.path().join("broker.log")).unwrap_or_default();
        panic!("fewer than 300 exchanges answered within 60 s; the broker's log:\n{log}")
    });
    broker.kill();
    for client in clients {
        client.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= 300);
    verify(dir.path(), answered.iter().map(|t| fingerprint(t)).collect()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_killed_mid_load_lost_no_exchange_it_answered_postgres() {
    let db = TestPostgres::new();
    killed_mid_load_loses_nothing(&db.store_config(), async |_, answered| {
        let stored =
            db.query("SELECT issued_token_fingerprint FROM tessera_audit_events WHERE decision = 'allow'");
        let stored: HashSet<&str> = stored.lines().collect();
        let missing: Vec<&String> = answered.iter().filter(|f| !stored.contains(f.as_str())).collect();
        assert!(
            missing.is_empty(),
            "{} of {} answered exchanges not in the store",
            missing.len(),
            answered.len()
        );
        // The directory was written in the same transactions as the events.
        let directory: i64 = db.query("SELECT SUM(allowed) FROM tessera_workloads").parse().unwrap();
        assert_eq!(directory, i64::try_from(stored.len()).unwrap());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_killed_mid_load_lost_no_exchange_it_answered_sqlite() {
    killed_mid_load_loses_nothing("", async |dir, answered| {
        let config = tessera_broker::config::load(&dir.join("broker.yaml")).unwrap();
        let store = tessera_broker::audit::store::AuditStore::open(
            &config.config.audit().store,
            &tessera_broker::audit::store::store_url(&config),
            Arc::new(tessera_broker::metrics::Metrics::new()),
            false,
        )
        .await
        .unwrap();
        let mut missing = 0;
        for fp in &answered {
            let query = tessera_broker::audit::store::EventQuery {
                issued_token_fingerprint: Some(fp.clone()),
                limit: 2,
                ..Default::default()
            };
            missing += usize::from(store.events(&query).await.unwrap().events.len() != 1);
        }
        assert_eq!(missing, 0, "{missing} of {} answered exchanges not in the store", answered.len());
    })
    .await;
}

/// A broker whose JSON-lines file is `/dev/full`: every audit line fails to write
/// (`ENOSPC`), as on a full disk. Its `audit_events` must not be read.
async fn broker_with_a_full_disk(issuer: &TestIssuer, audit: &str) -> TestBroker {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    std::os::unix::fs::symlink("/dev/full", dir.path().join("audit.jsonl")).unwrap();
    let mut options =
        BrokerOptions::new(&oidc_source(issuer), JWT_TARGET).mapping("10-services.yaml", RULES).with_admin();
    options.audit = audit.to_string();
    options.dir = Some(dir);
    spawn_broker(options).await
}

/// The `tessera_exchanges_total` sample for `decision` and `reason`, if any.
fn exchanges_counted(metrics: &str, decision: &str, reason: &str) -> Option<u64> {
    let labels = format!("decision=\"{decision}\",reason=\"{reason}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("tessera_exchanges_total{") && l.contains(&labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .reduce(|a, b| a + b)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_json_lines_sink_fails_exchanges_closed_unless_fail_open() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let closed = broker_with_a_full_disk(&issuer, "").await;
    let open = broker_with_a_full_disk(&issuer, "fail_open: true\n").await;

    let presented = token(&issuer, &closed, "svc-payments");
    let (status, headers, body) = closed
        .post_form(&[
            ("grant_type", crate::TOKEN_EXCHANGE),
            ("subject_token", presented.as_str()),
            ("subject_token_type", crate::JWT_TYPE),
            ("audience", "internal-api"),
        ])
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body.get("access_token").is_none(), "{body}");
    assert!(headers.contains_key("retry-after"));
    let metrics = closed.metrics().await;
    assert_eq!(exchanges_counted(&metrics, "error", "TS-AUD-WRITE"), Some(1), "{metrics}");
    assert_eq!(exchanges_counted(&metrics, "allow", "TS-OK"), None, "{metrics}");
    // The store committed first and holds the event as it was decided (docs/audit.md).
    let (status, events) = closed.admin_get("/v1/audit").await;
    assert_eq!(status, 200, "{events}");
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["subject_token_fingerprint"], fingerprint(&presented), "{events:?}");

    // With fail_open, the credential goes out; the store is then its only record.
    let (status, body) = open.exchange(&token(&issuer, &open, "svc-payments"), "internal-api").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());
    let (_, events) = open.admin_get("/v1/audit").await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["issued_token_fingerprint"], fingerprint(body["access_token"].as_str().unwrap()));
    closed.stop().await;
    open.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_sqlite_store_fails_exchanges_closed_and_they_recover_with_it() {
    use sqlx::Connection as _;

    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let closed = broker_with(&issuer, "store:\n  timeout: 1s\n").await;
    let open = broker_with(&issuer, "fail_open: true\nstore:\n  timeout: 1s\n").await;
    let (status, body) = closed.exchange(&token(&issuer, &closed, "svc-payments"), "internal-api").await;
    assert_eq!(status, 200, "{body}");

    // Another process holds the write lock of each broker's SQLite file.
    let lock = async |broker: &TestBroker| {
        let path = broker.broker.config().data_dir().join("audit.db");
        let mut holder =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut holder).await.unwrap();
        holder
    };
    let mut held = lock(&closed).await;
    let mut held_open = lock(&open).await;

    let (status, body) = closed.exchange(&token(&issuer, &closed, "svc-payments"), "internal-api").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body.get("access_token").is_none(), "{body}");
    let line = closed.audit_events().pop().unwrap();
    assert_eq!(line["decision"], "error", "{line}");
    assert_eq!(line["reason"], "TS-AUD-WRITE", "{line}");
    assert!(line.get("issued_token_fingerprint").is_none(), "{line}");
    let metrics = closed.metrics().await;
    assert_eq!(exchanges_counted(&metrics, "error", "TS-AUD-WRITE"), Some(1), "{metrics}");
    // With fail_open, the credential goes out, recorded in the JSON lines only.
    let (status, body) = open.exchange(&token(&issuer, &open, "svc-ledger"), "internal-api").await;
    assert_eq!(status, 200, "{body}");
    let line = open.audit_events().pop().unwrap();
    assert_eq!(line["decision"], "allow", "{line}");
    assert_eq!(line["issued_token_fingerprint"], fingerprint(body["access_token"].as_str().unwrap()));

    sqlx::query("ROLLBACK").execute(&mut held).await.unwrap();
    sqlx::query("ROLLBACK").execute(&mut held_open).await.unwrap();
    // The writer may still be waiting out SQLite's busy timeout on the refused commit: the
    // first exchange after it answers 200.
    let mut recovered = None;
    for _ in 0..40 {
        let (status, body) = closed.exchange(&token(&issuer, &closed, "svc-payments"), "internal-api").await;
        if status == 200 {
            recovered = Some(body);
            break;
        }
        assert_eq!(status, 503, "{body}");
    }
    let recovered = recovered.expect("exchanges succeed again once the lock is released");
    let issued = fingerprint(recovered["access_token"].as_str().unwrap());
    let (_, events) = closed.admin_get(&format!("/v1/audit?issued_token={issued}")).await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
    closed.stop().await;
    open.stop().await;
}

/// Exchanges made at once: each answered only once its event is committed and its line
/// appended; the store's order (event ids) and the JSON lines' order are the same, one line
/// per exchange, even though the writer committed and appended them in batches.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_exchanges_are_recorded_once_each_in_the_same_order_in_the_store_and_the_lines() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker_with(&issuer, "").await;
    let tokens: Vec<String> = (0..48).map(|i| token(&issuer, &broker, &format!("svc-{i}"))).collect();
    let answers = futures::future::join_all(tokens.iter().map(|t| broker.exchange(t, "internal-api"))).await;
    let mut issued = HashSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        issued.insert(fingerprint(body["access_token"].as_str().unwrap()));
    }
    let lines = broker.audit_events();
    assert_eq!(lines.len(), tokens.len(), "one line per exchange");
    let in_lines: HashSet<String> =
        lines.iter().map(|l| l["issued_token_fingerprint"].as_str().unwrap().to_string()).collect();
    assert_eq!(in_lines, issued, "every answered exchange has its line");

    let (status, page) = broker.admin_get("/v1/audit?limit=100").await;
    assert_eq!(status, 200, "{page}");
    // Newest first: reversed, the order the writer committed them in.
    let mut stored: Vec<&str> =
        page["events"].as_array().unwrap().iter().map(|e| e["request_id"].as_str().unwrap()).collect();
    stored.reverse();
    let appended: Vec<&str> = lines.iter().map(|l| l["request_id"].as_str().unwrap()).collect();
    assert_eq!(stored, appended, "the lines are in the store's order");
    let metrics = broker.metrics().await;
    assert!(metrics.contains("tessera_audit_store_events_total 48"), "{metrics}");
    broker.stop().await;
}

/// While the store refuses commits, every exchange of each refused batch fails closed and
/// its line, appended before the answer, records the failure; none of them is in the store
/// once it accepts commits again.
#[tokio::test(flavor = "multi_thread")]
async fn the_exchanges_of_a_refused_batch_are_all_refused_and_each_line_says_so() {
    use sqlx::Connection as _;

    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker_with(&issuer, "store:\n  timeout: 1s\n").await;
    let path = broker.broker.config().data_dir().join("audit.db");
    let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut holder).await.unwrap();

    let tokens: Vec<String> = (0..12).map(|i| token(&issuer, &broker, &format!("svc-{i}"))).collect();
    let answers = futures::future::join_all(tokens.iter().map(|t| broker.exchange(t, "internal-api"))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 503, "{body}");
        assert!(body.get("access_token").is_none(), "{body}");
    }
    // Read as the last answer came back: every line is there already.
    let lines = broker.audit_events();
    assert_eq!(lines.len(), tokens.len(), "{lines:?}");
    for line in &lines {
        assert_eq!(line["decision"], "error", "{line}");
        assert_eq!(line["reason"], "TS-AUD-WRITE", "{line}");
        assert!(line.get("issued_token_fingerprint").is_none(), "{line}");
    }
    let presented: HashSet<String> = tokens.iter().map(|t| fingerprint(t)).collect();
    let in_lines: HashSet<String> =
        lines.iter().map(|l| l["subject_token_fingerprint"].as_str().unwrap().to_string()).collect();
    assert_eq!(in_lines, presented);

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let mut recovered = false;
    for _ in 0..40 {
        let (status, body) = broker.exchange(&token(&issuer, &broker, "svc-later"), "internal-api").await;
        if status == 200 {
            recovered = true;
            break;
        }
        assert_eq!(status, 503, "{body}");
    }
    assert!(recovered, "exchanges succeed again once the lock is released");
    let (_, page) = broker.admin_get("/v1/audit?decision=allow&limit=100").await;
    let allowed: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject_token_fingerprint"].as_str().unwrap())
        .collect();
    assert!(
        allowed.iter().all(|f| !presented.contains(*f)),
        "a refused exchange is in the store: {allowed:?}"
    );
    broker.stop().await;
}
