//! Identity chaining across trust domains (draft-ietf-oauth-identity-chaining): two real
//! brokers, each its own trust domain and issuer. Domain A turns a workload's platform
//! token into a JWT authorization grant for domain B (`jwt_grant` target); domain B takes
//! it by the RFC 7523 JWT bearer grant, with B's rules deciding, and refuses an assertion
//! not meant for it, expired, revoked or replayed (on any replica sharing Redis), each
//! `invalid_grant` with its audit reason. Domain A's `oauth` target redeems a Tessera
//! assertion at B and at Authlib's RFC 7523 `JWTBearerGrant`, a third-party server.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tessera_adapters::{Clock as _, ManualClock};
use tessera_tests::redis::TestRedis;
use tessera_tests::relying_party::decode_jws;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TYPE, TOKEN_EXCHANGE, last_reason, oidc_source};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ISSUER_A: &str = "https://tessera.a.example";
const ISSUER_B: &str = "https://tessera.b.example";
/// An audience domain B's source also accepts, as a misconfigured source might: the
/// grant's own check still refuses an assertion that does not name B.
const SHARED_AUDIENCE: &str = "https://shared.example";

/// A loopback port free when probed, so two brokers can name each other before either
/// starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Domain A: trusts the workload platform, grants for B (and for a server claiming a
/// shared audience), and redeems assertions at B through an `oauth` target.
const RULES_A: &str = r#"version: 1
rules:
  - name: services-chain-to-b
    match: { source: corp, subject: "svc-*" }
    grant: { target: domain-b, ttl: 2m, claims: { domain: a } }
  - name: services-chain-to-shared
    match: { source: corp, subject: "svc-*" }
    grant: { target: domain-shared }
  - name: services-reach-b-ledger
    match: { source: corp, subject: "svc-*" }
    grant: { target: b-ledger }
"#;

/// Domain B: only domain A's payments service may read the ledger.
const RULES_B: &str = r#"version: 1
rules:
  - name: domain-a-payments-reads-ledger
    match: { source: domain-a, subject: "oidc://corp/svc-payments" }
    grant: { target: ledger-api, ttl: 10m, scope: ledger:read }
tests:
  - identity: { source: domain-a, subject: "oidc://corp/svc-payments" }
    audience: ledger-api
    expect: { allow: domain-a-payments-reads-ledger }
  - identity: { source: domain-a, subject: "oidc://corp/svc-reports" }
    audience: ledger-api
    expect: { none: true }
"#;

fn targets_a(port_b: u16) -> String {
    format!(
        "- name: domain-b\n  type: jwt_grant\n  authorization_server: {ISSUER_B}\n\
         - name: domain-shared\n  type: jwt_grant\n  authorization_server: {SHARED_AUDIENCE}\n\
         - name: b-ledger\n  type: oauth\n  token_endpoint: http://127.0.0.1:{port_b}/v1/token\n  insecure_http: true\n  \
         assertion_audience: {ISSUER_B}\n  audience: ledger-api\n  max_attempts: 1\n  timeout: 2s\n"
    )
}

fn source_b(port_a: u16) -> String {
    format!(
        "- name: domain-a\n  type: oidc\n  issuer: {ISSUER_A}\n  jwks_uri: http://127.0.0.1:{port_a}/.well-known/jwks.json\n  \
         audiences: [{ISSUER_B}, {SHARED_AUDIENCE}]\n  insecure_http: true\n  max_token_lifetime: 10m\n"
    )
}

const TARGETS_B: &str =
    "- name: ledger-api\n  type: jwt\n  audience: https://ledger.b.example\n  max_ttl: 1h\n";

/// The workload platform, domain A, and replicas of domain B (sharing a key directory,
/// and Redis when there are several), all on one clock.
struct Domains {
    issuer: TestIssuer,
    a: TestBroker,
    bs: Vec<TestBroker>,
    _redis: Option<TestRedis>,
    _keys: tempfile::TempDir,
}

async fn domains(replicas: usize) -> Domains {
    let issuer = TestIssuer::start(vec![TestKey::ec("ec-1")]);
    let clock = Arc::new(ManualClock::starting_now());
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = BrokerOptions::new(&oidc_source(&issuer), &targets_a(port_b)).mapping("10-a.yaml", RULES_A);
    a.issuer_url = Some(ISSUER_A.into());
    a.port = Some(port_a);
    a.clock = Arc::clone(&clock);
    let a = spawn_broker(a).await;
    let redis = (replicas > 1).then(TestRedis::new);
    let keys = tempfile::tempdir().unwrap();
    let mut bs = Vec::new();
    for i in 0..replicas {
        let mut b = BrokerOptions::new(&source_b(port_a), TARGETS_B)
            .mapping("10-b.yaml", RULES_B)
            .replica_of(ISSUER_B, keys.path())
            .with_admin();
        b.port = (i == 0).then_some(port_b);
        b.clock = Arc::clone(&clock);
        b.extra = redis.as_ref().map(TestRedis::config).unwrap_or_default();
        bs.push(spawn_broker(b).await);
    }
    Domains { issuer, a, bs, _redis: redis, _keys: keys }
}

