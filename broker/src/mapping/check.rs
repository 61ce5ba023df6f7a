//! `tessera mappings check`: load a directory as the broker would, run every inline test
//! case, and collect warnings, in a report for people (one line per finding, like a
//! compiler) and for tools (JSON).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::mapping::cases::TestOutcome;
use crate::mapping::error::LoadError;
use crate::mapping::lint::Warning;
use crate::mapping::{Catalog, MappingSet, read_dir};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// A located finding: `file:line:column: severity: message (hint: ...)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub hint: String,
}

impl From<LoadError> for Diagnostic {
    fn from(e: LoadError) -> Self {
        Self {
            severity: Severity::Error,
            file: e.file,
            line: e.line,
            column: e.column,
            message: e.message,
            hint: e.hint,
        }
    }
}

impl From<Warning> for Diagnostic {
    fn from(w: Warning) -> Self {
        Self {
            severity: Severity::Warning,
            file: w.file,
            line: w.line,
            column: w.column,
            message: w.message,
            hint: w.hint,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {severity}: {} (hint: {})",
            self.file.display(),
            self.line,
            self.column,
            self.message,
            self.hint
        )
    }
}

/// One inline test case's result, as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestResult {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub description: Option<String>,
    pub passed: bool,
    pub expected: String,
    /// What happened: `allow by rule `x``, or the denial with its reason code.
    pub actual: String,
    /// The whole result on one line, as the text report prints it.
    pub summary: String,
}

impl From<&TestOutcome> for TestResult {
    fn from(o: &TestOutcome) -> Self {
        let actual = match &o.actual {
            Ok(preview) => format!("allow by rule `{}`", preview.rule),
            Err(d) => format!("{d} [{}]", d.code()),
        };
        Self {
            file: o.file.clone(),
            line: o.line,
            column: o.column,
            description: o.description.clone(),
            passed: o.passed,
            expected: o.expected.to_string(),
            actual,
            summary: o.to_string(),
        }
    }
}

/// Everything `tessera mappings check` found in one directory.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub dir: PathBuf,
    pub files: usize,
    /// Rules loaded; 0 when the set has errors, as the broker would load none of it.
    pub rules: usize,
    /// `sha256:<hex>` of the files, as `/v1/status` reports it once loaded.
    pub version: Option<String>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    pub tests: Vec<TestResult>,
}

impl CheckReport {
    /// Load `dir` against `catalog`, run its tests (cases without `now:` at `now`) and
    /// collect warnings. With load errors no test runs: the set would not load at all.
    pub fn run(dir: &Path, catalog: &Catalog, now: i64) -> Self {
        let (files, read_errors) = read_dir(dir);
        let mut report = Self {
            dir: dir.to_path_buf(),
            files: files.len(),
            rules: 0,
            version: None,
            errors: read_errors.into_iter().map(Diagnostic::from).collect(),
            warnings: Vec::new(),
            tests: Vec::new(),
        };
        match MappingSet::load_files(&files, catalog) {
            Ok(set) if report.errors.is_empty() => {
                report.rules = set.rule_count();
                report.version = Some(set.version().to_string());
                report.warnings = set.lint(catalog).into_iter().map(Diagnostic::from).collect();
                report.tests = set.run_tests_at(now).iter().map(TestResult::from).collect();
            }
            Ok(_) => {}
            Err(errors) => report.errors.extend(errors.0.into_iter().map(Diagnostic::from)),
        }
        report
    }

    pub fn failed_tests(&self) -> usize {
        self.tests.iter().filter(|t| !t.passed).count()
    }

    /// Whether CI should pass: no error, no failed test and, if `strict`, no warning.
    pub fn passed(&self, strict: bool) -> bool {
        self.errors.is_empty() && self.failed_tests() == 0 && (!strict || self.warnings.is_empty())
    }
}

impl fmt::Display for CheckReport {
    /// Errors and warnings, one per line; then each test case; then a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.errors.iter().chain(&self.warnings) {
            writeln!(f, "{d}")?;
        }
        for t in &self.tests {
            writeln!(f, "{}", t.summary)?;
        }
        let failed = self.failed_tests();
        write!(
            f,
            "{}: {} file{}, {} rule{}, {} test{} ({} failed), {} error{}, {} warning{}",
            self.dir.display(),
            self.files,
            plural(self.files),
            self.rules,
            plural(self.rules),
            self.tests.len(),
            plural(self.tests.len()),
            failed,
            self.errors.len(),
            plural(self.errors.len()),
            self.warnings.len(),
            plural(self.warnings.len()),
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
