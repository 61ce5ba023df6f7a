//! `agent.yaml`: what `tessera agent` presents, which credentials it keeps and where it
//! serves them. Loaded like `broker.yaml`: every problem with its file, line and column,
//! all at once.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use tessera_adapters::config::{ConfigError, ConfigErrors, validate_name};
use url::Url;

/// The agent's configuration file, version 1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Must be `1`.
    pub version: Spanned<u32>,
    /// The broker's base URL. `https://`, or `http://` to a loopback address only (a token
    /// and the credentials it buys never cross a network in the clear).
    pub broker: Spanned<String>,
    /// Where the agent serves credentials. Loopback addresses only: the endpoints answer
    /// anyone who can connect, as the cloud metadata servers they imitate do. Default
    /// `127.0.0.1:8200`.
    #[serde(default = "default_listen")]
    pub listen: Spanned<SocketAddr>,
    /// Host names (or addresses) SDKs may name in `Host`, besides loopback addresses,
    /// `localhost` and, on the GCE metadata paths, `metadata.google.internal`. A request
    /// for any other host is refused (DNS rebinding). Default: none.
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    /// The workload's own credential, exchanged at the broker: exactly one of `file`,
    /// `gce_metadata`, `azure_imds`, `aws`.
    pub subject_token: Spanned<SubjectTokenConfig>,
    /// AWS credentials served on the ECS container credentials endpoint.
    #[serde(default)]
    pub aws: Option<Spanned<AwsConfig>>,
    /// A GCE metadata server subset: access token, ID tokens, service-account info.
    #[serde(default)]
    pub gcp: Option<Spanned<GcpConfig>>,
    /// The Azure App Service managed identity endpoint and the IMDS token path.
    #[serde(default)]
    pub azure: Option<Spanned<AzureConfig>>,
    /// Credentials written to files, for tools that read a token from a file.
    #[serde(default)]
    pub token_files: Vec<Spanned<TokenFileConfig>>,
    /// PostgreSQL logins from the broker's `postgres` targets, written as password files
    /// (`PGPASSFILE`) and given to `tessera agent exec` children as `PG*` variables.
    #[serde(default)]
    pub postgres: Vec<Spanned<PostgresConfig>>,
    /// When credentials are refreshed and how failures back off.
    #[serde(default)]
    pub refresh: Option<Spanned<RefreshConfig>>,
    /// Timeout of each call to the broker or to a native metadata service. Default `10s`.
    #[serde(
        default = "default_timeout",
        deserialize_with = "tessera_adapters::config::duration::deserialize"
    )]
    pub timeout: Duration,
}

fn default_listen() -> Spanned<SocketAddr> {
    Spanned::new(SocketAddr::from(([127, 0, 0, 1], 8200)), Location::UNKNOWN, Location::UNKNOWN)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The workload's native credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SubjectTokenConfig {
    /// A token file (a Kubernetes projected service-account token, a CI job's OIDC token
    /// written to disk), read again before every exchange so a rotated token is used.
    /// Relative to this file.
    File(PathBuf),
    /// An ID token from the GCE metadata server's identity endpoint (`format=full`).
    GceMetadata(GceMetadataConfig),
    /// A managed-identity token from Azure IMDS.
    AzureImds(AzureImdsConfig),
    /// An `sts:GetCallerIdentity` request signed with the ambient AWS credentials (the AWS
    /// SDK's default chain), for an `aws_iam` source.
    Aws(AwsSubjectConfig),
}

/// `subject_token.gce_metadata`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GceMetadataConfig {
    /// The audience asked for: one of the broker's `gcp` source audiences.
    pub audience: String,
    /// The metadata server. Default `http://metadata.google.internal`.
    #[serde(default = "default_gce_endpoint")]
    pub endpoint: String,
}

fn default_gce_endpoint() -> String {
    "http://metadata.google.internal".to_string()
}

