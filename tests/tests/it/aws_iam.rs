//! The `aws_iam` source against moto's STS with SigV4 checking on. Requests are signed by
//! botocore (`tests/peers/aws_peer.py`) or by Tessera's own signer with keys moto issued;
//! the broker forwards them to moto, which verifies every signature.
//!
//! Each test starts its own moto (nextest runs every test in its own process), so the
//! refusals are grouped.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tessera_adapters::Clock as _;
use tessera_adapters::aws_sign::{Credentials, signed_request};
use tessera_adapters::clock::format_rfc3339;
use tessera_tests::moto::{ACCOUNT, AwsCredentials, Moto, OTHER_ACCOUNT};
use tessera_tests::{BrokerOptions, TestBroker, spawn_broker};

use crate::{JWT_TARGET, TOKEN_EXCHANGE, invalid_token_body, last_reason};

const SERVER_ID: &str = "tessera.test";
const AWS_SIGNED_REQUEST: &str = "urn:tessera:params:oauth:token-type:aws-signed-request";

const RULES: &str = r#"version: 1
rules:
  - name: aws-workloads-call-internal-api
    match: { source: aws }
    grant:
      target: internal-api
      ttl: 10m
      claims:
        account: "{tenant}"
"#;

/// An `aws_iam` source trusting only this moto, plus `extra` YAML lines.
fn aws_source(moto: &Moto, extra: &str) -> String {
    format!(
        "- name: aws\n  type: aws_iam\n  server_id: {SERVER_ID}\n  sts_endpoints: [\"{}\"]\n  insecure_http: true\n{extra}",
        moto.origin
    )
}

async fn broker_for(moto: &Moto, extra: &str) -> TestBroker {
    spawn_broker(BrokerOptions::new(&aws_source(moto, extra), JWT_TARGET).mapping("aws.yaml", RULES)).await
}

async fn exchange(broker: &TestBroker, token: &str) -> (u16, Value) {
    let (status, _, body) = broker
        .post_form(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", token),
            ("subject_token_type", AWS_SIGNED_REQUEST),
            ("audience", "internal-api"),
        ])
        .await;
    (status, body)
}

/// The identity of the last audit event.
fn last_identity(broker: &TestBroker) -> Value {
    broker.audit_events().last().expect("an audit event")["identity"].clone()
}

