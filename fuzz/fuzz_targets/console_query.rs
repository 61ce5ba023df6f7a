//! The operator console's query strings (`broker/src/console/`): the directory's, the audit
//! page's and the access graph's parameters, their keyset cursors (each must read back as
//! written) and the attribute and fingerprint filters.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        tessera_broker::console::fuzz_console_query(query);
    }
});
