//! RFC 6749 §5.2 error bodies, from one exhaustive mapping. `error_description` is fixed
//! text per cause; the detailed reason goes to logs and the audit record only.

use actix_web::http::StatusCode;
use serde::Serialize;
use tessera_adapters::{SourceError, TargetError};

use crate::delegation::DelegationError;
use crate::exchange::ExchangeError;
use crate::jwt_bearer::AssertionError;
use crate::mapping::Denial;
use crate::revocation::ssf::SetError;
use crate::txn::TxnError;

/// Every refusal the edge can send, each with one fixed status, code and text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Body is not form-encoded or JSON.
    ContentType,
    /// Body over the size limit.
    BodyTooLarge,
    /// Subject token over the size limit.
    TokenTooLarge,
    /// Body could not be parsed.
    MalformedBody,
    /// A parameter appears more than once (RFC 6749 §3.2).
    RepeatedParameter,
    /// More parameters than any token request has.
    TooManyParameters,
    MissingGrantType,
    UnsupportedGrantType,
    MissingSubjectToken,
    MissingSubjectTokenType,
    UnsupportedSubjectTokenType,
    MissingAudience,
    /// A JWT bearer grant without `assertion` (RFC 7523 §2.1).
    MissingAssertion,
    /// A token exchange parameter in a JWT bearer grant.
    ParameterNotForGrant,
    /// The JWT bearer grant's assertion is invalid, expired, not for this server, or
    /// replayed (RFC 7523 §3.1).
    InvalidGrant,
    /// `resource`: resource indicators are not offered.
    UnsupportedParameter,
    /// `actor_token` without `actor_token_type`, or the other way round (RFC 8693 §2.1).
    IncompleteActor,
    /// `actor_token_type` Tessera does not verify.
    UnsupportedActorTokenType,
    /// Actor token over the size limit.
    ActorTokenTooLarge,
    /// The actor token is invalid, expired, untrusted or forged.
    InvalidActorToken,
    /// The subject token's `may_act` does not name the actor (RFC 8693 §4.4).
    ActorNotPermitted,
    /// The `act` chain would be too long, or the subject token's is malformed.
    InvalidDelegationChain,
    /// The rules that apply do not allow delegation.
    DelegationNotAllowed,
    /// `requested_token_type` the target does not issue.
    UnsupportedRequestedTokenType,
    /// Several values in `scope`; Tessera grants one scope per exchange.
    MultipleScopes,
    /// The subject token is invalid, expired, untrusted or forged (RFC 8693 §2.2.2).
    InvalidSubjectToken,
    /// No rule allows this identity this target, or a deny rule applies.
    NotAllowed,
    /// A revocation names this identity, its rule or the credential it would get.
    Revoked,
    /// Several rules apply and no scope chose between them.
    Ambiguous,
    /// The requested scope is not granted to this identity.
    ScopeNotGrantable,
    /// The identity made too many exchanges; retry after this many seconds.
    RateLimited {
        retry_after: u32,
    },
    /// An upstream (JWKS, STS, audit store) is unavailable; retrying may help.
    Unavailable,
    /// An upstream answered with something Tessera cannot use; retrying will not help, so
    /// no `Retry-After` is sent.
    UpstreamUnusable,
    /// A bug or misconfiguration.
    Internal,
    MethodNotAllowed,
    /// Introspection: no client authentication, or one that does not verify (RFC 6749
    /// §5.2).
    InvalidClient,
    /// A Txn-Token request without a verifiable client assertion (RFC 6749 §5.2).
    InvalidTxnClient,
    /// Introspection: more than one client authentication method (RFC 6749 §2.3).
    MultipleClientAuthentication,
    /// Introspection: no `token` parameter (RFC 7662 §2.1).
    MissingToken,
    /// A Txn-Token request without a scope, or with a value that is no scope-token.
    TxnScope,
    /// `request_context` or `request_details` is not a JSON object.
    MalformedContext,
    /// A replacement Txn-Token would change the transaction's subject or context.
    TxnContextChange,
    /// `actor_token` in a Txn-Token request: its requesting workload authenticates with
    /// `client_assertion`, and no one acts for it.
    ActorInTxnRequest,
    /// A revocation watch for something other than a token exchange.
    WatchGrantType,
    /// A revocation watch's `fingerprint` is not `sha256:` and 64 lowercase hex digits.
    InvalidFingerprint,
    /// A revocation watch's `wait` is not whole seconds.
    InvalidWait,
    /// As many revocation watches as the broker holds are open.
    TooManyWatches,
    /// The broker is stopping; another replica, or this one restarted, answers.
    Stopping,
}