fn platform_token(issuer: &TestIssuer, broker: &TestBroker, sub: &str) -> String {
    issuer.key(0).sign(&issuer.claims(sub, "tessera", broker.clock.now()))
}

/// Domain A's grant for `audience` (a `jwt_grant` target).
async fn grant_from_a(a: &TestBroker, token: &str, audience: &str) -> (u16, Value) {
    let (status, _, body) = a
        .post_form(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", token),
            ("subject_token_type", JWT_TYPE),
            ("audience", audience),
            ("requested_token_type", JWT_TYPE),
        ])
        .await;
    (status, body)
}

async fn redeem_at(b: &TestBroker, assertion: &str) -> (u16, Value) {
    let (status, _, body) = b
        .post_form(&[("grant_type", JWT_BEARER), ("assertion", assertion), ("audience", "ledger-api")])
        .await;
    (status, body)
}

fn invalid_grant() -> Value {
    json!({
        "error": "invalid_grant",
        "error_description": "The assertion is invalid, expired, not for this server, or already used.",
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_of_domain_a_gets_an_access_token_of_domain_b_with_b_rules_deciding() {
    let Domains { issuer, a, bs, .. } = domains(1).await;
    let b = &bs[0];

    let (status, grant) = grant_from_a(&a, &platform_token(&issuer, &a, "svc-payments"), "domain-b").await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant["issued_token_type"], JWT_TYPE);
    assert_eq!(grant["token_type"], "N_A", "draft-ietf-oauth-identity-chaining §2.3.2");
    assert_eq!(grant["expires_in"], 120);
    let assertion = grant["access_token"].as_str().unwrap();
    let claims = decode_jws(assertion).unwrap().claims;
    assert_eq!(claims["iss"], ISSUER_A);
    assert_eq!(claims["aud"], ISSUER_B);
    assert_eq!(claims["sub"], "oidc://corp/svc-payments");
    assert_eq!(claims["domain"], "a");
    assert!(claims["jti"].is_string() && claims["exp"].is_i64());

    let (status, token) = redeem_at(b, assertion).await;
    assert_eq!(status, 200, "{token}");
    let issued = decode_jws(token["access_token"].as_str().unwrap()).unwrap().claims;
    assert_eq!(issued["iss"], ISSUER_B, "domain B's own token");
    assert_eq!(issued["sub"], "oidc://domain-a/oidc://corp/svc-payments");
    assert_eq!(issued["aud"], "https://ledger.b.example");
    assert_eq!(issued["scope"], "ledger:read");
    let event = b.audit_events().pop().unwrap();
    assert_eq!(
        (event["reason"].as_str(), event["rule"].as_str()),
        (Some("TS-OK"), Some("domain-a-payments-reads-ledger"))
    );
    assert_eq!(event["source"], "domain-a");

    // A's rules give every service a grant; B's rules let only payments through.
    let (status, grant) = grant_from_a(&a, &platform_token(&issuer, &a, "svc-reports"), "domain-b").await;
    assert_eq!(status, 200, "{grant}");
    let (status, body) = redeem_at(b, grant["access_token"].as_str().unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")), "{body}");
    assert_eq!(last_reason(b), "TS-MAP-NO-RULE");

    // Through A's `oauth` target, the workload asks A only: A redeems its assertion at B.
    let (status, body) = a.exchange(&platform_token(&issuer, &a, "svc-payments"), "b-ledger").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    let issued = decode_jws(body["access_token"].as_str().unwrap()).unwrap().claims;
    assert_eq!((issued["iss"].as_str(), issued["scope"].as_str()), (Some(ISSUER_B), Some("ledger:read")));
    // And B's refusal comes back as A's own fixed refusal, not B's body.
    let (status, body) = a.exchange(&platform_token(&issuer, &a, "svc-reports"), "b-ledger").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")), "{body}");
    assert_eq!(last_reason(&a), "TS-TGT-UPSTREAM-REJECTED");
}

#[tokio::test(flavor = "multi_thread")]
async fn assertions_for_another_server_expired_or_replayed_are_invalid_grant() {
    let domains = domains(2).await;
    let Domains { issuer, a, bs, .. } = &domains;
    let (b1, b2) = (&bs[0], &bs[1]);
    let grant = |sub: &'static str, audience: &'static str| {
        let token = platform_token(issuer, a, sub);
        async move {
            let (status, body) = grant_from_a(a, &token, audience).await;
            assert_eq!(status, 200, "{body}");
            body["access_token"].as_str().unwrap().to_string()
        }
    };

    // Not for B: B's source takes the audience, the grant's check of `aud` does not.
    let other = grant("svc-payments", "domain-shared").await;
    assert_eq!(redeem_at(b1, &other).await, (400, invalid_grant()));
    assert_eq!(last_reason(b1), "TS-JWTB-AUDIENCE");

    // Replayed: accepted once, on either replica.
    let once = grant("svc-payments", "domain-b").await;
    assert_eq!(redeem_at(b1, &once).await.0, 200);
    assert_eq!(redeem_at(b1, &once).await, (400, invalid_grant()));
    assert_eq!(last_reason(b1), "TS-JWTB-REPLAY");
    assert_eq!(redeem_at(b2, &once).await, (400, invalid_grant()), "the other replica saw it through Redis");
    assert_eq!(last_reason(b2), "TS-JWTB-REPLAY");

    // Revoked: a revocation naming the grant's `jti` refuses it.
    let revoked = grant("svc-payments", "domain-b").await;
    let jti = decode_jws(&revoked).unwrap().claims["jti"].as_str().unwrap().to_string();
    let revocation = json!({ "match": { "kind": "subject_jti", "jti": jti }, "reason": "leaked grant" });
    let (status, made) = b1.admin_post("/v1/revocations", &revocation).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(redeem_at(b1, &revoked).await, (400, invalid_grant()));
    assert_eq!(last_reason(b1), "TS-REVOKED");

    // Expired: past its two minutes and the source's leeway.
    let late = grant("svc-payments", "domain-b").await;
    b1.clock.advance(120 + 31);
    assert_eq!(redeem_at(b1, &late).await, (400, invalid_grant()));
    assert_eq!(last_reason(b1), "TS-SRC-EXPIRED");

    // A token exchange parameter in a jwt-bearer request is refused at the edge.
    let (status, _, body) = b1
        .post_form(&[
            ("grant_type", JWT_BEARER),
            ("assertion", &late),
            ("audience", "ledger-api"),
            ("subject_token", "x"),
        ])
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    let events = b1.audit_events();
    assert!(events.iter().all(|e| !e.to_string().contains(&once)), "assertions are never in the audit log");
}

/// Authlib's authorization server, as `tests/peers/authlib_as.py` runs it; killed on drop.
struct AuthlibServer {
    child: Child,
    port: u16,
}

impl Drop for AuthlibServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AuthlibServer {
    async fn start(issuer: &str, jwks_url: &str, client_id: &str, client_secret: &str) -> Self {
        let port = free_port();
        let child = Command::new(tessera_tests::python::interpreter())
            .arg(tessera_tests::python::root().join("tests/peers/authlib_as.py"))
            .args([&port.to_string(), issuer, jwks_url, client_id, client_secret])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Authlib server");
        let server = Self { child, port };
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("http://127.0.0.1:{port}/health")).send().await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the Authlib server did not start");
    }

    async fn issued(&self) -> Vec<Value> {
        let url = format!("http://127.0.0.1:{}/issued", self.port);
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn authlib_s_jwt_bearer_grant_redeems_tessera_s_assertion_through_the_oauth_target() {
    let issuer = TestIssuer::start(vec![TestKey::ec("ec-1")]);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let authlib =
        AuthlibServer::start(&url, &format!("{url}/.well-known/jwks.json"), "domain-a", "s3cret:a").await;
    let targets = format!(
        "- name: partner\n  type: oauth\n  token_endpoint: http://127.0.0.1:{}/token\n  insecure_http: true\n  \
         client_id: domain-a\n  client_secret: \"s3cret:a\"\n  scope: reports\n  max_attempts: 1\n\
         - name: partner-wrong-secret\n  type: oauth\n  token_endpoint: http://127.0.0.1:{}/token\n  insecure_http: true\n  \
         client_id: domain-a\n  client_secret: nope\n  max_attempts: 1\n",
        authlib.port, authlib.port
    );
    let rules = "version: 1\nrules:\n  - name: to-partner\n    match: { source: corp }\n    grant: { target: partner }\n  \
                 - name: to-partner-wrong\n    match: { source: corp }\n    grant: { target: partner-wrong-secret }\n";
    let mut options = BrokerOptions::new(&oidc_source(&issuer), &targets).mapping("10-partner.yaml", rules);
    options.port = Some(port);
    let a = spawn_broker(options).await;

    let token = platform_token(&issuer, &a, "svc-payments");
    let (status, body) = a.exchange(&token, "partner").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 3600, "Authlib's expires_in");
    let issued = authlib.issued().await;
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0]["access_token"], body["access_token"]);
    assert_eq!(issued[0]["sub"], "oidc://corp/svc-payments");
    assert_eq!(issued[0]["scope"], "reports");

    // Cached until shortly before it expires: the second exchange costs Authlib nothing.
    let (status, again) = a.exchange(&platform_token(&issuer, &a, "svc-payments"), "partner").await;
    assert_eq!((status, &again["access_token"]), (200, &body["access_token"]));
    assert_eq!(authlib.issued().await.len(), 1);

    // Authlib refuses the client; the caller sees Tessera's fixed text only.
    let (status, body) = a.exchange(&token, "partner-wrong-secret").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")), "{body}");
    assert_eq!(last_reason(&a), "TS-TGT-UPSTREAM-REJECTED");
    assert!(a.audit_text().contains("invalid_client"), "the upstream's error code is in the audit detail");

    // Authlib down: 503 with Retry-After.
    drop(authlib);
    let (status, headers, body) =
        a.exchange_with_headers(&platform_token(&issuer, &a, "svc-orders"), "partner").await;
    assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    assert!(headers.contains_key("retry-after"));
}
