//! `${env:NAME}` and `${file:PATH}` in config values, so secrets (a store or Redis URL
//! with its password, a token) need not sit in the file: each is replaced by the variable's
//! value or the file's contents (without its final newline) when the file is loaded. A
//! relative `PATH` starts at the config file's directory. A variable that is not set or a
//! file that cannot be read is a load error at the reference, naming it.
//!
//! References are resolved in the text before it is parsed, one value per line (block
//! style): the whole value is written back as a double-quoted YAML string, escaped, so a
//! resolved value can never change the file's structure and every position stays on its
//! line. Error messages never show a resolved value: [`Secrets::redact`] puts the
//! reference back.

use std::path::Path;

use super::ConfigError;

/// The resolved values of one file, to keep them out of its error messages.
#[derive(Default)]
pub struct Secrets(Vec<(String, String)>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} resolved, [redacted])", self.0.len())
    }
}

impl Secrets {
    /// Each resolved value in the messages replaced by the reference it came from.
    pub fn redact(&self, errors: &mut [ConfigError]) {
        for error in errors {
            for (value, reference) in self.0.iter().filter(|(v, _)| !v.is_empty()) {
                if error.message.contains(value.as_str()) {
                    error.message = error.message.replace(value.as_str(), reference);
                }
            }
        }
    }
}

const KINDS: [&str; 2] = ["${env:", "${file:"];

/// `text` with every reference resolved, the values resolved, and a problem for each
/// reference that could not be (left as written, so the rest of the file is still read).
pub fn resolve(path: &Path, text: &str, errors: &mut Vec<ConfigError>) -> (String, Secrets) {
    if !KINDS.iter().any(|k| text.contains(k)) {
        return (text.to_string(), Secrets::default());
    }
    let mut secrets = Secrets::default();
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let number = u64::try_from(i + 1).unwrap_or(u64::MAX);
        match resolve_line(path, line, number, &mut secrets, errors) {
            Some(resolved) => out.push_str(&resolved),
            None => out.push_str(line),
        }
    }
    (out, secrets)
}

/// The line with its value resolved; `None` to keep it as it is (no reference in its
/// value, or one that could not be resolved).
fn resolve_line(
    path: &Path,
    line: &str,
    number: u64,
    secrets: &mut Secrets,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || !KINDS.iter().any(|k| line.contains(k)) {
        return None;
    }
    let (start, end) = value_span(line);
    let raw = line.get(start..end)?;
    let error = |column: usize, message: String| ConfigError {
        file: path.to_path_buf(),
        line: number,
        column: u64::try_from(column + 1).unwrap_or(u64::MAX),
        message,
    };
    let flow = line.get(..start).is_some_and(|p| p.contains('{') || p.contains('['));
    let content = unquote(raw);
    let (Some(content), false) = (content, flow) else {
        let column = KINDS.iter().filter_map(|k| line.find(k)).min().unwrap_or(start);
        errors.push(error(
            column,
            "write `${env:NAME}` or `${file:PATH}` as a value of its own, in block style (`key: ${env:NAME}`)"
                .to_string(),
        ));
        return None;
    };
    if !KINDS.iter().any(|k| content.contains(k)) {
        // Only a comment names one.
        return None;
    }
    let mut value = String::new();
    let mut rest = content.as_str();
    let mut failed = false;
    while let Some(at) = KINDS.iter().filter_map(|k| rest.find(k)).min() {
        value.push_str(rest.get(..at)?);
        let after = rest.get(at..)?;
        let Some(close) = after.find('}') else {
            value.push_str(after);
            rest = "";
            break;
        };
        let reference = after.get(..=close)?;
        let column = start + raw.find(reference).unwrap_or(0);
        match lookup(path, reference) {
            Ok(resolved) => {
                secrets.0.push((resolved.clone(), reference.to_string()));
                value.push_str(&resolved);
            }
            Err(message) => {
                errors.push(error(column, message));
                failed = true;
            }
        }
        rest = after.get(close + 1..)?;
    }
    value.push_str(rest);
    if failed {
        return None;
    }
    let quoted = serde_json::to_string(&value).ok()?;
    Some(format!("{}{quoted}{}", line.get(..start)?, line.get(end..)?))
}

