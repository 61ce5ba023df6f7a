//! The `tessera` command as people meet it: plain error messages, each said once, with no
//! backtrace even when `RUST_BACKTRACE` is set.

use std::process::Command;

fn tessera(args: &[&str]) -> (bool, String) {
    let out = Command::new(tessera_tests::agent::tessera_binary())
        .args(["--log-format", "text"])
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn a_user_error_is_one_plain_message_even_with_rust_backtrace_set() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("broker.yaml");
    let (ok, stderr) = tessera(&["check", "--config", missing.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(
        stderr,
        format!(
            "error: invalid configuration:\n{}: cannot read config file: No such file or directory (os error 2)\n",
            missing.display()
        )
    );
}

#[test]
fn agent_config_errors_are_printed_once_each_all_in_one_run_past_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, "version: 1\nbroker: http://127.0.0.1:1\ncolour: red\ntimeout: soon\n").unwrap();
    let (ok, stderr) = tessera(&["agent", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    let p = path.display();
    assert_eq!(
        stderr,
        format!(
            "error: invalid agent configuration:\n{p}:3:1: unknown field `colour`, expected one of version, broker, \
             listen, hosts, subject_token, aws, gcp, azure, token_files, postgres, refresh, timeout\n{p}:4:10: `soon` is not a \
             duration: expected a duration such as 1h or 15m\n{p}:2:1: missing field `subject_token`\n"
        )
    );
}
