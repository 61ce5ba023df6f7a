//! What a JWT source requires of a token, checked once when the source is built.

use std::time::Duration;

use super::alg::Algorithm;
use crate::build::BuildError;

/// The largest clock-skew allowance a source may configure.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// Default clock-skew allowance.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Default longest lifetime (`exp` minus `iat`) a token may have.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What a token's `iss` must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerRule {
    /// Present, and exactly one of these strings (RFC 7519 §4.1.1). Sources whose
    /// platform has one issuer per tenant (Azure) or spells it two ways (Google) list
    /// each.
    OneOf(Vec<String>),
    /// Absent. JWT-SVIDs need not carry `iss` (SPIFFE JWT-SVID §3 registers only `sub`,
    /// `aud` and `exp`); a source trusting a trust domain that sets none requires none,
    /// so a token naming some other issuer is refused rather than silently accepted.
    Absent,
}

/// Which JOSE header members a token may carry beyond those every JWT source refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRule {
    /// Any member not refused by the shared rules (RFC 7515 §4 leaves the set open).
    Open,
    /// Only these members (SPIFFE JWT-SVID §2: `alg`, `kid`, `typ`; `typ`, if present,
    /// `JWT` or `JOSE`).
    JwtSvid,
    /// `typ` present and equal to this media type, compared ignoring ASCII case (RFC 7515
    /// §4.1.9), so a verifier of one issuer's tokens refuses other JWS kinds it signs
    /// (RFC 8725 §3.11, explicit typing). Otherwise as [`HeaderRule::Open`].
    Typ(&'static str),
}

/// A source's JWT rules (DESIGN.md "JWT rules every JWT source shares"). Only
/// [`JwtPolicy::new`] and [`JwtPolicy::with_rules`] make one, so a policy always has an
/// issuer rule, at least one audience, at least one algorithm and a leeway of at most
/// [`MAX_LEEWAY`].
#[derive(Debug, Clone)]
pub struct JwtPolicy {
    issuer: IssuerRule,
    headers: HeaderRule,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: i64,
    max_lifetime: i64,
}

impl JwtPolicy {
    /// A policy for one issuer, with no header restriction beyond the shared rules.
    /// Errors name the config key at fault (`issuer`, `audiences`, `algorithms`, `leeway`,
    /// `max_token_lifetime`), the same in every JWT source kind.
    pub fn new(
        issuer: impl Into<String>,
        audiences: Vec<String>,
        algorithms: Vec<Algorithm>,
        leeway: Duration,
        max_lifetime: Duration,
    ) -> Result<Self, BuildError> {
        Self::with_rules(
            IssuerRule::OneOf(vec![issuer.into()]),
            HeaderRule::Open,
            audiences,
            algorithms,
            leeway,
            max_lifetime,
        )
    }

    /// A policy with an explicit issuer rule and header rule; the same checks as
    /// [`JwtPolicy::new`], and `IssuerRule::OneOf` must name at least one issuer.
    pub fn with_rules(
        issuer: IssuerRule,
        headers: HeaderRule,
        audiences: Vec<String>,
        algorithms: Vec<Algorithm>,
        leeway: Duration,
        max_lifetime: Duration,
    ) -> Result<Self, BuildError> {
        let issuer = match issuer {
            IssuerRule::OneOf(mut issuers) => {
                if issuers.is_empty() || issuers.iter().any(String::is_empty) {
                    return Err(BuildError::field("issuer", "issuer must not be empty"));
                }
                issuers.sort();
                issuers.dedup();
                IssuerRule::OneOf(issuers)
            }
            IssuerRule::Absent => IssuerRule::Absent,
        };
        if audiences.is_empty() {
            return Err(BuildError::field(
                "audiences",
                "audiences must name at least one audience: an empty list would accept none",
            ));
        }
        if audiences.iter().any(String::is_empty) {
            return Err(BuildError::field("audiences", "an audience must not be empty"));
        }
        let mut algs = algorithms;
        algs.sort();
        algs.dedup();
        if algs.is_empty() {
            return Err(BuildError::field("algorithms", "algorithms must name at least one algorithm"));
        }
        if leeway > MAX_LEEWAY {
            return Err(BuildError::field(
                "leeway",
                format!("leeway must be at most {}s", MAX_LEEWAY.as_secs()),
            ));
        }
        if max_lifetime.is_zero() {
            return Err(BuildError::field("max_token_lifetime", "max_token_lifetime must be positive"));
        }
        Ok(Self {
            issuer,
            headers,
            audiences,
            algorithms: algs,
            leeway: seconds(leeway),
            max_lifetime: seconds(max_lifetime),
        })
    }