impl WireError {
    pub fn status(self) -> StatusCode {
        match self {
            Self::BodyTooLarge | Self::TokenTooLarge | Self::ActorTokenTooLarge => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable | Self::UpstreamUnusable | Self::TooManyWatches | Self::Stopping => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::InvalidClient | Self::InvalidTxnClient => StatusCode::UNAUTHORIZED,
            Self::MultipleClientAuthentication
            | Self::MissingToken
            | Self::TxnScope
            | Self::MalformedContext
            | Self::TxnContextChange
            | Self::ActorInTxnRequest
            | Self::WatchGrantType
            | Self::InvalidFingerprint
            | Self::InvalidWait => StatusCode::BAD_REQUEST,
            Self::ContentType
            | Self::MalformedBody
            | Self::RepeatedParameter
            | Self::TooManyParameters
            | Self::MissingGrantType
            | Self::UnsupportedGrantType
            | Self::MissingSubjectToken
            | Self::MissingSubjectTokenType
            | Self::UnsupportedSubjectTokenType
            | Self::MissingAudience
            | Self::MissingAssertion
            | Self::ParameterNotForGrant
            | Self::InvalidGrant
            | Self::UnsupportedParameter
            | Self::IncompleteActor
            | Self::UnsupportedActorTokenType
            | Self::InvalidActorToken
            | Self::ActorNotPermitted
            | Self::InvalidDelegationChain
            | Self::DelegationNotAllowed
            | Self::UnsupportedRequestedTokenType
            | Self::MultipleScopes
            | Self::InvalidSubjectToken
            | Self::NotAllowed
            | Self::Revoked
            | Self::Ambiguous
            | Self::ScopeNotGrantable => StatusCode::BAD_REQUEST,
        }
    }

