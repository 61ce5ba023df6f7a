//! `broker.yaml`: loading and validation. Every problem found is reported with its file,
//! line and column, all at once; nothing half-valid is ever served.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;
use tessera_adapters::config::{TaggedList, validate_name};
use tessera_adapters::jwt::token_cache::{self, TokenCacheOptions};
use tessera_adapters::registry::{SOURCE_KINDS, SourceConfig, TARGET_KINDS, TargetConfig};

use crate::issuer::IssuerConfig;

mod introspection;
mod scale;
mod signals;

pub use introspection::IntrospectionConfig;
pub use scale::{RateLimitConfig, RedisConfig, SecretUrl};
pub use signals::{PollConfig, ReceiverConfig, SignalsConfig, TransmitterConfig};
pub use tessera_adapters::config::{ConfigError, ConfigErrors};

/// The broker's configuration file, version 1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Must be `1`.
    pub version: Spanned<u32>,
    /// Public listener for token exchange and issuer metadata. Default `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// HTTP worker threads. Default: one per CPU core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Tessera as an OIDC issuer: URL, key directory, algorithms.
    pub issuer: IssuerConfig,
    /// Identity sources Tessera trusts; each `type:` is an adapter kind.
    pub sources: Spanned<Vec<Spanned<SourceConfig>>>,
    /// Credential targets Tessera issues for; callers name one as `audience`.
    pub targets: Spanned<Vec<Spanned<TargetConfig>>>,
    /// Directory of mapping files, relative to this file. Default `mappings`.
    #[serde(default = "default_mappings")]
    pub mappings: Spanned<PathBuf>,
    /// Where the broker keeps what it writes itself (the embedded audit store), relative
    /// to this file. Default `data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where audit events go. Default: JSON lines on standard output.
    #[serde(default)]
    pub audit: Option<Spanned<AuditConfig>>,
    /// Request limits.
    #[serde(default)]
    pub limits: Option<Spanned<LimitsConfig>>,
    /// A local token issuer for trying Tessera out with no cloud account. Off unless set;
    /// it binds loopback only and must never be enabled in production.
    #[serde(default)]
    pub demo_issuer: Option<Spanned<DemoIssuerConfig>>,
    /// The admin listener (`POST /v1/explain`, `GET /v1/status`, `POST /v1/reload`,
    /// `GET /metrics`, ...). Off unless set; loopback addresses only unless `admin.auth` is
    /// set.
    #[serde(default)]
    pub admin: Option<Spanned<AdminConfig>>,
    /// A listener serving only `GET /metrics`, for Prometheus to scrape without admin
    /// credentials. Off unless set.
    #[serde(default)]
    pub metrics: Option<Spanned<MetricsConfig>>,
    /// How a running broker picks up changed mapping files. Default: watched, 300ms
    /// debounce, polled every 30s.
    #[serde(default)]
    pub reload: Option<Spanned<ReloadConfig>>,
    /// Redis shared by replicas: the credential cache and rate-limit counters. Off unless
    /// set (each replica then caches and counts alone).
    #[serde(default)]
    pub redis: Option<Spanned<RedisConfig>>,
    /// Per-identity exchange rate limit. Off unless set.
    #[serde(default)]
    pub rate_limit: Option<Spanned<RateLimitConfig>>,
    /// The verified-token cache of each JWT source. Default: on, 10,000 tokens per source.
    #[serde(default)]
    pub token_cache: Option<Spanned<TokenCacheOptions>>,
    /// Shared Signals: transmitters whose Security Event Tokens revoke, receivers told of
    /// revocations. Off unless set.
    #[serde(default)]
    pub signals: Option<Spanned<SignalsConfig>>,
    /// RFC 7662 token introspection on the public listener (`POST /v1/introspect`): which
    /// clients may call it. Off unless set: every introspection request is then refused
    /// as `invalid_client`.
    #[serde(default)]
    pub introspection: Option<Spanned<IntrospectionConfig>>,
    /// RFC 8693 delegation (`actor_token`): the longest `act` chain. Default: 4 actors.
    #[serde(default)]
    pub delegation: Option<Spanned<crate::delegation::DelegationConfig>>,
}

impl BrokerConfig {
    pub fn audit(&self) -> AuditConfig {
        self.audit.as_ref().map(|a| a.value.clone()).unwrap_or_default()
    }

    pub fn limits(&self) -> LimitsConfig {
        self.limits.as_ref().map(|l| l.value).unwrap_or_default()
    }

    pub fn demo_issuer(&self) -> Option<&DemoIssuerConfig> {
        self.demo_issuer.as_ref().map(|d| &d.value)
    }

    pub fn admin(&self) -> Option<&AdminConfig> {
        self.admin.as_ref().map(|a| &a.value)
    }

    pub fn metrics(&self) -> Option<&MetricsConfig> {
        self.metrics.as_ref().map(|m| &m.value)
    }

    pub fn reload(&self) -> ReloadConfig {
        self.reload.as_ref().map(|r| r.value).unwrap_or_default()
    }

    pub fn redis(&self) -> Option<&RedisConfig> {
        self.redis.as_ref().map(|r| &r.value)
    }

    pub fn rate_limit(&self) -> Option<RateLimitConfig> {
        self.rate_limit.as_ref().map(|r| r.value)
    }

    pub fn token_cache(&self) -> TokenCacheOptions {
        self.token_cache.as_ref().map(|t| t.value).unwrap_or_default()
    }

    pub fn signals(&self) -> Option<&SignalsConfig> {
        self.signals.as_ref().map(|s| &s.value)
    }

    pub fn delegation(&self) -> crate::delegation::DelegationConfig {
        self.delegation.as_ref().map(|d| d.value).unwrap_or_default()
    }

    pub fn sources(&self) -> impl Iterator<Item = &SourceConfig> {
        self.sources.value.iter().map(|s| &s.value)
    }

