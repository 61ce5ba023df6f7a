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

/// Run `command` with `input` on its standard input; its output.
fn with_input(command: &mut Command, input: &str) -> std::process::Output {
    use std::process::Stdio;
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
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

/// `tessera serve` logs one JSON start-up line saying what was loaded, and no library's
/// chatter (actix's "starting 2 workers", "Actix runtime found"), no Rust `Debug` forms.
#[test]
fn serve_starts_with_one_line_and_no_library_noise() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/api.yaml"),
        "version: 1\nrules:\n  - name: demo-api\n    match: { source: demo }\n    grant: { target: internal-api }\n",
    )
    .unwrap();
    let config = dir.path().join("conf/broker.yaml");
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(
        &config,
        "version: 1\nlisten: 127.0.0.1:0\nissuer:\n  url: http://127.0.0.1:8080\n  key_dir: keys\n\
         sources:\n  - name: demo\n    type: oidc\n    issuer: http://127.0.0.1:9\n    audiences: [tessera]\n    insecure_http: true\n\
         targets:\n  - name: internal-api\n    type: jwt\n    audience: https://internal-api.example\n\
         mappings: ./../rules\naudit:\n  sink: none\n",
    )
    .unwrap();
    let mut child = Command::new(tessera_tests::agent::tessera_binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let serving = line.contains("tessera serving");
        lines.push(line);
        if serving {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = lines.join("\n");
    let events: Vec<serde_json::Value> =
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect();
    let start =
        events.last().filter(|e| e["message"] == "tessera serving").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(start["sources"], "demo", "{text}");
    assert_eq!(start["targets"], "internal-api", "{text}");
    assert_eq!(start["rules"], 1, "{text}");
    assert_eq!(
        start["mappings"],
        dir.path().join("rules").display().to_string(),
        "paths are shown normalized"
    );
    for event in &events {
        let target = event["target"].as_str().unwrap_or_default();
        assert!(target.starts_with("tessera"), "a library's line: {event}");
    }
    assert!(!text.contains("Some("), "{text}");
}

#[test]
fn bash_completion_is_a_script_bash_reads() {
    let out =
        Command::new(tessera_tests::agent::tessera_binary()).args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    for word in ["serve", "mappings", "diff", "--proposed", "credential-process", "completions"] {
        assert!(script.contains(word), "{word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.bash");
    std::fs::write(&path, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // Sourced, it registers a completion function for `tessera`.
    let registered = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p tessera", path.display()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&registered.stdout).contains("tessera"), "{registered:?}");
    let zsh =
        Command::new(tessera_tests::agent::tessera_binary()).args(["completions", "zsh"]).output().unwrap();
    assert!(String::from_utf8(zsh.stdout).unwrap().starts_with("#compdef tessera"));
}

#[test]
fn man_pages_cover_every_command_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(tessera_tests::agent::tessera_binary())
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in
        ["tessera.1", "tessera-serve.1", "tessera-mappings-diff.1", "tessera-completions.1", "tessera-man.1"]
    {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        for section in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS"] {
            assert!(text.contains(section), "{page} lacks {section}");
        }
    }
    let serve = std::fs::read_to_string(dir.path().join("tessera-serve.1")).unwrap();
    assert!(serve.contains("tessera serve \\-\\-config /etc/tessera/broker.yaml"), "{serve}");
    let page = Command::new(tessera_tests::agent::tessera_binary()).arg("man").output().unwrap();
    assert!(String::from_utf8(page.stdout).unwrap().contains(".TH tessera 1"));
    // Rendered by man(1), where it is installed.
    if Command::new("man").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let rendered = Command::new("man")
            .arg("-l")
            .arg(dir.path().join("tessera-serve.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(text.contains("NAME") && text.contains("tessera-serve - Run the broker"), "{text}");
        assert!(text.contains("tessera serve --config /etc/tessera/broker.yaml"), "{text}");
    }
}

/// A connection error names the endpoint and the operating system's error, once.
#[test]
fn credential_process_names_the_agent_it_cannot_reach_and_why() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/aws/credentials", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k3n").unwrap();
    let (ok, stderr) =
        tessera(&["credential-process", "--url", &url, "--token-file", token.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(
        stderr,
        format!(
            "error: the agent is unreachable: {url}: cannot connect: Connection refused (os error 111)\n"
        )
    );
}

/// `tessera mappings explain --identity` with only `source` and `subject`: the provider,
/// the id and what the subject names come from the source's kind, as a token's would.
#[test]
fn explain_derives_an_identity_from_its_source_and_subject() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    std::fs::write(
        dir.path().join("mappings/rules.yaml"),
        "version: 1\nrules:\n  - name: payments-api\n    match: { provider: kubernetes, namespace: payments, name: api }\n    grant: { target: api }\n  - name: deployer\n    match: { provider: aws_iam, tenant: \"123456789012\", name: deployer }\n    grant: { target: api }\n",
    )
    .unwrap();
    let jwks = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
    std::fs::write(dir.path().join("jwks.json"), jwks).unwrap();
    let config = dir.path().join("broker.yaml");
    std::fs::write(
        &config,
        "version: 1\nissuer:\n  url: https://tessera.example.com\n  key_dir: keys\nsources:\n\
         \x20 - name: eks-prod\n    type: kubernetes\n    issuer: https://k8s.example.com\n    audiences: [tessera]\n    cluster: eks-prod\n    region: eu-west-1\n    jwks_file: jwks.json\n\
         \x20 - name: aws\n    type: aws_iam\n    server_id: tessera.example.com\n\
         \x20 - name: gcp\n    type: gcp\n    audiences: [https://tessera.example.com]\n    allowed_projects: [payments-prod]\n\
         targets:\n  - name: api\n    type: jwt\n    audience: https://api.example\n",
    )
    .unwrap();
    let explain = |identity: &str| {
        let mut command = Command::new(tessera_tests::agent::tessera_binary());
        command.args(["mappings", "explain", "--format", "json", "--audience", "api", "--identity", "-"]);
        let out = with_input(command.arg("--config").arg(&config), identity);
        let stderr = String::from_utf8(out.stderr).unwrap();
        (out.status.success(), serde_json::from_slice::<serde_json::Value>(&out.stdout).ok(), stderr)
    };

    let (ok, body, stderr) = explain("{source: eks-prod, subject: \"system:serviceaccount:payments:api\"}");
    assert!(ok, "{stderr}");
    let body = body.unwrap();
    let identity = &body["identity"];
    assert_eq!(identity["id"], "k8s://eks-prod/ns/payments/sa/api");
    assert_eq!(identity["provider"], "kubernetes");
    assert_eq!(identity["issuer"], "https://k8s.example.com");
    assert_eq!((&identity["tenant"], &identity["namespace"]), (&"eks-prod".into(), &"payments".into()));
    assert_eq!((&identity["name"], &identity["region"]), (&"api".into(), &"eu-west-1".into()));
    assert_eq!(body["decision"]["rule"], "payments-api", "{body}");

    let (ok, body, stderr) = explain("{source: aws, subject: \"arn:aws:iam::123456789012:role/deployer\"}");
    assert!(ok, "{stderr}");
    let body = body.unwrap();
    assert_eq!(body["identity"]["id"], "aws://123456789012/role/deployer");
    assert_eq!(body["identity"]["provider"], "aws_iam");
    assert_eq!(body["decision"]["rule"], "deployer", "{body}");

    // What a field gives is kept; what the subject cannot tell is said.
    let (ok, body, _) =
        explain("{source: eks-prod, subject: \"system:serviceaccount:payments:api\", name: web}");
    assert!(ok);
    assert_eq!(body.unwrap()["identity"]["name"], "web");
    let (ok, _, stderr) = explain("{source: gcp, subject: \"110000000000000000001\"}");
    assert!(!ok);
    assert_eq!(
        stderr,
        "error: -: source `gcp` (gcp): a GCP subject is the service account's unique id, which does not name it: give `id: gcp://sa/EMAIL` and `name: EMAIL`\n"
    );
    let (ok, _, stderr) = explain("{source: nowhere, subject: x}");
    assert!(!ok);
    assert_eq!(stderr, "error: -: `nowhere` is not a source of broker.yaml (sources: eks-prod, aws, gcp)\n");
}
