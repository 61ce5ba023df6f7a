//! Making a login: the plan a grant asks for, the role made in one transaction, and what
//! PostgreSQL's errors mean for the caller.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor as _, Postgres, Transaction};

use super::sql::{self, quote_ident, quote_literal};
use crate::clock::{Clock, format_rfc3339};
use crate::oauth::token_type;
use crate::secret::Secret;
use crate::target::{
    CredentialTarget, Grant, IssuedCredential, PlatformCredentials, PostgresCredentials, RequestDescription,
    RevokeError, RevokeReport, RuleParam, RuleText, TargetBase, TargetError,
};
use crate::targets::upstream;

/// The grant keys a rule for this target may set.
const GRANT_KEYS: &[&str] = &["group"];

/// Everything [`PostgresTargetConfig`](super::PostgresTargetConfig) checked.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub base: TargetBase,
    pub groups: Vec<String>,
    pub owner: String,
    pub role_prefix: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub sweep_interval: Duration,
    pub sweep_batch: u32,
    pub terminate_sessions: bool,
    pub timeout: Duration,
    pub max_connections: u32,
    pub cache: bool,
}

/// A configured `postgres` target. Cheap to clone: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct PostgresTarget {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub settings: Settings,
    /// Holds the admin password, and sqlx's `Debug` of it prints the password: [`Inner`]'s
    /// `Debug` leaves it out.
    options: PgConnectOptions,
    /// Made at first use, inside the runtime: building a target connects to nothing.
    pool: OnceLock<PgPool>,
    pub clock: Arc<dyn Clock>,
    pub sweeping: OnceLock<()>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// What a grant asks for, checked, before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub group: String,
    pub identity: String,
    /// The identity's part of the role name ([`sql::role_stem`]).
    pub stem: String,
    pub ttl_secs: i64,
}

impl PostgresTarget {
    pub(super) fn new(settings: Settings, options: PgConnectOptions, clock: Arc<dyn Clock>) -> Self {
        let inner = Inner { settings, options, pool: OnceLock::new(), clock, sweeping: OnceLock::new() };
        Self { inner: Arc::new(inner) }
    }

    /// What `grant` asks for. Every check a grant can fail happens here, before any
    /// statement is sent.
    pub(super) fn plan(&self, grant: &Grant) -> Result<Plan, TargetError> {
        let s = &self.inner.settings;
        upstream::check_grant_target(grant, &s.base.name)?;
        // A grant of no lifetime is refused, not raised to the shortest login.
        upstream::check_granted_lifetime(grant)?;
        let group = grant
            .param_str("group")
            .ok_or_else(|| TargetError::InvalidGrant("the rule grants no `group`".into()))?;
        check_group(&s.groups, group).map_err(TargetError::InvalidGrant)?;
        let identity = grant.identity();
        let stem = sql::role_stem(&s.role_prefix, &identity.id, identity.name.as_deref());
        let ttl = grant.ttl().min(s.base.max_ttl).max(super::MIN_TTL);
        let ttl_secs = i64::try_from(ttl.as_secs())
            .map_err(|_| TargetError::InvalidGrant("login lifetime out of range".into()))?;
        Ok(Plan { group: group.to_string(), identity: identity.id.clone(), stem, ttl_secs })
    }

