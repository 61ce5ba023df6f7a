//! `jsonwebtoken` as a differential oracle for Tessera's JWT verifier: generated tokens,
//! valid and mutated (algorithm, header members, time claims, issuer, audiences, duplicate
//! members, signature bytes), go through both with equivalent strict settings (the same
//! key and pinned algorithm, issuer, audience, leeway, `exp`/`iss`/`aud` required, `nbf`
//! checked). Tessera must never accept a token `jsonwebtoken` rejects. Where Tessera is
//! stricter, the difference must be one of [`DELIBERATE`]; [`each_deliberate_difference_is_real`]
//! shows each one on a token of its own, so the list cannot go stale.
//!
//! `jsonwebtoken` reads the system clock, so both sides use it, and generated times stay
//! at least 10 s from every boundary.

use std::cell::RefCell;
use std::sync::LazyLock;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use super::alg::Algorithm;
use super::keys::KeySet;
use super::policy::JwtPolicy;
use super::testkit::{TestKey, b64, jwks};
use super::verify::verify_with_keys;
use crate::clock::{Clock as _, SystemClock};
use crate::source::SourceError;

const ISS: &str = "https://issuer.example";
const AUD: &str = "tessera";
const LEEWAY: i64 = 30;
/// Tessera's per-source longest token lifetime; `jsonwebtoken` has none.
const MAX_LIFETIME: i64 = 24 * 3600;

/// Each way Tessera is deliberately stricter than `jsonwebtoken`, by the error Tessera
/// gives, with the reason. Nothing else may make Tessera refuse what `jsonwebtoken` accepts.
const DELIBERATE: &[(&str, &str)] = &[
    ("IssuedInFuture", "`iat` after now + leeway is refused (RFC 7519 §4.1.6); jsonwebtoken ignores `iat`"),
    ("InvalidClaim(\"iat\")", "`iat` must be an integer NumericDate; jsonwebtoken ignores `iat`"),
    (
        "InvalidClaim(\"exp\")",
        "`exp` before `iat`/`nbf` (never valid), or past 2^63 - 1, is refused; jsonwebtoken takes any u64",
    ),
    ("LifetimeTooLong", "`exp` minus `iat` (or now) over the source's maximum lifetime (DESIGN.md)"),
    ("InvalidClaim(\"iss\")", "`iss` must be a string (RFC 7519 §4.1.1); jsonwebtoken also takes an array"),
    ("ForbiddenHeader(\"jku\")", "key-bearing headers are refused, never used (RFC 8725 §3.10)"),
    ("ForbiddenHeader(\"jwk\")", "key-bearing headers are refused, never used (RFC 8725 §3.10)"),
    ("ForbiddenHeader(\"x5u\")", "key-bearing headers are refused, never used (RFC 8725 §3.10)"),
    ("ForbiddenHeader(\"x5c\")", "key-bearing headers are refused, never used (RFC 8725 §3.10)"),
    (
        "ForbiddenHeader(\"crit\")",
        "no JWS extension is understood, so any `crit` is refused (RFC 7515 §4.1.11)",
    ),
    ("ForbiddenHeader(\"b64\")", "RFC 7797 `b64` is refused even as `true`; jsonwebtoken takes `true`"),
    ("NestedToken", "`cty: JWT` and `enc` announce nested tokens or JWE, refused (RFC 8725 §2.8)"),
    (
        "Malformed(\"header has a duplicate member\")",
        "duplicate JSON members are refused, never resolved (RFC 7515 §5.2)",
    ),
    (
        "Malformed(\"payload has a duplicate member\")",
        "duplicate JSON members are refused, never resolved (RFC 7519 §7.2)",
    ),
    ("UnknownKey", "a `kid` must name a key of the set; jsonwebtoken is handed the key"),
];

fn deliberate(error: &SourceError) -> Option<&'static str> {
    let name = format!("{error:?}");
    DELIBERATE.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

/// The keys tokens are signed with; `other` signs with a key of the same type that the
/// verifiers do not know.
struct Keys {
    rsa: TestKey,
    rsa_other: TestKey,
    p256: TestKey,
    p256_other: TestKey,
    p384: TestKey,
    p384_other: TestKey,
    ed: TestKey,
    ed_other: TestKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    rsa: TestKey::rsa("k"),
    rsa_other: TestKey::rsa_other("k"),
    p256: TestKey::p256("k"),
    p256_other: TestKey::p256("k"),
    p384: TestKey::p384("k"),
    p384_other: TestKey::p384("k"),
    ed: TestKey::ed25519("k"),
    ed_other: TestKey::ed25519("k"),
});

