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
  - name: gcp-prod
    type: gcp
    provider: //iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/tessera-oidc
  - name: azure-prod
    type: azure
    tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    scope: https://graph.microsoft.com/.default
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
    grant: { target: aws-prod, role_arn: "arn:aws:iam::444455556666:role/ci/deployer", source_identity: "run-{instance}" }
  - name: per-service-roles
    match: { source: k8s-prod, namespace: services, name: [billing, search] }
    grant: { target: aws-prod, role_arn: "arn:aws:iam::111122223333:role/{name}" }
  - name: no-default
    effect: deny
    match: { name: default }
    grant: { target: aws-prod }
  - name: services-call-internal-api
    match: { source: k8s-prod, namespace: services }
    grant: { target: internal-api }
  - name: payments-uploads
    match: { source: k8s-prod, namespace: payments, name: uploader }
    grant: { target: gcp-prod, service_account: uploader@payments-prod.iam.gserviceaccount.com }
  - name: ci-reads
    match: { source: github, namespace: "octo-org/*" }
    grant: { target: gcp-prod, service_account: reader@payments-prod.iam.gserviceaccount.com }
  - name: graph-readers
    match: { source: k8s-prod, namespace: payments, name: [api, api-canary] }
    grant: { target: azure-prod }
  - name: ci-graph
    match: { source: github, namespace: "octo-org/*" }
    grant: { target: azure-prod, subject: github-ci }
  - name: teams-graph
    match: { source: k8s-prod, namespace: "team-*" }
    grant: { target: azure-prod }
  - name: per-team-roles
    match: { source: k8s-prod, namespace: "team-*" }
    grant: { target: aws-prod, role_arn: "arn:aws:iam::111122223333:role/{namespace}" }
  - name: reconciliation-reads-ledger
    match: { source: k8s-prod, namespace: data-pipelines-europe-west1-batch, name: nightly-reconciliation-of-ledger-entries-against-payment-provider-exports }
    grant: { target: gcp-prod }
  - name: release-graph
    match: { source: github, namespace: "octo-org/*", attributes: { github.ref: "refs/tags/*" } }
    grant: { target: azure-prod, subject: github-ci }
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
    // The rule sets a source identity, so the role must allow setting one.
    assert_eq!(statement["Action"], json!(["sts:AssumeRoleWithWebIdentity", "sts:SetSourceIdentity"]));
    let billing = roles.iter().find(|r| r["RoleName"] == "billing").unwrap();
    assert_eq!(
        billing["AssumeRolePolicyDocument"]["Statement"][0]["Action"],
        json!(["sts:AssumeRoleWithWebIdentity"]),
        "no tags, no source identity: only the web identity action"
    );
    assert_eq!(
        statement["Principal"]["Federated"],
        "arn:aws:iam::444455556666:oidc-provider/tessera.example.com"
    );
    assert_eq!(
        statement["Condition"]["StringLike"]["tessera.example.com:sub"],
        json!(["github://octo-org/*"])
    );
    // `role/{name}` with two names: two roles, each trusting its own service account.
    let billing = roles.iter().find(|r| r["RoleName"] == "billing").unwrap();
    assert_eq!(
        billing["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]["StringEquals"]["tessera.example.com:sub"],
        json!(["k8s://k8s-prod/ns/services/sa/billing"])
    );
    assert!(roles.iter().any(|r| r["RoleName"] == "search"));
    assert_eq!(roles.len(), 4, "`role/{{namespace}}` with a pattern is left out: {roles:?}");

    let notes: Vec<&str> = setup["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let noted = |needle: &str| notes.iter().any(|n| n.contains(needle));
    assert!(
        noted(
            "`per-team-roles` (rules.yaml:41): `role_arn` depends on fields the rule does not match exactly"
        ),
        "{notes:?}"
    );
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
    assert!(comments.iter().any(|c| c.as_str().unwrap().contains("`role_arn` depends on fields")));
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

const GCP_PROVIDER: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tessera/providers/tessera-oidc";
const POOL: &str = "projects/123456789012/locations/global/workloadIdentityPools/tessera";
const LONG_ID: &str = "k8s://k8s-prod/ns/data-pipelines-europe-west1-batch/sa/nightly-reconciliation-of-ledger-entries-against-payment-provider-exports";
const CONDITION: &str = concat!(
    r#"assertion.tessera_id in ["k8s://k8s-prod/ns/data-pipelines-europe-west1-batch/sa/nightly-reconciliation-of-ledger-entries-against-payment-provider-exports", "k8s://k8s-prod/ns/payments/sa/uploader"]"#,
    r#" || assertion.tessera_id.matches("^github://octo-org/.*$")"#
);
const ATTRIBUTE_MAPPING: &str = "google.subject=assertion.sub,attribute.tessera_id=assertion.tessera_id,attribute.tessera_rule=assertion.tessera_rule";

/// The value of `--flag=value` in `command`.
fn flag<'a>(command: &'a [Value], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    command.iter().find_map(|a| a.as_str().unwrap().strip_prefix(&prefix))
}

#[test]
fn gcloud_commands_create_the_pool_provider_and_bindings() {
    let (_dir, loaded, set) = fixture();
    let commands = peer("shell", &[], &render(&loaded, &set, "gcp-prod", Format::Gcloud));
    let commands = commands.as_array().unwrap();
    let words =
        |c: &Value| c.as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let provider = commands
        .iter()
        .find(|c| words(c)[..5].join(" ") == "gcloud iam workload-identity-pools providers create-oidc")
        .unwrap();
    let provider = provider.as_array().unwrap();
    assert_eq!(provider[5], "tessera-oidc");
    assert_eq!(flag(provider, "workload-identity-pool"), Some("tessera"));
    assert_eq!(flag(provider, "issuer-uri"), Some(ISSUER));
    assert_eq!(flag(provider, "allowed-audiences"), Some(format!("https:{GCP_PROVIDER}").as_str()));
    assert_eq!(flag(provider, "attribute-mapping"), Some(ATTRIBUTE_MAPPING));
    assert_eq!(flag(provider, "attribute-condition"), Some(CONDITION));
    let bindings: Vec<(String, String)> = commands
        .iter()
        .map(words)
        .filter(|w| w[..4].join(" ") == "gcloud iam service-accounts add-iam-policy-binding")
        .map(|w| {
            assert!(w.contains(&"--role=roles/iam.workloadIdentityUser".to_string()));
            (w[4].clone(), w.iter().find_map(|a| a.strip_prefix("--member=")).unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        bindings,
        vec![
            (
                "reader@payments-prod.iam.gserviceaccount.com".into(),
                format!("principalSet://iam.googleapis.com/{POOL}/attribute.tessera_rule/ci-reads"),
            ),
            (
                "uploader@payments-prod.iam.gserviceaccount.com".into(),
                format!(
                    "principal://iam.googleapis.com/{POOL}/subject/k8s://k8s-prod/ns/payments/sa/uploader"
                )
            ),
        ]
    );
}

/// A rule without a service account is granted roles on resources directly: the output
/// names its principals, the identity's (with its id compacted to Google's 127 bytes) and
/// the rule's set.
#[test]
fn direct_access_principals_are_written_for_each_rule_and_fit_google_subject() {
    let (_dir, loaded, set) = fixture();
    let text = render(&loaded, &set, "gcp-prod", Format::Gcloud);
    let subject = tessera_adapters::targets::gcp::google_subject(LONG_ID);
    assert_eq!(subject.len(), 127, "{subject}");
    assert!(subject.starts_with("k8s://k8s-prod/ns/data-pipelines-europe-west1-batch/sa/nightly-"));
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| {
        *l == "# rule reconciliation-reads-ledger: grant roles on resources to these principals:"
    });
    let at = at.unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        lines[at + 1..at + 3],
        [
            format!("#   principal://iam.googleapis.com/{POOL}/subject/{subject}"),
            format!(
                "#   principalSet://iam.googleapis.com/{POOL}/attribute.tessera_rule/reconciliation-reads-ledger"
            ),
        ]
    );
    assert!(
        text.contains(&format!("Tessera presents it as `{subject}`, the full id as attribute.tessera_id")),
        "{text}"
    );
    let tf = render(&loaded, &set, "gcp-prod", Format::Terraform);
    assert!(tf.contains(&format!("#   principal://iam.googleapis.com/{POOL}/subject/{subject}")), "{tf}");
}

#[test]
fn gcp_terraform_parses_and_names_issuer_audience_and_subjects() {
    let (_dir, loaded, set) = fixture();
    let tf = peer("hcl", &[], &render(&loaded, &set, "gcp-prod", Format::Terraform));
    let providers = tf["resources"]["google_iam_workload_identity_pool_provider"].as_object().unwrap();
    assert_eq!(providers.len(), 1);
    let provider = providers.values().next().unwrap();
    assert_eq!(provider["workload_identity_pool_id"], "tessera");
    assert_eq!(provider["workload_identity_pool_provider_id"], "tessera-oidc");
    assert_eq!(
        provider["attribute_mapping"],
        json!({
            "google.subject": "assertion.sub",
            "attribute.tessera_id": "assertion.tessera_id",
            "attribute.tessera_rule": "assertion.tessera_rule",
        })
    );
    assert_eq!(provider["attribute_condition"], CONDITION);
    assert_eq!(
        provider["oidc"],
        json!([{ "issuer_uri": ISSUER, "allowed_audiences": [format!("https:{GCP_PROVIDER}")] }])
    );
    let members: Vec<&Value> = tf["resources"]["google_service_account_iam_member"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| &m["member"])
        .collect();
    assert!(members.contains(&&json!(format!(
        "principal://iam.googleapis.com/{POOL}/subject/k8s://k8s-prod/ns/payments/sa/uploader"
    ))));
}

#[test]
fn azure_credentials_name_issuer_exact_subjects_and_audience() {
    let (_dir, loaded, set) = fixture();
    let commands = peer("shell", &[], &render(&loaded, &set, "azure-prod", Format::Az));
    let mut subjects = Vec::new();
    for command in commands.as_array().unwrap() {
        let c = command.as_array().unwrap();
        assert_eq!(
            c[..7],
            [
                json!("az"),
                json!("ad"),
                json!("app"),
                json!("federated-credential"),
                json!("create"),
                json!("--id"),
                json!("6731de76-14a6-49ae-97bc-6eba6914391e")
            ]
        );
        assert_eq!(c[7], "--parameters");
        let parameters: Value = serde_json::from_str(c[8].as_str().unwrap()).unwrap();
        assert_eq!(parameters["issuer"], ISSUER);
        assert_eq!(parameters["audiences"], json!(["api://AzureADTokenExchange"]));
        if parameters["subject"] == "github-ci" {
            // Two rules give this subject: one credential, naming both.
            assert_eq!(parameters["description"], "Tessera rules ci-graph, release-graph");
        }
        subjects.push(parameters["subject"].as_str().unwrap().to_owned());
    }
    subjects.sort();
    assert_eq!(
        subjects,
        ["github-ci", "k8s://k8s-prod/ns/payments/sa/api", "k8s://k8s-prod/ns/payments/sa/api-canary"]
    );

    let text = render(&loaded, &set, "azure-prod", Format::Terraform);
    assert!(text.contains("`teams-graph` (rules.yaml:38) grants subject patterns"), "{text}");
    let tf = peer("hcl", &[], &text);
    let credentials =
        tf["resources"]["azuread_application_federated_identity_credential"].as_object().unwrap();
    let mut tf_subjects: Vec<&str> = credentials.values().map(|c| c["subject"].as_str().unwrap()).collect();
    tf_subjects.sort_unstable();
    assert_eq!(tf_subjects, subjects);
    for c in credentials.values() {
        assert_eq!(c["issuer"], ISSUER);
        assert_eq!(c["audiences"], json!(["api://AzureADTokenExchange"]));
    }
}

#[test]
fn golden_files() {
    let (_dir, loaded, set) = fixture();
    insta::assert_snapshot!("aws_json", render(&loaded, &set, "aws-prod", Format::Json));
    insta::assert_snapshot!("aws_terraform", render(&loaded, &set, "aws-prod", Format::Terraform));
    insta::assert_snapshot!("jwt_json", render(&loaded, &set, "internal-api", Format::Json));
    insta::assert_snapshot!("gcp_gcloud", render(&loaded, &set, "gcp-prod", Format::Gcloud));
    insta::assert_snapshot!("gcp_terraform", render(&loaded, &set, "gcp-prod", Format::Terraform));
    insta::assert_snapshot!("azure_az", render(&loaded, &set, "azure-prod", Format::Az));
    insta::assert_snapshot!("azure_terraform", render(&loaded, &set, "azure-prod", Format::Terraform));
    let (loaded, set) = load(&root().join("examples/kubernetes-to-aws/broker.yaml"));
    insta::assert_snapshot!("aws_cloudformation", render(&loaded, &set, "aws-prod", Format::Cloudformation));
}

#[test]
fn the_command_prints_the_setup_and_refuses_a_format_the_target_has_not() {
    let (dir, loaded, set) = fixture();
    let config = dir.path().join("broker.yaml");
    let run = |args: &[&str]| {
        std::process::Command::new(tessera_tests::agent::tessera_binary())
            .args(["--log-format", "text", "trust"])
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = run(&["gcp-prod", "--format", "terraform"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), render(&loaded, &set, "gcp-prod", Format::Terraform));
    // Without --format, the kind's first: JSON for AWS.
    let out = run(&["aws-prod"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), render(&loaded, &set, "aws-prod", Format::Json));

    let out = run(&["azure-prod", "--format", "cloudformation"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use one of: az, terraform"));
}

#[test]
fn the_aws_example_trust_policy_is_the_one_tessera_writes() {
    let dir = root().join("examples/kubernetes-to-aws");
    let (loaded, set) = load(&dir.join("broker.yaml"));
    let setup: Value = serde_json::from_str(&render(&loaded, &set, "aws-prod", Format::Json)).unwrap();
    let reader =
        setup["roles"].as_array().unwrap().iter().find(|r| r["RoleName"] == "invoices-reader").unwrap();
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    assert_eq!(reader["AssumeRolePolicyDocument"], read("trust-policy.json"));
    let provider = &setup["oidc_providers"][0];
    assert_eq!(
        read("oidc-provider.json"),
        json!({ "Url": provider["Url"], "ClientIDList": provider["ClientIDList"] })
    );
}

/// `tessera trust` for a `txn_token` target: what the trust domain's workloads check a
/// Txn-Token against, and which workloads may request one.
#[test]
fn txn_token_setup_names_the_trust_domain_typ_and_requesting_workloads() {
    let (loaded, set) = load(&root().join("examples/txn-token-two-services/broker.yaml"));
    let setup: Value = serde_json::from_str(&render(&loaded, &set, "txn", Format::Json)).unwrap();
    assert_eq!(setup["audience"], "trade.example");
    assert_eq!(setup["typ"], "txntoken+jwt");
    assert_eq!(setup["issuer"], "https://tessera.trade.example");
    assert_eq!(setup["jwks_uri"], "https://tessera.trade.example/.well-known/jwks.json");
    let rules: Vec<(&str, Value)> = setup["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["rule"].as_str().unwrap(), r["requesting_workloads"].clone()))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("gateway-starts-transactions", json!(["k8s://k8s-prod/ns/edge/sa/gateway"])),
            ("orders-narrows-transactions", json!(["k8s://k8s-prod/ns/orders/sa/api"])),
        ]
    );
    let e = trust::render(&loaded, &set, "txn", Some(Format::Terraform)).unwrap_err();
    assert!(matches!(e, TrustError::Unsupported { .. }), "{e}");
}
