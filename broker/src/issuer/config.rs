//! The `issuer:` section of `broker.yaml`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tessera_adapters::config::{duration, format_duration};
use tessera_adapters::target::SigningAlgorithm;

/// Tessera as an OIDC issuer: where its keys live and what it signs with.
///
/// ```yaml
/// issuer:
///   url: https://tessera.example.com
///   key_dir: ./keys
///   algorithms: [ES256]
///   key_reload_interval: 10s
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer identifier: the `iss` of every token Tessera signs (RFC 7519 §4.1.1) and
    /// the base of its discovery document (OpenID Discovery 1.0 §4). Required; see
    /// [`IssuerUrl`] for what it may be.
    pub url: IssuerUrl,
    /// The directory holding the signing keys, one `<kid>.json` file per key. Created with
    /// mode 0700 when missing. Relative paths resolve against the config file's directory.
    /// Several replicas may share it. Default: `keys`.
    #[serde(default = "default_key_dir")]
    pub key_dir: PathBuf,
    /// The algorithms Tessera keeps keys for and advertises (RFC 7518 §3.1, RFC 8037 §3.1):
    /// `ES256`, `RS256` (Azure requires it), `EdDSA`. Non-empty, no duplicates.
    /// Default: `[ES256]`.
    #[serde(default = "default_algorithms", deserialize_with = "deserialize_algorithms")]
    pub algorithms: Vec<SigningAlgorithm>,
    /// How often a running broker re-reads `key_dir` to pick up a rotation done by the CLI
    /// or another replica. Between 1s and 1m. Default: `10s`.
    #[serde(default = "default_key_reload_interval", deserialize_with = "deserialize_interval")]
    pub key_reload_interval: Duration,
}

/// The longest `key_reload_interval`. A replica keeps signing with a key another one
/// retired for up to one interval, so a retired key's grace must cover it; a minute keeps
/// that well inside the five-minute margin rotation adds to the longest token lifetime.
pub const MAX_KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

fn default_key_dir() -> PathBuf {
    PathBuf::from("keys")
}

fn default_algorithms() -> Vec<SigningAlgorithm> {
    vec![SigningAlgorithm::Es256]
}

fn default_key_reload_interval() -> Duration {
    Duration::from_secs(10)
}

fn deserialize_algorithms<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<SigningAlgorithm>, D::Error> {
    let algorithms = Vec::<SigningAlgorithm>::deserialize(de)?;
    check_algorithms(&algorithms).map_err(serde::de::Error::custom)?;
    Ok(algorithms)
}

fn deserialize_interval<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let interval = duration::deserialize(de)?;
    check_interval(interval).map_err(serde::de::Error::custom)?;
    Ok(interval)
}

fn check_algorithms(algorithms: &[SigningAlgorithm]) -> Result<(), String> {
    if algorithms.is_empty() {
        return Err("algorithms must name at least one of ES256, RS256, EdDSA".into());
    }
    for (i, alg) in algorithms.iter().enumerate() {
        if algorithms.iter().skip(i + 1).any(|other| other == alg) {
            return Err(format!("algorithm {} is listed twice", alg.as_str()));
        }
    }
    Ok(())
}

fn check_interval(interval: Duration) -> Result<(), String> {
    if interval < Duration::from_secs(1) || interval > MAX_KEY_RELOAD_INTERVAL {
        return Err(format!(
            "key_reload_interval {} must be between 1s and {}",
            format_duration(interval),
            format_duration(MAX_KEY_RELOAD_INTERVAL)
        ));
    }
    Ok(())
}

impl IssuerConfig {
    /// A config with every default, for `url`.
    pub fn new(url: IssuerUrl) -> Self {
        Self {
            url,
            key_dir: default_key_dir(),
            algorithms: default_algorithms(),
            key_reload_interval: default_key_reload_interval(),
        }
    }

    /// `key_dir`, resolved against `base_dir` (the config file's directory) when relative.
    pub fn key_dir(&self, base_dir: &Path) -> PathBuf {
        if self.key_dir.is_absolute() { self.key_dir.clone() } else { base_dir.join(&self.key_dir) }
    }

    /// The checks deserialization makes, for configs built in code.
    pub fn validate(&self) -> Result<(), String> {
        check_algorithms(&self.algorithms)?;
        check_interval(self.key_reload_interval)
    }
}

/// An issuer identifier as OpenID Discovery 1.0 §3 requires: an absolute `https` URL with
/// no query or fragment. Plain `http` is accepted only on a loopback host (`127.0.0.1`,
/// `::1`, `localhost`) for local use. It is kept exactly as written, since verifiers compare
/// `iss` byte for byte, so it must already be in normal form (lowercase scheme and host,
/// no default port, no trailing slash).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IssuerUrl(String);

impl IssuerUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| format!("issuer url `{text}`: {e}"))?;
        let loopback = tessera_adapters::net::is_loopback(&url);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(format!(
                    "issuer url `{text}` must use https (http is allowed only on 127.0.0.1, ::1 or localhost)"
                ));
            }
            other => {
                return Err(format!("issuer url `{text}`: scheme `{other}` is not https"));
            }
        }
        if url.host().is_none() {
            return Err(format!("issuer url `{text}` has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("issuer url `{text}` must not carry credentials"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("issuer url `{text}` must not have a query or fragment"));
        }
        if text.ends_with('/') {
            return Err(format!("issuer url `{text}` must not end with `/`"));
        }
        // `Url` adds `/` to an empty path; anything else differing means `text` is not in
        // normal form, and a verifier comparing `iss` strings would disagree with us.
        let normal = url.as_str().strip_suffix('/').filter(|_| url.path() == "/");
        if normal.unwrap_or(url.as_str()) != text {
            return Err(format!(
                "issuer url `{text}` is not in normal form; write `{}`",
                normal.unwrap_or(url.as_str())
            ));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `{url}/.well-known/openid-configuration` (OpenID Discovery 1.0 §4).
    pub fn discovery_uri(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.0)
    }

    /// `{url}/.well-known/jwks.json`.
    pub fn jwks_uri(&self) -> String {
        format!("{}/.well-known/jwks.json", self.0)
    }

    /// `{url}/v1/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/v1/token", self.0)
    }
}

impl TryFrom<String> for IssuerUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl fmt::Debug for IssuerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for IssuerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