impl Keys {
    /// The key for `alg`, and another of its type.
    fn for_alg(&self, alg: Algorithm) -> (&TestKey, &TestKey) {
        match alg {
            Algorithm::Es256 => (&self.p256, &self.p256_other),
            Algorithm::Es384 => (&self.p384, &self.p384_other),
            Algorithm::EdDsa => (&self.ed, &self.ed_other),
            _ => (&self.rsa, &self.rsa_other),
        }
    }
}

/// A JSON member as written: name and raw value text, so duplicates can be written.
type Member = (&'static str, String);

fn object(members: &[Member]) -> String {
    let inner: Vec<String> = members.iter().map(|(n, v)| format!("\"{n}\":{v}")).collect();
    format!("{{{}}}", inner.join(","))
}

#[derive(Debug, Clone)]
enum Signature {
    Valid,
    /// Flip one bit of the byte at this index (modulo the length).
    FlipBit(usize, u8),
    DropLastByte,
    AppendZero,
    Empty,
    OtherKey,
}

#[derive(Debug, Clone)]
struct Case {
    /// The algorithm the key signs with and both verifiers pin.
    alg: Algorithm,
    /// The header's `alg` text, usually `alg`.
    header_alg: String,
    header_extra: Vec<Member>,
    payload: Vec<Member>,
    signature: Signature,
}

fn alg_strategy() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

fn header_alg(alg: Algorithm) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => Just(alg.as_str().to_owned()),
        1 => prop::sample::select(vec!["none", "HS256", "RS256", "ES256", "ES512", "EdDSA", "PS256", "rs256", "Ed25519"])
            .prop_map(str::to_owned),
    ]
}

