//! The RFC 8693 `act` chain and `may_act` readers (`broker/src/delegation.rs`) over any
//! token payload.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tessera_broker::delegation::fuzz_delegation_claims(data);
});
