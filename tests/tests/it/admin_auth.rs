//! The admin listener's authentication: a Tessera-issued JWT for the `admin` target, got
//! through the ordinary exchange and the mapping rules, opens it; missing, wrong-audience,
//! expired, forged and `alg: none` tokens don't. With `tls`, only a client certificate from
//! the configured CA gets through the handshake. Config mistakes are refused at load with
//! their file, line and column.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_tests::broker::try_spawn_broker;
use tessera_tests::keys::{header_of, jws};
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TARGET, oidc_source};

pub(crate) const ADMIN_TARGET: &str = "- name: admin\n  type: jwt\n  audience: https://tessera-admin.example\n  max_ttl: 1h\n  default_ttl: 15m\n";

pub(crate) const RULES: &str = r#"version: 1
rules:
  - name: ops-administer-tessera
    description: the ops service account may use the admin API
    match: { source: corp, subject: svc-ops }
    grant: { target: admin, ttl: 15m }
  - name: services-call-internal-api
    match: { source: corp, subject: "svc-*" }
    grant: { target: internal-api, ttl: 10m }
"#;

pub(crate) const JWT_AUTH: &str = "admin:\n  auth:\n    jwt:\n      target: admin\n";

pub(crate) fn targets() -> String {
    format!("{JWT_TARGET}{ADMIN_TARGET}")
}

pub(crate) async fn jwt_broker() -> (TestIssuer, TestBroker) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let mut options =
        BrokerOptions::new(&oidc_source(&issuer), &targets()).mapping("10-admin.yaml", RULES).with_admin();
    options.extra = JWT_AUTH.to_string();
    (issuer, spawn_broker(options).await)
}

/// Exchange a token of `sub` from the test issuer for `audience`.
async fn exchange(issuer: &TestIssuer, broker: &TestBroker, sub: &str, audience: &str) -> (u16, Value) {
    let token = issuer.key(0).sign(&issuer.claims(sub, "tessera", broker.clock.now()));
    broker.exchange(&token, audience).await
}

