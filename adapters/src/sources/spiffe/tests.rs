use std::time::Duration;

use serde_json::{Value, json};

use super::{KIND, SpiffeSourceConfig};
use crate::jwt::testkit::{NOW, SourceFixture, TestKey, TestServer, merged, subject_jwt};
use crate::secret::Secret;
use crate::source::{SourceError, SubjectToken, SubjectTokenType};

const ID: &str = "spiffe://example.org/ns/payments/sa/api";

fn entry(extra: Value) -> Value {
    merged(
        json!({
            "type": "spiffe",
            "name": "spire",
            "trust_domains": ["example.org"],
            "audiences": ["tessera"],
            "jwks_file": "jwks.json",
        }),
        &extra,
    )
}

/// A JWT-SVID as SPIRE mints it (no `iss` unless `jwt_issuer` is set).
fn svid(extra: Value) -> Value {
    merged(json!({ "sub": ID, "aud": ["tessera"], "iat": NOW, "exp": NOW + 300 }), &extra)
}

/// A SPIFFE bundle (Trust Domain and Bundle §4): a JWT-SVID key, an X.509-SVID entry and
/// the sequence and refresh hint members.
fn bundle(jwt_key: &TestKey, x509_key: &TestKey) -> String {
    let mut jwt = jwt_key.jwk();
    jwt["use"] = json!("jwt-svid");
    let mut x509 = x509_key.jwk();
    x509["use"] = json!("x509-svid");
    x509.as_object_mut().unwrap().remove("kid");
    x509["x5c"] = json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]);
    json!({ "keys": [jwt, x509], "spiffe_sequence": 12, "spiffe_refresh_hint": 300 }).to_string()
}

fn fixture() -> SourceFixture<SpiffeSourceConfig> {
    SourceFixture::new(KIND, TestKey::p256("spire-1"), "ES256", entry).with_header(json!({ "typ": "JWT" }))
}

#[test]
fn config_checks() {
    let f = fixture();
    assert_eq!(f.field(json!({ "trust_domains": [] })), Some("trust_domains"));
    for bad in ["Example.org", "example.org:443", "spiffe://example.org/x", ""] {
        assert_eq!(f.field(json!({ "trust_domains": [bad] })), Some("trust_domains"), "{bad}");
    }
    assert!(f.build(json!({ "trust_domains": ["spiffe://example.org"] })).is_ok());
    assert_eq!(f.field(json!({ "jwks_file": null })), Some("bundle_endpoint"));
    assert_eq!(
        f.field(json!({ "bundle_endpoint": "https://spire.example.org/bundle" })),
        Some("bundle_endpoint")
    );
    assert_eq!(
        f.field(
            json!({ "jwks_file": null, "bundle_endpoint": "https://x.example/b", "bundle_file": "b.json" })
        ),
        Some("bundle_file")
    );
    assert_eq!(
        f.field(json!({ "jwks_file": null, "bundle_endpoint": "http://spire.example.org/b" })),
        Some("bundle_endpoint")
    );
    assert_eq!(f.field(json!({ "jwks_file": null, "bundle_file": "missing.json" })), Some("bundle_file"));
    assert_eq!(f.field(json!({ "algorithms": ["ES256", "EdDSA"] })), Some("algorithms"));
    assert_eq!(f.field(json!({ "audiences": [] })), Some("audiences"));
    assert_eq!(f.field(json!({ "issuer": "" })), Some("issuer"));
}

