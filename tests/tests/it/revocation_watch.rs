//! `POST /v1/revocations/watch` on the public listener: a watch is held until the caller's
//! own request is revoked (answered `{"revoked": true}` at once) or its wait ends
//! (`{"revoked": false}`); bad input gets the token endpoint's RFC 6749 bodies; no audit
//! event is written for a watch; at most `limits.max_revocation_watches` are held, and a
//! stopping broker answers the ones it holds instead of waiting them out.

use std::time::Duration;

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TARGET, JWT_TYPE, RULES, TOKEN_EXCHANGE, invalid_token_body, oidc_source};

async fn broker(issuer: &TestIssuer, extra: &str) -> TestBroker {
    let mut options = BrokerOptions::new(&oidc_source(issuer), JWT_TARGET)
        .mapping("10-services.yaml", RULES)
        .with_admin()
        .with_metrics();
    options.extra = extra.to_string();
    spawn_broker(options).await
}

/// POST `form` to the watch endpoint of `url`: status, `Retry-After`, JSON body.
async fn watch_at(url: &str, form: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/revocations/watch"))
        .form(form)
        .send()
        .await
        .expect("POST /v1/revocations/watch");
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

/// A watch of `token`'s request held up to 60 s, in the background.
fn hold(url: &str, token: &str) -> tokio::task::JoinHandle<(u16, Option<String>, Value)> {
    let (url, token) = (url.to_string(), token.to_string());
    tokio::spawn(async move { watch_at(&url, &request(&token, "60")).await })
}

/// A request body as owned pairs.
type Form = Vec<(String, String)>;

fn request<'a>(token: &'a str, wait: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", token),
        ("subject_token_type", JWT_TYPE),
        ("audience", "internal-api"),
        ("wait", wait),
    ]
}

/// Wait until `check` holds, polling; fails after a generous deadline (no timing
/// assertion: the delay is measured by the `revocation` bench).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn revoke(broker: &TestBroker, matcher: Value) -> String {
    let (status, made) = broker
        .admin_post("/v1/revocations", &json!({ "match": matcher, "reason": "secret-reason-77" }))
        .await;
    assert_eq!(status, 201, "{made}");
    made["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_watch_is_answered_when_the_callers_request_is_revoked_and_not_for_others() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker(&issuer, "").await;
    let now = broker.clock.now();
    let payments = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", now));
    let billing = issuer.key(0).sign(&issuer.claims("svc-billing", "tessera", now));
    let (status, issued) = broker.exchange(&payments, "internal-api").await;
    assert_eq!(status, 200, "{issued}");
    let events = broker.audit_events().len();

    // Not revoked: the wait ends unchanged (0 s: answered at once).
    let (status, _, answer) = watch_at(&broker.url, &request(&payments, "0")).await;
    assert_eq!((status, answer), (200, json!({ "revoked": false })));

    let held_payments = hold(&broker.url, &payments);
    let held_billing = hold(&broker.url, &billing);
    eventually("both watches held", || broker.broker.watches().open() == 2).await;
    revoke(&broker, json!({ "kind": "identity_glob", "pattern": "*/svc-payments" })).await;
    let (status, _, answer) = held_payments.await.unwrap();
    assert_eq!((status, answer.clone()), (200, json!({ "revoked": true, "code": "TS-REVOKED" })), "{answer}");
    assert!(!answer.to_string().contains("secret-reason-77"), "nothing about the revocation");
    assert_eq!(broker.broker.watches().open(), 1, "the other identity's watch is still held");

    // A new watch of a revoked request is answered at once, whatever its wait.
    let (status, _, answer) = watch_at(&broker.url, &request(&payments, "60")).await;
    assert_eq!((status, answer["revoked"].as_bool()), (200, Some(true)));

    // Watches are counted in metrics, never audited.
    assert_eq!(broker.audit_events().len(), events, "no audit event per watch");
    let metrics = broker.metrics().await;
    assert!(metrics.contains("tessera_revocation_watches_total{outcome=\"revoked\"} 2"), "{metrics}");
    assert!(metrics.contains("tessera_revocation_watches_total{outcome=\"unchanged\"} 1"), "{metrics}");
    assert!(metrics.contains("tessera_revocation_watches_open 1"), "{metrics}");

    // The other one ends when the broker stops, answered rather than waited out.
    broker.stop().await;
    let (status, retry, answer) = held_billing.await.unwrap();
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{answer}");
    assert_eq!(answer["error"], "temporarily_unavailable", "{answer}");
}

