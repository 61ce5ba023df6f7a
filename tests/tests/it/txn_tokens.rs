//! Tessera as a Transaction Token Service (draft-ietf-oauth-transaction-tokens-10): a
//! gateway gets a Txn-Token for a user's request, a second service gets a replacement
//! with a narrower scope, and PyJWT validates both as a workload of the trust domain
//! would. Every refusal is an RFC 6749 body with an audit reason, never a 5xx.

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, python, spawn_broker};

use crate::{TOKEN_EXCHANGE, last_reason, oidc_source};

/// Form parameters a case changes.
type Pairs<'a> = &'a [(&'a str, &'a str)];

const TXN_TOKEN: &str = "urn:ietf:params:oauth:token-type:txn_token";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const TRUST_DOMAIN: &str = "trust-domain.example";

const TARGET: &str =
    "- name: txn\n  type: txn_token\n  audience: trust-domain.example\n  max_ttl: 10m\n  default_ttl: 5m\n";

const RULES: &str = r#"version: 1
rules:
  - name: gateway-starts-transactions
    match: { source: corp, subject: svc-gateway }
    grant:
      target: txn
      scopes: "trade.stocks trade.read"
      subjects: "oidc://corp/user-*"
      ttl: 5m
      claims: { tier: gold }
  - name: orders-replaces
    match: { source: corp, subject: svc-orders }
    grant:
      target: txn
      scopes: "trade.read"
      subjects: "oidc://corp/user-*"
      subject_token_types: txn_token
  - name: batch-runs-reports
    match: { source: corp, subject: svc-batch }
    grant: { target: txn, scopes: report.run, subjects: "batch:*", subject_token_types: unsigned_json }
"#;

struct Domain {
    issuer: TestIssuer,
    broker: TestBroker,
}

impl Domain {
    async fn start() -> Self {
        let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
        let broker =
            spawn_broker(BrokerOptions::new(&oidc_source(&issuer), TARGET).mapping("txn.yaml", RULES)).await;
        Self { issuer, broker }
    }

    /// A platform token of workload `sub`, or a user's access token with `scope`.
    fn token(&self, sub: &str, scope: Option<&str>) -> String {
        let mut claims = self.issuer.claims(sub, "tessera", self.broker.clock.now());
        if let Some(scope) = scope {
            claims["scope"] = json!(scope);
        }
        self.issuer.key(0).sign(&claims)
    }

