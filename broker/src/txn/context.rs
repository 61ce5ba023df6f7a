//! The JSON objects of a Txn-Token request (`request_context`, `request_details`, an
//! `unsigned_json` subject; draft-ietf-oauth-transaction-tokens-10 §10.1, §10.2.2), read
//! strictly: an object at the top, no member named twice at any depth, and bounded in size
//! and depth, since each becomes part of a signed, integrity-protected context.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The largest context object, in bytes of its JSON text.
pub const MAX_CONTEXT_BYTES: usize = 8 * 1024;
/// The deepest nesting of objects and arrays in a context object.
pub const MAX_DEPTH: usize = 16;

/// Why a context object was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("larger than {MAX_CONTEXT_BYTES} bytes")]
    TooLarge,
    #[error("not a JSON object")]
    NotAnObject,
    #[error("not well-formed JSON, or a member named twice, or nested deeper than {MAX_DEPTH}")]
    Malformed,
}

/// A JSON value whose objects never name a member twice.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Strict(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut members = Map::new();
        while let Some((name, Strict(value))) = map.next_entry::<String, Strict>()? {
            if members.insert(name, value).is_some() {
                return Err(de::Error::custom("a member is named twice"));
            }
        }
        Ok(Strict(Value::Object(members)))
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Parse `text` as one JSON object, strictly.
pub fn parse_object(text: &str) -> Result<Map<String, Value>, ContextError> {
    if text.len() > MAX_CONTEXT_BYTES {
        return Err(ContextError::TooLarge);
    }
    if text.trim_start().as_bytes().first() != Some(&b'{') {
        return Err(ContextError::NotAnObject);
    }
    // serde_json stops at 128 levels itself; the size bound keeps that cheap.
    let Strict(value) = serde_json::from_str(text).map_err(|_| ContextError::Malformed)?;
    if depth(&value) > MAX_DEPTH {
        return Err(ContextError::Malformed);
    }
    match value {
        Value::Object(members) => Ok(members),
        _ => Err(ContextError::NotAnObject),
    }
}

/// A member that a replacement would change (draft §17, "Txn-Token as a subject_token":
/// asserted values may be added, never modified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub member: String,
}

/// `base` with every member of `added` that `base` lacks; a member `base` holds with
/// another value is refused.
pub fn extend_only(
    mut base: Map<String, Value>,
    added: &Map<String, Value>,
) -> Result<Map<String, Value>, Changed> {
    for (name, value) in added {
        match base.get(name) {
            Some(held) if held != value => return Err(Changed { member: name.clone() }),
            Some(_) => {}
            None => {
                base.insert(name.clone(), value.clone());
            }
        }
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_strict_json_objects_are_contexts() {
        let ok = parse_object(r#" {"req_ip": "69.151.72.123", "n": [1, {"a": null}], "x": 1.5}"#).unwrap();
        assert_eq!(
            Value::Object(ok),
            json!({ "req_ip": "69.151.72.123", "n": [1, { "a": null }], "x": 1.5 })
        );
        for (text, e) in [
            ("[1]", ContextError::NotAnObject),
            ("\"s\"", ContextError::NotAnObject),
            ("", ContextError::NotAnObject),
            ("{\"a\":1,\"a\":1}", ContextError::Malformed),
            ("{\"a\":{\"b\":1,\"b\":2}}", ContextError::Malformed),
            ("{\"a\":1} {}", ContextError::Malformed),
            ("{\"a\":", ContextError::Malformed),
        ] {
            assert_eq!(parse_object(text), Err(e), "{text}");
        }
        let deep = format!("{}{}", "{\"a\":".repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
        assert_eq!(parse_object(&deep), Err(ContextError::Malformed));
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_CONTEXT_BYTES));
        assert_eq!(parse_object(&big), Err(ContextError::TooLarge));
    }

    #[test]
    fn a_replacement_adds_members_and_changes_none() {
        let base = json!({ "action": "BUY", "n": { "q": 1 } });
        let Value::Object(base) = base else { unreachable!() };
        let add = |v: Value| match v {
            Value::Object(m) => extend_only(base.clone(), &m),
            _ => unreachable!(),
        };
        assert_eq!(
            add(json!({ "action": "BUY", "extra": true })).map(Value::Object),
            Ok(json!({ "action": "BUY", "n": { "q": 1 }, "extra": true }))
        );
        assert_eq!(add(json!({ "n": { "q": 2 } })), Err(Changed { member: "n".into() }));
    }
}
