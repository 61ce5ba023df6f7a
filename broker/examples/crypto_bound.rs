//! The cryptographic floor of one `oidc` → `jwt` exchange: one RS256 verification of a
//! subject token plus one ES256 signature, on aws-lc-rs with keys parsed once, as the
//! broker does them. One thread; the rate is per second of that thread's CPU time, so a
//! machine shared with other work still gives the figure of one core.
//!
//!     cargo run --release -p tessera-broker --example crypto_bound [-- SECONDS [TOKEN_BYTES]]
//!
//! Prints `crypto_bound_per_core <rate>` last, for `scripts/bench.sh` to read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // bench code

use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// CPU time this thread has run, from the scheduler's own accounting (nanoseconds).
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = text.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    Duration::from_nanos(ns)
}

/// An RS256 JWT of about `bytes` bytes, and the key that verifies it.
fn subject_token(bytes: usize) -> (String, Vec<u8>) {
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let header = B64.encode(br#"{"alg":"RS256","typ":"JWT","kid":"bench"}"#);
    // 342 characters of signature and two dots; the claims fill the rest.
    let claims_len = (bytes.saturating_sub(header.len() + 344) * 3 / 4).max(64);
    let base =
        r#"{"iss":"http://127.0.0.1:8081","sub":"payments-api","aud":"tessera","exp":1900000000,"pad":""#;
    let claims = format!("{base}{}\"}}", "x".repeat(claims_len.saturating_sub(base.len() + 2)));
    let input = format!("{header}.{}", B64.encode(claims));
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
    (format!("{input}.{}", B64.encode(sig)), key.public_key().as_ref().to_vec())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let bytes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(670);
    let (token, public) = subject_token(bytes);
    // Parsed once, as the broker keeps keys parsed per `kid`.
    let rsa = UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public).parse().unwrap();
    let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let rng = SystemRandom::new();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let claims = br#"{"iss":"http://127.0.0.1:8080","sub":"oidc://demo/payments-api","aud":"https://internal-api.example","exp":1900000000,"iat":1899999100,"jti":"0193a6f0-7c1e-7f00-8000-000000000000"}"#;
    let (mut ops, wall, cpu) = (0u64, Instant::now(), thread_cpu());
    while wall.elapsed().as_secs_f64() < seconds {
        for _ in 0..64 {
            // The broker decodes the signature from the token on every request too.
            let sig = B64.decode(sig).unwrap();
            rsa.verify_sig(input.as_bytes(), &sig).unwrap();
            std::hint::black_box(ec.sign(&rng, claims).unwrap());
        }
        ops += 64;
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), (thread_cpu() - cpu).as_secs_f64());
    let cpu = if cpu > 0.0 { cpu } else { wall };
    println!("subject token: RS256, {} bytes; issued: ES256; one thread", token.len());
    println!(
        "{ops} verify+sign in {wall:.2} s wall, {cpu:.2} s CPU: {:.0}/s of wall time",
        ops as f64 / wall
    );
    println!("crypto_bound_per_core {:.0}", ops as f64 / cpu);
}
