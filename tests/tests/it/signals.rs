//! Shared signals (SSF): Security Event Tokens made by a Python transmitter (PyJWT) as SSF
//! transmitters make them, pushed to the admin listener (RFC 8935) and polled from an RFC
//! 8936 endpoint, revoke the workloads they name; bad SETs are refused with RFC 8935's
//! error codes and revoke nothing; unknown events are acknowledged and counted. Tessera's
//! own revocations reach a Python receiver as CAEP `credential-change` SETs it verifies
//! with jwcrypto against Tessera's JWKS.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, python, spawn_broker};

use crate::{JWT_TARGET, RULES, oidc_source};

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const CREDENTIAL_CHANGE: &str = "https://schemas.openid.net/secevent/caep/event-type/credential-change";
const ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
const TRANSMITTER: &str = "https://idp.example.test";
const AUDIENCE: &str = "https://tessera.example.test/ssf";

/// A Python server of `ssf_peer.py`, stopped when dropped.
struct PeerServer {
    child: Child,
    url: String,
}

impl PeerServer {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(python::interpreter())
            .arg(python::root().join("tests/peers/ssf_peer.py"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ssf_peer.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("PORT line");
        let port = line.trim().strip_prefix("PORT ").unwrap_or_else(|| panic!("ssf_peer.py said {line:?}"));
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }

    async fn state(&self) -> Value {
        reqwest::get(format!("{}/state", self.url)).await.unwrap().json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) {
        let status = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    /// Wait (up to 20 s) until the state satisfies `done`.
    async fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let state = self.state().await;
            if done(&state) {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: not reached; last state {}", self.state().await);
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A transmitter's signing key (kid `pyjwt-1`) in `dir`.
fn keygen(dir: &Path) {
    python::run("ssf_peer.py", &["keygen", dir.to_str().unwrap()]);
}

/// A SET signed by the key in `dir`, with these claims over the defaults (`iss`, `aud`,
/// one CAEP `session-revoked` event about `subject`).
fn set(dir: &Path, subject: Value, extra: Value) -> String {
    let mut claims = json!({
        "iss": TRANSMITTER,
        "aud": AUDIENCE,
        "sub_id": subject,
        "events": { SESSION_REVOKED: { "event_timestamp": 1_700_000_000, "reason_admin": { "en": "laptop stolen" } } },
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    python::run("ssf_peer.py", &["set", dir.to_str().unwrap(), &claims.to_string()])
}

/// The `signals.receive` block for the transmitter keyed in `dir`, plus `more` lines.
fn receive_config(dir: &Path, more: &str) -> String {
    format!(
        "signals:\n  receive:\n    - name: idp\n      issuer: {TRANSMITTER}\n      jwks_file: {}\n      audience: {AUDIENCE}\n      source: corp\n{more}",
        dir.join("jwks.json").display()
    )
}

async fn broker_with(issuer: &TestIssuer, extra: String) -> TestBroker {
    let mut options =
        BrokerOptions::new(&oidc_source(issuer), JWT_TARGET).mapping("10-services.yaml", RULES).with_admin();
    options.extra = extra;
    spawn_broker(options).await
}

/// Push `body` as a SET; the status and the JSON answer.
async fn push(broker: &TestBroker, body: &str, content_type: &str) -> (u16, Value) {
    let response = broker
        .http
        .post(format!("{}/v1/signals/events", broker.admin_url.as_deref().unwrap()))
        .header("Content-Type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn revocations(broker: &TestBroker) -> Vec<Value> {
    let (status, list) = broker.admin_get("/v1/revocations").await;
    assert_eq!(status, 200, "{list}");
    list["revocations"].as_array().unwrap().clone()
}

fn workload_token(issuer: &TestIssuer, broker: &TestBroker, sub: &str) -> String {
    issuer.key(0).sign(&issuer.claims(sub, "tessera", broker.clock.now()))
}

const SET_TYPE: &str = "application/secevent+jwt";

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_caep_session_revoked_revokes_the_workload_it_names() {
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker_with(&issuer, receive_config(keys.path(), "")).await;
    let (status, _) =
        broker.exchange(&workload_token(&issuer, &broker, "svc-payments"), "internal-api").await;
    assert_eq!(status, 200);

    let subject = json!({ "format": "iss_sub", "iss": issuer.url(), "sub": "svc-payments" });
    let token = set(keys.path(), subject, json!({}));
    let (status, answer) = push(&broker, &token, SET_TYPE).await;
    assert_eq!(status, 202, "{answer}");

    let (status, refused) =
        broker.exchange(&workload_token(&issuer, &broker, "svc-payments"), "internal-api").await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_target")), "{refused}");
    let event = broker.audit_events().pop().unwrap();
    assert_eq!((event["decision"].as_str(), event["reason"].as_str()), (Some("deny"), Some("TS-REVOKED")));
    let (status, _) = broker.exchange(&workload_token(&issuer, &broker, "svc-ledger"), "internal-api").await;
    assert_eq!(status, 200, "another workload of the source still passes");

    let list = revocations(&broker).await;
    let [revocation] = list.as_slice() else { panic!("one revocation: {list:?}") };
    assert_eq!(revocation["author"], "ssf:idp");
    assert_eq!(revocation["match"]["kind"], "subject");
    assert_eq!(revocation["match"]["source"], "corp");
    let reason = revocation["reason"].as_str().unwrap();
    assert!(reason.starts_with("CAEP session-revoked") && reason.ends_with("laptop stolen"), "{reason}");

    // RISC account-disabled about the same workload by its identity id (a `uri` subject
    // inside a `complex` one) revokes it by id; pushed again, it is a replay.
    let id = event["identity"]["id"].as_str().unwrap().to_string();
    let complex = json!({ "format": "complex", "user": { "format": "uri", "uri": id } });
    let disabled =
        set(keys.path(), complex, json!({ "events": { ACCOUNT_DISABLED: { "reason": "hijacking" } } }));
    let (status, answer) = push(&broker, &disabled, SET_TYPE).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(revocations(&broker).await.len(), 2, "a uri subject is matched by identity id");
    let (status, answer) = push(&broker, &disabled, SET_TYPE).await;
    assert_eq!((status, answer["err"].as_str()), (400, Some("invalid_request")), "{answer}");
    assert_eq!(revocations(&broker).await.len(), 2);
    let (status, _) = broker.exchange(&workload_token(&issuer, &broker, "svc-ledger"), "internal-api").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_sets_are_refused_with_rfc8935_codes_and_revoke_nothing() {
    let keys = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    keygen(keys.path());
    keygen(other.path());
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = broker_with(&issuer, receive_config(keys.path(), "  max_set_bytes: 4096\n")).await;
    let subject = json!({ "format": "iss_sub", "iss": issuer.url(), "sub": "svc-payments" });

    let replayed = set(
        keys.path(),
        subject.clone(),
        json!({ "events": { "https://example.test/event-type/other": {} } }),
    );
    let (status, answer) = push(&broker, &replayed, SET_TYPE).await;
    assert_eq!(status, 202, "an unknown event type is acknowledged: {answer}");

    let padding = "x".repeat(5000);
    let cases = [
        (set(other.path(), subject.clone(), json!({})), SET_TYPE, "invalid_key", "bad signature"),
        (
            set(keys.path(), subject.clone(), json!({ "aud": "https://someone-else.test" })),
            SET_TYPE,
            "invalid_audience",
            "wrong audience",
        ),
        (
            set(keys.path(), subject.clone(), json!({ "iss": "https://rogue.test" })),
            SET_TYPE,
            "invalid_issuer",
            "unknown issuer",
        ),
        (replayed, SET_TYPE, "invalid_request", "replayed jti"),
        (
            set(keys.path(), json!({ "format": "phone_number", "phone_number": "+12065550100" }), json!({})),
            SET_TYPE,
            "invalid_request",
            "unknown subject format",
        ),
        (
            set(keys.path(), subject.clone(), json!({ "padding": padding })),
            SET_TYPE,
            "invalid_request",
            "oversized body",
        ),
        (set(keys.path(), subject.clone(), json!({ "_typ": "JWT" })), SET_TYPE, "invalid_request", "typ JWT"),
        (
            set(keys.path(), subject.clone(), json!({ "exp": 4_000_000_000_i64 })),
            SET_TYPE,
            "invalid_request",
            "exp",
        ),
        (
            set(
                keys.path(),
                json!({ "format": "iss_sub", "iss": "https://elsewhere.test", "sub": "x" }),
                json!({}),
            ),
            SET_TYPE,
            "access_denied",
            "a subject of an issuer the source does not trust",
        ),
        (set(keys.path(), subject.clone(), json!({})), "application/jwt", "invalid_request", "content type"),
        ("not.a.set".to_string(), SET_TYPE, "invalid_request", "not a JWS"),
    ];
    for (body, content_type, err, what) in cases {
        let (status, answer) = push(&broker, &body, content_type).await;
        assert_eq!((status, answer["err"].as_str()), (400, Some(err)), "{what}: {answer}");
        assert!(answer["description"].is_string(), "{what}: {answer}");
    }
    assert!(revocations(&broker).await.is_empty(), "nothing revoked");
    let (status, _) =
        broker.exchange(&workload_token(&issuer, &broker, "svc-payments"), "internal-api").await;
    assert_eq!(status, 200);
    let metrics = broker.metrics().await;
    assert!(
        metrics.contains(r#"tessera_security_events_received_total{peer="idp",outcome="ignored"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"tessera_security_events_received_total{peer="idp",outcome="refused"} 7"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn polled_sets_are_acknowledged_refused_in_set_errs_and_revoke() {
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let transmitter = PeerServer::start(&["poll-server", "Bearer poll-s3cret"]);
    let token_file = keys.path().join("poll-token");
    std::fs::write(&token_file, "Bearer poll-s3cret\n").unwrap();
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let poll = format!(
        "      insecure_http: true\n      poll:\n        url: {}/poll\n        interval: 200ms\n        max_events: 2\n        authorization_header: ${{file:{}}}\n",
        transmitter.url,
        token_file.display()
    );
    let broker = broker_with(&issuer, receive_config(keys.path(), &poll)).await;
    let (status, _) =
        broker.exchange(&workload_token(&issuer, &broker, "svc-payments"), "internal-api").await;
    assert_eq!(status, 200);
    let id = broker.audit_events().pop().unwrap()["identity"]["id"].as_str().unwrap().to_string();

    let change = json!({ CREDENTIAL_CHANGE: { "credential_type": "x509", "change_type": "revoke" } });
    let sets = json!({
        "set-revoke": set(keys.path(), json!({ "format": "uri", "uri": id }), json!({ "jti": "set-revoke", "events": change })),
        "set-wrong-aud": set(keys.path(), json!({ "format": "opaque", "id": "svc-ledger" }), json!({ "jti": "set-wrong-aud", "aud": "https://other.test" })),
        "set-unknown": set(keys.path(), json!({ "format": "opaque", "id": "svc-ledger" }), json!({ "jti": "set-unknown", "events": { "https://example.test/event-type/other": {} } })),
    });
    transmitter.post("/queue", json!({ "sets": sets })).await;
    let state = transmitter
        .wait_for("acks and errors delivered", |s| {
            s["acked"].as_array().unwrap().len() == 2 && s["errors"].as_object().unwrap().len() == 1
        })
        .await;
    let mut acked: Vec<&str> =
        state["acked"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    acked.sort_unstable();
    assert_eq!(acked, ["set-revoke", "set-unknown"]);
    assert_eq!(state["errors"]["set-wrong-aud"]["err"], "invalid_audience", "{state}");
    assert!(state["unknown_acks"].as_array().unwrap().is_empty(), "{state}");
    let first = &state["polls"][0];
    assert_eq!((first["maxEvents"].as_u64(), first["returnImmediately"].as_bool()), (Some(2), Some(true)));

    let (status, refused) =
        broker.exchange(&workload_token(&issuer, &broker, "svc-payments"), "internal-api").await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_target")), "{refused}");
    let list = revocations(&broker).await;
    let [revocation] = list.as_slice() else { panic!("one revocation: {list:?}") };
    assert!(revocation["reason"].as_str().unwrap().starts_with("CAEP credential-change (revoke)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_is_pushed_as_a_caep_credential_change_the_receiver_verifies() {
    let receiver = PeerServer::start(&["receiver"]);
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let transmit = format!(
        "signals:\n  transmit:\n    - name: gateway\n      endpoint: {}/events\n      audience: https://gateway.example.test\n      insecure_http: true\n      authorization_header: Bearer push-s3cret\n",
        receiver.url
    );
    let broker = broker_with(&issuer, transmit).await;
    receiver
        .post(
            "/control",
            json!({
                "jwks_uri": format!("{}/.well-known/jwks.json", broker.url),
                "issuer": broker.url,
                "audience": "https://gateway.example.test",
                "authorization": "Bearer push-s3cret",
            }),
        )
        .await;
    let (status, made) = broker
        .admin_post(
            "/v1/revocations",
            &json!({ "match": { "kind": "identity", "id": "oidc://corp/svc-payments" }, "reason": "repository compromised" }),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let state = receiver.wait_for("a SET verified", |s| !s["received"].as_array().unwrap().is_empty()).await;
    assert!(state["refused"].as_array().unwrap().is_empty(), "{state}");
    let received = &state["received"][0];
    assert_eq!(received["header"]["typ"], "secevent+jwt");
    let claims = &received["claims"];
    assert_eq!(claims["iss"], broker.url.as_str());
    assert_eq!(claims["aud"], "https://gateway.example.test");
    assert_eq!(claims["txn"], made["id"]);
    assert_eq!(
        claims["sub_id"],
        json!({ "format": "iss_sub", "iss": broker.url, "sub": "oidc://corp/svc-payments" })
    );
    let event = &claims["events"][CREDENTIAL_CHANGE];
    assert_eq!(event["change_type"], "revoke");
    assert_eq!(event["reason_admin"]["en"], "repository compromised");
    assert!(claims["jti"].is_string() && claims["iat"].is_i64(), "{claims}");
    let metrics = broker.metrics().await;
    assert!(
        metrics.contains(r#"tessera_security_events_sent_total{peer="gateway",outcome="delivered"} 1"#),
        "{metrics}"
    );

    // A revocation naming no single subject (a glob) is not sent.
    let (status, _) = broker
        .admin_post(
            "/v1/revocations",
            &json!({ "match": { "kind": "source", "source": "corp" }, "reason": "issuer compromised" }),
        )
        .await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.state().await["received"].as_array().unwrap().len(), 1);
}
