//! `signals:`: Shared Signals (OpenID SSF 1.0) — the transmitters whose Security Event
//! Tokens (RFC 8417) Tessera receives, by push (RFC 8935) and poll (RFC 8936), and the
//! receivers it pushes its own to. See docs/revocation.md, "Signals".
//!
//! ```yaml
//! signals:
//!   receive:
//!     - name: corp-idp
//!       issuer: https://idp.example.com
//!       jwks_uri: https://idp.example.com/jwks
//!       audience: https://tessera.example.com/ssf
//!       source: corp
//!       poll: { url: https://idp.example.com/ssf/poll, interval: 30s }
//!   transmit:
//!     - name: payments-gateway
//!       endpoint: https://gateway.example.com/ssf/events
//!       audience: https://gateway.example.com
//! ```

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tessera_adapters::Secret;
use tessera_adapters::config::validate_name;
use tessera_adapters::jwt::Algorithm;
use tessera_adapters::target::SigningAlgorithm;

/// Largest SET body accepted by the push endpoint, and largest poll answer read, per SET.
pub const DEFAULT_MAX_SET_BYTES: usize = 64 * 1024;
/// The most a configuration may raise [`SignalsConfig::max_set_bytes`] to.
pub const MAX_SET_BYTES: usize = 1024 * 1024;

/// The `signals` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalsConfig {
    /// Transmitters whose SETs create revocations. Default: none.
    #[serde(default)]
    pub receive: Vec<TransmitterConfig>,
    /// Receivers Tessera pushes a CAEP `credential-change` SET to for each revocation it
    /// makes. Default: none.
    #[serde(default)]
    pub transmit: Vec<ReceiverConfig>,
    /// Largest SET accepted, in bytes (a pushed body, or one SET of a poll answer).
    /// Default `65536`, at most `1048576`.
    #[serde(default = "default_max_set_bytes")]
    pub max_set_bytes: usize,
    /// How old (by `iat`) a received SET may be. Each SET's `jti` is remembered this long
    /// to refuse replays, so older SETs are refused outright. Default `24h`, between `1m`
    /// and `7d`.
    #[serde(
        default = "default_max_age",
        deserialize_with = "tessera_adapters::config::duration::deserialize"
    )]
    pub max_age: Duration,
}

fn default_max_set_bytes() -> usize {
    DEFAULT_MAX_SET_BYTES
}

fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// A transmitter Tessera receives SETs from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransmitterConfig {
    /// Names the transmitter in logs, metrics and as the author of the revocations its
    /// SETs make (`ssf:<name>`).
    pub name: String,
    /// The SETs' `iss`, compared exactly.
    pub issuer: String,
    /// The transmitter's key set URL. Exclusive with `jwks_file`; one is required.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// A static JWKS file, relative to the config file. Exclusive with `jwks_uri`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Accepted signature algorithms. Default `[RS256, ES256]`.
    #[serde(default)]
    pub algorithms: Option<Vec<Algorithm>>,
    /// Allow `http://` URLs (key set, poll endpoint) on loopback hosts only; for tests.
    /// Default `false`.
    #[serde(default)]
    pub insecure_http: bool,
    /// The `aud` Tessera expects in this transmitter's SETs (its stream's audience).
    pub audience: String,
    /// The configured source whose identities this transmitter's subjects name: the
    /// revocations it makes are confined to that source.
    pub source: String,
    /// The identity attribute an `email` subject is matched against, exactly (e.g.
    /// `oidc.email`). Default: `email` subjects are refused.
    #[serde(default)]
    pub email_attribute: Option<String>,
    /// Poll this transmitter (RFC 8936) as well as accepting its pushes. Default: push only.
    #[serde(default)]
    pub poll: Option<PollConfig>,
}

/// Where and how often to poll a transmitter (RFC 8936).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// The transmitter's poll endpoint.
    pub url: String,
    /// Time between polls while nothing more is available. Default `30s`, between `100ms`
    /// and `1h`.
    #[serde(default = "default_poll_interval", deserialize_with = "super::deserialize_fine_duration")]
    pub interval: Duration,
    /// `maxEvents` of each poll. Default `100`, between 1 and 1000.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// The `Authorization` header value each poll carries (`Bearer <token>`, as the
    /// transmitter issued it); write it as a `${file:...}` or `${env:...}` reference.
    /// Default: none.
    #[serde(default, deserialize_with = "secret")]
    pub authorization_header: Option<Secret<String>>,
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_max_events() -> usize {
    100
}

