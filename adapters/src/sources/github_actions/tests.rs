use serde_json::{Value, json};

use super::GITHUB_ISSUER;
use super::{GithubActionsSourceConfig, KIND};
use crate::jwt::testkit::{NOW, SourceFixture, TestKey, jwks, merged, subject_jwt};
use crate::source::SourceError;

fn entry(extra: Value) -> Value {
    merged(
        json!({
            "type": "github_actions",
            "name": "github",
            "audiences": ["https://tessera.example.com"],
            "allowed_owner_ids": [65],
            "jwks_file": "jwks.json",
        }),
        &extra,
    )
}

/// The example token of GitHub's "Understanding the OIDC token", with our audience.
fn actions(extra: Value) -> Value {
    merged(
        json!({
            "jti": "example-id",
            "sub": "repo:octo-org/octo-repo:environment:prod",
            "environment": "prod",
            "aud": "https://tessera.example.com",
            "ref": "refs/heads/main",
            "sha": "example-sha",
            "repository": "octo-org/octo-repo",
            "repository_owner": "octo-org",
            "actor_id": "12",
            "repository_visibility": "private",
            "repository_id": "74",
            "repository_owner_id": "65",
            "run_id": "example-run-id",
            "run_number": "10",
            "run_attempt": "2",
            "runner_environment": "github-hosted",
            "actor": "octocat",
            "workflow": "example-workflow",
            "head_ref": "",
            "base_ref": "",
            "event_name": "workflow_dispatch",
            "ref_type": "branch",
            "ref_protected": "true",
            "workflow_ref": "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
            "job_workflow_ref": "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
            "iss": GITHUB_ISSUER,
            "nbf": NOW - 600,
            "exp": NOW + 300,
            "iat": NOW,
        }),
        &extra,
    )
}

fn fixture() -> SourceFixture<GithubActionsSourceConfig> {
    SourceFixture::new(KIND, TestKey::rsa("gh-1"), "RS256", entry)
}

#[test]
fn an_owner_allow_list_is_required() {
    let f = fixture();
    let field = |extra: Value| f.build(extra).unwrap_err().field;
    assert_eq!(field(json!({ "allowed_owner_ids": null })), Some("allowed_owner_ids"));
    assert_eq!(field(json!({ "allowed_owner_ids": [] })), Some("allowed_owner_ids"));
    assert_eq!(field(json!({ "allowed_owner_ids": null, "allowed_owners": [] })), Some("allowed_owner_ids"));
    assert_eq!(field(json!({ "allowed_owners": [""] })), Some("allowed_owners"));
    assert!(f.build(json!({ "allowed_owner_ids": null, "allowed_owners": ["octo-org"] })).is_ok());
    assert_eq!(field(json!({ "audiences": [] })), Some("audiences"));
}

#[tokio::test]
async fn actions_token_maps_to_the_identity() {
    let f = fixture();
    let source = f.source(json!({ "attributes": { "deploy_env": "claims.environment" } }));
    assert_eq!(source.kind(), "github_actions");
    assert_eq!(source.issuers(), vec![GITHUB_ISSUER.to_string()]);
    let id = f.verify(&source, &actions(json!({}))).await.unwrap();
    assert_eq!(id.id, "github://octo-org/octo-repo");
    f.assert_id_shape(json!({}), &id);
    assert_eq!(id.subject, "repo:octo-org/octo-repo:environment:prod");
    assert_eq!(id.issuer, GITHUB_ISSUER);
    assert_eq!(id.tenant.as_deref(), Some("octo-org"));
    assert_eq!(id.namespace.as_deref(), Some("octo-org/octo-repo"));
    assert_eq!(id.name.as_deref(), Some("example-workflow"));
    assert_eq!(id.instance.as_deref(), Some("example-run-id"));
    assert_eq!(id.region, None);
    let attr = |k: &str| id.attributes.get(k).map(String::as_str);
    for (key, value) in [
        ("github.repository", "octo-org/octo-repo"),
        ("github.repository_id", "74"),
        ("github.repository_owner", "octo-org"),
        ("github.repository_owner_id", "65"),
        ("github.ref", "refs/heads/main"),
        ("github.ref_type", "branch"),
        ("github.environment", "prod"),
        ("github.event_name", "workflow_dispatch"),
        ("github.workflow_ref", "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main"),
        ("github.job_workflow_ref", "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main"),
        ("github.sha", "example-sha"),
        ("github.run_id", "example-run-id"),
        ("github.runner_environment", "github-hosted"),
        ("deploy_env", "prod"),
    ] {
        assert_eq!(attr(key), Some(value), "{key}");
    }
    assert_eq!(attr("github.sub"), None, "registered claims are identity fields, not attributes");
}