    pub fn targets(&self) -> impl Iterator<Item = &TargetConfig> {
        self.targets.value.iter().map(|t| &t.value)
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_mappings() -> Spanned<PathBuf> {
    let unknown = serde_saphyr::Location::UNKNOWN;
    Spanned::new(PathBuf::from("mappings"), unknown, unknown)
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// Where audit events go: a JSON-lines sink and the SQL store, both written before a
/// credential is returned.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `stdout` (default), `file` or `none` (the store only).
    #[serde(default)]
    pub sink: AuditSinkKind,
    /// The JSON-lines file, for `sink: file`; relative to this file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// When `false` (default), an exchange whose audit event cannot be written fails
    /// with `temporarily_unavailable` and no credential is returned.
    #[serde(default)]
    pub fail_open: bool,
    /// The SQL store the workload directory and `GET /v1/audit` read. Default: SQLite in
    /// `data_dir`.
    #[serde(default)]
    pub store: AuditStoreConfig,
}

/// The SQL audit store.
///
/// ```yaml
/// audit:
///   store:
///     url: postgres://tessera:CHANGE-ME@postgres.internal:5432/tessera
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditStoreConfig {
    /// `false` keeps no store: no workload directory, no `GET /v1/audit`. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `postgres://user:password@host:port/db` (replicas share it) or `sqlite://path`.
    /// Default: `sqlite://<data_dir>/audit.db`. The password is never logged.
    #[serde(default)]
    pub url: Option<SecretUrl>,
    /// How long one event may wait to be committed (connecting included) before its
    /// exchange fails, or, with `fail_open`, goes ahead unrecorded. Between 100ms and
    /// 60s. Default `5s`.
    #[serde(default = "default_store_timeout", deserialize_with = "deserialize_fine_duration")]
    pub timeout: Duration,
    /// Connections to the store, from 1 to 100. Default 8.
    #[serde(default = "default_store_connections")]
    pub max_connections: u32,
}

impl Default for AuditStoreConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: None,
            timeout: default_store_timeout(),
            max_connections: default_store_connections(),
        }
    }
}

impl AuditStoreConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(url) = &self.url
            && let Err(e) = url.check("audit.store.url", &["postgres", "postgresql", "sqlite"])
        {
            problems.push(e);
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.timeout) {
            problems.push("audit.store.timeout must be between 100ms and 60s".to_string());
        }
        if !(1..=100).contains(&self.max_connections) {
            problems.push("audit.store.max_connections must be between 1 and 100".to_string());
        }
        problems
    }
}

fn default_true() -> bool {
    true
}

fn default_store_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_store_connections() -> u32 {
    8
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditSinkKind {
    #[default]
    Stdout,
    File,
    None,
}

/// Request size limits. The defaults are also the maxima.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted, in bytes. Default and maximum 65536.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Largest subject token accepted, in bytes. Default and maximum 16384.
    #[serde(default = "default_max_token")]
    pub max_token_bytes: usize,
    /// Most revocation watches (`POST /v1/revocations/watch`) held open at once; one more
    /// is answered 503 with `Retry-After`. Each is an open connection, usually one per
    /// credential an agent serves. Between 1 and 65536; default 4096.
    #[serde(default = "default_max_watches")]
    pub max_revocation_watches: usize,
}

pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

fn default_max_body() -> usize {
    MAX_BODY_BYTES
}

fn default_max_token() -> usize {
    MAX_TOKEN_BYTES
}

fn default_max_watches() -> usize {
    crate::revocation::watch::DEFAULT_MAX_WATCHES
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: MAX_BODY_BYTES,
            max_token_bytes: MAX_TOKEN_BYTES,
            max_revocation_watches: default_max_watches(),
        }
    }
}

/// The local demo issuer of the quickstart.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoIssuerConfig {
    /// Loopback address to serve discovery, JWKS and `POST /token` on. Its issuer URL is
    /// `http://<listen>`.
    pub listen: SocketAddr,
    /// Where the demo issuer keeps its signing key. Default `.demo-keys`.
    #[serde(default = "default_demo_keys")]
    pub key_dir: PathBuf,
}

fn default_demo_keys() -> PathBuf {
    PathBuf::from(".demo-keys")
}

/// The admin listener: operator endpoints, kept off the public listener.
///
/// ```yaml
/// admin:
///   listen: 0.0.0.0:8090
///   auth:
///     jwt:
///       target: admin            # a `jwt` target of this file
///     tls:
///       cert: /etc/tessera/admin/tls.crt
///       key: /etc/tessera/admin/tls.key
///       client_ca: /etc/tessera/admin/clients-ca.crt
///     require: all               # with both: `all` (default) or `any`
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to serve on. Default `127.0.0.1:8090`. Without `auth` only loopback
    /// addresses are accepted; any other address requires `auth`.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// How callers authenticate. Default: no authentication, which is allowed on loopback
    /// only. When set, every admin route but `GET /healthz` requires it, whatever the
    /// listen address.
    #[serde(default)]
    pub auth: Option<Spanned<AdminAuthConfig>>,
    /// Host names (or addresses) callers may name in `Host`, besides loopback addresses
    /// and `localhost`: the names the listener is reached by off loopback. A request for
    /// any other host is refused before authentication (DNS rebinding). Default: none.
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
}

impl AdminConfig {
    pub fn auth(&self) -> Option<&AdminAuthConfig> {
        self.auth.as_ref().map(|a| &a.value)
    }
}

/// The admin listener's authentication: a Tessera-issued bearer JWT, a client
/// certificate (mTLS), or both. At least one must be set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAuthConfig {
    /// Bearer tokens Tessera issued for a `jwt` target. Default: not accepted.
    #[serde(default)]
    pub jwt: Option<Spanned<AdminJwtConfig>>,
    /// Serve HTTPS and verify client certificates. Default: plain HTTP, no client
    /// certificates.
    #[serde(default)]
    pub tls: Option<Spanned<AdminTlsConfig>>,
    /// With both `jwt` and `tls`: `all` (default) requires a valid client certificate
    /// and a valid token; `any` accepts either. Only meaningful with both set.
    #[serde(default)]
    pub require: Option<Spanned<AdminAuthRequire>>,
}

impl AdminAuthConfig {
    /// The effective rule: `all` unless `any` was written.
    pub fn require(&self) -> AdminAuthRequire {
        self.require.as_ref().map(|r| r.value).unwrap_or_default()
    }
}

