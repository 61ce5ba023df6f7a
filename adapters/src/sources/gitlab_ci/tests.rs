use serde_json::{Value, json};

use super::{GitlabCiSourceConfig, KIND};
use crate::jwt::testkit::{NOW, SourceFixture, TestKey, merged};
use crate::source::SourceError;

const ISS: &str = "https://gitlab.example.com";

fn entry(extra: Value) -> Value {
    merged(
        json!({
            "type": "gitlab_ci",
            "name": "gitlab",
            "issuer": ISS,
            "audiences": ["https://tessera.example.com"],
            "allowed_namespaces": ["my-group"],
            "jwks_file": "jwks.json",
        }),
        &extra,
    )
}

/// The example payload of GitLab's "Token payload" documentation.
fn id_token(extra: Value) -> Value {
    merged(
        json!({
            "namespace_id": "72",
            "namespace_path": "my-group",
            "project_id": "20",
            "project_path": "my-group/my-project",
            "user_id": "1",
            "user_login": "sample-user",
            "user_email": "sample-user@example.com",
            "user_access_level": "developer",
            "pipeline_id": "574",
            "pipeline_source": "push",
            "job_id": "302",
            "ref": "feature-branch-1",
            "ref_type": "branch",
            "ref_path": "refs/heads/feature-branch-1",
            "ref_protected": "false",
            "environment": "test-environment2",
            "environment_protected": "false",
            "deployment_tier": "testing",
            "environment_action": "start",
            "runner_id": 1,
            "runner_environment": "self-hosted",
            "sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
            "project_visibility": "public",
            "ci_config_ref_uri": "gitlab.example.com/my-group/my-project//.gitlab-ci.yml@refs/heads/main",
            "ci_config_sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
            "groups_direct": ["mygroup/mysubgroup", "myothergroup/myothersubgroup"],
            "jti": "235b3a54-b797-45c7-ae9a-f72d7bc6ef5b",
            "iss": ISS,
            "iat": NOW,
            "nbf": NOW - 5,
            "exp": NOW + 3600,
            "sub": "project_path:my-group/my-project:ref_type:branch:ref:feature-branch-1",
            "aud": "https://tessera.example.com",
        }),
        &extra,
    )
}

fn fixture() -> SourceFixture<GitlabCiSourceConfig> {
    SourceFixture::new(KIND, TestKey::rsa("gl-1"), "RS256", entry)
}

#[test]
fn config_requires_a_namespace_allow_list() {
    let f = fixture();
    let field = |extra: Value| f.build(extra).unwrap_err().field;
    assert_eq!(field(json!({ "allowed_namespaces": null })), Some("allowed_namespaces"));
    assert_eq!(field(json!({ "allowed_namespaces": [] })), Some("allowed_namespaces"));
    for bad in ["", "/my-group", "my-group/"] {
        assert_eq!(field(json!({ "allowed_namespaces": [bad] })), Some("allowed_namespaces"), "{bad}");
    }
    assert!(f.build(json!({ "allowed_namespaces": null, "allowed_namespace_ids": [72] })).is_ok());
    assert_eq!(field(json!({ "issuer": "gitlab.example.com" })), Some("issuer"));
    // The default issuer is GitLab.com's.
    let source = f.build(json!({ "issuer": null })).unwrap();
    assert_eq!(source.issuers(), vec!["https://gitlab.com".to_string()]);
}

