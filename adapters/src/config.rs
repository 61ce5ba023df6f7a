//! What every configuration file shares: serde helpers for adapter configs, and the located
//! error (`file:line:column: message`) that `broker.yaml`, `agent.yaml` and the adapter
//! configs inside them report, all at once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::{Location, Spanned};

mod entries;
mod references;

pub use entries::{Entry, EntryRead, TaggedList};
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
        Self { file: normalize(file), line: loc.line(), column: loc.column(), message }
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
/// kept) and the text read again; a list item that cannot be repaired so (a required key
/// missing or wrong) is blanked as a whole. `${env:NAME}` and `${file:PATH}` references
/// are resolved first ([`references`]). Returns the value read once nothing more is wrong
/// (so the caller's semantic checks still run past an unknown key), the problems found,
/// and the resolved secrets, to [`Secrets::redact`] the caller's own messages. No value
/// when a list item or a required key had to go: what is left is not the file's meaning,
/// and the problems found are all there is to report.
pub fn read_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> (Option<T>, Vec<ConfigError>, Secrets) {
    read_yaml_with(path, text, &[])
}

/// [`read_yaml`], with the entries of each of `lists` read first, one by one, as the
/// kind their `type:` names: every problem of every entry, at its own key.
pub fn read_yaml_with<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    lists: &[TaggedList<'_>],
) -> (Option<T>, Vec<ConfigError>, Secrets) {
    let mut errors = Vec::new();
    let (resolved, secrets) = references::resolve(path, text, &mut errors);
    let mut current = resolved.clone();
    let mut complete = true;
    for list in lists {
        complete &= entries::read_list(list, path, &resolved, &mut current, &mut errors);
    }
    let repaired = repair::<T>(path, &resolved, current, &mut errors);
    secrets.redact(&mut errors);
    let value = repaired.value.filter(|_| complete && repaired.complete);
    (value, errors, secrets)
}

/// What [`repair`] made of a text.
struct Repaired<T> {
    value: Option<T>,
    /// No list item or required key had to go.
    complete: bool,
    /// The text as last read, with what was blanked blank.
    text: String,
}

/// Read `current` as a `T`, blanking each problem's key (or list item) and reading again,
/// until it reads or nothing more can be blanked. Problems go to `errors`, worded from
/// `resolved` (the text as written, references resolved).
fn repair<T: serde::de::DeserializeOwned>(
    path: &Path,
    resolved: &str,
    mut current: String,
    errors: &mut Vec<ConfigError>,
) -> Repaired<T> {
    /// A file with more problems than this is reported in parts.
    const MAX_PROBLEMS: usize = 32;
    let mut blanked: Vec<String> = Vec::new();
    // A required key blanked for a wrong value, and its line with a value of the shape
    // asked for, to read on past it.
    let mut fixes: Vec<(String, usize, String)> = Vec::new();
    let mut complete = true;
    while errors.len() < MAX_PROBLEMS {
        let e = match serde_saphyr::from_str::<T>(&current) {
            Ok(read) => return Repaired { value: Some(read), complete, text: current },
            Err(e) => e,
        };
        let error = shape_error(path, resolved, &current, &e);
        let line = usize::try_from(error.line).unwrap_or(0);
        let gone = blanked.iter().find(|key| error.message.starts_with(&format!("missing field `{key}`")));
        if let Some(key) = gone {
            // A key that was there and wrong has said so already: put a value of the right
            // shape in its place if one is known, else its item (in a list) goes.
            complete = false;
            if let Some(i) = fixes.iter().position(|(k, _, _)| k == key) {
                let (_, at, fixed) = fixes.swap_remove(i);
                current = replace_line(&current, at, &fixed);
                continue;
            }
            match entries::blank_item(&current, line) {
                Some(repaired) => current = repaired,
                None => break,
            }
            continue;
        }
        let fix = fixed_line(&current, line, &error.message);
        errors.push(error);
        match blank_key(&current, line) {
            Some((keys, repaired)) => {
                if let (Some(fixed), Some(key)) = (fix, keys.first()) {
                    fixes.push((key.clone(), line, fixed));
                }
                blanked.extend(keys);
                current = repaired;
            }
            None => match entries::blank_item(&current, line) {
                Some(repaired) => {
                    complete = false;
                    current = repaired;
                }
                None => break,
            },
        }
    }
    Repaired { value: None, complete: false, text: current }
}

