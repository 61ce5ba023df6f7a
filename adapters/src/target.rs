//! The credential-target contract: a target turns a [`Grant`] into an
//! [`IssuedCredential`]. Targets sign through the [`Signer`] the broker's issuer provides;
//! they never verify subject tokens.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;
use crate::secret::Secret;
use crate::source::VerifiedIdentity;

/// What the mapping engine decided a verified identity may receive. A `Grant` can only be
/// made from a [`VerifiedIdentity`], so no target ever acts for an unverified caller; the
/// broker's mapping engine is the one place that makes them.
#[derive(Debug, Clone)]
pub struct Grant {
    identity: VerifiedIdentity,
    rule: String,
    target: String,
    scope: Option<String>,
    ttl: Duration,
    claims: serde_json::Map<String, serde_json::Value>,
    params: BTreeMap<String, serde_json::Value>,
}

impl Grant {
    /// Made by the mapping engine once a rule allows `identity` this target.
    /// `claims` and `params` are already rendered from the rule's templates.
    pub fn new(
        identity: VerifiedIdentity,
        rule: impl Into<String>,
        target: impl Into<String>,
        scope: Option<String>,
        ttl: Duration,
        claims: serde_json::Map<String, serde_json::Value>,
        params: BTreeMap<String, serde_json::Value>,
    ) -> Self {
        Self { identity, rule: rule.into(), target: target.into(), scope, ttl, claims, params }
    }

    pub fn identity(&self) -> &Identity {
        self.identity.identity()
    }

    pub fn verified(&self) -> &VerifiedIdentity {
        &self.identity
    }

    /// The name of the mapping rule that allowed this.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The configured target name.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The scope granted, if the request named one or the rule grants one.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The lifetime the rule grants; targets cap it at their own maximum.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Extra claims for issued JWTs, rendered from the rule's templates.
    pub fn claims(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.claims
    }

    /// Target-specific grant keys (`role_arn`, `session_name`, ...), rendered.
    pub fn params(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.params
    }

    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(serde_json::Value::as_str)
    }
}

/// AWS temporary credentials, in the field names AWS SDKs use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AwsCredentials {
    pub access_key_id: String,
    #[serde(serialize_with = "expose_secret", deserialize_with = "secret")]
    pub secret_access_key: Secret<String>,
    #[serde(serialize_with = "expose_secret", deserialize_with = "secret")]
    pub session_token: Secret<String>,
    /// RFC 3339 UTC.
    pub expiration: String,
}

fn expose_secret<S: serde::Serializer>(s: &Secret<String>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

fn secret<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Secret<String>, D::Error> {
    String::deserialize(de).map(Secret::new)
}

/// A credential a target issued.
#[derive(Debug, Clone)]
pub struct IssuedCredential {
    /// The RFC 8693 `access_token` value.
    pub access_token: Secret<String>,
    /// The RFC 8693 `issued_token_type` URI (one of [`token_type`](crate::oauth::token_type)).
    pub issued_token_type: &'static str,
    /// The RFC 6749 `token_type` (`Bearer`, or `N_A` where the token is not an access token).
    pub token_type: &'static str,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
    pub aws_credentials: Option<AwsCredentials>,
}

/// Why a target could not issue. Only the HTTP edge maps these to wire codes. Clone, so
/// one upstream failure can answer every exchange that was waiting on the same call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
    /// The grant's parameters are not acceptable to this target (e.g. a rendered session
    /// name with characters AWS refuses).
    #[error("grant is not valid for this target: {0}")]
    InvalidGrant(String),
    #[error("signing failed: {0}")]
    Signing(#[from] SignError),
    /// The upstream platform refused the exchange (e.g. a trust policy that does not
    /// trust Tessera for this role).
    #[error("upstream refused: {0}")]
    UpstreamRejected(String),
    /// The upstream platform could not be reached or failed.
    #[error("upstream failure: {cause}")]
    Upstream { retryable: bool, cause: String },
}

impl TargetError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidGrant(_) => "TS-TGT-INVALID-GRANT",
            Self::Signing(_) => "TS-TGT-SIGNING",
            Self::UpstreamRejected(_) => "TS-TGT-UPSTREAM-REJECTED",
            Self::Upstream { .. } => "TS-TGT-UPSTREAM",
        }
    }
}

/// Signature algorithms Tessera signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl SigningAlgorithm {
    pub const ALL: [Self; 3] = [Self::Es256, Self::Rs256, Self::EdDsa];

    /// The JOSE `alg` name (RFC 7518 §3.1, RFC 8037 §3.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SignError {
    #[error("no active signing key for {0}")]
    NoActiveKey(&'static str),
    #[error("signing operation failed")]
    Crypto,
    #[error("claims could not be encoded")]
    Encoding,
}

