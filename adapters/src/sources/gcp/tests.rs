use serde_json::{Value, json};

use super::verify::home_project;
use super::{GcpSourceConfig, KIND};
use crate::jwt::testkit::{NOW, SourceFixture, TestKey, merged};
use crate::source::SourceError;

const AUD: &str = "https://tessera.example.com";

fn entry(extra: Value) -> Value {
    merged(
        json!({
            "type": "gcp",
            "name": "gcp",
            "audiences": [AUD],
            "allowed_projects": ["payments-prod"],
            "jwks_file": "jwks.json",
        }),
        &extra,
    )
}

/// A `format=full` metadata-server ID token of a Compute Engine instance.
fn full(extra: Value) -> Value {
    merged(
        json!({
            "iss": "https://accounts.google.com",
            "sub": "107517467455664443765",
            "azp": "107517467455664443765",
            "aud": AUD,
            "email": "api@payments-prod.iam.gserviceaccount.com",
            "email_verified": true,
            "iat": NOW,
            "exp": NOW + 3600,
            "google": {
                "compute_engine": {
                    "instance_creation_timestamp": 1_699_990_000,
                    "instance_id": "6835582326887656987",
                    "instance_name": "api-1",
                    "project_id": "payments-prod",
                    "project_number": 739_419_398_126u64,
                    "zone": "europe-west1-b",
                },
            },
        }),
        &extra,
    )
}

fn fixture() -> SourceFixture<GcpSourceConfig> {
    SourceFixture::new(KIND, TestKey::rsa("google-1"), "RS256", entry)
}

#[test]
fn config_pins_projects_or_service_accounts() {
    let f = fixture();
    let field = |extra: Value| f.build(extra).unwrap_err().field;
    assert_eq!(field(json!({ "allowed_projects": null })), Some("allowed_projects"));
    assert_eq!(field(json!({ "allowed_projects": [] })), Some("allowed_projects"));
    assert_eq!(field(json!({ "allowed_projects": [""] })), Some("allowed_projects"));
    assert_eq!(field(json!({ "allowed_service_accounts": [""] })), Some("allowed_service_accounts"));
    assert_eq!(field(json!({ "audiences": [] })), Some("audiences"));
    assert!(f.config(json!({ "audiences": null })).is_err());
    assert!(f.config(json!({ "issuer": "x" })).is_err());
    let sa_only = json!({ "allowed_projects": null, "allowed_service_accounts": ["107517467455664443765"] });
    let source = f.build(sa_only).unwrap();
    assert_eq!(
        source.issuers(),
        vec!["accounts.google.com".to_string(), "https://accounts.google.com".to_string()]
    );
}

#[test]
fn service_account_home_projects() {
    assert_eq!(home_project("api@payments-prod.iam.gserviceaccount.com"), Some("payments-prod"));
    assert_eq!(home_project("payments-prod@appspot.gserviceaccount.com"), Some("payments-prod"));
    assert_eq!(home_project("739419398126-compute@developer.gserviceaccount.com"), Some("739419398126"));
    assert_eq!(home_project("someone@example.com"), None);
    assert_eq!(home_project("api@.iam.gserviceaccount.com"), None);
    assert_eq!(home_project("no-at-sign"), None);
}

