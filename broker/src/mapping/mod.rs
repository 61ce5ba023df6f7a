//! Mapping files: which verified identities may have which credentials.
//!
//! # Layout
//! - `yaml`: a YAML document as a tree of nodes with line and column.
//! - `file`: the file format, read from that tree (shape checks).
//! - `compile`: rules checked against the catalog and each other, compiled and indexed.
//! - `glob`, `template`: match patterns and templated grant values.
//! - `condition`: `when:` CEL conditions, checked at load and evaluated per request;
//!   `access`: what a condition reads of the identity, and which reads are unguarded.
//! - `eval`: the decision, its explanation, and grant rendering.
//! - `cases`: the files' inline `tests:` cases.
//! - `lint`, `check`: warnings, and the report of `tessera mappings check`.
//! - `view`: a rule's matches and grant, read-only, for `tessera trust`.
//! - `reload`: watching the directory and swapping valid changes in.
//! - `replay`: recorded requests decided again, by the current and a proposed set.
//!
//! A directory of `*.yaml` / `*.yml` files is loaded in name order and validated as a
//! whole: every error in every file is collected, each with file, line, column and a fix
//! hint, before the set is refused. A loaded [`MappingSet`] is immutable; reloads build a
//! new one and swap it in.
//!
//! ```yaml
//! version: 1
//! rules:
//!   - name: payments-api-reads-invoices
//!     description: payments API in prod EKS may read the invoices bucket
//!     effect: allow                  # default; or deny
//!     match:                         # all must hold; a pattern or a list (any matches)
//!       source: eks-prod
//!       namespace: payments
//!       name: [api, api-canary]
//!       attributes: { github.ref: "refs/heads/*" }
//!     grant:
//!       target: aws-prod             # a target from broker.yaml
//!       role_arn: arn:aws:iam::123456789012:role/invoices-reader   # target-specific keys
//!       session_name: "{namespace}-{name}"                          # templated
//!       ttl: 15m                     # <= the target's max_ttl; default its default_ttl
//!       claims: { team: payments }
//! tests:
//!   - identity: { source: eks-prod, namespace: payments, name: api }
//!     audience: aws-prod
//!     expect: { allow: payments-api-reads-invoices }
//! ```
//!
//! - `match` keys are the identity fields ([`FIELDS`](tessera_adapters::identity::FIELDS))
//!   and `attributes`. A pattern is exact, or a glob with `*` and `?` (`\` escapes them),
//!   anchored at both ends, without path semantics. A field the identity lacks never matches.
//! - Strings in `scope`, `claims` and target-specific keys are templates: `{namespace}`,
//!   `{attributes.github.ref}`; `{{` and `}}` are literal braces. Numbers and booleans in
//!   `claims` stay as they are.
//! - A rule grants `scope:` if it has one, else the value of its target's scope key
//!   (`role_arn` for AWS). Deny rules take only `target`: they refuse every scope.
//! - `match.actor` takes the same keys and tests the actor of a delegated request (RFC
//!   8693 `actor_token`). Delegation is opt-in per rule: with an actor, only allow rules
//!   with `match.actor` apply; a rule with `match.actor` never applies without one.
//!   Templates name the actor's fields as `{actor.name}`.
//! - `when:` is a CEL condition over `identity`, `actor`, `request` and `now` (see `condition`);
//!   false means the rule does not apply.
//! - A rule that cannot be evaluated for an identity (its `when:` fails or yields no bool,
//!   or it looks at an attribute whose value was withheld, [`Identity::withheld`]) fails
//!   closed: a deny rule applies, an allow rule does not.
//! - `tests:` cases name an identity (only `source` is required), an `audience`, an
//!   optional `scope`, `client_addr` and `now`, and one of `expect: { allow: <rule> }`, `{ deny: <rule> }`,
//!   `{ none: true }`, `{ ambiguous: true }`, `{ invalid_scope: true }`.

mod access;
mod cases;
mod check;
mod compile;
mod condition;
mod error;
mod eval;
mod file;
pub(crate) mod glob;
mod lint;
mod reload;
mod replay;
mod template;
mod view;
mod yaml;

#[cfg(test)]
mod actor_tests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tessera_adapters::secret::fingerprint;
use tessera_adapters::{CredentialTarget, Identity};