pub(crate) async fn admin_token(issuer: &TestIssuer, broker: &TestBroker) -> String {
    let (status, body) = exchange(issuer, broker, "svc-ops", "admin").await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// A request to the admin API, with `token` as a bearer credential if given.
async fn call(
    broker: &TestBroker,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, Option<String>, Value, String) {
    let url = format!("{}{path}", broker.admin_url.as_deref().unwrap());
    let mut request = match method {
        "GET" => broker.http.get(url),
        _ => broker
            .http
            .post(url)
            .json(&json!({ "identity": { "source": "corp", "subject": "svc-ops" }, "audience": "admin" })),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    (status, challenge, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

fn claims_of(token: &str) -> Value {
    tessera_tests::keys::claims_of(token)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_token_granted_by_the_rules_opens_the_admin_api() {
    let (issuer, broker) = jwt_broker().await;
    let token = admin_token(&issuer, &broker).await;
    let claims = claims_of(&token);
    assert_eq!(claims["aud"], "https://tessera-admin.example");
    assert_eq!(claims["sub"], "oidc://corp/svc-ops", "{claims}");

    let (status, _, body, _) = call(&broker, "GET", "/v1/status", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mappings"]["rules"], 2, "{body}");
    let (status, _, body, _) = call(&broker, "POST", "/v1/explain", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], json!({ "decision": "allow", "rule": "ops-administer-tessera" }), "{body}");
    // The scheme is case-insensitive (RFC 7235 §2.1).
    let response = broker
        .http
        .get(format!("{}/v1/status", broker.admin_url.as_deref().unwrap()))
        .header("authorization", format!("bEaReR {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // Probes need no token.
    let (status, _, body, _) = call(&broker, "GET", "/healthz", None).await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_admin_route_refuses_callers_without_a_valid_token() {
    let (issuer, broker) = jwt_broker().await;

    // No credentials: a bare challenge (RFC 6750 §3.1), on every route the admin listener
    // registers but `/healthz`, and on a path it does not know.
    let registered = tessera_broker::http::admin::ADMIN
        .iter()
        .filter(|e| e.path != "/healthz")
        .map(|e| (e.method.as_ref().map_or("GET", |m| m.as_str()), e.path));
    let routes: Vec<(&str, &str)> = registered.chain([("GET", "/v1/nowhere")]).collect();
    for known in
        ["/v1/status", "/v1/explain", "/v1/reload", "/metrics", "/v1/workloads", "/v1/audit", "/openapi.json"]
    {
        assert!(routes.iter().any(|(_, path)| *path == known), "{known} is an admin route: {routes:?}");
    }
    for (method, path) in routes {
        let (status, challenge, body, _) = call(&broker, method, path, None).await;
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="tessera-admin""#), "{method} {path}");
        assert_eq!(body["error"], "unauthorized", "{body}");
    }

    // A Tessera token for another target: right issuer and key, wrong `aud`.
    let (status, body) = exchange(&issuer, &broker, "svc-ops", "internal-api").await;
    assert_eq!(status, 200, "{body}");
    let other = body["access_token"].as_str().unwrap().to_string();
    let (status, challenge, body, text) = call(&broker, "GET", "/v1/status", Some(&other)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="tessera-admin", error="invalid_token""#));
    assert_eq!(body["error"], "invalid_token");
    assert!(body["message"].as_str().unwrap().contains("audience"), "{body}");
    assert!(!text.contains(&other), "the token is never echoed");

    let token = admin_token(&issuer, &broker).await;
    let header = header_of(&token);
    let claims = claims_of(&token);

    // Forged: Tessera's kid, issuer and audience, but another key's signature.
    let forger = TestKey::ec("forger");
    let forged = forger.sign_with_header(&header, &claims);
    let (status, challenge, body, _) = call(&broker, "GET", "/v1/status", Some(&forged)).await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.unwrap().contains(r#"error="invalid_token""#));
    assert!(body["message"].as_str().unwrap().contains("signature"), "{body}");

    // `alg: none`, unsigned.
    let mut none = header.clone();
    none["alg"] = json!("none");
    let (status, _, body, _) = call(&broker, "GET", "/v1/status", Some(&jws(&none, &claims, b""))).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("algorithm"), "{body}");

    // Signed with the right key but retyped: the `typ` the jwt target sets is required.
    // (Only the broker holds its key, so the header is changed on a forged copy: refused
    // at the header check, before the signature is looked at.)
    let mut retyped = header.clone();
    retyped["typ"] = json!("at+jwt");
    let (status, _, body, _) =
        call(&broker, "GET", "/v1/status", Some(&forger.sign_with_header(&retyped, &claims))).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("typ"), "{body}");

    // Not a bearer credential at all.
    let response = broker
        .http
        .get(format!("{}/v1/status", broker.admin_url.as_deref().unwrap()))
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_request""#));

    // An identity the rules don't grant `admin` gets no token to begin with.
    let (status, body) = exchange(&issuer, &broker, "svc-payments", "admin").await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_target")), "{body}");

    // The genuine token works until it expires (15 minutes, plus 30 s of leeway).
    assert_eq!(call(&broker, "GET", "/v1/status", Some(&token)).await.0, 200);
    broker.clock.advance(15 * 60 + 31);
    let (status, _, body, _) = call(&broker, "GET", "/v1/status", Some(&token)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("expired"), "{body}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_signed_by_a_retired_but_published_key_still_open_the_admin_api() {
    let (issuer, broker) = jwt_broker().await;
    let token = admin_token(&issuer, &broker).await;
    let loaded = broker.broker.config().clone();
    let clock: Arc<dyn tessera_adapters::Clock> = broker.clock.clone();
    tessera_broker::issuer::rotate(&loaded.config.issuer, &loaded.base_dir, clock, Duration::from_secs(3600))
        .expect("rotate");
    broker.broker.issuer().reload().expect("reload");
    let fresh = admin_token(&issuer, &broker).await;
    assert_ne!(header_of(&fresh)["kid"], header_of(&token)["kid"], "the rotation changed the signing key");
    assert_eq!(call(&broker, "GET", "/v1/status", Some(&token)).await.0, 200, "retired key");
    assert_eq!(call(&broker, "GET", "/v1/status", Some(&fresh)).await.0, 200, "new key");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_whose_key_was_retired_past_its_grace_period_is_refused() {
    let (issuer, broker) = jwt_broker().await;
    // Valid for 15 minutes; the key that signed it is retired with 2 minutes of grace.
    let token = admin_token(&issuer, &broker).await;
    let kid = header_of(&token)["kid"].as_str().unwrap().to_string();
    let loaded = broker.broker.config().clone();
    let rotate = || {
        let clock: Arc<dyn tessera_adapters::Clock> = broker.clock.clone();
        tessera_broker::issuer::rotate(
            &loaded.config.issuer,
            &loaded.base_dir,
            clock,
            Duration::from_secs(120),
        )
        .expect("rotate");
        broker.broker.issuer().reload().expect("reload");
    };
    let published = async || {
        let (_, jwks) = broker.get_json("/.well-known/jwks.json").await;
        jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid.as_str())
    };
    rotate();
    assert!(published().await, "retired, within its grace period");
    assert_eq!(call(&broker, "GET", "/v1/status", Some(&token)).await.0, 200);

    // Past the grace period the key leaves the JWKS, and the token, still unexpired, with it.
    broker.clock.advance(121);
    assert!(!published().await, "past its grace period");
    let (status, _, body, _) = call(&broker, "GET", "/v1/status", Some(&token)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "TS-SRC-UNKNOWN-KID", "{body}");
    // The next rotation deletes the key file; the token stays refused.
    rotate();
    assert!(!published().await);
    let (status, _, body, _) = call(&broker, "GET", "/v1/status", Some(&token)).await;
    assert_eq!((status, &body["code"]), (401, &json!("TS-SRC-UNKNOWN-KID")), "{body}");
    // A token from the key signing now opens it.
    let fresh = admin_token(&issuer, &broker).await;
    assert_eq!(call(&broker, "GET", "/v1/status", Some(&fresh)).await.0, 200);
    broker.stop().await;
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate it issued, plus a
/// self-signed client certificate, written as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_pem: String,
    untrusted_pem: String,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "Tessera admin test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let ca_issuer = Issuer::new(ca, ca_key);

    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        params
    };
    let server_key = KeyPair::generate().unwrap();
    let server = leaf(vec!["127.0.0.1".into()], "tessera-admin", ExtendedKeyUsagePurpose::ServerAuth)
        .signed_by(&server_key, &ca_issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = leaf(vec!["ops.example".into()], "ops-oncall", ExtendedKeyUsagePurpose::ClientAuth)
        .signed_by(&client_key, &ca_issuer)
        .unwrap();
    let rogue_key = KeyPair::generate().unwrap();
    let rogue = leaf(vec!["ops.example".into()], "ops-oncall", ExtendedKeyUsagePurpose::ClientAuth)
        .self_signed(&rogue_key)
        .unwrap();

    std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.crt"), server.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), server_key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        client_pem: format!("{}{}", client.pem(), client_key.serialize_pem()),
        untrusted_pem: format!("{}{}", rogue.pem(), rogue_key.serialize_pem()),
        dir,
    }
}

fn tls_auth(pki: &Pki, more: &str) -> String {
    let p = |name: &str| pki.dir.path().join(name).display().to_string();
    format!(
        "admin:\n  auth:\n    tls:\n      cert: {}\n      key: {}\n      client_ca: {}\n{more}",
        p("tls.crt"),
        p("tls.key"),
        p("ca.crt")
    )
}

/// A client trusting only the test CA, presenting `identity` (certificate + key PEM).
fn client(pki: &Pki, identity: Option<&str>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let mut builder = reqwest::Client::builder().tls_certs_only([ca]);
    if let Some(identity) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

async fn tls_broker(pki: &Pki, more: &str, jwt: bool) -> (TestIssuer, TestBroker) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let mut options =
        BrokerOptions::new(&oidc_source(&issuer), &targets()).mapping("10-admin.yaml", RULES).with_admin();
    options.extra = tls_auth(pki, more);
    if jwt {
        options.extra.push_str("    jwt: { target: admin }\n");
    }
    (issuer, spawn_broker(options).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_lets_in_only_client_certificates_from_the_configured_ca() {
    let pki = pki();
    let (_issuer, broker) = tls_broker(&pki, "", false).await;
    let base = broker.admin_url.clone().unwrap();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    let trusted = client(&pki, Some(&pki.client_pem));
    let response = trusted.get(format!("{base}/v1/status")).send().await.expect("trusted client");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.json::<Value>().await.unwrap()["mappings"].is_object());
    let response = trusted.post(format!("{base}/v1/reload")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);

    for (what, client) in
        [("no certificate", client(&pki, None)), ("self-signed", client(&pki, Some(&pki.untrusted_pem)))]
    {
        let result = client.get(format!("{base}/v1/status")).send().await;
        assert!(result.is_err(), "{what}: the handshake must fail, got {result:?}");
    }
    // Plain HTTP is not served on the HTTPS listener.
    let plain = base.replace("https://", "http://");
    let result = reqwest::Client::new().get(format!("{plain}/v1/status")).send().await;
    assert!(result.map(|r| r.status().as_u16() != 200).unwrap_or(true));
    broker.stop().await;
}

/// The operator console under mTLS: a trusted certificate opens it without a login and the
/// session cookie is `Secure`; when a token is required too, the login page takes it from
/// the certificate's holder.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_admits_client_certificates_and_logs_in_their_holders_with_a_token() {
    let pki = pki();
    let (_issuer, broker) = tls_broker(&pki, "", false).await;
    let base = broker.admin_url.clone().unwrap();
    let trusted = client(&pki, Some(&pki.client_pem));
    let page = trusted.get(format!("{base}/ui/workloads")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{cookie}");
    assert!(page.text().await.unwrap().contains("CN=ops-oncall"), "the page names the certificate's holder");
    broker.stop().await;

    let (issuer, broker) = tls_broker(&pki, "", true).await;
    let base = broker.admin_url.clone().unwrap();
    let token = admin_token(&issuer, &broker).await;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()])
        .identity(reqwest::Identity::from_pem(pki.client_pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(format!("{base}/ui/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "a certificate alone is not enough when a token is required too");
    let login = http.get(format!("{base}/ui/login")).send().await.unwrap();
    let login_cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let html = login.text().await.unwrap();
    let csrf = html.split(r#"name="csrf" value=""#).nth(1).unwrap().split('"').next().unwrap().to_string();
    let r = http
        .post(format!("{base}/ui/login"))
        .header("cookie", login_cookie)
        .form(&[("csrf", csrf.as_str()), ("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let session = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = http.get(format!("{base}/ui/rules")).header("cookie", session).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("oidc://corp/svc-ops (certificate CN=ops-oncall"),
        "both credentials name the caller"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_both_methods_all_needs_both_and_any_needs_one() {
    let pki = pki();

    // `all` (the default): a certificate and a token.
    let (issuer, broker) = tls_broker(&pki, "", true).await;
    let base = broker.admin_url.clone().unwrap();
    let token = admin_token(&issuer, &broker).await;
    let trusted = client(&pki, Some(&pki.client_pem));
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(trusted.get(format!("{base}/v1/status")).send().await.unwrap()), 401);
    let ok = trusted.get(format!("{base}/v1/status")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(status(ok), 200);
    let no_cert = client(&pki, None).get(format!("{base}/v1/status")).bearer_auth(&token).send().await;
    assert!(no_cert.is_err(), "the handshake needs a certificate: {no_cert:?}");
    broker.stop().await;

    // `any`: either suffices; a token that is sent must still be valid.
    let (issuer, broker) = tls_broker(&pki, "    require: any\n", true).await;
    let base = broker.admin_url.clone().unwrap();
    let token = admin_token(&issuer, &broker).await;
    let trusted = client(&pki, Some(&pki.client_pem));
    let anonymous = client(&pki, None);
    assert_eq!(status(trusted.get(format!("{base}/v1/status")).send().await.unwrap()), 200);
    let by_token = anonymous.get(format!("{base}/v1/status")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(status(by_token), 200);
    let neither = anonymous.get(format!("{base}/v1/status")).send().await.unwrap();
    assert_eq!(status(neither), 401);
    let bad_token =
        trusted.get(format!("{base}/v1/status")).bearer_auth("e30.e30.c2ln").send().await.unwrap();
    assert_eq!(status(bad_token), 401);
    let untrusted = client(&pki, Some(&pki.untrusted_pem)).get(format!("{base}/v1/status")).send().await;
    assert!(untrusted.is_err(), "a certificate that is presented must verify: {untrusted:?}");
    broker.stop().await;
}

/// Start a broker with `extra` config and return its start error.
async fn start_error(extra: &str) -> String {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let targets = format!("{}- name: aws\n  type: aws_sts\n", targets());
    let mut options =
        BrokerOptions::new(&oidc_source(&issuer), &targets).mapping("10-admin.yaml", RULES).with_admin();
    options.extra = extra.to_string();
    try_spawn_broker(options).await.expect_err("the config must be refused")
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_auth_config_mistakes_are_refused_with_their_location() {
    // In the config the testkit writes, `admin:` is line 33 (after the source and targets).
    let e = start_error("admin:\n  listen: 0.0.0.0:8090\n").await;
    assert!(e.contains("broker.yaml:34:3: admin.listen 0.0.0.0:8090 is not a loopback address"), "{e}");
    let e = start_error("admin:\n  auth:\n    jwt:\n      target: missing\n").await;
    assert!(
        e.contains("broker.yaml:36:15: admin.auth.jwt.target `missing` is not a configured target"),
        "{e}"
    );
    let e = start_error("admin:\n  auth:\n    jwt:\n      target: aws\n").await;
    assert!(e.contains("broker.yaml:36:15: admin.auth.jwt.target `aws` is a `aws_sts` target"), "{e}");

    let pki = pki();
    let p = |name: &str| pki.dir.path().join(name).display().to_string();
    let e = start_error(&format!(
        "admin:\n  auth:\n    tls:\n      cert: {}\n      key: {}\n      client_ca: {}\n",
        p("tls.crt"),
        p("absent.key"),
        p("tls.key"),
    ))
    .await;
    assert!(e.contains("broker.yaml:37:12: cannot read admin.auth.tls.key"), "{e}");
    assert!(e.contains("broker.yaml:38:18: admin.auth.tls.client_ca"), "{e}");
    assert!(e.contains("no PEM certificate"), "{e}");
}

/// DNS rebinding: a page that rebinds its own name to 127.0.0.1 reaches the loopback
/// listener, but its requests name its own host. They are refused before authentication
/// and before any handler; loopback literals, `localhost` and `admin.hosts` are served.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_refuses_requests_for_other_hosts() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let mut options =
        BrokerOptions::new(&oidc_source(&issuer), &targets()).mapping("10-admin.yaml", RULES).with_admin();
    options.extra = "admin:\n  hosts: [tessera-admin.test]\n".to_string();
    let open = spawn_broker(options).await;
    let (jwt_issuer, authenticated) = jwt_broker().await;
    let token = admin_token(&jwt_issuer, &authenticated).await;
    let misdirected = json!({
        "error": "misdirected_request",
        "message": "this listener answers only to a loopback address, localhost or a host name it is configured with",
    });
    let get = |broker: &TestBroker, path: &str, host: &str| {
        let request = broker
            .http
            .get(format!("{}{path}", broker.admin_url.as_deref().unwrap()))
            .header("host", host)
            .bearer_auth(&token);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge = response.headers().contains_key("www-authenticate");
            (status, challenge, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let port =
        |broker: &TestBroker| broker.admin_url.as_deref().unwrap().rsplit(':').next().unwrap().to_string();

    // Unauthenticated on loopback: the Host is all that keeps a rebinding page out.
    let p = port(&open);
    for path in ["/v1/audit", "/v1/workloads", "/v1/status", "/metrics", "/healthz", "/v1/nowhere"] {
        for host in
            ["evil.example", &format!("evil.example:{p}"), "127.0.0.1.evil.example", "localhost.evil.example"]
        {
            assert_eq!(get(&open, path, host).await, (421, false, misdirected.clone()), "{path} {host}");
        }
    }
    for host in [
        format!("127.0.0.1:{p}"),
        format!("localhost:{p}"),
        "tessera-admin.test".into(),
        format!("TESSERA-ADMIN.test:{p}"),
    ] {
        let (status, _, body) = get(&open, "/v1/status", &host).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    let explain = open
        .http
        .post(format!("{}/v1/explain", open.admin_url.as_deref().unwrap()))
        .header("host", "evil.example")
        .json(&json!({ "identity": { "source": "corp", "subject": "svc-ops" }, "audience": "admin" }))
        .send()
        .await
        .unwrap();
    assert_eq!(explain.status(), 421);

    // Authenticated: a valid token does not make another host acceptable, and the check
    // comes before authentication (no challenge).
    let p = port(&authenticated);
    assert_eq!(get(&authenticated, "/v1/status", "evil.example").await, (421, false, misdirected.clone()));
    assert_eq!(get(&authenticated, "/v1/status", "tessera-admin.test").await.0, 421, "not configured here");
    assert_eq!(get(&authenticated, "/v1/status", &format!("[::1]:{p}")).await.0, 200);
    open.stop().await;
    authenticated.stop().await;
}