    /// The role issue would make for `plan` at `now`, made in one transaction: the login
    /// role with the verifier of `password` and `VALID UNTIL`, its membership in the
    /// group, and the comment that marks it as this target's. Returns its name.
    pub(super) async fn create_login(
        &self,
        plan: &Plan,
        password: &Secret<String>,
        expires_at: i64,
    ) -> Result<String, TargetError> {
        let s = &self.inner.settings;
        let role = sql::role_name(&plan.stem).map_err(upstream_internal)?;
        let verifier = sql::scram_verifier(password.expose()).map_err(upstream_internal)?;
        let until = format_rfc3339(expires_at);
        // A NUL cannot be in a PostgreSQL string: written out, so any identity can be marked.
        let identity = plan.identity.replace('\0', "\\0");
        let comment = format!("{}expires={until} identity={identity}", self.inner.marker());
        let quoted = quote_ident(&role).map_err(upstream_internal)?;
        let create = format!(
            "CREATE ROLE {quoted} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
             INHERIT PASSWORD {} VALID UNTIL {}",
            quote_literal(&verifier).map_err(upstream_internal)?,
            quote_literal(&until).map_err(upstream_internal)?,
        );
        let grant = format!("GRANT {} TO {quoted}", quote_ident(&plan.group).map_err(upstream_internal)?);
        let comment =
            format!("COMMENT ON ROLE {quoted} IS {}", quote_literal(&comment).map_err(upstream_internal)?);

        let work = async {
            let mut tx = self.inner.begin().await?;
            check_group_role(&mut tx, &plan.group).await?;
            for (statement, what) in [
                (create, "creating the login"),
                (grant, "granting the group"),
                (comment, "marking the login"),
            ] {
                tx.execute(statement.as_str()).await.map_err(|e| db_error(&e, what))?;
            }
            tx.commit().await.map_err(|e| db_error(&e, "committing the login"))
        };
        self.inner.bounded(work).await?;
        tracing::info!(target_name = %s.base.name, role = %role, group = %plan.group, expires_at = %until, "postgres login created");
        Ok(role)
    }
}

impl Inner {
    /// The start of the comment every login this target makes carries; the sweep drops
    /// only roles whose comment starts with it.
    pub fn marker(&self) -> String {
        format!("tessera target={} ", self.settings.base.name)
    }

    /// The pool, made on first use.
    pub fn pool(&self) -> &PgPool {
        self.pool.get_or_init(|| {
            PgPoolOptions::new()
                .max_connections(self.settings.max_connections)
                .acquire_timeout(self.settings.timeout)
                .idle_timeout(Some(Duration::from_secs(60)))
                .connect_lazy_with(self.options.clone())
        })
    }

    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, TargetError> {
        self.pool().begin().await.map_err(|e| db_error(&e, "connecting"))
    }

    /// `work` within twice the timeout (connecting and statements are each bounded by it
    /// already; this bounds anything they do not).
    pub async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, TargetError>>,
    ) -> Result<T, TargetError> {
        let limit = self.settings.timeout.saturating_mul(2);
        tokio::time::timeout(limit, work).await.map_err(|_| {
            upstream::upstream(true, format!("PostgreSQL did not answer within {}s", limit.as_secs()))
        })?
    }
}

/// A group the config allows, else why not.
fn check_group(allowed: &[String], group: &str) -> Result<(), String> {
    if allowed.iter().any(|g| g == group) {
        Ok(())
    } else {
        Err(format!("group `{}` is not one of the target's groups", group.escape_debug()))
    }
}

/// The group must exist and must not be a superuser role (whose members could `SET ROLE`
/// to it): PostgreSQL refuses the second only when the admin is no superuser itself.
async fn check_group_role(tx: &mut Transaction<'static, Postgres>, group: &str) -> Result<(), TargetError> {
    let row: Option<(bool,)> = sqlx::query_as("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1")
        .bind(group)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| db_error(&e, "looking up the group"))?;
    match row {
        None => Err(TargetError::UpstreamRejected(format!("group role `{group}` does not exist"))),
        Some((true,)) => Err(TargetError::UpstreamRejected(format!("group role `{group}` is a superuser"))),
        Some((false,)) => Ok(()),
    }
}

fn upstream_internal(cause: String) -> TargetError {
    upstream::upstream(false, cause)
}