/// Admin bearer tokens: JWTs this broker issued for a `jwt` target, granted by the
/// mapping rules like any other target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminJwtConfig {
    /// The `jwt` target whose tokens open the admin API; its `audience` must be in the
    /// token's `aud`, its `algorithm` signed it, and its `max_ttl` bounds the token's
    /// lifetime. Required.
    pub target: Spanned<String>,
}

/// The admin listener's TLS: its certificate and the CA client certificates must chain
/// to. Paths are relative to the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTlsConfig {
    /// PEM certificate chain the listener presents, leaf first. Required.
    pub cert: Spanned<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`. Required.
    pub key: Spanned<PathBuf>,
    /// PEM CA certificate(s) a client certificate must chain to. Required.
    pub client_ca: Spanned<PathBuf>,
}

/// Whether a caller needs every configured admin authentication method or any one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminAuthRequire {
    /// A valid client certificate and a valid token.
    #[default]
    All,
    /// A valid client certificate or a valid token; a token that is sent must be valid.
    Any,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8090))
}

/// The metrics listener: `GET /metrics` and nothing else, unauthenticated.
///
/// ```yaml
/// metrics:
///   listen: 0.0.0.0:9464     # Prometheus scrapes the pod's address
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to serve on. Default `127.0.0.1:9464`. Served as written: metrics need no
    /// credentials, so an address off loopback is reachable by whoever can reach the port.
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

/// How a running broker notices changed mapping files. Every change is validated whole
/// before it serves; see docs/mappings.md, "Reload".
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Watch the directory for changes. Default `true`.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Quiet time after the last change before reloading, so an editor's or a deploy's
    /// several writes make one reload. Between 10ms and 10s. Default `300ms`.
    #[serde(default = "default_debounce", deserialize_with = "deserialize_fine_duration")]
    pub debounce: Duration,
    /// Also look for changes this often, for file systems that report none (some network
    /// mounts). Whole seconds; `0s` never. Default `30s`.
    #[serde(
        default = "default_poll_interval",
        deserialize_with = "tessera_adapters::config::duration::deserialize"
    )]
    pub poll_interval: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self { watch: true, debounce: default_debounce(), poll_interval: default_poll_interval() }
    }
}

fn default_debounce() -> Duration {
    Duration::from_millis(300)
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(30)
}

/// A duration that may be below a second: `300ms`, `1s`.
pub(crate) fn deserialize_fine_duration<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Duration, D::Error> {
    tessera_adapters::config::duration::deserialize_fine(de)
}

/// A loaded, validated configuration and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: BrokerConfig,
    pub path: PathBuf,
    /// The config file's directory: relative paths inside it resolve against this.
    pub base_dir: PathBuf,
    /// `sha256:<hex>` of the file's bytes.
    pub version: String,
}

impl LoadedConfig {
    pub fn resolve(&self, path: &Path) -> PathBuf {
        tessera_adapters::config::resolve(&self.base_dir, path)
    }

    pub fn mappings_dir(&self) -> PathBuf {
        self.resolve(&self.config.mappings.value)
    }

    /// An error when the mapping directory does not exist, at the `mappings:` line that
    /// names it (or, for the default, the file as a whole).
    pub fn check_mappings_dir(&self) -> Result<(), ConfigErrors> {
        let dir = self.mappings_dir();
        if dir.is_dir() {
            return Ok(());
        }
        let problem = if dir.exists() { "is not a directory" } else { "does not exist" };
        let message = match self.config.mappings.referenced.line() {
            0 => format!(
                "the mapping directory {} {problem}: create it, or name the directory with `mappings:`",
                dir.display()
            ),
            _ => format!(
                "mappings: {} {problem}; relative paths start at this file's directory",
                dir.display()
            ),
        };
        Err(ConfigErrors(vec![ConfigError::at(&self.path, &self.config.mappings.referenced, message)]))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.resolve(&self.config.data_dir)
    }
}

/// Read and validate a config file.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    parse(path, &tessera_adapters::config::read_file(path, "config")?)
}

/// Validate config text as if read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<LoadedConfig, ConfigErrors> {
    let lists = [
        TaggedList {
            key: "sources",
            what: "source",
            kinds: SOURCE_KINDS,
            read: SourceConfig::entry_problems,
        },
        TaggedList {
            key: "targets",
            what: "target",
            kinds: TARGET_KINDS,
            read: TargetConfig::entry_problems,
        },
    ];
    let (config, errors, secrets) =
        tessera_adapters::config::read_yaml_with::<BrokerConfig>(path, text, &lists);
    let Some(config) = config else { return Err(ConfigErrors(errors)) };
    let mut problems = Problems { file: path, errors };
    check_settings(&config, &mut problems);
    check_adapters(&config, &mut problems);
    check_audiences(&config, &mut problems);
    check_trust_domains(&config, &mut problems);
    if !problems.errors.is_empty() {
        secrets.redact(&mut problems.errors);
        return Err(ConfigErrors(problems.errors));
    }
    Ok(LoadedConfig {
        config,
        path: path.to_path_buf(),
        base_dir: tessera_adapters::config::base_dir(path),
        version: tessera_adapters::secret::fingerprint(text.as_bytes()),
    })
}

/// The problems found in one config file, in the order found.
struct Problems<'a> {
    file: &'a Path,
    errors: Vec<ConfigError>,
}

impl Problems<'_> {
    fn at(&mut self, loc: &serde_saphyr::Location, message: String) {
        self.errors.push(ConfigError::at(self.file, loc, message));
    }
}

