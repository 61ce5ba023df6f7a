//! What an installed `tessera` says about itself, for the install and status tests.

use std::process::Command;

use serde_json::{Value, json};

use crate::agent::tessera_binary;

/// `tessera --version`'s first line: `tessera <version> (commit <hash>, built <date>)`.
pub fn version_line() -> String {
    let out = Command::new(tessera_binary()).arg("--version").output().expect("run tessera --version");
    assert!(out.status.success(), "tessera --version failed: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8").lines().next().unwrap_or_default().to_string()
}

/// The commit and build date `tessera --version` names, as the admin status shows them.
pub fn build_info() -> Value {
    let line = version_line();
    let inner = line
        .split_once(" (commit ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no commit and build date in {line:?}"));
    let (commit, date) = inner.split_once(", built ").unwrap_or_else(|| panic!("no build date in {line:?}"));
    json!({ "commit": commit, "date": date })
}
