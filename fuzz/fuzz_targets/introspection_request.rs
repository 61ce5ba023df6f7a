//! `POST /v1/introspect` bodies (`broker/src/http/introspect.rs`): the form parser and its
//! limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tessera_broker::http::introspect::fuzz_introspection_request(data);
});
