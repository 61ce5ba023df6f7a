//! Tokens in each platform's documented shape, minted by PyJWT or jwcrypto
//! (`tests/peers/platform_tokens.py`), exchanged end to end; the audited identity is the
//! normalized one docs/sources.md describes.

use serde_json::{Value, json};
use tessera_adapters::Clock as _;
use tessera_adapters::registry::SOURCE_KINDS;
use tessera_tests::conformance::NON_JWT_KINDS;
use tessera_tests::{BrokerOptions, TestBroker, python, spawn_broker};

use crate::JWT_TARGET;

const AUD: &str = "https://tessera.example.com";
const EKS_ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
const GITLAB_ISSUER: &str = "https://gitlab.example.com";
const GOOGLE_ISSUER: &str = "https://accounts.google.com";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// JWT kinds whose peer-minted tokens come from another peer: `oidc` is any issuer's, and
/// PyJWT's own (`tests/peers/pyjwt_peer.py`, in `peers.rs`) is the one it takes.
const MINTED_ELSEWHERE: &[&str] = &["oidc"];

/// Every registered JWT kind has a token builder in the peer, so a new kind cannot go
/// without a peer-minted token.
#[test]
fn the_peer_mints_tokens_for_every_registered_jwt_kind() {
    let minted = python::run("platform_tokens.py", &["kinds"]);
    let minted: Vec<&str> = minted.lines().collect();
    let missing: Vec<&str> = SOURCE_KINDS
        .iter()
        .copied()
        .filter(|k| !NON_JWT_KINDS.contains(k) && !MINTED_ELSEWHERE.contains(k) && !minted.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "tests/peers/platform_tokens.py mints no token for {missing:?}: add a builder to its MINTERS \
         and a test here exchanging the token end to end"
    );
    for kind in minted {
        assert!(SOURCE_KINDS.contains(&kind), "the peer mints tokens for `{kind}`, which is not registered");
    }
}

/// Keys made by the Python peer, in a directory that lives as long as the test.
struct PeerKeys {
    dir: tempfile::TempDir,
}

impl PeerKeys {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_string();
        tokio::task::spawn_blocking(move || python::run("platform_tokens.py", &["keygen", &path]))
            .await
            .unwrap();
        Self { dir }
    }

    fn path(&self) -> String {
        self.dir.path().to_str().unwrap().to_string()
    }

    /// A token of `kind` from the peer, issued at the broker's `now`.
    async fn mint(&self, kind: &str, iss: &str, now: i64) -> String {
        let args: Vec<String> =
            vec!["mint".into(), kind.into(), self.path(), iss.into(), AUD.into(), now.to_string()];
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            python::run("platform_tokens.py", &refs)
        })
        .await
        .unwrap()
    }
}

/// A broker with `sources`, and one rule per source name letting it call the JWT target.
async fn broker(sources: &str, names: &[&str]) -> TestBroker {
    let mut rules = String::from("version: 1\nrules:\n");
    for name in names {
        rules.push_str(&format!(
            "  - name: {name}-calls-internal-api\n    match: {{ source: {name} }}\n    grant: {{ target: internal-api }}\n"
        ));
    }
    spawn_broker(BrokerOptions::new(sources, JWT_TARGET).mapping("platforms.yaml", &rules).with_admin()).await
}

/// Exchange `token`, expect success, and return the audited identity.
async fn exchanged_identity(broker: &TestBroker, token: &str) -> Value {
    let (status, body) = broker.exchange(token, "internal-api").await;
    assert_eq!(status, 200, "{body}");
    let event = broker.audit_events().pop().unwrap();
    assert_eq!(event["decision"], "allow");
    event["identity"].clone()
}

#[track_caller]
fn assert_fields(identity: &Value, expected: Value) {
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&identity[field], value, "identity.{field} in {identity}");
    }
}

#[track_caller]
fn assert_attributes(identity: &Value, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(identity["attributes"][key], json!(value), "attributes.{key} in {identity}");
    }
}

fn kubernetes_source(keys: &PeerKeys) -> String {
    format!(
        "- name: eks-prod\n  type: kubernetes\n  issuer: {EKS_ISSUER}\n  audiences: [{AUD}]\n  jwks_file: {dir}/jwks.json\n  cluster: prod-eu\n  region: eu-west-1\n  attributes: {{ sa_uid: claims.kubernetes.io.serviceaccount.uid }}\n",
        dir = keys.path()
    )
}