#[tokio::test]
async fn id_token_maps_to_the_identity() {
    let f = fixture();
    let source = f.source(json!({ "attributes": { "tier": "claims.deployment_tier" } }));
    assert_eq!(source.kind(), "gitlab_ci");
    let id = f.verify(&source, &id_token(json!({}))).await.unwrap();
    assert_eq!(id.id, "gitlab://gitlab.example.com/my-group/my-project");
    f.assert_id_shape(json!({}), &id);
    assert_eq!(id.subject, "project_path:my-group/my-project:ref_type:branch:ref:feature-branch-1");
    assert_eq!(id.issuer, ISS);
    assert_eq!(id.tenant.as_deref(), Some("my-group"));
    assert_eq!(id.namespace.as_deref(), Some("my-group/my-project"));
    assert_eq!(id.name, None);
    assert_eq!(id.instance.as_deref(), Some("302"));
    let attr = |k: &str| id.attributes.get(k).map(String::as_str);
    for (key, value) in [
        ("gitlab.project_path", "my-group/my-project"),
        ("gitlab.project_id", "20"),
        ("gitlab.namespace_path", "my-group"),
        ("gitlab.namespace_id", "72"),
        ("gitlab.ref", "feature-branch-1"),
        ("gitlab.ref_protected", "false"),
        ("gitlab.environment", "test-environment2"),
        ("gitlab.pipeline_source", "push"),
        ("gitlab.pipeline_id", "574"),
        ("gitlab.job_id", "302"),
        ("gitlab.runner_id", "1"),
        ("gitlab.groups_direct", r#"["mygroup/mysubgroup","myothergroup/myothersubgroup"]"#),
        ("tier", "testing"),
    ] {
        assert_eq!(attr(key), Some(value), "{key}");
    }
}

#[tokio::test]
async fn namespaces_are_matched_with_their_subgroups_only() {
    let f = fixture();
    let source = f.source(json!({ "allowed_namespaces": ["My-Group"] }));
    let sub =
        id_token(json!({ "namespace_path": "my-group/payments", "project_path": "my-group/payments/api" }));
    assert!(f.verify(&source, &sub).await.is_ok());
    for (ns, project) in [("my-groupx", "my-groupx/api"), ("other", "other/my-group"), ("my", "my/group")] {
        let other = id_token(json!({ "namespace_path": ns, "project_path": project }));
        assert!(matches!(f.verify(&source, &other).await, Err(SourceError::Policy(_))), "{ns}");
    }
    // By id: exactly the project's namespace.
    let by_id = f.source(json!({ "allowed_namespaces": null, "allowed_namespace_ids": [72] }));
    assert!(f.verify(&by_id, &id_token(json!({}))).await.is_ok());
    let other_id = id_token(json!({ "namespace_id": "73" }));
    assert!(matches!(f.verify(&by_id, &other_id).await, Err(SourceError::Policy(_))));
}

#[tokio::test]
async fn required_claims_must_be_present_and_consistent() {
    let f = fixture();
    let source = f.source(json!({}));
    for claim in ["namespace_path", "namespace_id", "project_path", "project_id"] {
        let err = f.verify(&source, &id_token(json!({ claim: null }))).await.unwrap_err();
        assert!(matches!(err, SourceError::MissingClaim(c) if c == claim), "{claim}: {err:?}");
    }
    let elsewhere = id_token(json!({ "project_path": "other-group/my-project" }));
    assert!(matches!(f.verify(&source, &elsewhere).await, Err(SourceError::InvalidClaim("project_path"))));
}

/// Explaining without a token: the project comes from the subject, as from a token.
#[test]
fn a_subject_alone_sketches_the_project_identity() {
    use crate::jwt::{ClaimsMapper as _, sketch_base};
    let mapper = super::verify::GitlabCiClaims {
        instance: "gitlab.example.com".into(),
        namespaces: vec!["my-group".into()],
        namespace_ids: vec![],
    };
    let base = |subject: &str| sketch_base(KIND, "gl", ISS, subject);
    let identity = mapper.sketch(base("project_path:my-group/app:ref_type:branch:ref:main")).unwrap();
    assert_eq!(identity.id, "gitlab://gitlab.example.com/my-group/app");
    assert_eq!(identity.tenant.as_deref(), Some("my-group"));
    assert_eq!(identity.namespace.as_deref(), Some("my-group/app"));
    assert!(mapper.sketch(base("my-group/app")).is_err());
}
