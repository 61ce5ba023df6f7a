//! Verified claims flattened into identity attributes (DESIGN.md "The normalized
//! identity"): `prefix.claim`, nested objects as dotted keys, scalars as text, arrays as
//! compact JSON text. Caps keep one token from bloating audit records and rule
//! evaluation; what exceeds them is dropped (and logged at debug), never an error.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// At most this many attributes per identity.
pub const MAX_ATTRIBUTES: usize = 128;
/// At most this many bytes per attribute value (and per key).
pub const MAX_ATTRIBUTE_BYTES: usize = 1024;

/// Claims every JWT source already turns into identity fields, so never into attributes.
pub const REGISTERED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

/// Flatten `claims` other than `exclude` into attributes named `{prefix}.{claim}`.
/// `{"a": {"b": 1}}` gives `prefix.a.b = "1"`; `{"r": ["x", 2]}` gives `prefix.r =
/// "[\"x\",2]"`; nulls and empty objects give nothing.
pub fn flatten_claims(
    prefix: &str,
    claims: &Map<String, Value>,
    exclude: &[&str],
) -> BTreeMap<String, String> {
    let mut out = Flattened::default();
    for (name, value) in claims {
        if exclude.contains(&name.as_str()) {
            continue;
        }
        out.add(format!("{prefix}.{name}"), value);
    }
    if out.dropped_count > 0 || out.dropped_size > 0 {
        tracing::debug!(
            prefix,
            over_count = out.dropped_count,
            over_size = out.dropped_size,
            "identity attributes dropped: over the limits"
        );
    }
    out.attributes
}

#[derive(Default)]
struct Flattened {
    attributes: BTreeMap<String, String>,
    dropped_count: usize,
    dropped_size: usize,
}

impl Flattened {
    fn add(&mut self, key: String, value: &Value) {
        let text = match value {
            Value::Null => return,
            Value::Object(inner) => {
                for (name, value) in inner {
                    self.add(format!("{key}.{name}"), value);
                }
                return;
            }
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            // `Display` of a Value is its compact JSON text.
            Value::Array(_) => value.to_string(),
        };
        if text.len() > MAX_ATTRIBUTE_BYTES || key.len() > MAX_ATTRIBUTE_BYTES {
            self.dropped_size += 1;
        } else if self.attributes.len() >= MAX_ATTRIBUTES {
            self.dropped_count += 1;
        } else {
            self.attributes.insert(key, text);
        }
    }
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
        let attrs = flatten_claims("oidc", &claims, &REGISTERED_CLAIMS);
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
        assert_eq!(attrs, expected);
    }

    #[test]
    fn caps_count_and_size_without_failing() {
        let mut claims = Map::new();
        for i in 0..200 {
            claims.insert(format!("c{i:03}"), json!("v"));
        }
        claims.insert("big".into(), json!("x".repeat(MAX_ATTRIBUTE_BYTES + 1)));
        claims.insert("fits".into(), json!("x".repeat(MAX_ATTRIBUTE_BYTES)));
        let attrs = flatten_claims("oidc", &claims, &[]);
        assert_eq!(attrs.len(), MAX_ATTRIBUTES);
        assert!(!attrs.contains_key("oidc.big"));
        assert!(attrs.values().all(|v| v.len() <= MAX_ATTRIBUTE_BYTES));
    }
}
