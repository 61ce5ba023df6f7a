use serde_json::{Value, json};

use super::config::tenant_id;
use super::{AzureSourceConfig, KIND};
use crate::jwt::testkit::{NOW, SourceFixture, TestKey, merged};
use crate::source::SourceError;

const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OTHER_TID: &str = "11111111-2222-3333-4444-555555555555";
const OID: &str = "a1b2c3d4-0000-4000-8000-1234567890ab";
const CLIENT: &str = "d9f1e0c2-aaaa-4bbb-8ccc-0123456789ab";
const MIRID: &str = "/subscriptions/0b1c2d3e-1111-2222-3333-444455556666/resourcegroups/payments-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments-api";

fn v1_issuer(tid: &str) -> String {
    format!("https://sts.windows.net/{tid}/")
}

fn v2_issuer(tid: &str) -> String {
    format!("https://login.microsoftonline.com/{tid}/v2.0")
}

fn entry(extra: Value) -> Value {
    merged(
        json!({
            "type": "azure",
            "name": "azure",
            "tenants": [TID],
            "audiences": ["api://tessera"],
            "jwks_file": "jwks.json",
        }),
        &extra,
    )
}

/// A v1 managed-identity access token of a user-assigned identity.
fn v1(extra: Value) -> Value {
    merged(
        json!({
            "aud": "api://tessera",
            "iss": v1_issuer(TID),
            "iat": NOW, "nbf": NOW, "exp": NOW + 86_700,
            "aio": "E2ZgYJh...",
            "appid": CLIENT,
            "appidacr": "2",
            "idp": v1_issuer(TID),
            "idtyp": "app",
            "oid": OID,
            "rh": "0.AAAA...",
            "sub": OID,
            "tid": TID,
            "uti": "Yq1cnN0FnEqXpWx3ZxUBAA",
            "ver": "1.0",
            "xms_mirid": MIRID,
        }),
        &extra,
    )
}

/// The same identity's v2 token.
fn v2(extra: Value) -> Value {
    let base = merged(
        v1(json!({})),
        &json!({ "iss": v2_issuer(TID), "idp": null, "appid": null, "appidacr": null, "azp": CLIENT, "azpacr": "2", "ver": "2.0" }),
    );
    merged(base, &extra)
}

fn fixture() -> SourceFixture<AzureSourceConfig> {
    SourceFixture::new(KIND, TestKey::rsa("entra-1"), "RS256", entry)
}

#[test]
fn tenant_ids_are_guids() {
    assert_eq!(tenant_id(TID).as_deref(), Some(TID));
    assert_eq!(tenant_id(&TID.to_uppercase()).as_deref(), Some(TID));
    for bad in [
        "contoso.onmicrosoft.com",
        "common",
        "",
        "72f988bf-86f1-41af-91ab-2d7cd011db4",
        "72f988bf-86f1-41af-91ab-2d7cd011db4g",
    ] {
        assert_eq!(tenant_id(bad), None, "{bad}");
    }
}

#[test]
fn config_requires_tenants_and_routes_one_issuer_per_tenant_and_version() {
    let f = fixture();
    let field = |extra: Value| f.build(extra).unwrap_err().field;
    assert_eq!(field(json!({ "tenants": [] })), Some("tenants"));
    assert_eq!(field(json!({ "tenants": ["contoso.onmicrosoft.com"] })), Some("tenants"));
    assert_eq!(field(json!({ "token_versions": [] })), Some("token_versions"));
    assert_eq!(
        field(json!({ "authority_host": "http://login.microsoftonline.com" })),
        Some("authority_host")
    );
    assert_eq!(field(json!({ "v1_issuer_host": "https://sts.windows.net/x" })), Some("v1_issuer_host"));
    assert!(f.config(json!({ "tenants": null })).is_err());
    assert!(f.config(json!({ "token_versions": ["v3"] })).is_err());

    let source = f.source(json!({ "tenants": [TID, OTHER_TID] }));
    let mut expected = vec![v1_issuer(TID), v2_issuer(TID), v1_issuer(OTHER_TID), v2_issuer(OTHER_TID)];
    expected.sort();
    assert_eq!(source.issuers(), expected);
    let v2_only = f.source(json!({ "token_versions": ["v2"] }));
    assert_eq!(v2_only.issuers(), vec![v2_issuer(TID)]);
}

