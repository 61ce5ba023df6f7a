//! What a JWT source requires of a token, checked once when the source is built.

use std::time::Duration;

use super::alg::Algorithm;
use crate::registry::BuildError;

/// The largest clock-skew allowance a source may configure.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// Default clock-skew allowance.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Default longest lifetime (`exp` minus `iat`) a token may have.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A source's JWT rules (DESIGN.md "JWT rules every JWT source shares"). Only
/// [`JwtPolicy::new`] makes one, so a policy always has an issuer, at least one audience,
/// at least one algorithm and a leeway of at most [`MAX_LEEWAY`].
#[derive(Debug, Clone)]
pub struct JwtPolicy {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: i64,
    max_lifetime: i64,
}

impl JwtPolicy {
    /// Errors name the config key at fault (`issuer`, `audiences`, `algorithms`, `leeway`,
    /// `max_token_lifetime`), the same in every JWT source kind.
    pub fn new(
        issuer: impl Into<String>,
        audiences: Vec<String>,
        algorithms: Vec<Algorithm>,
        leeway: Duration,
        max_lifetime: Duration,
    ) -> Result<Self, BuildError> {
        let issuer = issuer.into();
        if issuer.is_empty() {
            return Err(BuildError::field("issuer", "issuer must not be empty"));
        }
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
            audiences,
            algorithms: algs,
            leeway: seconds(leeway),
            max_lifetime: seconds(max_lifetime),
        })
    }

    /// The exact `iss` required (RFC 7519 §4.1.1; compared as a plain string, no URL
    /// normalization).
    pub fn issuer(&self) -> &str {
        &self.issuer
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
    }
}
