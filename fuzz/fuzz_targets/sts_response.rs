//! STS's answer to GetCallerIdentity (`adapters/src/sources/aws_iam/sts.rs`): the strict XML
//! parse of a 200 answer, the error code of a refusal, and the caller ARN's canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_adapters::sources::aws_iam::fuzzing;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::sts_answer(data);
});
