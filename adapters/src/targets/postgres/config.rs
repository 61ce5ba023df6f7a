//! The `type: postgres` entry of `broker.yaml`.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;

use super::issue::{PostgresTarget, Settings};
use super::sql;
use crate::build::{BuildContext, BuildError, BuildTarget};
use crate::config::duration;
use crate::oauth::token_type::POSTGRES_CREDENTIALS;
use crate::secret::Secret;
use crate::target::CredentialTarget;
use crate::targets::base::{TargetBase, minutes};
use crate::targets::upstream;

/// The shortest login a rule may grant.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// The longest `max_ttl` a target may set.
pub const MAX_TTL_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// A `postgres` target: a login role of its own for each workload, with a random password
/// and `VALID UNTIL`, member of the group role a rule grants; dropped once expired.
///
/// ```yaml
/// - name: orders-db
///   type: postgres
///   admin_url: ${env:ORDERS_DB_ADMIN_URL}
///   groups: [orders_read, orders_write]
///   owner: orders_owner
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTargetConfig {
    /// The target's name; callers request it as `audience`.
    pub name: String,
    /// How the broker connects to make and drop roles: a `postgres://` URL of a role with
    /// `CREATEROLE` (and, from PostgreSQL 16, `ADMIN OPTION` on each group role), that is a
    /// member of `owner`. Write it as `${env:NAME}` or `${file:PATH}`: it is a secret, and
    /// never logged. Its database is the one whose objects the sweep reassigns.
    #[serde(deserialize_with = "secret_url")]
    pub admin_url: Secret<String>,
    /// The group roles rules may grant membership in: plain role names (no `pg_`
    /// predefined roles), used exactly as written (quoted, so case counts). At least one.
    pub groups: Vec<String>,
    /// The role that receives what an expired login owns (tables it created, say) before
    /// the login is dropped: `REASSIGN OWNED BY <login> TO <owner>`.
    pub owner: String,
    /// Every role the target makes starts with this, and the sweep drops no role that does
    /// not (nor one without the target's comment). 1 to 20 of `a-z`, `0-9`, `_`, starting
    /// with a letter. Default `tessera_`.
    #[serde(default = "default_prefix")]
    pub role_prefix: String,
    /// The host clients connect to, returned with each login. Default: the host of
    /// `admin_url`.
    #[serde(default)]
    pub host: Option<String>,
    /// The port clients connect to. Default: the port of `admin_url`, else 5432.
    #[serde(default)]
    pub port: Option<u16>,
    /// The database clients connect to. Default: the database of `admin_url`, if it names
    /// one.
    #[serde(default)]
    pub database: Option<String>,
    /// The longest login; rules asking for more are load errors. Default `1h`; between
    /// `1m` and `24h`.
    #[serde(default = "minutes::<60>", with = "duration")]
    pub max_ttl: Duration,
    /// The login's lifetime when a rule names none. Default `15m`; between `1m` and
    /// `max_ttl`.
    #[serde(default = "minutes::<15>", with = "duration")]
    pub default_ttl: Duration,
    /// How often expired logins are dropped. Default `1m`; between `1s` and `1h`.
    #[serde(default = "default_sweep_interval", with = "duration")]
    pub sweep_interval: Duration,
    /// Logins dropped at most per sweep, oldest expiry first; the rest wait for the next.
    /// Default `100`; between 1 and 10000.
    #[serde(default = "default_sweep_batch")]
    pub sweep_batch: u32,
    /// End the sessions an expired login still has open before dropping it
    /// (`pg_terminate_backend`): `VALID UNTIL` only stops new logins. Default `true`.
    #[serde(default = "default_true")]
    pub terminate_sessions: bool,
    /// How long connecting, and each statement, may take. Default `5s`; between `1s` and
    /// `60s`.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Connections the broker keeps to the database at most. Default `4`; between 1 and 32.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Let the broker serve an issued login to repeated identical exchanges until shortly
    /// before it expires, so one workload holds one login per lifetime rather than one per
    /// exchange. Default `true`.
    #[serde(default = "default_true")]
    pub cache: bool,
}

fn secret_url<'de, D: Deserializer<'de>>(de: D) -> Result<Secret<String>, D::Error> {
    String::deserialize(de).map(Secret::new)
}

fn default_prefix() -> String {
    "tessera_".into()
}

fn default_sweep_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_sweep_batch() -> u32 {
    100
}

fn default_true() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_max_connections() -> u32 {
    4
}

impl BuildTarget for PostgresTargetConfig {
    fn name(&self) -> &str {
        &self.name
    }