    /// The RFC 6749 / RFC 8693 `error` code.
    pub fn code(self) -> &'static str {
        match self {
            Self::UnsupportedGrantType | Self::WatchGrantType => "unsupported_grant_type",
            Self::InvalidGrant => "invalid_grant",
            // The identity is proven and the request well formed; what it asks for is not
            // issued to it (RFC 6749 §5.2, RFC 8693 §2.2.2).
            Self::NotAllowed | Self::Revoked | Self::DelegationNotAllowed => "invalid_target",
            Self::ScopeNotGrantable | Self::MultipleScopes | Self::TxnScope => "invalid_scope",
            Self::RateLimited { .. }
            | Self::Unavailable
            | Self::UpstreamUnusable
            | Self::TooManyWatches
            | Self::Stopping => "temporarily_unavailable",
            Self::Internal => "server_error",
            Self::InvalidClient | Self::InvalidTxnClient => "invalid_client",
            Self::MultipleClientAuthentication | Self::MissingToken => "invalid_request",
            Self::ContentType
            | Self::BodyTooLarge
            | Self::TokenTooLarge
            | Self::MalformedBody
            | Self::RepeatedParameter
            | Self::TooManyParameters
            | Self::MissingGrantType
            | Self::MissingSubjectToken
            | Self::MissingSubjectTokenType
            | Self::UnsupportedSubjectTokenType
            | Self::MissingAudience
            | Self::MissingAssertion
            | Self::ParameterNotForGrant
            | Self::UnsupportedParameter
            | Self::IncompleteActor
            | Self::UnsupportedActorTokenType
            | Self::ActorTokenTooLarge
            | Self::InvalidActorToken
            | Self::ActorNotPermitted
            | Self::InvalidDelegationChain
            | Self::UnsupportedRequestedTokenType
            | Self::InvalidSubjectToken
            | Self::Ambiguous
            | Self::MethodNotAllowed
            | Self::MalformedContext
            | Self::TxnContextChange
            | Self::ActorInTxnRequest
            | Self::InvalidFingerprint
            | Self::InvalidWait => "invalid_request",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::ContentType => {
                "Content-Type must be application/x-www-form-urlencoded or application/json."
            }
            Self::BodyTooLarge => "The request body is too large.",
            Self::TokenTooLarge => "The subject token is too large.",
            Self::MalformedBody => "The request body could not be parsed.",
            Self::RepeatedParameter => "A request parameter was included more than once.",
            Self::TooManyParameters => "A token request has at most 32 parameters.",
            Self::MissingGrantType => "The grant_type parameter is required.",
            Self::UnsupportedGrantType => {
                "grant_type must be urn:ietf:params:oauth:grant-type:token-exchange or urn:ietf:params:oauth:grant-type:jwt-bearer."
            }
            Self::MissingSubjectToken => "The subject_token parameter is required.",
            Self::MissingSubjectTokenType => "The subject_token_type parameter is required.",
            Self::UnsupportedSubjectTokenType => "The subject_token_type is not supported.",
            Self::MissingAudience => "The audience parameter is required.",
            Self::MissingAssertion => "The assertion parameter is required.",
            Self::ParameterNotForGrant => {
                "subject_token, subject_token_type, requested_token_type, actor_token and resource are not used with the jwt-bearer grant."
            }
            Self::InvalidGrant => "The assertion is invalid, expired, not for this server, or already used.",
            Self::UnsupportedParameter => "resource is not supported; name the target in audience.",
            Self::IncompleteActor => "actor_token and actor_token_type must be given together.",
            Self::UnsupportedActorTokenType => "The actor_token_type is not supported.",
            Self::ActorTokenTooLarge => "The actor token is too large.",
            Self::InvalidActorToken => "The actor token is invalid, expired, or not trusted.",
            Self::ActorNotPermitted => "The subject token does not permit this actor to act for it.",
            Self::InvalidDelegationChain => "The delegation chain is malformed or too long.",
            Self::DelegationNotAllowed => {
                "No rule allows this actor to act for this identity at this audience."
            }
            Self::UnsupportedRequestedTokenType => {
                "The requested_token_type is not issued for this audience."
            }
            Self::MultipleScopes => "Request a single scope.",
            Self::InvalidSubjectToken => "The subject token is invalid, expired, or not trusted.",
            Self::NotAllowed => "No rule allows this identity to obtain a credential for this audience.",
            Self::Revoked => tessera_adapters::oauth::error_description::REVOKED,
            Self::Ambiguous => "More than one rule applies; name a scope to choose one.",
            Self::ScopeNotGrantable => {
                "The requested scope is not granted to this identity for this audience."
            }
            Self::RateLimited { .. } => "Too many exchanges for this identity; retry after the given time.",
            Self::Unavailable => "A service Tessera depends on is unavailable; retry later.",
            Self::UpstreamUnusable => "A service Tessera depends on gave an answer Tessera cannot use.",
            Self::Internal => "Internal error.",
            Self::MethodNotAllowed => "Use POST.",
            Self::InvalidClient => "Client authentication failed.",
            Self::InvalidTxnClient => {
                "A Txn-Token request needs a client_assertion of type urn:ietf:params:oauth:client-assertion-type:jwt-bearer that a configured source verifies."
            }
            Self::MultipleClientAuthentication => "Use one client authentication method.",
            Self::MissingToken => "The token parameter is required.",
            Self::TxnScope => "A Txn-Token request needs a scope of space-delimited values.",
            Self::MalformedContext => "request_context and request_details must each be one JSON object.",
            Self::TxnContextChange => {
                "A replacement Txn-Token keeps the transaction's sub and txn and changes no context value."
            }
            Self::ActorInTxnRequest => {
                "actor_token is not used in a Txn-Token request; the requesting workload authenticates with client_assertion."
            }
            Self::WatchGrantType => {
                "A revocation watch takes a token exchange request (urn:ietf:params:oauth:grant-type:token-exchange), not a Txn-Token request."
            }
            Self::InvalidFingerprint => "fingerprint must be sha256: and 64 lowercase hex digits.",
            Self::InvalidWait => "wait must be whole seconds.",
            Self::TooManyWatches => "Too many revocation watches are open; retry later.",
            Self::Stopping => "This broker is stopping; retry.",
        }
    }

    /// Seconds a client should wait before retrying, where retrying can help.
    pub fn retry_after(self) -> Option<u32> {
        match self {
            Self::RateLimited { retry_after } => Some(retry_after),
            Self::Unavailable | Self::TooManyWatches => Some(5),
            Self::Stopping => Some(1),
            _ => None,
        }
    }
}

