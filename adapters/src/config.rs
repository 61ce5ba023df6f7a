//! What every configuration file shares: serde helpers for adapter configs, and the located
//! error (`file:line:column: message`) that `broker.yaml`, `agent.yaml` and the adapter
//! configs inside them report, all at once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::{Location, Spanned};

mod references;

pub use references::Secrets;

/// A duration written as `90s`, `15m`, `1h 30m` (humantime) or a bare number of seconds.
pub mod duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(de)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
        }
    }

    /// Parse `15m`, `1h`, `90s`; whole seconds only.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let d = humantime::parse_duration(text.trim()).map_err(|_| not_a_duration(text))?;
        if d.subsec_nanos() != 0 {
            return Err(format!("invalid duration `{text}`: use whole seconds"));
        }
        Ok(d)
    }

    /// A duration that may be below a second (`300ms`, `1s`), for timeouts and intervals.
    pub fn deserialize_fine<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(de)?;
        humantime::parse_duration(text.trim()).map_err(|_| serde::de::Error::custom(not_a_duration(&text)))
    }

    /// The one message for a value that is not a duration.
    pub fn not_a_duration(text: &str) -> String {
        format!("`{text}` is not a duration: expected a duration such as 1h or 15m")
    }

    pub mod option {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(de).map(Some)
        }
    }
}

/// Render a duration the way configs write it (`15m`, `1h`, `90s`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A configured name (source, target, rule): 1 to 64 characters of `a-z`, `0-9`, `-`, `_`,
/// starting with a letter or digit. Names appear in metrics, logs and URLs, so they stay
/// plain.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_len = (1..=64).contains(&name.len());
    let ok_chars =
        name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    let ok_start = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok_len && ok_chars && ok_start {
        Ok(())
    } else {
        Err(format!(
            "invalid name `{name}`: use 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
        ))
    }
}

/// A configuration problem at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl ConfigError {
    /// A problem at `loc` in `file`.
    pub fn at(file: &Path, loc: &Location, message: String) -> Self {
        Self { file: file.to_path_buf(), line: loc.line(), column: loc.column(), message }
    }
}

impl fmt::Display for ConfigError {
    /// `file:line:column: message`; `file: message` for a problem with the file as a whole
    /// (line 0: it cannot be read, a default it relies on does not hold).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file.display(), self.message),
            line => write!(f, "{}:{line}:{}: {}", self.file.display(), self.column, self.message),
        }
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_lines(f, &self.0)
    }
}

impl ConfigErrors {
    /// An error about a source or target entry, found when building it.
    pub fn at_entry<T>(path: &Path, entry: &Spanned<T>, message: String) -> ConfigError {
        ConfigError::at(path, &entry.referenced, message)
    }
}

/// Read `text` as a `T`, reporting every shape problem (unknown keys, wrong types), not
/// only the first: after each, the offending key and its block are blanked out (positions
/// kept) and the text read again. `${env:NAME}` and `${file:PATH}` references are resolved
/// first ([`references`]). Returns the value read once nothing more is wrong (so the
/// caller's semantic checks still run past an unknown key), the problems found, and the
/// resolved secrets, to [`Secrets::redact`] the caller's own messages. No value when the
/// text cannot be repaired so (a problem inside a list item, a required key that had to
/// go): the problems found so far are then all there is to report.
pub fn read_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> (Option<T>, Vec<ConfigError>, Secrets) {
    /// A file with more problems than this is reported in parts.
    const MAX_PROBLEMS: usize = 32;
    let mut errors = Vec::new();
    let (resolved, secrets) = references::resolve(path, text, &mut errors);
    let mut current = resolved.clone();
    let mut blanked: Vec<String> = Vec::new();
    let mut value = None;
    while errors.len() < MAX_PROBLEMS {
        let e = match serde_saphyr::from_str::<T>(&current) {
            Ok(read) => {
                value = Some(read);
                break;
            }
            Err(e) => e,
        };
        let error = shape_error(path, &resolved, &e);
        if blanked.iter().any(|key| error.message.starts_with(&format!("missing field `{key}`"))) {
            // The key was there, and wrong: its own error says so already.
            break;
        }
        let line = usize::try_from(error.line).unwrap_or(0);
        errors.push(error);
        match blank_key(&current, line) {
            Some((keys, repaired)) => {
                blanked.extend(keys);
                current = repaired;
            }
            None => break,
        }
    }
    secrets.redact(&mut errors);
    (value, errors, secrets)
}

/// A shape error in words: the location once (in front, not again at the end), lists and
/// durations named as people write them.
fn shape_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> ConfigError {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
    let mut message = e.without_snippet().to_string();
    let suffix = format!(" at line {line}, column {column}");
    if let Some(stripped) = message.strip_suffix(&suffix) {
        message = stripped.to_string();
    }
    if message.starts_with("expected sequence start") {
        let value = value_at(text, line, column).unwrap_or("...");
        message = format!("expected a list such as [{value}]");
    }
    ConfigError { file: path.to_path_buf(), line, column, message }
}

