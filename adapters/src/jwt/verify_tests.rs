use std::time::Duration;

use aws_lc_rs::hmac;
use serde_json::{Value, json};

use super::*;
use crate::jwt::MAX_TOKEN_BYTES;
use crate::jwt::keys::KeySet;
use crate::jwt::policy::{DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME};
use crate::jwt::policy::{HeaderRule, IssuerRule};
use crate::jwt::testkit::{TestKey, b64, jwks, sign_raw};

const NOW: i64 = 1_700_000_000;
const ISS: &str = "https://idp.example.com";

fn policy(algs: &[Algorithm]) -> JwtPolicy {
    JwtPolicy::new(ISS, vec!["tessera".into()], algs.to_vec(), DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME).unwrap()
}

fn claims() -> Value {
    json!({ "iss": ISS, "sub": "svc-42", "aud": "tessera", "iat": NOW - 10, "exp": NOW + 600 })
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

struct Fixture {
    rsa: TestKey,
    ec: TestKey,
    ec384: TestKey,
    ed: TestKey,
    keys: KeySet,
}

fn fixture() -> Fixture {
    let rsa = TestKey::rsa("rsa");
    let ec = TestKey::p256("ec");
    let ec384 = TestKey::p384("ec384");
    let ed = TestKey::ed25519("ed");
    let keys =
        KeySet::from_json(jwks(&[rsa.jwk(), ec.jwk(), ec384.jwk(), ed.jwk()]).as_bytes(), &Algorithm::ALL)
            .unwrap();
    Fixture { rsa, ec, ec384, ed, keys }
}

fn check(f: &Fixture, token: &str) -> Result<VerifiedClaims, SourceError> {
    verify_with_keys(token, &policy(&Algorithm::ALL), &f.keys, NOW)
}

/// Assert the error variant by its code, with the debug text on failure.
#[track_caller]
fn assert_err(result: Result<VerifiedClaims, SourceError>, expected: SourceError) {
    match result {
        Ok(c) => panic!("expected {expected:?}, got Ok({c:?})"),
        Err(e) => assert_eq!(format!("{e:?}"), format!("{expected:?}")),
    }
}

#[test]
fn accepts_every_supported_algorithm() {
    let f = fixture();
    for (key, alg) in [
        (&f.rsa, "RS256"),
        (&f.rsa, "RS384"),
        (&f.rsa, "RS512"),
        (&f.rsa, "PS256"),
        (&f.rsa, "PS384"),
        (&f.rsa, "PS512"),
        (&f.ec, "ES256"),
        (&f.ec384, "ES384"),
        (&f.ed, "EdDSA"),
    ] {
        let verified = check(&f, &key.token(alg, &claims())).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.algorithm().as_str(), alg);
        assert_eq!(verified.kid(), Some(key.kid.as_str()));
        assert_eq!(verified.issuer(), Some(ISS));
        assert_eq!(verified.audiences(), ["tessera"]);
        assert_eq!(verified.expires_at(), NOW + 600);
        assert_eq!(verified.issued_at(), Some(NOW - 10));
        assert_eq!(verified.get("sub"), Some(&json!("svc-42")));
    }
}

#[test]
fn algorithm_must_be_pinned() {
    let f = fixture();
    let default = policy(&Algorithm::DEFAULT);
    assert!(verify_with_keys(&f.rsa.token("RS256", &claims()), &default, &f.keys, NOW).is_ok());
    assert!(verify_with_keys(&f.ec.token("ES256", &claims()), &default, &f.keys, NOW).is_ok());
    for (key, alg) in [(&f.ed, "EdDSA"), (&f.rsa, "PS256"), (&f.ec384, "ES384")] {
        assert_err(
            verify_with_keys(&key.token(alg, &claims()), &default, &f.keys, NOW),
            SourceError::DisallowedAlgorithm,
        );
    }
}

