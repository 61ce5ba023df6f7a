use serde_json::{Value, json};

use super::{KIND, KubernetesSourceConfig};
use crate::jwt::testkit::{NOW, SourceFixture, TestKey, merged};
use crate::source::SourceError;

const ISS: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

fn entry(extra: Value) -> Value {
    merged(
        json!({
            "type": "kubernetes",
            "name": "eks-prod",
            "issuer": ISS,
            "audiences": ["tessera"],
            "jwks_file": "jwks.json",
        }),
        &extra,
    )
}

/// A projected token's claims, as the kubelet requests them for a pod.
fn projected(extra: Value) -> Value {
    merged(
        json!({
            "iss": ISS,
            "sub": "system:serviceaccount:payments:api",
            "aud": ["tessera"],
            "iat": NOW, "nbf": NOW, "exp": NOW + 3600,
            "jti": "0c5b5e1d-3c9c-4d1e-9a55-2b6f6e5b8a10",
            "kubernetes.io": {
                "namespace": "payments",
                "serviceaccount": { "name": "api", "uid": "8b1f2c9e-1111-4c3a-9a0e-2d2f4b5c6d7e" },
                "pod": { "name": "api-7d9f8-x2x4z", "uid": "5e6f7a8b-2222-4c3a-9a0e-2d2f4b5c6d7e" },
                "node": { "name": "ip-10-0-1-23.eu-west-1.compute.internal", "uid": "9a8b7c6d-3333-4c3a-9a0e-2d2f4b5c6d7e" },
            },
        }),
        &extra,
    )
}

fn fixture() -> SourceFixture<KubernetesSourceConfig> {
    SourceFixture::new(KIND, TestKey::rsa("k8s-1"), "RS256", entry)
}

#[test]
fn config_refuses_legacy_issuer_and_api_server_audiences() {
    let f = fixture();
    assert_eq!(f.field(json!({ "issuer": "kubernetes/serviceaccount" })), Some("issuer"));
    for aud in [
        "https://kubernetes.default.svc",
        "https://kubernetes.default.svc.cluster.local",
        "kubernetes.default.svc",
        "https://kubernetes.default.svc/",
        ISS,
    ] {
        assert_eq!(f.field(json!({ "audiences": ["tessera", aud] })), Some("audiences"), "{aud}");
    }
    let gke = "https://container.googleapis.com/v1/projects/p/locations/l/clusters/c";
    assert!(f.build(json!({ "audiences": [gke] })).is_ok());
    assert_eq!(f.field(json!({ "audiences": [gke], "api_server_audiences": [gke] })), Some("audiences"));
    // Explicitly allowed, it builds.
    let allowed =
        json!({ "audiences": ["https://kubernetes.default.svc"], "allow_api_server_audience": true });
    assert!(f.build(allowed).is_ok());
    assert_eq!(f.field(json!({ "cluster": "" })), Some("cluster"));
    assert_eq!(f.field(json!({ "region": "" })), Some("region"));
    assert_eq!(f.field(json!({ "audiences": [] })), Some("audiences"));
    assert_eq!(f.field(json!({ "attributes": { "team.x": "claims.a" } })), Some("attributes"));
    assert_eq!(
        f.field(json!({ "jwks_file": null, "jwks_uri": "http://example.com/jwks" })),
        Some("jwks_uri")
    );
    assert!(f.build(json!({ "jwks_file": null })).is_ok(), "discovery");
    let unknown = f.config(json!({ "audience": "x" }));
    assert!(unknown.unwrap_err().to_string().contains("unknown field"));
}

