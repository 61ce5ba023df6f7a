//! Verified OIDC claims to the normalized identity.

use serde_json::Value;

use super::KIND;
use crate::identity::Identity;
use crate::jwt::attributes::{REGISTERED_CLAIMS, flatten_claims};
use crate::jwt::{ClaimsMapper, VerifiedClaims, identity_base};
use crate::source::SourceError;

/// Which claims fill which identity fields.
#[derive(Debug, Clone)]
pub struct OidcClaims {
    pub(super) subject: String,
    pub(super) tenant: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) instance: Option<String>,
}

impl ClaimsMapper for OidcClaims {
    const KIND: &'static str = KIND;

    fn identity(&self, source: &str, claims: &VerifiedClaims) -> Result<Identity, SourceError> {
        identity(source, self, claims)
    }

    fn sketch(&self, mut identity: Identity) -> Result<Identity, String> {
        identity.id = format!("oidc://{}/{}", identity.source, identity.subject);
        Ok(identity)
    }
}

/// `id = oidc://{source}/{subject}`; further claims become `oidc.*` attributes.
fn identity(source: &str, mapping: &OidcClaims, claims: &VerifiedClaims) -> Result<Identity, SourceError> {
    // The error names `sub` for the default mapping; a configured claim is reported as
    // `subject` (its name is config, not a fixed string).
    let label = if mapping.subject == "sub" { "sub" } else { "subject" };
    let subject = match claims.get(&mapping.subject) {
        None => return Err(SourceError::MissingClaim(label)),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(SourceError::InvalidClaim(label)),
    };
    let field = |claim: &Option<String>| claim.as_deref().and_then(|name| text(claims, name));
    let mut identity = identity_base(KIND, source, claims, format!("oidc://{source}/{subject}"), subject);
    identity.tenant = field(&mapping.tenant);
    identity.namespace = field(&mapping.namespace);
    identity.name = field(&mapping.name);
    identity.instance = field(&mapping.instance);
    flatten_claims(&mut identity, KIND, claims.claims(), &REGISTERED_CLAIMS);
    Ok(identity)
}

/// A scalar claim as text; absent, null, empty, objects and arrays give `None`, so a rule
/// matching the field simply does not match.
fn text(claims: &VerifiedClaims, name: &str) -> Option<String> {
    let text = claims.text(name);
    if text.is_none() && claims.get(name).is_some() {
        tracing::debug!(claim = name, "mapped claim is not a non-empty scalar; field left empty");
    }
    text
}
