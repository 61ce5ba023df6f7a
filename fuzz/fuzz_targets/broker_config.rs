//! broker.yaml (`tessera_broker::config::parse`): the YAML parser, every settings block,
//! every adapter kind's config and the cross-checks. Reads no file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(loaded) = tessera_broker::config::parse(Path::new("/nonexistent/broker.yaml"), text) {
        let _ = loaded.mappings_dir();
    }
});