/// The plain scalar at a 1-based line and column, up to a comment or the line's end.
fn value_at(text: &str, line: u64, column: u64) -> Option<&str> {
    let line = text.lines().nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let rest = line.get(usize::try_from(column).ok()?.checked_sub(1)?..)?;
    let value = rest.split(" #").next()?.trim();
    (!value.is_empty()).then_some(value)
}

/// Blank out (with spaces, so every other position stays) the `key:` on 1-based `line` and
/// the more indented lines of its block, and a parent block left with nothing in it (an
/// empty block would be a problem of its own). Returns the keys blanked. `None` if the line
/// holds no plain `key:` to blank: a list item, a flow collection's continuation, nothing.
fn blank_key(text: &str, line: usize) -> Option<(Vec<String>, String)> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let mut index = line.checked_sub(1)?;
    let mut keys = Vec::new();
    loop {
        let (key, indent) = plain_key(lines.get(index)?)?;
        let deeper = |l: &String| l.trim().is_empty() || indent_of(l) > indent;
        let end = index + 1 + lines.iter().skip(index + 1).take_while(|l| deeper(l)).count();
        for l in lines.iter_mut().take(end).skip(index) {
            *l = l.chars().map(|c| if c == '\n' { c } else { ' ' }).collect();
        }
        keys.push(key);
        // The parent: the nearest line above, less indented, that is not blank.
        let parent = (0..index).rev().find(|&i| lines.get(i).is_some_and(|l| !l.trim().is_empty()));
        let Some(parent) = parent.filter(|&p| lines.get(p).is_some_and(|l| indent_of(l) < indent)) else {
            break;
        };
        let parent_indent = lines.get(parent).map_or(0, |l| indent_of(l));
        let emptied = lines
            .iter()
            .skip(parent + 1)
            .take_while(|l| l.trim().is_empty() || indent_of(l) > parent_indent)
            .all(|l| l.trim().is_empty());
        let is_block = lines.get(parent).is_some_and(|l| l.trim_end().ends_with(':'));
        if !(emptied && is_block) {
            break;
        }
        index = parent;
    }
    Some((keys, lines.concat()))
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The key of a `key: ...` line and its indentation; `None` for anything else.
fn plain_key(line: &str) -> Option<(String, usize)> {
    let (key, _) = line.trim_start().split_once(':')?;
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    (!key.is_empty() && key.chars().all(plain) && !key.starts_with('-'))
        .then(|| (key.to_string(), indent_of(line)))
}

/// Write located problems one a line, so config and mapping errors read the same way.
pub fn write_lines<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str("\n")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// A `sources:` or `targets:` entry of `broker.yaml`, as JSON, read as the config of kind
/// `kind`, which its `type:` must name. The registry dispatches on `type:` (its own tests
/// hold the spelling); a kind's tests read their entries without it.
/// Read a config file; a file that cannot be read is one error naming it (`what`: "config",
/// "agent config").
pub fn read_file(path: &Path, what: &str) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read {what} file: {e}"),
        }])
    })
}

/// The directory relative paths in the config file at `path` resolve against: the file's own.
pub fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `path` as written in a config whose directory is `base_dir`.
pub fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) }
}

#[cfg(test)]
pub(crate) fn kind_config<C: serde::de::DeserializeOwned>(
    kind: &str,
    mut entry: serde_json::Value,
) -> Result<C, serde_json::Error> {
    if let Some(named) = entry.as_object_mut().and_then(|e| e.remove("type")) {
        assert_eq!(named, kind, "an entry of kind `{kind}` names another type");
    }
    serde_json::from_value(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_both_forms() {
        assert_eq!(duration::parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(duration::parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(duration::parse("soon").is_err());
        assert!(duration::parse("1500ms").is_err());
        #[derive(Deserialize)]
        struct T {
            #[serde(with = "duration")]
            d: Duration,
        }
        let t: T = serde_json::from_str(r#"{"d": 60}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.d, Duration::from_secs(60));
    }

    #[test]
    fn blanking_a_key_keeps_every_other_position_and_empties_parents_left_empty() {
        let text = "a: 1\nb:\n  c: x\n  d:\n    - 1\ne: 2\n";
        let (keys, once) = blank_key(text, 3).unwrap();
        assert_eq!(keys, ["c"]);
        assert_eq!(once, "a: 1\nb:\n      \n  d:\n    - 1\ne: 2\n");
        let (keys, twice) = blank_key(&once, 4).unwrap();
        assert_eq!(keys, ["d", "b"]);
        assert_eq!(twice, "a: 1\n  \n      \n    \n       \ne: 2\n");
        assert!(blank_key("- a: 1\n", 1).is_none(), "a list item is not blanked");
        assert!(blank_key("a: 1\n", 2).is_none());
    }

    #[test]
    fn names_are_plain() {
        assert!(validate_name("eks-prod").is_ok());
        assert!(validate_name("aws_prod2").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("Prod").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"a".repeat(65)).is_err());
    }
}
