//! Verified claims turned into identity attributes (DESIGN.md "The normalized identity").
//!
//! - [`flatten_claims`]: a provider's claims as `prefix.claim`, nested objects as dotted
//!   keys, scalars as text, arrays as compact JSON text.
//! - [`AttributeMapping`]: a source config's own `attributes:` (`team:
//!   claims.labels.team`), like the attribute mapping of GCP Workload Identity
//!   Federation, but limited to claim paths.
//!
//! Caps keep one token from bloating audit records and rule evaluation. What exceeds them
//! is withheld, never an error: the value is dropped and its key recorded in
//! [`Identity::withheld`], so a rule that looks at it fails closed instead of acting as
//! if the token had no such claim.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::VerifiedClaims;
use crate::build::BuildError;
use crate::identity::Identity;

/// At most this many attributes per identity.
pub const MAX_ATTRIBUTES: usize = 128;
/// At most this many bytes per attribute value (and per key).
pub const MAX_ATTRIBUTE_BYTES: usize = 1024;

/// Claims every JWT source already turns into identity fields, so never into attributes.
pub const REGISTERED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

/// Flatten `claims` other than `exclude` into `identity`'s attributes, named
/// `{prefix}.{claim}`. `{"a": {"b": 1}}` gives `prefix.a.b = "1"`; `{"r": ["x", 2]}` gives
/// `prefix.r = "[\"x\",2]"`; nulls and empty objects give nothing. A value or key over
/// [`MAX_ATTRIBUTE_BYTES`], or any attribute past [`MAX_ATTRIBUTES`], is withheld.
pub fn flatten_claims(identity: &mut Identity, prefix: &str, claims: &Map<String, Value>, exclude: &[&str]) {
    let withheld_before = identity.withheld.len();
    for (name, value) in claims {
        if exclude.contains(&name.as_str()) {
            continue;
        }
        add(identity, format!("{prefix}.{name}"), value);
    }
    let withheld = identity.withheld.len() - withheld_before;
    if withheld > 0 {
        tracing::debug!(prefix, withheld, "identity attributes withheld: over the limits");
    }
}

fn add(identity: &mut Identity, key: String, value: &Value) {
    let text = match value {
        Value::Null => return,
        Value::Object(inner) => {
            for (name, value) in inner {
                add(identity, format!("{key}.{name}"), value);
            }
            return;
        }
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // `Display` of a Value is its compact JSON text.
        Value::Array(_) => value.to_string(),
    };
    let over_size = text.len() > MAX_ATTRIBUTE_BYTES || key.len() > MAX_ATTRIBUTE_BYTES;
    if over_size || identity.attributes.len() >= MAX_ATTRIBUTES {
        identity.withheld.insert(key);
    } else {
        identity.attributes.insert(key, text);
    }
}

/// At most this many entries in a source's `attributes:`.
pub const MAX_MAPPED_ATTRIBUTES: usize = 64;
/// The longest `claims.<path>` expression.
const MAX_EXPRESSION_BYTES: usize = 256;

/// A source config's `attributes:`: plain keys mapped from verified claims.
///
/// ```yaml
/// attributes:
///   team: claims.labels.team        # nested objects by dotted path
///   env: claims.environment
/// ```
///
/// Keys match `[a-z][a-z0-9_]{0,63}`: they have no dot, so they can never collide with a
/// provider's namespaced attributes (`github.ref`). Values are `claims.` followed by a
/// claim name or dotted path, looked up like [`VerifiedClaims::get`] (an exact top-level
/// name first, so `claims.kubernetes.io.namespace` reaches into `{"kubernetes.io":
/// {...}}`). A claim the token lacks (or that is null) leaves the attribute absent;
/// strings are kept as they are, numbers and booleans as text, objects and arrays as
/// compact JSON. Checked by [`AttributeMapping::check`] when the source is built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AttributeMapping {
    entries: BTreeMap<String, String>,
}

