//! A JWT-SVID to the normalized identity. `sub` is the workload's SPIFFE ID (JWT-SVID
//! §3.1); its trust domain picks the one bundle whose keys may verify the token (SPIFFE
//! Trust Domain and Bundle §3: a bundle holds the keys of one trust domain), so a key of
//! one domain never vouches for a workload of another.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::KIND;
use crate::identity::Identity;
use crate::jwt::{ClaimsMapper, JwtSource, VerifiedClaims, identity_base, peek_subject};
use crate::source::{
    FetchFailure, IdentitySource, SourceError, SubjectToken, SubjectTokenType, VerifiedIdentity,
};
use crate::spiffe_id as id;

/// The claims of one trust domain's JWT-SVIDs: `sub` must be a workload of it.
#[derive(Debug, Clone)]
pub struct SpiffeClaims {
    pub(super) trust_domain: String,
}

impl ClaimsMapper for SpiffeClaims {
    const KIND: &'static str = KIND;

    /// The subject is the SPIFFE ID, which is the id.
    fn sketch(&self, mut identity: Identity) -> Result<Identity, String> {
        let (trust_domain, path) = match id::parse(&identity.subject) {
            Some(id) if id.trust_domain == self.trust_domain && !id.path.is_empty() => {
                (id.trust_domain.to_owned(), id.path.to_owned())
            }
            _ => {
                return Err(format!(
                    "the subject is a SPIFFE ID of a workload: spiffe://{}/PATH",
                    self.trust_domain
                ));
            }
        };
        identity.id = identity.subject.clone();
        if identity.issuer.is_empty() {
            identity.issuer = format!("spiffe://{trust_domain}");
        }
        identity.attributes.insert("spiffe.trust_domain".into(), trust_domain.clone());
        identity.attributes.insert("spiffe.path".into(), path.clone());
        identity.tenant = Some(trust_domain);
        identity.name = Some(path);
        Ok(identity)
    }

    /// `id` = the SPIFFE ID itself (`spiffe://example.org/ns/payments/sa/api`).
    fn identity(&self, source: &str, claims: &VerifiedClaims) -> Result<Identity, SourceError> {
        let sub = claims.required_str("sub")?;
        let spiffe_id = id::parse(sub).ok_or(SourceError::InvalidClaim("sub"))?;
        // The trust domain's own ID names no workload.
        if spiffe_id.path.is_empty() {
            return Err(SourceError::InvalidClaim("sub"));
        }
        if spiffe_id.trust_domain != self.trust_domain {
            return Err(SourceError::Policy(
                "the token's trust domain is not the one whose keys verified it".into(),
            ));
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

/// A built `spiffe` source: the allowed trust domains, each verified by a JWT source of
/// its own (its own key set, the shared rules).
#[derive(Debug)]
pub struct SpiffeSource {
    name: String,
    domains: BTreeMap<String, JwtSource<SpiffeClaims>>,
}

impl SpiffeSource {
    pub(super) fn new(name: String, domains: BTreeMap<String, JwtSource<SpiffeClaims>>) -> Self {
        Self { name, domains }
    }
}

#[async_trait]
impl IdentitySource for SpiffeSource {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn accepts(&self, token_type: SubjectTokenType) -> bool {
        token_type == SubjectTokenType::Jwt
    }

    /// The `issuer`, shared by every trust domain; none when tokens carry no `iss`.
    fn issuers(&self) -> Vec<String> {
        self.domains.values().next().map(IdentitySource::issuers).unwrap_or_default()
    }

    /// The trust domain of the unverified `sub` picks the key set; that domain's source
    /// then verifies everything, `sub` included, as any JWT source does. Checks that need
    /// no key (shape, header, `iss`) come first, as for any JWT source; a domain not on
    /// the allow-list is refused before any key is fetched.
    async fn verify(&self, token: &SubjectToken) -> Result<VerifiedIdentity, SourceError> {
        if !self.accepts(token.token_type) {
            return Err(SourceError::UnsupportedTokenType);
        }
        // Every domain's verifier has the source's one policy.
        if let Some(any) = self.domains.values().next() {
            any.verifier().precheck(token.value.expose())?;
        }
        let sub = peek_subject(token.value.expose())?;
        let spiffe_id = id::parse(&sub).ok_or(SourceError::InvalidClaim("sub"))?;
        let domain = self
            .domains
            .get(spiffe_id.trust_domain)
            .ok_or_else(|| SourceError::Policy("trust domain is not on the allow-list".into()))?;
        domain.verify(token).await
    }

    /// As the trust domain the subject names sketches it.
    fn sketch(&self, subject: &str) -> Result<Identity, String> {
        let domain = id::parse(subject).and_then(|id| self.domains.get(id.trust_domain));
        let domains = || self.domains.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
        match domain {
            Some(source) => source.sketch(subject),
            None => Err(format!("the subject is a SPIFFE ID of one of the trust domains {}", domains())),
        }
    }

    /// Every trust domain's keys are at hand.
    fn ready(&self) -> bool {
        self.domains.values().all(IdentitySource::ready)
    }

    /// The latest failed bundle fetch of any trust domain, naming the domain.
    fn last_fetch_failure(&self) -> Option<FetchFailure> {
        self.domains
            .iter()
            .filter_map(|(domain, source)| {
                let failure = source.last_fetch_failure()?;
                Some(FetchFailure {
                    at: failure.at,
                    error: format!("trust domain {domain}: {}", failure.error),
                })
            })
            .max_by_key(|failure| failure.at)
    }

    /// Every trust domain's bundle, each named; the first failure fails the probe.
    async fn probe(&self) -> Result<String, String> {
        let mut fetched = Vec::new();
        for (domain, source) in &self.domains {
            let what = source.probe().await.map_err(|e| format!("trust domain {domain}: {e}"))?;
            fetched.push(format!("trust domain {domain}: {what}"));
        }
        Ok(fetched.join("; "))
    }
}
