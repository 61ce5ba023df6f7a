//! The Python peers: real client libraries (PyJWT, jwcrypto, ...) installed by `.ci/run`
//! into the project's `.venv`, driven through small scripts in `tests/peers/`.

use std::path::PathBuf;
use std::process::Command;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The virtualenv's interpreter: `TESSERA_PYTHON` if set, else `<root>/.venv/bin/python`.
pub fn interpreter() -> PathBuf {
    std::env::var_os("TESSERA_PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/python"))
}

/// Run `tests/peers/<script>` with `args`; panics with its stderr if it fails.
/// Returns standard output, trimmed.
pub fn run(script: &str, args: &[&str]) -> String {
    let python = interpreter();
    assert!(
        python.exists(),
        "{} not found: run `bash .ci/run` (or `python3 -m venv .venv && .venv/bin/pip install -r tests/peers/requirements.txt`) first",
        python.display()
    );
    let out = Command::new(&python)
        .arg(root().join("tests/peers").join(script))
        .args(args)
        .output()
        .expect("run python peer");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output").trim().to_string()
}