#[tokio::test]
async fn full_format_token_maps_to_the_identity() {
    let f = fixture();
    let source = f.source(json!({ "attributes": { "vm": "claims.google.compute_engine.instance_name" } }));
    assert_eq!(source.kind(), "gcp");
    let id = f.verify(&source, &full(json!({}))).await.unwrap();
    assert_eq!(id.id, "gcp://sa/api@payments-prod.iam.gserviceaccount.com");
    f.assert_id_shape(json!({}), &id);
    assert_eq!(id.subject, "107517467455664443765");
    assert_eq!(id.issuer, "https://accounts.google.com");
    assert_eq!(id.tenant.as_deref(), Some("payments-prod"));
    assert_eq!(id.namespace, None);
    assert_eq!(id.name.as_deref(), Some("api@payments-prod.iam.gserviceaccount.com"));
    assert_eq!(id.instance.as_deref(), Some("6835582326887656987"));
    assert_eq!(id.region.as_deref(), Some("europe-west1-b"));
    let attrs: Vec<(&str, &str)> = id.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        attrs,
        vec![
            ("gcp.azp", "107517467455664443765"),
            ("gcp.email", "api@payments-prod.iam.gserviceaccount.com"),
            ("gcp.instance_creation_timestamp", "1699990000"),
            ("gcp.instance_id", "6835582326887656987"),
            ("gcp.instance_name", "api-1"),
            ("gcp.project_id", "payments-prod"),
            ("gcp.project_number", "739419398126"),
            ("gcp.service_account_project", "payments-prod"),
            ("gcp.unique_id", "107517467455664443765"),
            ("gcp.zone", "europe-west1-b"),
            ("vm", "api-1"),
        ]
    );
    // The short issuer spelling Google documents is accepted too.
    let short = full(json!({ "iss": "accounts.google.com" }));
    assert_eq!(f.verify(&source, &short).await.unwrap().issuer, "accounts.google.com");
    // Without Compute Engine claims (Cloud Run, format=standard) the service account's
    // project is the tenant.
    let run = full(json!({ "google": null }));
    let id = f.verify(&source, &run).await.unwrap();
    assert_eq!(id.tenant.as_deref(), Some("payments-prod"));
    assert_eq!(id.instance, None);
    assert_eq!(id.region, None);
}

#[tokio::test]
async fn allow_lists_admit_by_project_or_service_account() {
    let f = fixture();
    let by_project = f.source(json!({}));
    // A service account of another project on an instance of this one: admitted by
    // the instance's project.
    let foreign_sa = full(json!({ "email": "ci@tools.iam.gserviceaccount.com" }));
    assert!(f.verify(&by_project, &foreign_sa).await.is_ok());
    // This project's service account on another project's instance: admitted by the
    // account's project.
    let mut foreign_vm = full(json!({}));
    foreign_vm["google"]["compute_engine"]["project_id"] = json!("elsewhere");
    foreign_vm["google"]["compute_engine"]["project_number"] = json!(1);
    assert!(f.verify(&by_project, &foreign_vm).await.is_ok());
    // Neither: refused.
    let stranger = full(json!({ "email": "x@attacker.iam.gserviceaccount.com", "google": null }));
    assert!(matches!(f.verify(&by_project, &stranger).await, Err(SourceError::Policy(_))));
    // By project number.
    let by_number = f.source(json!({ "allowed_projects": ["739419398126"] }));
    let other_sa = full(json!({ "email": "x@attacker.iam.gserviceaccount.com" }));
    assert!(f.verify(&by_number, &other_sa).await.is_ok());
    // By service account, by email (any case) or unique id.
    for sa in ["API@payments-prod.iam.gserviceaccount.com", "107517467455664443765"] {
        let by_sa = f.source(json!({ "allowed_projects": null, "allowed_service_accounts": [sa] }));
        assert!(f.verify(&by_sa, &full(json!({ "google": null }))).await.is_ok(), "{sa}");
        let other = full(json!({ "sub": "1", "email": "other@payments-prod.iam.gserviceaccount.com" }));
        assert!(matches!(f.verify(&by_sa, &other).await, Err(SourceError::Policy(_))), "{sa}");
    }
}

#[tokio::test]
async fn email_must_be_verified() {
    let f = fixture();
    let source = f.source(json!({}));
    let err = f.verify(&source, &full(json!({ "email_verified": false }))).await.unwrap_err();
    assert!(matches!(err, SourceError::InvalidClaim("email_verified")), "{err:?}");
    let err = f.verify(&source, &full(json!({ "email_verified": "true" }))).await.unwrap_err();
    assert!(matches!(err, SourceError::InvalidClaim("email_verified")), "{err:?}");
    let err = f.verify(&source, &full(json!({ "email_verified": null }))).await.unwrap_err();
    assert!(matches!(err, SourceError::MissingClaim("email_verified")), "{err:?}");
    let err = f.verify(&source, &full(json!({ "email": null }))).await.unwrap_err();
    assert!(matches!(err, SourceError::MissingClaim("email")), "{err:?}");
    let err = f.verify(&source, &full(json!({ "google": { "compute_engine": "x" } }))).await.unwrap_err();
    assert!(matches!(err, SourceError::InvalidClaim("google.compute_engine")), "{err:?}");
}
