//! What every configuration file shares: serde helpers for adapter configs, and the located
//! error (`file:line:column: message`) that `broker.yaml`, `agent.yaml` and the adapter
//! configs inside them report, all at once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::{Location, Spanned};

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
        let d = humantime::parse_duration(text.trim())
            .map_err(|e| format!("invalid duration `{text}`: {e} (write e.g. 90s, 15m, 1h)"))?;
        if d.subsec_nanos() != 0 {
            return Err(format!("invalid duration `{text}`: use whole seconds"));
        }
        Ok(d)
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
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

    /// Text that is not YAML of the expected shape: the parser's one error, where it
    /// stopped (the file's start when it cannot say).
    pub fn yaml(path: &Path, e: &serde_saphyr::Error) -> Self {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
        Self(vec![ConfigError {
            file: path.to_path_buf(),
            line,
            column,
            message: e.without_snippet().to_string(),
        }])
    }
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
