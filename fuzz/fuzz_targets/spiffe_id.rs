//! SPIFFE IDs (`adapters/src/spiffe_id.rs`): the `sub` of every JWT-SVID the `spiffe`
//! source verifies, and every ID the `spiffe` target renders from identity data before it
//! signs. Whatever parses is a SPIFFE ID by the specification's rules, and reads back as
//! the text it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_adapters::spiffe_id::{MAX_ID_BYTES, parse, valid_path, valid_trust_domain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(id) = parse(text) {
        assert!(text.len() <= MAX_ID_BYTES);
        assert!(valid_trust_domain(id.trust_domain));
        assert!(valid_path(id.path));
        assert_eq!(format!("spiffe://{}{}", id.trust_domain, id.path), text);
        assert!(!id.path.split('/').skip(1).any(|s| s.is_empty() || s == "." || s == ".."));
    }
    if valid_path(text) {
        assert!(text.is_empty() || text.starts_with('/'));
        assert!(text.is_ascii());
    }
});