pub use cases::TestOutcome;
pub use check::{CheckReport, Diagnostic, Severity, TestResult};
pub use error::{Denial, EvalError, LoadError, LoadErrors};
pub use eval::{Decision, Evaluation, GrantPreview, GrantableScope, RuleTrace, TraceOutcome};
pub use file::{Effect, Expectation};
pub use glob::GlobPiece;
pub use lint::Warning;
pub use reload::{ReloadError, ReloadOutcome, ReloadStatus, Reloader, RuleSlot, WatchOptions};
pub use replay::{
    Change, ChangeKind, Dependent, Folding, Group, Impact, ImpactReport, Outcome, Recorded, RuleRef,
    RuleUsage, Summary, Usage, UsageReport, format_time,
};
pub use view::{GrantValue, RuleView, TemplatePiece};

use crate::mapping::compile::{CompiledRule, RuleIndex, TestCase};
use crate::mapping::yaml::Pos;

/// What the broker knows of one configured target, for checking rules against it.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    pub name: String,
    pub kind: &'static str,
    pub max_ttl: Duration,
    pub default_ttl: Duration,
    /// Target-specific grant keys a rule may set, beyond `target`, `scope`, `ttl`, `claims`.
    pub grant_keys: &'static [&'static str],
    /// The grant key whose value is the scope a rule grants, when it has no `scope:`.
    pub scope_param: Option<&'static str>,
    /// The built target, whose load-time checks of grant values run on every rule for it
    /// ([`CredentialTarget::check_grant_param`]); `None` checks nothing beyond the keys.
    pub target: Option<Arc<dyn CredentialTarget>>,
}

impl TargetInfo {
    /// A `jwt` target with the usual lifetimes (at most 1h, 10m by default), no grant keys
    /// and no built target: for checking rules without a broker (benches, tests).
    pub fn plain_jwt(name: &str) -> Self {
        Self {
            name: name.into(),
            kind: "jwt",
            max_ttl: Duration::from_secs(3600),
            default_ttl: Duration::from_secs(600),
            grant_keys: &[],
            scope_param: None,
            target: None,
        }
    }
}

/// What the broker knows of one configured source.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub name: String,
    /// The adapter kind, which is the `provider` of every identity the source verifies.
    pub kind: String,
}

/// The sources and targets broker.yaml configures: what rules may name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub targets: Vec<TargetInfo>,
    pub sources: Vec<SourceInfo>,
}

/// A request for a credential: the target (`audience`), optionally the scope, and what
/// `when:` conditions may also look at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub audience: &'a str,
    pub scope: Option<&'a str>,
    /// The caller's IP address, when known (`request.client_addr` in conditions).
    pub client_addr: Option<&'a str>,
    /// Seconds since the Unix epoch, from the broker's clock (`now` in conditions).
    pub now: i64,
}

/// A validated, compiled and indexed set of mapping rules. Immutable once built; shared as
/// `Arc<MappingSet>`.
#[derive(Debug)]
pub struct MappingSet {
    version: String,
    files: usize,
    rules: Vec<CompiledRule>,
    index: RuleIndex,
    cases: Vec<TestCase>,
}

impl MappingSet {
    /// Load every `*.yaml` / `*.yml` file directly in `dir`, in file name order. Other
    /// files, dot files and subdirectories are ignored. A directory without mapping files
    /// is an error: a wrong path would otherwise silently deny everything.
    pub fn load_dir(dir: &Path, catalog: &Catalog) -> Result<Self, LoadErrors> {
        let (files, mut errors) = read_dir(dir);
        match Self::load_files(&files, catalog) {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(LoadErrors(errors)),
            Err(LoadErrors(more)) => {
                errors.extend(more);
                Err(LoadErrors(errors))
            }
        }
    }

