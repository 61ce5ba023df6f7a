//! Txn-Token requests (`broker/src/txn/`): the request reader with its checks of the
//! client assertion, scope and subject token type, and the strict JSON object parser of
//! `request_context`, `request_details` and `unsigned_json` subjects.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tessera_broker::txn::fuzz_txn_request(data);
});