/// `subject_token.azure_imds`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureImdsConfig {
    /// The resource (application ID URI) the token is for: one of the broker's `azure`
    /// source audiences.
    pub resource: String,
    /// A user-assigned identity's client ID. Default: the system-assigned identity.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The IMDS endpoint. Default `http://169.254.169.254`.
    #[serde(default = "default_imds_endpoint")]
    pub endpoint: String,
}

fn default_imds_endpoint() -> String {
    "http://169.254.169.254".to_string()
}

/// `subject_token.aws`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSubjectConfig {
    /// The `server_id` of the broker's `aws_iam` source, signed into the request.
    pub server_id: String,
    /// The region signed for. Default: the ambient AWS region, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// The STS endpoint signed for. Default `https://sts.{region}.amazonaws.com/`.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// `aws:`: the ECS container credentials endpoint (`/v1/aws/credentials`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// The broker's `aws_sts` target.
    pub target: String,
    /// The role to assume (the exchange's `scope`). Default: the one role the mapping
    /// rules grant.
    #[serde(default)]
    pub scope: Option<String>,
    /// A file holding the token SDKs must send as `Authorization`
    /// (`AWS_CONTAINER_AUTHORIZATION_TOKEN`). Default: the agent's environment variable
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`. One of them is required: the endpoint never
    /// answers without it.
    #[serde(default)]
    pub authorization_token_file: Option<PathBuf>,
}

/// `gcp:`: the GCE metadata server subset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpConfig {
    /// The broker's `gcp` target for access tokens. Unset: the agent serves ID tokens only
    /// and the token path answers 404.
    #[serde(default)]
    pub target: Option<String>,
    /// The service account to impersonate (the exchange's `scope`). Default: the one the
    /// mapping rules grant.
    #[serde(default)]
    pub scope: Option<String>,
    /// The service account's email, served as the `default` service account.
    pub email: String,
    /// OAuth scopes reported for the service account (informational: the access token's
    /// scopes are the mapping rule's). Default `[https://www.googleapis.com/auth/cloud-platform]`.
    #[serde(default = "default_gcp_scopes")]
    pub scopes: Vec<String>,
    /// Served at `project/project-id`; unset answers 404.
    #[serde(default)]
    pub project_id: Option<String>,
    /// ID tokens: each audience a workload may ask for, mapped to the broker's `jwt`
    /// target that issues tokens for it. Other audiences are refused. Default: none.
    #[serde(default)]
    pub id_token_targets: BTreeMap<String, String>,
}

fn default_gcp_scopes() -> Vec<String> {
    vec!["https://www.googleapis.com/auth/cloud-platform".to_string()]
}

/// `azure:`: the App Service managed identity endpoint (`/v1/azure/token`) and the IMDS
/// token path (`/metadata/identity/oauth2/token`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// Each resource a workload may ask for (`https://graph.microsoft.com`), mapped to the
    /// broker's `azure` target. Other resources are refused. At least one.
    pub resources: BTreeMap<String, String>,
    /// Reported as `client_id` in answers (the managed identity's application ID).
    #[serde(default)]
    pub client_id: Option<String>,
    /// A file holding the secret SDKs must send as `X-IDENTITY-HEADER` (`IDENTITY_HEADER`).
    /// Default: the agent's environment variable `IDENTITY_HEADER`. One of them is
    /// required.
    #[serde(default)]
    pub identity_header_file: Option<PathBuf>,
    /// Also serve the IMDS token path, which (like IMDS) takes no secret, only the
    /// `Metadata: true` header. Default `false`.
    #[serde(default)]
    pub imds: bool,
}

/// One `token_files` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFileConfig {
    /// The broker's target whose access token is written.
    pub target: String,
    /// The exchange's `scope`, if any.
    #[serde(default)]
    pub scope: Option<String>,
    /// Where to write it (mode 0600, replaced atomically on every refresh). Relative to
    /// this file.
    pub path: PathBuf,
}

