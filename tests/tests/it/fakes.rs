//! The Google and Entra fakes themselves: each takes the request its service publishes, and
//! refuses every wrong one with the answer the real service gives, so a test that passes
//! against them says something.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_adapters::clock::format_rfc3339;
use tessera_tests::entra::{self, FakeEntra, FederatedCredential, TOKEN_EXCHANGE_AUDIENCE};
use tessera_tests::google::{self, FakeGoogle, WorkloadIdentityProvider};
use tessera_tests::keys::{hs256, jws};
use tessera_tests::{ManualClock, TestIssuer, TestKey};

const PROVIDER: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/tessera";
const OTHER_PROVIDER: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/absent";
const SERVICE_ACCOUNT: &str = "app@payments-prod.iam.gserviceaccount.com";
const STORAGE_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";
const SAML2: &str = "urn:ietf:params:oauth:token-type:saml2";

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT_ID: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const GRAPH: &str = "https://graph.microsoft.com/.default";
const NO_CREDENTIALS_CLIENT_ID: &str = "0b5c1f7e-1d2a-4c3b-9e8f-7a6b5c4d3e2f";
const UNKNOWN_CLIENT_ID: &str = "99999999-9999-9999-9999-999999999999";
const SAML2_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer";

const FORM: &str = "application/x-www-form-urlencoded";

