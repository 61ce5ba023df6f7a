//! The `openidconnect` crate as a real relying party of Tessera's issuer: it reads the
//! discovery document of a broker on loopback, fetches and parses the JWKS it names, and
//! verifies Tessera-issued JWTs with its own ID token verifier (its own JOSE and crypto
//! code, not Tessera's, nor aws-lc-rs).
//!
//! One deliberate difference: `openidconnect`'s `discover_async` requires an
//! `authorization_endpoint`, and Tessera, a token-exchange issuer with no authorization
//! endpoint (like GitHub Actions' and Kubernetes' issuers, which clouds trust the same way),
//! publishes none. The test shows that refusal, then reads `issuer` and `jwks_uri` from the
//! same document and goes on with the crate's own JWKS fetch and verifier.

use std::io;

use chrono::{DateTime, Utc};

use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreProviderMetadata};
use openidconnect::http::{HeaderValue, Response};
use openidconnect::{
    ClientId, DiscoveryError, HttpRequest, HttpResponse, IssuerUrl, JsonWebKeySetUrl, Nonce,
};
use serde_json::Value;
use tessera_adapters::Clock as _;
use tessera_tests::{BrokerOptions, TestIssuer, TestKey, spawn_broker};

use crate::{RULES, oidc_source};

/// The HTTP client lent to `openidconnect`: the tree's reqwest, redirects off, as the
/// crate's own documentation asks of a client used for discovery.
async fn send(client: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, io::Error> {
    let (parts, body) = request.into_parts();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).map_err(io::Error::other)?;
    let mut outgoing = client.request(method, parts.uri.to_string()).body(body);
    for (name, value) in &parts.headers {
        outgoing = outgoing.header(name.as_str(), value.as_bytes());
    }
    let answer = outgoing.send().await.map_err(io::Error::other)?;
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        response = response
            .header(name.as_str(), HeaderValue::from_bytes(value.as_bytes()).map_err(io::Error::other)?);
    }
    let body = answer.bytes().await.map_err(io::Error::other)?.to_vec();
    response.body(body).map_err(io::Error::other)
}

const TARGETS: &str = "- name: es-api\n  type: jwt\n  audience: https://es-api.example\n  algorithm: ES256\n  max_ttl: 1h\n  default_ttl: 15m\n- name: rs-api\n  type: jwt\n  audience: https://rs-api.example\n  algorithm: RS256\n  max_ttl: 1h\n  default_ttl: 15m\n";

#[tokio::test(flavor = "multi_thread")]
async fn openidconnect_verifies_tessera_issued_tokens() {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    let rules = RULES.replace("target: internal-api", "target: es-api")
        + "  - name: services-call-rs-api\n    match: { source: corp, subject: \"svc-*\" }\n    grant: { target: rs-api }\n";
    let broker =
        spawn_broker(BrokerOptions::new(&oidc_source(&issuer), TARGETS).mapping("r.yaml", &rules)).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let http = |request: HttpRequest| send(client.clone(), request);
    let issuer_url = IssuerUrl::new(broker.url.clone()).unwrap();

    // The full discovery refuses the document for its missing authorization endpoint, and
    // for nothing else.
    match CoreProviderMetadata::discover_async(issuer_url.clone(), &http).await {
        Err(DiscoveryError::Parse(e)) => {
            assert!(e.to_string().contains("authorization_endpoint"), "{e}");
        }
        other => panic!("discovery was expected to want an authorization endpoint: {other:?}"),
    }
    let (status, document) = broker.get_json("/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
    assert!(document.get("authorization_endpoint").is_none());
    let mut with_endpoint = document.clone();
    with_endpoint["authorization_endpoint"] = Value::String(format!("{}/authorize", broker.url));
    let metadata: CoreProviderMetadata =
        serde_json::from_value(with_endpoint).expect("the rest is valid metadata");
    assert_eq!(metadata.issuer(), &issuer_url);

    let jwks_url = JsonWebKeySetUrl::new(document["jwks_uri"].as_str().unwrap().to_string()).unwrap();
    assert_eq!(jwks_url.url(), metadata.jwks_uri().url());
    let jwks = CoreJsonWebKeySet::fetch_async(&jwks_url, &http).await.expect("openidconnect reads the JWKS");
    let algs = metadata.id_token_signing_alg_values_supported().clone();

    let now = broker.clock.now();
    let subject_token = issuer.key(0).sign(&issuer.claims("svc-a", "tessera", now));
    for (target, audience) in [("es-api", "https://es-api.example"), ("rs-api", "https://rs-api.example")] {
        let (status, body) = broker.exchange(&subject_token, target).await;
        assert_eq!(status, 200, "{body}");
        let issued: CoreIdToken = body["access_token"].as_str().unwrap().parse().expect("a compact JWS");
        let clock = broker.clock.clone();
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(audience.into()),
            issuer_url.clone(),
            jwks.clone(),
        )
        .set_allowed_algs(algs.clone())
        .set_time_fn(move || chrono_from(clock.now()));
        // Tessera's tokens carry no nonce: the exchange has no authorization request.
        let claims = issued.claims(&verifier, |nonce: Option<&Nonce>| match nonce {
            None => Ok(()),
            Some(_) => Err("unexpected nonce".to_string()),
        });
        let claims =
            claims.unwrap_or_else(|e| panic!("{target}: openidconnect refused Tessera's token: {e}"));
        assert_eq!(claims.issuer(), &issuer_url);
        assert_eq!(claims.subject().as_str(), "oidc://corp/svc-a");
        assert!(claims.audiences().iter().any(|a| a.as_str() == audience));

        // Its verifier refuses the same token for another audience, and once expired.
        let other = CoreIdTokenVerifier::new_public_client(
            ClientId::new("https://elsewhere.example".into()),
            issuer_url.clone(),
            jwks.clone(),
        )
        .set_allowed_algs(algs.clone());
        assert!(issued.claims(&other, |_: Option<&Nonce>| Ok(())).is_err(), "{target}: another audience");
        let later = now + 3 * 3600;
        let expired = CoreIdTokenVerifier::new_public_client(
            ClientId::new(audience.into()),
            issuer_url.clone(),
            jwks.clone(),
        )
        .set_allowed_algs(algs.clone())
        .set_time_fn(move || chrono_from(later));
        assert!(issued.claims(&expired, |_: Option<&Nonce>| Ok(())).is_err(), "{target}: expired");
    }
    broker.stop().await;
}

fn chrono_from(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).expect("a time in range")
}
