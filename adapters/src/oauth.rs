//! OAuth wire names Tessera speaks, each written once: the URIs of RFC 8693 token exchange
//! and RFC 7523 assertions, and Tessera's own under `urn:tessera:params:oauth`. The HTTP
//! edge, the issuer's discovery document, the agent, the contract and the targets that
//! call a platform's token endpoint all use these.

/// `grant_type` values (RFC 6749 §4.5, extension grants).
pub mod grant_type {
    /// RFC 8693 §2.1: token exchange.
    pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
    /// RFC 7523 §2.1: a JWT as an authorization grant.
    pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
}

/// Token type identifiers (RFC 8693 §3): the values of `subject_token_type`,
/// `requested_token_type` and `issued_token_type`.
pub mod token_type {
    /// A JWT (RFC 7519).
    pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
    /// An OpenID Connect ID token.
    pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
    /// An OAuth 2.0 access token.
    pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    /// Tessera's: a signed `sts:GetCallerIdentity` request, what the `aws_iam` source takes.
    pub const AWS_SIGNED_REQUEST: &str = "urn:tessera:params:oauth:token-type:aws-signed-request";
    /// Tessera's: AWS temporary credentials, what the `aws_sts` target issues.
    pub const AWS_CREDENTIALS: &str = "urn:tessera:params:oauth:token-type:aws-credentials";
    /// Tessera's: a PostgreSQL login (user name and password), what the `postgres` target
    /// issues.
    pub const POSTGRES_CREDENTIALS: &str = "urn:tessera:params:oauth:token-type:postgres-credentials";
    /// A Transaction Token (draft-ietf-oauth-transaction-tokens-10 §7.1), what the
    /// `txn_token` target issues.
    pub const TXN_TOKEN: &str = "urn:ietf:params:oauth:token-type:txn_token";
    /// A self-signed JWT naming a transaction's subject (draft-ietf-oauth-transaction-tokens
    /// §7.2.1).
    pub const SELF_SIGNED: &str = "urn:ietf:params:oauth:token-type:self_signed";
    /// An unsigned JSON object naming a transaction's subject
    /// (draft-ietf-oauth-transaction-tokens §7.2.2).
    pub const UNSIGNED_JSON: &str = "urn:ietf:params:oauth:token-type:unsigned_json";
}

/// `client_assertion_type` values (RFC 7521 §4.2).
pub mod client_assertion_type {
    /// RFC 7523 §2.2: a JWT as client authentication.
    pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
}

/// `error_description` texts a client may act on. The broker's descriptions are fixed text
/// per cause (RFC 6749 §5.2 leaves them to the server); this one is also what tells
/// `tessera agent` that what it holds was revoked.
pub mod error_description {
    /// An exchange refused (`invalid_target`) because a revocation names the identity, the
    /// rule that would grant it, or the credential it would get.
    pub const REVOKED: &str = "Credentials for this identity have been revoked.";
}
