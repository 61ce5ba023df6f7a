use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::config::kind_config;
use crate::jwt::testkit::{NOW, SourceFixture, TestKey, TestServer, jwks, merged, subject_jwt};
use crate::secret::Secret;
use crate::source::{SourceError, SubjectToken, SubjectTokenType};

const ISS: &str = "https://idp.example.com";

fn entry(extra: Value) -> Value {
    merged(
        json!({
            "type": "oidc",
            "name": "corp-idp",
            "issuer": ISS,
            "audiences": ["tessera"],
            "jwks_file": "jwks.json",
        }),
        &extra,
    )
}

/// Tokens signed by `key` with `alg`, verified against a JWKS holding it alone.
fn fixture(key: TestKey, alg: &'static str) -> SourceFixture<OidcSourceConfig> {
    SourceFixture::new(KIND, key, alg, entry)
}

fn claims(extra: Value) -> Value {
    merged(
        json!({ "iss": ISS, "sub": "svc-42", "aud": "tessera", "iat": NOW, "exp": NOW + 600, "jti": "j1" }),
        &extra,
    )
}

#[test]
fn config_defaults_are_the_documented_ones() {
    let c: OidcSourceConfig = serde_json::from_value(json!({
        "name": "corp-idp",
        "issuer": ISS,
        "audiences": ["tessera"],
    }))
    .unwrap();
    // Kind-specific defaults are applied at build: the config holds `None`.
    assert_eq!(c.jwt.algorithms, None);
    assert_eq!(c.jwt.max_token_lifetime, None);
    assert_eq!(c.jwt.leeway, Duration::from_secs(30));
    assert!(!c.jwt.insecure_http);
    assert_eq!(c.jwt.jwks_refresh_interval, Duration::from_secs(300));
    assert_eq!(c.jwt.jwks_max_stale, Duration::from_secs(24 * 3600));
    assert!(c.jwt.attributes.is_empty());
    assert_eq!(c.subject_claim, "sub");
    assert_eq!(c.tenant_claim, None);
    assert_eq!(c.jwt.jwks_uri, None);
}

#[tokio::test]
async fn kind_defaults_apply_at_build() {
    let f = fixture(TestKey::rsa("r"), "RS256");
    let (rsa, ed) = (&f.key, TestKey::ed25519("e"));
    f.dir.write("jwks.json", &jwks(&[rsa.jwk(), ed.jwk()]));
    let source = f.source(json!({}));
    // Default algorithms are RS256 and ES256: EdDSA is refused.
    assert!(source.verify(&subject_jwt(rsa.token("RS256", &claims(json!({}))))).await.is_ok());
    assert!(matches!(
        source.verify(&subject_jwt(ed.token("EdDSA", &claims(json!({}))))).await,
        Err(SourceError::DisallowedAlgorithm)
    ));
    // Default max_token_lifetime is 24h.
    let day = claims(json!({ "exp": NOW + 24 * 3600 }));
    assert!(source.verify(&subject_jwt(rsa.token("RS256", &day))).await.is_ok());
    let longer = claims(json!({ "exp": NOW + 24 * 3600 + 1 }));
    assert!(matches!(
        source.verify(&subject_jwt(rsa.token("RS256", &longer))).await,
        Err(SourceError::LifetimeTooLong)
    ));
}

#[tokio::test]
async fn mapped_attributes_are_added() {
    let f = fixture(TestKey::p256("k1"), "ES256");
    let key = &f.key;
    let source = f.build(json!({ "attributes": { "team": "claims.labels.team", "env": "claims.environment", "absent": "claims.nope" } }))
    .unwrap();
    let token =
        key.token("ES256", &claims(json!({ "labels": { "team": "payments" }, "environment": "prod" })));
    let id = source.verify(&subject_jwt(token)).await.unwrap().shared();
    assert_eq!(id.attributes.get("team").map(String::as_str), Some("payments"));
    assert_eq!(id.attributes.get("env").map(String::as_str), Some("prod"));
    assert!(!id.attributes.contains_key("absent"));
    // The provider's own flattened attributes are still there.
    assert_eq!(id.attributes.get("oidc.labels.team").map(String::as_str), Some("payments"));
    let err = f.build(json!({ "attributes": { "Team": "claims.x" } })).unwrap_err();
    assert_eq!(err.field, Some("attributes"));
    let err = f.build(json!({ "attributes": { "team": "labels.team" } })).unwrap_err();
    assert_eq!(err.field, Some("attributes"));
}