fn github_source(keys: &PeerKeys) -> String {
    format!(
        "- name: github\n  type: github_actions\n  audiences: [{AUD}]\n  jwks_file: {dir}/jwks.json\n  allowed_owner_ids: [65]\n  attributes: {{ deploy_env: claims.environment }}\n",
        dir = keys.path()
    )
}

fn gitlab_source(keys: &PeerKeys) -> String {
    format!(
        "- name: gitlab\n  type: gitlab_ci\n  issuer: {GITLAB_ISSUER}\n  audiences: [{AUD}]\n  jwks_file: {dir}/jwks.json\n  allowed_namespaces: [my-group]\n  attributes: {{ groups: claims.groups_direct }}\n",
        dir = keys.path()
    )
}

fn gcp_source(keys: &PeerKeys) -> String {
    format!(
        "- name: gcp\n  type: gcp\n  audiences: [{AUD}]\n  jwks_file: {dir}/jwks.json\n  allowed_projects: [payments-prod]\n  attributes: {{ vm: claims.google.compute_engine.instance_name }}\n",
        dir = keys.path()
    )
}

fn azure_source(keys: &PeerKeys) -> String {
    format!(
        "- name: azure\n  type: azure\n  tenants: [{TENANT}]\n  audiences: [{AUD}]\n  jwks_file: {dir}/jwks.json\n  attributes: {{ client: claims.appid }}\n",
        dir = keys.path()
    )
}