/// A receiver Tessera pushes SETs to (RFC 8935).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Names the receiver in logs and metrics.
    pub name: String,
    /// The receiver's push endpoint.
    pub endpoint: String,
    /// The SETs' `aud`.
    pub audience: String,
    /// The algorithm the SETs are signed with, one of `issuer.algorithms`. Default: the
    /// first of them.
    #[serde(default)]
    pub algorithm: Option<SigningAlgorithm>,
    /// Allow an `http://` endpoint on a loopback host only; for tests. Default `false`.
    #[serde(default)]
    pub insecure_http: bool,
    /// The `Authorization` header value each push carries (SSF 1.0's
    /// `authorization_header`, as the receiver gave it); write it as a `${file:...}` or
    /// `${env:...}` reference. Default: none.
    #[serde(default, deserialize_with = "secret")]
    pub authorization_header: Option<Secret<String>>,
}

fn secret<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Secret<String>>, D::Error> {
    Ok(Some(Secret::new(String::deserialize(de)?)))
}

/// An `Authorization` value must be sendable as an HTTP header: visible ASCII and spaces.
fn header_problem(at: &str, value: Option<&Secret<String>>) -> Option<String> {
    let value = value?.expose();
    let sendable = !value.is_empty() && value.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    (!sendable).then(|| format!("{at}.authorization_header must be visible ASCII (the value is not shown)"))
}

impl SignalsConfig {
    /// What is wrong with these settings, given the configured source names and signing
    /// algorithms.
    pub fn problems(&self, sources: &[&str], algorithms: &[SigningAlgorithm]) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=MAX_SET_BYTES).contains(&self.max_set_bytes) {
            problems.push(format!("signals.max_set_bytes must be between 1 and {MAX_SET_BYTES}"));
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(7 * 24 * 3600)).contains(&self.max_age) {
            problems.push("signals.max_age must be between 1m and 7d".to_string());
        }
        let mut names = HashSet::new();
        let mut issuers = HashSet::new();
        for t in &self.receive {
            let at = format!("signals.receive `{}`", t.name);
            if let Err(m) = validate_name(&t.name) {
                problems.push(format!("signals.receive: transmitter {m}"));
            }
            if !names.insert(t.name.as_str()) {
                problems.push(format!("{at}: the name is used twice"));
            }
            if t.issuer.is_empty() {
                problems.push(format!("{at}.issuer must not be empty"));
            } else if !issuers.insert(t.issuer.as_str()) {
                problems.push(format!("{at}.issuer: another transmitter names the same issuer"));
            }
            if t.jwks_uri.is_some() == t.jwks_file.is_some() {
                problems.push(format!("{at}: set exactly one of jwks_uri and jwks_file"));
            }
            if t.algorithms.as_ref().is_some_and(Vec::is_empty) {
                problems.push(format!("{at}.algorithms must name at least one algorithm"));
            }
            if t.audience.is_empty() {
                problems.push(format!("{at}.audience must not be empty"));
            }
            if !sources.contains(&t.source.as_str()) {
                problems.push(format!("{at}.source: no source is named `{}`", t.source));
            }
            if t.email_attribute.as_ref().is_some_and(String::is_empty) {
                problems.push(format!("{at}.email_attribute must not be empty"));
            }
            if let Some(poll) = &t.poll {
                if let Err(m) = check_url(&poll.url, t.insecure_http) {
                    problems.push(format!("{at}.poll.url: {m}"));
                }
                if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&poll.interval) {
                    problems.push(format!("{at}.poll.interval must be between 100ms and 1h"));
                }
                if !(1..=1000).contains(&poll.max_events) {
                    problems.push(format!("{at}.poll.max_events must be between 1 and 1000"));
                }
                problems.extend(header_problem(&format!("{at}.poll"), poll.authorization_header.as_ref()));
            }
        }
        let mut names = HashSet::new();
        for r in &self.transmit {
            let at = format!("signals.transmit `{}`", r.name);
            if let Err(m) = validate_name(&r.name) {
                problems.push(format!("signals.transmit: receiver {m}"));
            }
            if !names.insert(r.name.as_str()) {
                problems.push(format!("{at}: the name is used twice"));
            }
            if let Err(m) = check_url(&r.endpoint, r.insecure_http) {
                problems.push(format!("{at}.endpoint: {m}"));
            }
            if r.audience.is_empty() {
                problems.push(format!("{at}.audience must not be empty"));
            }
            problems.extend(header_problem(&at, r.authorization_header.as_ref()));
            if let Some(alg) = r.algorithm
                && !algorithms.contains(&alg)
            {
                problems.push(format!("{at}.algorithm: {} is not one of issuer.algorithms", alg.as_str()));
            }
        }
        problems
    }
}

fn check_url(url: &str, insecure_http: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    tessera_adapters::net::check_url(&parsed, insecure_http)
}