    /// A Txn-Token request by `workload`, with `extra` parameters over the defaults.
    async fn request(&self, workload: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
        let assertion = self.token(workload, None);
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", TXN_TOKEN),
            ("audience", TRUST_DOMAIN),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ];
        for (name, value) in pairs {
            form.retain(|(n, _)| n != name);
            form.push((name, value));
        }
        let (status, _, body) = self.broker.post_form(&form).await;
        (status, body)
    }

    /// The gateway's Txn-Token for user-alice's order.
    async fn initial(&self, scope: &str) -> String {
        let user = self.token("user-alice", Some("trade.stocks trade.read profile"));
        let (status, body) = self
            .request(
                "svc-gateway",
                &[
                    ("subject_token", &user),
                    ("subject_token_type", ACCESS_TOKEN),
                    ("scope", scope),
                    ("request_context", r#"{"req_ip": "69.151.72.123", "authn": "face"}"#),
                    ("request_details", r#"{"action": "BUY", "ticker": "MSFT", "quantity": "100"}"#),
                ],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// PyJWT's view of a Txn-Token: its header and claims, once verified.
    async fn validated(&self, token: &str) -> Value {
        let (url, token) = (self.broker.url.clone(), token.to_string());
        let now = self.broker.clock.now().to_string();
        let out = tokio::task::spawn_blocking(move || {
            python::run("txn_peer.py", &["verify", &url, &token, TRUST_DOMAIN, &now])
        })
        .await
        .unwrap();
        serde_json::from_str(&out).unwrap()
    }

    /// A refusal: `status`, the RFC 6749 `error`, and the audit reason (or, ending in `-`,
    /// its family).
    async fn refused(&self, workload: &str, pairs: &[(&str, &str)], status: u16, error: &str, reason: &str) {
        let (got, body) = self.request(workload, pairs).await;
        assert_eq!((got, body["error"].as_str()), (status, Some(error)), "{pairs:?}: {body}");
        assert!(body["error_description"].is_string(), "{body}");
        // A reason ending in `-` is a family: any code it begins.
        let last = last_reason(&self.broker);
        if reason.ends_with('-') {
            assert!(last.starts_with(reason), "{pairs:?}: {last}");
        } else {
            assert_eq!(last, reason, "{pairs:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_txn_token_flows_through_two_services() {
    let d = Domain::start().await;
    let user = d.token("user-alice", Some("trade.stocks trade.read profile"));
    let (status, body) = d
        .request(
            "svc-gateway",
            &[
                ("subject_token", &user),
                ("subject_token_type", ACCESS_TOKEN),
                ("scope", "trade.stocks trade.read"),
                ("request_context", r#"{"req_ip": "69.151.72.123", "authn": "face"}"#),
                ("request_details", r#"{"action": "BUY", "ticker": "MSFT", "quantity": "100"}"#),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // draft §10.4: N_A, the txn_token type, no refresh token.
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(body["issued_token_type"], TXN_TOKEN);
    assert_eq!(body["expires_in"], 300);
    assert!(body.get("refresh_token").is_none());
    let first = body["access_token"].as_str().unwrap().to_string();

    let a = d.validated(&first).await;
    assert_eq!(a["header"]["typ"], "txntoken+jwt");
    assert_eq!(a["header"]["alg"], "ES256");
    let claims = &a["claims"];
    assert_eq!(claims["aud"], TRUST_DOMAIN);
    assert_eq!(claims["iss"], d.broker.url.as_str());
    assert_eq!(claims["sub"], "oidc://corp/user-alice");
    assert_eq!(claims["scope"], "trade.stocks trade.read");
    assert_eq!(claims["req_wl"], "oidc://corp/svc-gateway");
    assert_eq!(claims["rctx"], json!({ "req_ip": "69.151.72.123", "authn": "face" }));
    assert_eq!(
        claims["tctx"],
        json!({ "action": "BUY", "ticker": "MSFT", "quantity": "100", "tier": "gold" }),
        "request_details, and the rule's claims as TTS-asserted values"
    );
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);
    assert!(claims.get("access_token").is_none() && !first.contains(&user), "the access token stays out");

    // Service B, a minute later: a replacement, narrowed to trade.read, with one more
    // detail. It keeps txn and sub, lives no longer, and names both requesters.
    d.broker.clock.advance(60);
    let (status, body) = d
        .request(
            "svc-orders",
            &[
                ("subject_token", &first),
                ("subject_token_type", TXN_TOKEN),
                ("scope", "trade.read"),
                ("request_details", r#"{"order_id": "o-17", "ticker": "MSFT"}"#),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 240, "never beyond the Txn-Token it replaces");
    let b = d.validated(body["access_token"].as_str().unwrap()).await;
    let replaced = &b["claims"];
    assert_eq!(b["header"]["typ"], "txntoken+jwt");
    assert_eq!(replaced["txn"], claims["txn"]);
    assert_eq!(replaced["sub"], claims["sub"]);
    assert_eq!(replaced["aud"], TRUST_DOMAIN);
    assert_eq!(replaced["scope"], "trade.read");
    assert_eq!(replaced["exp"], claims["exp"]);
    assert_eq!(replaced["req_wl"], "oidc://corp/svc-gateway,oidc://corp/svc-orders");
    assert_eq!(replaced["tctx"]["order_id"], "o-17");
    assert_eq!(replaced["tctx"]["action"], "BUY");
    assert_eq!(replaced["rctx"], claims["rctx"]);

    let events = d.broker.audit_events();
    let allowed: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (e["target"].as_str().unwrap(), e["rule"].as_str().unwrap(), e["decision"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        allowed,
        vec![("txn", "gateway-starts-transactions", "allow"), ("txn", "orders-replaces", "allow")]
    );
    assert_eq!(events[0]["identity"]["id"], "oidc://corp/svc-gateway", "the requesting workload");
    assert_eq!(events[1]["scope"], "trade.read");
    d.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_subject_is_taken_only_where_a_rule_names_it() {
    let d = Domain::start().await;
    let unsigned = r#"{"sub": "batch:nightly-report"}"#;
    let pairs = [
        ("subject_token", unsigned),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:unsigned_json"),
        ("scope", "report.run"),
    ];
    let (status, body) = d.request("svc-batch", &pairs).await;
    assert_eq!(status, 200, "{body}");
    let claims = d.validated(body["access_token"].as_str().unwrap()).await["claims"].clone();
    assert_eq!(
        (claims["sub"].as_str(), claims["req_wl"].as_str()),
        (Some("batch:nightly-report"), Some("oidc://corp/svc-batch"))
    );
    let gateway = [("scope", "trade.read"), pairs[0], pairs[1]];
    d.refused("svc-gateway", &gateway, 400, "invalid_target", "TS-TXN-SUBJECT-TYPE").await;
    let other = [("subject_token", r#"{"sub": "user:root"}"#), pairs[1], pairs[2]];
    d.refused("svc-batch", &other, 400, "invalid_target", "TS-TXN-SUBJECT").await;
    let no_sub = [("subject_token", r#"{"subject": "x"}"#), pairs[1], pairs[2]];
    d.refused("svc-batch", &no_sub, 400, "invalid_request", "TS-SRC-MISSING-CLAIM").await;
    d.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_txn_requests_are_refused_with_rfc6749_errors_and_audit_reasons() {
    let d = Domain::start().await;
    let first = d.initial("trade.stocks trade.read").await;
    let narrow = d.initial("trade.read").await;
    let replace = |token: &'static str, scope: &'static str| {
        [("subject_token", token), ("subject_token_type", TXN_TOKEN), ("scope", scope)]
    };
    let first: &'static str = Box::leak(first.into_boxed_str());
    let narrow: &'static str = Box::leak(narrow.into_boxed_str());

    // Widening: beyond the rule, and beyond the Txn-Token being replaced.
    d.refused("svc-orders", &replace(first, "trade.stocks"), 400, "invalid_scope", "TS-TXN-SCOPE").await;
    d.refused(
        "svc-gateway",
        &replace(narrow, "trade.read trade.stocks"),
        400,
        "invalid_scope",
        "TS-TXN-SCOPE-WIDENED",
    )
    .await;
    // Changing the subject, or a context value.
    let mut sub = replace(first, "trade.read").to_vec();
    sub.push(("request_details", r#"{"sub": "oidc://corp/user-mallory"}"#));
    d.refused("svc-orders", &sub, 400, "invalid_request", "TS-TXN-SUB-CHANGE").await;
    let mut ticker = replace(first, "trade.read").to_vec();
    ticker.push(("request_details", r#"{"ticker": "GME"}"#));
    d.refused("svc-orders", &ticker, 400, "invalid_request", "TS-TXN-CONTEXT-CHANGE").await;
    let mut ip = replace(first, "trade.read").to_vec();
    ip.push(("request_context", r#"{"req_ip": "10.0.0.1"}"#));
    d.refused("svc-orders", &ip, 400, "invalid_request", "TS-TXN-CONTEXT-CHANGE").await;

    // A Txn-Token Tessera did not sign: its claims, header and kid, another key.
    let header = tessera_tests::keys::header_of(first);
    let forged = TestKey::ec("other").sign_with_header(&header, &tessera_tests::keys::claims_of(first));
    let forged: &'static str = Box::leak(forged.into_boxed_str());
    d.refused("svc-orders", &replace(forged, "trade.read"), 400, "invalid_request", "TS-SRC-SIGNATURE").await;
    // A plain Tessera-style JWT from the platform issuer is no Txn-Token either.
    let platform: &'static str = Box::leak(d.token("user-alice", Some("trade.read")).into_boxed_str());
    d.refused("svc-orders", &replace(platform, "trade.read"), 400, "invalid_request", "TS-SRC-").await;

    // A workload no rule names; a subject the rule does not allow.
    let user: &'static str = Box::leak(d.token("user-alice", Some("trade.read")).into_boxed_str());
    let from_user = [("subject_token", user), ("subject_token_type", ACCESS_TOKEN), ("scope", "trade.read")];
    d.refused("svc-stranger", &from_user, 400, "invalid_target", "TS-MAP-NO-RULE").await;
    let admin: &'static str = Box::leak(d.token("admin-bob", Some("trade.read")).into_boxed_str());
    let from_admin = [("subject_token", admin), from_user[1], from_user[2]];
    d.refused("svc-gateway", &from_admin, 400, "invalid_target", "TS-TXN-SUBJECT").await;
    // The subject token's own scope bounds the Txn-Token's.
    let reader: &'static str = Box::leak(d.token("user-carol", Some("trade.read")).into_boxed_str());
    let wider = [("subject_token", reader), from_user[1], ("scope", "trade.stocks")];
    d.refused("svc-gateway", &wider, 400, "invalid_scope", "TS-TXN-SCOPE-WIDENED").await;

    // Client authentication: a forged assertion is refused and audited.
    let forged_assertion = d.token("svc-gateway", None).replace('.', ".x");
    let forged = [("client_assertion", forged_assertion.as_str()), from_user[0], from_user[1], from_user[2]];
    d.refused("svc-gateway", &forged, 401, "invalid_client", "TS-TXN-CLIENT-AUTH").await;

    // Expired: the Txn-Token to replace, five minutes on.
    d.broker.clock.advance(301);
    d.refused("svc-orders", &replace(first, "trade.read"), 400, "invalid_request", "TS-SRC-EXPIRED").await;
    d.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_txn_requests_are_refused_at_the_edge() {
    let d = Domain::start().await;
    let user = d.token("user-alice", Some("trade.read"));
    let base =
        [("subject_token", user.as_str()), ("subject_token_type", ACCESS_TOKEN), ("scope", "trade.read")];
    let cases: [(Pairs<'_>, u16, &str); 9] = [
        (&[("client_assertion_type", "urn:x")], 401, "invalid_client"),
        (&[("client_assertion", "")], 401, "invalid_client"),
        (&[("scope", "")], 400, "invalid_scope"),
        (&[("scope", "a\"b")], 400, "invalid_scope"),
        (&[("request_context", "[1]")], 400, "invalid_request"),
        (&[("request_details", r#"{"a": 1, "a": 2}"#)], 400, "invalid_request"),
        (&[("subject_token_type", "urn:ietf:params:oauth:token-type:self_signed")], 400, "invalid_request"),
        (&[("subject_token_type", "urn:ietf:params:oauth:token-type:refresh_token")], 400, "invalid_request"),
        (&[("audience", "elsewhere.example")], 400, "invalid_target"),
    ];
    for (changes, status, error) in cases {
        let mut pairs = base.to_vec();
        for change in changes {
            pairs.retain(|(n, _)| *n != change.0);
            pairs.push(*change);
        }
        let (got, body) = d.request("svc-gateway", &pairs).await;
        assert_eq!((got, body["error"].as_str()), (status, Some(error)), "{changes:?}: {body}");
    }
    // A plain exchange never yields a Txn-Token.
    let (status, body) = d.broker.exchange(&d.token("svc-gateway", None), "txn").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    d.broker.stop().await;
}