fn spiffe_source(keys: &PeerKeys) -> String {
    format!(
        "- name: spire\n  type: spiffe\n  trust_domains:\n    example.org: {{ bundle_file: {dir}/bundle.json }}\n  audiences: [{AUD}]\n  attributes: {{ svid: claims.sub }}\n",
        dir = keys.path()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_projected_token() {
    let keys = PeerKeys::new().await;
    let broker = broker(&kubernetes_source(&keys), &["eks-prod"]).await;
    let token = keys.mint("kubernetes", EKS_ISSUER, broker.clock.now()).await;
    let identity = exchanged_identity(&broker, &token).await;
    assert_fields(
        &identity,
        json!({
            "id": "k8s://eks-prod/ns/payments/sa/api",
            "provider": "kubernetes",
            "source": "eks-prod",
            "issuer": EKS_ISSUER,
            "subject": "system:serviceaccount:payments:api",
            "tenant": "prod-eu",
            "namespace": "payments",
            "name": "api",
            "instance": "api-7d9f8-x2x4z",
            "region": "eu-west-1",
        }),
    );
    assert_attributes(
        &identity,
        &[
            ("k8s.namespace", "payments"),
            ("k8s.service_account", "api"),
            ("k8s.service_account_uid", "8b1f2c9e-1111-4c3a-9a0e-2d2f4b5c6d7e"),
            ("k8s.pod", "api-7d9f8-x2x4z"),
            ("k8s.pod_uid", "5e6f7a8b-2222-4c3a-9a0e-2d2f4b5c6d7e"),
            ("k8s.node", "ip-10-0-1-23.eu-west-1.compute.internal"),
            ("sa_uid", "8b1f2c9e-1111-4c3a-9a0e-2d2f4b5c6d7e"),
        ],
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn github_actions_token() {
    let keys = PeerKeys::new().await;
    let broker = broker(&github_source(&keys), &["github"]).await;
    let token = keys.mint("github_actions", GITHUB_ISSUER, broker.clock.now()).await;
    let identity = exchanged_identity(&broker, &token).await;
    assert_fields(
        &identity,
        json!({
            "id": "github://octo-org/octo-repo",
            "provider": "github_actions",
            "issuer": GITHUB_ISSUER,
            "subject": "repo:octo-org/octo-repo:environment:prod",
            "tenant": "octo-org",
            "namespace": "octo-org/octo-repo",
            "name": "example-workflow",
            "instance": "example-run-id",
        }),
    );
    assert_attributes(
        &identity,
        &[
            ("github.repository_id", "74"),
            ("github.repository_owner_id", "65"),
            ("github.ref", "refs/heads/main"),
            ("github.ref_type", "branch"),
            ("github.environment", "prod"),
            ("github.event_name", "workflow_dispatch"),
            (
                "github.job_workflow_ref",
                "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
            ),
            ("github.sha", "example-sha"),
            ("github.run_id", "example-run-id"),
            ("github.runner_environment", "github-hosted"),
            ("deploy_env", "prod"),
        ],
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_ci_id_token() {
    let keys = PeerKeys::new().await;
    let broker = broker(&gitlab_source(&keys), &["gitlab"]).await;
    let token = keys.mint("gitlab_ci", GITLAB_ISSUER, broker.clock.now()).await;
    let identity = exchanged_identity(&broker, &token).await;
    assert_fields(
        &identity,
        json!({
            "id": "gitlab://gitlab.example.com/my-group/my-project",
            "provider": "gitlab_ci",
            "issuer": GITLAB_ISSUER,
            "subject": "project_path:my-group/my-project:ref_type:branch:ref:feature-branch-1",
            "tenant": "my-group",
            "namespace": "my-group/my-project",
            "instance": "302",
        }),
    );
    assert_attributes(
        &identity,
        &[
            ("gitlab.project_path", "my-group/my-project"),
            ("gitlab.namespace_path", "my-group"),
            ("gitlab.ref", "feature-branch-1"),
            ("gitlab.ref_protected", "false"),
            ("gitlab.environment", "test-environment2"),
            ("gitlab.pipeline_source", "push"),
            ("gitlab.project_id", "20"),
            ("gitlab.namespace_id", "72"),
            ("gitlab.pipeline_id", "574"),
            ("groups", r#"["mygroup/mysubgroup","myothergroup/myothersubgroup"]"#),
        ],
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn circleci_oidc_token() {
    let keys = PeerKeys::new().await;
    let org = tessera_tests::conformance::CIRCLECI_ORG;
    let project = tessera_tests::conformance::CIRCLECI_PROJECT;
    let source = format!(
        "- name: circleci\n  type: circleci\n  organization_id: {org}\n  audiences: [{AUD}]\n  jwks_file: {dir}/jwks.json\n  allowed_project_ids: [{project}]\n",
        dir = keys.path()
    );
    let broker = broker(&source, &["circleci"]).await;
    let issuer = format!("https://oidc.circleci.com/org/{org}");
    let token = keys.mint("circleci", &issuer, broker.clock.now()).await;
    let identity = exchanged_identity(&broker, &token).await;
    assert_fields(
        &identity,
        json!({
            "id": format!("circleci://{org}/project/{project}"),
            "provider": "circleci",
            "issuer": issuer,
            "subject": format!("org/{org}/project/{project}/user/2a5b7c1d-0000-4000-8000-000000000001"),
            "tenant": org,
            "namespace": project,
            "name": "github.com/octo-org/payments-api",
        }),
    );
    assert_attributes(
        &identity,
        &[
            ("circleci.project-id", project),
            ("circleci.vcs-ref", "refs/heads/main"),
            ("circleci.ssh-rerun", "false"),
            ("circleci.context-ids", r#"["c1a2b3c4-0000-4000-8000-00000000000a"]"#),
        ],
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcp_metadata_id_token() {
    let keys = PeerKeys::new().await;
    let broker = broker(&gcp_source(&keys), &["gcp"]).await;
    let token = keys.mint("gcp", GOOGLE_ISSUER, broker.clock.now()).await;
    let identity = exchanged_identity(&broker, &token).await;
    assert_fields(
        &identity,
        json!({
            "id": "gcp://sa/api@payments-prod.iam.gserviceaccount.com",
            "provider": "gcp",
            "issuer": GOOGLE_ISSUER,
            "subject": "107517467455664443765",
            "tenant": "payments-prod",
            "name": "api@payments-prod.iam.gserviceaccount.com",
            "instance": "6835582326887656987",
            "region": "europe-west1-b",
        }),
    );
    assert_attributes(
        &identity,
        &[
            ("gcp.project_id", "payments-prod"),
            ("gcp.project_number", "739419398126"),
            ("gcp.zone", "europe-west1-b"),
            ("gcp.instance_name", "api-1"),
            ("gcp.unique_id", "107517467455664443765"),
            ("vm", "api-1"),
        ],
    );
    // The short issuer spelling Google also documents routes to the same source.
    let short = keys.mint("gcp", "accounts.google.com", broker.clock.now()).await;
    assert_eq!(exchanged_identity(&broker, &short).await["issuer"], "accounts.google.com");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_managed_identity_v1_and_v2_tokens() {
    let keys = PeerKeys::new().await;
    let broker = broker(&azure_source(&keys), &["azure"]).await;
    let now = broker.clock.now();
    for (kind, iss, ver) in [
        ("azure_v1", format!("https://sts.windows.net/{TENANT}/"), "1.0"),
        ("azure_v2", format!("https://login.microsoftonline.com/{TENANT}/v2.0"), "2.0"),
    ] {
        let token = keys.mint(kind, &iss, now).await;
        let identity = exchanged_identity(&broker, &token).await;
        assert_fields(
            &identity,
            json!({
                "id": format!("azure://{TENANT}/a1b2c3d4-0000-4000-8000-1234567890ab"),
                "provider": "azure",
                "issuer": iss,
                "subject": "a1b2c3d4-0000-4000-8000-1234567890ab",
                "tenant": TENANT,
                "namespace": "0b1c2d3e-1111-2222-3333-444455556666",
                "name": "payments-api",
            }),
        );
        assert_attributes(
            &identity,
            &[
                ("azure.oid", "a1b2c3d4-0000-4000-8000-1234567890ab"),
                ("azure.appid", "d9f1e0c2-aaaa-4bbb-8ccc-0123456789ab"),
                ("azure.ver", ver),
                ("azure.resource_group", "payments-rg"),
            ],
        );
    }
    // A tenant not configured: its issuer is not trusted.
    let stranger = keys
        .mint("azure_v2", "https://login.microsoftonline.com/99999999-2222-3333-4444-555555555555/v2.0", now)
        .await;
    let (status, _) = broker.exchange(&stranger, "internal-api").await;
    assert_eq!(status, 400);
    assert_eq!(crate::last_reason(&broker), "TS-SRC-UNTRUSTED-ISSUER");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spiffe_jwt_svid_verified_with_a_bundle() {
    let keys = PeerKeys::new().await;
    let broker = broker(&spiffe_source(&keys), &["spire"]).await;
    let token = keys.mint("spiffe", "-", broker.clock.now()).await;
    let identity = exchanged_identity(&broker, &token).await;
    assert_fields(
        &identity,
        json!({
            "id": "spiffe://example.org/ns/payments/sa/api",
            "provider": "spiffe",
            "issuer": "spiffe://example.org",
            "subject": "spiffe://example.org/ns/payments/sa/api",
            "tenant": "example.org",
            "name": "/ns/payments/sa/api",
        }),
    );
    assert_attributes(
        &identity,
        &[("spiffe.trust_domain", "example.org"), ("svid", "spiffe://example.org/ns/payments/sa/api")],
    );
    broker.stop().await;
}

/// Every JWT kind side by side: tokens with an `iss` go to the source naming it, a
/// JWT-SVID without one to the `spiffe` source, an unknown `iss` nowhere.
#[tokio::test(flavor = "multi_thread")]
async fn one_broker_routes_each_platform_to_its_source() {
    let keys = PeerKeys::new().await;
    let sources = [
        kubernetes_source(&keys),
        github_source(&keys),
        gitlab_source(&keys),
        gcp_source(&keys),
        azure_source(&keys),
        spiffe_source(&keys),
    ]
    .concat();
    let broker = broker(&sources, &["eks-prod", "github", "gitlab", "gcp", "azure", "spire"]).await;
    let now = broker.clock.now();
    for (kind, iss, source) in [
        ("kubernetes", EKS_ISSUER.to_string(), "eks-prod"),
        ("github_actions", GITHUB_ISSUER.to_string(), "github"),
        ("gitlab_ci", GITLAB_ISSUER.to_string(), "gitlab"),
        ("gcp", GOOGLE_ISSUER.to_string(), "gcp"),
        ("azure_v1", format!("https://sts.windows.net/{TENANT}/"), "azure"),
        ("spiffe", "-".to_string(), "spire"),
    ] {
        let token = keys.mint(kind, &iss, now).await;
        assert_eq!(exchanged_identity(&broker, &token).await["source"], source, "{kind}");
    }
    // An issuer no source names goes to the spiffe source (it takes JWTs by type), which
    // refuses it for carrying an `iss` at all.
    let unknown = keys.mint("gitlab_ci", "https://gitlab.evil.example", now).await;
    assert_eq!(broker.exchange(&unknown, "internal-api").await.0, 400);
    assert_eq!(crate::last_reason(&broker), "TS-SRC-ISSUER");
    let status: Value = broker.admin_get("/v1/status").await.1;
    let names: Vec<&str> =
        status["sources"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["azure", "eks-prod", "gcp", "github", "gitlab", "spire"], "each source listed once");
    broker.stop().await;
}
