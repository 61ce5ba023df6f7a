//! The identity-source contract: a source turns a presented token into a
//! [`VerifiedIdentity`], or says precisely why it would not.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::identity::Identity;
use crate::oauth::token_type;
use crate::secret::Secret;

/// RFC 8693 §3 token types Tessera accepts as `subject_token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectTokenType {
    /// [`token_type::JWT`]
    Jwt,
    /// [`token_type::ID_TOKEN`]
    IdToken,
    /// [`token_type::AWS_SIGNED_REQUEST`]
    AwsSignedRequest,
}

impl SubjectTokenType {
    pub fn from_uri(uri: &str) -> Option<Self> {
        match uri {
            token_type::JWT => Some(Self::Jwt),
            token_type::ID_TOKEN => Some(Self::IdToken),
            token_type::AWS_SIGNED_REQUEST => Some(Self::AwsSignedRequest),
            _ => None,
        }
    }

    pub fn uri(self) -> &'static str {
        match self {
            Self::Jwt => token_type::JWT,
            Self::IdToken => token_type::ID_TOKEN,
            Self::AwsSignedRequest => token_type::AWS_SIGNED_REQUEST,
        }
    }

    /// JWT and ID token are both compact JWS; sources treat them alike.
    pub fn is_jwt(self) -> bool {
        matches!(self, Self::Jwt | Self::IdToken)
    }
}

/// A presented subject token, not yet verified.
#[derive(Debug, Clone)]
pub struct SubjectToken {
    pub token_type: SubjectTokenType,
    pub value: Secret<String>,
}

/// Why a source refused a token. Each variant says what happened; only the HTTP edge maps
/// them to wire codes. [`SourceError::code`] is the greppable reason in logs and audit.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token type is not accepted by this source")]
    UnsupportedTokenType,
    #[error("no configured source trusts this issuer")]
    UntrustedIssuer,
    #[error("algorithm is not allowed for this source")]
    DisallowedAlgorithm,
    #[error("header `{0}` is not allowed")]
    ForbiddenHeader(&'static str),
    #[error("nested or encrypted tokens are not accepted")]
    NestedToken,
    #[error("no key with this kid in the issuer's key set")]
    UnknownKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("issuer does not match")]
    IssuerMismatch,
    #[error("audience does not match")]
    AudienceMismatch,
    #[error("claim `{0}` is required")]
    MissingClaim(&'static str),
    #[error("claim `{0}` has an invalid value")]
    InvalidClaim(&'static str),
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token lifetime exceeds the source maximum")]
    LifetimeTooLong,
    /// Verified, but the source's policy refuses it (an owner not on the allow-list, ...).
    #[error("refused by source policy: {0}")]
    Policy(String),
    /// The issuer's keys or the platform's verifier could not be reached or answered badly.
    #[error("upstream failure: {cause}")]
    Upstream { retryable: bool, cause: String },
}

impl SourceError {
    /// A stable, greppable reason code for logs and audit records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "TS-SRC-MALFORMED",
            Self::UnsupportedTokenType => "TS-SRC-TOKEN-TYPE",
            Self::UntrustedIssuer => "TS-SRC-UNTRUSTED-ISSUER",
            Self::DisallowedAlgorithm => "TS-SRC-ALG",
            Self::ForbiddenHeader(_) => "TS-SRC-FORBIDDEN-HEADER",
            Self::NestedToken => "TS-SRC-NESTED",
            Self::UnknownKey => "TS-SRC-UNKNOWN-KID",
            Self::BadSignature => "TS-SRC-SIGNATURE",
            Self::IssuerMismatch => "TS-SRC-ISSUER",
            Self::AudienceMismatch => "TS-SRC-AUDIENCE",
            Self::MissingClaim(_) => "TS-SRC-MISSING-CLAIM",
            Self::InvalidClaim(_) => "TS-SRC-INVALID-CLAIM",
            Self::Expired => "TS-SRC-EXPIRED",
            Self::NotYetValid => "TS-SRC-NOT-YET-VALID",
            Self::IssuedInFuture => "TS-SRC-IAT-FUTURE",
            Self::LifetimeTooLong => "TS-SRC-LIFETIME",
            Self::Policy(_) => "TS-SRC-POLICY",
            Self::Upstream { .. } => "TS-SRC-UPSTREAM",
        }
    }
}

/// Proof that a source verified a token: only code in this crate (the sources) can make one.
/// Carries the normalized identity and the token's expiry.
#[derive(Debug, Clone)]
pub struct VerifiedIdentity {
    identity: Arc<Identity>,
}

impl VerifiedIdentity {
    /// Sources call this after every check has passed, and nowhere else.
    pub(crate) fn new(identity: Identity) -> Self {
        Self { identity: Arc::new(identity) }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn shared(&self) -> Arc<Identity> {
        Arc::clone(&self.identity)
    }
}

/// The last failed fetch of what a source needs from the network (its key set), as an
/// operator may see it: when (seconds since the epoch) and why, in words that carry no
/// secret (no response body, no URL query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    pub at: i64,
    pub error: String,
}

/// An identity source: one configured instance of an adapter kind.
#[async_trait]
pub trait IdentitySource: Send + Sync + Debug {
    /// The adapter kind (`oidc`, `kubernetes`, ...).
    fn kind(&self) -> &'static str;

    /// The configured name, unique across sources.
    fn name(&self) -> &str;

    /// Whether this source takes tokens of this type.
    fn accepts(&self, token_type: SubjectTokenType) -> bool;

    /// The exact issuer strings this source trusts, for routing JWTs by their unverified
    /// `iss` before any network call. Empty for sources that are not JWT-based, and for a
    /// JWT source whose tokens carry no `iss` (a `spiffe` source without `issuer`): those
    /// are routed to by token type.
    fn issuers(&self) -> Vec<String>;

    /// Verify a presented token. Only a fully verified token yields a [`VerifiedIdentity`].
    async fn verify(&self, token: &SubjectToken) -> Result<VerifiedIdentity, SourceError>;

    /// The identity a token of `subject` would give, as far as the subject and this
    /// source's config determine it: `id`, `provider`, `issuer`, and what the subject
    /// names (a service account's namespace, a repository, an account): for explaining
    /// rules without a token (`tessera mappings explain --identity` given only `source`
    /// and `subject`). Verifies nothing and makes no [`VerifiedIdentity`]. `Err` says
    /// what the subject cannot tell, in words.
    fn sketch(&self, subject: &str) -> Result<Identity, String>;

    /// Whether the source is ready to verify (e.g. its key set has been fetched once).
    /// Sources with nothing to warm up are always ready.
    fn ready(&self) -> bool {
        true
    }

    /// The last failed fetch of its key set, kept after later successes; `None` when none
    /// failed since start, or the source fetches nothing.
    fn last_fetch_failure(&self) -> Option<FetchFailure> {
        None
    }

    /// Fetch now what the source needs from the network (its key sets), for `tessera
    /// doctor`: what was fetched, or why it could not be. Sources that fetch nothing ahead
    /// of a token say how they verify.
    async fn probe(&self) -> Result<String, String> {
        Ok("nothing to fetch ahead of a token".to_string())
    }
}