#[tokio::test]
async fn owners_off_the_allow_list_are_refused() {
    let f = fixture();
    let by_id = f.source(json!({}));
    let stranger = actions(json!({
        "repository": "mallory/octo-repo", "repository_owner": "mallory", "repository_owner_id": "666",
    }));
    assert!(matches!(f.verify(&by_id, &stranger).await, Err(SourceError::Policy(_))));
    // A renamed owner keeps its id: still trusted by id.
    let renamed = actions(json!({ "repository": "octo-corp/octo-repo", "repository_owner": "octo-corp" }));
    assert!(f.verify(&by_id, &renamed).await.is_ok());
    // By name, case-insensitively; someone who took over the name is not stopped by a
    // name list, which is why ids are preferred.
    let by_name = f.source(json!({ "allowed_owner_ids": null, "allowed_owners": ["Octo-Org"] }));
    assert!(f.verify(&by_name, &actions(json!({}))).await.is_ok());
    assert!(matches!(f.verify(&by_name, &renamed).await, Err(SourceError::Policy(_))));
    // Numeric ids are accepted too (some GitHub Enterprise Server versions).
    assert!(f.verify(&by_id, &actions(json!({ "repository_owner_id": 65 }))).await.is_ok());
}

#[tokio::test]
async fn required_claims_must_be_present_and_consistent() {
    let f = fixture();
    let source = f.source(json!({}));
    for claim in ["repository", "repository_owner", "repository_owner_id", "repository_id"] {
        let err = f.verify(&source, &actions(json!({ claim: null }))).await.unwrap_err();
        assert!(matches!(err, SourceError::MissingClaim(c) if c == claim), "{claim}: {err:?}");
    }
    let err = f.verify(&source, &actions(json!({ "repository_owner_id": ["65"] }))).await.unwrap_err();
    assert!(matches!(err, SourceError::InvalidClaim("repository_owner_id")), "{err:?}");
    // The repository must belong to the owner the token names.
    for repository in ["other-org/octo-repo", "octo-org", "octo-org/", "octo-orgx/octo-repo"] {
        let err = f.verify(&source, &actions(json!({ "repository": repository }))).await.unwrap_err();
        assert!(matches!(err, SourceError::InvalidClaim("repository")), "{repository}: {err:?}");
    }
}

#[tokio::test]
async fn a_ghes_issuer_is_configurable_and_exact() {
    let f = fixture();
    let ghes = "https://github.example.com/_services/token";
    let source = f.source(json!({ "issuer": ghes }));
    assert_eq!(source.issuers(), vec![ghes.to_string()]);
    assert!(f.verify(&source, &actions(json!({ "iss": ghes }))).await.is_ok());
    assert!(matches!(f.verify(&source, &actions(json!({}))).await, Err(SourceError::IssuerMismatch)));
}

#[tokio::test]
async fn defaults_pin_rs256_and_one_hour() {
    let f = fixture();
    let source = f.source(json!({}));
    let long = actions(json!({ "nbf": NOW, "exp": NOW + 3601 }));
    assert!(matches!(f.verify(&source, &long).await, Err(SourceError::LifetimeTooLong)));
    let ec = TestKey::p256("gh-ec");
    f.dir.write("jwks.json", &jwks(&[f.key.jwk(), ec.jwk()]));
    let ec_source = f.source(json!({}));
    let token = ec.token("ES256", &actions(json!({})));
    assert!(matches!(ec_source.verify(&subject_jwt(token)).await, Err(SourceError::DisallowedAlgorithm)));
}

/// Explaining without a token: the repository comes from the subject, as from a token.
#[test]
fn a_subject_alone_sketches_the_repository_identity() {
    use crate::jwt::{ClaimsMapper as _, sketch_base};
    let mapper = super::verify::GithubActionsClaims { owner_ids: vec![], owners: vec!["octo-org".into()] };
    let base = |subject: &str| sketch_base(KIND, "gh", GITHUB_ISSUER, subject);
    let identity = mapper.sketch(base("repo:octo-org/payments:ref:refs/heads/main")).unwrap();
    assert_eq!(identity.id, "github://octo-org/payments");
    assert_eq!(identity.tenant.as_deref(), Some("octo-org"));
    assert_eq!(identity.namespace.as_deref(), Some("octo-org/payments"));
    assert_eq!(identity.issuer, GITHUB_ISSUER);
    assert!(mapper.sketch(base("octo-org/payments")).unwrap_err().contains("repo:OWNER/REPOSITORY"));
}