fn header_extra() -> impl Strategy<Value = Vec<Member>> {
    let one = prop::sample::select(vec![
        ("kid", r#""k""#),
        ("kid", r#""other""#),
        ("typ", r#""JWT""#),
        ("typ", r#""at+jwt""#),
        ("cty", r#""JWT""#),
        ("cty", r#""text/plain""#),
        ("crit", r#"["exp"]"#),
        ("crit", r#"["b64"]"#),
        ("b64", "true"),
        ("jku", r#""https://evil.example/jwks""#),
        ("x5u", r#""https://evil.example/cert""#),
        ("x5c", r#"["MIIB"]"#),
        ("jwk", r#"{"kty":"oct","k":"c2VjcmV0"}"#),
        ("enc", r#""A128GCM""#),
        ("alg", r#""none""#),
        ("b64", "false"),
    ])
    .prop_map(|(n, v)| (n, v.to_owned()));
    prop_oneof![
        6 => Just(vec![("kid", r#""k""#.to_owned())]),
        2 => Just(vec![]),
        2 => prop::collection::vec(one, 1..3),
    ]
}

/// Seconds from now, `None` for absent, or a value of the wrong type.
fn time(offsets: &'static [i64], now: i64) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        8 => prop::sample::select(offsets).prop_map(move |o| Some(now.saturating_add(o).to_string())),
        2 => Just(None),
        1 => prop::sample::select(vec![
            format!("\"{}\"", now + 3600),
            format!("{}.5", now + 3600),
            "-1".to_owned(),
            "0".to_owned(),
            "18446744073709551615".to_owned(),
            "null".to_owned(),
            "true".to_owned(),
        ])
        .prop_map(Some),
    ]
}

fn payload(now: i64) -> impl Strategy<Value = Vec<Member>> {
    let iss = prop_oneof![
        12 => Just(Some(format!("\"{ISS}\""))),
        1 => prop::sample::select(vec![
            format!("\"{ISS}/\""),
            "\"https://other.example\"".to_owned(),
            format!("[\"{ISS}\"]"),
            "5".to_owned(),
        ])
        .prop_map(Some),
        1 => Just(None),
    ];
    let aud = prop_oneof![
        8 => Just(Some(format!("\"{AUD}\""))),
        4 => Just(Some(format!("[\"other\",\"{AUD}\"]"))),
        2 => prop::sample::select(vec![
            "\"other\"".to_owned(),
            "[\"other\"]".to_owned(),
            "[]".to_owned(),
            format!("[\"{AUD}\",5]"),
            "5".to_owned(),
            format!("\"{}\"", AUD.to_uppercase()),
        ])
        .prop_map(Some),
        1 => Just(None),
    ];
    // Offsets stay 10 s or more from now ± leeway and from the maximum lifetime.
    let exp = time(&[-7200, -90, -20, 90, 600, 3600, 23 * 3600, 2 * 86_400], now);
    let nbf = time(&[-3600, -60, -10, 20, 90], now);
    let iat = time(&[-86_400, -3600, -60, -10, 20, 90, 7200], now);
    let duplicate = prop::option::weighted(
        0.1,
        prop::sample::select(vec![
            ("iss", "\"https://other.example\"".to_owned()),
            ("aud", format!("\"{AUD}\"")),
            ("exp", (now + 3600).to_string()),
        ]),
    );
    (iss, aud, exp, nbf, iat, duplicate).prop_map(|(iss, aud, exp, nbf, iat, duplicate)| {
        let mut members: Vec<Member> = vec![("sub", "\"workload\"".to_owned())];
        for (name, value) in [("iss", iss), ("aud", aud), ("exp", exp), ("nbf", nbf), ("iat", iat)] {
            if let Some(value) = value {
                members.push((name, value));
            }
        }
        members.extend(duplicate);
        members
    })
}

fn signature() -> impl Strategy<Value = Signature> {
    prop_oneof![
        12 => Just(Signature::Valid),
        2 => (any::<usize>(), 0u8..8).prop_map(|(i, bit)| Signature::FlipBit(i, bit)),
        1 => Just(Signature::DropLastByte),
        1 => Just(Signature::AppendZero),
        1 => Just(Signature::Empty),
        1 => Just(Signature::OtherKey),
    ]
}

fn case(now: i64) -> impl Strategy<Value = Case> {
    alg_strategy().prop_flat_map(move |alg| {
        (header_alg(alg), header_extra(), payload(now), signature()).prop_map(
            move |(header_alg, header_extra, payload, signature)| Case {
                alg,
                header_alg,
                header_extra,
                payload,
                signature,
            },
        )
    })
}

impl Case {
    fn token(&self) -> String {
        let (key, other) = KEYS.for_alg(self.alg);
        let mut header: Vec<Member> = vec![("alg", format!("\"{}\"", self.header_alg))];
        header.extend(self.header_extra.iter().cloned());
        let input = format!("{}.{}", b64(object(&header).as_bytes()), b64(object(&self.payload).as_bytes()));
        let mut sig = match self.signature {
            Signature::OtherKey => other.sign(self.alg.as_str(), input.as_bytes()),
            _ => key.sign(self.alg.as_str(), input.as_bytes()),
        };
        match self.signature {
            Signature::FlipBit(i, bit) => {
                let i = i % sig.len();
                sig[i] ^= 1 << bit;
            }
            Signature::DropLastByte => {
                sig.pop();
            }
            Signature::AppendZero => sig.push(0),
            Signature::Empty => sig.clear(),
            Signature::Valid | Signature::OtherKey => {}
        }
        format!("{input}.{}", b64(&sig))
    }
}

/// Tessera's verdict, with the same key, pinned algorithm and rules as [`oracle`].
fn tessera(alg: Algorithm, token: &str, now: i64) -> Result<(), SourceError> {
    let (key, _) = KEYS.for_alg(alg);
    let keys = KeySet::from_json(jwks(&[key.jwk()]).as_bytes(), &[alg]).unwrap();
    let policy = JwtPolicy::new(
        ISS,
        vec![AUD.into()],
        vec![alg],
        Duration::from_secs(LEEWAY as u64),
        Duration::from_secs(MAX_LIFETIME as u64),
    )
    .unwrap();
    verify_with_keys(token, &policy, &keys, now).map(|_| ())
}

/// `jsonwebtoken`'s verdict with equivalent strict validation.
fn oracle(alg: Algorithm, token: &str) -> Result<(), jsonwebtoken::errors::Error> {
    use jsonwebtoken::{DecodingKey, Validation, decode, jwk::Jwk};
    let (key, _) = KEYS.for_alg(alg);
    let jwk: Jwk = serde_json::from_value(key.jwk()).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(alg.as_str().parse().unwrap());
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = LEEWAY as u64;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    decode::<Value>(token, &key, &validation).map(|_| ())
}

/// What the generated cases covered, so a run that never accepts (or never differs)
/// fails instead of passing vacuously.
#[derive(Debug, Default)]
struct Tally {
    both_accept: usize,
    both_refuse: usize,
    tessera_stricter: usize,
}

#[test]
fn tessera_never_accepts_what_jsonwebtoken_rejects() {
    let now = SystemClock.now();
    let tally = RefCell::new(Tally::default());
    let mut runner = TestRunner::new(Config { cases: 1024, failure_persistence: None, ..Config::default() });
    runner
        .run(&case(now), |case| {
            let token = case.token();
            let ours = tessera(case.alg, &token, now);
            let theirs = oracle(case.alg, &token);
            let mut tally = tally.borrow_mut();
            match (&ours, &theirs) {
                (Ok(()), Ok(())) => tally.both_accept += 1,
                (Err(_), Err(_)) => tally.both_refuse += 1,
                (Ok(()), Err(e)) => {
                    return Err(TestCaseError::fail(format!("Tessera accepted what jsonwebtoken refuses ({e}): {case:?}")));
                }
                (Err(e), Ok(())) => {
                    prop_assert!(deliberate(e).is_some(), "Tessera refused ({e:?}), jsonwebtoken accepted, and the difference is not listed: {case:?}");
                    tally.tessera_stricter += 1;
                }
            }
            Ok(())
        })
        .unwrap();
    let tally = tally.into_inner();
    eprintln!("{tally:?}");
    assert!(tally.both_accept >= 25, "too few valid tokens generated: {tally:?}");
    assert!(tally.both_refuse >= 400, "too few invalid tokens generated: {tally:?}");
    assert!(tally.tessera_stricter >= 25, "the deliberate differences were never reached: {tally:?}");
}

#[test]
fn each_deliberate_difference_is_real() {
    let now = SystemClock.now();
    let valid: Vec<Member> =
        vec![("iss", format!("\"{ISS}\"")), ("aud", format!("\"{AUD}\"")), ("exp", (now + 3600).to_string())];
    let with = |extra: &[Member]| {
        let mut members = valid.clone();
        members.extend(extra.iter().cloned());
        members
    };
    let header = |extra: &[(&'static str, &str)]| -> Vec<Member> {
        let mut members = vec![("kid", r#""k""#.to_owned())];
        members.extend(extra.iter().map(|(n, v)| (*n, (*v).to_owned())));
        members
    };
    let cases: Vec<(&str, Vec<Member>, Vec<Member>)> = vec![
        ("IssuedInFuture", header(&[]), with(&[("iat", (now + 600).to_string())])),
        ("InvalidClaim(\"iat\")", header(&[]), with(&[("iat", format!("\"{now}\""))])),
        (
            "InvalidClaim(\"exp\")",
            header(&[]),
            vec![
                valid[0].clone(),
                valid[1].clone(),
                ("exp", (now + 10).to_string()),
                ("iat", (now + 20).to_string()),
            ],
        ),
        (
            "LifetimeTooLong",
            header(&[]),
            vec![valid[0].clone(), valid[1].clone(), ("exp", (now + 2 * 86_400).to_string())],
        ),
        (
            "InvalidClaim(\"iss\")",
            header(&[]),
            vec![("iss", format!("[\"{ISS}\"]")), valid[1].clone(), valid[2].clone()],
        ),
        ("ForbiddenHeader(\"jku\")", header(&[("jku", r#""https://evil.example/jwks""#)]), valid.clone()),
        ("ForbiddenHeader(\"jwk\")", header(&[("jwk", r#"{"kty":"oct","k":"c2VjcmV0"}"#)]), valid.clone()),
        ("ForbiddenHeader(\"x5u\")", header(&[("x5u", r#""https://evil.example/cert""#)]), valid.clone()),
        ("ForbiddenHeader(\"x5c\")", header(&[("x5c", r#"["MIIB"]"#)]), valid.clone()),
        ("ForbiddenHeader(\"crit\")", header(&[("crit", r#"["b64"]"#), ("b64", "true")]), valid.clone()),
        ("ForbiddenHeader(\"b64\")", header(&[("b64", "true")]), valid.clone()),
        ("NestedToken", header(&[("cty", r#""JWT""#)]), valid.clone()),
        // jsonwebtoken refuses a repeated registered header; a repeated private one it takes.
        (
            "Malformed(\"header has a duplicate member\")",
            header(&[("ver", "1"), ("ver", "2")]),
            valid.clone(),
        ),
        // Likewise in the payload: a repeated `aud` it refuses, a repeated private claim not.
        (
            "Malformed(\"payload has a duplicate member\")",
            header(&[]),
            with(&[("team", "\"a\"".to_owned()), ("team", "\"b\"".to_owned())]),
        ),
        ("UnknownKey", vec![("kid", r#""other""#.to_owned())], valid.clone()),
    ];
    let listed: Vec<&str> = DELIBERATE.iter().map(|(n, _)| *n).collect();
    let shown: Vec<&str> = cases.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(shown, listed, "every listed difference is shown below, in order");
    for (name, header_extra, payload) in cases {
        let case = Case {
            alg: Algorithm::Es256,
            header_alg: "ES256".into(),
            header_extra,
            payload,
            signature: Signature::Valid,
        };
        let token = case.token();
        assert!(oracle(case.alg, &token).is_ok(), "{name}: jsonwebtoken refuses it too: {case:?}");
        let error = tessera(case.alg, &token, now).expect_err(name);
        assert_eq!(format!("{error:?}"), name, "{case:?}");
    }
}