    /// None: the target signs no JWT.
    fn audiences(&self) -> Vec<String> {
        Vec::new()
    }

    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn CredentialTarget>, BuildError> {
        Ok(Arc::new(self.target(cx)?))
    }
}

impl PostgresTargetConfig {
    /// The checked target, unwrapped (tests reach its sweep).
    pub fn target(&self, cx: &BuildContext) -> Result<PostgresTarget, BuildError> {
        let base =
            TargetBase::new(super::KIND, POSTGRES_CREDENTIALS, &self.name, self.max_ttl, self.default_ttl)?;
        let options = admin_options(&self.admin_url, self.timeout)?;
        if self.groups.is_empty() {
            return Err(BuildError::field("groups", "list at least one group role rules may grant"));
        }
        for group in &self.groups {
            sql::check_group_name(group).map_err(|e| BuildError::field("groups", e))?;
        }
        sql::check_group_name(&self.owner).map_err(|e| BuildError::field("owner", e))?;
        if self.groups.contains(&self.owner) {
            return Err(BuildError::field(
                "owner",
                "the owner of expired logins' objects must not be a grantable group",
            ));
        }
        sql::check_prefix(&self.role_prefix).map_err(|e| BuildError::field("role_prefix", e))?;
        if self.groups.iter().chain([&self.owner]).any(|g| g.starts_with(&self.role_prefix)) {
            return Err(BuildError::field(
                "role_prefix",
                "no group and not the owner may start with role_prefix: the sweep drops such roles",
            ));
        }
        upstream::check_ttls(self.max_ttl, self.default_ttl, MIN_TTL, MAX_TTL_CAP)?;
        self.check_ranges()?;
        if let Some(host) = &self.host {
            crate::net::check_host_name(host).map_err(|e| BuildError::field("host", e))?;
        }
        if self.database.as_deref().is_some_and(|d| d.is_empty() || d.contains('\0')) {
            return Err(BuildError::field("database", "database must be a non-empty name"));
        }
        let settings = Settings {
            base,
            groups: self.groups.clone(),
            owner: self.owner.clone(),
            role_prefix: self.role_prefix.clone(),
            host: self.host.clone().or_else(|| Some(options.get_host().to_string())),
            port: self.port.or(Some(options.get_port())),
            database: self.database.clone().or_else(|| options.get_database().map(str::to_string)),
            sweep_interval: self.sweep_interval,
            sweep_batch: self.sweep_batch,
            terminate_sessions: self.terminate_sessions,
            timeout: self.timeout,
            max_connections: self.max_connections,
            cache: self.cache,
        };
        Ok(PostgresTarget::new(settings, options, Arc::clone(&cx.clock)))
    }

    /// The user name of `admin_url`, if it names one (for `tessera trust`).
    pub fn admin_user(&self) -> Option<String> {
        let options = PgConnectOptions::from_str(self.admin_url.expose()).ok()?;
        let user = options.get_username();
        (!user.is_empty()).then(|| user.to_string())
    }

    fn check_ranges(&self) -> Result<(), BuildError> {
        if self.sweep_interval < Duration::from_secs(1) || self.sweep_interval > Duration::from_secs(3600) {
            return Err(BuildError::field("sweep_interval", "sweep_interval must be between 1s and 1h"));
        }
        if !(1..=10_000).contains(&self.sweep_batch) {
            return Err(BuildError::field("sweep_batch", "sweep_batch must be between 1 and 10000"));
        }
        if self.timeout < Duration::from_secs(1) || self.timeout > Duration::from_secs(60) {
            return Err(BuildError::field("timeout", "timeout must be between 1s and 60s"));
        }
        if !(1..=32).contains(&self.max_connections) {
            return Err(BuildError::field("max_connections", "max_connections must be between 1 and 32"));
        }
        Ok(())
    }
}

/// The admin connection's options: `admin_url` parsed, each statement bounded by
/// `timeout`, and sqlx's statement log off (statements carry password verifiers). The
/// URL's text never reaches an error message.
fn admin_options(url: &Secret<String>, timeout: Duration) -> Result<PgConnectOptions, BuildError> {
    let text = url.expose();
    if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
        return Err(BuildError::field("admin_url", "admin_url must be a postgres:// or postgresql:// URL"));
    }
    let options = PgConnectOptions::from_str(text)
        .map_err(|_| BuildError::field("admin_url", "admin_url is not a valid PostgreSQL connection URL"))?;
    let millis = timeout.as_millis().to_string();
    Ok(options
        .application_name("tessera")
        .options([("statement_timeout", millis.as_str()), ("lock_timeout", millis.as_str())])
        .disable_statement_logging())
}
