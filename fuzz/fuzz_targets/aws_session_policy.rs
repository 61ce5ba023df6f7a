//! The `policy` grant key of the `aws_sts` target (`adapters/src/targets/aws_sts/session.rs`):
//! strict JSON with no duplicate members, a `Statement`, STS's characters and length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_adapters::targets::aws_sts::session_policy;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(compact) = session_policy(text)
    {
        // What is sent parses back to the same policy, and is accepted again as it is.
        assert_eq!(session_policy(&compact).as_deref(), Ok(compact.as_str()));
    }
});
