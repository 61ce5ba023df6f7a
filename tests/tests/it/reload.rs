//! Hot reload of the mapping directory on a running broker: valid changes take effect,
//! invalid ones leave the previous rules serving and are reported, and no exchange fails
//! meanwhile. Tests wait for the change itself, never for a set time: how fast a reload
//! lands is the watcher's debounce plus the machine's load, not something to assert.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera_adapters::Clock as _;
use tessera_tests::keys::verify_with_jwks;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TARGET, RULES, oidc_source};

const RELOAD: &str = "reload:\n  debounce: 100ms\n";

/// RULES with the `tier` claim changed: a valid edit whose effect a token shows.
fn platinum() -> String {
    RULES.replace("tier: gold", "tier: platinum")
}

/// An edit that would deny every service if any of it were applied, and that is invalid
/// twice over: an unknown target and a CEL error.
const INVALID: &str = r#"version: 1
rules:
  - name: services-call-internal-api
    match: { source: corp, subject: "svc-*" }
    grant: { target: internal-api, claims: { tier: broken } }
  - name: deny-everyone
    effect: deny
    match: { source: corp }
    grant: { target: internal-api }
  - name: typo
    match: { source: corp }
    when: 'identity.subjct == "x"'
    grant: { target: internal-apii }
"#;

async fn broker(issuer: &TestIssuer, extra: &str) -> TestBroker {
    let mut options =
        BrokerOptions::new(&oidc_source(issuer), JWT_TARGET).mapping("10-services.yaml", RULES).with_admin();
    options.extra = extra.to_string();
    spawn_broker(options).await
}

/// The `tier` claim of a token issued now for `svc-api`, or the failed status.
async fn tier(issuer: &TestIssuer, broker: &TestBroker) -> Result<String, (u16, Value)> {
    let token = issuer.key(0).sign(&issuer.claims("svc-api", "tessera", broker.clock.now()));
    let (status, body) = broker.exchange(&token, "internal-api").await;
    if status != 200 {
        return Err((status, body));
    }
    let (_, jwks) = broker.get_json("/.well-known/jwks.json").await;
    let claims = verify_with_jwks(&jwks, body["access_token"].as_str().unwrap());
    Ok(claims["tier"].as_str().unwrap().to_string())
}

/// Wait until `check` holds, looking every 25 ms. Only a broker that never gets there
/// fails it: after [`HANG`], so the failure names what never happened.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < HANG, "{what}: never happened");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How long a wait may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(60);

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

