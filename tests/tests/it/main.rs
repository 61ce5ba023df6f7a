//! Tessera end to end: the real broker on loopback, real HTTP, real keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code

mod admin_auth;
mod agent;
mod agent_revocation;
mod audit_store;
mod aws_iam;
mod chaining;
mod cli;
mod config_schemas;
mod conformance;
mod console;
mod delegation;
mod doctor;
mod edge;
mod examples;
mod exchange;
mod fail_closed;
mod fakes;
mod impact;
mod install;
mod issuer;
mod jwt_rules;
mod mappings;
mod metrics;
mod openapi;
mod peers;
mod platform_peers;
mod reload;
mod relying_party;
mod replicas;
mod revocation_watch;
mod revocations;
mod revoke_issued;
mod signals;
mod targets_aws;
mod targets_cloud;
mod targets_kubernetes;
mod targets_postgres;
mod targets_spiffe;
mod trust;
mod txn_tokens;

use serde_json::Value;
use tessera_tests::{BrokerOptions, TestBroker, TestIssuer, TestKey, spawn_broker};

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The `oidc` source every test uses, trusting `issuer` through discovery.
pub fn oidc_source(issuer: &TestIssuer) -> String {
    format!(
        "- name: corp\n  type: oidc\n  issuer: {}\n  audiences: [tessera]\n  insecure_http: true\n  max_token_lifetime: 1h\n  leeway: 30s\n",
        issuer.url()
    )
}

pub const JWT_TARGET: &str = "- name: internal-api\n  type: jwt\n  audience: https://internal-api.example\n  max_ttl: 1h\n  default_ttl: 15m\n";

pub const RULES: &str = r#"version: 1
rules:
  - name: services-call-internal-api
    description: any service account of corp may call the internal API
    match:
      source: corp
      subject: "svc-*"
    grant:
      target: internal-api
      ttl: 10m
      claims:
        workload: "{subject}"
        tier: gold
  - name: no-interns
    effect: deny
    match: { subject: "svc-intern-*" }
    grant: { target: internal-api }
"#;

/// A test issuer with an RSA key (`rsa-1`) and an EC key (`ec-1`), and a broker trusting it
/// with the standard target and rules.
pub async fn standard() -> (TestIssuer, TestBroker) {
    let issuer = TestIssuer::start(vec![TestKey::rsa("rsa-1"), TestKey::ec("ec-1")]);
    let broker = spawn_broker(
        BrokerOptions::new(&oidc_source(&issuer), JWT_TARGET).mapping("10-services.yaml", RULES),
    )
    .await;
    (issuer, broker)
}

/// The fixed RFC 8693 §2.2.2 body for any refused subject token.
pub fn invalid_token_body() -> Value {
    serde_json::json!({
        "error": "invalid_request",
        "error_description": "The subject token is invalid, expired, or not trusted.",
    })
}

/// Every `broker.yaml` of `examples/<scenario>/`, and of its folders for a scenario of
/// several brokers (`examples/two-trust-domains/domain-b/`), sorted.
pub fn example_broker_configs() -> Vec<std::path::PathBuf> {
    let scenarios: Vec<std::path::PathBuf> =
        std::fs::read_dir(tessera_tests::python::root().join("examples"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
    let mut configs: Vec<std::path::PathBuf> = scenarios
        .iter()
        .flat_map(|dir| {
            let nested = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path().join("broker.yaml"));
            std::iter::once(dir.join("broker.yaml")).chain(nested)
        })
        .filter(|p| p.exists())
        .collect();
    configs.sort();
    configs
}

/// The last audit event's reason code.
pub fn last_reason(broker: &TestBroker) -> String {
    let events = broker.audit_events();
    let last = events.last().expect("an audit event was written");
    last["reason"].as_str().expect("reason").to_string()
}

/// A JSON schema of the repository (`mappings/schema.json`, `docs/broker.schema.json`, ...),
/// itself checked against draft 2020-12.
pub fn json_schema(relative: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(tessera_tests::python::root().join(relative)).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::draft202012::meta::validate(&schema)
        .unwrap_or_else(|e| panic!("{relative} is not valid draft 2020-12: {e}"));
    jsonschema::draft202012::new(&schema).unwrap()
}

/// What `validator` finds wrong with a YAML document, read as the loaders read it.
pub fn schema_errors(validator: &jsonschema::Validator, yaml: &str) -> Vec<String> {
    let instance = serde_saphyr::from_str::<Value>(yaml).unwrap();
    validator.iter_errors(&instance).map(|e| format!("{}: {e}", e.instance_path())).collect()
}