/// A shape error in words: the location once (in front, not again at the end), at the
/// key or value it is about, lists and durations named as people write them. `current`
/// is the text that was read (blanked where repaired), `text` the file as written.
fn shape_error(path: &Path, text: &str, current: &str, e: &serde_saphyr::Error) -> ConfigError {
    let (mut line, mut column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
    let mut message = e.without_snippet().to_string();
    let suffix = format!(" at line {line}, column {column}");
    if let Some(stripped) = message.strip_suffix(&suffix) {
        message = stripped.to_string();
    }
    // Read through a buffer (a flattened or tagged struct), a value's error is placed at
    // the end of its mapping: find the key or value it names.
    if let Some((l, c)) = named_in(&message).and_then(|named| locate(current, line, &named)) {
        (line, column) = (l, c);
    }
    let buffered_list = message.starts_with("invalid type: ") && message.ends_with("expected a sequence");
    if message.starts_with("expected sequence start") || buffered_list {
        let value = value_at(text, line, column).unwrap_or("...");
        message = format!("expected a list such as [{value}]");
    }
    ConfigError { file: normalize(path), line, column, message }
}

/// Line `line` (1-based) of `text` with its value in the shape `message` asks for: a
/// list holding it, a duration.
fn fixed_line(text: &str, line: usize, message: &str) -> Option<String> {
    let original = text.lines().nth(line.checked_sub(1)?)?;
    let (key, value) = original.split_once(':')?;
    let value = value.split(" #").next()?.trim();
    if message.starts_with("expected a list such as") {
        Some(format!("{key}: [{value}]"))
    } else if message.contains("expected a duration such as") {
        Some(format!("{key}: 1h"))
    } else {
        None
    }
}

/// `text` with line `line` (1-based) replaced.
fn replace_line(text: &str, line: usize, with: &str) -> String {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    if let Some(l) = line.checked_sub(1).and_then(|i| lines.get_mut(i)) {
        *l = format!("{with}\n");
    }
    lines.concat()
}

/// What a serde message is about: a key (`unknown field `k``) or a value (`invalid type:
/// string "v"`, `` `v` is not a duration``).
enum Named {
    Key(String),
    Value(String),
}

fn named_in(message: &str) -> Option<Named> {
    let between = |text: &str, open: char, close: char| {
        let rest = text.split_once(open)?.1;
        rest.split_once(close).map(|(inside, _)| inside.to_string())
    };
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return between(rest, '`', '`').map(Named::Key);
    }
    if let Some(rest) =
        message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: "))
    {
        let quoted =
            if rest.starts_with("string ") { between(rest, '"', '"') } else { between(rest, '`', '`') };
        return quoted.map(Named::Value);
    }
    message.contains("` is not a duration").then(|| between(message, '`', '`').map(Named::Value)).flatten()
}

/// Where in `text` the key or value is: `line` (1-based) if it is there, else its first
/// line, at the key or the value.
fn locate(text: &str, line: u64, named: &Named) -> Option<(u64, u64)> {
    let at = |l: &str| -> Option<u64> {
        match named {
            Named::Key(key) => plain_key(l).filter(|(k, _)| k == key).map(|(_, indent)| indent as u64 + 1),
            Named::Value(value) => {
                let (before, rest) = l.split_once(':')?;
                let found = rest.split(" #").next()?.trim().trim_matches(|c| c == '"' || c == '\'');
                let column = before.len() + 1 + rest.len() - rest.trim_start().len() + 1;
                (plain_key(l).is_some() && found == value).then_some(column as u64)
            }
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    let reported = usize::try_from(line).ok()?.checked_sub(1).and_then(|i| lines.get(i));
    if reported.is_some_and(|l| at(l).is_some()) {
        return None;
    }
    lines.iter().enumerate().find_map(|(i, l)| Some((i as u64 + 1, at(l)?)))
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
        // As given: normalized, `x/../broker.yaml` would name a file that may well exist.
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
    normalize(&normalize(path).join(".."))
}

/// `path` as written in a config whose directory is `base_dir`, [`normalize`]d.
pub fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { normalize(path) } else { normalize(&base_dir.join(path)) }
}

/// `path` without `.` components and with each `..` taking out the name before it, as
/// people expect paths shown (`conf/../mappings` is `mappings`); a leading `..` stays. The
/// empty path is `.`.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(component),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() { PathBuf::from(".") } else { out.iter().collect() }
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
    fn paths_are_shown_normalized() {
        let n = |p: &str| normalize(Path::new(p)).display().to_string();
        assert_eq!(n("./a/../b"), "b");
        assert_eq!(n("conf/./rules/../mappings/"), "conf/mappings");
        assert_eq!(n("/etc/tessera/../tessera/broker.yaml"), "/etc/tessera/broker.yaml");
        assert_eq!(n("/../x"), "/x");
        assert_eq!(n("../shared/rules"), "../shared/rules");
        assert_eq!(n("a/.."), ".");
        assert_eq!(
            resolve(&base_dir(Path::new("./conf/broker.yaml")), Path::new("../mappings")),
            Path::new("mappings")
        );
        assert_eq!(base_dir(Path::new("broker.yaml")), Path::new("."));
        assert_eq!(base_dir(Path::new("/broker.yaml")), Path::new("/"));
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
