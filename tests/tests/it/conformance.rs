//! The conformance kits, run for every registered source and target kind: the kinds come
//! from the registry, and a registered kind the kit has no description of fails.

use tessera_tests::conformance::{registered_configurations, run_every_registered_kind};
use tessera_tests::target_conformance::{registered_targets, run_every_registered_target_kind};

/// Fast, and fails by itself when a kind is registered without a kit description.
#[test]
fn the_kit_describes_every_registered_jwt_kind() {
    assert!(!registered_configurations().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_registered_source_kind_passes_the_kit() {
    run_every_registered_kind().await;
}

/// Fast, and fails by itself when a target kind is registered without a kit description.
#[test]
fn the_target_kit_describes_every_registered_target_kind() {
    assert!(!registered_targets().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_registered_target_kind_passes_the_target_kit() {
    run_every_registered_target_kind().await;
}