/// A form as a list, so a case can send a parameter twice or leave one out.
type Form = Vec<(&'static str, String)>;

fn set(mut form: Form, name: &'static str, value: &str) -> Form {
    form.retain(|(k, _)| *k != name);
    form.push((name, value.to_string()));
    form
}

fn without(mut form: Form, name: &str) -> Form {
    form.retain(|(k, _)| *k != name);
    form
}

fn plus(mut form: Form, name: &'static str, value: &str) -> Form {
    form.push((name, value.to_string()));
    form
}

async fn post_form(url: &str, form: &Form) -> (u16, Value) {
    post_raw(url, FORM, serde_urlencoded::to_string(form).unwrap(), None).await
}

async fn post_raw(url: &str, content_type: &str, body: String, bearer: Option<&str>) -> (u16, Value) {
    post_with(&reqwest::Client::new(), url, content_type, body, bearer).await
}

/// A POST through `http`, which keeps its connections (one client, as the broker has).
async fn post_with(
    http: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: String,
    bearer: Option<&str>,
) -> (u16, Value) {
    let mut request = http.post(url).header(CONTENT_TYPE, content_type).body(body);
    if let Some(token) = bearer {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::starting_now())
}

/// An issuer with an RSA and an EC key, and a fake Google whose provider trusts it.
fn google_setup() -> (Arc<ManualClock>, TestIssuer, WorkloadIdentityProvider, FakeGoogle) {
    let clock = clock();
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1"), TestKey::ec("ec-1")]);
    let provider = WorkloadIdentityProvider::new(PROVIDER, issuer.url());
    let google = FakeGoogle::start(vec![provider.clone()], clock.clone());
    (clock, issuer, provider, google)
}

fn sts_form(token: &str, scope: &str) -> Form {
    vec![
        ("grant_type", google::TOKEN_EXCHANGE.to_string()),
        ("audience", PROVIDER.to_string()),
        ("scope", scope.to_string()),
        ("requested_token_type", google::ACCESS_TOKEN_TYPE.to_string()),
        ("subject_token", token.to_string()),
        ("subject_token_type", google::JWT_TYPE.to_string()),
    ]
}

async fn federated_token(google: &FakeGoogle, token: &str, scope: &str) -> String {
    let (status, body) = post_form(&format!("{}/v1/token", google.url()), &sts_form(token, scope)).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

fn generate_url(google: &FakeGoogle, service_account: &str) -> String {
    format!("{}/v1/projects/-/serviceAccounts/{service_account}:generateAccessToken", google.url())
}

#[tokio::test(flavor = "multi_thread")]
async fn google_takes_the_published_exchange_and_impersonation() {
    let (clock, issuer, provider, google) = google_setup();
    let now = clock.now();
    let audience = provider.default_audience();
    assert_eq!(
        audience,
        "https://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/tessera"
    );

    // RS256 and ES256 subject tokens both exchange.
    for (index, sub) in [(0, "svc-a"), (1, "svc-b")] {
        let token = issuer.key(index).sign(&issuer.claims(sub, &audience, now));
        let (status, body) =
            post_form(&format!("{}/v1/token", google.url()), &sts_form(&token, google::CLOUD_PLATFORM_SCOPE))
                .await;
        assert_eq!(status, 200, "{body}");
        let fields: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(fields, ["access_token", "expires_in", "issued_token_type", "token_type"]);
        assert_eq!(body["issued_token_type"], google::ACCESS_TOKEN_TYPE);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], google::FEDERATED_TOKEN_LIFETIME);
        let request = google.last_sts_request().unwrap();
        assert_eq!(request.field("subject_token"), Some(token.as_str()));
        assert_eq!(request.claims.as_ref().unwrap()["sub"], sub);
        assert_eq!(request.claims.as_ref().unwrap()["iss"], issuer.url());
        assert_eq!(request.refusal, None);
    }
    assert_eq!(google.sts_calls(), 2);
    // The issuer's keys are fetched through discovery on every exchange.
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (2, 2));

    // svc-a may impersonate the service account by name, svc-b through the whole pool.
    google.allow_impersonation(&provider.principal("svc-a"), SERVICE_ACCOUNT);
    google.allow_impersonation(&provider.all_identities(), "pool@payments-prod.iam.gserviceaccount.com");
    let federated = google.issued_access_tokens();
    let request = json!({ "scope": [google::CLOUD_PLATFORM_SCOPE], "lifetime": "600s" }).to_string();
    let (status, body) = post_raw(
        &generate_url(&google, SERVICE_ACCOUNT),
        "application/json",
        request.clone(),
        Some(&federated[0].access_token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let fields: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["accessToken", "expireTime"]);
    assert_eq!(body["expireTime"], format_rfc3339(now + 600));
    let generated = google.last_generate_request().unwrap();
    assert_eq!(generated.service_account, SERVICE_ACCOUNT);
    assert_eq!(generated.principal.as_deref(), Some(provider.principal("svc-a").as_str()));

    // No lifetime: an hour.
    let (status, body) = post_raw(
        &generate_url(&google, "pool@payments-prod.iam.gserviceaccount.com"),
        "application/json",
        json!({ "scope": [STORAGE_SCOPE] }).to_string(),
        Some(&federated[1].access_token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expireTime"], format_rfc3339(now + 3600));
    assert_eq!(google.generate_calls(), 2);

    let issued = google.issued_access_tokens();
    assert_eq!(issued.len(), 4);
    assert_eq!(issued[2].service_account.as_deref(), Some(SERVICE_ACCOUNT));
    assert_eq!(issued[3].scopes, [STORAGE_SCOPE]);
    assert!(google.refusals().is_empty());

    // `google.subject` may be 127 bytes.
    let token = issuer.key(0).sign(&issuer.claims(&"s".repeat(127), &audience, now));
    federated_token(&google, &token, google::CLOUD_PLATFORM_SCOPE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn google_sts_refuses_each_wrong_request() {
    let (clock, issuer, provider, google) = google_setup();
    let now = clock.now();
    let audience = provider.default_audience();
    let claims = issuer.claims("svc-a", &audience, now);
    let rsa = issuer.key(0);
    let with = |name: &str, value: Value| {
        let mut c = claims.clone();
        c[name] = value;
        rsa.sign(&c)
    };
    let mut no_sub = claims.clone();
    no_sub.as_object_mut().unwrap().remove("sub");
    let good = rsa.sign(&claims);
    let eddsa = TestKey::ed("ed-1").sign(&claims);
    let none = jws(&json!({ "alg": "none", "kid": "rsa-1" }), &claims, b"");
    let confused = hs256(&json!({ "alg": "HS256", "kid": "rsa-1" }), &claims, rsa.public_pem().as_bytes());
    let no_kid = rsa.sign_with_header(&json!({ "alg": "RS256", "typ": "JWT" }), &claims);
    let unpublished = TestKey::rsa("rsa-2").sign(&claims);
    let impostor = TestKey::rsa("rsa-1").sign(&claims);
    let ec_as_rsa = issuer.key(1).sign_with_header(&json!({ "alg": "ES256", "kid": "rsa-1" }), &claims);
    let other_audience = with("aud", json!("https://iam.googleapis.com/other"));
    let base = || sts_form(&good, google::CLOUD_PLATFORM_SCOPE);
    let id_token_requested = set(base(), "requested_token_type", google::ID_TOKEN_TYPE);
    let token = |t: &str| sts_form(t, google::CLOUD_PLATFORM_SCOPE);
    let url = format!("{}/v1/token", google.url());

    use google::Refusal as R;
    let invalid_request = vec![
        ("no subject_token", without(base(), "subject_token"), R::MissingParameter("subject_token")),
        ("scope twice", plus(base(), "scope", "s"), R::DuplicateParameter("scope".into())),
        ("actor_token", plus(base(), "actor_token", "x"), R::UnknownParameter("actor_token".into())),
        ("ID token requested", id_token_requested, R::RequestedTokenType),
        ("SAML subject", set(base(), "subject_token_type", SAML2), R::SubjectTokenType),
        ("audience as a URL", set(base(), "audience", &audience), R::AudienceFormat),
        ("no scope", without(base(), "scope"), R::MissingParameter("scope")),
        ("blank scope", sts_form(&good, " "), R::MissingParameter("scope")),
    ];
    let unsupported_grant_type =
        vec![("client credentials", set(base(), "grant_type", "client_credentials"), R::GrantType)];
    let invalid_target =
        vec![("unknown provider", set(base(), "audience", OTHER_PROVIDER), R::UnknownProvider)];
    let invalid_grant = vec![
        ("not a JWT", token("not-a-jwt"), R::MalformedToken),
        ("EdDSA", token(&eddsa), R::Algorithm),
        ("alg none", token(&none), R::Algorithm),
        ("HS256 keyed with the public key", token(&confused), R::Algorithm),
        ("no kid", token(&no_kid), R::MissingKid),
        ("unpublished kid", token(&unpublished), R::UnknownKid),
        ("another key under a published kid", token(&impostor), R::BadSignature),
        ("ES256 under an RSA kid", token(&ec_as_rsa), R::BadSignature),
        ("another issuer", token(&with("iss", json!("https://issuer.example"))), R::WrongIssuer),
        ("another audience", token(&other_audience), R::WrongAudience),
        ("no aud", token(&with("aud", json!([]))), R::MissingClaim("aud")),
        ("expired", token(&with("exp", json!(now))), R::Expired),
        ("issued in the future", token(&with("iat", json!(now + 60))), R::IssuedInFuture),
        ("not yet valid", token(&with("nbf", json!(now + 60))), R::NotYetValid),
        ("valid for over a day", token(&with("exp", json!(now + 24 * 3600 + 1))), R::LifetimeTooLong),
        ("no sub", token(&rsa.sign(&no_sub)), R::MissingClaim("sub")),
        ("sub over 127 bytes", token(&with("sub", json!("s".repeat(128)))), R::SubjectTooLong),
    ];
    let groups = [
        ("invalid_request", invalid_request),
        ("unsupported_grant_type", unsupported_grant_type),
        ("invalid_target", invalid_target),
        ("invalid_grant", invalid_grant),
    ];
    let mut sent = 0;
    for (error, cases) in groups {
        for (name, form, refusal) in cases {
            let (status, body) = post_form(&url, &form).await;
            sent += 1;
            assert_eq!(status, 400, "{name}: {body}");
            assert_eq!(body["error"], error, "{name}: {body}");
            assert!(!body["error_description"].as_str().unwrap().is_empty(), "{name}: {body}");
            assert_eq!(body.as_object().unwrap().len(), 2, "{name}: {body}");
            assert_eq!(google.refusals().last(), Some(&refusal), "{name}");
            assert_eq!(google.last_sts_request().unwrap().refusal, Some(refusal), "{name}");
        }
    }

    // A JSON body, which Google also takes, is not what RFC 8693 §2.1 specifies.
    let body = json!({ "grant_type": google::TOKEN_EXCHANGE, "subject_token": good }).to_string();
    let (status, answer) = post_raw(&url, "application/json", body, None).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_request")));
    assert_eq!(google.refusals().last(), Some(&R::ContentType));

    // The issuer's keys are out of reach.
    issuer.set_down(true);
    let (status, answer) = post_form(&url, &base()).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(google.refusals().last(), Some(&R::IssuerUnreachable));
    issuer.set_down(false);

    // The signature verified before a claim failed: the claims are on record.
    post_form(&url, &token(&other_audience)).await;
    assert_eq!(google.last_sts_request().unwrap().claims.unwrap()["aud"], "https://iam.googleapis.com/other");

    assert!(google.issued_access_tokens().is_empty());
    assert_eq!(google.sts_calls(), sent + 3);
    assert_eq!(google.refusals().len(), sent + 3);
    // The right request still works.
    federated_token(&google, &good, google::CLOUD_PLATFORM_SCOPE).await;
}

/// A `generateAccessToken` request.
#[derive(Debug, Clone)]
struct Call {
    url: String,
    content_type: &'static str,
    body: String,
    bearer: Option<String>,
}

impl Call {
    async fn send(&self) -> (u16, Value) {
        post_raw(&self.url, self.content_type, self.body.clone(), self.bearer.as_deref()).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn google_iam_credentials_refuses_each_wrong_request() {
    let (clock, issuer, provider, google) = google_setup();
    let now = clock.now();
    let audience = provider.default_audience();
    google.allow_impersonation(&provider.principal("svc-a"), SERVICE_ACCOUNT);
    let token = issuer.key(0).sign(&issuer.claims("svc-a", &audience, now));
    let federated = federated_token(&google, &token, google::CLOUD_PLATFORM_SCOPE).await;
    let narrow = federated_token(&google, &token, STORAGE_SCOPE).await;
    let url = generate_url(&google, SERVICE_ACCOUNT);
    let good = Call {
        url: url.clone(),
        content_type: "application/json",
        body: json!({ "scope": [google::CLOUD_PLATFORM_SCOPE], "lifetime": "600s" }).to_string(),
        bearer: Some(federated.clone()),
    };
    let body = |value: Value| Call { body: value.to_string(), ..good.clone() };
    let delegate =
        json!({ "scope": ["s"], "delegates": ["projects/-/serviceAccounts/d@p.iam.gserviceaccount.com"] });
    let other_account = generate_url(&google, "other@payments-prod.iam.gserviceaccount.com");
    let in_project = url.replace("/projects/-/", "/projects/payments-prod/");
    let sign_jwt = url.replace(":generateAccessToken", ":signJwt");
    let unknown_field = json!({ "scope": ["s"], "audience": "x" });

    use google::Refusal as R;
    let unauthenticated = vec![
        ("no credential", Call { bearer: None, ..good.clone() }, R::MissingCredentials),
        ("unknown token", Call { bearer: Some("ya29.forged".into()), ..good.clone() }, R::UnknownToken),
    ];
    let permission_denied = vec![
        ("no cloud-platform scope", Call { bearer: Some(narrow), ..good.clone() }, R::InsufficientScope),
        ("a delegate", body(delegate), R::PermissionDenied),
        ("a service account not granted", Call { url: other_account, ..good.clone() }, R::PermissionDenied),
    ];
    let invalid_argument = vec![
        ("a project, not -", Call { url: in_project, ..good.clone() }, R::ProjectNotWildcard),
        ("form body", Call { content_type: FORM, ..good.clone() }, R::JsonContentType),
        ("not JSON", Call { body: "{".into(), ..good.clone() }, R::MalformedJson),
        ("unknown field", body(unknown_field), R::UnknownField("audience".into())),
        ("no scope", body(json!({ "lifetime": "600s" })), R::MissingField("scope")),
        ("scope as a string", body(json!({ "scope": "s" })), R::InvalidField("scope")),
        ("two hours", body(json!({ "scope": ["s"], "lifetime": "7200s" })), R::Lifetime),
        ("lifetime not a duration", body(json!({ "scope": ["s"], "lifetime": "1h" })), R::Lifetime),
        ("zero lifetime", body(json!({ "scope": ["s"], "lifetime": "0s" })), R::Lifetime),
    ];
    let not_found = vec![("another method", Call { url: sign_jwt, ..good.clone() }, R::NotFound)];
    let groups = [
        (401, "UNAUTHENTICATED", unauthenticated),
        (403, "PERMISSION_DENIED", permission_denied),
        (400, "INVALID_ARGUMENT", invalid_argument),
        (404, "NOT_FOUND", not_found),
    ];
    for (code, rpc_status, cases) in groups {
        for (name, call, refusal) in cases {
            let (status, answer) = call.send().await;
            assert_eq!(status, code, "{name}: {answer}");
            assert_eq!(answer["error"]["code"], code, "{name}: {answer}");
            assert_eq!(answer["error"]["status"], rpc_status, "{name}: {answer}");
            assert!(!answer["error"]["message"].as_str().unwrap().is_empty(), "{name}: {answer}");
            assert_eq!(google.refusals().last(), Some(&refusal), "{name}");
        }
    }
    let (_, denied) =
        Call { url: generate_url(&google, "x@p.iam.gserviceaccount.com"), ..good.clone() }.send().await;
    assert_eq!(denied["error"]["details"][0]["reason"], "IAM_PERMISSION_DENIED");
    // 14 calls and `denied`; the 404 is no generateAccessToken call.
    assert_eq!(google.generate_calls(), 15);
    let issued = google.issued_access_tokens();
    assert!(!issued.is_empty(), "the good calls were issued tokens");
    assert!(issued.iter().all(|t| t.service_account.is_none()));

    // The federated token lives an hour.
    clock.advance(google::FEDERATED_TOKEN_LIFETIME - 1);
    assert_eq!(good.send().await.0, 200);
    clock.advance(1);
    let (status, answer) = good.send().await;
    assert_eq!((status, answer["error"]["status"].as_str()), (401, Some("UNAUTHENTICATED")));
    assert_eq!(google.refusals().last(), Some(&R::TokenExpired));
}

#[tokio::test(flavor = "multi_thread")]
async fn google_fails_on_demand_and_holds_calls_in_flight() {
    let (clock, issuer, provider, google) = google_setup();
    let token = issuer.key(0).sign(&issuer.claims("svc-a", &provider.default_audience(), clock.now()));
    let url = format!("{}/v1/token", google.url());
    let form = sts_form(&token, google::CLOUD_PLATFORM_SCOPE);

    google.fail_next_sts(2, 503);
    for _ in 0..2 {
        let (status, body) = post_form(&url, &form).await;
        assert_eq!(status, 503);
        assert_eq!(body["error"]["status"], "UNAVAILABLE");
    }
    let federated = federated_token(&google, &token, google::CLOUD_PLATFORM_SCOPE).await;
    google.allow_impersonation(&provider.principal("svc-a"), SERVICE_ACCOUNT);
    google.fail_next_generate(1, 429);
    let body = json!({ "scope": ["s"] }).to_string();
    let (status, answer) =
        post_raw(&generate_url(&google, SERVICE_ACCOUNT), "application/json", body.clone(), Some(&federated))
            .await;
    assert_eq!((status, answer["error"]["status"].as_str()), (429, Some("RESOURCE_EXHAUSTED")));
    assert_eq!(
        google.refusals(),
        [google::Refusal::Injected(503), google::Refusal::Injected(503), google::Refusal::Injected(429)]
    );

    google.faults().set_down(true);
    assert_eq!(post_form(&url, &form).await.0, 503);
    let down =
        post_raw(&generate_url(&google, SERVICE_ACCOUNT), "application/json", body, Some(&federated)).await;
    assert_eq!(down.0, 503);
    google.faults().set_down(false);
    assert_eq!(post_form(&url, &form).await.0, 200);

    // A slow Google holds a hundred exchanges at once.
    google.faults().set_delay(Duration::from_secs(1));
    let http = reqwest::Client::new();
    let body = serde_urlencoded::to_string(&form).unwrap();
    let calls = (0..100).map(|_| {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        tokio::spawn(async move { post_with(&http, &url, FORM, body, None).await.0 })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(google.faults().max_in_flight(), 100);
    assert_eq!(google.faults().in_flight(), 0);
    assert_eq!(google.sts_calls(), 105);
}

/// An issuer with an RSA and an EC key, and a fake Entra whose application trusts its
/// `svc-a` through a federated credential.
fn entra_setup() -> (Arc<ManualClock>, TestIssuer, FakeEntra) {
    let clock = clock();
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1"), TestKey::ec("ec-1")]);
    let entra = FakeEntra::start(clock.clone());
    entra.add_federated_credential(TENANT, CLIENT_ID, FederatedCredential::new(issuer.url(), "svc-a"));
    (clock, issuer, entra)
}

fn entra_form(assertion: &str) -> Form {
    vec![
        ("client_id", CLIENT_ID.to_string()),
        ("scope", GRAPH.to_string()),
        ("grant_type", "client_credentials".to_string()),
        ("client_assertion_type", entra::JWT_BEARER.to_string()),
        ("client_assertion", assertion.to_string()),
    ]
}

fn token_url(entra: &FakeEntra, tenant: &str) -> String {
    format!("{}/{tenant}/oauth2/v2.0/token", entra.url())
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_takes_the_published_client_credentials_request() {
    let (clock, issuer, entra) = entra_setup();
    let now = clock.now();
    let assertion = issuer.key(0).sign(&issuer.claims("svc-a", TOKEN_EXCHANGE_AUDIENCE, now));
    let (status, body) = post_form(&token_url(&entra, TENANT), &entra_form(&assertion)).await;
    assert_eq!(status, 200, "{body}");
    let fields: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["access_token", "expires_in", "ext_expires_in", "token_type"]);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);

    let request = entra.last_token_request().unwrap();
    assert_eq!(request.tenant, TENANT);
    assert_eq!(request.field("client_assertion"), Some(assertion.as_str()));
    let claims = request.claims.unwrap();
    assert_eq!((claims["iss"].as_str(), claims["sub"].as_str()), (Some(issuer.url()), Some("svc-a")));
    let issued = entra.issued_access_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].access_token, body["access_token"].as_str().unwrap());
    assert_eq!((issued[0].subject.as_str(), issued[0].scope.as_str()), ("svc-a", GRAPH));
    assert_eq!(issued[0].expires_at, now + 3599);
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (1, 1));

    // A credential with its own audience; `aud` may be a list.
    entra.add_federated_credential(
        TENANT,
        CLIENT_ID,
        FederatedCredential::new(issuer.url(), "svc-b").audiences(&["api://tessera"]),
    );
    let mut claims = issuer.claims("svc-b", "api://tessera", now);
    claims["aud"] = json!(["api://other", "api://tessera"]);
    let (status, body) =
        post_form(&token_url(&entra, TENANT), &entra_form(&issuer.key(0).sign(&claims))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(entra.token_calls(), 2);
    assert!(entra.refusals().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_refuses_each_wrong_request() {
    let (clock, issuer, entra) = entra_setup();
    let now = clock.now();
    entra.add_application(TENANT, NO_CREDENTIALS_CLIENT_ID);
    let claims = issuer.claims("svc-a", TOKEN_EXCHANGE_AUDIENCE, now);
    let rsa = issuer.key(0);
    let with = |name: &str, value: Value| {
        let mut c = claims.clone();
        c[name] = value;
        entra_form(&rsa.sign(&c))
    };
    let good = rsa.sign(&claims);
    let at_jwt = rsa.sign_with_header(&json!({ "alg": "RS256", "kid": "rsa-1", "typ": "at+jwt" }), &claims);
    let es256 = issuer.key(1).sign(&claims);
    let none = jws(&json!({ "alg": "none", "kid": "rsa-1" }), &claims, b"");
    let no_kid = rsa.sign_with_header(&json!({ "alg": "RS256", "typ": "JWT" }), &claims);
    let unpublished = TestKey::rsa("rsa-2").sign(&claims);
    let confused = hs256(&json!({ "alg": "HS256", "kid": "rsa-1" }), &claims, rsa.public_pem().as_bytes());
    let impostor = TestKey::rsa("rsa-1").sign(&claims);
    let base = || entra_form(&good);
    let two_scopes = format!("{GRAPH} https://vault.azure.net/.default");
    let no_type = without(base(), "client_assertion_type");
    let saml = set(base(), "client_assertion_type", SAML2_BEARER);
    let secret = plus(base(), "client_secret", "s");
    let no_credentials = set(base(), "client_id", NO_CREDENTIALS_CLIENT_ID);
    let delegated = set(base(), "scope", "https://graph.microsoft.com/User.Read");
    let no_assertion = without(base(), "client_assertion");
    let url = token_url(&entra, TENANT);

    use entra::Refusal as R;
    let invalid_request = vec![
        ("no grant_type", without(base(), "grant_type"), 900_144, R::MissingParameter("grant_type")),
        ("no client_id", without(base(), "client_id"), 900_144, R::MissingParameter("client_id")),
        ("no scope", without(base(), "scope"), 900_144, R::MissingParameter("scope")),
        ("no assertion type", no_type, 900_144, R::MissingParameter("client_assertion_type")),
        ("SAML assertion type", saml, 90_100, R::ClientAssertionType),
        ("a client secret too", secret, 90_100, R::UnknownParameter("client_secret".into())),
        ("scope twice", plus(base(), "scope", GRAPH), 90_100, R::DuplicateParameter("scope".into())),
        ("not a JWT", entra_form("not-a-jwt"), 50_027, R::MalformedAssertion),
        ("typ at+jwt", entra_form(&at_jwt), 5_002_727, R::HeaderType),
        ("ES256", entra_form(&es256), 5_002_738, R::Algorithm),
        ("alg none", entra_form(&none), 5_002_738, R::Algorithm),
        ("empty sub", with("sub", json!("")), 50_027, R::MissingClaim("sub")),
        ("an application without credentials", no_credentials, 70_021, R::NoFederatedCredentials),
    ];
    let unsupported_grant_type =
        vec![("password grant", set(base(), "grant_type", "password"), 70_003, R::GrantType)];
    let unauthorized_client =
        vec![("unknown client", set(base(), "client_id", UNKNOWN_CLIENT_ID), 700_016, R::UnknownClient)];
    let invalid_scope = vec![
        ("a delegated scope", delegated, 1_002_012, R::ScopeNotDefault),
        ("two scopes", set(base(), "scope", &two_scopes), 70_011, R::MultipleScopes),
    ];
    let invalid_client = vec![
        ("no assertion", no_assertion, 7_000_218, R::MissingParameter("client_assertion")),
        ("another issuer", with("iss", json!("https://issuer.example")), 700_211, R::WrongIssuer),
        ("unpublished kid", entra_form(&unpublished), 700_027, R::UnknownKid),
        ("no kid", entra_form(&no_kid), 700_027, R::UnknownKid),
        ("HS256 keyed with the public key", entra_form(&confused), 700_027, R::UnknownKid),
        ("another key under a published kid", entra_form(&impostor), 700_027, R::BadSignature),
        ("expired", with("exp", json!(now)), 700_024, R::Expired),
        ("not yet valid", with("nbf", json!(now + 60)), 700_024, R::NotYetValid),
        ("another subject", with("sub", json!("svc-b")), 700_213, R::WrongSubject),
        ("the subject in capitals", with("sub", json!("SVC-A")), 700_213, R::WrongSubject),
        ("another audience", with("aud", json!("api://AzureADMyOrg")), 700_212, R::WrongAudience),
    ];
    let groups = [
        (400, "invalid_request", invalid_request),
        (400, "unsupported_grant_type", unsupported_grant_type),
        (400, "unauthorized_client", unauthorized_client),
        (400, "invalid_scope", invalid_scope),
        (401, "invalid_client", invalid_client),
    ];
    let timestamp = format_rfc3339(now).replacen('T', " ", 1);
    for (code, error, cases) in groups {
        for (name, form, aadsts, refusal) in cases {
            let (status, body) = post_form(&url, &form).await;
            assert_eq!(status, code, "{name}: {body}");
            assert_eq!(body["error"], error, "{name}: {body}");
            assert_eq!(body["error_codes"], json!([aadsts]), "{name}: {body}");
            let description = body["error_description"].as_str().unwrap();
            assert!(description.starts_with(&format!("AADSTS{aadsts}: ")), "{name}: {description}");
            assert!(description.contains(body["trace_id"].as_str().unwrap()), "{name}: {description}");
            assert!(description.contains(body["correlation_id"].as_str().unwrap()), "{name}: {description}");
            assert_eq!(body["timestamp"], timestamp, "{name}");
            assert_eq!(body["error_uri"], format!("https://login.microsoftonline.com/error?code={aadsts}"));
            assert_eq!(entra.refusals().last(), Some(&refusal), "{name}");
            assert_eq!(entra.last_token_request().unwrap().refusal, Some(refusal), "{name}");
        }
    }

    let (status, answer) = post_form(&token_url(&entra, "contoso.example"), &base()).await;
    assert_eq!((status, answer["error_codes"].clone()), (400, json!([90_002])));
    assert_eq!(entra.refusals().last(), Some(&R::UnknownTenant));

    // A JSON body: Entra finds no form, so no grant_type.
    let body = json!({ "grant_type": "client_credentials" }).to_string();
    let (status, answer) = post_raw(&url, "application/json", body, None).await;
    assert_eq!((status, answer["error_codes"].clone()), (400, json!([900_144])));
    assert_eq!(entra.refusals().last(), Some(&R::MalformedBody));

    issuer.set_down(true);
    let (status, answer) = post_form(&url, &base()).await;
    assert_eq!((status, answer["error_codes"].clone()), (400, json!([501_661])));
    assert_eq!(entra.refusals().last(), Some(&R::IssuerUnreachable));
    issuer.set_down(false);

    assert!(entra.issued_access_tokens().is_empty());
    assert_eq!(post_form(&url, &base()).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_fails_on_demand_and_holds_calls_in_flight() {
    let (clock, issuer, entra) = entra_setup();
    let assertion = issuer.key(0).sign(&issuer.claims("svc-a", TOKEN_EXCHANGE_AUDIENCE, clock.now()));
    let url = token_url(&entra, TENANT);
    let form = entra_form(&assertion);

    entra.fail_next(1, 503);
    entra.fail_next(1, 429);
    let (status, body) = post_form(&url, &form).await;
    assert_eq!(
        (status, body["error"].as_str(), body["error_codes"].clone()),
        (503, Some("temporarily_unavailable"), json!([50_000]))
    );
    let (status, body) = post_form(&url, &form).await;
    assert_eq!(
        (status, body["error"].as_str(), body["error_codes"].clone()),
        (429, Some("temporarily_unavailable"), json!([90_055]))
    );
    assert_eq!(post_form(&url, &form).await.0, 200);
    assert_eq!(entra.refusals(), [entra::Refusal::Injected(503), entra::Refusal::Injected(429)]);

    entra.faults().set_down(true);
    assert_eq!(post_form(&url, &form).await.0, 503);
    entra.faults().set_down(false);

    entra.faults().set_delay(Duration::from_secs(1));
    let http = reqwest::Client::new();
    let body = serde_urlencoded::to_string(&form).unwrap();
    let calls = (0..100).map(|_| {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        tokio::spawn(async move { post_with(&http, &url, FORM, body, None).await.0 })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(entra.faults().max_in_flight(), 100);
    assert_eq!(entra.faults().in_flight(), 0);
    assert_eq!(entra.token_calls(), 104);
}
