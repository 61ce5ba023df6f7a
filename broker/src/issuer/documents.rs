//! The two documents verifiers fetch: the JWKS and the OpenID discovery document. Both are
//! serialized once and served as bytes.

use std::sync::Arc;

use serde_json::{Value, json};
use tessera_adapters::oauth::grant_type;
use tessera_adapters::target::SigningAlgorithm;

use super::config::IssuerUrl;
use super::keys::StoredKey;

/// The claims Tessera's tokens carry besides a rule's own.
pub const CLAIMS_SUPPORTED: &[&str] = &["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope"];

/// A JWK Set (RFC 7517 §5) of `keys`, in the order given.
pub(crate) fn jwks<'a>(keys: impl IntoIterator<Item = &'a StoredKey>) -> Arc<[u8]> {
    let keys: Vec<Value> =
        keys.into_iter().map(|k| k.material.jwk().to_jwk(k.info.alg, &k.info.kid)).collect();
    // `Value`'s Display is its compact JSON and cannot fail.
    json!({ "keys": keys }).to_string().into_bytes().into()
}

/// The OpenID Provider Metadata (OpenID Discovery 1.0 §3) of a token-exchange issuer:
/// enough for AWS, GCP and Entra to find and trust its keys. There is no authorization
/// endpoint: Tessera only exchanges tokens.
pub(crate) fn discovery(url: &IssuerUrl, algorithms: &[SigningAlgorithm]) -> Arc<[u8]> {
    let algorithms: Vec<&str> = algorithms.iter().map(|a| a.as_str()).collect();
    json!({
        "issuer": url.as_str(),
        "jwks_uri": url.jwks_uri(),
        "token_endpoint": url.token_endpoint(),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
        "grant_types_supported": [grant_type::TOKEN_EXCHANGE],
        "claims_supported": CLAIMS_SUPPORTED,
    })
    .to_string()
    .into_bytes()
    .into()
}