/// Where the line's value is: after any `- ` and its `key: `, up to a comment or the end.
fn value_span(line: &str) -> (usize, usize) {
    let body = line.trim_end_matches(['\n', '\r']);
    let skip_spaces = |from: usize| from + body.get(from..).map_or(0, |r| r.len() - r.trim_start().len());
    let mut start = skip_spaces(0);
    while body.get(start..).is_some_and(|r| r.starts_with("- ")) {
        start = skip_spaces(start + 2);
    }
    let rest = body.get(start..).unwrap_or_default();
    let key_end = rest
        .find(": ")
        .filter(|&c| !rest.get(..c).unwrap_or_default().contains("${") && !rest.starts_with(['"', '\'']));
    if let Some(colon) = key_end {
        start = skip_spaces(start + colon + 2);
    }
    let value = body.get(start..).unwrap_or_default();
    let end = start + value.find(" #").unwrap_or(value.len());
    (start, start + body.get(start..end).map_or(0, |v| v.trim_end().len()))
}

/// A plain, single- or double-quoted scalar's content; `None` for anything else.
fn unquote(raw: &str) -> Option<String> {
    if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).ok()
    } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        Some(inner.replace("''", "'"))
    } else if raw.starts_with(['{', '[', '|', '>', '&', '*', '!']) {
        None
    } else {
        Some(raw.to_string())
    }
}

/// The value a reference names, or why there is none.
fn lookup(path: &Path, reference: &str) -> Result<String, String> {
    let inner = reference.strip_prefix("${").and_then(|r| r.strip_suffix('}')).unwrap_or_default();
    match inner.split_once(':') {
        Some(("env", name)) => {
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!("`{reference}`: `{name}` is not an environment variable name"));
            }
            std::env::var(name).map_err(|e| match e {
                std::env::VarError::NotPresent => format!("environment variable `{name}` is not set"),
                std::env::VarError::NotUnicode(_) => format!("environment variable `{name}` is not UTF-8"),
            })
        }
        Some(("file", file)) => {
            let full = super::resolve(&super::base_dir(path), Path::new(file));
            let text = std::fs::read_to_string(&full).map_err(|e| format!("cannot read `{file}`: {e}"))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            Ok(text.strip_suffix('\r').unwrap_or(text).to_string())
        }
        _ => Err(format!("`{reference}` is not a reference: write `${{env:NAME}}` or `${{file:PATH}}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(text: &str) -> (String, Vec<String>) {
        let mut errors = Vec::new();
        let (out, _) = resolve(Path::new("/etc/tessera/broker.yaml"), text, &mut errors);
        (out, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_reference_becomes_a_quoted_value_on_the_same_line() {
        let path = std::env::var("PATH").unwrap();
        let (out, errors) =
            resolved("a: 1\nurl: ${env:PATH} # the path\n  - 'x-${env:PATH}'\nn: 8 # not ${env:PATH}\n");
        assert!(errors.is_empty(), "{errors:?}");
        let quoted = serde_json::to_string(&path).unwrap();
        let expected_list = serde_json::to_string(&format!("x-{path}")).unwrap();
        assert_eq!(
            out,
            format!("a: 1\nurl: {quoted} # the path\n  - {expected_list}\nn: 8 # not ${{env:PATH}}\n")
        );
    }

    #[test]
    fn a_file_reference_reads_the_file_without_its_final_newline_and_cannot_inject_yaml() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\nadmin: true\n").unwrap();
        let mut errors = Vec::new();
        let (out, secrets) = resolve(&dir.path().join("broker.yaml"), "password: ${file:pw}\n", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out, "password: \"s3cret\\nadmin: true\"\n");
        let mut leaked = vec![ConfigError {
            file: "b.yaml".into(),
            line: 1,
            column: 11,
            message: "bad value `s3cret\nadmin: true`".into(),
        }];
        secrets.redact(&mut leaked);
        assert_eq!(leaked[0].message, "bad value `${file:pw}`");
    }

    #[test]
    fn what_cannot_be_resolved_is_an_error_at_the_reference_naming_it() {
        let (out, errors) = resolved(
            "url: postgres://u:${env:TESSERA_SURELY_UNSET_42}@db/x\nkey: ${file:missing.pem}\nflow: { a: ${env:PATH} }\nbad: ${env:1X}\n",
        );
        assert_eq!(
            errors,
            [
                "/etc/tessera/broker.yaml:1:19: environment variable `TESSERA_SURELY_UNSET_42` is not set",
                "/etc/tessera/broker.yaml:2:6: cannot read `missing.pem`: No such file or directory (os error 2)",
                "/etc/tessera/broker.yaml:3:12: write `${env:NAME}` or `${file:PATH}` as a value of its own, in block style (`key: ${env:NAME}`)",
                "/etc/tessera/broker.yaml:4:6: `${env:1X}`: `1X` is not an environment variable name",
            ]
        );
        assert!(out.contains("${env:TESSERA_SURELY_UNSET_42}"), "left as written: {out}");
    }
}