impl From<&ExchangeError> for WireError {
    fn from(e: &ExchangeError) -> Self {
        match e {
            ExchangeError::Source(s) => {
                source_refusal(s, Self::UnsupportedSubjectTokenType, Self::InvalidSubjectToken)
            }
            ExchangeError::Actor(s) => {
                source_refusal(s, Self::UnsupportedActorTokenType, Self::InvalidActorToken)
            }
            ExchangeError::Delegation(d) => match d {
                DelegationError::NotPermitted { .. } | DelegationError::MayActMalformed(_) => {
                    Self::ActorNotPermitted
                }
                DelegationError::ChainMalformed(_) | DelegationError::TooDeep { .. } => {
                    Self::InvalidDelegationChain
                }
            },
            ExchangeError::UnknownAudience(_) => Self::NotAllowed,
            // A revoked subject token is one no longer valid (RFC 8693 §2.2.2).
            ExchangeError::Revoked(r) if r.subject_token => Self::InvalidSubjectToken,
            ExchangeError::Revoked(_) => Self::Revoked,
            ExchangeError::UnsupportedTokenType { .. } => Self::UnsupportedRequestedTokenType,
            ExchangeError::RateLimited(r) => Self::RateLimited { retry_after: r.retry_after_secs() },
            ExchangeError::Denied(d) => match d {
                Denial::Denied { .. }
                | Denial::DeniedOnError { .. }
                | Denial::NoRule
                | Denial::Unrenderable { .. } => Self::NotAllowed,
                Denial::Ambiguous { .. } => Self::Ambiguous,
                Denial::ScopeNotGrantable => Self::ScopeNotGrantable,
                Denial::DelegationNotAllowed { .. } => Self::DelegationNotAllowed,
            },
            ExchangeError::Target(t) => match t {
                // The rule renders, for this identity, a value the target refuses: the rule
                // does not grant this identity a usable credential.
                TargetError::UpstreamRejected(_) | TargetError::InvalidGrant(_) => Self::NotAllowed,
                TargetError::Upstream { retryable: true, .. } => Self::Unavailable,
                TargetError::Upstream { retryable: false, .. } => Self::UpstreamUnusable,
                TargetError::Signing(_) => Self::Internal,
            },
            ExchangeError::Audit(_) => Self::Unavailable,
            ExchangeError::Assertion(a) => match a {
                AssertionError::Invalid(_)
                | AssertionError::Audience
                | AssertionError::MissingExpiry
                | AssertionError::MissingJti
                | AssertionError::Replayed
                | AssertionError::Revoked(_) => Self::InvalidGrant,
                AssertionError::ReplayCache(_) => Self::Unavailable,
            },
            ExchangeError::Txn(t) => match t {
                TxnError::UnknownTrustDomain(_)
                | TxnError::SubjectTypeNotAllowed(_)
                | TxnError::SubjectNotAllowed(_) => Self::NotAllowed,
                TxnError::ClientAuthentication(SourceError::Upstream { retryable: true, .. })
                | TxnError::Subject(SourceError::Upstream { retryable: true, .. }) => Self::Unavailable,
                TxnError::ClientAuthentication(SourceError::Upstream { retryable: false, .. })
                | TxnError::Subject(SourceError::Upstream { retryable: false, .. }) => Self::UpstreamUnusable,
                TxnError::ClientAuthentication(_) => Self::InvalidTxnClient,
                TxnError::Subject(_) | TxnError::ReplacedExpired => Self::InvalidSubjectToken,
                TxnError::ScopeNotGranted(_) | TxnError::ScopeWidened(_) => Self::ScopeNotGrantable,
                TxnError::IdentityChanged(_) | TxnError::ContextChanged { .. } => Self::TxnContextChange,
                TxnError::NoVerifier => Self::Internal,
            },
        }
    }
}

/// A token a source refused, the subject's or the actor's: `unsupported` for a type the
/// source does not take, `invalid` for a token it refused, upstream trouble as such.
fn source_refusal(s: &SourceError, unsupported: WireError, invalid: WireError) -> WireError {
    match s {
        SourceError::Upstream { retryable: true, .. } => WireError::Unavailable,
        SourceError::Upstream { retryable: false, .. } => WireError::UpstreamUnusable,
        SourceError::UnsupportedTokenType => unsupported,
        SourceError::Malformed(_)
        | SourceError::UntrustedIssuer
        | SourceError::DisallowedAlgorithm
        | SourceError::ForbiddenHeader(_)
        | SourceError::NestedToken
        | SourceError::UnknownKey
        | SourceError::BadSignature
        | SourceError::IssuerMismatch
        | SourceError::AudienceMismatch
        | SourceError::MissingClaim(_)
        | SourceError::InvalidClaim(_)
        | SourceError::Expired
        | SourceError::NotYetValid
        | SourceError::IssuedInFuture
        | SourceError::LifetimeTooLong
        | SourceError::Policy(_) => invalid,
    }
}

/// The RFC 6749 §5.2 JSON body.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: &'static str,
    pub error_description: &'static str,
}

impl ErrorBody {
    pub fn fixed(e: WireError) -> Self {
        Self { error: e.code(), error_description: e.description() }
    }
}

