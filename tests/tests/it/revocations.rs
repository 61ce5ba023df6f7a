//! Revocations on the admin API (`/v1/revocations`) and through `tessera revoke`: made with
//! the admin caller as author, validated, listed, removed but kept on record, in SQLite and
//! in PostgreSQL, and still there after the broker restarts.

use serde_json::{Value, json};
use tessera_tests::postgres::TestPostgres;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::admin_auth::{admin_token, jwt_broker};
use crate::{JWT_TARGET, RULES, oidc_source};

/// `method` on the admin API at `path`, with a bearer token if given.
async fn call(
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

/// `tessera revoke` against `admin_url`; its stdout.
fn revoke(admin_url: &str, args: &[&str]) -> String {
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
    let options = || {
        let mut options = BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET)
            .mapping("10-services.yaml", RULES)
            .with_admin();
        options.audit = db.store_config();
        options
    };
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
