//! A verified JWT-SVID to the normalized identity: `sub` is the workload's SPIFFE ID
//! (JWT-SVID §3.1), which must lie in an allowed trust domain.

use super::KIND;
use super::id;
use crate::identity::Identity;
use crate::jwt::{ClaimsMapper, VerifiedClaims, identity_base};
use crate::source::SourceError;

/// The trust-domain allow-list.
#[derive(Debug, Clone)]
pub struct SpiffeClaims {
    pub(super) trust_domains: Vec<String>,
}

impl ClaimsMapper for SpiffeClaims {
    const KIND: &'static str = KIND;

    /// `id` = the SPIFFE ID itself (`spiffe://example.org/ns/payments/sa/api`).
    fn identity(&self, source: &str, claims: &VerifiedClaims) -> Result<Identity, SourceError> {
        let sub = claims.required_str("sub")?;
        let spiffe_id = id::parse(sub).ok_or(SourceError::InvalidClaim("sub"))?;
        // The trust domain's own ID names no workload.
        if spiffe_id.path.is_empty() {
            return Err(SourceError::InvalidClaim("sub"));
        }
        if !self.trust_domains.iter().any(|td| td == spiffe_id.trust_domain) {
            return Err(SourceError::Policy("trust domain is not on the allow-list".into()));
        }
        let mut identity = identity_base(KIND, source, claims, sub.to_owned(), sub.to_owned());
        // Without `iss`, the trust domain is who vouched (its bundle's keys verified).
        if identity.issuer.is_empty() {
            identity.issuer = format!("spiffe://{}", spiffe_id.trust_domain);
        }
        identity.tenant = Some(spiffe_id.trust_domain.to_owned());
        identity.name = Some(spiffe_id.path.to_owned());
        identity.attributes.insert("spiffe.trust_domain".into(), spiffe_id.trust_domain.to_owned());
        identity.attributes.insert("spiffe.path".into(), spiffe_id.path.to_owned());
        Ok(identity)
    }
}
