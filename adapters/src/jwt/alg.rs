//! The JWS algorithms Tessera verifies (RFC 7518 §3.1, RFC 8037 §3.1) and the key type
//! each one needs.

use std::fmt;

use aws_lc_rs::signature::{self, VerificationAlgorithm};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A JWS `alg` Tessera can verify. `none` and the HMAC family (`HS256`, ...) are not
/// representable: a source can never be configured to accept them (RFC 8725 §3.1, §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    Rs256,
    Rs384,
    Rs512,
    /// RSASSA-PSS with SHA-256, salt length = hash length (RFC 7518 §3.5).
    Ps256,
    Ps384,
    Ps512,
    /// ECDSA on P-256 with SHA-256, signature as fixed-width `R || S` (RFC 7518 §3.4).
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// EdDSA with Ed25519 (RFC 8037 §3.1).
    EdDsa,
}

/// The JWK key a given algorithm needs (RFC 7518 §6, RFC 8037 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Algorithm {
    pub const ALL: [Self; 9] = [
        Self::Rs256,
        Self::Rs384,
        Self::Rs512,
        Self::Ps256,
        Self::Ps384,
        Self::Ps512,
        Self::Es256,
        Self::Es384,
        Self::EdDsa,
    ];

    /// What a source accepts when its config names no `algorithms`.
    pub const DEFAULT: [Self; 2] = [Self::Rs256, Self::Es256];

    /// The JOSE name, as in a JWS header's `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    /// Parse a JOSE `alg` name. Names are case-sensitive (RFC 7515 §4.1.1), so `rs256` is
    /// not `RS256`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub(crate) fn key_kind(self) -> KeyKind {
        match self {
            Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512 => KeyKind::Rsa,
            Self::Es256 => KeyKind::P256,
            Self::Es384 => KeyKind::P384,
            Self::EdDsa => KeyKind::Ed25519,
        }
    }

    /// RSA parameters for this algorithm; `None` for non-RSA algorithms. Keys below 2048
    /// bits are refused (RFC 7518 §3.3, §3.5).
    pub(crate) fn rsa_parameters(self) -> Option<&'static signature::RsaParameters> {
        match self {
            Self::Rs256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            Self::Rs384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
            Self::Rs512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
            Self::Ps256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
            Self::Ps384 => Some(&signature::RSA_PSS_2048_8192_SHA384),
            Self::Ps512 => Some(&signature::RSA_PSS_2048_8192_SHA512),
            Self::Es256 | Self::Es384 | Self::EdDsa => None,
        }
    }

    /// The verification algorithm for non-RSA algorithms (RSA keys are built from their
    /// components instead, see [`Algorithm::rsa_parameters`]).
    pub(crate) fn point_algorithm(self) -> Option<&'static dyn VerificationAlgorithm> {
        match self {
            Self::Es256 => Some(&signature::ECDSA_P256_SHA256_FIXED),
            Self::Es384 => Some(&signature::ECDSA_P384_SHA384_FIXED),
            Self::EdDsa => Some(&signature::ED25519),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Algorithm {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let name = String::deserialize(de)?;
        parse_config_name(&name).map_err(serde::de::Error::custom)
    }
}

/// Parse an algorithm named in a config file, with a message that says why the
/// never-acceptable ones are refused.
fn parse_config_name(name: &str) -> Result<Algorithm, String> {
    if let Some(alg) = Algorithm::from_name(name) {
        return Ok(alg);
    }
    if name.eq_ignore_ascii_case("none") {
        return Err("algorithm `none` is never accepted: unsigned tokens prove nothing".into());
    }
    if name.len() >= 2 && name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) {
        return Err(format!(
            "algorithm `{name}` is never accepted: HMAC needs a shared secret, and a public \
             key used as one lets anyone forge tokens"
        ));
    }
    let known: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
    Err(format!("unknown algorithm `{name}`; supported: {}", known.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.as_str()), Some(alg));
        }
        assert_eq!(Algorithm::from_name("rs256"), None);
        assert_eq!(Algorithm::from_name("none"), None);
        assert_eq!(Algorithm::from_name("HS256"), None);
    }

    #[test]
    fn config_refuses_none_and_hmac_with_a_reason() {
        let err = serde_json::from_str::<Algorithm>(r#""none""#).unwrap_err().to_string();
        assert!(err.contains("never accepted"), "{err}");
        let err = serde_json::from_str::<Algorithm>(r#""HS256""#).unwrap_err().to_string();
        assert!(err.contains("HMAC"), "{err}");
        let err = serde_json::from_str::<Algorithm>(r#""hs512""#).unwrap_err().to_string();
        assert!(err.contains("HMAC"), "{err}");
        let err = serde_json::from_str::<Algorithm>(r#""RS1""#).unwrap_err().to_string();
        assert!(err.contains("unknown algorithm"), "{err}");
        assert_eq!(serde_json::from_str::<Algorithm>(r#""EdDSA""#).unwrap(), Algorithm::EdDsa);
    }

    #[test]
    fn every_algorithm_has_exactly_one_way_to_verify() {
        for alg in Algorithm::ALL {
            let rsa = alg.rsa_parameters().is_some();
            let point = alg.point_algorithm().is_some();
            assert!(rsa != point, "{alg}");
            assert_eq!(rsa, alg.key_kind() == KeyKind::Rsa, "{alg}");
        }
    }
}
