//! The `aws_iam` subject token (`adapters/src/sources/aws_iam/request.rs`): base64url, the
//! JSON shape, header names and values, then every local check (method, body, URL, the
//! SigV4 `Authorization` header, `X-Amz-Date`, the signed server id) at a fixed time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_adapters::sources::aws_iam::fuzzing;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = fuzzing::signed_request(token);
    }
});
