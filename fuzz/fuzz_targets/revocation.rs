//! The body of `POST /v1/revocations` (`broker/src/revocation/`): the JSON shape with its
//! tagged `match`, then every check (text limits, globs, fingerprints, the expiry), and
//! matching the parsed revocation against a fixed identity.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tessera_adapters::Identity;
use tessera_broker::mapping::parse_identity;
use tessera_broker::revocation::NewRevocation;

static IDENTITY: LazyLock<Identity> = LazyLock::new(|| {
    parse_identity(
        Path::new("identity.json"),
        r#"{"id": "github://octo-org/payments", "source": "github", "attributes": {"github.repository_id": "42"}}"#,
    )
    .expect("the fixed identity parses")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(new) = serde_json::from_slice::<NewRevocation>(data)
        && new.validate(1_800_000_000_000).is_ok()
    {
        let _ = new.matcher.matches_identity(&IDENTITY);
    }
});
