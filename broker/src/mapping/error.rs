//! Load errors (what is wrong with the files) and denials (why a request gets no grant).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::mapping::yaml::Pos;

/// One problem in a mapping file, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message} (hint: {hint})", file.display())]
pub struct LoadError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub hint: String,
}

impl LoadError {
    pub(crate) fn at(file: &Path, pos: Pos, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// Every problem found in a mapping directory; a set with any is refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    /// One line per error, `file:line:column: message (hint: ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        tessera_adapters::config::write_lines(f, &self.0)
    }
}

/// Why a rule could not be evaluated for an identity. Rules fail closed: a deny rule that
/// cannot be evaluated applies, an allow rule does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvalError {
    /// A `match` condition names an attribute whose value was withheld for being over the
    /// attribute limits ([`Identity::withheld`](tessera_adapters::Identity::withheld)).
    #[error("`match` tests `{field}`, whose value was withheld (over the attribute limits)")]
    WithheldMatch { field: String },
    /// The `when:` condition failed (a missing attribute, a type error, a withheld
    /// attribute) or did not yield a bool.
    #[error("its condition `{condition}` failed: {error}")]
    Condition { condition: String, error: String },
}

/// Why the mapping rules give a verified identity no grant for a request. The detail is
/// for logs and audit; callers see only the fixed text of the RFC 6749 error it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// A deny rule applies; deny rules win over any allow.
    #[error("denied by rule `{rule}`")]
    Denied { rule: String },
    /// A deny rule could not be evaluated for this identity, so it applies: deny rules
    /// fail closed.
    #[error("denied by rule `{rule}`, which could not be evaluated (deny rules fail closed): {error}")]
    DeniedOnError { rule: String, error: EvalError },
    /// No rule for the requested target matches the identity.
    #[error("no rule allows this identity the requested target")]
    NoRule,
    /// Several allow rules apply and no scope picks one of them.
    #[error("ambiguous: rules {} all apply; request a scope to pick one", quoted(.rules))]
    Ambiguous { rules: Vec<String> },
    /// Allow rules apply, but none grants the requested scope.
    #[error("no applying rule grants the requested scope")]
    ScopeNotGrantable,
    /// The allowing rule's templates name a field this identity has no value for.
    #[error("rule `{rule}` cannot be rendered: the identity has no `{field}`")]
    Unrenderable { rule: String, field: String },
    /// The request has an actor (RFC 8693 `actor_token`) and the allow rules that apply
    /// to the identity have no `match.actor`: delegation is opt-in per rule.
    #[error("rules {} apply but do not allow delegation (no `match.actor`)", quoted(.rules))]
    DelegationNotAllowed { rules: Vec<String> },
}

impl Denial {
    /// A stable, greppable reason code for logs and audit records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Denied { .. } => "TS-MAP-DENIED",
            Self::DeniedOnError { .. } => "TS-MAP-DENY-CONDITION-ERROR",
            Self::NoRule => "TS-MAP-NO-RULE",
            Self::Ambiguous { .. } => "TS-MAP-AMBIGUOUS",
            Self::ScopeNotGrantable => "TS-MAP-SCOPE",
            Self::Unrenderable { .. } => "TS-MAP-UNRENDERABLE",
            Self::DelegationNotAllowed { .. } => "TS-MAP-NO-DELEGATION",
        }
    }

    /// The one rule the denial is about, where there is one.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Self::Denied { rule } | Self::DeniedOnError { rule, .. } | Self::Unrenderable { rule, .. } => {
                Some(rule)
            }
            Self::NoRule
            | Self::Ambiguous { .. }
            | Self::ScopeNotGrantable
            | Self::DelegationNotAllowed { .. } => None,
        }
    }
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}
