//! Verifying a Txn-Token presented as the `subject_token` of a replacement request: one
//! Tessera signed for this trust domain, unexpired (no leeway: draft §17 forbids replacing
//! an expired Txn-Token), typed `txntoken+jwt` so no other Tessera JWT passes for one.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde_json::{Map, Value};
use tessera_adapters::jwt::{Algorithm, HeaderRule, IssuerRule, JwtPolicy, KeySet, verify_with_keys};
use tessera_adapters::targets::txn_token::TXN_TOKEN_TYP;
use tessera_adapters::{Clock, SourceError};

use crate::issuer::Issuer;

/// What a verified Txn-Token says (draft §9.2).
#[derive(Debug, Clone)]
pub struct PriorTxn {
    pub txn: String,
    pub sub: String,
    pub scope: Vec<String>,
    pub req_wl: String,
    pub tctx: Map<String, Value>,
    pub rctx: Map<String, Value>,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: i64,
}

/// The issuer's JWKS document, and the keys of one algorithm parsed from it.
type CachedKeys = (Arc<[u8]>, Algorithm, KeySet);

/// Verifies Txn-Tokens with the issuer's published keys, parsed once per JWKS document
/// (and algorithm).
#[derive(Debug)]
pub struct TxnTokenVerifier {
    issuer: Arc<Issuer>,
    clock: Arc<dyn Clock>,
    keys: ArcSwapOption<CachedKeys>,
}

impl TxnTokenVerifier {
    pub fn new(issuer: Arc<Issuer>, clock: Arc<dyn Clock>) -> Self {
        Self { issuer, clock, keys: ArcSwapOption::empty() }
    }

    fn keys(&self, algorithm: Algorithm) -> Result<Arc<CachedKeys>, SourceError> {
        let jwks = self.issuer.jwks_json();
        if let Some(cached) = self.keys.load_full().filter(|c| Arc::ptr_eq(&c.0, &jwks) && c.1 == algorithm) {
            return Ok(cached);
        }
        let keys = KeySet::from_json(&jwks, &[algorithm]).map_err(|_| SourceError::UnknownKey)?;
        let fresh = Arc::new((jwks, algorithm, keys));
        self.keys.store(Some(Arc::clone(&fresh)));
        Ok(fresh)
    }

    /// Verify `token` as a Txn-Token of `trust_domain`, signed with `algorithm`, living at
    /// most `max_ttl`.
    pub fn verify(
        &self,
        token: &str,
        trust_domain: &str,
        algorithm: &str,
        max_ttl: Duration,
    ) -> Result<PriorTxn, SourceError> {
        let algorithm = Algorithm::from_name(algorithm).ok_or(SourceError::DisallowedAlgorithm)?;
        let policy = JwtPolicy::with_rules(
            IssuerRule::OneOf(vec![self.issuer.url().to_string()]),
            HeaderRule::Typ(TXN_TOKEN_TYP),
            vec![trust_domain.to_string()],
            vec![algorithm],
            Duration::ZERO,
            max_ttl,
        )
        .map_err(|e| SourceError::Policy(e.message))?;
        let keys = self.keys(algorithm)?;
        let claims = verify_with_keys(token, &policy, &keys.2, self.clock.now())?;
        let object = |name: &'static str| match claims.claims().get(name) {
            None => Ok(Map::new()),
            Some(Value::Object(o)) => Ok(o.clone()),
            Some(_) => Err(SourceError::InvalidClaim(name)),
        };
        Ok(PriorTxn {
            txn: claims.required_str("txn")?.to_string(),
            sub: claims.required_str("sub")?.to_string(),
            scope: claims
                .required_str("scope")?
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            req_wl: claims.required_str("req_wl")?.to_string(),
            tctx: object("tctx")?,
            rctx: object("rctx")?,
            expires_at: claims.expires_at(),
        })
    }
}
