//! What a revoked workload still holds (`GET /v1/revocations/{id}/issued`,
//! `tessera revoke issued`), and RFC 7662 introspection of Tessera JWTs on the public
//! listener (`POST /v1/introspect`), asked by a resource server written with `requests`.

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_tests::sts::StsPeer;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, python, spawn_broker};

use crate::revocations::{call, revoke};
use crate::targets_aws as aws;
use crate::{JWT_TARGET, RULES, oidc_source};

const CLIENT_TARGET: &str = "- name: introspect\n  type: jwt\n  audience: https://tessera.example/introspect\n  max_ttl: 2h\n  default_ttl: 1h\n";

const CLIENT_RULES: &str = r#"version: 1
rules:
  - name: resource-servers-introspect
    match:
      source: corp
      subject: "rs-*"
    grant:
      target: introspect
      ttl: 2h
"#;

fn token(issuer: &TestIssuer, broker: &TestBroker, sub: &str) -> String {
    issuer.key(0).sign(&issuer.claims(sub, "tessera", broker.clock.now()))
}

/// The issued token of an exchange of `sub`'s token for `audience`.
async fn issued(issuer: &TestIssuer, broker: &TestBroker, sub: &str, audience: &str) -> String {
    let (status, body) = broker.exchange(&token(issuer, broker, sub), audience).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// The resource server's question: `method` is `bearer`, `assertion` or `none`.
async fn introspect(broker: &TestBroker, method: &str, client: &str, token: &str) -> Value {
    let args: Vec<String> =
        [format!("{}/v1/introspect", broker.url), method.into(), client.into(), token.into()].into();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        python::run("introspect_peer.py", &args)
    })
    .await
    .unwrap();
    serde_json::from_str(&out).unwrap()
}

async fn active(broker: &TestBroker, client: &str, token: &str) -> bool {
    let answer = introspect(broker, "bearer", client, token).await;
    assert_eq!(answer["status"], 200, "{answer}");
    answer["body"]["active"].as_bool().unwrap()
}

async fn revoke_by(broker: &TestBroker, matcher: Value) -> String {
    let body = json!({ "match": matcher, "reason": "repository compromised" });
    let (status, made) = call(broker, "POST", "/v1/revocations", None, Some(body)).await;
    assert_eq!(status, 201, "{made}");
    made["id"].as_str().unwrap().to_string()
}

