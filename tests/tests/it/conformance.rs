//! The conformance kit, run for every registered source kind: the kinds come from the
//! registry, and a registered JWT kind the kit has no description of fails.

use tessera_tests::conformance::{registered_configurations, run_every_registered_kind};

/// Fast, and fails by itself when a kind is registered without a kit description.
#[test]
fn the_kit_describes_every_registered_jwt_kind() {
    assert!(!registered_configurations().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_registered_source_kind_passes_the_kit() {
    run_every_registered_kind().await;
}
