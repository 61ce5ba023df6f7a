//! A foreign token endpoint's answer as the `oauth` target reads it
//! (`adapters/src/targets/oauth/issue.rs`): the first two bytes are the HTTP status, the
//! rest the body (RFC 6749 §5.1 success or §5.2 error JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_adapters::targets::oauth::fuzzing;

fuzz_target!(|data: &[u8]| {
    if let [high, low, body @ ..] = data {
        let _ = fuzzing::token_answer(u16::from_be_bytes([*high, *low]), body);
    }
});
