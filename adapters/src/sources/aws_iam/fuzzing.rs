//! Entry points for the cargo-fuzz targets in `fuzz/` (the `fuzzing` feature only): the
//! subject token's decoding and local checks, and the parser of STS's answer, both private
//! to this folder.

use super::request::{self, RequestPolicy};
use super::{principal, sts};

/// The time the fuzz seeds were signed at (2023-11-14T22:13:20Z), so a seed passes the
/// freshness check and mutations reach the checks after it.
pub const NOW: i64 = 1_700_000_000;

/// Decode and check a subject token as a source with the default endpoints, a loopback test
/// endpoint and server id `tessera.example.com` would; `true` when it would be forwarded.
pub fn signed_request(token: &str) -> bool {
    let policy = RequestPolicy {
        server_id: "tessera.example.com".into(),
        endpoints: vec![
            "https://sts.amazonaws.com".into(),
            "https://sts.us-east-1.amazonaws.com".into(),
            "http://127.0.0.1:4566".into(),
        ],
        insecure_http: true,
        max_age: 300,
    };
    request::decode(token).and_then(|raw| request::check(raw, &policy, NOW)).is_ok()
}

/// Parse an answer to GetCallerIdentity as the source does (the error code of a refusal,
/// or the caller and its canonical principal); `true` when it names a principal.
pub fn sts_answer(body: &[u8]) -> bool {
    let _ = sts::error_code(body);
    sts::parse_response(body).ok().and_then(|caller| principal::canonicalize(&caller).ok()).is_some()
}
