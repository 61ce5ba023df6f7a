//! Mapping files (`broker/src/mapping/`): the YAML reader with positions, the file schema,
//! globs, templates and CEL conditions compiled at load, and, for a file that loads, its
//! inline `tests:` run (every rule evaluated, conditions included). The same text is also
//! read as a test identity, as `tessera mappings explain` reads one.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tessera_broker::mapping::{Catalog, MappingSet, SourceInfo, TargetInfo, parse_identity};

/// Targets and sources named in the seeds (and in the repository's example mappings).
static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let target = |name: &str, kind: &'static str, keys: &'static [&'static str], scope| TargetInfo {
        name: name.into(),
        kind,
        max_ttl: Duration::from_secs(3600),
        default_ttl: Duration::from_secs(900),
        grant_keys: keys,
        scope_param: scope,
        target: None,
    };
    let source = |name: &str, kind: &str| SourceInfo { name: name.into(), kind: kind.into() };
    Catalog {
        targets: vec![
            target("internal-api", "jwt", &[], None),
            target("aws-prod", "aws_sts", &["role_arn", "session_name", "tags"], Some("role_arn")),
            target("gcp-prod", "gcp", &["service_account", "scopes", "provider"], None),
            target("azure-prod", "azure", &["tenant", "client_id", "subject"], None),
            target("deploy-api", "jwt", &[], None),
        ],
        sources: vec![
            source("eks-prod", "kubernetes"),
            source("github", "github_actions"),
            source("gke-dev", "kubernetes"),
            source("k8s-prod", "kubernetes"),
            source("gitlab", "gitlab_ci"),
            source("circleci", "circleci"),
            source("demo", "oidc"),
        ],
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let files = [(PathBuf::from("fuzz.yaml"), text.to_owned())];
    if let Ok(set) = MappingSet::load_files(&files, &CATALOG) {
        let _ = set.run_tests_at(1_700_000_000);
    }
    let _ = parse_identity(Path::new("identity.yaml"), text);
});
