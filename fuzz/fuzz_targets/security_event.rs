//! The payload of a Security Event Token (`broker/src/revocation/ssf.rs`), as the SSF
//! receiver reads it once the signature verified: the RFC 8417 claims, the `events`
//! object, CAEP / RISC payloads and RFC 9493 subject identifiers (simple and complex).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_broker::revocation::ssf::{SubjectId, read_payload};

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = read_payload(data) {
        assert!(!set.events.is_empty() && !set.jti.is_empty() && set.iat >= 0);
        for event in &set.events {
            // An event that revokes always has a subject Tessera understands.
            assert!(!event.kind.revokes() || event.subject.is_some());
        }
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = SubjectId::parse(&value);
    }
});