#[tokio::test]
async fn jwt_svid_maps_to_the_identity_and_routes_by_type() {
    let f = fixture();
    let source = f.source(json!({ "attributes": { "workload": "claims.sub" } }));
    assert_eq!(source.kind(), "spiffe");
    assert!(source.issuers().is_empty(), "no issuer: routed by token type");
    assert!(source.accepts(SubjectTokenType::Jwt));
    assert!(!source.accepts(SubjectTokenType::IdToken));
    let id = f.verify(&source, &svid(json!({}))).await.unwrap();
    assert_eq!(id.id, ID);
    f.assert_id_shape(json!({}), &id);
    assert_eq!(id.subject, ID);
    assert_eq!(id.issuer, "spiffe://example.org");
    assert_eq!(id.tenant.as_deref(), Some("example.org"));
    assert_eq!(id.name.as_deref(), Some("/ns/payments/sa/api"));
    assert_eq!(id.namespace, None);
    let attrs: Vec<(&str, &str)> = id.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        attrs,
        vec![
            ("spiffe.path", "/ns/payments/sa/api"),
            ("spiffe.trust_domain", "example.org"),
            ("workload", ID)
        ]
    );
    let as_id_token = SubjectToken {
        token_type: SubjectTokenType::IdToken,
        value: Secret::new(f.key.token("ES256", &svid(json!({})))),
    };
    assert!(matches!(source.verify(&as_id_token).await, Err(SourceError::UnsupportedTokenType)));

    // With an issuer configured, tokens must carry exactly it.
    let with_iss = f.source(json!({ "issuer": "https://spire.example.org" }));
    assert_eq!(with_iss.issuers(), vec!["https://spire.example.org".to_string()]);
    let id = f.verify(&with_iss, &svid(json!({ "iss": "https://spire.example.org" }))).await.unwrap();
    assert_eq!(id.issuer, "https://spire.example.org");
    assert!(matches!(f.verify(&with_iss, &svid(json!({}))).await, Err(SourceError::MissingClaim("iss"))));
    // Without one, a token naming an issuer is refused.
    let named = svid(json!({ "iss": "https://elsewhere.example" }));
    assert!(matches!(f.verify(&source, &named).await, Err(SourceError::IssuerMismatch)));
}

#[tokio::test]
async fn the_subject_must_be_a_spiffe_id_of_an_allowed_trust_domain() {
    let f = fixture();
    let source = f.source(json!({}));
    for bad in [
        "api",
        "https://example.org/api",
        "spiffe://example.org",
        "spiffe://example.org/a/../b",
        "spiffe://EXAMPLE.org/a",
    ] {
        let err = f.verify(&source, &svid(json!({ "sub": bad }))).await.unwrap_err();
        assert!(matches!(err, SourceError::InvalidClaim("sub")), "{bad}: {err:?}");
    }
    let foreign = svid(json!({ "sub": "spiffe://evil.example/ns/payments/sa/api" }));
    assert!(matches!(f.verify(&source, &foreign).await, Err(SourceError::Policy(_))));
    // A prefix of an allowed domain is another domain.
    let longer = svid(json!({ "sub": "spiffe://example.org.evil/x" }));
    assert!(matches!(f.verify(&source, &longer).await, Err(SourceError::Policy(_))));
    assert!(matches!(
        f.verify(&source, &svid(json!({ "aud": null }))).await,
        Err(SourceError::MissingClaim("aud"))
    ));
    assert!(matches!(
        f.verify(&source, &svid(json!({ "exp": null }))).await,
        Err(SourceError::MissingClaim("exp"))
    ));
}

#[tokio::test]
async fn only_the_headers_jwt_svid_allows() {
    let f = fixture();
    let source = f.source(json!({}));
    assert!(f.verify_with(&source, &json!({}), &svid(json!({}))).await.is_ok());
    assert!(f.verify_with(&source, &json!({ "typ": "JOSE" }), &svid(json!({}))).await.is_ok());
    let err = f.verify_with(&source, &json!({ "typ": "at+jwt" }), &svid(json!({}))).await.unwrap_err();
    assert!(matches!(err, SourceError::Malformed(_)), "{err:?}");
    for extra in [json!({ "cty": "json" }), json!({ "x-private": 1 }), json!({ "b64": true })] {
        let err = f.verify_with(&source, &extra, &svid(json!({}))).await.unwrap_err();
        assert!(matches!(err, SourceError::ForbiddenHeader(_)), "{extra}: {err:?}");
    }
}

#[tokio::test]
async fn bundle_files_verify_with_their_jwt_svid_keys_only() {
    let f = fixture();
    let x509 = TestKey::p256("x509");
    f.dir.write("bundle.json", &bundle(&f.key, &x509));
    let source = f.source(json!({ "jwks_file": null, "bundle_file": "bundle.json" }));
    assert!(f.verify(&source, &svid(json!({}))).await.is_ok());
    // A key published with `use: sig` in a bundle does not verify JWT-SVIDs.
    let sig_key = TestKey::p256("plain");
    let mut sig = sig_key.jwk();
    sig["use"] = json!("sig");
    let mut jwt = f.key.jwk();
    jwt["use"] = json!("jwt-svid");
    f.dir.write("mixed.json", &json!({ "keys": [jwt, sig] }).to_string());
    let mixed = f.source(json!({ "jwks_file": null, "bundle_file": "mixed.json" }));
    let token = sig_key.token("ES256", &svid(json!({})));
    assert!(mixed.verify(&subject_jwt(token)).await.is_err());
    // A bundle with no JWT-SVID key does not load.
    f.dir.write("x509-only.json", &json!({ "keys": [sig_key.jwk()] }).to_string());
    assert_eq!(f.field(json!({ "jwks_file": null, "bundle_file": "x509-only.json" })), Some("bundle_file"));
}

