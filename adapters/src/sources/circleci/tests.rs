use serde_json::{Value, json};

use super::{CircleciSourceConfig, KIND};
use crate::jwt::testkit::{NOW, SourceFixture, TestKey, merged};
use crate::source::SourceError;

const ORG: &str = "9d9ad8e3-1c53-4d6b-8e6a-2a2e0c6f1b1e";
const PROJECT: &str = "4f5a2c1e-0b8d-4e7f-9a6b-3c2d1e0f9a8b";

fn entry(extra: Value) -> Value {
    merged(
        json!({
            "type": "circleci",
            "name": "circleci",
            "organization_id": ORG,
            "audiences": [ORG],
            "jwks_file": "jwks.json",
        }),
        &extra,
    )
}

/// A token in the shape of CircleCI's "Format of the OpenID Connect ID token".
fn token(extra: Value) -> Value {
    merged(
        json!({
            "iss": format!("https://oidc.circleci.com/org/{ORG}"),
            "sub": format!("org/{ORG}/project/{PROJECT}/user/2a5b7c1d-0000-4000-8000-000000000001"),
            "aud": ORG,
            "iat": NOW,
            "exp": NOW + 3600,
            "oidc.circleci.com/project-id": PROJECT,
            "oidc.circleci.com/context-ids": ["c1a2b3c4-0000-4000-8000-00000000000a"],
            "oidc.circleci.com/vcs-origin": "github.com/octo-org/payments-api",
            "oidc.circleci.com/vcs-ref": "refs/heads/main",
            "oidc.circleci.com/ssh-rerun": false,
        }),
        &extra,
    )
}

fn fixture() -> SourceFixture<CircleciSourceConfig> {
    SourceFixture::new(KIND, TestKey::rsa("cci-1"), "RS256", entry)
}

#[test]
fn config_names_the_organization_and_sets_its_issuer() {
    let f = fixture();
    let field = |extra: Value| f.build(extra).unwrap_err().field;
    assert_eq!(field(json!({ "organization_id": "" })), Some("organization_id"));
    assert_eq!(field(json!({ "organization_id": "acme/../x" })), Some("organization_id"));
    assert_eq!(field(json!({ "allowed_project_ids": [""] })), Some("allowed_project_ids"));
    assert_eq!(field(json!({ "audiences": [] })), Some("audiences"));
    let source = f.source(json!({}));
    assert_eq!(source.kind(), "circleci");
    assert_eq!(source.issuers(), vec![format!("https://oidc.circleci.com/org/{ORG}")]);
}

#[tokio::test]
async fn token_maps_to_the_identity() {
    let f = fixture();
    let source = f.source(json!({ "attributes": { "branch": "claims.oidc.circleci.com/vcs-ref" } }));
    let id = f.verify(&source, &token(json!({}))).await.unwrap();
    assert_eq!(id.id, format!("circleci://{ORG}/project/{PROJECT}"));
    f.assert_id_shape(json!({}), &id);
    assert_eq!(id.provider, "circleci");
    assert_eq!(id.issuer, format!("https://oidc.circleci.com/org/{ORG}"));
    assert!(id.subject.starts_with(&format!("org/{ORG}/project/{PROJECT}/user/")));
    assert_eq!(id.tenant.as_deref(), Some(ORG));
    assert_eq!(id.namespace.as_deref(), Some(PROJECT));
    assert_eq!(id.name.as_deref(), Some("github.com/octo-org/payments-api"));
    let attr = |k: &str| id.attributes.get(k).map(String::as_str);
    assert_eq!(attr("circleci.project-id"), Some(PROJECT));
    assert_eq!(attr("circleci.vcs-ref"), Some("refs/heads/main"));
    assert_eq!(attr("circleci.ssh-rerun"), Some("false"));
    assert_eq!(attr("circleci.context-ids"), Some(r#"["c1a2b3c4-0000-4000-8000-00000000000a"]"#));
    assert_eq!(attr("branch"), Some("refs/heads/main"));
}

#[tokio::test]
async fn projects_ssh_reruns_and_subject_are_enforced() {
    let f = fixture();
    let source = f.source(json!({ "allowed_project_ids": [PROJECT] }));
    assert!(f.verify(&source, &token(json!({}))).await.is_ok());
    let other = "0f0f0f0f-0000-4000-8000-000000000000";
    let other_project = token(json!({
        "oidc.circleci.com/project-id": other,
        "sub": format!("org/{ORG}/project/{other}/user/u"),
    }));
    assert!(matches!(f.verify(&source, &other_project).await, Err(SourceError::Policy(_))));

    let rerun = token(json!({ "oidc.circleci.com/ssh-rerun": true }));
    assert!(matches!(f.verify(&source, &rerun).await, Err(SourceError::Policy(_))));
    let lenient = f.source(json!({ "allow_ssh_rerun": true }));
    assert!(f.verify(&lenient, &rerun).await.is_ok());

    // The subject must name this organization and the token's own project.
    let mismatched = token(json!({ "sub": format!("org/{ORG}/project/{other}/user/u") }));
    assert!(matches!(f.verify(&source, &mismatched).await, Err(SourceError::InvalidClaim("sub"))));
    let foreign_org = token(json!({ "sub": format!("org/{other}/project/{PROJECT}/user/u") }));
    assert!(matches!(f.verify(&source, &foreign_org).await, Err(SourceError::InvalidClaim("sub"))));
    let no_project = token(json!({ "oidc.circleci.com/project-id": null }));
    assert!(matches!(f.verify(&source, &no_project).await, Err(SourceError::MissingClaim(_))));
}

/// Explaining without a token: the project comes from the subject, as from a token.
#[test]
fn a_subject_alone_sketches_the_project_identity() {
    use crate::jwt::{ClaimsMapper as _, sketch_base};
    let mapper = super::verify::CircleciClaims {
        organization_id: ORG.into(),
        projects: vec![],
        allow_ssh_rerun: false,
    };
    let base = |subject: &str| sketch_base(KIND, "ci", "https://oidc.circleci.com/org/x", subject);
    let identity = mapper.sketch(base(&format!("org/{ORG}/project/{PROJECT}/user/u1"))).unwrap();
    assert_eq!(identity.id, format!("circleci://{ORG}/project/{PROJECT}"));
    assert_eq!(identity.namespace.as_deref(), Some(PROJECT));
    let other = mapper.sketch(base(&format!("org/0000/project/{PROJECT}/user/u1"))).unwrap_err();
    assert!(other.contains(ORG), "{other}");
}