    /// Load mapping files given as (path, contents), in the order given. The paths are
    /// used in error messages and locations only.
    pub fn load_files(files: &[(PathBuf, String)], catalog: &Catalog) -> Result<Self, LoadErrors> {
        let mut errors = Vec::new();
        let mut raw = Vec::with_capacity(files.len());
        for (path, text) in files {
            match yaml::parse(text) {
                Ok(root) => {
                    let parsed = file::Reader::new(path, &mut errors).file(&root);
                    raw.push((path.clone(), parsed));
                }
                Err(e) => errors.push(LoadError::at(
                    path,
                    e.pos,
                    format!("invalid YAML: {}", e.message),
                    "fix the YAML here; indent with spaces, not tabs, and quote values containing `: ` or starting with `*`, `&`, `{` or `[`",
                )),
            }
        }
        let compiled = compile::compile(&raw, catalog, &mut errors);
        if !errors.is_empty() {
            // File order, then position: the order ops read them in.
            let order = |p: &Path| files.iter().position(|(f, _)| f == p).unwrap_or(usize::MAX);
            errors.sort_by_key(|e| (order(&e.file), e.line, e.column));
            return Err(LoadErrors(errors));
        }
        Ok(Self {
            version: version(files),
            files: files.len(),
            rules: compiled.rules,
            index: compiled.index,
            cases: compiled.cases,
        })
    }

    /// `sha256:<hex>` over the files' names and contents: what `/v1/status` and audit
    /// records report, so a decision can be traced to the exact rules in force.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The number of mapping files the set was loaded from.
    pub fn file_count(&self) -> usize {
        self.files
    }

    /// The number of inline test cases across all files.
    pub fn test_count(&self) -> usize {
        self.cases.len()
    }
}

/// The mapping files of `dir` as (path, contents), in name order, and any problem reading
/// them. See [`MappingSet::load_dir`] for which files count.
pub(crate) fn read_dir(dir: &Path) -> (Vec<(PathBuf, String)>, Vec<LoadError>) {
    let dir_error = |message: String, hint: &str| vec![LoadError::at(dir, Pos::START, message, hint)];
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            let errors = dir_error(
                format!("cannot read the mapping directory: {e}"),
                "check the `mappings` path in broker.yaml and its permissions",
            );
            return (Vec::new(), errors);
        }
    };
    let mut paths = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(LoadError::at(
                    dir,
                    Pos::START,
                    format!("cannot list the mapping directory: {e}"),
                    "check the directory's permissions",
                ));
                continue;
            }
        };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        // Following symlinks: Kubernetes mounts ConfigMap files as links.
        let is_file = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file());
        if is_yaml && is_file && !name.starts_with('.') {
            paths.push(entry.path());
        }
    }
    paths.sort();
    if paths.is_empty() && errors.is_empty() {
        let errors = dir_error(
            "no mapping files (*.yaml, *.yml) in this directory".to_string(),
            "check the `mappings` path in broker.yaml",
        );
        return (Vec::new(), errors);
    }
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((path, text)),
            Err(e) => errors.push(LoadError::at(
                &path,
                Pos::START,
                format!("cannot read the file: {e}"),
                "mapping files must be readable UTF-8 text",
            )),
        }
    }
    (files, errors)
}

/// Parse an identity written as in a test case (YAML or JSON; only `source` is required,
/// see the module documentation), as `tessera mappings explain` and `/v1/explain` take it.
/// `file` names the input in error messages.
pub fn parse_identity(file: &Path, text: &str) -> Result<Identity, LoadErrors> {
    let root = yaml::parse(text).map_err(|e| {
        LoadErrors(vec![LoadError::at(
            file,
            e.pos,
            format!("invalid YAML: {}", e.message),
            "fix the YAML here",
        )])
    })?;
    let mut errors = Vec::new();
    let identity = file::Reader::new(file, &mut errors).identity(&root);
    match identity {
        Some(identity) if errors.is_empty() => Ok(identity),
        _ => Err(LoadErrors(errors)),
    }
}

/// The keys an identity written as in a test case gives itself (`source`, `subject`,
/// ...), in order; empty when it is not a map. [`parse_identity`] fills the others.
pub fn identity_keys(text: &str) -> Vec<String> {
    match yaml::parse(text) {
        Ok(yaml::Node { value: yaml::Value::Map(pairs), .. }) => {
            pairs.iter().filter_map(|(key, _)| key.scalar_text()).collect()
        }
        _ => Vec::new(),
    }
}

/// Each file contributes its name and contents, length-prefixed so no two different sets
/// hash alike. Names, not full paths: the same files mounted elsewhere have one version.
pub(crate) fn version(files: &[(PathBuf, String)]) -> String {
    let mut bytes = Vec::new();
    for (path, text) in files {
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        for part in [name.as_bytes(), text.as_bytes()] {
            bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
            bytes.extend_from_slice(part);
        }
    }
    fingerprint(&bytes)
}
