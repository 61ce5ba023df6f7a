//! The sweep: every `sweep_interval`, the logins this target made whose `VALID UNTIL` has
//! passed (by the broker's clock) are dropped, at most `sweep_batch` per pass, oldest
//! first. What a login owns is handed to the configured owner first, so nothing it made
//! is lost.

use std::sync::{Arc, Weak};

use sqlx::Executor as _;

use super::issue::{Inner, PostgresTarget, db_error};
use super::sql::quote_ident;
use crate::target::TargetError;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Logins dropped.
    pub dropped: Vec<String>,
    /// Logins that could not be dropped this time (they are tried again next pass).
    pub failed: usize,
}

/// Start the sweep once; it stops when the target is dropped.
pub(super) fn start(inner: &Arc<Inner>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    inner.sweeping.get_or_init(|| {
        runtime.spawn(sweep_loop(Arc::downgrade(inner)));
    });
}

async fn sweep_loop(inner: Weak<Inner>) {
    let Some(every) = inner.upgrade().map(|i| i.settings.sweep_interval) else { return };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let target = PostgresTarget { inner };
        match target.sweep().await {
            Ok(report) if report.dropped.is_empty() && report.failed == 0 => {}
            Ok(report) => tracing::info!(
                target_name = %target.inner.settings.base.name,
                dropped = report.dropped.len(),
                failed = report.failed,
                "expired postgres logins swept"
            ),
            Err(e) => tracing::warn!(
                target_name = %target.inner.settings.base.name,
                code = e.code(),
                error = %e,
                "postgres sweep failed; trying again next interval"
            ),
        }
    }
}

impl PostgresTarget {
    /// One pass of the sweep (the background task calls this every `sweep_interval`).
    pub async fn sweep(&self) -> Result<SweepReport, TargetError> {
        let inner = &self.inner;
        let s = &inner.settings;
        let now = inner.clock.now();
        let expired: Vec<(String,)> = inner
            .bounded(async {
                sqlx::query_as(
                    "SELECT r.rolname::text FROM pg_catalog.pg_roles r \
                     WHERE starts_with(r.rolname::text, $1) \
                       AND r.rolvaliduntil < to_timestamp($2) \
                       AND starts_with(coalesce(pg_catalog.shobj_description(r.oid, 'pg_authid'), ''), $3) \
                     ORDER BY r.rolvaliduntil LIMIT $4",
                )
                .bind(&s.role_prefix)
                .bind(now)
                .bind(inner.marker())
                .bind(i64::from(s.sweep_batch))
                .fetch_all(inner.pool())
                .await
                .map_err(|e| db_error(&e, "listing expired logins"))
            })
            .await?;
        let mut report = SweepReport::default();
        for (role,) in expired {
            match inner.bounded(drop_login(inner, &role, false)).await {
                Ok(true) => report.dropped.push(role),
                // Another replica dropped it first.
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(target_name = %s.base.name, role = %role, code = e.code(), error = %e, "expired postgres login not dropped");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }
}

/// Drop one login in one transaction: take its privileges (PostgreSQL requires them of
/// whoever reassigns or drops what a role owns), end its sessions (always when `terminate`,
/// else if configured), hand what it owns to the owner, drop its remaining privileges and
/// the role. Idempotent: replicas sweeping or revoking at once take a transaction lock on
/// the role's name first, and a role already gone is `Ok(false)`.
pub(super) async fn drop_login(inner: &Inner, role: &str, terminate: bool) -> Result<bool, TargetError> {
    let s = &inner.settings;
    let ident = |name: &str| quote_ident(name).map_err(|e| crate::targets::upstream::upstream(false, e));
    let (quoted, owner) = (ident(role)?, ident(&s.owner)?);
    let mut tx = inner.begin().await?;
    sqlx::query("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1))")
        .bind(role)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error(&e, "locking the login"))?;
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_error(&e, "looking up the login"))?;
    if exists.is_none() {
        tx.commit().await.map_err(|e| db_error(&e, "committing"))?;
        return Ok(false);
    }
    tx.execute(format!("GRANT {quoted} TO CURRENT_USER").as_str())
        .await
        .map_err(|e| db_error(&e, "taking the login's privileges"))?;
    if terminate || s.terminate_sessions {
        sqlx::query(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = $1",
        )
        .bind(role)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error(&e, "ending the login's sessions"))?;
    }
    for (statement, what) in [
        (format!("REASSIGN OWNED BY {quoted} TO {owner}"), "reassigning what the login owns"),
        (format!("DROP OWNED BY {quoted}"), "dropping the login's privileges"),
        (format!("DROP ROLE {quoted}"), "dropping the login"),
    ] {
        tx.execute(statement.as_str()).await.map_err(|e| db_error(&e, what))?;
    }
    tx.commit().await.map_err(|e| db_error(&e, "committing the drop"))?;
    Ok(true)
}
