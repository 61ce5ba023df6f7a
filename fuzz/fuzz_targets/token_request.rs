//! `POST /v1/token` bodies (`broker/src/http/token.rs`): the form and the JSON parsers,
//! their limits, and the checks of the parameters read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tessera_broker::http::fuzz_token_request(data, false);
    let _ = tessera_broker::http::fuzz_token_request(data, true);
});
