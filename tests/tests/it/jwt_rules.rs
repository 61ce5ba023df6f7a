//! Every JWT rule of DESIGN.md, each refused with the fixed RFC 8693 body and audited with
//! its own reason code.

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_tests::keys::{hs256, jws};
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

use crate::{JWT_TARGET, RULES, invalid_token_body, last_reason, oidc_source, standard};

/// Exchange `token`, expect the fixed refusal, and return the audited reason code.
async fn refused(broker: &TestBroker, token: &str) -> String {
    let (status, body) = broker.exchange(token, "internal-api").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body, invalid_token_body());
    last_reason(broker)
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

#[tokio::test(flavor = "multi_thread")]
async fn time_claims_are_enforced_with_bounded_leeway() {
    let (issuer, broker) = standard().await;
    let now = broker.clock.now();
    let rsa = issuer.key(0);
    let base = issuer.claims("svc-a", "tessera", now);
    let issued_earlier = with(with(base.clone(), "iat", json!(now - 200)), "nbf", json!(now - 200));

    // Leeway is 30 s: 20 s past exp still passes, 40 s does not.
    let (status, _) = broker
        .exchange(&rsa.sign(&with(issued_earlier.clone(), "exp", json!(now - 20))), "internal-api")
        .await;
    assert_eq!(status, 200);
    let r = refused(&broker, &rsa.sign(&with(issued_earlier.clone(), "exp", json!(now - 40)))).await;
    assert_eq!(r, "TS-SRC-EXPIRED");
    let r = refused(&broker, &rsa.sign(&with(base.clone(), "nbf", json!(now + 120)))).await;
    assert_eq!(r, "TS-SRC-NOT-YET-VALID");
    let r = refused(&broker, &rsa.sign(&with(base.clone(), "iat", json!(now + 120)))).await;
    assert_eq!(r, "TS-SRC-IAT-FUTURE");
    // max_token_lifetime is 1h.
    let long = with(base.clone(), "exp", json!(now + 7200));
    assert_eq!(refused(&broker, &rsa.sign(&long)).await, "TS-SRC-LIFETIME");
    assert_eq!(refused(&broker, &rsa.sign(&without(base.clone(), "exp"))).await, "TS-SRC-MISSING-CLAIM");
    let string_exp = with(base.clone(), "exp", json!((now + 60).to_string()));
    assert_eq!(refused(&broker, &rsa.sign(&string_exp)).await, "TS-SRC-INVALID-CLAIM");
    let float_exp = with(base.clone(), "exp", json!((now + 60) as f64 + 0.5));
    assert_eq!(refused(&broker, &rsa.sign(&float_exp)).await, "TS-SRC-INVALID-CLAIM");

    // Time moves with the injected clock: a valid token expires without any sleep.
    let fresh = rsa.sign(&base);
    assert_eq!(broker.exchange(&fresh, "internal-api").await.0, 200);
    broker.clock.advance(300 + 31);
    assert_eq!(refused(&broker, &fresh).await, "TS-SRC-EXPIRED");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issuer_and_audience_must_match_exactly() {
    let (issuer, broker) = standard().await;
    let now = broker.clock.now();
    let rsa = issuer.key(0);
    let base = issuer.claims("svc-a", "tessera", now);

    let slash = with(base.clone(), "iss", json!(format!("{}/", issuer.url())));
    assert_eq!(refused(&broker, &rsa.sign(&slash)).await, "TS-SRC-UNTRUSTED-ISSUER");
    let other = with(base.clone(), "iss", json!("https://evil.example"));
    assert_eq!(refused(&broker, &rsa.sign(&other)).await, "TS-SRC-UNTRUSTED-ISSUER");
    let wrong_aud = with(base.clone(), "aud", json!("someone-else"));
    assert_eq!(refused(&broker, &rsa.sign(&wrong_aud)).await, "TS-SRC-AUDIENCE");
    let no_aud = without(base.clone(), "aud");
    assert_eq!(refused(&broker, &rsa.sign(&no_aud)).await, "TS-SRC-MISSING-CLAIM");
    let bad_aud = with(base.clone(), "aud", json!(42));
    assert_eq!(refused(&broker, &rsa.sign(&bad_aud)).await, "TS-SRC-INVALID-CLAIM");
    // An array containing a configured audience is fine.
    let array_aud = with(base.clone(), "aud", json!(["other", "tessera"]));
    assert_eq!(broker.exchange(&rsa.sign(&array_aud), "internal-api").await.0, 200);
    // Untrusted issuers are refused before any fetch from them could happen.
    assert_eq!(issuer.other_requests(), 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_confused_signatures_are_refused() {
    let (issuer, broker) = standard().await;
    let now = broker.clock.now();
    let rsa = issuer.key(0);
    let ec = issuer.key(1);
    let claims = issuer.claims("svc-a", "tessera", now);

    // alg none, unsigned.
    let none = jws(&json!({"alg": "none", "typ": "JWT"}), &claims, b"");
    assert_eq!(refused(&broker, &none).await, "TS-SRC-ALG");
    // HS256 keyed with the issuer's public key (algorithm confusion).
    let hs = hs256(&json!({"alg": "HS256", "kid": "rsa-1"}), &claims, rsa.public_pem().as_bytes());
    assert_eq!(refused(&broker, &hs).await, "TS-SRC-ALG");
    // An RSA signature relabelled as ES256 under the RSA key's kid: key type must fit alg.
    let relabelled = rsa.sign_with_header(&json!({"alg": "ES256", "kid": "rsa-1"}), &claims);
    assert_eq!(refused(&broker, &relabelled).await, "TS-SRC-ALG");
    // ES256 with r = s = 0.
    let zero = jws(&json!({"alg": "ES256", "kid": "ec-1"}), &claims, &[0u8; 64]);
    assert_eq!(refused(&broker, &zero).await, "TS-SRC-SIGNATURE");
    // One flipped bit in a valid signature.
    let good = ec.sign(&claims);
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut sig = base64_decode(sig);
    sig[5] ^= 0x01;
    let flipped = format!("{input}.{}", base64_encode(&sig));
    assert_eq!(refused(&broker, &flipped).await, "TS-SRC-SIGNATURE");
    // The untouched token still works: the refusals above were about the forgeries.
    assert_eq!(broker.exchange(&good, "internal-api").await.0, 200);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_carrying_headers_nested_tokens_and_duplicate_claims_are_refused() {
    let (issuer, broker) = standard().await;
    let now = broker.clock.now();
    let rsa = issuer.key(0);
    let claims = issuer.claims("svc-a", "tessera", now);
    let attacker = TestKey::rsa("attacker");

    for (header, value) in [
        ("jku", json!(format!("{}/attacker-jwks", issuer.url()))),
        ("x5u", json!(format!("{}/attacker-cert", issuer.url()))),
        ("jwk", attacker.jwk()),
        ("x5c", json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"])),
    ] {
        let mut h = json!({"alg": "RS256", "kid": "rsa-1"});
        h[header] = value;
        let token = attacker.sign_with_header(&h, &claims);
        assert_eq!(refused(&broker, &token).await, "TS-SRC-FORBIDDEN-HEADER", "{header}");
    }
    assert_eq!(issuer.other_requests(), 0, "no jku/x5u was ever fetched");

    let nested = rsa.sign_with_header(&json!({"alg": "RS256", "kid": "rsa-1", "cty": "JWT"}), &claims);
    assert_eq!(refused(&broker, &nested).await, "TS-SRC-NESTED");
    let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d";
    assert_eq!(refused(&broker, jwe).await, "TS-SRC-NESTED", "JWE is refused as a nested token");

    let dup = format!(
        r#"{{"iss":"{iss}","sub":"svc-a","sub":"svc-admin","aud":"tessera","iat":{now},"exp":{exp}}}"#,
        iss = issuer.url(),
        exp = now + 300
    );
    let header = json!({"alg": "RS256", "kid": "rsa-1"}).to_string();
    let token = rsa.sign_raw(header.as_bytes(), dup.as_bytes());
    assert_eq!(refused(&broker, &token).await, "TS-SRC-MALFORMED");
    assert_eq!(refused(&broker, "not-a-jwt").await, "TS-SRC-MALFORMED");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_kid_refetches_once_then_is_throttled() {
    let (issuer, broker) = standard().await;
    let now = broker.clock.now();
    let claims = issuer.claims("svc-a", "tessera", now);
    assert_eq!(broker.exchange(&issuer.key(0).sign(&claims), "internal-api").await.0, 200);
    let fetches = issuer.jwks_fetches();

    // A kid the issuer does not publish: one refetch, then refused.
    let stranger = TestKey::rsa("stranger");
    assert_eq!(refused(&broker, &stranger.sign(&claims)).await, "TS-SRC-UNKNOWN-KID");
    assert_eq!(issuer.jwks_fetches(), fetches + 1);
    // Again within 30 s: no further fetch.
    assert_eq!(refused(&broker, &stranger.sign(&claims)).await, "TS-SRC-UNKNOWN-KID");
    assert_eq!(issuer.jwks_fetches(), fetches + 1);

    // The issuer rotates in a new key: after the 30 s window its first token triggers the
    // refetch that finds it.
    let rotated = issuer.add_key(TestKey::ec("ec-2"));
    broker.clock.advance(31);
    let claims = issuer.claims("svc-a", "tessera", broker.clock.now());
    assert_eq!(broker.exchange(&rotated.sign(&claims), "internal-api").await.0, 200);
    assert_eq!(issuer.jwks_fetches(), fetches + 2);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_keys_serve_while_the_issuer_is_down_and_a_cold_cache_is_503() {
    let (issuer, broker) = standard().await;
    let now = broker.clock.now();
    let claims = issuer.claims("svc-a", "tessera", now);
    assert_eq!(broker.exchange(&issuer.key(0).sign(&claims), "internal-api").await.0, 200);
    issuer.set_down(true);
    assert_eq!(broker.exchange(&issuer.key(1).sign(&claims), "internal-api").await.0, 200);
    broker.stop().await;

    // A broker that never fetched the key set cannot verify: retryable 503.
    let cold_issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1")]);
    cold_issuer.set_down(true);
    let cold =
        spawn_broker(BrokerOptions::new(&oidc_source(&cold_issuer), JWT_TARGET).mapping("r.yaml", RULES))
            .await;
    let token = cold_issuer.key(0).sign(&cold_issuer.claims("svc-a", "tessera", cold.clock.now()));
    let (status, headers, body) = cold.exchange_with_headers(&token, "internal-api").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(last_reason(&cold), "TS-SRC-UPSTREAM");
    assert_eq!(cold.audit_events().last().unwrap()["decision"], "error");

    // Once the issuer is back, the same token goes through.
    cold_issuer.set_down(false);
    cold.clock.advance(31);
    assert_eq!(cold.exchange(&token, "internal-api").await.0, 200);
    cold.stop().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
