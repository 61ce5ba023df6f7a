//! The whole path: a token from a trusted issuer becomes a Tessera-signed JWT, and every
//! decision is audited.

use serde_json::json;
use tessera_adapters::Clock as _;
use tessera_tests::keys::verify_with_jwks;
use tessera_tests::{BrokerOptions, TestIssuer, TestKey, spawn_broker};

use crate::{
    JWT_TARGET, JWT_TYPE, RULES, TOKEN_EXCHANGE, invalid_token_body, last_reason, oidc_source, standard,
};

#[tokio::test(flavor = "multi_thread")]
async fn rs256_token_is_exchanged_for_a_tessera_jwt_that_verifies_against_its_jwks() {
    let (issuer, broker) = standard().await;
    let now = broker.clock.now();
    let token = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", now));

    let (status, body) = broker.exchange(&token, "internal-api").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], JWT_TYPE);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600, "rule ttl 10m");

    let (_, jwks) = broker.get_json("/.well-known/jwks.json").await;
    let issued = body["access_token"].as_str().unwrap();
    let claims = verify_with_jwks(&jwks, issued);
    assert_eq!(claims["iss"], broker.url);
    assert_eq!(claims["sub"], "oidc://corp/svc-payments");
    assert_eq!(claims["aud"], "https://internal-api.example");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    assert_eq!(claims["workload"], "svc-payments", "templated claim");
    assert_eq!(claims["tier"], "gold");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(tessera_tests::keys::header_of(issued)["alg"], "ES256", "ES256 by default");

    let events = broker.audit_events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["decision"], "allow");
    assert_eq!(e["reason"], "TS-OK");
    assert_eq!(e["source"], "corp");
    assert_eq!(e["rule"], "services-call-internal-api");
    assert_eq!(e["target"], "internal-api");
    assert_eq!(e["identity"]["id"], "oidc://corp/svc-payments");
    assert_eq!(e["issued_ttl"], 600);
    assert!(e["subject_token_fingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert!(e["issued_token_fingerprint"].as_str().unwrap().starts_with("sha256:"));
    let audit = broker.audit_text();
    assert!(!audit.contains(&token), "the subject token never reaches the audit log");
    assert!(!audit.contains(issued), "the issued token never reaches the audit log");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_bodies_are_accepted_too() {
    let (issuer, broker) = standard().await;
    let token = issuer.key(1).sign(&issuer.claims("svc-orders", "tessera", broker.clock.now()));
    let resp = broker
        .http
        .post(format!("{}/v1/token", broker.url))
        .json(&json!({
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "audience": "internal-api",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["issued_token_type"], JWT_TYPE);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_decide_and_every_refusal_is_audited() {
    let (issuer, broker) = standard().await;
    let now = broker.clock.now();
    let sign = |sub: &str| issuer.key(0).sign(&issuer.claims(sub, "tessera", now));

    // A deny rule wins over the allow rule that also matches.
    let (status, body) = broker.exchange(&sign("svc-intern-7"), "internal-api").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")));
    assert_eq!(last_reason(&broker), "TS-MAP-DENIED");
    assert_eq!(broker.audit_events().last().unwrap()["rule"], "no-interns");

    // No rule matches this subject.
    let (status, body) = broker.exchange(&sign("human-alice"), "internal-api").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")));
    assert_eq!(last_reason(&broker), "TS-MAP-NO-RULE");

    // An audience that is no configured target.
    let (status, body) = broker.exchange(&sign("svc-payments"), "nowhere").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")));
    assert_eq!(last_reason(&broker), "TS-EXC-UNKNOWN-AUDIENCE");

    let events = broker.audit_events();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["decision"] == "deny"));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scope_picks_among_rules_and_ambiguity_is_refused() {
    let (issuer, broker) = {
        let issuer = tessera_tests::TestIssuer::start(vec![tessera_tests::TestKey::rsa("rsa-1")]);
        let rules = r#"version: 1
rules:
  - name: read
    match: { source: corp }
    grant: { target: internal-api, scope: read }
  - name: write
    match: { source: corp, subject: "svc-writer-*" }
    grant: { target: internal-api, scope: write }
"#;
        let broker = tessera_tests::spawn_broker(
            tessera_tests::BrokerOptions::new(&crate::oidc_source(&issuer), crate::JWT_TARGET)
                .mapping("rules.yaml", rules),
        )
        .await;
        (issuer, broker)
    };
    let now = broker.clock.now();
    let writer = issuer.key(0).sign(&issuer.claims("svc-writer-1", "tessera", now));
    let reader = issuer.key(0).sign(&issuer.claims("svc-reader-1", "tessera", now));
    let exchange = |token: String, scope: Option<&'static str>| {
        let broker = &broker;
        async move {
            let mut form = vec![
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token_type", JWT_TYPE),
                ("audience", "internal-api"),
            ];
            form.push(("subject_token", token.as_str()));
            if let Some(s) = scope {
                form.push(("scope", s));
            }
            let (status, _, body) = broker.post_form(&form).await;
            (status, body)
        }
    };

    // Two rules apply to the writer: without a scope that is ambiguous.
    let (status, body) = exchange(writer.clone(), None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    assert_eq!(last_reason(&broker), "TS-MAP-AMBIGUOUS");

    // The scope picks one, and the issued token carries it.
    let (status, body) = exchange(writer.clone(), Some("write")).await;
    assert_eq!(status, 200, "{body}");
    let claims = tessera_tests::keys::claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["scope"], "write");

    // One rule applies to the reader: no scope needed, and `write` is not grantable.
    let (status, _) = exchange(reader.clone(), None).await;
    assert_eq!(status, 200);
    let (status, body) = exchange(reader, Some("write")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    assert_eq!(last_reason(&broker), "TS-MAP-SCOPE");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_exchanges_latency_issuing_and_key_set_age() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1"), TestKey::ec("ec-1")]);
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET)
            .mapping("10-services.yaml", RULES)
            .with_metrics(),
    )
    .await;
    let now = broker.clock.now();
    let allowed = issuer.key(0).sign(&issuer.claims("svc-payments", "tessera", now));
    let denied = issuer.key(0).sign(&issuer.claims("svc-intern-1", "tessera", now));
    assert_eq!(broker.exchange(&allowed, "internal-api").await.0, 200);
    assert_eq!(broker.exchange(&denied, "internal-api").await.0, 400);
    let deny_reason = last_reason(&broker);
    assert_eq!(broker.exchange(&allowed, "made-up-audience").await.0, 400);
    assert_eq!(broker.exchange("not a token", "internal-api").await.0, 400);
    broker.clock.advance(100);

    let text = broker.metrics().await;
    let has = |line: &str| assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    has(r#"tessera_exchanges_total{source="corp",target="internal-api",decision="allow",reason="TS-OK"} 1"#);
    has(&format!(
        r#"tessera_exchanges_total{{source="corp",target="internal-api",decision="deny",reason="{deny_reason}"}} 1"#
    ));
    // Caller input never becomes a label: the unknown audience is `none`.
    assert!(!text.contains("made-up-audience"), "{text}");
    has(
        r#"tessera_exchanges_total{source="none",target="none",decision="deny",reason="TS-EXC-UNKNOWN-AUDIENCE"} 1"#,
    );
    assert!(text.contains(r#"tessera_exchanges_total{source="none",target="internal-api",decision="deny""#));
    has(r#"tessera_exchange_duration_seconds_count{target="internal-api",decision="allow"} 1"#);
    has(r#"tessera_target_issue_duration_seconds_count{target="internal-api",kind="jwt",result="ok"} 1"#);
    has(r#"tessera_jwks_fetches_total{source="corp",result="ok"} 1"#);
    has(&format!(r#"tessera_jwks_last_success_timestamp_seconds{{source="corp"}} {now}"#));
    has(r#"tessera_jwks_age_seconds{source="corp"} 100"#);
    broker.stop().await;
}

/// Two trust domains, each with its own key set (a test issuer's JWKS standing in for
/// each SPIFFE server's bundle).
fn spiffe_source(a: &TestIssuer, b: &TestIssuer) -> String {
    format!(
        "- name: spire\n  type: spiffe\n  audiences: [tessera]\n  insecure_http: true\n  trust_domains:\n    a.example: {{ jwks_uri: {} }}\n    b.example: {{ jwks_uri: {} }}\n",
        a.jwks_uri(),
        b.jwks_uri()
    )
}

const SPIFFE_RULES: &str = "version: 1\nrules:\n  - name: workloads-call-internal-api\n    match: { source: spire }\n    grant: { target: internal-api }\n";

fn svid(sub: &str, now: i64) -> serde_json::Value {
    json!({ "sub": sub, "aud": "tessera", "iat": now, "exp": now + 300 })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_of_one_trust_domain_cannot_vouch_for_a_workload_of_another() {
    let a = TestIssuer::start(vec![TestKey::ec("a-1")]);
    let b = TestIssuer::start(vec![TestKey::ec("b-1")]);
    let broker = spawn_broker(
        BrokerOptions::new(&spiffe_source(&a, &b), JWT_TARGET).mapping("10-spiffe.yaml", SPIFFE_RULES),
    )
    .await;
    let now = broker.clock.now();
    for (issuer, sub) in [(&a, "spiffe://a.example/api"), (&b, "spiffe://b.example/api")] {
        let (status, body) = broker.exchange(&issuer.key(0).sign(&svid(sub, now)), "internal-api").await;
        assert_eq!(status, 200, "{sub}: {body}");
        assert_eq!(broker.audit_events().pop().unwrap()["identity"]["id"], sub);
    }

    // a.example's key signs for a workload of b.example: b.example's keys lack it.
    let across = a.key(0).sign(&svid("spiffe://b.example/api", now));
    let (status, body) = broker.exchange(&across, "internal-api").await;
    assert_eq!((status, body), (400, invalid_token_body()));
    assert_eq!(last_reason(&broker), "TS-SRC-UNKNOWN-KID");
    // Naming b.example's key in the header: the signature is still a.example's.
    let header = json!({ "alg": "ES256", "kid": "b-1", "typ": "JWT" });
    let borrowed = a.key(0).sign_with_header(&header, &svid("spiffe://b.example/api", now));
    let (status, body) = broker.exchange(&borrowed, "internal-api").await;
    assert_eq!((status, body), (400, invalid_token_body()));
    assert_eq!(last_reason(&broker), "TS-SRC-SIGNATURE");
    // A trust domain the source does not name, whoever signs.
    let stranger = a.key(0).sign(&svid("spiffe://c.example/api", now));
    assert_eq!(broker.exchange(&stranger, "internal-api").await.0, 400);
    assert_eq!(last_reason(&broker), "TS-SRC-POLICY");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn several_trust_domains_listed_with_one_key_set_do_not_load() {
    let a = TestIssuer::start(vec![TestKey::ec("a-1")]);
    let listed = format!(
        "- name: spire\n  type: spiffe\n  audiences: [tessera]\n  insecure_http: true\n  trust_domains: [a.example, b.example]\n  jwks_uri: {}\n",
        a.jwks_uri()
    );
    let err = tessera_tests::broker::try_spawn_broker(
        BrokerOptions::new(&listed, JWT_TARGET).mapping("10-spiffe.yaml", SPIFFE_RULES),
    )
    .await
    .unwrap_err();
    assert!(err.contains("source `spire`.trust_domains: 2 trust domains listed with one key set"), "{err}");
    assert!(err.contains(&format!("a.example: {{ jwks_uri: {} }}", a.jwks_uri())), "{err}");
    assert!(err.contains("b.example: { bundle_endpoint: <b.example's bundle endpoint> }"), "{err}");
}
