//! What every target kind has, whatever it issues: the values the
//! [`CredentialTarget`](crate::target::CredentialTarget)
//! accessors `kind`, `name`, `max_ttl`, `default_ttl` and `issued_token_type` return, and
//! the config defaults the kinds share.

use std::time::Duration;

use crate::build::BuildError;
use crate::config::validate_name;
use crate::target::SigningAlgorithm;

/// The part of a configured target every kind has. Each kind's target holds one, made when
/// its config builds, and hands it out through
/// [`CredentialTarget::base`](crate::target::CredentialTarget::base); the accessors of
/// the same names read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetBase {
    /// The target kind, as written in `type:` (the kind's `KIND`).
    pub kind: &'static str,
    /// The configured name, which is also the `audience` callers request.
    pub name: String,
    /// The longest lifetime the target issues.
    pub max_ttl: Duration,
    /// The lifetime used when a rule names none.
    pub default_ttl: Duration,
    /// The RFC 8693 `issued_token_type` of what the target issues (one of
    /// [`token_type`](crate::oauth::token_type)).
    pub issued_token_type: &'static str,
}

impl TargetBase {
    /// The base of a `kind` target issuing `issued_token_type`, once `name` is checked to
    /// be a target name. The lifetimes are the kind's to check, against its own bounds.
    pub(crate) fn new(
        kind: &'static str,
        issued_token_type: &'static str,
        name: &str,
        max_ttl: Duration,
        default_ttl: Duration,
    ) -> Result<Self, BuildError> {
        validate_name(name).map_err(|e| BuildError::field("name", e))?;
        Ok(Self { kind, name: name.to_owned(), max_ttl, default_ttl, issued_token_type })
    }
}

/// `algorithm:` when a config names none: ES256, which every verifier of Tessera's tokens
/// takes.
pub(crate) fn es256() -> SigningAlgorithm {
    SigningAlgorithm::Es256
}

/// `algorithm:` of a kind whose platform asks RS256 first (AWS).
pub(crate) fn rs256() -> SigningAlgorithm {
    SigningAlgorithm::Rs256
}

/// A lifetime of `N` minutes, the `max_ttl` or `default_ttl` of a config that names none:
/// `#[serde(default = "minutes::<15>")]`.
pub(crate) fn minutes<const N: u64>() -> Duration {
    Duration::from_secs(N * 60)
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    use super::*;
    use crate::targets::{
        aws_sts, azure, gcp, jwt, jwt_grant, kubernetes, oauth, postgres, spiffe, txn_token,
    };

    fn read<T: DeserializeOwned>(required: Value) -> T {
        serde_json::from_value(required).unwrap()
    }

    fn m(n: u64) -> Duration {
        Duration::from_secs(n * 60)
    }

    /// The lifetimes (and algorithm) each kind's config takes when it names none, as each
    /// kind's documentation says.
    #[test]
    fn every_kind_keeps_its_documented_defaults() {
        use SigningAlgorithm::{Es256, Rs256};

        let c: jwt::JwtTargetConfig = read(json!({ "name": "t" }));
        assert_eq!((c.max_ttl, c.default_ttl, c.algorithm), (m(60), m(15), Es256));
        let c: jwt_grant::JwtGrantTargetConfig =
            read(json!({ "name": "t", "authorization_server": "https://as.example" }));
        assert_eq!((c.max_ttl, c.default_ttl, c.algorithm), (m(5), m(1), Es256));
        let c: txn_token::TxnTokenTargetConfig = read(json!({ "name": "t", "audience": "td.example" }));
        assert_eq!((c.max_ttl, c.default_ttl, c.algorithm), (m(5), m(5), Es256));
        let c: spiffe::SpiffeTargetConfig =
            read(json!({ "name": "t", "trust_domain": "td.example", "audiences": ["a"] }));
        assert_eq!((c.max_ttl, c.default_ttl, c.algorithm), (m(15), m(5), Es256));
        let c: kubernetes::KubernetesTargetConfig = read(json!({ "name": "t" }));
        assert_eq!((c.max_ttl, c.default_ttl, c.algorithm), (m(60), m(15), Es256));
        let c: oauth::OauthTargetConfig =
            read(json!({ "name": "t", "token_endpoint": "https://as.example/token" }));
        assert_eq!((c.max_ttl, c.default_ttl, c.algorithm), (m(60), m(60), Es256));
        let c: gcp::GcpTargetConfig = read(json!({ "name": "t" }));
        assert_eq!((c.max_ttl, c.default_ttl, c.algorithm), (m(60), m(60), Es256));
        let c: aws_sts::AwsStsTargetConfig = read(json!({ "name": "t" }));
        assert_eq!((c.max_ttl, c.default_ttl, c.algorithm), (m(60), m(60), Rs256));
        let c: azure::AzureTargetConfig = read(json!({ "name": "t" }));
        assert_eq!((c.max_ttl, c.default_ttl), (m(60), m(60)));
        let c: postgres::PostgresTargetConfig = read(json!({
            "name": "t", "admin_url": "postgres://admin@db/app", "groups": ["g"], "owner": "o"
        }));
        assert_eq!((c.max_ttl, c.default_ttl), (m(60), m(15)));
    }

    #[test]
    fn the_base_is_made_only_for_a_valid_name() {
        let base = TargetBase::new("jwt", "urn:x", "api", m(60), m(15)).unwrap();
        assert_eq!(
            base,
            TargetBase {
                kind: "jwt",
                name: "api".into(),
                max_ttl: m(60),
                default_ttl: m(15),
                issued_token_type: "urn:x",
            }
        );
        let err = TargetBase::new("jwt", "urn:x", "", m(60), m(15)).unwrap_err();
        assert_eq!(err.field, Some("name"), "{err}");
    }
}
