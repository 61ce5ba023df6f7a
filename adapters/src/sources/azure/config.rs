//! The `azure` source's config: one entry under `sources:` in `broker.yaml`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::AzureSource;
use super::verify::{AzureClaims, IssuerTenant};
use crate::build::{BuildContext, BuildError, BuildSource};
use crate::config::validate_name;
use crate::identity::IdShape;
use crate::jwt::{Algorithm, HeaderRule, IssuerRule, JwksLocation, JwtSourceSettings, KeyUse, KindRules};
use crate::source::IdentitySource;

/// An Entra access-token version, by its issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenVersion {
    /// `iss: https://sts.windows.net/{tenant}/`, `ver: "1.0"`: what the managed-identity
    /// endpoint returns for most resources.
    V1,
    /// `iss: https://login.microsoftonline.com/{tenant}/v2.0`, `ver: "2.0"`: for
    /// resources whose app registration asks for v2 tokens.
    V2,
}

/// Managed identities of allow-listed Entra tenants.
///
/// ```yaml
/// - name: azure
///   type: azure
///   tenants: [72f988bf-86f1-41af-91ab-2d7cd011db47]
///   audiences: [api://tessera]
/// ```
///
/// Beside the keys below, every key of [`JwtSourceSettings`]; `algorithms` defaults to
/// `[RS256]` (what Entra signs with), `max_token_lifetime` to `25h` (managed-identity
/// tokens live 24 hours), keys to `{authority_host}/common/discovery/v2.0/keys`, the
/// set Entra signs every tenant's tokens with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSourceConfig {
    /// The source's name: 1-64 of `a-z`, `0-9`, `-`, `_`. Required.
    pub name: String,
    #[serde(flatten)]
    pub jwt: JwtSourceSettings,
    /// Entra tenant ids (GUIDs) whose identities are trusted. Required, non-empty: one
    /// issuer per tenant and version is trusted, and a token's `tid` must be its
    /// issuer's tenant.
    pub tenants: Vec<String>,
    /// Which token versions are accepted. Default `[v1, v2]`.
    #[serde(default = "default_versions")]
    pub token_versions: Vec<TokenVersion>,
    /// The v2 issuer's and the keys' host. Default `https://login.microsoftonline.com`;
    /// sovereign clouds have their own (e.g. `https://login.microsoftonline.us`).
    #[serde(default = "default_authority_host")]
    pub authority_host: String,
    /// The v1 issuer's host. Default `https://sts.windows.net`; sovereign clouds may have
    /// their own (e.g. `https://sts.chinacloudapi.cn`).
    #[serde(default = "default_v1_issuer_host")]
    pub v1_issuer_host: String,
    /// Accept only managed identities: tokens must carry `xms_mirid`, the identity's
    /// Azure resource id. `false` also admits other app-only service principals of the
    /// tenants. Default `true`.
    #[serde(default = "default_true")]
    pub managed_identities_only: bool,
}

fn default_versions() -> Vec<TokenVersion> {
    vec![TokenVersion::V1, TokenVersion::V2]
}

fn default_authority_host() -> String {
    "https://login.microsoftonline.com".to_owned()
}

fn default_v1_issuer_host() -> String {
    "https://sts.windows.net".to_owned()
}

fn default_true() -> bool {
    true
}

/// Managed-identity tokens are valid for 24 hours; an hour more leaves room for clock
/// and caching differences without accepting much longer ones.
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(25 * 3600);

/// A tenant id as Entra writes it in `tid` and issuers: a lower-case GUID.
pub(super) fn tenant_id(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let groups: Vec<&str> = lower.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    (lengths == [8, 4, 4, 4, 12] && hex).then_some(lower)
}

fn host(field: &'static str, value: &str) -> Result<String, BuildError> {
    let url = url::Url::parse(value)
        .map_err(|e| BuildError::field(field, format!("`{value}` is not a URL: {e}")))?;
    if url.scheme() != "https" || url.path() != "/" || url.query().is_some() || url.host().is_none() {
        return Err(BuildError::field(
            field,
            format!("`{value}` must be an https origin, like https://login.microsoftonline.com"),
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

impl BuildSource for AzureSourceConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// `azure://{tenant}/{oid}`.
    fn id_shape(&self) -> Option<IdShape> {
        Some(IdShape::literal("azure://").field("tenant").then("/").field("subject"))
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn IdentitySource>, BuildError> {
        validate_name(&self.name).map_err(|m| BuildError::field("name", m))?;
        // Entra signs every tenant's tokens with the same keys: only the tenant list
        // keeps other organizations out.
        if self.tenants.is_empty() {
            return Err(BuildError::field(
                "tenants",
                "name the Entra tenant ids to trust: Entra's keys sign tokens for every tenant",
            ));
        }
        if self.token_versions.is_empty() {
            return Err(BuildError::field("token_versions", "name at least one of v1, v2"));
        }
        let authority = host("authority_host", &self.authority_host)?;
        let sts = host("v1_issuer_host", &self.v1_issuer_host)?;
        let mut issuers = HashMap::new();
        for text in &self.tenants {
            let tenant = tenant_id(text).ok_or_else(|| {
                BuildError::field(
                    "tenants",
                    format!("`{text}` is not a tenant id (a GUID; domain names are not stable)"),
                )
            })?;
            for version in &self.token_versions {
                let (issuer, ver) = match version {
                    TokenVersion::V1 => (format!("{sts}/{tenant}/"), "1.0"),
                    TokenVersion::V2 => (format!("{authority}/{tenant}/v2.0"), "2.0"),
                };
                issuers.insert(issuer, IssuerTenant { tenant: tenant.clone(), ver });
            }
        }
        let mut issuer_list: Vec<String> = issuers.keys().cloned().collect();
        issuer_list.sort();
        let mapper = AzureClaims { issuers, managed_identities_only: self.managed_identities_only };
        let rules = KindRules {
            name: &self.name,
            issuer: IssuerRule::OneOf(issuer_list),
            headers: HeaderRule::Open,
            default_keys: Some(JwksLocation::Uri(format!("{authority}/common/discovery/v2.0/keys"))),
            key_use: KeyUse::Sig,
            default_algorithms: &[Algorithm::Rs256],
            allowed_algorithms: None,
            default_max_lifetime: DEFAULT_MAX_LIFETIME,
        };
        let verifier = self.jwt.verifier(rules, cx)?;
        Ok(Arc::new(AzureSource::new(self.name.clone(), verifier, self.jwt.attributes.clone(), mapper)))
    }
}