/// A credential's fingerprint names it: revoking that issued token answers the watch of
/// the one holding it, and not a watch given no fingerprint.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_issued_token_answers_the_watch_that_names_its_fingerprint() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker(&issuer, "").await;
    let token = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", broker.clock.now()));
    let (_, issued) = broker.exchange(&token, "internal-api").await;
    let fingerprint =
        tessera_adapters::Secret::new(issued["access_token"].as_str().unwrap().to_string()).fingerprint();
    let mut named = request(&token, "0");
    named.push(("fingerprint", &fingerprint));
    revoke(&broker, json!({ "kind": "issued_token", "fingerprint": fingerprint })).await;
    let (status, _, answer) = watch_at(&broker.url, &named).await;
    assert_eq!((status, answer["revoked"].as_bool()), (200, Some(true)), "{answer}");
    let (status, _, answer) = watch_at(&broker.url, &request(&token, "0")).await;
    assert_eq!((status, answer["revoked"].as_bool()), (200, Some(false)), "{answer}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_watches_get_the_token_endpoints_rfc6749_errors() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker(&issuer, "").await;
    let now = broker.clock.now();
    let token = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", now));
    let forged = TestKey::rsa("rsa-1").sign(&issuer.claims("svc-payments", "tessera", now));
    let intern = issuer.key(0).sign(&issuer.claims("svc-intern-1", "tessera", now));
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut form = request(&token, "0");
        form.extend_from_slice(extra);
        form.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()
    };
    let owned =
        |form: Vec<(&str, &str)>| form.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let cases: Vec<(Form, u16, &str)> = vec![
        (owned(request(&forged, "0")), 400, "invalid_request"),
        (owned(request("not-a-jwt", "0")), 400, "invalid_request"),
        (owned(vec![("grant_type", TOKEN_EXCHANGE), ("audience", "internal-api")]), 400, "invalid_request"),
        (owned(vec![("subject_token", &token)]), 400, "invalid_request"),
        (with(&[("fingerprint", "sha256:abc")]), 400, "invalid_request"),
        (with(&[("fingerprint", "md5:0123")]), 400, "invalid_request"),
        (owned(vec![("wait", "soon"), ("grant_type", TOKEN_EXCHANGE)]), 400, "invalid_request"),
        (with(&[("resource", "https://x.example")]), 400, "invalid_request"),
        (owned(request(&intern, "0")), 400, "invalid_target"),
        (
            owned(vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", &token),
                ("audience", "internal-api"),
            ]),
            400,
            "unsupported_grant_type",
        ),
        (
            owned(vec![
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", &token),
                ("subject_token_type", JWT_TYPE),
                ("audience", "internal-api"),
                ("requested_token_type", "urn:ietf:params:oauth:token-type:txn_token"),
                ("scope", "read"),
            ]),
            400,
            "unsupported_grant_type",
        ),
    ];
    for (form, status, error) in cases {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (got, _, answer) = watch_at(&broker.url, &pairs).await;
        assert_eq!((got, answer["error"].as_str()), (status, Some(error)), "{pairs:?} -> {answer}");
        assert!(answer["error_description"].is_string(), "{answer}");
    }
    let (_, _, answer) = watch_at(&broker.url, &request(&forged, "0")).await;
    assert_eq!(answer, invalid_token_body());

    let http = reqwest::Client::new();
    let url = format!("{}/v1/revocations/watch", broker.url);
    let oversized = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("subject_token={}", "a".repeat(70 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    let answer: Value = oversized.json().await.unwrap();
    assert_eq!(answer["error"], "invalid_request", "{answer}");
    let text = http.post(&url).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(text.status(), 400);
    let get = http.get(&url).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    // A JSON body works as the token endpoint's does.
    let json_body: serde_json::Map<String, Value> =
        request(&token, "0").into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let answer: Value = http.post(&url).json(&json_body).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer, json!({ "revoked": false }));
    assert!(broker.audit_events().is_empty(), "a refused watch is no exchange either");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watches_over_the_limit_are_refused_with_retry_after() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker(&issuer, "limits:\n  max_revocation_watches: 1\n").await;
    let token = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", broker.clock.now()));
    let held = hold(&broker.url, &token);
    eventually("the first watch held", || broker.broker.watches().open() == 1).await;
    let (status, retry, answer) = watch_at(&broker.url, &request(&token, "0")).await;
    assert_eq!((status, retry.as_deref()), (503, Some("5")), "{answer}");
    assert_eq!(answer["error"], "temporarily_unavailable", "{answer}");
    let metrics = broker.metrics().await;
    assert!(metrics.contains("tessera_revocation_watches_total{outcome=\"busy\"} 1"), "{metrics}");
    revoke(&broker, json!({ "kind": "rule", "rule": "services-call-internal-api" })).await;
    let (status, _, answer) = held.await.unwrap();
    assert_eq!((status, answer["revoked"].as_bool()), (200, Some(true)), "a revoked rule: {answer}");
    broker.stop().await;
}
