//! Verified Entra managed-identity token claims to the normalized identity.
//!
//! A managed identity's access token (Microsoft identity platform, "Access token claims
//! reference") carries, beside the registered claims: `tid` (tenant), `oid` (the
//! identity's object id, immutable), `sub` (equal to `oid` for app-only tokens), `appid`
//! (v1) or `azp` (v2) (the client id), `idtyp: app`, `ver` (`1.0` or `2.0`), and
//! `xms_mirid`, the Azure resource id of the identity:
//! `/subscriptions/{sub}/resourcegroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}`
//! for a user-assigned identity, the VM's (or other resource's) id for a system-assigned
//! one. Display names and emails are never used: they are mutable.

use std::collections::HashMap;

use serde_json::Value;

use super::KIND;
use crate::identity::Identity;
use crate::jwt::{ClaimsMapper, VerifiedClaims, identity_base};
use crate::source::SourceError;

/// The tenant and token version an issuer stands for.
#[derive(Debug, Clone)]
pub(super) struct IssuerTenant {
    pub(super) tenant: String,
    pub(super) ver: &'static str,
}

/// Issuer to tenant, and whether only managed identities are accepted.
#[derive(Debug, Clone)]
pub struct AzureClaims {
    pub(super) issuers: HashMap<String, IssuerTenant>,
    pub(super) managed_identities_only: bool,
}

/// The parts of an Azure resource id (`/subscriptions/{s}/resourceGroups/{g}/providers/
/// {namespace}/{type}/{name}`), segment names compared case-insensitively as ARM does.
struct ResourceId<'a> {
    subscription: &'a str,
    resource_group: &'a str,
    provider: String,
    name: &'a str,
}

fn resource_id(text: &str) -> Option<ResourceId<'_>> {
    let segments: Vec<&str> = text.strip_prefix('/')?.split('/').collect();
    match segments.as_slice() {
        [subs, subscription, groups, resource_group, providers, namespace, kind, name]
            if subs.eq_ignore_ascii_case("subscriptions")
                && groups.eq_ignore_ascii_case("resourcegroups")
                && providers.eq_ignore_ascii_case("providers")
                && [subscription, resource_group, namespace, kind, name].iter().all(|s| !s.is_empty()) =>
        {
            Some(ResourceId { subscription, resource_group, provider: format!("{namespace}/{kind}"), name })
        }
        _ => None,
    }
}

impl ClaimsMapper for AzureClaims {
    const KIND: &'static str = KIND;

    /// The subject is the object id (`oid`); the tenant is this source's, when it trusts
    /// one only.
    fn sketch(&self, mut identity: Identity) -> Result<Identity, String> {
        let tenants: std::collections::BTreeSet<&str> =
            self.issuers.values().map(|t| t.tenant.as_str()).collect();
        let [tenant] = tenants.into_iter().collect::<Vec<_>>()[..] else {
            return Err(
                "this source trusts several tenants: give `id: azure://TENANT/OID` and `tenant`".into()
            );
        };
        identity.id = format!("azure://{tenant}/{}", identity.subject);
        identity.tenant = Some(tenant.to_owned());
        Ok(identity)
    }

    /// `id = azure://{tid}/{oid}`.
    fn identity(&self, source: &str, claims: &VerifiedClaims) -> Result<Identity, SourceError> {
        let expected =
            claims.issuer().and_then(|iss| self.issuers.get(iss)).ok_or(SourceError::IssuerMismatch)?;
        // The issuer names a tenant; the token must be that tenant's, or a token of one
        // tenant could pass under another's issuer.
        if claims.required_str("tid")? != expected.tenant {
            return Err(SourceError::InvalidClaim("tid"));
        }
        if let Some(ver) = claims.get("ver")
            && ver.as_str() != Some(expected.ver)
        {
            return Err(SourceError::InvalidClaim("ver"));
        }
        // App-only tokens only: a delegated token (`scp`, `idtyp: user`) stands for a
        // signed-in user, not a workload.
        if claims.get("scp").is_some() || claims.get("idtyp").and_then(Value::as_str) == Some("user") {
            return Err(SourceError::Policy(
                "delegated (user) tokens are refused: workload identities only".into(),
            ));
        }
        let oid = claims.required_str("oid")?;
        let mirid = match claims.get("xms_mirid") {
            None | Some(Value::Null) if self.managed_identities_only => {
                return Err(SourceError::MissingClaim("xms_mirid"));
            }
            None | Some(Value::Null) => None,
            Some(Value::String(m)) => {
                Some(resource_id(m).map(|r| (m.as_str(), r)).ok_or(SourceError::InvalidClaim("xms_mirid"))?)
            }
            Some(_) => return Err(SourceError::InvalidClaim("xms_mirid")),
        };
        let id = format!("azure://{}/{oid}", expected.tenant);
        let mut identity = identity_base(KIND, source, claims, id, oid.to_owned());
        identity.tenant = Some(expected.tenant.clone());
        let attrs = &mut identity.attributes;
        attrs.insert("azure.tid".into(), expected.tenant.clone());
        attrs.insert("azure.oid".into(), oid.to_owned());
        attrs.insert("azure.ver".into(), expected.ver.to_owned());
        // v1 names the client `appid`, v2 `azp`.
        if let Some(client) = claims.text("appid").or_else(|| claims.text("azp")) {
            attrs.insert("azure.appid".into(), client);
        }
        if let Some(idtyp) = claims.text("idtyp") {
            attrs.insert("azure.idtyp".into(), idtyp);
        }
        if let Some((text, resource)) = mirid {
            attrs.insert("azure.xms_mirid".into(), text.to_owned());
            attrs.insert("azure.subscription_id".into(), resource.subscription.to_owned());
            attrs.insert("azure.resource_group".into(), resource.resource_group.to_owned());
            attrs.insert("azure.resource_provider".into(), resource.provider);
            attrs.insert("azure.resource_name".into(), resource.name.to_owned());
            identity.namespace = Some(resource.subscription.to_owned());
            identity.name = Some(resource.name.to_owned());
        }
        Ok(identity)
    }
}
