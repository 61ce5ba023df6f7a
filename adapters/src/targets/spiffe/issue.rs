//! A grant to a JWT-SVID (JWT-SVID §3): `sub` the SPIFFE ID the rule's `path` renders in
//! the target's trust domain, checked against the SPIFFE ID specification before anything
//! is signed; `aud` one of the target's audiences; `exp` the granted lifetime.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::spiffe_id::{self, MAX_ID_BYTES};
use crate::target::{
    CredentialTarget, Grant, IssuedCredential, IssuedJwt, RequestDescription, RuleParam, RuleText,
    SigningAlgorithm, TargetBase, TargetError, TrustDomainBundle,
};
use crate::targets::signed::{LocalSigner, granted_ttl, rule_claims};
use crate::targets::upstream::check_grant_target;

/// The grant keys a rule for a `spiffe` target may set.
const GRANT_KEYS: &[&str] = &["path", "audience"];

/// A configured `spiffe` target, made by [`SpiffeTargetConfig`](super::SpiffeTargetConfig)
/// once its values are checked.
#[derive(Debug)]
pub struct SpiffeTarget {
    pub(super) base: TargetBase,
    pub(super) trust_domain: String,
    pub(super) audiences: Vec<String>,
    pub(super) algorithm: SigningAlgorithm,
    pub(super) refresh_hint: Duration,
    pub(super) local: LocalSigner,
}

/// What a grant's SVID says, checked: everything `issue` signs and the cache key needs.
#[derive(Debug)]
struct Svid {
    spiffe_id: String,
    audience: String,
    ttl: Duration,
    claims: Map<String, Value>,
}

impl SpiffeTarget {
    /// `spiffe://<trust domain><path>`, if it is a SPIFFE ID of a workload (SPIFFE ID §2:
    /// the path has non-empty segments of letters, digits, `.`, `-` and `_`, none `.` or
    /// `..`; the whole ID at most 2048 bytes). The trust domain's own ID names no workload.
    fn spiffe_id(&self, path: &str) -> Result<String, String> {
        if path.is_empty() {
            return Err("`path` is empty: an SVID names a workload, not the trust domain".into());
        }
        if !spiffe_id::valid_path(path) {
            return Err(format!(
                "`{path}` is not a SPIFFE ID path: it must start with `/` and have non-empty segments of \
                 letters, digits, '.', '-' and '_', none of them `.` or `..`"
            ));
        }
        let id = format!("spiffe://{}{path}", self.trust_domain);
        if id.len() > MAX_ID_BYTES {
            return Err(format!("the SPIFFE ID would be {} bytes; at most {MAX_ID_BYTES}", id.len()));
        }
        Ok(id)
    }

    fn check_audience(&self, audience: &str) -> Result<(), String> {
        if self.audiences.iter().any(|a| a == audience) {
            Ok(())
        } else {
            Err(format!(
                "audience `{audience}` is not one of the target's `audiences` ({})",
                self.audiences.join(", ")
            ))
        }
    }

    /// The rule's `audience`, else the target's only one.
    fn audience<'a>(&'a self, grant: &'a Grant) -> Result<&'a str, String> {
        match (grant.param_str("audience"), self.audiences.as_slice()) {
            (Some(audience), _) => self.check_audience(audience).map(|()| audience),
            (None, [only]) => Ok(only),
            (None, _) => Err("the rule names no `audience` and the target has several".into()),
        }
    }

    /// Every check a grant can fail, before anything is signed.
    fn svid(&self, grant: &Grant) -> Result<Svid, TargetError> {
        check_grant_target(grant, &self.base.name)?;
        let path = grant
            .param_str("path")
            .ok_or_else(|| TargetError::InvalidGrant("the rule names no `path`".into()))?;
        let spiffe_id = self.spiffe_id(path).map_err(TargetError::InvalidGrant)?;
        let audience = self.audience(grant).map_err(TargetError::InvalidGrant)?.to_owned();
        let ttl = granted_ttl(grant, self.base.max_ttl)?;
        let claims = rule_claims(grant, &[])?;
        Ok(Svid { spiffe_id, audience, ttl, claims })
    }

    /// The claim set of an SVID and its `exp`.
    pub(super) fn claims(&self, grant: &Grant) -> Result<(Map<String, Value>, i64), TargetError> {
        let svid = self.svid(grant)?;
        let (mut claims, exp) =
            self.local.registered_claims(&svid.spiffe_id, Value::from(svid.audience), svid.ttl);
        claims.extend(svid.claims);
        if let Some(act) = grant.act_claim(self.local.signer.issuer()) {
            claims.insert("act".into(), act);
        }
        Ok((claims, exp))
    }
}

#[async_trait]
impl CredentialTarget for SpiffeTarget {
    fn base(&self) -> &TargetBase {
        &self.base
    }

    fn grant_keys(&self) -> &'static [&'static str] {
        GRANT_KEYS
    }

    /// `path` always; `audience` when the target has more than one to choose from.
    fn required_grant_keys(&self) -> Vec<&'static str> {
        if self.audiences.len() > 1 { vec!["path", "audience"] } else { vec!["path"] }
    }

    fn check_grant_param(&self, key: &str, value: &RuleParam<'_>) -> Result<(), String> {
        match (key, value) {
            (_, RuleParam::Map(_)) => Err("must be a string".into()),
            ("path", RuleParam::Text(RuleText::Literal(path))) => self.spiffe_id(path).map(|_| ()),
            ("audience", RuleParam::Text(RuleText::Literal(audience))) => self.check_audience(audience),
            _ => Ok(()),
        }
    }

    /// A request's `scope` names the audience of the SVID it asks for.
    fn scope_param(&self) -> Option<&'static str> {
        Some("audience")
    }

    /// With one audience, every SVID carries it; with several, no one `aud` describes them.
    fn issued_jwt(&self) -> Option<IssuedJwt> {
        match self.audiences.as_slice() {
            [only] => Some(IssuedJwt { audience: only.clone(), algorithm: self.algorithm }),
            _ => None,
        }
    }

    fn trust_domain(&self) -> Option<TrustDomainBundle> {
        Some(TrustDomainBundle {
            trust_domain: self.trust_domain.clone(),
            algorithm: self.algorithm,
            refresh_hint: self.refresh_hint,
        })
    }

    /// Signing is local and cheap, and each SVID has its own `jti`.
    fn cacheable(&self) -> bool {
        false
    }

    /// The SVID's values, and the identity it is issued to: the SVID carries the identity
    /// only through its rendered path, but two identities never share one credential.
    fn describe_request(&self, grant: &Grant) -> Result<RequestDescription, TargetError> {
        let svid = self.svid(grant)?;
        Ok(RequestDescription::new(grant)
            .with("identity", grant.identity().id.as_str())
            .with("sub", svid.spiffe_id)
            .with("aud", svid.audience)
            .with("ttl", svid.ttl.as_secs())
            .with("claims", svid.claims))
    }

    async fn issue(&self, grant: &Grant) -> Result<IssuedCredential, TargetError> {
        let (claims, expires_at) = self.claims(grant)?;
        self.local.issue(self.algorithm, &claims, expires_at)
    }
}