impl AttributeMapping {
    /// Every key and expression valid, at most [`MAX_MAPPED_ATTRIBUTES`] of them. The error
    /// names the field `attributes` and, in its message, the entry at fault.
    pub fn check(&self) -> Result<(), BuildError> {
        if self.entries.len() > MAX_MAPPED_ATTRIBUTES {
            return Err(BuildError::field(
                "attributes",
                format!("attributes may map at most {MAX_MAPPED_ATTRIBUTES} keys"),
            ));
        }
        for (key, expression) in &self.entries {
            if !valid_key(key) {
                return Err(BuildError::field(
                    "attributes",
                    format!(
                        "attributes key `{key}` is invalid: use 1-64 characters of a-z, 0-9 and '_', \
                         starting with a letter (no dots: dotted keys belong to the provider)"
                    ),
                ));
            }
            if claim_path(expression).is_none() {
                return Err(BuildError::field(
                    "attributes",
                    format!(
                        "attributes.{key}: `{expression}` is not a claim expression: write \
                         claims.<name> or claims.<name>.<nested name>"
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add the mapped attributes found in `claims` to `identity`; a value over
    /// [`MAX_ATTRIBUTE_BYTES`] is withheld.
    pub fn apply(&self, claims: &VerifiedClaims, identity: &mut Identity) {
        for (key, expression) in &self.entries {
            let Some(path) = claim_path(expression) else { continue };
            let text = match claims.get(path) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                // `Display` of a Value is its compact JSON text.
                Some(other @ (Value::Array(_) | Value::Object(_))) => other.to_string(),
            };
            if text.len() > MAX_ATTRIBUTE_BYTES {
                tracing::debug!(attribute = %key, "mapped attribute withheld: over the size limit");
                identity.withheld.insert(key.clone());
                continue;
            }
            identity.attributes.insert(key.clone(), text);
        }
    }
}

fn valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    key.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The claim path of `claims.<path>`: non-empty dot-separated names of printable
/// characters, no whitespace.
fn claim_path(expression: &str) -> Option<&str> {
    let path = expression.strip_prefix("claims.")?;
    let printable = path.chars().all(|c| !c.is_whitespace() && !c.is_control());
    let segments_ok = path.split('.').all(|segment| !segment.is_empty());
    (expression.len() <= MAX_EXPRESSION_BYTES && printable && segments_ok).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// The attributes and withheld keys `flatten_claims` gives an identity that has none.
    fn flatten(claims: &Map<String, Value>, exclude: &[&str]) -> Identity {
        let mut identity = super::mapping_tests::bare_identity();
        flatten_claims(&mut identity, "oidc", claims, exclude);
        identity
    }

    #[test]
    fn flattens_nested_objects_scalars_and_arrays() {
        let claims = map(json!({
            "iss": "i", "sub": "s", "aud": "a", "exp": 1, "nbf": 1, "iat": 1, "jti": "j",
            "email": "a@example.com",
            "email_verified": true,
            "n": 42,
            "f": 1.5,
            "groups": ["x", 2],
            "k8s": {"ns": "payments", "pod": {"name": "api-1"}, "empty": {}},
            "gone": null,
        }));
        let identity = flatten(&claims, &REGISTERED_CLAIMS);
        let expected: BTreeMap<String, String> = [
            ("oidc.email", "a@example.com"),
            ("oidc.email_verified", "true"),
            ("oidc.n", "42"),
            ("oidc.f", "1.5"),
            ("oidc.groups", r#"["x",2]"#),
            ("oidc.k8s.ns", "payments"),
            ("oidc.k8s.pod.name", "api-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(identity.attributes, expected);
        assert!(identity.withheld.is_empty());
    }

    #[test]
    fn caps_count_and_size_without_failing_and_names_what_they_withheld() {
        let mut claims = Map::new();
        for i in 0..200 {
            claims.insert(format!("c{i:03}"), json!("v"));
        }
        claims.insert("big".into(), json!("x".repeat(MAX_ATTRIBUTE_BYTES + 1)));
        claims.insert("fits".into(), json!("x".repeat(MAX_ATTRIBUTE_BYTES)));
        claims.insert("nested".into(), json!({ "ref": "r".repeat(2048) }));
        claims.insert("long_list".into(), json!(vec!["group"; 200]));
        let long_key = "k".repeat(MAX_ATTRIBUTE_BYTES);
        claims.insert(long_key.clone(), json!("v"));
        let identity = flatten(&claims, &[]);
        let attrs = &identity.attributes;
        assert_eq!(attrs.len(), MAX_ATTRIBUTES);
        assert!(!attrs.contains_key("oidc.big"));
        assert!(attrs.values().all(|v| v.len() <= MAX_ATTRIBUTE_BYTES));
        // `c000`..`c127` fill the cap; `fits` and every claim after it are past it.
        assert_eq!(attrs.keys().last().map(String::as_str), Some("oidc.c127"));
        // Every value left out is named, by key only: over the size limit, or past the count.
        let withheld = &identity.withheld;
        for key in ["oidc.big", "oidc.nested.ref", "oidc.long_list", "oidc.c128", "oidc.c199", "oidc.fits"] {
            assert!(withheld.contains(key), "{key} withheld");
        }
        assert!(withheld.contains(&format!("oidc.{long_key}")), "an over-long key is withheld");
        assert_eq!(attrs.len() + withheld.len(), claims.len());
        assert!(withheld.iter().all(|k| !attrs.contains_key(k)));
    }
}

#[cfg(test)]
mod mapping_tests {
    use super::*;
    use crate::jwt::testkit::{TestKey, jwks};
    use crate::jwt::{Algorithm, JwtPolicy, KeySet, verify_with_keys};
    use serde_json::json;

    /// An identity with no attributes, for adding to.
    pub(super) fn bare_identity() -> Identity {
        serde_json::from_value(json!({
            "id": "oidc://s/x", "provider": "oidc", "source": "s", "issuer": "https://i", "subject": "x",
        }))
        .unwrap()
    }

    fn mapping(entries: Value) -> AttributeMapping {
        serde_json::from_value(entries).unwrap()
    }

    fn verified(claims: Value) -> VerifiedClaims {
        let key = TestKey::p256("k");
        let keys = KeySet::from_json(jwks(&[key.jwk()]).as_bytes(), &[Algorithm::Es256]).unwrap();
        let policy = JwtPolicy::new(
            "https://i",
            vec!["a".into()],
            vec![Algorithm::Es256],
            crate::jwt::policy::DEFAULT_LEEWAY,
            crate::jwt::policy::DEFAULT_MAX_LIFETIME,
        )
        .unwrap();
        let mut all = json!({ "iss": "https://i", "aud": "a", "sub": "s", "iat": 100, "exp": 200 });
        for (k, v) in claims.as_object().unwrap() {
            all[k] = v.clone();
        }
        verify_with_keys(&key.token("ES256", &all), &policy, &keys, 150).unwrap()
    }

    #[test]
    fn keys_and_expressions_are_checked() {
        let field = |m: Value| mapping(m).check().map_err(|e| (e.field, e.message));
        assert!(field(json!({ "team": "claims.labels.team", "env_2": "claims.environment" })).is_ok());
        assert!(field(json!({ "url": "claims.https://example.com/claims/team" })).is_ok());
        for bad_key in ["Team", "2team", "_team", "team.name", "team-name", "", &"a".repeat(65)] {
            let err = field(json!({ bad_key: "claims.x" })).unwrap_err();
            assert_eq!(err.0, Some("attributes"), "{bad_key}");
            assert!(err.1.contains("key"), "{bad_key}: {}", err.1);
        }
        assert!(field(json!({ &"a".repeat(64): "claims.x" })).is_ok());
        for bad in [
            "labels.team",
            "claims.",
            "claims",
            "claims..x",
            "claims.x.",
            "claim.x",
            "claims.a b",
            "{claims.x}",
        ] {
            let err = field(json!({ "team": bad })).unwrap_err();
            assert_eq!(err.0, Some("attributes"), "{bad}");
            assert!(err.1.contains("attributes.team"), "{bad}: {}", err.1);
        }
        let many: Map<String, Value> =
            (0..=MAX_MAPPED_ATTRIBUTES).map(|i| (format!("k{i}"), json!("claims.x"))).collect();
        assert_eq!(field(Value::Object(many)).unwrap_err().0, Some("attributes"));
        // Only a map of strings deserializes.
        assert!(serde_json::from_value::<AttributeMapping>(json!({ "team": 1 })).is_err());
        assert!(serde_json::from_value::<AttributeMapping>(json!(["claims.x"])).is_err());
    }

    #[test]
    fn apply_renders_claims_and_skips_missing_ones() {
        let m = mapping(json!({
            "team": "claims.labels.team",
            "env": "claims.environment",
            "ns": "claims.kubernetes.io.namespace",
            "labels": "claims.labels",
            "groups": "claims.groups",
            "n": "claims.n",
            "ok": "claims.ok",
            "gone": "claims.missing",
            "null": "claims.nothing",
            "big": "claims.big",
        }));
        m.check().unwrap();
        let claims = verified(json!({
            "labels": { "team": "payments", "tier": 1 },
            "environment": "prod",
            "kubernetes.io": { "namespace": "payments" },
            "groups": ["a", "b"],
            "n": 42,
            "ok": true,
            "nothing": null,
            "big": "x".repeat(MAX_ATTRIBUTE_BYTES + 1),
        }));
        let mut identity = bare_identity();
        identity.attributes.insert("github.ref".to_string(), "refs/heads/main".to_string());
        m.apply(&claims, &mut identity);
        let expected: BTreeMap<String, String> = [
            ("github.ref", "refs/heads/main"),
            ("team", "payments"),
            ("env", "prod"),
            ("ns", "payments"),
            ("labels", r#"{"team":"payments","tier":1}"#),
            ("groups", r#"["a","b"]"#),
            ("n", "42"),
            ("ok", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(identity.attributes, expected);
        // Over the size limit: withheld, by key.
        assert_eq!(identity.withheld.iter().collect::<Vec<_>>(), ["big"]);
        assert!(AttributeMapping::default().is_empty());
    }
}