/// `version` and the settings blocks, each against its own bounds and the others.
fn check_settings(config: &BrokerConfig, problems: &mut Problems<'_>) {
    if config.version.value != 1 {
        let message = format!("unsupported version {}: write `version: 1`", config.version.value);
        problems.at(&config.version.referenced, message);
    }
    if let Some(limits) = &config.limits {
        let (l, loc) = (&limits.value, &limits.referenced);
        if !(1..=MAX_BODY_BYTES).contains(&l.max_body_bytes) {
            problems.at(loc, format!("limits.max_body_bytes must be between 1 and {MAX_BODY_BYTES}"));
        }
        if !(1..=MAX_TOKEN_BYTES).contains(&l.max_token_bytes) {
            problems.at(loc, format!("limits.max_token_bytes must be between 1 and {MAX_TOKEN_BYTES}"));
        }
        if !(1..=65536).contains(&l.max_revocation_watches) {
            problems.at(loc, "limits.max_revocation_watches must be between 1 and 65536".to_string());
        }
    }
    if let Some(audit) = &config.audit {
        check_audit(&audit.value, &audit.referenced, problems);
    }
    if let Some(demo) = &config.demo_issuer
        && !demo.value.listen.ip().is_loopback()
    {
        problems.at(&demo.referenced, "demo_issuer.listen must be a loopback address".to_string());
    }
    if let Some(admin) = &config.admin {
        check_admin(&admin.value, &admin.referenced, config, &mut |loc, m| problems.at(loc, m));
    }
    if let Some(i) = &config.introspection {
        introspection::check(&i.value, &i.referenced, config, &mut |loc, m| problems.at(loc, m));
    }
    if let Some(reload) = &config.reload
        && !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&reload.value.debounce)
    {
        problems.at(&reload.referenced, "reload.debounce must be between 10ms and 10s".to_string());
    }
    if let Some(redis) = &config.redis {
        for m in redis.value.problems() {
            problems.at(&redis.referenced, m);
        }
    }
    if let Some(rate) = &config.rate_limit {
        for m in rate.value.problems() {
            problems.at(&rate.referenced, m);
        }
    }
    if let Some(signals) = &config.signals {
        let sources: Vec<&str> = config.sources().map(SourceConfig::name).collect();
        for m in signals.value.problems(&sources, &config.issuer.algorithms) {
            problems.at(&signals.referenced, m);
        }
    }
    if let Some(cache) = &config.token_cache
        && !(1..=token_cache::MAX_ENTRIES).contains(&cache.value.max_entries)
    {
        let max = token_cache::MAX_ENTRIES;
        problems.at(&cache.referenced, format!("token_cache.max_entries must be between 1 and {max}"));
    }
    if let Some(delegation) = &config.delegation
        && !(1..=crate::delegation::MAX_MAX_DEPTH).contains(&delegation.value.max_depth)
    {
        let max = crate::delegation::MAX_MAX_DEPTH;
        problems.at(&delegation.referenced, format!("delegation.max_depth must be between 1 and {max}"));
    }
}

/// The audit block: a file sink has a path, the store's settings hold, and something
/// records the exchanges.
fn check_audit(audit: &AuditConfig, at: &serde_saphyr::Location, problems: &mut Problems<'_>) {
    if audit.sink == AuditSinkKind::File && audit.path.is_none() {
        problems.at(at, "audit.sink is `file` but audit.path is not set".to_string());
    }
    for m in audit.store.problems() {
        problems.at(at, m);
    }
    if audit.sink == AuditSinkKind::None && !audit.store.enabled {
        problems.at(
            at,
            "audit.sink is `none` and audit.store.enabled is false: exchanges would go unaudited".to_string(),
        );
    }
}