/// One `postgres` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The broker's `postgres` target.
    pub target: String,
    /// The group role to be granted (the exchange's `scope`). Default: the one group the
    /// mapping rules grant.
    #[serde(default)]
    pub scope: Option<String>,
    /// A libpq password file (`host:port:database:user:password`) kept holding the current
    /// login (mode 0600, replaced atomically on every refresh). Relative to this file.
    /// Default: none.
    #[serde(default)]
    pub passfile: Option<PathBuf>,
}

/// `refresh:`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshConfig {
    /// Refresh once this fraction of a credential's lifetime has passed. Between 0.1 and
    /// 0.9. Default `0.5`.
    #[serde(default = "default_after")]
    pub after: f64,
    /// A credential is served until this long before it expires, however the broker is
    /// doing. Default `30s`.
    #[serde(
        default = "default_margin",
        deserialize_with = "tessera_adapters::config::duration::deserialize"
    )]
    pub margin: Duration,
    /// First wait after a failed refresh; doubled (with jitter) on each further failure.
    /// Default `1s`.
    #[serde(default = "default_min_backoff", deserialize_with = "fine_duration")]
    pub min_backoff: Duration,
    /// Longest wait between attempts. Default `60s`.
    #[serde(default = "default_max_backoff", deserialize_with = "fine_duration")]
    pub max_backoff: Duration,
    /// Exchange again this often, between refreshes, to learn of a revocation: once the
    /// broker refuses with the revocation error, the credential is no longer served and
    /// its files are removed. `0` checks only at refreshes. With `revocation_watch` on,
    /// this is only the fallback and may be long (up to `1h`). Default `30s`.
    #[serde(
        default = "default_revocation_check",
        deserialize_with = "tessera_adapters::config::duration::deserialize"
    )]
    pub revocation_check: Duration,
    /// Hold a revocation watch open at the broker (`POST /v1/revocations/watch`) for each
    /// credential, so a revocation is learned of, and the credential dropped, within about
    /// a second. A broker without the endpoint leaves the periodic check alone. Default
    /// `true`.
    #[serde(default = "default_revocation_watch")]
    pub revocation_watch: bool,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            after: default_after(),
            margin: default_margin(),
            min_backoff: default_min_backoff(),
            max_backoff: default_max_backoff(),
            revocation_check: default_revocation_check(),
            revocation_watch: default_revocation_watch(),
        }
    }
}

fn default_after() -> f64 {
    0.5
}

fn default_margin() -> Duration {
    Duration::from_secs(30)
}

fn default_min_backoff() -> Duration {
    Duration::from_secs(1)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}

fn default_revocation_check() -> Duration {
    Duration::from_secs(30)
}

fn default_revocation_watch() -> bool {
    true
}

fn fine_duration<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    tessera_adapters::config::duration::deserialize_fine(de)
}

impl AgentConfig {
    pub fn refresh(&self) -> RefreshConfig {
        self.refresh.as_ref().map(|r| r.value).unwrap_or_default()
    }

    pub fn aws(&self) -> Option<&AwsConfig> {
        self.aws.as_ref().map(|a| &a.value)
    }

    pub fn gcp(&self) -> Option<&GcpConfig> {
        self.gcp.as_ref().map(|g| &g.value)
    }

    pub fn azure(&self) -> Option<&AzureConfig> {
        self.azure.as_ref().map(|a| &a.value)
    }
}

/// A loaded, validated agent configuration.
#[derive(Debug, Clone)]
pub struct LoadedAgentConfig {
    pub config: AgentConfig,
    pub path: PathBuf,
    /// The file's directory: relative paths resolve against it.
    pub base_dir: PathBuf,
    /// The broker URL, parsed and checked.
    pub broker: Url,
}

impl LoadedAgentConfig {
    pub fn resolve(&self, path: &Path) -> PathBuf {
        tessera_adapters::config::resolve(&self.base_dir, path)
    }
}

/// Read and validate an agent config file.
pub fn load(path: &Path) -> Result<LoadedAgentConfig, ConfigErrors> {
    parse(path, &tessera_adapters::config::read_file(path, "agent config")?)
}

