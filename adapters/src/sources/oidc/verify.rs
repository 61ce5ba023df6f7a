//! Verified OIDC claims to the normalized identity.

use serde_json::Value;

use super::KIND;
use super::config::ClaimMapping;
use crate::identity::Identity;
use crate::jwt::VerifiedClaims;
use crate::jwt::attributes::{REGISTERED_CLAIMS, flatten_claims};
use crate::source::SourceError;

/// `id = oidc://{source}/{subject}`; further claims become `oidc.*` attributes.
pub(super) fn identity(
    source: &str,
    mapping: &ClaimMapping,
    claims: &VerifiedClaims,
) -> Result<Identity, SourceError> {
    // The error names `sub` for the default mapping; a configured claim is reported as
    // `subject` (its name is config, not a fixed string).
    let label = if mapping.subject == "sub" { "sub" } else { "subject" };
    let subject = match claims.get(&mapping.subject) {
        None => return Err(SourceError::MissingClaim(label)),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(SourceError::InvalidClaim(label)),
    };
    let field = |claim: &Option<String>| claim.as_deref().and_then(|name| text(claims, name));
    Ok(Identity {
        id: format!("oidc://{source}/{subject}"),
        provider: KIND.to_owned(),
        source: source.to_owned(),
        issuer: claims.issuer().to_owned(),
        subject,
        tenant: field(&mapping.tenant),
        namespace: field(&mapping.namespace),
        name: field(&mapping.name),
        instance: field(&mapping.instance),
        region: None,
        attributes: flatten_claims(KIND, claims.claims(), &REGISTERED_CLAIMS),
        expires_at: claims.expires_at(),
    })
}

/// A scalar claim as text; absent, null, empty, objects and arrays give `None`, so a rule
/// matching the field simply does not match.
fn text(claims: &VerifiedClaims, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => {
            tracing::debug!(claim = name, "mapped claim is not a non-empty scalar; field left empty");
            None
        }
    }
}
