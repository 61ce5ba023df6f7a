//! The conformance kit, run for every registered JWT source kind; a registered kind the
//! kit does not run fails `every_registered_jwt_kind_runs_the_kit`.

use tessera_adapters::registry::SOURCE_KINDS;
use tessera_tests::conformance::{self, KindUnderTest, run_jwt_conformance};

/// Source kinds whose credentials are not JWTs, so the JWT kit does not apply.
const NON_JWT_KINDS: &[&str] = &["aws_iam"];

/// One test per kit configuration, and the list of what ran.
macro_rules! kit {
    ($($test:ident => $kind:expr,)+) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $test() {
                run_jwt_conformance(&$kind).await;
            }
        )+

        const COVERED: &[KindUnderTest] = &[$($kind),+];
    };
}

kit! {
    oidc => conformance::OIDC,
    kubernetes => conformance::KUBERNETES,
    github_actions => conformance::GITHUB_ACTIONS,
    gitlab_ci => conformance::GITLAB_CI,
    circleci => conformance::CIRCLECI,
    gcp => conformance::GCP,
    azure => conformance::AZURE,
    spiffe_routed_by_type => conformance::SPIFFE,
    spiffe_routed_by_issuer => conformance::SPIFFE_WITH_ISSUER,
}

#[test]
fn every_registered_jwt_kind_runs_the_kit() {
    let mut registered: Vec<&str> =
        SOURCE_KINDS.iter().copied().filter(|k| !NON_JWT_KINDS.contains(k)).collect();
    registered.sort();
    let mut covered: Vec<&str> = COVERED.iter().map(|k| k.kind).collect();
    covered.sort();
    covered.dedup();
    assert_eq!(covered, registered, "every JWT source kind must run the conformance kit");
    for kind in NON_JWT_KINDS {
        assert!(SOURCE_KINDS.contains(kind), "`{kind}` is listed as non-JWT but is not registered");
    }
}