/// Validate agent config text as if read from `path`. Each check below reports what it
/// finds and the next one runs anyway, so every problem is listed at once.
pub fn parse(path: &Path, text: &str) -> Result<LoadedAgentConfig, ConfigErrors> {
    let (config, found, secrets) = tessera_adapters::config::read_yaml::<AgentConfig>(path, text);
    let Some(config) = config else { return Err(ConfigErrors(found)) };
    let mut problems = Problems { file: path, found };
    check_version(&config.version, &mut problems);
    let broker = check_broker(&config.broker, &mut problems);
    check_listen(&config.listen, &mut problems);
    check_hosts(&config.hosts, &mut problems);
    check_subject(&config.subject_token, &mut problems);
    check_credentials(&config, &mut problems);
    check_refresh(config.refresh.as_ref(), &mut problems);
    check_timeout(&config, &mut problems);

    let Some(broker) = broker.filter(|_| problems.found.is_empty()) else {
        secrets.redact(&mut problems.found);
        return Err(ConfigErrors(problems.found));
    };
    Ok(LoadedAgentConfig {
        config,
        path: path.to_path_buf(),
        base_dir: tessera_adapters::config::base_dir(path),
        broker,
    })
}

/// The problems found so far in one file, each where it is.
struct Problems<'a> {
    file: &'a Path,
    found: Vec<ConfigError>,
}

impl Problems<'_> {
    fn at(&mut self, loc: &Location, message: String) {
        self.found.push(ConfigError::at(self.file, loc, message));
    }
}

fn check_version(version: &Spanned<u32>, problems: &mut Problems<'_>) {
    if version.value != 1 {
        problems
            .at(&version.referenced, format!("unsupported version {}: write `version: 1`", version.value));
    }
}

/// The broker URL, parsed, if it is one the agent may talk to.
fn check_broker(broker: &Spanned<String>, problems: &mut Problems<'_>) -> Option<Url> {
    match check_broker_url(&broker.value) {
        Ok(url) => Some(url),
        Err(m) => {
            problems.at(&broker.referenced, m);
            None
        }
    }
}

fn check_listen(listen: &Spanned<SocketAddr>, problems: &mut Problems<'_>) {
    if !listen.value.ip().is_loopback() {
        problems.at(
            &listen.referenced,
            format!(
                "listen {} is not a loopback address: the agent's endpoints hand out credentials to whoever connects, so they are served on loopback only",
                listen.value
            ),
        );
    }
}

fn check_hosts(hosts: &[Spanned<String>], problems: &mut Problems<'_>) {
    for host in hosts {
        if let Err(m) = tessera_adapters::net::check_host_name(&host.value) {
            problems.at(&host.referenced, format!("hosts: {m}"));
        }
    }
}

/// `https://`, or `http://` to loopback; no query, fragment or credentials.
fn check_broker_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("broker `{text}` is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok {
        return Err(format!("broker `{text}` must be an https URL (plain http only to a loopback address)"));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!("broker `{text}` must be a base URL without query, fragment or user"));
    }
    Ok(url)
}

