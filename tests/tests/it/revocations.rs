//! Revocations on the admin API (`/v1/revocations`) and through `tessera revoke`: made with
//! the admin caller as author, validated, listed, removed but kept on record, in SQLite and
//! in PostgreSQL, and still there after the broker restarts. Their effect: each kind refuses
//! the exchanges it names (after verification, before any cache), cached credentials are
//! purged from the process's cache and Redis, and a broker that cannot read them does not
//! start. Replicas sharing the store enforce one made on any of them, and a replica killed
//! right after one comes back refusing.

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_tests::broker::try_spawn_broker;
use tessera_tests::postgres::TestPostgres;
use tessera_tests::redis::TestRedis;
use tessera_tests::sts::StsPeer;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::admin_auth::{admin_token, jwt_broker};
use crate::targets_aws as aws;
use crate::{JWT_TARGET, RULES, oidc_source};

/// `method` on the admin API at `path`, with a bearer token if given.
pub(crate) async fn call(
    broker: &TestBroker,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", broker.admin_url.as_deref().unwrap());
    let mut request = match method {
        "POST" => broker.http.post(url),
        "DELETE" => broker.http.delete(url),
        _ => broker.http.get(url),
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn listed(list: &Value) -> Vec<&str> {
    list["revocations"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_revokes_lists_and_removes_and_is_recorded_as_the_author() {
    let (issuer, broker) = jwt_broker().await;
    let token = admin_token(&issuer, &broker).await;
    let sub = tessera_tests::keys::claims_of(&token)["sub"].as_str().unwrap().to_string();
    let body = json!({
        "match": { "kind": "identity_glob", "pattern": "oidc://corp/svc-pay*" },
        "reason": "repository compromised",
        "expires_at": "2099-01-01T00:00:00Z",
    });
    let (status, _) = call(&broker, "POST", "/v1/revocations", None, Some(body.clone())).await;
    assert_eq!(status, 401, "revoking needs the admin credential");

    let (status, made) = call(&broker, "POST", "/v1/revocations", Some(&token), Some(body)).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["author"], sub.as_str());
    assert_eq!(made["match"]["pattern"], "oidc://corp/svc-pay*");
    assert_eq!(made["expires"], "2099-01-01T00:00:00.000Z");
    let id = made["id"].as_str().unwrap();

    let (status, list) = call(&broker, "GET", "/v1/revocations", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(listed(&list), [id]);
    assert_eq!(list["revocations"][0]["in_force"], true);

    let (status, removed) =
        call(&broker, "DELETE", &format!("/v1/revocations/{id}"), Some(&token), None).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["removed_by"], sub.as_str());
    let (status, again) = call(&broker, "DELETE", &format!("/v1/revocations/{id}"), Some(&token), None).await;
    assert_eq!((status, again["error"].as_str()), (404, Some("no_such_revocation")));
    let (_, list) = call(&broker, "GET", "/v1/revocations", Some(&token), None).await;
    assert!(listed(&list).is_empty(), "{list}");
    let (_, all) = call(&broker, "GET", "/v1/revocations?removed=true", Some(&token), None).await;
    assert_eq!(listed(&all), [id]);
    assert_eq!(all["revocations"][0]["in_force"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn revocations_that_could_never_match_are_refused_and_nothing_is_stored() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET).mapping("10-services.yaml", RULES).with_admin(),
    )
    .await;
    let refused = [
        (json!({ "match": { "kind": "identity", "id": "" }, "reason": "x" }), "invalid_revocation"),
        (
            json!({ "match": { "kind": "identity_glob", "pattern": "a\\" }, "reason": "x" }),
            "invalid_revocation",
        ),
        (
            json!({ "match": { "kind": "issued_token", "fingerprint": "abc" }, "reason": "x" }),
            "invalid_revocation",
        ),
        (json!({ "match": { "kind": "source", "source": "corp" }, "reason": "" }), "invalid_revocation"),
        (
            json!({ "match": { "kind": "source", "source": "corp" }, "reason": "x", "expires_at": "2001-01-01T00:00:00Z" }),
            "invalid_revocation",
        ),
        (json!({ "match": { "kind": "everyone" }, "reason": "x" }), "invalid_request"),
        (
            json!({ "match": { "kind": "source", "source": "corp" }, "reason": "x", "extra": 1 }),
            "invalid_request",
        ),
    ];
    for (body, error) in refused {
        let (status, answer) = call(&broker, "POST", "/v1/revocations", None, Some(body.clone())).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some(error)), "{body} -> {answer}");
    }
    let (_, all) = call(&broker, "GET", "/v1/revocations?removed=true", None, None).await;
    assert!(listed(&all).is_empty(), "{all}");
}

/// A broker with the standard target and rules, the admin API, and `db` as its store.
fn on_postgres(issuer: &TestIssuer, db: &TestPostgres) -> BrokerOptions {
    let mut options =
        BrokerOptions::new(&oidc_source(issuer), JWT_TARGET).mapping("10-services.yaml", RULES).with_admin();
    options.audit = db.store_config();
    options
}

/// `tessera revoke` against `admin_url`; its stdout.
pub(crate) fn revoke(admin_url: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(tessera_tests::agent::tessera_binary())
        .args(["--log-format", "text", "revoke", "--admin-url", admin_url])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tessera_revoke_works_on_postgresql_and_revocations_survive_a_restart() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let db = TestPostgres::new();
    let options = || on_postgres(&issuer, &db);
    let broker = spawn_broker(options()).await;
    let admin = broker.admin_url.clone().unwrap();
    let attribute = revoke(
        &admin,
        &["add", "--source", "corp", "--attribute", "team=payments", "--reason", "laptop stolen"],
    );
    let kept = revoke(&admin, &["add", "--rule", "services-call-internal-api", "--reason", "rule too broad"]);
    let attribute = attribute.trim().strip_prefix("revoked: ").unwrap().to_string();
    let kept = kept.trim().strip_prefix("revoked: ").unwrap().to_string();
    revoke(&admin, &["remove", &attribute]);
    let json: Value = serde_json::from_str(&revoke(&admin, &["list", "--format", "json"])).unwrap();
    assert_eq!(listed(&json), [kept.as_str()]);
    assert_eq!(json["revocations"][0]["author"], "anonymous", "an unauthenticated loopback listener");
    assert_eq!(db.query("SELECT count(*) FROM tessera_revocations"), "2", "removal deletes nothing");
    broker.stop().await;

    let restarted = spawn_broker(options()).await;
    let table = revoke(restarted.admin_url.as_deref().unwrap(), &["list", "--removed"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    let rule = lines.iter().find(|l| l.contains(kept.as_str())).unwrap();
    assert!(rule.contains("rule") && rule.contains(" yes ") && rule.contains("(rule too broad)"), "{table}");
    let removed = lines.iter().find(|l| l.contains(attribute.as_str())).unwrap();
    assert!(removed.contains(" no ") && removed.contains("\"team\":\"payments\""), "{table}");
}

/// Make a revocation on `broker`'s loopback admin listener; its id.
async fn revoke_on(broker: &TestBroker, matcher: Value) -> String {
    let body = json!({ "match": matcher, "reason": "incident" });
    let (status, made) = call(broker, "POST", "/v1/revocations", None, Some(body)).await;
    assert_eq!(status, 201, "{made}");
    made["id"].as_str().unwrap().to_string()
}

async fn lift(broker: &TestBroker, id: &str) {
    let (status, body) = call(broker, "DELETE", &format!("/v1/revocations/{id}"), None, None).await;
    assert_eq!(status, 200, "{body}");
}

/// The last audit event's decision and reason.
fn last_outcome(broker: &TestBroker) -> (String, String) {
    let event = broker.audit_events().pop().unwrap();
    (event["decision"].as_str().unwrap().to_string(), event["reason"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_refuses_what_it_names_after_verification_and_nothing_else() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET).mapping("10-services.yaml", RULES).with_admin(),
    )
    .await;
    let token = |sub: &str| issuer.key(0).sign(&issuer.claims(sub, "tessera", broker.clock.now()));
    let (status, _) = broker.exchange(&token("svc-payments"), "internal-api").await;
    assert_eq!(status, 200);
    let payments = broker.audit_events().pop().unwrap()["identity"]["id"].as_str().unwrap().to_string();
    let mut leaked = issuer.claims("svc-payments", "tessera", broker.clock.now());
    leaked["jti"] = json!("leaked-1");
    let leaked = issuer.key(0).sign(&leaked);
    let cases = [
        (json!({ "kind": "identity", "id": payments }), "invalid_target", true),
        (json!({ "kind": "identity_glob", "pattern": "*/svc-pay*" }), "invalid_target", true),
        (json!({ "kind": "rule", "rule": "services-call-internal-api" }), "invalid_target", false),
        (json!({ "kind": "source", "source": "corp" }), "invalid_target", false),
        (json!({ "kind": "subject_jti", "jti": "leaked-1" }), "invalid_request", true),
    ];
    for (matcher, error, others_pass) in cases {
        let id = revoke_on(&broker, matcher.clone()).await;
        let subject = if error == "invalid_request" { leaked.clone() } else { token("svc-payments") };
        let (status, refused) = broker.exchange(&subject, "internal-api").await;
        assert_eq!((status, refused["error"].as_str()), (400, Some(error)), "{matcher}: {refused}");
        assert_eq!(last_outcome(&broker), ("deny".into(), "TS-REVOKED".into()), "{matcher}");
        let (status, _) = broker.exchange(&token("svc-payments"), "internal-api").await;
        assert_eq!(
            status == 200,
            error == "invalid_request",
            "{matcher}: a fresh token of the same workload"
        );
        let (status, _) = broker.exchange(&token("svc-ledger"), "internal-api").await;
        assert_eq!(status == 200, others_pass, "{matcher}: another workload");
        lift(&broker, &id).await;
        let (status, _) = broker.exchange(&subject, "internal-api").await;
        assert_eq!(status, 200, "{matcher}: lifted");
    }
    // A forged token naming a revoked workload is refused as forged, not as revoked.
    revoke_on(&broker, json!({ "kind": "identity", "id": payments })).await;
    let forged = TestKey::rsa("rsa-1").sign(&issuer.claims("svc-payments", "tessera", broker.clock.now()));
    let (status, _) = broker.exchange(&forged, "internal-api").await;
    assert_eq!(status, 400);
    assert_ne!(last_outcome(&broker).1, "TS-REVOKED", "checked only after verification");
}

fn access_key(body: &Value) -> String {
    body["aws_credentials"]["AccessKeyId"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_purges_cached_credentials_from_both_caches_and_none_is_served() {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let redis = TestRedis::new();
    let mut options = BrokerOptions::new(&oidc_source(&issuer), &aws::target(&sts, ""))
        .mapping("10-aws.yaml", aws::RULES)
        .with_admin();
    options.extra = redis.config();
    let broker = spawn_broker(options).await;
    let cached = || redis.entries().iter().filter(|(k, _)| k.contains(":credential:")).count();
    let payments = aws::token(&issuer, &broker, "svc-payments");
    let ledger = aws::token(&issuer, &broker, "svc-ledger");
    let (status, first) = broker.exchange(&payments, "aws-prod").await;
    assert_eq!(status, 200, "{first}");
    let identity = broker.audit_events().pop().unwrap()["identity"]["id"].as_str().unwrap().to_string();
    let (status, _) = broker.exchange(&ledger, "aws-prod").await;
    assert_eq!(status, 200);
    assert_eq!((sts.call_count(), cached()), (2, 2));

    let id = revoke_on(&broker, json!({ "kind": "identity", "id": identity })).await;
    assert_eq!(cached(), 1, "the revoked workload's credential left Redis; the other's stayed");
    let (status, refused) = broker.exchange(&payments, "aws-prod").await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_target")), "{refused}");
    let event = broker.audit_events().pop().unwrap();
    assert_eq!(
        (event["reason"].as_str(), event["cache"].as_str()),
        (Some("TS-REVOKED"), None),
        "before the cache"
    );
    let (status, _) = broker.exchange(&ledger, "aws-prod").await;
    assert_eq!(status, 200);
    assert_eq!(
        broker.audit_events().pop().unwrap()["cache"],
        "hit",
        "another workload's credential stays cached"
    );

    lift(&broker, &id).await;
    let (status, again) = broker.exchange(&payments, "aws-prod").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(sts.call_count(), 3, "the purged credential was not served again: a new one was issued");
    assert_ne!(access_key(&again), access_key(&first));

    // A leaked credential, by its fingerprint: the next exchange gets a new one.
    let fingerprint =
        broker.audit_events().pop().unwrap()["issued_token_fingerprint"].as_str().unwrap().to_string();
    revoke_on(&broker, json!({ "kind": "issued_token", "fingerprint": fingerprint })).await;
    let (status, fresh) = broker.exchange(&payments, "aws-prod").await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(sts.call_count(), 4);
    assert_ne!(access_key(&fresh), access_key(&again));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_cannot_read_its_revocations_does_not_start() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let db = TestPostgres::new();
    let options = || on_postgres(&issuer, &db);
    let broker = spawn_broker(options()).await;
    revoke_on(&broker, json!({ "kind": "source", "source": "corp" })).await;
    broker.stop().await;
    db.query("UPDATE tessera_revocations SET matcher = '{\"kind\": \"from a newer version\"}'");
    let Err(refused) = try_spawn_broker(options()).await else { panic!("the broker must not serve") };
    assert!(refused.contains("revocations could not be loaded"), "{refused}");
}

/// An exchange of `sub`'s token at `url`'s public listener: the status and, when refused,
/// the error.
async fn exchange_at(http: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let form = [
        ("grant_type", crate::TOKEN_EXCHANGE),
        ("subject_token", token),
        ("subject_token_type", crate::JWT_TYPE),
        ("audience", "internal-api"),
    ];
    let response = http.post(format!("{url}/v1/token")).form(&form).send().await.expect("token request");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// Wait until `check` holds, polling; fails after a generous deadline (this is no timing
/// assertion: the propagation time is measured by the `revocation_propagation` bench).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_made_on_one_replica_is_enforced_by_the_other_and_lifted_on_it_too() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let db = TestPostgres::new();
    let keys = tempfile::tempdir().unwrap();
    let options = || on_postgres(&issuer, &db).replica_of("https://tessera.replicas.example", keys.path());
    let (a, b) = (spawn_broker(options()).await, spawn_broker(options()).await);
    let token = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", a.clock.now()));
    assert_eq!(b.exchange(&token, "internal-api").await.0, 200);

    let id = revoke_on(&a, json!({ "kind": "identity_glob", "pattern": "*/svc-payments" })).await;
    eventually("replica b refuses", async || b.exchange(&token, "internal-api").await.0 == 400).await;
    assert_eq!(last_outcome(&b), ("deny".into(), "TS-REVOKED".into()));
    lift(&a, &id).await;
    eventually("replica b serves again", async || b.exchange(&token, "internal-api").await.0 == 200).await;
}

/// The config of a `tessera serve` process on `db` (the mapping files written into `dir`,
/// `extra` appended), and the admin listener's address it names.
fn process_config(
    dir: &std::path::Path,
    issuer: &TestIssuer,
    db: &TestPostgres,
    extra: &str,
) -> (String, std::net::SocketAddr) {
    std::fs::create_dir(dir.join("mappings")).unwrap();
    std::fs::write(dir.join("mappings/10-services.yaml"), RULES).unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let indent = |s: &str| s.lines().map(|l| format!("  {l}\n")).collect::<String>();
    let config = format!(
        "  key_dir: keys\nsources:\n{}targets:\n{}mappings: mappings\nadmin:\n  listen: {admin}\naudit:\n  sink: none\n{}{extra}",
        indent(&oidc_source(issuer)),
        indent(JWT_TARGET),
        indent(&db.store_config()),
    );
    (config, admin)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_right_after_a_revocation_comes_back_refusing() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let db = TestPostgres::new();
    let dir = tempfile::tempdir().unwrap();
    let (config, admin) = process_config(dir.path(), &issuer, &db, "");
    let mut broker = tessera_tests::broker::BrokerProcess::start(dir.path(), &config).await;
    let http = reqwest::Client::new();
    let token =
        issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", tessera_adapters::SystemClock.now()));
    assert_eq!(exchange_at(&http, &broker.url, &token).await.0, 200);
    let body = json!({ "match": { "kind": "source", "source": "corp" }, "reason": "issuer key leaked" });
    let made = http.post(format!("http://{admin}/v1/revocations")).json(&body).send().await.unwrap();
    assert_eq!(made.status(), 201);
    broker.kill();

    let broker = tessera_tests::broker::BrokerProcess::start(dir.path(), &config).await;
    let (status, refused) = exchange_at(&http, &broker.url, &token).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_target")), "{refused}");
}

/// With Redis, the replica that made a change publishes a notice on
/// `<key_prefix>revocations` (its id, never its match or reason) and the others read the
/// store at once; the replica that did not make it refuses, then serves again once lifted.
#[tokio::test(flavor = "multi_thread")]
async fn with_redis_a_revocation_is_announced_and_the_other_replica_refuses() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let db = TestPostgres::new();
    let redis = TestRedis::new();
    let keys = tempfile::tempdir().unwrap();
    let options = || {
        let mut options =
            on_postgres(&issuer, &db).replica_of("https://tessera.replicas.example", keys.path());
        options.extra = redis.config();
        options
    };
    let (a, b) = (spawn_broker(options()).await, spawn_broker(options()).await);
    let token = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", a.clock.now()));
    assert_eq!(b.exchange(&token, "internal-api").await.0, 200);

    // Listen on the channel as a third replica would.
    let mut listener = redis::Client::open(tessera_tests::redis::URL).unwrap().get_connection().unwrap();
    let channel = format!("{}revocations", redis.prefix);
    let (tx, notices) = std::sync::mpsc::channel::<String>();
    let subscribed = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut pubsub = listener.as_pubsub();
        pubsub.subscribe(&channel).unwrap();
        subscribed.0.send(()).unwrap();
        while let Ok(message) = pubsub.get_message() {
            if tx.send(message.get_payload::<String>().unwrap()).is_err() {
                return;
            }
        }
    });
    subscribed.1.recv().unwrap();

    let body = json!({
        "match": { "kind": "identity_glob", "pattern": "*/svc-payments" },
        "reason": "secret-incident-4711",
    });
    let (status, made) = call(&a, "POST", "/v1/revocations", None, Some(body)).await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    let notice = notices.recv_timeout(std::time::Duration::from_secs(20)).expect("a notice");
    assert_eq!(notice, format!("added:{id}"), "the id alone: no match, no reason");
    eventually("replica b receives the notice", async || b.broker.propagation().notices() >= 1).await;
    eventually("replica b refuses", async || b.exchange(&token, "internal-api").await.0 == 400).await;
    assert_eq!(last_outcome(&b), ("deny".into(), "TS-REVOKED".into()));

    lift(&a, &id).await;
    let notice = notices.recv_timeout(std::time::Duration::from_secs(20)).expect("a notice");
    assert_eq!(notice, format!("removed:{id}"));
    eventually("replica b serves again", async || b.exchange(&token, "internal-api").await.0 == 200).await;

    a.stop().await;
    b.stop().await;
}

/// A replica on PostgreSQL and Redis, killed with SIGKILL right after it answered a
/// revocation: the replica that stayed up enforces it, and the killed one comes back on
/// the same store still refusing.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_right_after_announcing_a_revocation_leaves_every_replica_refusing() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let db = TestPostgres::new();
    let redis = TestRedis::new();
    let dir = tempfile::tempdir().unwrap();
    let (config, admin) = process_config(dir.path(), &issuer, &db, &redis.config());
    let mut killed = tessera_tests::broker::BrokerProcess::start(dir.path(), &config).await;
    let mut options = on_postgres(&issuer, &db);
    options.extra = redis.config();
    let other = spawn_broker(options).await;
    let http = reqwest::Client::new();
    let token =
        issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", tessera_adapters::SystemClock.now()));
    assert_eq!(exchange_at(&http, &killed.url, &token).await.0, 200);
    assert_eq!(exchange_at(&http, &other.url, &token).await.0, 200);

    let body =
        json!({ "match": { "kind": "identity_glob", "pattern": "*/svc-payments" }, "reason": "INC-2" });
    let made = http.post(format!("http://{admin}/v1/revocations")).json(&body).send().await.unwrap();
    assert_eq!(made.status(), 201);
    killed.kill();

    eventually("the replica still up refuses", async || {
        exchange_at(&http, &other.url, &token).await.0 == 400
    })
    .await;
    assert_eq!(last_outcome(&other), ("deny".into(), "TS-REVOKED".into()));
    let restarted = tessera_tests::broker::BrokerProcess::start(dir.path(), &config).await;
    let (status, refused) = exchange_at(&http, &restarted.url, &token).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_target")), "{refused}");
    other.stop().await;
}
