//! The JSON schemas of `broker.yaml` and `agent.yaml` (`docs/broker.schema.json`,
//! `docs/agent.schema.json`), which editors use for completion: every configuration in the
//! repository matches its schema and names it on its first line, and the schemas refuse
//! what the loaders refuse by shape.

use std::path::{Path, PathBuf};

use tessera_adapters::registry::{SOURCE_KINDS, TARGET_KINDS};
use tessera_tests::python::root;

use crate::{json_schema, schema_errors};

const BROKER_SCHEMA: &str = "docs/broker.schema.json";
const AGENT_SCHEMA: &str = "docs/agent.schema.json";

/// Every file under `dir` (recursively) named `name`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_named(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
    found.sort();
    found
}

fn configs(name: &str) -> Vec<PathBuf> {
    let mut files = files_named(&root().join("examples"), name);
    files.extend(files_named(&root().join("deploy"), name));
    files
}

/// The whole configuration files written out in a document's YAML blocks.
fn documented(doc: &str, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(doc)).unwrap();
    text.split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.lines().find(|l| !l.starts_with('#')).is_some_and(|l| l == "version: 1"))
        .filter(|b| b.lines().any(|l| l.starts_with(key)) && !b.contains("[...]"))
        .map(str::to_string)
        .collect()
}

/// `file`'s first line names `schema` by a path relative to the file that leads to it.
fn assert_names_its_schema(file: &Path, schema: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let reference = first
        .strip_prefix("# yaml-language-server: $schema=")
        .unwrap_or_else(|| panic!("{}: the first line names no schema: {first}", file.display()));
    let target = file.parent().unwrap().join(reference);
    assert_eq!(
        target.canonicalize().unwrap_or_else(|e| panic!("{}: {reference}: {e}", file.display())),
        root().join(schema).canonicalize().unwrap(),
        "{}",
        file.display()
    );
}

#[test]
fn every_broker_config_matches_the_schema_and_names_it_on_its_first_line() {
    let validator = json_schema(BROKER_SCHEMA);
    let files = configs("broker.yaml");
    assert!(files.len() >= 7, "{files:?}");
    for file in &files {
        let errors = schema_errors(&validator, &std::fs::read_to_string(file).unwrap());
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
        assert_names_its_schema(file, BROKER_SCHEMA);
    }
    // The reference's annotated file names every top-level key there is; its source and
    // target lists, elided there, are filled with one of each.
    let reference = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let annotated = reference
        .split("```yaml\n")
        .find(|b| b.starts_with("version: 1 ") && b.contains("sources: [...]"))
        .and_then(|b| b.split("```").next())
        .expect("docs/configuration.md has the annotated broker.yaml");
    let filled = annotated
        .replace(
            "sources: [...]",
            "sources:\n  - { name: corp, type: oidc, issuer: https://idp.example, audiences: [tessera] }",
        )
        .replace("targets: [...]", "targets:\n  - { name: api, type: jwt, audience: https://api.example }");
    assert!(!filled.contains("[...]"), "{filled}");
    let errors = schema_errors(&validator, &filled);
    assert!(errors.is_empty(), "docs/configuration.md's annotated file:\n{filled}\n{errors:#?}");
}

#[test]
fn every_agent_config_matches_the_schema_and_names_it_on_its_first_line() {
    let validator = json_schema(AGENT_SCHEMA);
    let files = configs("agent.yaml");
    assert!(files.len() >= 2, "{files:?}");
    for file in &files {
        let errors = schema_errors(&validator, &std::fs::read_to_string(file).unwrap());
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
        assert_names_its_schema(file, AGENT_SCHEMA);
    }
    let blocks = documented("docs/agent.md", "subject_token:");
    assert!(!blocks.is_empty(), "docs/agent.md has a whole agent.yaml");
    for block in blocks {
        let errors = schema_errors(&validator, &block);
        assert!(errors.is_empty(), "docs/agent.md example:\n{block}\n{errors:#?}");
    }
}

