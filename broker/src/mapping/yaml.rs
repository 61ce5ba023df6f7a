//! A YAML document as a tree of nodes, each with its line and column.
//!
//! Mapping files are read into this tree first and checked by hand afterwards, rather than
//! deserialized straight into structs: a derived `Deserialize` stops at the first problem,
//! while ops need every problem in every file reported at once, each at its own position.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Spanned};

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };
}

#[derive(Debug)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order. Duplicate keys are kept so the checker can report them.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug)]
pub(crate) struct Node {
    pub value: Value,
    pub pos: Pos,
    /// Byte range of the node in the source, where the parser knows it.
    span: Option<(u64, u64)>,
    /// The source text of a plain number or boolean, so `tenant: 012345678901` or
    /// `tenant: 1e3` reads as written where a string is expected.
    raw: Option<String>,
}

impl Node {
    /// The node's text where a string is expected: strings as they are, numbers and
    /// booleans as written in the file. `None` for null, lists and maps.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Number(n) => Some(self.raw.clone().unwrap_or_else(|| n.to_string())),
            Value::Bool(b) => Some(self.raw.clone().unwrap_or_else(|| b.to_string())),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// A short name of the node's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// Give nodes without a known position their parent's, and record the source text of
    /// plain numbers and booleans.
    fn finish(&mut self, parent: Pos, text: &str) {
        if self.pos.line == 0 || self.pos.column == 0 {
            self.pos = parent;
        }
        if matches!(self.value, Value::Number(_) | Value::Bool(_)) {
            self.raw = self
                .span
                .and_then(|(start, len)| {
                    let start = usize::try_from(start).ok()?;
                    let end = start.checked_add(usize::try_from(len).ok()?)?;
                    text.get(start..end)
                })
                .map(str::trim)
                // An alias (`*a`) spans the alias token, not the value.
                .filter(|raw| !raw.is_empty() && !raw.starts_with('*'))
                .map(str::to_string);
        }
        let pos = self.pos;
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.finish(pos, text)),
            Value::Map(entries) => {
                for (k, v) in entries {
                    k.finish(pos, text);
                    let key_pos = k.pos;
                    v.finish(key_pos, text);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::Str(_) => {}
        }
    }
}

/// A parse failure: where, and what the parser said.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parse one YAML document into a tree.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut options = serde_saphyr::Options::default();
    // Plain messages: positions are reported in our own `file:line:column` form.
    options.with_snippet = false;
    // `no`, `on`, `yes` stay strings: a namespace named `no` must not turn into false.
    options.strict_booleans = true;
    // `0123` stays text rather than becoming 123.
    options.leading_zero_numbers_as_strings = true;
    // Duplicate keys reach the checker, which reports them with both positions and goes
    // on checking the rest of the file.
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;

    match serde_saphyr::from_str_with_options::<Node>(text, options) {
        Ok(mut node) => {
            node.finish(Pos::START, text);
            Ok(node)
        }
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos { line: l.line(), column: l.column() })
                .filter(|p| p.line > 0 && p.column > 0)
                .unwrap_or(Pos::START);
            let message = if matches!(e.without_snippet(), serde_saphyr::Error::MultipleDocuments { .. }) {
                // The parser's own text names library functions, which mean nothing to ops.
                "the file holds more than one YAML document (`---`); put each in its own file".into()
            } else {
                serde_saphyr::UserMessageFormatter.format_message(&e)
            };
            // The parser's text may quote file content; keep it on one printable line.
            let message = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            Err(SyntaxError { pos, message })
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<ValueOf>::deserialize(de)?;
        let loc = spanned.referenced;
        let span = loc.span();
        Ok(Node {
            value: spanned.value.0,
            pos: Pos { line: loc.line(), column: loc.column() },
            span: span.byte_offset().zip(span.byte_len()),
            raw: None,
        })
    }
}

/// The value part of a node; [`Node`] wraps it in `Spanned` for the position.
struct ValueOf(Value);

impl<'de> Deserialize<'de> for ValueOf {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(ValueVisitor).map(ValueOf)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(ValueVisitor)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or_else(|_| Value::Str(v.to_string()), |n| Value::Number(n.into())))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(u64::try_from(v).map_or_else(|_| Value::Str(v.to_string()), |n| Value::Number(n.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or_else(|| Value::Str(v.to_string()), Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<Node, Node>()? {
            entries.push(entry);
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_entries(node: &Node) -> &[(Node, Node)] {
        match &node.value {
            Value::Map(e) => e,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn nodes_carry_positions_and_numbers_keep_their_spelling() {
        let text = "a: 1\nb:\n  - x\n  - 012345678901\nc: 1.50\nd: no\ne: true\n";
        let root = parse(text).unwrap();
        let e = map_entries(&root);
        assert_eq!(e[0].0.pos, Pos { line: 1, column: 1 });
        assert_eq!(e[0].1.pos, Pos { line: 1, column: 4 });
        assert_eq!(e[0].1.scalar_text().as_deref(), Some("1"));
        let Value::Seq(items) = &e[1].1.value else { panic!() };
        assert_eq!(items[1].pos, Pos { line: 4, column: 5 });
        assert_eq!(items[1].scalar_text().as_deref(), Some("012345678901"));
        assert_eq!(e[2].1.scalar_text().as_deref(), Some("1.50"));
        assert!(matches!(e[3].1.value, Value::Str(ref s) if s == "no"));
        assert!(matches!(e[4].1.value, Value::Bool(true)));
    }

    #[test]
    fn duplicate_keys_reach_the_checker() {
        let root = parse("a: 1\na: 2\n").unwrap();
        assert_eq!(map_entries(&root).len(), 2);
    }

    #[test]
    fn aliases_resolve_and_have_positions() {
        let root = parse("a: &x {k: 5}\nb: *x\n").unwrap();
        let e = map_entries(&root);
        let inner = map_entries(&e[1].1);
        assert_eq!(inner[0].1.scalar_text().as_deref(), Some("5"));
        assert!(inner[0].1.pos.line >= 1);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: 1\nb: \"x\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
        assert!(!err.message.contains("at line"), "{}", err.message);
        let err = parse("a:\n\t- b\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, column: 2 });
    }

    #[test]
    fn several_documents_are_refused_in_plain_words() {
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 3);
        assert!(err.message.contains("more than one YAML document"), "{}", err.message);
    }

    #[test]
    fn empty_document_is_null() {
        assert!(matches!(parse("").unwrap().value, Value::Null));
        assert!(matches!(parse("# only a comment\n").unwrap().value, Value::Null));
    }
}
