//! `tessera trust`: what it writes is taken by the platform's real implementation (moto's
//! IAM for AWS, python-hcl2 for Terraform) and names the issuer, audience and subjects the
//! rules grant; golden files hold each format.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use tessera_adapters::ManualClock;
use tessera_broker::Adapters;
use tessera_broker::config::{self, LoadedConfig};
use tessera_broker::mapping::MappingSet;
use tessera_broker::trust::{self, Format, TrustError};
use tessera_tests::moto::MotoIam;
use tessera_tests::python::{self, root};

const ISSUER: &str = "https://tessera.example.com";

const BROKER: &str = r#"version: 1
issuer:
  url: https://tessera.example.com
  key_dir: keys
  algorithms: [ES256, RS256]
sources:
  - name: k8s-prod
    type: kubernetes
    issuer: https://k8s-prod.example.com
    audiences: [tessera]
    cluster: k8s-prod
    jwks_file: jwks.json
  - name: github
    type: github_actions
    audiences: [https://tessera.example.com]
    allowed_owners: [octo-org]
targets:
  - name: aws-prod
    type: aws_sts
    audience: sts.amazonaws.com
  - name: internal-api
    type: jwt
    audience: https://internal-api.example
mappings: mappings
"#;

const RULES: &str = r#"version: 1
rules:
  - name: payments-api
    match: { source: k8s-prod, namespace: payments, name: [api, api-canary] }
    grant:
      target: aws-prod
      role_arn: arn:aws:iam::111122223333:role/invoices-reader
      tags: { team: payments }
  - name: ops-jobs
    match: { id: "k8s://k8s-prod/ns/ops/sa/job-*" }
    when: 'identity.attributes["k8s.pod_name"].startsWith("job-")'
    grant: { target: aws-prod, role_arn: arn:aws:iam::111122223333:role/invoices-reader }
  - name: deploy-from-main
    match: { source: github, namespace: "octo-org/*", attributes: { github.ref: refs/heads/main } }
    grant: { target: aws-prod, role_arn: "arn:aws:iam::444455556666:role/ci/deployer" }
  - name: per-service-roles
    match: { source: k8s-prod, namespace: services }
    grant: { target: aws-prod, role_arn: "arn:aws:iam::111122223333:role/{name}" }
  - name: no-default
    effect: deny
    match: { name: default }
    grant: { target: aws-prod }
  - name: services-call-internal-api
    match: { source: k8s-prod, namespace: services }
    grant: { target: internal-api }
"#;

/// The fixture's config and rules, loaded as `tessera trust` loads them.
fn fixture() -> (tempfile::TempDir, LoadedConfig, MappingSet) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broker.yaml"), BROKER).unwrap();
    std::fs::copy(root().join("examples/kubernetes-to-aws/jwks.json"), dir.path().join("jwks.json")).unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    std::fs::write(dir.path().join("mappings/rules.yaml"), RULES).unwrap();
    let (loaded, set) = load(&dir.path().join("broker.yaml"));
    (dir, loaded, set)
}

fn load(path: &Path) -> (LoadedConfig, MappingSet) {
    let loaded = config::load(path).unwrap();
    let adapters = Adapters::build(&loaded, Arc::new(ManualClock::new(1_700_000_000))).unwrap();
    let set = MappingSet::load_dir(&loaded.mappings_dir(), &adapters.catalog).unwrap();
    (loaded, set)
}

fn render(loaded: &LoadedConfig, set: &MappingSet, target: &str, format: Format) -> String {
    trust::render(loaded, set, target, Some(format)).unwrap()
}

/// Run a `trust_peer.py` command on `text` written to a file.
fn peer(command: &str, extra: &[&str], text: &str) -> Value {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let mut args = vec![command];
    args.extend_from_slice(extra);
    let path = file.path().to_str().unwrap().to_owned();
    args.push(&path);
    serde_json::from_str(&python::run("trust_peer.py", &args)).unwrap()
}