/// The schema knows every registered adapter kind, and no other.
#[test]
fn the_broker_schema_has_every_registered_source_and_target_kind() {
    let text = std::fs::read_to_string(root().join(BROKER_SCHEMA)).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (def, kinds) in [("source", SOURCE_KINDS), ("target", TARGET_KINDS)] {
        let listed: Vec<&str> = schema["$defs"][def]["properties"]["type"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let mut registered = kinds.to_vec();
        registered.sort_unstable();
        assert_eq!(listed, registered, "{def} kinds");
        for kind in kinds {
            assert!(
                schema["$defs"][format!("{def}_{kind}")].is_object(),
                "{def} kind {kind} has no definition"
            );
        }
    }
}

const BROKER: &str = "version: 1
issuer:
  url: https://tessera.example.com
sources:
  - name: corp
    type: oidc
    issuer: https://idp.example.com
    audiences: [tessera]
targets:
  - name: api
    type: jwt
";

const AGENT: &str = "version: 1
broker: https://tessera.example.com
subject_token:
  file: /var/run/secrets/tokens/tessera
token_files:
  - target: api
    path: /run/tessera/api.token
";

/// Both the loader and the schema refuse `text`, or both accept it.
fn agree(validator: &jsonschema::Validator, loads: impl Fn(&Path, &str) -> bool, text: &str, accepted: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    let errors = schema_errors(validator, text);
    assert_eq!(loads(&path, text), accepted, "the loader, on:\n{text}");
    assert_eq!(errors.is_empty(), accepted, "the schema, on:\n{text}\n{errors:#?}");
}

#[test]
fn the_broker_schema_refuses_what_the_loader_refuses_by_shape() {
    let validator = json_schema(BROKER_SCHEMA);
    let loads = |path: &Path, text: &str| tessera_broker::config::parse(path, text).is_ok();
    agree(&validator, loads, BROKER, true);
    let more = "listen: 0.0.0.0:8080\nworkers: 2\naudit: { sink: file, path: a.jsonl, store: { timeout: 300ms } }\nadmin: { listen: 127.0.0.1:8090, hosts: [tessera-admin] }\nmetrics: { listen: '[::1]:9464' }\nreload: { debounce: 50ms, poll_interval: 0s }\nrate_limit: { requests: 10, per: 1m }\nlimits: { max_body_bytes: 4096 }\n";
    agree(&validator, loads, &format!("{BROKER}{more}"), true);
    let refused = [
        BROKER.replace("version: 1", "version: 2"),
        format!("{BROKER}listen_address: 127.0.0.1:8080\n"),
        format!("{BROKER}listen: localhost:8080\n"),
        BROKER.replace("type: oidc", "type: okta"),
        BROKER.replace("    audiences: [tessera]\n", ""),
        BROKER.replace("    issuer: https://idp.example.com\n", ""),
        BROKER.replace("audiences: [tessera]", "audiences: [tessera]\n    audience: tessera"),
        BROKER.replace("    type: jwt\n", "    type: jwt\n    role_arn: x\n"),
        BROKER.replace("  - name: api\n", "  - nmae: api\n"),
        BROKER.replace(
            "  url: https://tessera.example.com\n",
            "  url: https://tessera.example.com\n  algorithms: [HS256]\n",
        ),
        format!("{BROKER}audit: {{ sink: syslog }}\n"),
        format!("{BROKER}audit: {{ store: {{ max_connections: many }} }}\n"),
        format!("{BROKER}limits: {{ max_body_bytes: -1 }}\n"),
        format!("{BROKER}admin: {{ auth: {{ jwt: {{}} }} }}\n"),
        format!(
            "{BROKER}admin: {{ auth: {{ require: all, jwt: {{ target: api }}, tls: {{ cert: c }} }} }}\n"
        ),
        format!("{BROKER}rate_limit: {{ per: 1m }}\n"),
        format!("{BROKER}reload: {{ debounce: 5 }}\n"),
        format!("{BROKER}redis: {{ key_prefix: x }}\n"),
    ];
    for text in refused {
        agree(&validator, loads, &text, false);
    }
}

#[test]
fn the_agent_schema_refuses_what_the_loader_refuses_by_shape() {
    let validator = json_schema(AGENT_SCHEMA);
    let loads = |path: &Path, text: &str| tessera_agent::config::parse(path, text).is_ok();
    agree(&validator, loads, AGENT, true);
    let more = "listen: 127.0.0.1:8200\nhosts: [metadata]\naws: { target: aws-prod, authorization_token_file: t }\ngcp: { target: gcp, email: sa@p.iam.gserviceaccount.com, id_token_targets: { https://a.example: api } }\nazure: { resources: { https://graph.microsoft.com: azure }, identity_header_file: h, imds: true }\nrefresh: { after: 0.6, margin: 1m, min_backoff: 500ms, max_backoff: 30s }\ntimeout: 5s\n";
    agree(&validator, loads, &format!("{AGENT}{more}"), true);
    let refused = [
        AGENT.replace("version: 1", "version: 2"),
        AGENT.replace("broker: https://tessera.example.com\n", ""),
        AGENT.replace("  file: /var/run/secrets/tokens/tessera\n", "  file: t\n  aws: { server_id: s }\n"),
        AGENT.replace("  file: /var/run/secrets/tokens/tessera\n", "  kubernetes: t\n"),
        AGENT.replace(
            "  file: /var/run/secrets/tokens/tessera\n",
            "  gce_metadata: { endpoint: http://metadata }\n",
        ),
        AGENT.replace("    path: /run/tessera/api.token\n", ""),
        format!("{AGENT}listen: '8200'\n"),
        format!("{AGENT}aws: {{ scope: x }}\n"),
        format!("{AGENT}gcp: {{ target: gcp }}\n"),
        format!("{AGENT}azure: {{ client_id: x }}\n"),
        format!("{AGENT}refresh: {{ after: half }}\n"),
        format!("{AGENT}credentials: {{}}\n"),
    ];
    for text in refused {
        agree(&validator, loads, &text, false);
    }
}