#[tokio::test]
async fn bundle_endpoints_are_fetched() {
    let f = fixture();
    let server = TestServer::start().await;
    server.set("/bundle", 200, bundle(&f.key, &TestKey::p256("x509")));
    let source = f.source(
        json!({ "jwks_file": null, "bundle_endpoint": server.url("/bundle"), "insecure_http": true }),
    );
    // Waits for the background fetch however late a loaded machine runs it; only one
    // that never comes fails, after a minute.
    for _ in 0..3000 {
        if source.ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(f.verify(&source, &svid(json!({}))).await.is_ok());
    let hits = server.hits("/bundle");
    assert!(hits >= 1);
    // A token naming an issuer, under a kid the bundle lacks: refused before the unknown
    // kid could cause a refetch.
    let stranger = TestKey::p256("stranger").token("ES256", &svid(json!({ "iss": "https://evil.example" })));
    assert!(matches!(source.verify(&subject_jwt(stranger)).await, Err(SourceError::IssuerMismatch)));
    assert_eq!(server.hits("/bundle"), hits);
    // Without the issuer the same unknown kid does refetch (once).
    let unknown = TestKey::p256("stranger").token("ES256", &svid(json!({})));
    assert!(matches!(source.verify(&subject_jwt(unknown)).await, Err(SourceError::UnknownKey)));
    assert_eq!(server.hits("/bundle"), hits + 1);
}

/// A bundle holding `key` alone, for JWT-SVIDs.
fn jwt_bundle(key: &TestKey) -> String {
    let mut jwk = key.jwk();
    jwk["use"] = json!("jwt-svid");
    json!({ "keys": [jwk] }).to_string()
}

const PARTNER: &str = "spiffe://partner.example/ns/billing/sa/api";

/// `example.org` bound to the fixture's key, `partner.example` to `partner`'s.
fn two_domains(f: &SourceFixture<SpiffeSourceConfig>, partner: &TestKey) -> Value {
    f.dir.write("example.org.json", &jwt_bundle(&f.key));
    f.dir.write("partner.example.json", &jwt_bundle(partner));
    json!({
        "jwks_file": null,
        "trust_domains": {
            "example.org": { "bundle_file": "example.org.json" },
            "spiffe://partner.example": { "bundle_file": "partner.example.json" },
        },
    })
}

#[tokio::test]
async fn each_trust_domain_is_verified_by_its_own_bundle_only() {
    let f = fixture();
    let partner = TestKey::p256("partner-1");
    let source = f.source(two_domains(&f, &partner));
    assert!(source.ready());
    assert!(source.issuers().is_empty(), "no issuer: routed by token type");

    let id = f.verify(&source, &svid(json!({}))).await.unwrap();
    assert_eq!((id.id.as_str(), id.tenant.as_deref()), (ID, Some("example.org")));
    assert_eq!(id.issuer, "spiffe://example.org");
    let token = partner.token_with("ES256", &json!({ "typ": "JWT" }), &svid(json!({ "sub": PARTNER })));
    let id = source.verify(&subject_jwt(token)).await.unwrap();
    let id = id.identity();
    assert_eq!((id.id.as_str(), id.tenant.as_deref()), (PARTNER, Some("partner.example")));
    assert_eq!(id.source, "spire");

    // example.org's key, for a workload of partner.example: partner.example's bundle
    // has no such key.
    let across = f.verify(&source, &svid(json!({ "sub": PARTNER }))).await.unwrap_err();
    assert!(matches!(across, SourceError::UnknownKey), "{across:?}");
    // Naming partner.example's key does not help: the signature is not its.
    let borrowed =
        f.key.token_with("ES256", &json!({ "kid": "partner-1" }), &svid(json!({ "sub": PARTNER })));
    let err = source.verify(&subject_jwt(borrowed)).await.unwrap_err();
    assert!(matches!(err, SourceError::BadSignature), "{err:?}");
    // Nor the other way round.
    let back = partner.token_with("ES256", &json!({ "kid": f.key.kid }), &svid(json!({})));
    let err = source.verify(&subject_jwt(back)).await.unwrap_err();
    assert!(matches!(err, SourceError::BadSignature), "{err:?}");

    // A domain with no bundle here is refused before any key is looked at.
    let foreign = f.verify(&source, &svid(json!({ "sub": "spiffe://evil.example/x" }))).await.unwrap_err();
    assert!(matches!(foreign, SourceError::Policy(_)), "{foreign:?}");
    let err = f.verify(&source, &svid(json!({ "sub": "api" }))).await.unwrap_err();
    assert!(matches!(err, SourceError::InvalidClaim("sub")), "{err:?}");
    let err = f.verify(&source, &svid(json!({ "sub": null }))).await.unwrap_err();
    assert!(matches!(err, SourceError::MissingClaim("sub")), "{err:?}");
    let err = f.verify(&source, &svid(json!({ "sub": ["spiffe://example.org/x"] }))).await.unwrap_err();
    assert!(matches!(err, SourceError::InvalidClaim("sub")), "{err:?}");
}

#[test]
fn a_list_of_several_trust_domains_is_refused_with_the_map_to_write() {
    let f = fixture();
    let err = f.build(json!({ "trust_domains": ["example.org", "spiffe://partner.example"] })).unwrap_err();
    assert_eq!(err.field, Some("trust_domains"));
    assert!(err.message.starts_with("2 trust domains listed with one key set"), "{err}");
    assert!(
        err.message.ends_with(
            "\n  trust_domains:\n    example.org: { jwks_file: jwks.json }\n    partner.example: { bundle_endpoint: <partner.example's bundle endpoint> }"
        ),
        "{err}"
    );
    // One listed domain keeps its meaning.
    assert!(f.build(json!({ "trust_domains": ["example.org"] })).is_ok());
}

#[test]
fn map_form_config_checks() {
    let f = fixture();
    let partner = TestKey::p256("partner-1");
    assert!(f.build(two_domains(&f, &partner)).is_ok());
    let map = |domains: Value| json!({ "jwks_file": null, "trust_domains": domains });
    let message = |extra: Value| {
        let err = f.build(extra).unwrap_err();
        assert_eq!(err.field, Some("trust_domains"), "{err}");
        err.message
    };
    assert_eq!(message(map(json!({}))), "name at least one trust domain to trust");
    let beside = json!({ "trust_domains": { "example.org": { "bundle_file": "example.org.json" } } });
    assert!(message(beside).contains("not beside it"));
    assert_eq!(
        message(map(json!({ "example.org": {} }))),
        "trust domain `example.org`: name where the trust bundle is: bundle_endpoint, bundle_file, jwks_uri or jwks_file"
    );
    let two = json!({ "example.org": { "bundle_file": "example.org.json", "jwks_file": "jwks.json" } });
    assert!(message(map(two)).starts_with("trust domain `example.org`: name one key location"));
    assert!(
        message(map(json!({ "Example.org": { "jwks_file": "jwks.json" } }))).contains("not a trust domain")
    );
    let twice = json!({ "example.org": { "jwks_file": "jwks.json" }, "spiffe://example.org": { "jwks_file": "jwks.json" } });
    assert!(message(map(twice)).contains("name the same trust domain"));
    let missing = message(map(json!({ "example.org": { "bundle_file": "missing.json" } })));
    assert!(missing.starts_with("trust domain `example.org`: "), "{missing}");
    let insecure =
        message(map(json!({ "example.org": { "bundle_endpoint": "http://spire.example.org/b" } })));
    assert!(insecure.starts_with("trust domain `example.org`: "), "{insecure}");
    // A bundle entry takes only the four location keys.
    let unknown =
        f.config(map(json!({ "example.org": { "bundle_url": "https://x.example/b" } }))).unwrap_err();
    assert!(unknown.to_string().contains("bundle_url"), "{unknown}");
}

#[tokio::test]
async fn checks_that_need_no_key_come_before_the_subject_picks_one() {
    let f = fixture();
    let partner = TestKey::p256("partner-1");
    let source = f.source(two_domains(&f, &partner));
    // Routed here by type, a token naming an issuer is refused for that, whatever its sub.
    let named = svid(json!({ "iss": "https://gitlab.evil.example", "sub": "project_path:evil/x" }));
    assert!(matches!(f.verify(&source, &named).await, Err(SourceError::IssuerMismatch)));
    let header = json!({ "typ": "JWT", "x-private": 1 });
    let err = f.verify_with(&source, &header, &svid(json!({ "sub": "api" }))).await.unwrap_err();
    assert!(matches!(err, SourceError::ForbiddenHeader(_)), "{err:?}");
}