/// The RFC 8935 §2.4 error code (the IANA "Security Event Token Error Codes" registry)
/// for a refused SET: in a push answer's `err`, and in a poll's `setErrs` (RFC 8936 §2.4).
pub fn set_error_code(e: &SetError) -> &'static str {
    match e {
        SetError::Malformed(_) | SetError::Subject(_) | SetError::Event { .. } => "invalid_request",
        SetError::Stale { .. } | SetError::Replayed => "invalid_request",
        SetError::Key(_) => "invalid_key",
        SetError::Issuer => "invalid_issuer",
        SetError::Audience => "invalid_audience",
        SetError::Scope(_) => "access_denied",
    }
}

#[cfg(test)]
mod tests {
    use tessera_adapters::oauth::grant_type;

    use super::*;

    #[test]
    fn only_failures_a_retry_may_fix_carry_retry_after() {
        let source = |retryable| {
            WireError::from(&ExchangeError::Source(SourceError::Upstream { retryable, cause: "x".into() }))
        };
        let target = |retryable| {
            WireError::from(&ExchangeError::Target(TargetError::Upstream { retryable, cause: "x".into() }))
        };
        for retryable in [source(true), target(true)] {
            assert_eq!((retryable, retryable.retry_after()), (WireError::Unavailable, Some(5)));
        }
        for unusable in [source(false), target(false)] {
            assert_eq!((unusable, unusable.retry_after()), (WireError::UpstreamUnusable, None));
            assert_eq!(
                (unusable.status(), unusable.code()),
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            );
        }
    }

    #[test]
    fn a_grant_the_target_refuses_is_invalid_target() {
        let e = WireError::from(&ExchangeError::Target(TargetError::InvalidGrant("x".into())));
        assert_eq!(
            (e, e.status(), e.code()),
            (WireError::NotAllowed, StatusCode::BAD_REQUEST, "invalid_target")
        );
    }

    /// The fixed text is a literal; it must still name the grant the edge takes.
    #[test]
    fn the_grant_type_refusal_names_the_token_exchange_grant() {
        assert!(WireError::UnsupportedGrantType.description().contains(grant_type::TOKEN_EXCHANGE));
        assert!(WireError::UnsupportedGrantType.description().contains(grant_type::JWT_BEARER));
    }

    /// RFC 7523 §3.1: every refusal of an assertion is `invalid_grant`; a replay cache that
    /// cannot answer is Tessera's trouble, never a 5xx the caller could mistake for a bug.
    #[test]
    fn assertion_refusals_are_invalid_grant() {
        for refusal in [
            AssertionError::Invalid(SourceError::Expired),
            AssertionError::Audience,
            AssertionError::MissingJti,
            AssertionError::Replayed,
            AssertionError::Revoked("rev-1".into()),
        ] {
            let e = WireError::from(&ExchangeError::Assertion(refusal));
            assert_eq!((e.status(), e.code()), (StatusCode::BAD_REQUEST, "invalid_grant"));
        }
        let e = WireError::from(&ExchangeError::Assertion(AssertionError::ReplayCache("down".into())));
        assert_eq!((e.status(), e.code()), (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"));
    }

    /// Every refusal of the Txn-Token service is the caller's: a 4xx with an RFC 6749 code;
    /// only Tessera's own failures are 5xx.
    #[test]
    fn txn_token_refusals_are_never_server_errors() {
        let refusals = [
            TxnError::UnknownTrustDomain("td".into()),
            TxnError::ClientAuthentication(SourceError::BadSignature),
            TxnError::Subject(SourceError::Expired),
            TxnError::SubjectTypeNotAllowed("unsigned_json"),
            TxnError::SubjectNotAllowed("s".into()),
            TxnError::ScopeNotGranted("a".into()),
            TxnError::ScopeWidened("a".into()),
            TxnError::IdentityChanged("sub"),
            TxnError::ContextChanged { claim: "tctx", member: "m".into() },
            TxnError::ReplacedExpired,
        ];
        for refusal in refusals {
            assert!(!refusal.is_failure(), "{refusal}");
            let e = WireError::from(&ExchangeError::Txn(refusal));
            assert!(e.status().is_client_error(), "{e:?}");
        }
        let client =
            WireError::from(&ExchangeError::Txn(TxnError::ClientAuthentication(SourceError::Expired)));
        assert_eq!((client.status(), client.code()), (StatusCode::UNAUTHORIZED, "invalid_client"));
        let failed = WireError::from(&ExchangeError::Txn(TxnError::Subject(SourceError::Upstream {
            retryable: true,
            cause: "x".into(),
        })));
        assert_eq!((failed, failed.retry_after()), (WireError::Unavailable, Some(5)));
    }
}