/// Signs JWTs as Tessera's issuer. Implemented by the broker's issuer; targets hold an
/// `Arc<dyn Signer>` from their build context.
pub trait Signer: Send + Sync + Debug {
    /// The issuer URL (`iss`) of tokens this signer makes.
    fn issuer(&self) -> &str;

    /// The algorithms the issuer has keys for; a target configured for another is a
    /// build error.
    fn algorithms(&self) -> Vec<SigningAlgorithm>;

    /// Sign `claims` with the active key for `alg`; the header carries `alg`, `kid` and
    /// `typ: JWT`. The caller sets every claim, `iss` included.
    fn sign(
        &self,
        alg: SigningAlgorithm,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Secret<String>, SignError>;
}

/// What verifying the JWTs a target issues takes, for a target whose credential is a JWT
/// signed by Tessera's own issuer (the [`Signer`]): the `aud` they carry and the one
/// algorithm they are signed with. Their issuer is the signer's, their longest lifetime
/// the target's [`max_ttl`](CredentialTarget::max_ttl). The broker's admin listener verifies
/// its bearer tokens by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedJwt {
    pub audience: String,
    pub algorithm: SigningAlgorithm,
}

/// A value of a rule's grant key as the mapping file writes it, checked when the file
/// loads: a literal, or a template with `{field}` references whose value is known only
/// once rendered for an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleText<'a> {
    Literal(&'a str),
    Template,
}

/// A rule's grant key value: a string, or a map of strings (`tags: {team: "{namespace}"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleParam<'a> {
    Text(RuleText<'a>),
    Map(Vec<(&'a str, RuleText<'a>)>),
}

/// A credential target: one configured instance of a target kind.
#[async_trait]
pub trait CredentialTarget: Send + Sync + Debug {
    /// The target kind (`jwt`, `aws_sts`, ...).
    fn kind(&self) -> &'static str;

    /// The configured name, which is also the `audience` callers request.
    fn name(&self) -> &str;

    /// The longest lifetime this target issues; rules asking for more are load errors.
    fn max_ttl(&self) -> Duration;

    /// The shortest lifetime this target issues; rules asking for less are load errors
    /// (AWS sessions last at least 15 minutes).
    fn min_ttl(&self) -> Duration {
        Duration::ZERO
    }

    /// The lifetime used when a rule names none.
    fn default_ttl(&self) -> Duration;

    /// Grant keys this target reads from a rule, beyond `target`, `scope`, `ttl` and
    /// `claims`. Any other key in a rule for this target is a load error.
    fn grant_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// Grant keys every rule for this target must set, because neither the target's config
    /// nor a default supplies them (`role_arn` for AWS). `scope` names the rule's `scope:`.
    /// Checked when mapping files load.
    fn required_grant_keys(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Check the value a rule gives grant key `key` (one of [`grant_keys`](Self::grant_keys))
    /// when the mapping file loads, so a value the platform would refuse is a load error
    /// with its position rather than a failed exchange. Literals can be checked whole;
    /// templates are checked again once rendered, in [`issue`](Self::issue).
    fn check_grant_param(&self, key: &str, value: &RuleParam<'_>) -> Result<(), String> {
        let _ = (key, value);
        Ok(())
    }

    /// The RFC 8693 `issued_token_type` of what this target issues (one of
    /// [`token_type`](crate::oauth::token_type));
    /// a request's `requested_token_type`, when given, must equal it.
    fn issued_token_type(&self) -> &'static str;

    /// The grant key whose value is the scope a rule grants (`role_arn` for AWS), when
    /// the rule has no explicit `scope:`. `None`: only `scope:` names a rule's scope.
    fn scope_param(&self) -> Option<&'static str> {
        None
    }

    /// For a target that issues JWTs signed by Tessera's own issuer, what verifying them
    /// takes; `None` for a target whose credentials are another platform's.
    fn issued_jwt(&self) -> Option<IssuedJwt> {
        None
    }

    /// Whether the broker may serve a credential this target issued to repeated identical
    /// exchanges (same identity, rule, target and scope) until shortly before it expires.
    /// Targets that call an upstream service say yes, sparing its quotas; a target whose
    /// credentials must differ per request says no.
    fn cacheable(&self) -> bool {
        true
    }

    /// Issue a credential for a grant.
    async fn issue(&self, grant: &Grant) -> Result<IssuedCredential, TargetError>;
}