/// A metadata endpoint: http(s) base URL.
fn check_endpoint(text: &str) -> Result<(), String> {
    let url = Url::parse(text).map_err(|e| format!("endpoint `{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || url.query().is_some() {
        return Err(format!("endpoint `{text}` must be an http(s) base URL"));
    }
    Ok(())
}

fn check_subject(subject: &Spanned<SubjectTokenConfig>, problems: &mut Problems<'_>) {
    let loc = &subject.referenced;
    match &subject.value {
        SubjectTokenConfig::File(path) => {
            if path.as_os_str().is_empty() {
                problems.at(loc, "subject_token.file is empty".to_string());
            }
        }
        SubjectTokenConfig::GceMetadata(g) => {
            if g.audience.is_empty() {
                problems.at(loc, "subject_token.gce_metadata.audience is empty".to_string());
            }
            if let Err(m) = check_endpoint(&g.endpoint) {
                problems.at(loc, format!("subject_token.gce_metadata: {m}"));
            }
        }
        SubjectTokenConfig::AzureImds(a) => {
            if a.resource.is_empty() {
                problems.at(loc, "subject_token.azure_imds.resource is empty".to_string());
            }
            if let Err(m) = check_endpoint(&a.endpoint) {
                problems.at(loc, format!("subject_token.azure_imds: {m}"));
            }
        }
        SubjectTokenConfig::Aws(a) => {
            if a.server_id.is_empty() {
                problems.at(loc, "subject_token.aws.server_id is empty".to_string());
            }
        }
    }
}

/// The credentials kept: at least one, each naming a valid target, then each block's own
/// rules.
fn check_credentials(config: &AgentConfig, problems: &mut Problems<'_>) {
    if config.aws.is_none()
        && config.gcp.is_none()
        && config.azure.is_none()
        && config.token_files.is_empty()
        && config.postgres.is_empty()
    {
        problems.at(
            &config.version.referenced,
            "no credentials configured: add `aws`, `gcp`, `azure`, `token_files` or `postgres`".to_string(),
        );
    }
    check_target_names(config, problems);
    if let Some(gcp) = &config.gcp {
        check_gcp(gcp, problems);
    }
    if let Some(azure) = &config.azure
        && azure.value.resources.is_empty()
    {
        problems.at(
            &azure.referenced,
            "azure.resources is empty: name each resource and the target that serves it".to_string(),
        );
    }
    check_token_files(config, problems);
}

/// Every target a credential is exchanged for is a valid target name.
fn check_target_names(config: &AgentConfig, problems: &mut Problems<'_>) {
    let mut check = |name: &str, loc: &Location, what: &str| {
        if let Err(m) = validate_name(name) {
            problems.at(loc, format!("{what}: target {m}"));
        }
    };
    if let Some(aws) = &config.aws {
        check(&aws.value.target, &aws.referenced, "aws.target");
    }
    if let Some(gcp) = &config.gcp {
        if let Some(target) = &gcp.value.target {
            check(target, &gcp.referenced, "gcp.target");
        }
        for target in gcp.value.id_token_targets.values() {
            check(target, &gcp.referenced, "gcp.id_token_targets");
        }
    }
    if let Some(azure) = &config.azure {
        for target in azure.value.resources.values() {
            check(target, &azure.referenced, "azure.resources");
        }
    }
    for file in &config.token_files {
        check(&file.value.target, &file.referenced, "token_files");
    }
    for entry in &config.postgres {
        check(&entry.value.target, &entry.referenced, "postgres");
    }
}

fn check_gcp(gcp: &Spanned<GcpConfig>, problems: &mut Problems<'_>) {
    let (g, loc) = (&gcp.value, &gcp.referenced);
    if !g.email.contains('@') {
        problems.at(loc, format!("gcp.email `{}` is not an email address", g.email));
    }
    if g.target.is_none() && g.id_token_targets.is_empty() {
        problems.at(loc, "gcp: set `target`, `id_token_targets` or both".to_string());
    }
    if g.id_token_targets.keys().any(String::is_empty) {
        problems.at(loc, "gcp.id_token_targets: an audience is empty".to_string());
    }
}

/// No file is written by two entries (token files and password files alike).
fn check_token_files(config: &AgentConfig, problems: &mut Problems<'_>) {
    let tokens = config.token_files.iter().map(|f| (&f.value.path, &f.referenced, "token_files"));
    let passfiles = config
        .postgres
        .iter()
        .filter_map(|p| p.value.passfile.as_ref().map(|path| (path, &p.referenced, "postgres.passfile")));
    let mut paths = HashSet::new();
    for (path, loc, what) in tokens.chain(passfiles) {
        if !paths.insert(path.clone()) {
            problems.at(loc, format!("{what}: `{}` is written twice", path.display()));
        }
    }
}

fn check_refresh(refresh: Option<&Spanned<RefreshConfig>>, problems: &mut Problems<'_>) {
    let Some(refresh) = refresh else { return };
    let (r, loc) = (&refresh.value, &refresh.referenced);
    if !(0.1..=0.9).contains(&r.after) {
        problems.at(loc, "refresh.after must be between 0.1 and 0.9".to_string());
    }
    if r.min_backoff < Duration::from_millis(10) || r.min_backoff > r.max_backoff {
        problems
            .at(loc, "refresh.min_backoff must be at least 10ms and at most refresh.max_backoff".to_string());
    }
    if r.max_backoff > Duration::from_secs(3600) {
        problems.at(loc, "refresh.max_backoff must be at most 1h".to_string());
    }
    if r.revocation_check > Duration::from_secs(3600) {
        problems.at(loc, "refresh.revocation_check must be at most 1h (0 turns it off)".to_string());
    }
}

fn check_timeout(config: &AgentConfig, problems: &mut Problems<'_>) {
    if config.timeout.is_zero() || config.timeout > Duration::from_secs(120) {
        problems.at(&config.version.referenced, "timeout must be between 1s and 2m".to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "version: 1
broker: https://tessera.example.com
subject_token:
  file: /var/run/secrets/tokens/tessera
aws:
  target: aws-prod
  scope: arn:aws:iam::123456789012:role/payments
";

    fn errors(text: &str) -> Vec<ConfigError> {
        parse(Path::new("conf/agent.yaml"), text).expect_err("config should be refused").0
    }

    /// A list item missing a required key goes, and the problems after it still show.
    #[test]
    fn a_broken_list_item_hides_nothing_after_it() {
        let text = format!(
            "{VALID}token_files:\n  - target: aws-prod\n    mode: what\n  - target: api\ntimeout: forever\n"
        );
        let rendered: Vec<String> = errors(&text).iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "conf/agent.yaml:10:5: unknown field `mode`, expected one of target, scope, path",
                "conf/agent.yaml:9:5: missing field `path`",
                "conf/agent.yaml:11:5: missing field `path`",
                "conf/agent.yaml:12:10: `forever` is not a duration: expected a duration such as 1h or 15m",
            ]
        );
    }

    #[test]
    fn a_valid_config_loads_with_secure_defaults() {
        let loaded = parse(Path::new("conf/agent.yaml"), VALID).unwrap();
        let c = &loaded.config;
        assert_eq!(c.listen.value, SocketAddr::from(([127, 0, 0, 1], 8200)));
        assert_eq!(loaded.broker.as_str(), "https://tessera.example.com/");
        let r = c.refresh();
        assert!((r.after - 0.5).abs() < f64::EPSILON);
        assert_eq!(
            (r.margin, r.min_backoff, r.max_backoff),
            (Duration::from_secs(30), Duration::from_secs(1), Duration::from_secs(60))
        );
        assert!(r.revocation_watch, "the revocation watch is on by default");
        let off =
            parse(Path::new("agent.yaml"), &format!("{VALID}refresh:\n  revocation_watch: false\n")).unwrap();
        assert!(!off.config.refresh().revocation_watch);
        assert!(
            matches!(&c.subject_token.value, SubjectTokenConfig::File(p) if p == Path::new("/var/run/secrets/tokens/tessera"))
        );
        assert_eq!(loaded.resolve(Path::new("token")), PathBuf::from("conf/token"));
        assert!(c.aws().unwrap().authorization_token_file.is_none());
    }

    #[test]
    fn every_subject_token_kind_parses() {
        for (yaml, want) in [
            ("gce_metadata: { audience: https://tessera.example.com }", "gce"),
            ("azure_imds: { resource: api://tessera, client_id: abc }", "azure"),
            ("aws: { server_id: tessera.example.com, region: eu-west-1 }", "aws"),
        ] {
            let text = VALID.replace("  file: /var/run/secrets/tokens/tessera", &format!("  {yaml}"));
            let loaded = parse(Path::new("agent.yaml"), &text).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            let kind = match loaded.config.subject_token.value {
                SubjectTokenConfig::GceMetadata(g) => {
                    assert_eq!(g.endpoint, "http://metadata.google.internal");
                    "gce"
                }
                SubjectTokenConfig::AzureImds(a) => {
                    assert_eq!(a.endpoint, "http://169.254.169.254");
                    "azure"
                }
                SubjectTokenConfig::Aws(_) => "aws",
                SubjectTokenConfig::File(_) => "file",
            };
            assert_eq!(kind, want);
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_location() {
        let e = errors(&VALID.replace("  target: aws-prod\n", "  target: aws-prod\n  colour: blue\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].message.contains("colour"), "{}", e[0]);
        assert_eq!((e[0].line, e[0].column), (7, 3), "{}", e[0]);
        assert!(e[0].to_string().starts_with("conf/agent.yaml:7:3: "));
    }

    #[test]
    fn extra_host_names_are_names_without_ports() {
        assert!(parse(Path::new("agent.yaml"), VALID).unwrap().config.hosts.is_empty());
        let loaded =
            parse(Path::new("agent.yaml"), &format!("{VALID}hosts: [metadata, workload.local]\n")).unwrap();
        let hosts: Vec<&str> = loaded.config.hosts.iter().map(|h| h.value.as_str()).collect();
        assert_eq!(hosts, ["metadata", "workload.local"]);
        let e = errors(&format!("{VALID}hosts:\n  - metadata\n  - http://evil.example\n"));
        assert_eq!((e.len(), e[0].line, e[0].column), (1, 10, 5), "{e:?}");
        assert!(e[0].message.starts_with("hosts: `http://evil.example` is not a host name"), "{e:?}");
    }

    #[test]
    fn non_loopback_listen_and_plain_http_brokers_are_refused() {
        let e = errors(&format!("{VALID}listen: 0.0.0.0:8200\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].message.contains("not a loopback address"), "{e:?}");
        assert_eq!(e[0].line, 8, "{e:?}");

        let e = errors(&VALID.replace("https://tessera.example.com", "http://tessera.example.com"));
        assert!(e[0].message.contains("must be an https URL"), "{e:?}");
        assert_eq!(e[0].line, 2);
        let ok = VALID.replace("https://tessera.example.com", "http://127.0.0.1:8080");
        assert!(parse(Path::new("agent.yaml"), &ok).is_ok());
    }

    #[test]
    fn every_semantic_error_is_reported_at_once() {
        let text = "version: 2
broker: https://tessera.example.com/?x=1
subject_token:
  gce_metadata: { audience: '', endpoint: 'ftp://x' }
gcp:
  target: Bad Target
  email: nobody
azure:
  resources: {}
token_files:
  - { target: api, path: t }
  - { target: api, path: t }
refresh: { after: 0.95, min_backoff: 5ms }
";
        let e = errors(text);
        let rendered: Vec<String> = e.iter().map(ToString::to_string).collect();
        let has = |needle: &str| e.iter().any(|x| x.message.contains(needle));
        for needle in [
            "unsupported version 2",
            "without query",
            "audience is empty",
            "must be an http(s) base URL",
            "invalid name `Bad Target`",
            "not an email address",
            "azure.resources is empty",
            "written twice",
            "refresh.after",
            "refresh.min_backoff",
        ] {
            assert!(has(needle), "{needle}: {rendered:#?}");
        }
    }

    #[test]
    fn exactly_one_known_subject_token_kind_is_accepted() {
        let e = errors(&VALID.replace("  file: /var/run/secrets/tokens/tessera", "  carrier_pigeon: {}"));
        assert!(e[0].message.contains("carrier_pigeon"), "{e:?}");
        assert_eq!(e[0].line, 4, "{e:?}");
        let both = VALID.replace(
            "  file: /var/run/secrets/tokens/tessera",
            "  file: /var/run/secrets/tokens/tessera\n  aws: { server_id: x }",
        );
        let e = errors(&both);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].line >= 3, "{e:?}");
    }

    #[test]
    fn a_config_that_serves_nothing_is_refused() {
        let e = errors("version: 1\nbroker: https://tessera.example.com\nsubject_token: { file: /t }\n");
        assert!(e[0].message.contains("no credentials configured"), "{e:?}");
    }
}
