//! The documents verifiers fetch: the JWKS and the OpenID discovery document, serialized
//! once and served as bytes, and the SPIFFE bundle of the trust domain Tessera issues
//! JWT-SVIDs in.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tessera_adapters::oauth::grant_type;
use tessera_adapters::target::SigningAlgorithm;

use super::config::IssuerUrl;
use super::keys::{KeyState, StoredKey};

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
        "grant_types_supported": [grant_type::TOKEN_EXCHANGE, grant_type::JWT_BEARER],
        "claims_supported": CLAIMS_SUPPORTED,
    })
    .to_string()
    .into_bytes()
    .into()
}

/// A SPIFFE bundle (SPIFFE Trust Domain and Bundle §4): the published keys of `algorithms`
/// as JWKs with `use: "jwt-svid"` and their `kid` (JWT-SVID §6.1), and no other member a
/// SPIFFE consumer does not read (§4.2); `spiffe_sequence` and `spiffe_refresh_hint`.
///
/// The keys are listed in an order that does not change when one is activated or retired,
/// so the bundle changes only when its set of keys does: when a key is created (and
/// published as `next`) or when a retired key's `publish_until` passes.
/// `spiffe_sequence` is the time (Unix seconds) of the latest such change in the key
/// directory: it increases with every change and is the same on every replica that shares
/// the directory. A rotation creates its keys at the moment it deletes expired ones, so
/// deleting a key file never takes the sequence back.
pub(crate) fn spiffe_bundle(
    keys: &[StoredKey],
    algorithms: &[SigningAlgorithm],
    refresh_hint: Duration,
    now: i64,
) -> Vec<u8> {
    let mut shown: Vec<&StoredKey> =
        keys.iter().filter(|k| algorithms.contains(&k.info.alg) && k.info.is_published(now)).collect();
    shown.sort_by(|a, b| {
        (a.info.alg, a.info.created_at, &a.info.kid).cmp(&(b.info.alg, b.info.created_at, &b.info.kid))
    });
    let jwks: Vec<Value> = shown
        .iter()
        .map(|k| {
            let mut jwk = k.material.jwk().to_jwk(k.info.alg, &k.info.kid);
            if let Some(members) = jwk.as_object_mut() {
                members.remove("alg");
                members.insert("use".into(), Value::from("jwt-svid"));
            }
            jwk
        })
        .collect();
    let sequence = keys
        .iter()
        .flat_map(|k| {
            let dropped =
                k.info.publish_until.filter(|until| k.info.state == KeyState::Retired && *until <= now);
            [Some(k.info.created_at), dropped]
        })
        .flatten()
        .max()
        .unwrap_or(0);
    json!({
        "keys": jwks,
        "spiffe_sequence": sequence,
        "spiffe_refresh_hint": refresh_hint.as_secs(),
    })
    .to_string()
    .into_bytes()
}
