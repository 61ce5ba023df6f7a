//! Strict JSON for tokens, key sets and discovery documents: an object that names the same
//! member twice is refused at any depth. RFC 7515 §5.2 and RFC 7519 §7.2 require a parser
//! either to reject duplicate names or to keep the last; keeping one silently lets two
//! parsers of the same token disagree about its claims, so Tessera rejects.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a JSON text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JsonError {
    #[error("JSON object has a duplicate member")]
    DuplicateMember,
    #[error("not valid JSON")]
    Invalid,
    #[error("JSON value is not an object")]
    NotAnObject,
}

/// Marks the duplicate-member error as it travels through serde_json's error type, which
/// appends a position to custom messages.
const DUPLICATE_MARKER: &str = "tessera: duplicate member";

/// Parse `bytes` as one JSON object, refusing duplicate members at any depth and trailing
/// data.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match parse_value(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotAnObject),
    }
}

/// Parse `bytes` as one JSON value, refusing duplicate members at any depth.
pub(crate) fn parse_value(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    // serde_json's own recursion limit (128) bounds the nesting this visitor follows.
    let value = StrictValue.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(|_| JsonError::Invalid)?;
    Ok(value)
}

fn classify(e: serde_json::Error) -> JsonError {
    if e.is_data() && e.to_string().starts_with(DUPLICATE_MARKER) {
        JsonError::DuplicateMember
    } else {
        JsonError::Invalid
    }
}

/// Builds a [`Value`] like serde_json does, but fails on a repeated object member.
#[derive(Clone, Copy)]
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(DUPLICATE_MARKER));
            }
            let value = map.next_value_seed(StrictValue)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        assert_eq!(parse_object(br#"{"a":1,"a":2}"#), Err(JsonError::DuplicateMember));
        assert_eq!(parse_object(br#"{"a":{"b":1,"b":1}}"#), Err(JsonError::DuplicateMember));
        assert_eq!(parse_object(br#"{"a":[{"c":1,"c":2}]}"#), Err(JsonError::DuplicateMember));
        // The same name in different objects is fine.
        assert!(parse_object(br#"{"a":{"x":1},"b":{"x":1}}"#).is_ok());
    }

    #[test]
    fn escaped_duplicates_are_still_duplicates() {
        // "\u0061" is "a": the names differ in text but not in meaning.
        assert_eq!(parse_object(br#"{"a":1,"\u0061":2}"#), Err(JsonError::DuplicateMember));
    }

    #[test]
    fn shape_errors() {
        assert_eq!(parse_object(b"[1]"), Err(JsonError::NotAnObject));
        assert_eq!(parse_object(b"{} x"), Err(JsonError::Invalid));
        assert_eq!(parse_object(b"{"), Err(JsonError::Invalid));
        assert_eq!(parse_object(b"\xff"), Err(JsonError::Invalid));
    }

    #[test]
    fn values_match_serde_json() {
        let text =
            br#"{"s":"x","i":-3,"u":18446744073709551615,"f":1.5,"b":true,"n":null,"a":[1,{"k":"v"}]}"#;
        let strict = parse_object(text).unwrap();
        let plain: Map<String, Value> = serde_json::from_slice(text).unwrap();
        assert_eq!(strict, plain);
        assert!(strict["i"].is_i64());
        assert!(strict["f"].is_f64());
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse_value(deep.as_bytes()), Err(JsonError::Invalid));
    }
}