/// What a PostgreSQL failure means for the caller. Only the SQLSTATE is kept: server
/// messages quote statements' values.
pub(super) fn db_error(e: &sqlx::Error, what: &str) -> TargetError {
    match e {
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.into_owned()).unwrap_or_default();
            let code = upstream::plain_code(Some(&code)).unwrap_or_else(|| "-".into());
            let cause = format!("PostgreSQL error {code} while {what}");
            match code.as_str() {
                // insufficient_privilege, undefined_object, invalid_grant_operation:
                // the database will not do what the rule grants.
                "42501" | "42704" | "0LP01" => TargetError::UpstreamRejected(cause),
                c if retryable_state(c) => upstream::upstream(true, cause),
                _ => upstream::upstream(false, cause),
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => {
            upstream::upstream(true, format!("PostgreSQL could not be reached while {what}"))
        }
        _ => upstream::upstream(false, format!("PostgreSQL failed while {what}")),
    }
}

/// SQLSTATEs a retry may fix: connection exceptions (08), resources (53), operator
/// intervention such as a shutdown (57P), transaction rollbacks such as deadlocks (40),
/// lock and statement timeouts.
fn retryable_state(code: &str) -> bool {
    ["08", "53", "57P", "40"].iter().any(|p| code.starts_with(p)) || code == "55P03" || code == "57014"
}

#[async_trait]
impl CredentialTarget for PostgresTarget {
    fn base(&self) -> &TargetBase {
        &self.inner.settings.base
    }

    fn min_ttl(&self) -> Duration {
        super::MIN_TTL
    }

    fn grant_keys(&self) -> &'static [&'static str] {
        GRANT_KEYS
    }

    fn required_grant_keys(&self) -> Vec<&'static str> {
        vec!["group"]
    }

    /// A literal group must be one of the target's; a templated one is checked once
    /// rendered.
    fn check_grant_param(&self, key: &str, value: &RuleParam<'_>) -> Result<(), String> {
        match (key, value) {
            ("group", RuleParam::Text(RuleText::Literal(g))) => check_group(&self.inner.settings.groups, g),
            ("group", RuleParam::Text(RuleText::Template)) => Ok(()),
            ("group", RuleParam::Map(_)) => Err("`group` is one role name, not a map".into()),
            _ => Ok(()),
        }
    }

    fn scope_param(&self) -> Option<&'static str> {
        Some("group")
    }

    fn cacheable(&self) -> bool {
        self.inner.settings.cache
    }

    /// The group, the login's lifetime (capped), and the identity's part of the role name,
    /// which carries its id.
    fn describe_request(&self, grant: &Grant) -> Result<RequestDescription, TargetError> {
        let Plan { group, identity, stem, ttl_secs } = self.plan(grant)?;
        Ok(RequestDescription::new(grant)
            .with("group", group)
            .with("role_stem", stem)
            .with("valid_for", ttl_secs)
            .with("identity", identity))
    }

    async fn issue(&self, grant: &Grant) -> Result<IssuedCredential, TargetError> {
        let plan = self.plan(grant)?;
        let password = Secret::new(sql::password().map_err(upstream_internal)?);
        let expires_at = self.inner.clock.now().saturating_add(plan.ttl_secs);
        let username = self.create_login(&plan, &password, expires_at).await?;
        let s = &self.inner.settings;
        Ok(IssuedCredential {
            access_token: password.clone(),
            issued_token_type: token_type::POSTGRES_CREDENTIALS,
            token_type: "N_A",
            expires_at,
            platform_credentials: Some(PlatformCredentials::Postgres(PostgresCredentials {
                username,
                password,
                expires_at: format_rfc3339(expires_at),
                host: s.host.clone(),
                port: s.port,
                database: s.database.clone(),
            })),
        })
    }

    /// Drops the identities' logins at once (see `revoke.rs`).
    async fn revoke(&self, identities: &[String]) -> Result<RevokeReport, RevokeError> {
        Ok(self.drop_identities(identities).await?)
    }

    fn start(&self) {
        super::sweep::start(&self.inner);
    }
}