    /// What `iss` must be (RFC 7519 §4.1.1; compared as a plain string, no URL
    /// normalization).
    pub fn issuer_rule(&self) -> &IssuerRule {
        &self.issuer
    }

    /// The issuers a token may name, for routing; empty when `iss` must be absent.
    pub fn issuers(&self) -> &[String] {
        match &self.issuer {
            IssuerRule::OneOf(issuers) => issuers,
            IssuerRule::Absent => &[],
        }
    }

    pub fn header_rule(&self) -> HeaderRule {
        self.headers
    }

    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The pinned algorithms (RFC 8725 §3.1), sorted, without duplicates.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Clock-skew allowance in seconds.
    pub fn leeway(&self) -> i64 {
        self.leeway
    }

    /// Longest lifetime in seconds.
    pub fn max_lifetime(&self) -> i64 {
        self.max_lifetime
    }
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        issuer: &str,
        audiences: &[&str],
        algs: &[Algorithm],
        leeway: u64,
    ) -> Result<JwtPolicy, BuildError> {
        JwtPolicy::new(
            issuer,
            audiences.iter().map(|s| s.to_string()).collect(),
            algs.to_vec(),
            Duration::from_secs(leeway),
            DEFAULT_MAX_LIFETIME,
        )
    }

    #[test]
    fn refuses_empty_allow_lists_and_big_leeway() {
        let err = |r: Result<JwtPolicy, BuildError>| r.unwrap_err().field;
        assert_eq!(err(policy("", &["a"], &Algorithm::DEFAULT, 0)), Some("issuer"));
        assert_eq!(err(policy("i", &[], &Algorithm::DEFAULT, 0)), Some("audiences"));
        assert_eq!(err(policy("i", &[""], &Algorithm::DEFAULT, 0)), Some("audiences"));
        assert_eq!(err(policy("i", &["a"], &[], 0)), Some("algorithms"));
        assert_eq!(err(policy("i", &["a"], &Algorithm::DEFAULT, 61)), Some("leeway"));
        let ok = policy("i", &["a"], &[Algorithm::Es256, Algorithm::Es256], 60).unwrap();
        assert_eq!(ok.algorithms(), &[Algorithm::Es256]);
        assert_eq!(ok.leeway(), 60);
        assert_eq!(ok.issuers(), &["i".to_string()]);
    }

    #[test]
    fn issuer_rules() {
        let rules = |rule: IssuerRule| {
            JwtPolicy::with_rules(
                rule,
                HeaderRule::Open,
                vec!["a".into()],
                Algorithm::DEFAULT.to_vec(),
                DEFAULT_LEEWAY,
                DEFAULT_MAX_LIFETIME,
            )
        };
        assert_eq!(rules(IssuerRule::OneOf(vec![])).unwrap_err().field, Some("issuer"));
        assert_eq!(
            rules(IssuerRule::OneOf(vec!["x".into(), String::new()])).unwrap_err().field,
            Some("issuer")
        );
        let two = rules(IssuerRule::OneOf(vec!["x".into(), "y".into()])).unwrap();
        assert_eq!(two.issuers(), &["x".to_string(), "y".to_string()]);
        let absent = rules(IssuerRule::Absent).unwrap();
        assert!(absent.issuers().is_empty());
        assert_eq!(absent.issuer_rule(), &IssuerRule::Absent);
    }
}