#[test]
fn none_and_hmac_are_refused_whatever_the_policy() {
    let f = fixture();
    let payload = claims().to_string();
    let unsigned = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(payload.as_bytes()));
    assert_err(check(&f, &unsigned), SourceError::DisallowedAlgorithm);
    let unsigned = sign_raw(r#"{"alg":"none","kid":"rsa"}"#, &payload, |_| b"x".to_vec());
    assert_err(check(&f, &unsigned), SourceError::DisallowedAlgorithm);
    // The classic confusion: HMAC keyed with the issuer's public key.
    let rsa_jwk = f.rsa.jwk().to_string();
    for secret in [rsa_jwk.as_bytes(), &f.rsa.rsa_modulus()] {
        let forged = sign_raw(r#"{"alg":"HS256","kid":"rsa"}"#, &payload, |input| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input).as_ref().to_vec()
        });
        assert_err(check(&f, &forged), SourceError::DisallowedAlgorithm);
    }
    for alg in ["HS384", "HS512", "rs256", "RSA-OAEP", ""] {
        let t = sign_raw(&json!({"alg": alg, "kid": "rsa"}).to_string(), &payload, |_| b"x".to_vec());
        assert_err(check(&f, &t), SourceError::DisallowedAlgorithm);
    }
}

#[test]
fn signature_is_checked_before_any_claim() {
    let f = fixture();
    let good = f.rsa.token("RS256", &claims());
    // Flip one bit in the signature's last full byte.
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut raw = super::decode::b64(sig, "").unwrap();
    raw[10] ^= 0x01;
    assert_err(check(&f, &format!("{input}.{}", b64(&raw))), SourceError::BadSignature);
    // Change the payload under a valid signature: even an expired-looking payload gives
    // BadSignature, so no claim is read before the signature holds.
    let (header, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let other = b64(with(claims(), json!({"exp": 1})).to_string().as_bytes());
    assert_err(check(&f, &format!("{header}.{other}.{sig}")), SourceError::BadSignature);
    // Signed by a different key under the same kid.
    let imposter = TestKey::rsa_other("rsa");
    assert_err(check(&f, &imposter.token("RS256", &claims())), SourceError::BadSignature);
    let imposter = TestKey::p256("ec");
    assert_err(check(&f, &imposter.token("ES256", &claims())), SourceError::BadSignature);
}

#[test]
fn es256_zero_and_misshapen_signatures_fail() {
    let f = fixture();
    let header = r#"{"alg":"ES256","kid":"ec"}"#;
    let payload = claims().to_string();
    for sig in [vec![0u8; 64], vec![1u8; 64], vec![0u8; 63], vec![0u8; 65]] {
        let t = sign_raw(header, &payload, |_| sig.clone());
        assert_err(check(&f, &t), SourceError::BadSignature);
    }
    // r valid, s zero.
    let good = f.ec.token("ES256", &claims());
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut raw = super::decode::b64(sig, "").unwrap();
    raw[32..].fill(0);
    assert_err(check(&f, &format!("{input}.{}", b64(&raw))), SourceError::BadSignature);
}

#[test]
fn relabelled_algorithm_fails() {
    let f = fixture();
    // RS256 signature presented as PS256: same key type, different padding.
    let rs = f.rsa.token("RS256", &claims());
    let (_, rest) = rs.split_once('.').unwrap();
    let relabelled = format!("{}.{rest}", b64(br#"{"alg":"PS256","kid":"rsa"}"#));
    assert_err(check(&f, &relabelled), SourceError::BadSignature);
    // RS256 presented as RS512.
    let relabelled = format!("{}.{rest}", b64(br#"{"alg":"RS512","kid":"rsa"}"#));
    assert_err(check(&f, &relabelled), SourceError::BadSignature);
    // ES256 signature presented as RS256 with the EC key's kid: the key type does not fit.
    let es = f.ec.token("ES256", &claims());
    let (_, rest) = es.split_once('.').unwrap();
    let relabelled = format!("{}.{rest}", b64(br#"{"alg":"RS256","kid":"ec"}"#));
    assert_err(check(&f, &relabelled), SourceError::DisallowedAlgorithm);
}

#[test]
fn key_type_must_fit_the_algorithm() {
    let f = fixture();
    // Header names a key whose type cannot verify this alg.
    for (kid, alg) in [
        ("ec", "RS256"),
        ("rsa", "ES256"),
        ("ec", "ES384"),
        ("ec384", "ES256"),
        ("ed", "ES256"),
        ("rsa", "EdDSA"),
    ] {
        let t =
            sign_raw(&json!({"alg": alg, "kid": kid}).to_string(), &claims().to_string(), |_| vec![1; 64]);
        assert_err(check(&f, &t), SourceError::DisallowedAlgorithm);
    }
}

#[test]
fn a_jwk_alg_must_equal_the_header_alg() {
    let rsa = TestKey::rsa("rsa");
    let mut jwk = rsa.jwk();
    jwk["alg"] = "RS384".into();
    let keys = KeySet::from_json(jwks(&[jwk]).as_bytes(), &Algorithm::ALL).unwrap();
    let p = policy(&Algorithm::ALL);
    assert!(verify_with_keys(&rsa.token("RS384", &claims()), &p, &keys, NOW).is_ok());
    assert_err(
        verify_with_keys(&rsa.token("RS256", &claims()), &p, &keys, NOW),
        SourceError::DisallowedAlgorithm,
    );
}

#[test]
fn kid_selects_the_key_and_no_kid_needs_a_single_candidate() {
    let f = fixture();
    let unknown = TestKey::p256("nope");
    assert_err(check(&f, &unknown.token("ES256", &claims())), SourceError::UnknownKey);
    let no_kid = |key: &TestKey, alg: &str| {
        sign_raw(&json!({"alg": alg}).to_string(), &claims().to_string(), |i| key.sign(alg, i))
    };
    // One ES256 key in the set: fine without a kid.
    assert!(check(&f, &no_kid(&f.ec, "ES256")).is_ok());
    // Two ES256 keys: a token without kid is refused even though the signature is good.
    let other = TestKey::p256("ec2");
    let two = KeySet::from_json(jwks(&[f.ec.jwk(), other.jwk()]).as_bytes(), &Algorithm::ALL).unwrap();
    assert_err(
        verify_with_keys(&no_kid(&f.ec, "ES256"), &policy(&Algorithm::ALL), &two, NOW),
        SourceError::UnknownKey,
    );
    let t = sign_raw(r#"{"alg":"ES256","kid":7}"#, &claims().to_string(), |i| f.ec.sign("ES256", i));
    assert!(matches!(check(&f, &t), Err(SourceError::Malformed(_))));
}

#[test]
fn key_bearing_and_critical_headers_are_refused() {
    let f = fixture();
    let c = claims();
    for name in ["jku", "x5u", "jwk", "x5c"] {
        let t = f.ec.token_with("ES256", &json!({ name: "https://attacker.example/k" }), &c);
        assert_err(
            check(&f, &t),
            SourceError::ForbiddenHeader(match name {
                "jku" => "jku",
                "x5u" => "x5u",
                "jwk" => "jwk",
                _ => "x5c",
            }),
        );
    }
    // A token carrying its own key, signed by that key, is still refused.
    let attacker = TestKey::p256("ec");
    let t = attacker.token_with("ES256", &json!({ "jwk": attacker.jwk() }), &c);
    assert_err(check(&f, &t), SourceError::ForbiddenHeader("jwk"));
    let t = f.ec.token_with("ES256", &json!({ "crit": ["exp"], "exp": 1 }), &c);
    assert_err(check(&f, &t), SourceError::ForbiddenHeader("crit"));
    // RFC 7797's `b64` outside `crit`, whatever its value (found by the jsonwebtoken oracle:
    // `b64: false` was accepted, and a verifier honouring it reads another signing input).
    for b64 in [json!(false), json!(true), json!("no")] {
        let t = f.ec.token_with("ES256", &json!({ "b64": b64 }), &c);
        assert_err(check(&f, &t), SourceError::ForbiddenHeader("b64"));
    }
}

#[test]
fn nested_and_encrypted_tokens_are_refused() {
    let f = fixture();
    for cty in ["JWT", "jwt", "application/jwt", "Application/JWT"] {
        let t = f.ec.token_with("ES256", &json!({ "cty": cty }), &claims());
        assert_err(check(&f, &t), SourceError::NestedToken);
    }
    let t = f.ec.token_with("ES256", &json!({ "cty": "json" }), &claims());
    assert!(check(&f, &t).is_ok());
    assert_err(check(&f, "a.b.c.d.e"), SourceError::NestedToken);
    let t = f.ec.token_with("ES256", &json!({ "enc": "A256GCM" }), &claims());
    assert_err(check(&f, &t), SourceError::NestedToken);
}

#[test]
fn shape_rules() {
    let f = fixture();
    let good = f.ec.token("ES256", &claims());
    assert!(check(&f, &good).is_ok());
    let big = f.ec.token("ES256", &with(claims(), json!({ "pad": "x".repeat(MAX_TOKEN_BYTES) })));
    assert!(matches!(check(&f, &big), Err(SourceError::Malformed(_))));
    assert!(matches!(check(&f, &format!("{good}=")), Err(SourceError::Malformed(_))));
    let (h, rest) = good.split_once('.').unwrap();
    assert!(matches!(check(&f, &format!("{h}=.{rest}")), Err(SourceError::Malformed(_))));
    assert!(matches!(check(&f, &format!("{good}.x")), Err(SourceError::Malformed(_))));
    let (input, _) = good.rsplit_once('.').unwrap();
    assert!(matches!(check(&f, &format!("{input}.")), Err(SourceError::Malformed(_))));
    // Header and payload must be JSON objects.
    let t = sign_raw(r#"["ES256"]"#, &claims().to_string(), |i| f.ec.sign("ES256", i));
    assert!(matches!(check(&f, &t), Err(SourceError::Malformed(_))));
    let t = sign_raw(r#"{"alg":"ES256","kid":"ec"}"#, "[1,2]", |i| f.ec.sign("ES256", i));
    assert!(matches!(check(&f, &t), Err(SourceError::Malformed(_))));
}

#[test]
fn duplicate_members_are_refused_in_header_and_payload() {
    let f = fixture();
    let sign = |h: &str, p: &str| sign_raw(h, p, |i| f.ec.sign("ES256", i));
    let base = format!(r#""iss":"{ISS}","aud":"tessera","exp":{}"#, NOW + 60);
    // Duplicate `sub`, signed: the second value must not silently win.
    let t = sign(r#"{"alg":"ES256","kid":"ec"}"#, &format!(r#"{{{base},"sub":"a","sub":"admin"}}"#));
    assert_err(check(&f, &t), SourceError::Malformed("payload has a duplicate member"));
    let t = sign(r#"{"alg":"ES256","kid":"ec"}"#, &format!(r#"{{{base},"x":{{"a":1,"a":2}}}}"#));
    assert_err(check(&f, &t), SourceError::Malformed("payload has a duplicate member"));
    let t = sign(r#"{"alg":"ES256","kid":"ec","alg":"ES256"}"#, &format!("{{{base}}}"));
    assert_err(check(&f, &t), SourceError::Malformed("header has a duplicate member"));
    let t = sign(r#"{"alg":"ES256","kid":"ec"}"#, &format!("{{{base}}}"));
    assert!(check(&f, &t).is_ok());
}

#[test]
fn issuer_must_match_exactly() {
    let f = fixture();
    for iss in [
        "https://idp.example.com/",
        "https://IDP.example.com",
        "http://idp.example.com",
        "https://evil.example",
    ] {
        let t = f.ec.token("ES256", &with(claims(), json!({ "iss": iss })));
        assert_err(check(&f, &t), SourceError::IssuerMismatch);
    }
    let t = f.ec.token("ES256", &with(claims(), json!({ "iss": null })));
    assert_err(check(&f, &t), SourceError::MissingClaim("iss"));
    let t = f.ec.token("ES256", &with(claims(), json!({ "iss": [ISS] })));
    assert_err(check(&f, &t), SourceError::InvalidClaim("iss"));
}

#[test]
fn time_claims_must_be_integers() {
    let f = fixture();
    let t = f.ec.token("ES256", &with(claims(), json!({ "exp": null })));
    assert_err(check(&f, &t), SourceError::MissingClaim("exp"));
    for bad in [
        json!((NOW + 600).to_string()),
        json!((NOW + 600) as f64 + 0.5),
        json!(true),
        json!(1e10),
        json!([NOW + 600]),
        json!(u64::MAX),
    ] {
        let t = f.ec.token("ES256", &with(claims(), json!({ "exp": bad })));
        assert_err(check(&f, &t), SourceError::InvalidClaim("exp"));
    }
    let t = f.ec.token("ES256", &with(claims(), json!({ "nbf": (NOW - 5).to_string() })));
    assert_err(check(&f, &t), SourceError::InvalidClaim("nbf"));
    let t = f.ec.token("ES256", &with(claims(), json!({ "iat": (NOW - 5) as f64 + 0.25 })));
    assert_err(check(&f, &t), SourceError::InvalidClaim("iat"));
    // A whole number written as a float is still not an integer.
    let payload = format!(r#"{{"iss":"{ISS}","aud":"tessera","exp":{}.0}}"#, NOW + 60);
    let t = sign_raw(r#"{"alg":"ES256","kid":"ec"}"#, &payload, |i| f.ec.sign("ES256", i));
    assert_err(check(&f, &t), SourceError::InvalidClaim("exp"));
    // No date before the epoch (found by the jsonwebtoken oracle: `nbf: -1` was accepted).
    for name in ["nbf", "iat"] {
        let t = f.ec.token("ES256", &with(claims(), json!({ name: -1 })));
        assert_err(check(&f, &t), SourceError::InvalidClaim(if name == "nbf" { "nbf" } else { "iat" }));
    }
    let t = f.ec.token("ES256", &with(claims(), json!({ "nbf": 0 })));
    assert!(check(&f, &t).is_ok());
}

#[test]
fn times_honour_the_leeway() {
    let f = fixture();
    let at = |changes: Value| check(&f, &f.ec.token("ES256", &with(claims(), changes)));
    // exp: valid up to now + leeway.
    assert!(at(json!({ "exp": NOW - 30, "iat": NOW - 100 })).is_ok());
    assert_err(at(json!({ "exp": NOW - 31, "iat": NOW - 100 })), SourceError::Expired);
    // nbf and iat: at most leeway in the future.
    assert!(at(json!({ "nbf": NOW + 30 })).is_ok());
    assert_err(at(json!({ "nbf": NOW + 31 })), SourceError::NotYetValid);
    assert!(at(json!({ "iat": NOW + 30 })).is_ok());
    assert_err(at(json!({ "iat": NOW + 31 })), SourceError::IssuedInFuture);
    // exp before iat makes no sense.
    assert_err(at(json!({ "iat": NOW, "exp": NOW - 1 })), SourceError::InvalidClaim("exp"));
}

#[test]
fn lifetime_is_capped() {
    let f = fixture();
    let max = DEFAULT_MAX_LIFETIME.as_secs() as i64;
    let at = |changes: Value| check(&f, &f.ec.token("ES256", &with(claims(), changes)));
    assert!(at(json!({ "iat": NOW, "exp": NOW + max })).is_ok());
    assert_err(at(json!({ "iat": NOW, "exp": NOW + max + 1 })), SourceError::LifetimeTooLong);
    // Without iat, nbf is the start; without either, now is.
    assert_err(
        at(json!({ "iat": null, "nbf": NOW - 10, "exp": NOW + max - 9 })),
        SourceError::LifetimeTooLong,
    );
    assert!(at(json!({ "iat": null, "nbf": NOW - 10, "exp": NOW + max - 10 })).is_ok());
    assert_err(at(json!({ "iat": null, "exp": NOW + max + 1 })), SourceError::LifetimeTooLong);
    assert!(at(json!({ "iat": null, "exp": NOW + max })).is_ok());
    // A shorter maximum applies.
    let short = JwtPolicy::new(
        ISS,
        vec!["tessera".into()],
        Algorithm::ALL.to_vec(),
        DEFAULT_LEEWAY,
        Duration::from_secs(300),
    )
    .unwrap();
    let t = f.ec.token("ES256", &claims());
    assert_err(verify_with_keys(&t, &short, &f.keys, NOW), SourceError::LifetimeTooLong);
}

#[test]
fn audience_rules() {
    let f = fixture();
    let at = |aud: Value| check(&f, &f.ec.token("ES256", &with(claims(), json!({ "aud": aud }))));
    assert!(at(json!("tessera")).is_ok());
    assert!(at(json!(["other", "tessera"])).is_ok());
    assert_err(at(json!("other")), SourceError::AudienceMismatch);
    assert_err(at(json!(["other"])), SourceError::AudienceMismatch);
    assert_err(at(json!([])), SourceError::AudienceMismatch);
    assert_err(at(json!("Tessera")), SourceError::AudienceMismatch);
    assert_err(at(json!(5)), SourceError::InvalidClaim("aud"));
    assert_err(at(json!(["tessera", 5])), SourceError::InvalidClaim("aud"));
    assert_err(at(json!({ "a": "tessera" })), SourceError::InvalidClaim("aud"));
    let t = f.ec.token("ES256", &with(claims(), json!({ "aud": null })));
    assert_err(check(&f, &t), SourceError::MissingClaim("aud"));
}

#[test]
fn lookup_walks_dotted_paths() {
    let claims = json!({
        "a.b": 1,
        "k8s": { "ns": "payments", "pod": { "name": "api" } },
        "kubernetes.io": { "namespace": "prod" },
    });
    let map = claims.as_object().unwrap();
    assert_eq!(lookup(map, "a.b"), Some(&json!(1)));
    assert_eq!(lookup(map, "k8s.ns"), Some(&json!("payments")));
    assert_eq!(lookup(map, "k8s.pod.name"), Some(&json!("api")));
    assert_eq!(lookup(map, "kubernetes.io.namespace"), Some(&json!("prod")));
    assert_eq!(lookup(map, "k8s.missing"), None);
    assert_eq!(lookup(map, "k8s.ns.deeper"), None);
    assert_eq!(lookup(map, ""), None);
    assert_eq!(lookup(map, "."), None);
}

fn ruled(issuer: IssuerRule, headers: HeaderRule) -> JwtPolicy {
    JwtPolicy::with_rules(
        issuer,
        headers,
        vec!["tessera".into()],
        Algorithm::ALL.to_vec(),
        DEFAULT_LEEWAY,
        DEFAULT_MAX_LIFETIME,
    )
    .unwrap()
}

#[test]
fn an_issuer_rule_may_name_several_issuers_or_require_none() {
    let f = fixture();
    let two = ruled(IssuerRule::OneOf(vec![ISS.into(), "accounts.example".into()]), HeaderRule::Open);
    for iss in [ISS, "accounts.example"] {
        let token = f.ec.token("ES256", &with(claims(), json!({ "iss": iss })));
        assert_eq!(verify_with_keys(&token, &two, &f.keys, NOW).unwrap().issuer(), Some(iss));
    }
    let other = f.ec.token("ES256", &with(claims(), json!({ "iss": "https://other.example" })));
    assert_err(verify_with_keys(&other, &two, &f.keys, NOW), SourceError::IssuerMismatch);

    let absent = ruled(IssuerRule::Absent, HeaderRule::Open);
    let none = f.ec.token("ES256", &with(claims(), json!({ "iss": null })));
    assert_eq!(verify_with_keys(&none, &absent, &f.keys, NOW).unwrap().issuer(), None);
    let named = f.ec.token("ES256", &claims());
    assert_err(verify_with_keys(&named, &absent, &f.keys, NOW), SourceError::IssuerMismatch);
    let typed = f.ec.token("ES256", &with(claims(), json!({ "iss": 7 })));
    assert_err(verify_with_keys(&typed, &absent, &f.keys, NOW), SourceError::IssuerMismatch);
}

#[test]
fn the_jwt_svid_header_rule_allows_alg_kid_typ_only() {
    let f = fixture();
    let svid = ruled(IssuerRule::OneOf(vec![ISS.into()]), HeaderRule::JwtSvid);
    let open = ruled(IssuerRule::OneOf(vec![ISS.into()]), HeaderRule::Open);
    let token = |extra: Value| f.ec.token_with("ES256", &extra, &claims());
    for ok in [json!({}), json!({ "typ": "JWT" }), json!({ "typ": "JOSE" })] {
        assert!(verify_with_keys(&token(ok.clone()), &svid, &f.keys, NOW).is_ok(), "{ok}");
    }
    for (extra, expected) in [
        (json!({ "typ": "jwt" }), SourceError::Malformed("header `typ` is not JWT or JOSE (JWT-SVID)")),
        (json!({ "typ": 1 }), SourceError::Malformed("header `typ` is not JWT or JOSE (JWT-SVID)")),
        (json!({ "cty": "json" }), SourceError::ForbiddenHeader("other than alg, kid, typ (JWT-SVID)")),
        (json!({ "x": 1 }), SourceError::ForbiddenHeader("other than alg, kid, typ (JWT-SVID)")),
    ] {
        assert_err(verify_with_keys(&token(extra.clone()), &svid, &f.keys, NOW), expected);
        // The same headers pass an open policy: the restriction is the rule's.
        assert!(verify_with_keys(&token(extra.clone()), &open, &f.keys, NOW).is_ok(), "{extra}");
    }
    // Key-bearing headers keep their own, earlier refusal.
    assert_err(
        verify_with_keys(&token(json!({ "jku": "https://x" })), &svid, &f.keys, NOW),
        SourceError::ForbiddenHeader("jku"),
    );
}

#[test]
fn the_typ_header_rule_requires_that_media_type() {
    let f = fixture();
    let typed = ruled(IssuerRule::OneOf(vec![ISS.into()]), HeaderRule::Typ("JWT"));
    let token = |extra: Value| f.ec.token_with("ES256", &extra, &claims());
    for ok in [json!({ "typ": "JWT" }), json!({ "typ": "jwt" })] {
        assert!(verify_with_keys(&token(ok.clone()), &typed, &f.keys, NOW).is_ok(), "{ok}");
    }
    for bad in [json!({}), json!({ "typ": "at+jwt" }), json!({ "typ": 1 }), json!({ "typ": null })] {
        assert_err(
            verify_with_keys(&token(bad), &typed, &f.keys, NOW),
            SourceError::Malformed("header `typ` is not the expected type"),
        );
    }
}

#[test]
fn claim_accessors() {
    let f = fixture();
    let token = f.ec.token(
        "ES256",
        &with(
            claims(),
            json!({ "s": "x", "e": "", "n": 74, "f": 1.5, "b": true, "o": { "k": "v" }, "z": null }),
        ),
    );
    let c = check(&f, &token).unwrap();
    assert_eq!(c.required_str("s").unwrap(), "x");
    assert_err(c.required_str("e").map(|_| c.clone()), SourceError::InvalidClaim("e"));
    assert_err(c.required_str("n").map(|_| c.clone()), SourceError::InvalidClaim("n"));
    assert_err(c.required_str("z").map(|_| c.clone()), SourceError::MissingClaim("z"));
    assert_err(c.required_str("nope").map(|_| c.clone()), SourceError::MissingClaim("nope"));
    assert_eq!(c.required_id("n").unwrap(), "74");
    assert_eq!(c.required_id("s").unwrap(), "x");
    assert_err(c.required_id("f").map(|_| c.clone()), SourceError::InvalidClaim("f"));
    assert_err(c.required_id("b").map(|_| c.clone()), SourceError::InvalidClaim("b"));
    assert_eq!(c.text("n").as_deref(), Some("74"));
    assert_eq!(c.text("b").as_deref(), Some("true"));
    assert_eq!(c.text("o.k").as_deref(), Some("v"));
    assert_eq!(c.text("o"), None);
    assert_eq!(c.text("e"), None);
    assert_eq!(c.text("z"), None);
}
