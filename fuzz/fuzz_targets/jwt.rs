//! Compact JWS decoding, the header checks and the claims checks of `adapters/src/jwt/`, as
//! every JWT source runs them (`verify_with_keys`, `peek_issuer`, `peek_subject`).
//!
//! An input holding a NUL byte is `header JSON NUL payload JSON`: the target encodes and
//! signs it with a fixed Ed25519 key, so mutations reach the claims checks that sit behind
//! the signature. Any other input is a token as a caller would send it.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use tessera_adapters::jwt::{Algorithm, JwtPolicy, KeySet, peek_issuer, peek_subject, verify_with_keys};

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "tessera";
const LEEWAY: i64 = 30;

struct Fixture {
    key: Ed25519KeyPair,
    keys: KeySet,
    policy: JwtPolicy,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let key = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("seed");
    let x = URL_SAFE_NO_PAD.encode(key.public_key().as_ref());
    let jwks = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "fuzz", "x": x}]});
    let keys = KeySet::from_json(jwks.to_string().as_bytes(), &Algorithm::ALL).expect("key set");
    let policy = JwtPolicy::new(
        ISSUER,
        vec![AUDIENCE.into()],
        Algorithm::ALL.to_vec(),
        Duration::from_secs(LEEWAY as u64),
        Duration::from_secs(24 * 3600),
    )
    .expect("policy");
    Fixture { key, keys, policy }
});

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    match data.iter().position(|b| *b == 0) {
        Some(nul) => {
            let (header, payload) = (&data[..nul], &data[nul + 1..]);
            let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
            let signature = fixture.key.sign(input.as_bytes());
            check(fixture, &format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())));
        }
        None => {
            if let Ok(token) = std::str::from_utf8(data) {
                check(fixture, token);
            }
        }
    }
});

/// What a verified token must satisfy, whatever it holds.
fn check(fixture: &Fixture, token: &str) {
    let _ = peek_issuer(token);
    let _ = peek_subject(token);
    if let Ok(claims) = verify_with_keys(token, &fixture.policy, &fixture.keys, NOW) {
        assert_eq!(claims.algorithm(), Algorithm::EdDsa);
        assert_eq!(claims.issuer(), Some(ISSUER));
        assert!(claims.audiences().iter().any(|a| a == AUDIENCE));
        assert!(claims.expires_at().saturating_add(LEEWAY) >= NOW);
        assert!(claims.not_before().is_none_or(|nbf| nbf <= NOW + LEEWAY));
        assert!(claims.issued_at().is_none_or(|iat| iat <= NOW + LEEWAY));
        assert_eq!(peek_issuer(token).ok().as_deref(), Some(ISSUER));
    }
}