#[tokio::test]
async fn projected_token_maps_to_the_identity() {
    let f = fixture();
    let source = f.source(json!({ "cluster": "prod-eu", "region": "eu-west-1", "attributes": { "sa_uid": "claims.kubernetes.io.serviceaccount.uid" } }));
    assert_eq!(source.kind(), "kubernetes");
    assert_eq!(source.issuers(), vec![ISS.to_string()]);
    let id = f.verify(&source, &projected(json!({}))).await.unwrap();
    assert_eq!(id.id, "k8s://eks-prod/ns/payments/sa/api");
    f.assert_id_shape(json!({ "cluster": "prod-eu", "region": "eu-west-1" }), &id);
    assert_eq!(id.provider, "kubernetes");
    assert_eq!(id.source, "eks-prod");
    assert_eq!(id.issuer, ISS);
    assert_eq!(id.subject, "system:serviceaccount:payments:api");
    assert_eq!(id.tenant.as_deref(), Some("prod-eu"));
    assert_eq!(id.namespace.as_deref(), Some("payments"));
    assert_eq!(id.name.as_deref(), Some("api"));
    assert_eq!(id.instance.as_deref(), Some("api-7d9f8-x2x4z"));
    assert_eq!(id.region.as_deref(), Some("eu-west-1"));
    assert_eq!(id.expires_at, NOW + 3600);
    let attrs: Vec<(&str, &str)> = id.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        attrs,
        vec![
            ("k8s.namespace", "payments"),
            ("k8s.node", "ip-10-0-1-23.eu-west-1.compute.internal"),
            ("k8s.node_uid", "9a8b7c6d-3333-4c3a-9a0e-2d2f4b5c6d7e"),
            ("k8s.pod", "api-7d9f8-x2x4z"),
            ("k8s.pod_uid", "5e6f7a8b-2222-4c3a-9a0e-2d2f4b5c6d7e"),
            ("k8s.service_account", "api"),
            ("k8s.service_account_uid", "8b1f2c9e-1111-4c3a-9a0e-2d2f4b5c6d7e"),
            ("sa_uid", "8b1f2c9e-1111-4c3a-9a0e-2d2f4b5c6d7e"),
        ]
    );

    // A token not bound to a pod (TokenRequest for the service account alone).
    let mut unbound = projected(json!({}));
    let k8s = unbound["kubernetes.io"].as_object_mut().unwrap();
    k8s.remove("pod");
    k8s.remove("node");
    let id = f.verify(&source, &unbound).await.unwrap();
    assert_eq!(id.instance, None);
    assert!(!id.attributes.contains_key("k8s.pod"));
    // Defaults: the tenant is the source's name, no region.
    let plain = f.source(json!({}));
    let id = f.verify(&plain, &projected(json!({}))).await.unwrap();
    assert_eq!(id.tenant.as_deref(), Some("eks-prod"));
    assert_eq!(id.region, None);
}

#[tokio::test]
async fn legacy_and_foreign_shaped_tokens_are_refused() {
    let f = fixture();
    let source = f.source(json!({}));
    // A legacy Secret-based token, re-signed under the configured issuer: flat claims,
    // no exp and no aud. The shared rules stop it first (no exp)...
    let legacy = json!({
        "iss": ISS,
        "sub": "system:serviceaccount:payments:api",
        "kubernetes.io/serviceaccount/namespace": "payments",
        "kubernetes.io/serviceaccount/secret.name": "api-token-x2x4z",
        "kubernetes.io/serviceaccount/service-account.name": "api",
        "kubernetes.io/serviceaccount/service-account.uid": "8b1f2c9e-1111-4c3a-9a0e-2d2f4b5c6d7e",
    });
    assert!(matches!(f.verify(&source, &legacy).await, Err(SourceError::MissingClaim("exp"))));
    // ... and with exp and aud added, its legacy claims still refuse it.
    let dressed = merged(legacy, &json!({ "aud": "tessera", "iat": NOW, "exp": NOW + 600 }));
    assert!(matches!(f.verify(&source, &dressed).await, Err(SourceError::Policy(_))));
    let mixed =
        merged(projected(json!({})), &json!({ "kubernetes.io/serviceaccount/namespace": "payments" }));
    assert!(matches!(f.verify(&source, &mixed).await, Err(SourceError::Policy(_))));

    let no_k8s = projected(json!({ "kubernetes.io": null }));
    assert!(matches!(f.verify(&source, &no_k8s).await, Err(SourceError::MissingClaim("kubernetes.io"))));
    let bad_k8s = projected(json!({ "kubernetes.io": "payments" }));
    assert!(matches!(f.verify(&source, &bad_k8s).await, Err(SourceError::InvalidClaim("kubernetes.io"))));
    let mut no_ns = projected(json!({}));
    no_ns["kubernetes.io"].as_object_mut().unwrap().remove("namespace");
    assert!(matches!(
        f.verify(&source, &no_ns).await,
        Err(SourceError::MissingClaim("kubernetes.io.namespace"))
    ));
    let mut no_sa = projected(json!({}));
    no_sa["kubernetes.io"].as_object_mut().unwrap().remove("serviceaccount");
    assert!(matches!(
        f.verify(&source, &no_sa).await,
        Err(SourceError::MissingClaim("kubernetes.io.serviceaccount"))
    ));
    // sub must name the same service account as the kubernetes.io claims.
    let other_sub = projected(json!({ "sub": "system:serviceaccount:kube-system:admin" }));
    assert!(matches!(f.verify(&source, &other_sub).await, Err(SourceError::InvalidClaim("sub"))));
}

#[tokio::test]
async fn tokens_also_valid_for_the_api_server_are_refused_unless_allowed() {
    let f = fixture();
    let source = f.source(json!({}));
    for extra in ["https://kubernetes.default.svc", ISS] {
        let both = projected(json!({ "aud": ["tessera", extra] }));
        assert!(matches!(f.verify(&source, &both).await, Err(SourceError::Policy(_))), "{extra}");
    }
    let allowing = f.source(json!({ "allow_api_server_audience": true }));
    let both = projected(json!({ "aud": ["tessera", "https://kubernetes.default.svc"] }));
    assert!(f.verify(&allowing, &both).await.is_ok());
}