#[test]
fn subjects_come_from_the_rules_and_the_sources_id_shapes() {
    let (_dir, loaded, set) = fixture();
    let setup: Value = serde_json::from_str(&render(&loaded, &set, "aws-prod", Format::Json)).unwrap();
    assert_eq!(setup["issuer"], ISSUER);
    let roles = setup["roles"].as_array().unwrap();
    let reader = roles.iter().find(|r| r["RoleName"] == "invoices-reader").unwrap();
    let statement = &reader["AssumeRolePolicyDocument"]["Statement"][0];
    // Two rules grant the role: one statement, StringLike because one names a pattern.
    assert_eq!(reader["Rules"], json!(["payments-api", "ops-jobs"]));
    assert_eq!(
        statement["Condition"]["StringEquals"],
        json!({ "tessera.example.com:aud": "sts.amazonaws.com" })
    );
    assert_eq!(
        statement["Condition"]["StringLike"]["tessera.example.com:sub"],
        json!([
            "k8s://k8s-prod/ns/ops/sa/job-*",
            "k8s://k8s-prod/ns/payments/sa/api",
            "k8s://k8s-prod/ns/payments/sa/api-canary",
        ])
    );
    // The rule sets session tags, so the role must allow tagging.
    assert_eq!(statement["Action"], json!(["sts:AssumeRoleWithWebIdentity", "sts:TagSession"]));

    let deployer = roles.iter().find(|r| r["RoleName"] == "deployer").unwrap();
    assert_eq!(deployer["Path"], "/ci/");
    let statement = &deployer["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(statement["Action"], json!(["sts:AssumeRoleWithWebIdentity"]));
    assert_eq!(
        statement["Principal"]["Federated"],
        "arn:aws:iam::444455556666:oidc-provider/tessera.example.com"
    );
    assert_eq!(
        statement["Condition"]["StringLike"]["tessera.example.com:sub"],
        json!(["github://octo-org/*"])
    );
    assert_eq!(roles.len(), 2, "the templated role_arn is left out: {roles:?}");

    let notes: Vec<&str> = setup["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let noted = |needle: &str| notes.iter().any(|n| n.contains(needle));
    assert!(noted("`per-service-roles` (rules.yaml:"), "{notes:?}");
    assert!(noted("`role_arn` is a template"), "{notes:?}");
    assert!(noted("`deploy-from-main` (rules.yaml:13) also matches attributes.github.ref"), "{notes:?}");
    assert!(noted("`ops-jobs` (rules.yaml:9) has a `when:` condition"), "{notes:?}");
    assert!(noted("`no-default` (rules.yaml:19) denies"), "{notes:?}");
    let providers = setup["oidc_providers"].as_array().unwrap();
    assert_eq!(providers.len(), 2, "one provider per account");
}

#[tokio::test]
async fn moto_iam_takes_the_providers_and_trust_policies_and_gives_them_back() {
    let (_dir, loaded, set) = fixture();
    let text = render(&loaded, &set, "aws-prod", Format::Json);
    let setup: Value = serde_json::from_str(&text).unwrap();
    let moto = MotoIam::start().await;
    let origin = moto.origin.clone();
    let text2 = text.clone();
    let got = tokio::task::spawn_blocking(move || peer("aws", &[&origin], &text2)).await.unwrap();

    let providers = setup["oidc_providers"].as_array().unwrap();
    assert_eq!(got["providers"].as_array().unwrap().len(), providers.len(), "{}", moto.log());
    for (want, got) in providers.iter().zip(got["providers"].as_array().unwrap()) {
        // IAM names the provider as Tessera predicted (the trust policies' principal).
        assert_eq!(got["Arn"], want["Arn"]);
        assert_eq!(format!("https://{}", got["Url"].as_str().unwrap()), ISSUER);
        assert_eq!(got["ClientIDList"], json!(["sts.amazonaws.com"]));
    }
    let roles = setup["roles"].as_array().unwrap();
    assert_eq!(got["roles"].as_array().unwrap().len(), roles.len());
    for (want, got) in roles.iter().zip(got["roles"].as_array().unwrap()) {
        assert_eq!(got["Arn"], want["Arn"]);
        assert_eq!(got["Path"], want["Path"]);
        assert_eq!(got["AssumeRolePolicyDocument"], want["AssumeRolePolicyDocument"]);
    }
}

#[test]
fn terraform_parses_and_holds_the_same_policies() {
    let (_dir, loaded, set) = fixture();
    let setup: Value = serde_json::from_str(&render(&loaded, &set, "aws-prod", Format::Json)).unwrap();
    let tf = peer("hcl", &[], &render(&loaded, &set, "aws-prod", Format::Terraform));
    let providers = tf["resources"]["aws_iam_openid_connect_provider"].as_object().unwrap();
    assert_eq!(providers.len(), 2);
    for provider in providers.values() {
        assert_eq!(provider["url"], ISSUER);
        assert_eq!(provider["client_id_list"], json!(["sts.amazonaws.com"]));
        assert!(provider["provider"].as_str().unwrap().starts_with("${aws.account_"), "{provider}");
    }
    let roles = tf["resources"]["aws_iam_role"].as_object().unwrap();
    for want in setup["roles"].as_array().unwrap() {
        let name = want["RoleName"].as_str().unwrap();
        let got = &roles[name];
        assert_eq!(got["name"], name);
        assert_eq!(got["path"], want["Path"]);
        assert_eq!(got["assume_role_policy"], want["AssumeRolePolicyDocument"], "{name}");
    }
    let comments = tf["comments"].as_array().unwrap();
    assert!(comments.iter().any(|c| c.as_str().unwrap().contains("`role_arn` is a template")));
}

#[test]
fn cloudformation_is_for_one_account() {
    let (_dir, loaded, set) = fixture();
    let e = trust::render(&loaded, &set, "aws-prod", Some(Format::Cloudformation)).unwrap_err();
    assert!(matches!(e, TrustError::Incomplete(_)));
    assert!(e.to_string().contains("111122223333, 444455556666"), "{e}");
    let e = trust::render(&loaded, &set, "aws-prod", Some(Format::Gcloud)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a `aws_sts` target has no `gcloud` format; use one of: json, cloudformation, terraform"
    );
    let e = trust::render(&loaded, &set, "nope", None).unwrap_err();
    assert_eq!(e.to_string(), "broker.yaml has no target named `nope`");
}

#[test]
fn golden_files() {
    let (_dir, loaded, set) = fixture();
    insta::assert_snapshot!("aws_json", render(&loaded, &set, "aws-prod", Format::Json));
    insta::assert_snapshot!("aws_terraform", render(&loaded, &set, "aws-prod", Format::Terraform));
    insta::assert_snapshot!("jwt_json", render(&loaded, &set, "internal-api", Format::Json));
    let (loaded, set) = load(&root().join("examples/kubernetes-to-aws/broker.yaml"));
    insta::assert_snapshot!("aws_cloudformation", render(&loaded, &set, "aws-prod", Format::Cloudformation));
}