/// The claims of an issued JWT.
fn claims(body: &Value) -> Value {
    let token = body["access_token"].as_str().expect("access_token");
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The POSTs moto has logged, counted once every exchange made so far is in its log. moto
/// writes a request's line after answering it, so a line can trail its exchange; a marker
/// request sent now, after those exchanges were answered, is logged after them, so the
/// count is taken in front of the marker's line once that line is there.
async fn settled_posts(moto: &Moto) -> usize {
    let marker = format!("/tessera-log-marker-{}", uuid::Uuid::new_v4());
    reqwest::get(format!("{}{marker}", moto.url().trim_end_matches('/'))).await.expect("moto answers");
    for _ in 0..3000 {
        let log = moto.log();
        if let Some(at) = log.find(&marker) {
            // werkzeug colors the request of error answers, so the line is matched without
            // its quotes.
            return log[..at].matches("POST / HTTP/1.1").count();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("moto never logged {marker}:\n{}", moto.log());
}

/// Credentials, secrets and signatures never reach the audit log.
fn assert_no_secrets(broker: &TestBroker, creds: &[&AwsCredentials]) {
    let audit = broker.audit_text();
    for c in creds {
        assert!(!audit.contains(&c.secret_key), "a secret key is in the audit log");
        if let Some(token) = &c.session_token {
            assert!(!audit.contains(token.as_str()), "a session token is in the audit log");
        }
    }
    assert!(!audit.contains("Signature="), "a signature is in the audit log");
}

#[tokio::test(flavor = "multi_thread")]
async fn botocore_signed_user_and_role_requests_are_accepted_as_canonical_identities() {
    let moto = Moto::start().await;
    let broker = broker_for(&moto, "").await;
    let p = moto.principals.clone();
    let url = moto.url();
    let tokens = moto
        .sign_all(&[
            (&url, &p.user, SERVER_ID, &[]),
            (&url, &p.role, SERVER_ID, &["--region", "eu-west-1"]),
            (&url, &p.other_account_role, SERVER_ID, &[]),
        ])
        .await;

    // An IAM user: kept as is, named by the last segment of its path.
    let (status, body) = exchange(&broker, &tokens[0]).await;
    assert_eq!(status, 200, "{body}\n{}", moto.log());
    let user = last_identity(&broker);
    assert_eq!(user["id"], format!("aws://{ACCOUNT}/user/deployer"));
    assert_eq!(user["provider"], "aws_iam");
    assert_eq!(user["source"], "aws");
    assert_eq!(user["issuer"], moto.url());
    assert_eq!(user["subject"], format!("arn:aws:iam::{ACCOUNT}:user/ci/deployer"));
    assert_eq!(user["tenant"], ACCOUNT);
    assert_eq!(user["name"], "deployer");
    assert_eq!(user["region"], "us-east-1");
    assert_eq!(user["attributes"]["aws.principal_type"], "user");
    assert_eq!(user["attributes"]["aws.principal_id"], p.user.user_id.as_str());
    assert_eq!(user["attributes"]["aws.caller_arn"], p.user.arn.as_str());
    assert_eq!(claims(&body)["sub"], format!("aws://{ACCOUNT}/user/deployer"));
    assert_eq!(claims(&body)["account"], ACCOUNT);

    // An assumed-role session: the role, without its path, is the identity.
    let (status, body) = exchange(&broker, &tokens[1]).await;
    assert_eq!(status, 200, "{body}\n{}", moto.log());
    let role = last_identity(&broker);
    assert_eq!(role["id"], format!("aws://{ACCOUNT}/role/payments-api"));
    assert_eq!(role["subject"], format!("arn:aws:iam::{ACCOUNT}:role/payments-api"));
    assert_eq!(role["tenant"], ACCOUNT);
    assert_eq!(role["name"], "payments-api");
    assert_eq!(role["instance"], "run-1");
    assert_eq!(role["region"], "eu-west-1");
    assert_eq!(role["attributes"]["aws.account"], ACCOUNT);
    assert_eq!(role["attributes"]["aws.arn"], format!("arn:aws:iam::{ACCOUNT}:role/payments-api"));
    assert_eq!(
        role["attributes"]["aws.caller_arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/payments-api/run-1")
    );
    assert_eq!(role["attributes"]["aws.caller_arn"], p.role.arn.as_str());
    assert_eq!(role["attributes"]["aws.principal_id"], p.role.user_id.as_str());
    assert_eq!(role["attributes"]["aws.principal_type"], "role");
    assert_eq!(role["attributes"]["aws.session_name"], "run-1");
    assert_eq!(claims(&body)["sub"], format!("aws://{ACCOUNT}/role/payments-api"));

    // The same role name in another account is another identity.
    let (status, body) = exchange(&broker, &tokens[2]).await;
    assert_eq!(status, 200, "{body}\n{}", moto.log());
    let other = last_identity(&broker);
    assert_eq!(other["id"], format!("aws://{OTHER_ACCOUNT}/role/payments-api"));
    assert_eq!(other["subject"], format!("arn:aws:iam::{OTHER_ACCOUNT}:role/payments-api"));
    assert_eq!(other["tenant"], OTHER_ACCOUNT);
    assert_ne!(other["id"], role["id"]);
    assert_eq!(claims(&body)["account"], OTHER_ACCOUNT);

    assert_no_secrets(&broker, &[&p.user, &p.role, &p.other_account_role]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sts_refusals_and_source_policy_are_invalid_subject_tokens() {
    let moto = Moto::start().await;
    let broker = broker_for(&moto, "").await;
    let p = moto.principals.clone();

    // A wrong secret: every local check passes, moto refuses the signature.
    let before = settled_posts(&moto).await;
    let token = moto.sign(&moto.url(), &p.role, SERVER_ID, &["--wrong-secret"]).await;
    let (status, body) = exchange(&broker, &token).await;
    assert_eq!((status, body), (400, invalid_token_body()));
    assert_eq!(last_reason(&broker), "TS-SRC-SIGNATURE");
    assert_eq!(settled_posts(&moto).await, before + 1, "the request reached moto");
    let last_post =
        moto.log().lines().rfind(|l| l.contains("POST / HTTP/1.1")).unwrap_or_default().to_string();
    assert!(last_post.ends_with("\" 403 -"), "moto answered: {last_post}");

    // A right signature over the wrong session token.
    let mut stolen = p.role.clone();
    stolen.session_token = p.other_account_role.session_token.clone();
    let token = moto.sign(&moto.url(), &stolen, SERVER_ID, &[]).await;
    let (status, body) = exchange(&broker, &token).await;
    assert_eq!((status, body), (400, invalid_token_body()));
    assert_eq!(last_reason(&broker), "TS-SRC-SIGNATURE");

    // allowed_accounts: STS vouches for the caller, the source's policy refuses it.
    let strict = broker_for(&moto, &format!("  allowed_accounts: [\"{OTHER_ACCOUNT}\"]\n")).await;
    let token = moto.sign(&moto.url(), &p.user, SERVER_ID, &[]).await;
    let (status, body) = exchange(&strict, &token).await;
    assert_eq!((status, body), (400, invalid_token_body()));
    assert_eq!(last_reason(&strict), "TS-SRC-POLICY");
    let token = moto.sign(&moto.url(), &p.other_account_role, SERVER_ID, &[]).await;
    let (status, body) = exchange(&strict, &token).await;
    assert_eq!(status, 200, "{body}");
    strict.stop().await;

    assert_no_secrets(&broker, &[&p.role, &p.other_account_role]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_failing_a_local_check_are_refused_before_reaching_sts() {
    let moto = Moto::start().await;
    let broker = broker_for(&moto, "").await;
    let role = moto.principals.role.clone();
    let stale = format_rfc3339(broker.clock.now() - 20 * 60).replace(['-', ':'], "");
    let localhost = moto.url().replace("127.0.0.1", "localhost");

    let cases: Vec<(&str, String, Vec<&str>, &str, &str)> = vec![
        // (what, url, sign options, reason, detail fragment)
        (
            "no server id header",
            moto.url(),
            vec!["--no-server-id"],
            "TS-SRC-MISSING-CLAIM",
            "x-tessera-server-id",
        ),
        (
            "server id not signed",
            moto.url(),
            vec!["--unsigned-server-id"],
            "TS-SRC-INVALID-CLAIM",
            "x-tessera-server-id",
        ),
        ("another Action", moto.url(), vec!["--action", "GetSessionToken"], "TS-SRC-INVALID-CLAIM", "body"),
        ("GET", moto.url(), vec!["--method", "GET"], "TS-SRC-INVALID-CLAIM", "method"),
        (
            "host not allow-listed",
            "https://sts.attacker.example/".into(),
            vec![],
            "TS-SRC-UNTRUSTED-ISSUER",
            "",
        ),
        ("same port, other host name", localhost, vec![], "TS-SRC-UNTRUSTED-ISSUER", ""),
        ("stale X-Amz-Date", moto.url(), vec!["--date", &stale], "TS-SRC-EXPIRED", ""),
    ];
    let url = moto.url();
    let mut requests: Vec<(&str, &AwsCredentials, &str, &[&str])> = cases
        .iter()
        .map(|(_, url, options, _, _)| (url.as_str(), &role, SERVER_ID, options.as_slice()))
        .collect();
    requests.push((&url, &role, "other-tessera.test", &[]));
    requests.push((&url, &role, SERVER_ID, &[]));
    let mut tokens = moto.sign_all(&requests).await;
    let fresh = tokens.pop().unwrap();
    let other_server = tokens.pop().unwrap();
    let before = settled_posts(&moto).await;
    for ((what, _, _, reason, detail), token) in cases.iter().zip(tokens) {
        let (status, body) = exchange(&broker, &token).await;
        assert_eq!((status, body), (400, invalid_token_body()), "{what}");
        let event = broker.audit_events().pop().unwrap();
        assert_eq!(event["reason"], *reason, "{what}: {event}");
        assert_eq!(event["decision"], "deny", "{what}");
        assert!(event["detail"].as_str().unwrap().contains(detail), "{what}: {event}");
        assert!(event.get("identity").is_none(), "{what}");
    }
    // Another Tessera's server id: properly signed, bound to someone else.
    let (status, body) = exchange(&broker, &other_server).await;
    assert_eq!((status, body), (400, invalid_token_body()));
    assert_eq!(last_reason(&broker), "TS-SRC-AUDIENCE");

    // A fresh request with the same keys still works: the refusals were the checks. It is
    // the only request moto saw.
    assert_eq!(exchange(&broker, &fresh).await.0, 200);
    assert_eq!(settled_posts(&moto).await, before + 1, "a refused request was forwarded:\n{}", moto.log());
    assert_no_secrets(&broker, &[&role]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tesseras_own_signer_is_accepted_by_sts_through_the_broker() {
    let moto = Moto::start().await;
    let broker = broker_for(&moto, "").await;
    let p = moto.principals.clone();
    let now = broker.clock.now();
    let credentials = |c: &AwsCredentials| {
        Credentials::new(&c.access_key, &c.secret_key, c.session_token.clone(), None, "moto")
    };

    let token = signed_request(&credentials(&p.role), "us-west-2", &moto.url(), SERVER_ID, now).unwrap();
    let (status, body) = exchange(&broker, token.expose()).await;
    assert_eq!(status, 200, "{body}\n{}", moto.log());
    let role = last_identity(&broker);
    assert_eq!(role["id"], format!("aws://{ACCOUNT}/role/payments-api"));
    assert_eq!(role["region"], "us-west-2");
    assert_eq!(role["attributes"]["aws.principal_id"], p.role.user_id.as_str());

    let token = signed_request(&credentials(&p.user), "us-east-1", &moto.url(), SERVER_ID, now).unwrap();
    let (status, body) = exchange(&broker, token.expose()).await;
    assert_eq!(status, 200, "{body}\n{}", moto.log());
    assert_eq!(last_identity(&broker)["id"], format!("aws://{ACCOUNT}/user/deployer"));

    // Signed by the Rust signer with a wrong secret: moto refuses it.
    let mut wrong = p.user.clone();
    wrong.secret_key.push('x');
    let token = signed_request(&credentials(&wrong), "us-east-1", &moto.url(), SERVER_ID, now).unwrap();
    assert_eq!(exchange(&broker, token.expose()).await, (400, invalid_token_body()));
    assert_eq!(last_reason(&broker), "TS-SRC-SIGNATURE");
    broker.stop().await;
}

/// A broker whose `aws_iam` source trusts only the STS at `origin`, and its answer to a
/// request signed for it with made-up keys.
async fn exchange_via(origin: &str) -> (TestBroker, u16, reqwest::header::HeaderMap, Value) {
    let source = format!(
        "- name: aws\n  type: aws_iam\n  server_id: {SERVER_ID}\n  sts_endpoints: [\"{origin}\"]\n  insecure_http: true\n"
    );
    let broker = spawn_broker(BrokerOptions::new(&source, JWT_TARGET).mapping("aws.yaml", RULES)).await;
    let credentials = Credentials::new("AKIAEXAMPLE", "example", None, None, "test");
    let token =
        signed_request(&credentials, "us-east-1", &format!("{origin}/"), SERVER_ID, broker.clock.now())
            .unwrap();
    let (status, headers, body) = broker
        .post_form(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", token.expose()),
            ("subject_token_type", AWS_SIGNED_REQUEST),
            ("audience", "internal-api"),
        ])
        .await;
    (broker, status, headers, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn sts_unreachable_is_temporarily_unavailable() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (broker, status, headers, body) = exchange_via(&closed).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(headers.get("retry-after").unwrap(), "5");
    assert_eq!(last_reason(&broker), "TS-SRC-UPSTREAM");
    assert_eq!(broker.audit_events().last().unwrap()["decision"], "error");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sts_answer_tessera_cannot_use_is_unavailable_without_retry_after() {
    // Answers 404 to everything, as no STS does to GetCallerIdentity: not worth retrying.
    let (_, sts) = tessera_tests::fake::FakeServer::start(|_| (), |_| {});
    let (broker, status, headers, body) = exchange_via(sts.url()).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    assert!(!headers.contains_key("retry-after"), "{headers:?}");
    let event = broker.audit_events().pop().unwrap();
    assert_eq!(
        (event["decision"].as_str(), event["reason"].as_str()),
        (Some("error"), Some("TS-SRC-UPSTREAM"))
    );
    assert_eq!(event["detail"], "upstream failure: STS answered 404");
    broker.stop().await;
}
