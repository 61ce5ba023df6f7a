//! The inline `tests:` cases of mapping files: each names an identity, a request and the
//! expected outcome, and runs through the same decision and rendering as a real exchange.

use std::fmt;
use std::path::PathBuf;

use tessera_adapters::{Clock, SystemClock};

use crate::mapping::error::Denial;
use crate::mapping::eval::GrantPreview;
use crate::mapping::file::Expectation;
use crate::mapping::{MappingSet, Request};

impl Expectation {
    /// Whether what the rules did is what the case expects.
    fn holds(&self, actual: &Result<GrantPreview, Denial>) -> bool {
        match (self, actual) {
            (Self::Allow(rule), Ok(preview)) => preview.rule == *rule,
            // A deny rule that applies because it could not be evaluated denies all the same.
            (
                Self::Deny(rule),
                Err(Denial::Denied { rule: got } | Denial::DeniedOnError { rule: got, .. }),
            ) => got == rule,
            (Self::NoRule, Err(Denial::NoRule))
            | (Self::Ambiguous, Err(Denial::Ambiguous { .. }))
            | (Self::InvalidScope, Err(Denial::ScopeNotGrantable))
            | (Self::DelegationNotAllowed, Err(Denial::DelegationNotAllowed { .. })) => true,
            _ => false,
        }
    }
}

/// The result of one inline test case.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub description: Option<String>,
    pub audience: String,
    pub scope: Option<String>,
    pub expected: Expectation,
    /// What the rules did: the grant they would make, or why not.
    pub actual: Result<GrantPreview, Denial>,
    pub passed: bool,
}

impl fmt::Display for TestOutcome {
    /// `file:line:column: ok|FAILED: ...`, one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        f.write_str(if self.passed { "ok" } else { "FAILED" })?;
        if let Some(d) = &self.description {
            write!(f, " ({d})")?;
        }
        write!(f, ": audience `{}`", self.audience)?;
        if let Some(s) = &self.scope {
            write!(f, ", scope `{s}`")?;
        }
        write!(f, ": expected {}", self.expected)?;
        if !self.passed {
            match &self.actual {
                Ok(preview) => write!(f, ", got allow by rule `{}`", preview.rule)?,
                Err(d) => write!(f, ", got {d} [{}]", d.code())?,
            }
        }
        Ok(())
    }
}

impl MappingSet {
    /// Run every file's inline test cases, in file order; cases without `now:` run at the
    /// current time.
    pub fn run_tests(&self) -> Vec<TestOutcome> {
        self.run_tests_at(SystemClock.now())
    }

    /// Run every file's inline test cases; cases without `now:` run at `now` (seconds
    /// since the epoch).
    pub fn run_tests_at(&self, now: i64) -> Vec<TestOutcome> {
        self.cases
            .iter()
            .map(|case| {
                let request = Request {
                    audience: &case.audience,
                    scope: case.scope.as_deref(),
                    client_addr: case.client_addr.as_deref(),
                    now: case.now.unwrap_or(now),
                };
                let actual = self.preview_delegated(&case.identity, case.actor.as_ref(), &request);
                TestOutcome {
                    file: case.file.to_path_buf(),
                    line: case.pos.line,
                    column: case.pos.column,
                    description: case.description.clone(),
                    audience: case.audience.clone(),
                    scope: case.scope.clone(),
                    passed: case.expect.holds(&actual),
                    expected: case.expect.clone(),
                    actual,
                }
            })
            .collect()
    }
}