/// Sources and targets: at least one of each, every name valid and used once across both.
fn check_adapters(config: &BrokerConfig, problems: &mut Problems<'_>) {
    if config.sources.value.is_empty() {
        let message = "no sources configured: Tessera would trust nothing".to_string();
        problems.at(&config.sources.referenced, message);
    }
    if config.targets.value.is_empty() {
        let message = "no targets configured: Tessera would issue nothing".to_string();
        problems.at(&config.targets.referenced, message);
    }
    let mut names: HashMap<&str, (&'static str, u64, u64)> = HashMap::new();
    let entries = config
        .sources
        .value
        .iter()
        .map(|s| ("source", s.value.name(), &s.referenced))
        .chain(config.targets.value.iter().map(|t| ("target", t.value.name(), &t.referenced)));
    for (what, name, loc) in entries {
        if let Err(m) = validate_name(name) {
            problems.at(loc, format!("{what} {m}"));
        }
        if let Some((first, line, column)) = names.get(name) {
            problems.at(
                loc,
                format!(
                    "{what} name `{name}` is already used by the {first} at line {line}, column {column}"
                ),
            );
        } else {
            names.insert(name, (what, loc.line(), loc.column()));
        }
    }
}

/// The target kinds whose JWTs Tessera hands to the workload, to present wherever their
/// `aud` is accepted.
const WORKLOAD_JWT_KINDS: [&str; 4] = ["jwt", "jwt_grant", "spiffe", "kubernetes"];

/// Every JWT Tessera signs verifies against the same keys, so its `aud` alone says where it
/// may be used: no two targets whose JWTs go to workloads (`jwt`, `jwt_grant`, `spiffe`, `kubernetes`)
/// share an audience (a token issued for one would open the other: an SVID's relying
/// party would take a cluster token, a cluster an SVID), and no target's JWTs carry the
/// admin tokens' audience (they would open the admin API).
fn check_audiences(config: &BrokerConfig, problems: &mut Problems<'_>) {
    let targets = &config.targets.value;
    let mut issued: HashMap<String, (&str, &str, u64, u64)> = HashMap::new();
    for target in targets.iter().filter(|t| WORKLOAD_JWT_KINDS.contains(&t.value.kind())) {
        let (name, kind, loc) = (target.value.name(), target.value.kind(), &target.referenced);
        for audience in target.value.config().audiences() {
            if let Some((first, first_kind, line, column)) = issued.get(&audience) {
                let message = format!(
                    "target `{name}` has audience `{audience}`, as the {first_kind} target `{first}` at line {line}, \
                     column {column} does: a token issued for either would be accepted as the other's; give \
                     each {kind} target an audience of its own"
                );
                problems.at(loc, message);
            } else {
                issued.insert(audience, (name, kind, loc.line(), loc.column()));
            }
        }
    }
    let Some(admin) =
        config.admin.as_ref().and_then(|a| a.value.auth.as_ref()).and_then(|a| a.value.jwt.as_ref())
    else {
        return;
    };
    let admin_target = &admin.value.target;
    let Some(admin_audiences) = targets
        .iter()
        .find(|t| t.value.name() == admin_target.value && t.value.kind() == "jwt")
        .map(|t| t.value.config().audiences())
    else {
        return;
    };
    for other in targets.iter().filter(|t| t.value.name() != admin_target.value) {
        let (name, loc) = (other.value.name(), &other.referenced);
        for audience in other.value.config().audiences().into_iter().filter(|a| admin_audiences.contains(a)) {
            let message = format!(
                "admin.auth.jwt.target `{}` has audience `{audience}`, as target `{name}` at line {}, column {} \
                 does: JWTs Tessera signs for `{name}` would open the admin API; give the admin target an \
                 audience of its own",
                admin_target.value,
                loc.line(),
                loc.column()
            );
            problems.at(&admin_target.referenced, message);
        }
    }
}

/// Tessera has one set of issuer keys, so it can be the issuer of one SPIFFE trust domain:
/// keys shared between trust domains would let one domain's SVIDs pass for another's
/// (SPIFFE Trust Domain and Bundle §6.4).
fn check_trust_domains(config: &BrokerConfig, problems: &mut Problems<'_>) {
    let mut first: Option<(&str, &str)> = None;
    for target in &config.targets.value {
        let TargetConfig::Spiffe(spiffe) = &target.value else { continue };
        let domain = spiffe.trust_domain_name();
        match first {
            None => first = Some((domain, &spiffe.name)),
            Some((one, other)) if one != domain => problems.at(
                &target.referenced,
                format!(
                    "target `{}` issues SVIDs in trust domain `{domain}`, but target `{other}` in `{one}`: \
                     Tessera's keys can back one trust domain; give every spiffe target the same one",
                    spiffe.name
                ),
            ),
            Some(_) => {}
        }
    }
}

/// The admin block's rules: host names without ports, no unauthenticated admin API off
/// loopback, at least one method in `auth`, `require` only with both, and `jwt.target`
/// naming a `jwt` target.
fn check_admin(
    admin: &AdminConfig,
    at: &serde_saphyr::Location,
    config: &BrokerConfig,
    error: &mut dyn FnMut(&serde_saphyr::Location, String),
) {
    for host in &admin.hosts {
        if let Err(m) = tessera_adapters::net::check_host_name(&host.value) {
            error(&host.referenced, format!("admin.hosts: {m}"));
        }
    }
    let Some(auth) = &admin.auth else {
        if !admin.listen.ip().is_loopback() {
            error(
                at,
                format!(
                    "admin.listen {} is not a loopback address, so admin.auth is required: set auth.jwt, auth.tls or both",
                    admin.listen
                ),
            );
        }
        return;
    };
    let (loc, auth) = (&auth.referenced, &auth.value);
    match (&auth.jwt, &auth.tls, &auth.require) {
        (None, None, _) => error(loc, "admin.auth must set jwt, tls or both".to_string()),
        (Some(_), None, Some(r)) | (None, Some(_), Some(r)) => error(
            &r.referenced,
            "admin.auth.require chooses between jwt and tls: it needs both set".to_string(),
        ),
        _ => {}
    }
    if let Some(jwt) = &auth.jwt {
        let target = &jwt.value.target;
        let found = config.targets.value.iter().find(|t| t.value.name() == target.value);
        match found.map(|t| t.value.kind()) {
            None => error(
                &target.referenced,
                format!("admin.auth.jwt.target `{}` is not a configured target", target.value),
            ),
            Some("jwt") => {}
            Some(kind) => error(
                &target.referenced,
                format!(
                    "admin.auth.jwt.target `{}` is a `{kind}` target: admin tokens come from a `jwt` target",
                    target.value
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "version: 1
issuer:
  url: https://tessera.example.com
  key_dir: keys
sources:
  - name: corp
    type: oidc
    issuer: https://idp.example.com
    audiences: [tessera]
targets:
  - name: internal-api
    type: jwt
";

    fn errors(text: &str) -> Vec<ConfigError> {
        parse(Path::new("conf/broker.yaml"), text).expect_err("config should be refused").0
    }

    #[test]
    fn a_valid_config_loads_with_secure_defaults() {
        let loaded = parse(Path::new("conf/broker.yaml"), VALID).expect("valid");
        assert_eq!(loaded.base_dir, PathBuf::from("conf"));
        assert_eq!(loaded.mappings_dir(), PathBuf::from("conf/mappings"));
        assert_eq!(loaded.config.listen, default_listen());
        assert!(loaded.config.listen.ip().is_loopback(), "listens on loopback unless told otherwise");
        let audit = loaded.config.audit();
        assert_eq!(audit.sink, AuditSinkKind::Stdout);
        assert!(!audit.fail_open, "audit failures fail closed by default");
        assert_eq!(loaded.config.limits().max_body_bytes, 64 * 1024);
        assert_eq!(loaded.config.limits().max_token_bytes, 16 * 1024);
        assert_eq!(loaded.config.limits().max_revocation_watches, 4096);
        assert!(loaded.config.demo_issuer().is_none(), "no demo issuer unless asked");
        assert!(loaded.config.admin().is_none(), "no admin listener unless asked");
        assert!(loaded.config.metrics().is_none(), "no metrics listener unless asked");
        let reload = loaded.config.reload();
        assert!(reload.watch);
        assert_eq!(reload.debounce, Duration::from_millis(300));
        assert_eq!(reload.poll_interval, Duration::from_secs(30));
        assert!(loaded.version.starts_with("sha256:"));
    }

    #[test]
    fn the_audit_store_is_on_by_default_and_its_settings_are_checked() {
        let loaded = parse(Path::new("conf/broker.yaml"), VALID).expect("valid");
        let store = loaded.config.audit().store;
        assert!(store.enabled && store.url.is_none(), "SQLite in data_dir unless told otherwise");
        assert_eq!(loaded.data_dir(), PathBuf::from("conf/data"));
        let unaudited = format!("{VALID}audit:\n  sink: none\n  store:\n    enabled: false\n");
        let e = errors(&unaudited);
        assert!(e[0].message.contains("exchanges would go unaudited"), "{}", e[0]);
        let bad = format!(
            "{VALID}audit:\n  store:\n    url: mysql://db/tessera\n    timeout: 10ms\n    max_connections: 0\n"
        );
        let messages: Vec<String> = errors(&bad).into_iter().map(|e| e.message).collect();
        assert_eq!(
            messages,
            [
                "audit.store.url must start with postgres:// or postgresql:// or sqlite://, not mysql://",
                "audit.store.timeout must be between 100ms and 60s",
                "audit.store.max_connections must be between 1 and 100",
            ]
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_location() {
        let text = VALID.replace("  key_dir: keys\n", "  key_dir: keys\n  colour: blue\n");
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].line, e[0].column), (5, 3), "{}", e[0]);
        assert!(e[0].message.contains("colour"), "{}", e[0]);
        assert!(e[0].to_string().starts_with("conf/broker.yaml:5:3: "));
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let e = errors("version: 1\nissuer: [unclosed\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].line >= 2, "{}", e[0]);
    }

    #[test]
    fn every_semantic_error_is_reported_at_once() {
        let text = "version: 2
issuer:
  url: https://tessera.example.com
  key_dir: keys
sources:
  - name: corp
    type: oidc
    issuer: https://idp.example.com
    audiences: [tessera]
targets:
  - name: corp
    type: jwt
  - name: Bad Name
    type: jwt
limits:
  max_body_bytes: 10000000
audit:
  sink: file
demo_issuer:
  listen: 0.0.0.0:8081
";
        let e = errors(text);
        let rendered: Vec<String> = e.iter().map(ToString::to_string).collect();
        let has = |needle: &str, line: u64| e.iter().any(|x| x.message.contains(needle) && x.line == line);
        assert!(has("unsupported version 2", 1), "{rendered:#?}");
        assert!(has("already used by the source at line 6", 11), "{rendered:#?}");
        assert!(has("invalid name `Bad Name`", 13), "{rendered:#?}");
        assert!(has("max_body_bytes", 16), "{rendered:#?}");
        assert!(has("audit.path is not set", 18), "{rendered:#?}");
        assert!(has("loopback", 20), "{rendered:#?}");
        assert_eq!(e.len(), 6, "{rendered:#?}");
    }

    #[test]
    fn admin_and_reload_settings_are_checked() {
        let ok =
            format!("{VALID}admin: {{}}\nreload: {{ debounce: 50ms, poll_interval: 0s, watch: false }}\n");
        let loaded = parse(Path::new("broker.yaml"), &ok).expect("valid");
        assert_eq!(loaded.config.admin().unwrap().listen, SocketAddr::from(([127, 0, 0, 1], 8090)));
        let reload = loaded.config.reload();
        assert_eq!(
            (reload.watch, reload.debounce, reload.poll_interval),
            (false, Duration::from_millis(50), Duration::ZERO)
        );

        let e = errors(&format!("{VALID}admin: {{ listen: 0.0.0.0:8090 }}\n"));
        assert!(e[0].message.contains("loopback") && e[0].message.contains("admin.auth"), "{e:?}");
        let e = errors(&format!("{VALID}reload: {{ debounce: 1ms }}\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].message.contains("reload.debounce must be between 10ms and 10s"), "{e:?}");
        let e = errors(&format!("{VALID}reload: {{ poll_interval: 500ms }}\n"));
        assert!(e[0].message.contains("whole seconds"), "{e:?}");
    }

    #[test]
    fn the_token_cache_is_on_by_default_and_its_bound_is_checked() {
        let loaded = parse(Path::new("broker.yaml"), VALID).expect("valid");
        let cache = loaded.config.token_cache();
        assert!(cache.enabled);
        assert_eq!(cache.max_entries, 10_000);
        let text = format!("{VALID}token_cache: {{ enabled: false, max_entries: 5 }}\n");
        let cache = parse(Path::new("broker.yaml"), &text).expect("valid").config.token_cache();
        assert_eq!((cache.enabled, cache.max_entries), (false, 5));
        for bad in ["0", "1000001"] {
            let e = errors(&format!("{VALID}token_cache: {{ max_entries: {bad} }}\n"));
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(e[0].message.contains("token_cache.max_entries must be between 1 and 1000000"), "{e:?}");
        }
        let e = errors(&format!("{VALID}token_cache: {{ ttl: 5m }}\n"));
        assert!(!e.is_empty(), "unknown keys are refused");
    }

    #[test]
    fn admin_host_names_are_names_without_ports() {
        let text = format!("{VALID}admin:\n  hosts: [tessera-admin.tessera.svc, '[fd00::1]']\n");
        let loaded = parse(Path::new("broker.yaml"), &text).expect("valid");
        let hosts: Vec<&str> =
            loaded.config.admin().unwrap().hosts.iter().map(|h| h.value.as_str()).collect();
        assert_eq!(hosts, ["tessera-admin.tessera.svc", "[fd00::1]"]);
        assert!(parse(Path::new("broker.yaml"), VALID).is_ok());
        let e = errors(&format!("{VALID}admin:\n  hosts:\n    - ok.example\n    - evil.example:8090\n"));
        assert_eq!((e.len(), e[0].line, e[0].column), (1, 16, 7), "{e:?}");
        assert!(e[0].message.contains("admin.hosts: `evil.example:8090` is not a host name"), "{e:?}");
    }

    #[test]
    fn the_metrics_listener_is_loopback_unless_an_address_is_written() {
        let loaded = parse(Path::new("broker.yaml"), &format!("{VALID}metrics: {{}}\n")).expect("valid");
        assert_eq!(loaded.config.metrics().unwrap().listen, SocketAddr::from(([127, 0, 0, 1], 9464)));
        let text = format!("{VALID}metrics:\n  listen: 0.0.0.0:9464\n");
        let loaded = parse(Path::new("broker.yaml"), &text).expect("valid");
        assert_eq!(loaded.config.metrics().unwrap().listen, SocketAddr::from(([0, 0, 0, 0], 9464)));
        let e = errors(&format!("{VALID}metrics:\n  listen: 127.0.0.1:9464\n  auth: none\n"));
        assert!(e[0].message.contains("auth"), "{e:?}");
    }

    const ADMIN_TARGETS: &str = "  - name: admin
    type: jwt
  - name: aws
    type: aws_sts
";

    #[test]
    fn authenticated_admin_may_listen_anywhere() {
        let text = format!(
            "{VALID}{ADMIN_TARGETS}admin:\n  listen: 0.0.0.0:8090\n  auth:\n    jwt: {{ target: admin }}\n"
        );
        let loaded = parse(Path::new("broker.yaml"), &text).expect("valid");
        let auth = loaded.config.admin().and_then(AdminConfig::auth).expect("auth");
        assert_eq!(auth.jwt.as_ref().map(|j| j.value.target.value.as_str()), Some("admin"));
        assert!(auth.tls.is_none());
        assert_eq!(auth.require(), AdminAuthRequire::All, "both methods required unless `any` is written");

        let text = format!(
            "{VALID}admin:\n  listen: 0.0.0.0:8090\n  auth:\n    tls: {{ cert: c.pem, key: k.pem, client_ca: ca.pem }}\n"
        );
        let loaded = parse(Path::new("broker.yaml"), &text).expect("valid");
        let auth = loaded.config.admin().and_then(AdminConfig::auth).expect("auth");
        assert_eq!(auth.tls.as_ref().map(|t| t.value.client_ca.value.clone()), Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn admin_auth_mistakes_are_refused_where_they_are() {
        let base = format!("{VALID}{ADMIN_TARGETS}");
        let e = errors(&format!("{base}admin:\n  listen: 10.0.0.1:8090\n"));
        assert_eq!((e.len(), e[0].line, e[0].column), (1, 18, 3), "{e:?}");
        assert!(e[0].message.contains("admin.auth is required"), "{e:?}");

        let e = errors(&format!("{base}admin:\n  auth: {{}}\n"));
        assert_eq!((e.len(), e[0].line, e[0].column), (1, 18, 9), "{e:?}");
        assert!(e[0].message.contains("must set jwt, tls or both"), "{e:?}");

        let e = errors(&format!("{base}admin:\n  auth:\n    jwt:\n      target: nowhere\n"));
        assert_eq!((e.len(), e[0].line, e[0].column), (1, 20, 15), "{e:?}");
        assert!(e[0].message.contains("`nowhere` is not a configured target"), "{e:?}");

        let e = errors(&format!("{base}admin:\n  auth:\n    jwt:\n      target: aws\n"));
        assert_eq!((e.len(), e[0].line, e[0].column), (1, 20, 15), "{e:?}");
        assert!(e[0].message.contains("is a `aws_sts` target"), "{e:?}");

        let e = errors(&format!("{base}admin:\n  auth:\n    jwt: {{ target: admin }}\n    require: any\n"));
        assert_eq!((e.len(), e[0].line, e[0].column), (1, 20, 14), "{e:?}");
        assert!(e[0].message.contains("needs both"), "{e:?}");

        let e = errors(&format!("{base}admin:\n  auth:\n    tls: {{ cert: c.pem }}\n"));
        assert!(e[0].message.contains("key"), "{e:?}");
        let e = errors(&format!("{base}admin:\n  auth:\n    jwt: {{ target: admin }}\n    require: some\n"));
        assert!(e[0].message.contains("some"), "{e:?}");
    }

    #[test]
    fn jwt_targets_sharing_an_audience_are_refused_where_the_second_is() {
        let e = errors(&format!("{VALID}  - name: billing\n    type: jwt\n    audience: internal-api\n"));
        assert_eq!((e.len(), e[0].line, e[0].column), (1, 13, 5), "{e:?}");
        assert_eq!(
            e[0].message,
            "target `billing` has audience `internal-api`, as the jwt target `internal-api` at line 11, column 5 \
             does: a token issued for either would be accepted as the other's; give each jwt target an audience \
             of its own"
        );
        let e = errors(&format!(
            "{VALID}  - name: a\n    type: jwt\n    audience: https://api.example\n  - name: b\n    type: jwt\n    audience: https://api.example\n"
        ));
        assert_eq!((e.len(), e[0].line, e[0].column), (1, 16, 5), "{e:?}");
        assert!(e[0].message.contains("jwt target `a` at line 13, column 5"), "{e:?}");

        // Targets of other kinds present their JWTs to their own platforms: two AWS
        // accounts trust the same `sts.amazonaws.com`.
        let two_aws =
            format!("{VALID}  - name: aws-a\n    type: aws_sts\n  - name: aws-b\n    type: aws_sts\n");
        assert!(parse(Path::new("broker.yaml"), &two_aws).is_ok());
    }

    #[test]
    fn admin_tokens_need_an_audience_no_target_uses() {
        let admin = "admin:\n  auth:\n    jwt:\n      target: admin\n";
        let same_as_aws = format!(
            "{VALID}  - name: admin\n    type: jwt\n    audience: sts.amazonaws.com\n  - name: aws\n    type: aws_sts\n{admin}"
        );
        let e = errors(&same_as_aws);
        assert_eq!((e.len(), e[0].line, e[0].column), (1, 21, 15), "{e:?}");
        assert_eq!(
            e[0].message,
            "admin.auth.jwt.target `admin` has audience `sts.amazonaws.com`, as target `aws` at line 16, column 5 \
             does: JWTs Tessera signs for `aws` would open the admin API; give the admin target an audience of \
             its own"
        );
        let same_as_jwt =
            format!("{VALID}  - name: admin\n    type: jwt\n    audience: internal-api\n{admin}");
        let e = errors(&same_as_jwt);
        let rendered: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(e.len(), 2, "{rendered:#?}");
        assert!(rendered[0].contains(":13:5: target `admin` has audience `internal-api`"), "{rendered:#?}");
        assert!(
            rendered[1].contains(
                ":19:15: admin.auth.jwt.target `admin` has audience `internal-api`, as target `internal-api`"
            ),
            "{rendered:#?}"
        );
        let own = format!("{VALID}{ADMIN_TARGETS}{admin}");
        assert!(parse(Path::new("broker.yaml"), &own).is_ok(), "`admin` and `internal-api` differ");
    }

    #[test]
    fn empty_source_or_target_lists_are_refused() {
        let text = VALID
            .replace("  - name: corp\n    type: oidc\n    issuer: https://idp.example.com\n    audiences: [tessera]\n", "")
            .replace("sources:\n", "sources: []\n");
        let e = errors(&text);
        assert!(e.iter().any(|x| x.message.contains("trust nothing")), "{e:?}");
    }

    #[test]
    fn unknown_adapter_kinds_are_refused() {
        let e = errors(&VALID.replace("type: jwt", "type: carrier_pigeon"));
        assert!(e[0].message.contains("carrier_pigeon"), "{e:?}");
    }

    /// Every problem of a file in one run, each once with its position, in words: an
    /// unknown key hides neither the wrong types after it nor the semantic checks.
    #[test]
    fn every_error_is_reported_in_one_run_each_once_and_in_words() {
        let text = "version: 2
issuer:
  url: https://tessera.example.com
  key_dir: keys
  algorithms: ES256
  colour: blue
sources:
  - name: corp
    type: oidc
    issuer: https://idp.example.com
    audiences: [tessera]
targets:
  - name: corp
    type: jwt
reload:
  debounce: soon
limits:
  max_body_bytes: 0
  max_revocation_watches: 0
";
        let rendered = ConfigErrors(errors(text)).to_string();
        assert_eq!(
            rendered,
            [
                "conf/broker.yaml:5:15: expected a list such as [ES256]",
                "conf/broker.yaml:6:3: unknown field `colour`, expected one of url, key_dir, algorithms, key_reload_interval",
                "conf/broker.yaml:16:13: `soon` is not a duration: expected a duration such as 1h or 15m",
                "conf/broker.yaml:1:10: unsupported version 2: write `version: 1`",
                "conf/broker.yaml:18:3: limits.max_body_bytes must be between 1 and 65536",
                "conf/broker.yaml:18:3: limits.max_revocation_watches must be between 1 and 65536",
                "conf/broker.yaml:13:5: target name `corp` is already used by the source at line 8, column 5",
            ]
            .join("\n")
        );
    }

    /// Every problem of every source and target entry, each at its own key, with the fix
    /// in words; an entry's unknown key hides neither its other problems nor the checks
    /// of the whole file (the duplicate name below).
    #[test]
    fn every_error_of_every_entry_is_reported_at_its_key() {
        let entries = "    audiences: tessera
    algorithms: ES256
    colour: red
    max_token_lifetime: soon
  - name: gh
    type: github_actions
    allowed_owners: [octo-org]
    audiences: [tessera]
    bogus: 1
targets:
  - name: gh
    type: jwt
    audience: https://api.example
    max_ttl: forever
  - name: aws
    type: carrier_pigeon
";
        // VALID up to the first source's audiences, then the entries under test.
        let text = VALID
            .replace("    audiences: [tessera]\ntargets:\n  - name: internal-api\n    type: jwt\n", entries);
        let rendered = ConfigErrors(errors(&text)).to_string();
        assert_eq!(
            rendered,
            [
                "conf/broker.yaml:9:16: expected a list such as [tessera]",
                "conf/broker.yaml:10:17: expected a list such as [ES256]",
                "conf/broker.yaml:12:25: `soon` is not a duration: expected a duration such as 1h or 15m",
                "conf/broker.yaml:11:5: unknown field `colour`",
                "conf/broker.yaml:17:5: unknown field `bogus`",
                "conf/broker.yaml:22:14: `forever` is not a duration: expected a duration such as 1h or 15m",
                "conf/broker.yaml:24:11: unknown target type `carrier_pigeon`, expected one of aws_sts, azure, gcp, jwt, jwt_grant, kubernetes, oauth, postgres, spiffe, txn_token",
            ]
            .join("\n")
        );
        // With only repairable problems left, the checks of the whole file run too.
        let repairable = text
            .replace("    audiences: tessera\n", "    audiences: [tessera]\n")
            .replace("    algorithms: ES256\n", "")
            .replace("    max_token_lifetime: soon\n", "")
            .replace("    max_ttl: forever\n", "")
            .replace("type: carrier_pigeon", "type: jwt\n    audience: https://other.example");
        assert_eq!(
            ConfigErrors(errors(&repairable)).to_string(),
            [
                "conf/broker.yaml:10:5: unknown field `colour`",
                "conf/broker.yaml:15:5: unknown field `bogus`",
                "conf/broker.yaml:17:5: target name `gh` is already used by the source at line 11, column 5",
            ]
            .join("\n")
        );
    }

    #[test]
    fn a_missing_file_is_named_without_a_position() {
        let e = load(Path::new("/nonexistent/broker.yaml")).unwrap_err().to_string();
        assert_eq!(
            e,
            "/nonexistent/broker.yaml: cannot read config file: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_missing_mapping_directory_is_reported_at_the_line_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.yaml");
        let named = parse(&path, &format!("{VALID}mappings: rules\n")).unwrap();
        assert_eq!(
            named.check_mappings_dir().unwrap_err().to_string(),
            format!(
                "{}:13:11: mappings: {} does not exist; relative paths start at this file's directory",
                path.display(),
                dir.path().join("rules").display()
            )
        );
        let defaulted = parse(&path, VALID).unwrap();
        assert_eq!(
            defaulted.check_mappings_dir().unwrap_err().to_string(),
            format!(
                "{}: the mapping directory {} does not exist: create it, or name the directory with `mappings:`",
                path.display(),
                dir.path().join("mappings").display()
            )
        );
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        assert!(named.check_mappings_dir().is_ok());
    }

    #[test]
    fn a_secret_reference_is_resolved_at_load_and_kept_out_of_messages() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("store-url"), "postgres://tessera:pw-from-file@db.internal/tessera\n")
            .unwrap();
        let path = dir.path().join("broker.yaml");
        let loaded =
            parse(&path, &format!("{VALID}audit:\n  store:\n    url: ${{file:store-url}}\n")).unwrap();
        let url = loaded.config.audit().store.url.unwrap();
        assert_eq!(url.expose(), "postgres://tessera:pw-from-file@db.internal/tessera");
        assert!(!format!("{url:?}").contains("pw-from-file"));

        let refused = parse(
            &path,
            &format!("{VALID}audit:\n  store:\n    url: ${{file:store-url}}\n    max_connections: 0\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(!refused.contains("pw-from-file"), "{refused}");
        let unset =
            parse(&path, &format!("{VALID}data_dir: ${{env:TESSERA_SURELY_UNSET_42}}\n")).unwrap_err();
        assert_eq!(
            unset.to_string(),
            format!("{}:13:11: environment variable `TESSERA_SURELY_UNSET_42` is not set", path.display())
        );
    }
}