fn fingerprint(token: &str) -> String {
    tessera_adapters::secret::fingerprint(token.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_answers_for_tessera_jwts_until_revoked_expired_or_forged() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let mut options = BrokerOptions::new(&oidc_source(&issuer), &format!("{JWT_TARGET}{CLIENT_TARGET}"))
        .mapping("10-services.yaml", RULES)
        .mapping("20-clients.yaml", CLIENT_RULES)
        .with_admin();
    options.extra = "introspection:\n  clients: [introspect]\n".into();
    let broker = spawn_broker(options).await;
    let client = issued(&issuer, &broker, "rs-gateway", "introspect").await;
    let payments = issued(&issuer, &broker, "svc-payments", "internal-api").await;
    let ledger = issued(&issuer, &broker, "svc-ledger", "internal-api").await;

    let answer = introspect(&broker, "bearer", &client, &payments).await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["cache_control"], "no-store");
    let body = &answer["body"];
    let claims = tessera_tests::keys::claims_of(&payments);
    assert_eq!(body["active"], true, "{body}");
    for name in ["sub", "iss", "aud", "exp", "iat", "jti"] {
        assert_eq!(body[name], claims[name], "{name}: {body}");
    }
    assert_eq!(body["aud"], "https://internal-api.example");
    assert_eq!(body["client_id"], claims["sub"], "the workload the token was issued to");
    assert_eq!(body["token_type"], "Bearer");
    let by_assertion = introspect(&broker, "assertion", &client, &payments).await;
    assert_eq!((by_assertion["status"].as_u64(), &by_assertion["body"]), (Some(200), body));

    // Clients must authenticate, with a token of a client target.
    for (method, credential) in [("none", ""), ("bearer", payments.as_str()), ("bearer", "not-a-jwt")] {
        let refused = introspect(&broker, method, credential, &payments).await;
        assert_eq!(refused["status"], 401, "{method}: {refused}");
        assert_eq!(refused["body"]["error"], "invalid_client");
        assert!(refused["www_authenticate"].as_str().unwrap().starts_with("Bearer"), "{refused}");
    }

    // Not Tessera's: signed by another key, or not a JWT at all.
    let mut forged_claims = claims.clone();
    forged_claims["exp"] = json!(broker.clock.now() + 600);
    let forged = issuer.key(0).sign(&forged_claims);
    for token in [forged.as_str(), "garbage", &format!("{payments}x")] {
        assert!(!active(&broker, &client, token).await, "{token}");
    }

    // A rule revocation names both services' tokens through the audit store; lifted, they
    // are active again.
    let rule = revoke_by(&broker, json!({ "kind": "rule", "rule": "services-call-internal-api" })).await;
    assert!(!active(&broker, &client, &payments).await);
    assert!(!active(&broker, &client, &ledger).await);
    assert!(active(&broker, &client, &client).await, "another rule's token is not named");
    let (status, _) = call(&broker, "DELETE", &format!("/v1/revocations/{rule}"), None, None).await;
    assert_eq!(status, 200);
    assert!(active(&broker, &client, &payments).await);

    // By identity, and by the issued token's fingerprint.
    let sub = claims["sub"].as_str().unwrap();
    revoke_by(&broker, json!({ "kind": "identity", "id": sub })).await;
    assert!(!active(&broker, &client, &payments).await);
    assert!(active(&broker, &client, &ledger).await, "another identity");
    revoke_by(&broker, json!({ "kind": "issued_token", "fingerprint": fingerprint(&ledger) })).await;
    assert!(!active(&broker, &client, &ledger).await);

    // A revoked client is no client.
    revoke_by(&broker, json!({ "kind": "identity_glob", "pattern": "*rs-gateway" })).await;
    let refused = introspect(&broker, "bearer", &client, &ledger).await;
    assert_eq!(
        (refused["status"].as_u64(), refused["body"]["error"].as_str()),
        (Some(401), Some("invalid_client"))
    );

    // Expired: the service's token (10 minutes) but not the new client's (2 hours).
    let client = issued(&issuer, &broker, "rs-edge", "introspect").await;
    let other = issued(&issuer, &broker, "svc-orders", "internal-api").await;
    assert!(active(&broker, &client, &other).await);
    broker.clock.advance(601);
    assert!(!active(&broker, &client, &other).await, "expired");
    let audit = broker.audit_text();
    assert!(!audit.contains(&client) && !audit.contains(&other), "no token in the audit log");
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_is_refused_to_everyone_when_not_configured() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET).mapping("10-services.yaml", RULES),
    )
    .await;
    let token = issued(&issuer, &broker, "svc-payments", "internal-api").await;
    let refused = introspect(&broker, "bearer", &token, &token).await;
    assert_eq!(
        (refused["status"].as_u64(), refused["body"]["error"].as_str()),
        (Some(401), Some("invalid_client"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_issued_listing_names_what_a_revoked_workload_holds_and_the_aws_deny_policy() {
    let sts = StsPeer::start().await;
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), &format!("{}{JWT_TARGET}", aws::target(&sts, "")))
            .mapping("10-aws.yaml", aws::RULES)
            .mapping("20-services.yaml", RULES)
            .with_admin(),
    )
    .await;
    let admin = broker.admin_url.clone().unwrap();
    let (status, aws_body) = broker.exchange(&token(&issuer, &broker, "svc-payments"), "aws-prod").await;
    assert_eq!(status, 200, "{aws_body}");
    let identity = broker.audit_events().pop().unwrap()["identity"]["id"].as_str().unwrap().to_string();
    let jwt = issued(&issuer, &broker, "svc-payments", "internal-api").await;
    let _other = issued(&issuer, &broker, "svc-ledger", "internal-api").await;

    let id = revoke(&admin, &["add", "--identity", &identity, "--reason", "repository compromised"]);
    let id = id.trim().strip_prefix("revoked: ").unwrap().to_string();
    let listing: Value = serde_json::from_str(&revoke(&admin, &["issued", &id, "--format", "json"])).unwrap();
    assert_eq!(listing["revocation"]["id"], id.as_str());
    let credentials = listing["credentials"].as_array().unwrap();
    assert_eq!(credentials.len(), 2, "the AWS session and the JWT, not the other workload's: {listing}");
    let by_target = |t: &str| credentials.iter().find(|c| c["target"] == t).unwrap().clone();
    let aws_held = by_target("aws-prod");
    assert_eq!(
        (aws_held["kind"].as_str(), aws_held["rule"].as_str(), aws_held["identity"].as_str()),
        (Some("aws_sts"), Some("payments-assume-role"), Some(identity.as_str()))
    );
    assert_eq!(aws_held["fingerprint"], fingerprint(aws_body["access_token"].as_str().unwrap()));
    assert_eq!(by_target("internal-api")["fingerprint"], fingerprint(&jwt));
    assert!(aws_held["expires_at"].as_str().unwrap() > aws_held["issued_at"].as_str().unwrap());

    let remedies = listing["targets"].as_array().unwrap();
    let aws_remedy = remedies.iter().find(|r| r["kind"] == "aws_sts").unwrap();
    assert_eq!(aws_remedy["action"], "aws_deny_policy");
    let policy = &aws_remedy["policies"][0];
    assert_eq!(policy["role_arn"], "arn:aws:iam::123456789012:role/workloads/payments-api");
    assert_eq!(policy["role_name"], "payments-api");
    let statement = &policy["policy"]["Statement"][0];
    assert_eq!((statement["Effect"].as_str(), &statement["Action"]), (Some("Deny"), &json!(["*"])));
    // The revocation's instant, rounded up to the second.
    let created =
        chrono::DateTime::parse_from_rfc3339(listing["revocation"]["created"].as_str().unwrap()).unwrap();
    let cutoff = chrono::DateTime::from_timestamp((created.timestamp_millis() + 999) / 1000, 0).unwrap();
    assert_eq!(
        statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
        cutoff.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    assert!(
        policy["command"].as_str().unwrap().starts_with("aws iam put-role-policy --role-name payments-api")
    );
    let jwt_remedy = remedies.iter().find(|r| r["kind"] == "jwt").unwrap();
    assert_eq!(jwt_remedy["action"], "introspection");

    let text = revoke(&admin, &["issued", &id]);
    assert!(text.starts_with("2 credential(s) still valid"), "{text}");
    assert!(text.contains("aws iam put-role-policy --role-name payments-api"), "{text}");

    // A rule's revocation names what that rule granted, to anyone.
    let rule = revoke(&admin, &["add", "--rule", "services-call-internal-api", "--reason", "too broad"]);
    let rule = rule.trim().strip_prefix("revoked: ").unwrap();
    let (status, listing) = call(&broker, "GET", &format!("/v1/revocations/{rule}/issued"), None, None).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["credentials"].as_array().unwrap().len(), 2, "{listing}");
    assert!(listing["credentials"].as_array().unwrap().iter().all(|c| c["target"] == "internal-api"));

    // A subject token's jti is not recorded: nothing listed, and a note says so.
    let jti = revoke(&admin, &["add", "--jti", "abc", "--reason", "token leaked"]);
    let jti = jti.trim().strip_prefix("revoked: ").unwrap();
    let (_, listing) = call(&broker, "GET", &format!("/v1/revocations/{jti}/issued"), None, None).await;
    assert!(
        listing["credentials"].as_array().unwrap().is_empty() && listing["note"].is_string(),
        "{listing}"
    );

    // Once expired, nothing is left to list.
    broker.clock.advance(3600);
    let (_, listing) = call(&broker, "GET", &format!("/v1/revocations/{id}/issued"), None, None).await;
    assert!(listing["credentials"].as_array().unwrap().is_empty(), "{listing}");
    let (status, missing) = call(&broker, "GET", "/v1/revocations/nope/issued", None, None).await;
    assert_eq!((status, missing["error"].as_str()), (404, Some("no_such_revocation")));
}
