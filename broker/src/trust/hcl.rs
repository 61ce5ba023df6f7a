//! Writing Terraform (HCL native syntax): strings, JSON values as HCL expressions,
//! resource labels and comments.

use serde_json::Value;

/// A quoted HCL string. `${` and `%{` start interpolations and directives in HCL, so they
/// are doubled to stand for themselves (IAM's `${*}` must reach AWS as written).
pub(crate) fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `value` as an HCL expression, nested objects indented by two spaces from `indent`.
pub(crate) fn value(value: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent + 2);
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| self::value(v, indent)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) if map.is_empty() => "{}".into(),
        Value::Object(map) => {
            let mut out = String::from("{\n");
            for (k, v) in map {
                out.push_str(&format!("{pad}{} = {}\n", string(k), self::value(v, indent + 2)));
            }
            out.push_str(&" ".repeat(indent));
            out.push('}');
            out
        }
    }
}

/// A Terraform name made from `text`: letters, digits, `_` and `-`, starting with a
/// letter or `_`.
pub(crate) fn label(text: &str) -> String {
    let mut out: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// The `#` lines every Terraform or shell output opens with: what it is for, and the notes.
pub(crate) fn header(issuer: &str, target: &str, notes: &[String]) -> String {
    let mut out = comment(&format!("Trust in Tessera ({issuer}) for target {target}."));
    for note in notes {
        out.push_str(&comment(note));
    }
    out
}

/// Each line of `text` as a `#` comment.
pub(crate) fn comment(text: &str) -> String {
    text.lines().map(|l| format!("# {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn interpolation_starts_are_escaped_and_json_becomes_an_object() {
        assert_eq!(string("a${*}b%{x}\"\\"), r#""a$${*}b%%{x}\"\\""#);
        assert_eq!(string("$5 100%"), r#""$5 100%""#);
        let v = value(&json!({ "k:sub": ["x", 1], "o": {} }), 0);
        assert_eq!(v, "{\n  \"k:sub\" = [\"x\", 1]\n  \"o\" = {}\n}");
        assert_eq!(label("invoices.reader/1"), "invoices_reader_1");
        assert_eq!(label("a-b"), "a-b");
        assert_eq!(label("9lives"), "_9lives");
    }
}