#[tokio::test]
async fn v1_and_v2_tokens_map_to_the_same_identity() {
    let f = fixture();
    let source = f.source(json!({ "attributes": { "client": "claims.appid" } }));
    assert_eq!(source.kind(), "azure");
    let one = f.verify(&source, &v1(json!({}))).await.unwrap();
    let two = f.verify(&source, &v2(json!({}))).await.unwrap();
    for id in [&one, &two] {
        assert_eq!(id.id, format!("azure://{TID}/{OID}"));
        f.assert_id_shape(json!({}), id);
        assert_eq!(id.subject, OID);
        assert_eq!(id.tenant.as_deref(), Some(TID));
        assert_eq!(id.namespace.as_deref(), Some("0b1c2d3e-1111-2222-3333-444455556666"));
        assert_eq!(id.name.as_deref(), Some("payments-api"));
        assert_eq!(id.instance, None);
        assert_eq!(id.region, None);
        let attr = |k: &str| id.attributes.get(k).map(String::as_str);
        assert_eq!(attr("azure.oid"), Some(OID));
        assert_eq!(attr("azure.tid"), Some(TID));
        assert_eq!(attr("azure.appid"), Some(CLIENT));
        assert_eq!(attr("azure.idtyp"), Some("app"));
        assert_eq!(attr("azure.xms_mirid"), Some(MIRID));
        assert_eq!(attr("azure.subscription_id"), Some("0b1c2d3e-1111-2222-3333-444455556666"));
        assert_eq!(attr("azure.resource_group"), Some("payments-rg"));
        assert_eq!(attr("azure.resource_provider"), Some("Microsoft.ManagedIdentity/userAssignedIdentities"));
        assert_eq!(attr("azure.resource_name"), Some("payments-api"));
    }
    assert_eq!(one.issuer, v1_issuer(TID));
    assert_eq!(two.issuer, v2_issuer(TID));
    assert_eq!(one.attributes.get("azure.ver").map(String::as_str), Some("1.0"));
    assert_eq!(two.attributes.get("azure.ver").map(String::as_str), Some("2.0"));
    assert_eq!(one.attributes.get("client").map(String::as_str), Some(CLIENT));
    assert!(!two.attributes.contains_key("client"), "v2 has no appid claim");
    // Mutable names never become attributes.
    let named = v1(json!({ "name": "Payments API", "upn": "x@contoso.com", "unique_name": "x" }));
    let id = f.verify(&source, &named).await.unwrap();
    assert!(
        id.attributes.keys().all(|k| !k.contains("name") || k == "azure.resource_name"),
        "{:?}",
        id.attributes
    );
}

#[tokio::test]
async fn tid_must_be_the_issuers_tenant() {
    let f = fixture();
    let source = f.source(json!({ "tenants": [TID, OTHER_TID] }));
    // Another allowed tenant's tid under this tenant's issuer.
    let swapped = v1(json!({ "tid": OTHER_TID }));
    assert!(matches!(f.verify(&source, &swapped).await, Err(SourceError::InvalidClaim("tid"))));
    let missing = v1(json!({ "tid": null }));
    assert!(matches!(f.verify(&source, &missing).await, Err(SourceError::MissingClaim("tid"))));
    // The other tenant's own token passes.
    let other = v1(json!({ "iss": v1_issuer(OTHER_TID), "tid": OTHER_TID }));
    assert_eq!(f.verify(&source, &other).await.unwrap().tenant.as_deref(), Some(OTHER_TID));
    // A tenant not configured: its issuer is not trusted at all.
    let stranger = v1(json!({ "iss": v1_issuer("99999999-2222-3333-4444-555555555555") }));
    assert!(matches!(f.verify(&source, &stranger).await, Err(SourceError::IssuerMismatch)));
    // `ver` must fit the issuer.
    let wrong_ver = v1(json!({ "ver": "2.0" }));
    assert!(matches!(f.verify(&source, &wrong_ver).await, Err(SourceError::InvalidClaim("ver"))));
    // A version not configured.
    let v1_only = f.source(json!({ "token_versions": ["v1"] }));
    assert!(matches!(f.verify(&v1_only, &v2(json!({}))).await, Err(SourceError::IssuerMismatch)));
}

#[tokio::test]
async fn only_app_only_managed_identity_tokens() {
    let f = fixture();
    let source = f.source(json!({}));
    let delegated = v2(json!({ "scp": "user_impersonation", "idtyp": "user" }));
    assert!(matches!(f.verify(&source, &delegated).await, Err(SourceError::Policy(_))));
    let user = v2(json!({ "idtyp": "user" }));
    assert!(matches!(f.verify(&source, &user).await, Err(SourceError::Policy(_))));
    let no_oid = v1(json!({ "oid": null }));
    assert!(matches!(f.verify(&source, &no_oid).await, Err(SourceError::MissingClaim("oid"))));
    // A service principal that is not a managed identity.
    let sp = v1(json!({ "xms_mirid": null }));
    assert!(matches!(f.verify(&source, &sp).await, Err(SourceError::MissingClaim("xms_mirid"))));
    let any_app = f.source(json!({ "managed_identities_only": false }));
    let id = f.verify(&any_app, &sp).await.unwrap();
    assert_eq!(id.name, None);
    assert_eq!(id.namespace, None);
    let bad = v1(json!({ "xms_mirid": "/subscriptions/x" }));
    assert!(matches!(f.verify(&source, &bad).await, Err(SourceError::InvalidClaim("xms_mirid"))));
    // A system-assigned identity: the resource id is the VM's.
    let vm = "/subscriptions/0b1c2d3e-1111-2222-3333-444455556666/resourceGroups/payments-rg/providers/Microsoft.Compute/virtualMachines/api-vm-1";
    let id = f.verify(&source, &v1(json!({ "xms_mirid": vm }))).await.unwrap();
    assert_eq!(id.name.as_deref(), Some("api-vm-1"));
    assert_eq!(
        id.attributes.get("azure.resource_provider").map(String::as_str),
        Some("Microsoft.Compute/virtualMachines")
    );
}