#[test]
fn config_refuses_unknown_keys_and_unacceptable_algorithms() {
    let parse = |extra: Value| {
        let entry = merged(json!({ "type": "oidc", "name": "x", "issuer": ISS, "audiences": ["a"] }), &extra);
        kind_config::<OidcSourceConfig>(KIND, entry).map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(parse(json!({})).is_ok());
    assert!(
        parse(
            json!({ "algorithms": ["ES256", "EdDSA", "PS256"], "leeway": "1m", "max_token_lifetime": 3600 })
        )
        .is_ok()
    );
    assert!(parse(json!({ "audience": ["a"] })).unwrap_err().contains("unknown field"));
    for bad in ["none", "HS256", "HS512", "RSA-OAEP"] {
        assert!(parse(json!({ "algorithms": ["RS256", bad] })).is_err(), "{bad}");
    }
    assert!(parse(json!({ "leeway": "soon" })).is_err());
}

#[test]
fn build_errors_name_the_field() {
    let f = fixture(TestKey::p256("a"), "ES256");
    let field = |extra: Value| f.field(extra);
    assert_eq!(field(json!({ "name": "Corp IdP" })), Some("name"));
    assert_eq!(field(json!({ "audiences": [] })), Some("audiences"));
    assert_eq!(field(json!({ "algorithms": [] })), Some("algorithms"));
    assert_eq!(field(json!({ "leeway": "61s" })), Some("leeway"));
    assert_eq!(field(json!({ "max_token_lifetime": 0 })), Some("max_token_lifetime"));
    assert_eq!(field(json!({ "subject_claim": "" })), Some("subject_claim"));
    assert_eq!(field(json!({ "tenant_claim": "" })), Some("tenant_claim"));
    assert_eq!(field(json!({ "jwks_uri": "https://idp.example.com/jwks" })), Some("jwks_file"));
    assert_eq!(field(json!({ "jwks_file": "missing.json" })), Some("jwks_file"));
    assert_eq!(
        field(json!({ "jwks_file": null, "jwks_uri": "http://idp.example.com/jwks" })),
        Some("jwks_uri")
    );
    assert_eq!(field(json!({ "jwks_file": null, "jwks_uri": "http://127.0.0.1:9/jwks" })), Some("jwks_uri"));
    assert_eq!(field(json!({ "jwks_file": null, "issuer": "http://idp.example.com" })), Some("issuer"));
    assert_eq!(
        field(json!({ "jwks_file": null, "insecure_http": true, "issuer": "http://idp.example.com" })),
        Some("issuer")
    );
    assert_eq!(
        field(json!({ "jwks_refresh_interval": "10m", "jwks_max_stale": "5m", "jwks_file": null })),
        Some("jwks_max_stale")
    );
    // Loopback http with insecure_http builds.
    assert!(
        f.build(json!({ "jwks_file": null, "insecure_http": true, "jwks_uri": "http://127.0.0.1:9/jwks" }))
            .is_ok()
    );
}

#[tokio::test]
async fn verifies_and_maps_the_identity() {
    let f = fixture(TestKey::rsa("k1"), "RS256");
    let key = &f.key;
    let source = f
        .build(json!({
            "tenant_claim": "org",
            "namespace_claim": "k8s.ns",
            "name_claim": "svc",
            "instance_claim": "run",
        }))
        .unwrap();
    assert_eq!(source.kind(), "oidc");
    assert_eq!(source.name(), "corp-idp");
    assert_eq!(source.issuers(), vec![ISS.to_string()]);
    assert!(source.accepts(SubjectTokenType::Jwt));
    assert!(source.accepts(SubjectTokenType::IdToken));
    assert!(!source.accepts(SubjectTokenType::AwsSignedRequest));
    assert!(source.ready());

    let token = key.token(
        "RS256",
        &claims(json!({
            "org": "acme",
            "k8s": { "ns": "payments", "pod": "api-1" },
            "svc": "api",
            "run": 1234,
            "email": "svc@example.com",
            "groups": ["a", "b"],
        })),
    );
    let verified = source.verify(&subject_jwt(token.clone())).await.unwrap();
    let id = verified.identity();
    assert_eq!(id.id, "oidc://corp-idp/svc-42");
    f.assert_id_shape(json!({}), id);
    assert_eq!(id.provider, "oidc");
    assert_eq!(id.source, "corp-idp");
    assert_eq!(id.issuer, ISS);
    assert_eq!(id.subject, "svc-42");
    assert_eq!(id.tenant.as_deref(), Some("acme"));
    assert_eq!(id.namespace.as_deref(), Some("payments"));
    assert_eq!(id.name.as_deref(), Some("api"));
    assert_eq!(id.instance.as_deref(), Some("1234"));
    assert_eq!(id.region, None);
    assert_eq!(id.expires_at, NOW + 600);
    let attrs: Vec<(&str, &str)> = id.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        attrs,
        vec![
            ("oidc.email", "svc@example.com"),
            ("oidc.groups", r#"["a","b"]"#),
            ("oidc.k8s.ns", "payments"),
            ("oidc.k8s.pod", "api-1"),
            ("oidc.org", "acme"),
            ("oidc.run", "1234"),
            ("oidc.svc", "api"),
        ]
    );

    // The same token as an ID token.
    let as_id_token =
        SubjectToken { token_type: SubjectTokenType::IdToken, value: Secret::new(token.clone()) };
    assert!(source.verify(&as_id_token).await.is_ok());
    let aws = SubjectToken { token_type: SubjectTokenType::AwsSignedRequest, value: Secret::new(token) };
    assert!(matches!(source.verify(&aws).await, Err(SourceError::UnsupportedTokenType)));
}

#[tokio::test]
async fn optional_fields_stay_empty_when_claims_are_absent_or_not_scalars() {
    let f = fixture(TestKey::p256("k1"), "ES256");
    let key = &f.key;
    let source = f.build(json!({ "tenant_claim": "org", "name_claim": "obj" })).unwrap();
    let token = key.token("ES256", &claims(json!({ "obj": { "a": 1 } })));
    let id = source.verify(&subject_jwt(token)).await.unwrap().shared();
    assert_eq!(id.tenant, None);
    assert_eq!(id.name, None);
    assert_eq!(id.attributes.get("oidc.obj.a").map(String::as_str), Some("1"));
}

#[tokio::test]
async fn subject_rules() {
    let f = fixture(TestKey::p256("k1"), "ES256");
    let key = &f.key;
    let source = f.build(json!({})).unwrap();
    let verify = |c: Value| {
        let source = Arc::clone(&source);
        let t = key.token("ES256", &c);
        async move { source.verify(&subject_jwt(t)).await }
    };
    assert!(matches!(verify(claims(json!({ "sub": null }))).await, Err(SourceError::MissingClaim("sub"))));
    assert!(matches!(verify(claims(json!({ "sub": 42 }))).await, Err(SourceError::InvalidClaim("sub"))));
    assert!(matches!(verify(claims(json!({ "sub": "" }))).await, Err(SourceError::InvalidClaim("sub"))));

    let custom = f.build(json!({ "subject_claim": "oid" })).unwrap();
    let t = key.token("ES256", &claims(json!({ "oid": "0000-1111" })));
    let id = custom.verify(&subject_jwt(t)).await.unwrap().shared();
    assert_eq!(id.subject, "0000-1111");
    assert_eq!(id.id, "oidc://corp-idp/0000-1111");
    // `sub` is still a registered claim, never an attribute; the subject claim is kept.
    assert!(!id.attributes.contains_key("oidc.sub"));
    assert_eq!(id.attributes.get("oidc.oid").map(String::as_str), Some("0000-1111"));
    let t = key.token("ES256", &claims(json!({})));
    assert!(matches!(custom.verify(&subject_jwt(t)).await, Err(SourceError::MissingClaim("subject"))));
}

#[tokio::test]
async fn shared_rules_apply() {
    let f = fixture(TestKey::p256("k1"), "ES256");
    let (key, clock) = (&f.key, &f.clock);
    let source = f.build(json!({ "audiences": ["tessera", "other"] })).unwrap();
    let verify = |t: String| {
        let source = Arc::clone(&source);
        async move { source.verify(&subject_jwt(t)).await.map(|v| v.shared()) }
    };
    assert!(verify(key.token("ES256", &claims(json!({ "aud": ["other"] })))).await.is_ok());
    let expired = key.token("ES256", &claims(json!({ "iat": NOW - 700, "exp": NOW - 100 })));
    assert!(matches!(verify(expired).await, Err(SourceError::Expired)));
    let wrong_iss = key.token("ES256", &claims(json!({ "iss": format!("{ISS}/") })));
    assert!(matches!(verify(wrong_iss).await, Err(SourceError::IssuerMismatch)));
    let wrong_aud = key.token("ES256", &claims(json!({ "aud": "elsewhere" })));
    assert!(matches!(verify(wrong_aud).await, Err(SourceError::AudienceMismatch)));
    let eddsa = TestKey::ed25519("k1");
    assert!(matches!(
        verify(eddsa.token("EdDSA", &claims(json!({})))).await,
        Err(SourceError::DisallowedAlgorithm)
    ));
    let unknown = TestKey::p256("k2");
    assert!(matches!(verify(unknown.token("ES256", &claims(json!({})))).await, Err(SourceError::UnknownKey)));
    // Time moves with the injected clock.
    clock.advance(600 + 31);
    assert!(matches!(verify(key.token("ES256", &claims(json!({})))).await, Err(SourceError::Expired)));
}

#[tokio::test]
async fn eddsa_when_configured() {
    let f = fixture(TestKey::ed25519("ed"), "EdDSA");
    let key = &f.key;
    let source = f.build(json!({ "algorithms": ["EdDSA"] })).unwrap();
    assert!(source.verify(&subject_jwt(key.token("EdDSA", &claims(json!({}))))).await.is_ok());
}

#[tokio::test]
async fn discovery_source_becomes_ready_after_its_first_fetch() {
    let server = TestServer::start().await;
    let f = fixture(TestKey::p256("k1"), "ES256");
    let key = &f.key;
    let issuer = server.base();
    server.set(
        "/.well-known/openid-configuration",
        200,
        json!({ "issuer": issuer, "jwks_uri": server.url("/jwks") }).to_string(),
    );
    server.set("/jwks", 200, jwks(&[key.jwk()]));
    let source = f.build(json!({ "issuer": issuer, "jwks_file": null, "insecure_http": true })).unwrap();
    // Waits for the background fetch however late a loaded machine runs it; only one
    // that never comes fails, after a minute.
    for _ in 0..3000 {
        if source.ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(source.ready());
    let t = key.token("ES256", &claims(json!({ "iss": issuer })));
    let id = source.verify(&subject_jwt(t)).await.unwrap().shared();
    assert_eq!(id.issuer, issuer);
    assert_eq!(server.hits("/jwks"), 1);
}

#[tokio::test]
async fn a_down_issuer_with_no_keys_is_retryable() {
    let server = TestServer::start().await;
    server.set("/jwks", 503, "");
    let f = fixture(TestKey::p256("k1"), "ES256");
    let source = f
        .build(json!({ "jwks_file": null, "insecure_http": true, "jwks_uri": server.url("/jwks") }))
        .unwrap();
    let err = source.verify(&subject_jwt(f.key.token("ES256", &claims(json!({}))))).await.unwrap_err();
    assert!(matches!(err, SourceError::Upstream { retryable: true, .. }), "{err:?}");
    assert!(!source.ready());
}

/// The verified-token cache (`jwt::token_cache`), seen through a built source: the same
/// token presented again is served from the cache (the very identity made the first time)
/// only while it has not expired and its key is still published.
mod token_cache {
    use super::*;
    use crate::build::BuildSource as _;
    use crate::jwt::testkit::context;

    async fn present(
        source: &Arc<dyn crate::source::IdentitySource>,
        token: &str,
    ) -> Result<crate::source::VerifiedIdentity, SourceError> {
        source.verify(&subject_jwt(token.to_owned())).await
    }

    #[tokio::test]
    async fn a_cached_token_serves_until_its_exp_and_is_refused_once_expired() {
        let f = fixture(TestKey::rsa("r"), "RS256");
        let source = f.source(json!({}));
        let token = f.token(&claims(json!({ "exp": NOW + 600 })));
        let first = present(&source, &token).await.unwrap();
        let again = present(&source, &token).await.unwrap();
        assert!(Arc::ptr_eq(&first.shared(), &again.shared()), "the second presentation is a cache hit");

        // At `exp` the entry no longer serves: the token is verified afresh (within the
        // leeway, it still passes), and past the leeway it is refused as expired.
        f.clock.set(NOW + 600);
        let at_exp = present(&source, &token).await.unwrap();
        assert!(!Arc::ptr_eq(&first.shared(), &at_exp.shared()), "verified afresh at exp");
        f.clock.set(NOW + 600 + 31);
        assert!(matches!(present(&source, &token).await, Err(SourceError::Expired)));
    }

    #[tokio::test]
    async fn a_cached_token_whose_key_left_the_key_set_is_refused_after_rotation() {
        let server = TestServer::start().await;
        let (a, b) = (TestKey::p256("a"), TestKey::p256("b"));
        server.set("/jwks", 200, jwks(&[a.jwk()]));
        let f = fixture(TestKey::p256("unused"), "ES256");
        let source =
            f.source(json!({ "jwks_file": null, "insecure_http": true, "jwks_uri": server.url("/jwks") }));
        let token_a = a.token("ES256", &claims(json!({})));
        let first = present(&source, &token_a).await.unwrap();
        assert!(Arc::ptr_eq(&first.shared(), &present(&source, &token_a).await.unwrap().shared()));

        // The issuer rotates `a` out; a token naming `b` makes the broker refetch the set.
        server.set("/jwks", 200, jwks(&[b.jwk()]));
        present(&source, &b.token("ES256", &claims(json!({})))).await.unwrap();
        assert_eq!(server.hits("/jwks"), 2);
        assert!(matches!(present(&source, &token_a).await, Err(SourceError::UnknownKey)));
    }

    #[tokio::test]
    async fn a_cached_token_whose_kid_names_another_key_now_is_refused() {
        let server = TestServer::start().await;
        let (a, a_other, b) = (TestKey::rsa("a"), TestKey::rsa_other("a"), TestKey::p256("b"));
        server.set("/jwks", 200, jwks(&[a.jwk()]));
        let f = fixture(TestKey::p256("unused"), "ES256");
        let source =
            f.source(json!({ "jwks_file": null, "insecure_http": true, "jwks_uri": server.url("/jwks") }));
        let token_a = a.token("RS256", &claims(json!({})));
        present(&source, &token_a).await.unwrap();

        // Same kid, other key material: the entry must not vouch for the token any more.
        server.set("/jwks", 200, jwks(&[a_other.jwk(), b.jwk()]));
        present(&source, &b.token("ES256", &claims(json!({})))).await.unwrap();
        assert!(matches!(present(&source, &token_a).await, Err(SourceError::BadSignature)));
    }

    #[tokio::test]
    async fn a_source_built_from_a_changed_config_starts_with_no_cached_tokens() {
        let f = fixture(TestKey::rsa("r"), "RS256");
        let token = f.token(&claims(json!({})));
        let before = f.source(json!({}));
        present(&before, &token).await.unwrap();
        let changed = f.source(json!({ "audiences": ["someone-else"] }));
        assert!(matches!(present(&changed, &token).await, Err(SourceError::AudienceMismatch)));
        // The old source, still running until replaced, keeps its own entries.
        present(&before, &token).await.unwrap();
    }

    #[tokio::test]
    async fn with_the_cache_off_every_presentation_is_verified() {
        let f = fixture(TestKey::rsa("r"), "RS256");
        let mut cx = context(Arc::clone(&f.clock), f.dir.0.clone());
        cx.token_cache.enabled = false;
        let source = f.config(json!({})).unwrap().build(&cx).unwrap();
        let token = f.token(&claims(json!({})));
        let first = present(&source, &token).await.unwrap();
        let again = present(&source, &token).await.unwrap();
        assert!(!Arc::ptr_eq(&first.shared(), &again.shared()));
        assert_eq!(first.identity().id, again.identity().id);
    }
}
