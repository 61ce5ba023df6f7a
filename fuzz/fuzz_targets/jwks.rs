//! JWKS documents and SPIFFE bundles (`KeySet::from_json_for`, `adapters/src/jwt/keys.rs`):
//! strict JSON, every key type and curve, key metadata, size limits. A set that parses is
//! then asked for keys by a fixed token, through the same selection verification uses.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use tessera_adapters::jwt::{Algorithm, JwtPolicy, KeySet, KeyUse, verify_with_keys};

static POLICY: LazyLock<JwtPolicy> = LazyLock::new(|| {
    JwtPolicy::new(
        "https://issuer.example",
        vec!["tessera".into()],
        Algorithm::ALL.to_vec(),
        Duration::from_secs(30),
        Duration::from_secs(3600),
    )
    .expect("policy")
});

/// One token per algorithm, each naming kid `k`: the signature is junk, so selection and
/// the verification call are reached but nothing verifies.
static TOKENS: LazyLock<Vec<String>> = LazyLock::new(|| {
    Algorithm::ALL
        .iter()
        .map(|alg| {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"k"}}"#));
            let payload = URL_SAFE_NO_PAD
                .encode(r#"{"iss":"https://issuer.example","aud":"tessera","exp":1700000100}"#);
            format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode([1u8; 64]))
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    for key_use in [KeyUse::Sig, KeyUse::JwtSvid] {
        if let Ok(set) = KeySet::from_json_for(data, &Algorithm::ALL, key_use) {
            assert!(set.usable_len() >= 1);
            let _ = format!("{set:?}");
            for token in TOKENS.iter() {
                assert!(verify_with_keys(token, &POLICY, &set, 1_700_000_000).is_err());
            }
        }
    }
});