async fn metrics(broker: &TestBroker) -> String {
    broker.metrics().await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_change_keeps_the_old_rules_and_a_fix_takes_effect_while_requests_flow() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = Arc::new(broker(&issuer, RELOAD).await);
    let issuer = Arc::new(issuer);
    let (_, status) = broker.admin_get("/v1/status").await;
    let original = status["mappings"]["version"].as_str().unwrap().to_string();
    assert_eq!(tier(&issuer, &broker).await, Ok("gold".into()));

    // Requests flow the whole time: every one must succeed, with the old or the new rules.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (issuer, broker, stop) = (Arc::clone(&issuer), Arc::clone(&broker), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                seen.push(tier(&issuer, &broker).await);
            }
            seen
        })
    };

    broker.write_mappings(&[("10-services.yaml", INVALID)]);
    wait_until("the refused reload is reported", || async {
        !broker.admin_get("/v1/status").await.1["mappings"]["last_reload_error"].is_null()
    })
    .await;
    let (_, status) = broker.admin_get("/v1/status").await;
    let error = status["mappings"]["last_reload_error"].clone();
    let message = error["message"].as_str().unwrap();
    let file = broker.path().join("mappings/10-services.yaml");
    assert!(
        message.contains(&format!("{}:12:11: `identity` has no field `subjct`", file.display())),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}:13:22: unknown target `internal-apii`", file.display())),
        "{message}"
    );
    assert!(error["at"].as_str().unwrap().ends_with('Z'));
    let (_, status) = broker.admin_get("/v1/status").await;
    assert_eq!(status["mappings"]["version"], original.as_str(), "the previous rules keep serving");
    assert_eq!(status["mappings"]["reloads_failed"], 1);
    let text = metrics(&broker).await;
    assert_eq!(metric(&text, "tessera_mapping_reloads_total{result=\"error\"}"), 1.0);
    assert_eq!(metric(&text, "tessera_mapping_last_reload_success"), 0.0);
    assert_eq!(tier(&issuer, &broker).await, Ok("gold".into()), "neither the deny nor the new claim applies");

    // A valid fix takes effect: once the reload is counted, every exchange sees it.
    broker.write_mappings(&[("10-services.yaml", &platinum())]);
    wait_until("the fix is reloaded", || async {
        broker.admin_get("/v1/status").await.1["mappings"]["reloads_ok"] == 1
    })
    .await;
    assert_eq!(tier(&issuer, &broker).await, Ok("platinum".into()));
    stop.store(true, Ordering::SeqCst);
    let seen = load.await.unwrap();

    let failed: Vec<_> = seen.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "requests failed during the reloads: {failed:?}");
    assert!(seen.len() >= 5, "requests kept flowing ({} made)", seen.len());
    assert!(seen.iter().all(|r| matches!(r.as_deref(), Ok("gold" | "platinum"))), "{seen:?}");
    let (_, status) = broker.admin_get("/v1/status").await;
    assert!(status["mappings"]["last_reload_error"].is_null(), "{status}");
    assert_ne!(status["mappings"]["version"], original.as_str());
    assert_eq!(status["mappings"]["reloads_ok"], 1);
    let text = metrics(&broker).await;
    assert_eq!(metric(&text, "tessera_mapping_reloads_total{result=\"ok\"}"), 1.0);
    assert_eq!(metric(&text, "tessera_mapping_last_reload_success"), 1.0);
    assert_eq!(metric(&text, "tessera_mapping_rules"), 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_directory_is_picked_up() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker(&issuer, RELOAD).await;
    assert_eq!(tier(&issuer, &broker).await, Ok("gold".into()));
    // Deploy-style: build the new directory beside the old one, then swap them.
    let dir = broker.path().join("mappings");
    let next = broker.path().join("mappings.next");
    std::fs::create_dir(&next).unwrap();
    std::fs::write(next.join("10-services.yaml"), platinum()).unwrap();
    std::fs::rename(&dir, broker.path().join("mappings.old")).unwrap();
    std::fs::rename(&next, &dir).unwrap();
    wait_until("the new directory serves", || async {
        tier(&issuer, &broker).await == Ok("platinum".into())
    })
    .await;
    // And it is watched in turn.
    std::fs::write(dir.join("10-services.yaml"), RULES).unwrap();
    wait_until("an edit in the new directory serves", || async {
        tier(&issuer, &broker).await == Ok("gold".into())
    })
    .await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_and_the_admin_api_reload_when_watching_is_off() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker(&issuer, "reload:\n  watch: false\n  poll_interval: 0s\n").await;
    // This test's own handler keeps the default action (exit) away from the process
    // whatever the broker's has got to.
    let mut own = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();

    // The same edit in a watched broker's directory: once that broker serves it, a watcher
    // has had its chance, and this broker, which has none, still serves the old rules.
    let watched = self::broker(&issuer, RELOAD).await;
    watched.write_mappings(&[("10-services.yaml", &platinum())]);
    broker.write_mappings(&[("10-services.yaml", &platinum())]);
    wait_until("the watched broker reloads", || async {
        tier(&issuer, &watched).await == Ok("platinum".into())
    })
    .await;
    assert_eq!(tier(&issuer, &broker).await, Ok("gold".into()), "not watched: nothing changes by itself");
    assert_eq!(broker.admin_get("/v1/status").await.1["mappings"]["reloads_ok"], 0);
    watched.stop().await;

    // The reload that brings the edit in is SIGHUP's (resent until the broker's handler,
    // installed by its reload task, has seen one).
    let pid = std::process::id().to_string();
    wait_until("SIGHUP reloads", || {
        let (issuer, broker, pid) = (&issuer, &broker, pid.clone());
        async move {
            let status = std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap();
            assert!(status.success());
            tokio::time::sleep(Duration::from_millis(100)).await;
            tier(issuer, broker).await == Ok("platinum".into())
        }
    })
    .await;
    own.recv().await;

    // The admin API reloads on demand and says what it did.
    broker.write_mappings(&[("10-services.yaml", INVALID)]);
    let (status, body) = broker.admin_post("/v1/reload", &Value::Null).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["result"], "refused");
    assert!(
        body["errors"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().contains("unknown target"))
    );
    broker.write_mappings(&[("10-services.yaml", RULES)]);
    let (status, body) = broker.admin_post("/v1/reload", &Value::Null).await;
    assert_eq!((status, &body["result"]), (200, &Value::from("reloaded")), "{body}");
    assert_eq!(body["rules"], 2);
    assert_eq!(tier(&issuer, &broker).await, Ok("gold".into()));
    let (status, body) = broker.admin_post("/v1/reload", &Value::Null).await;
    assert_eq!((status, &body["result"]), (200, &Value::from("unchanged")), "{body}");
    broker.stop().await;
}
