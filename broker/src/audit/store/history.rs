//! The recorded exchanges read back, read-only, for replay (`tessera mappings diff`,
//! `unused`, `dependents`). Opening runs no migration and starts no writer: a SQLite
//! file is opened `mode=ro` and PostgreSQL sessions are `READ ONLY`, so a tool pointed at
//! a production store cannot change it.

use std::fmt;

use futures::TryStreamExt as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row as _};
use tessera_adapters::Identity;

use super::{Backend, StoreError, backend_of, describe, sqlite_path};
use crate::config::{AuditStoreConfig, SecretUrl};
use crate::mapping::Recorded;

/// A read-only view of the store's events.
pub struct History {
    pool: AnyPool,
    location: String,
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History").field("location", &self.location).finish_non_exhaustive()
    }
}

impl History {
    /// Connect read-only to the store at `url` (see [`super::store_url`]). A store that
    /// does not exist or was never migrated is an error, not an empty history.
    pub async fn open(config: &AuditStoreConfig, url: &SecretUrl) -> Result<Self, StoreError> {
        let (backend, location) = backend_of(url)?;
        let open_error = |message: String| StoreError::Open { location: location.clone(), message };
        let mut connect = url.expose().to_string();
        if backend == Backend::Sqlite {
            let (path, query) = sqlite_path(url.expose());
            if !path.exists() {
                return Err(open_error("no such file: has the broker run with this config?".to_string()));
            }
            connect = match query {
                None => format!("{connect}?mode=ro"),
                Some(q) => format!("sqlite://{}?{}", path.display(), read_only_query(q)),
            };
        }
        let options: AnyConnectOptions =
            connect.parse().map_err(|e: sqlx::Error| open_error(describe(&e)))?;
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    let statement = match backend {
                        Backend::Postgres => "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
                        Backend::Sqlite => "PRAGMA busy_timeout = 5000",
                    };
                    sqlx::query(statement).execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| open_error(describe(&e)))?;
        let migrated = sqlx::query("SELECT MAX(version) AS v FROM tessera_schema")
            .fetch_one(&pool)
            .await
            .and_then(|row| row.try_get::<Option<i64>, _>("v"));
        match migrated {
            Ok(Some(_)) => Ok(Self { pool, location }),
            Ok(None) | Err(_) => {
                Err(open_error("no audit events here: has the broker run with this config?".into()))
            }
        }
    }

    /// Where the store is, password redacted.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Every request recorded at or after `since_ms`, in no particular order, to `each`.
    /// Returns how many recorded requests had no verified identity (or one this version
    /// cannot read) and so were not handed over.
    pub async fn requests(
        &self,
        since_ms: i64,
        mut each: impl FnMut(&Recorded<'_>),
    ) -> Result<u64, StoreError> {
        let mut rows = sqlx::query(
            "SELECT time_ms, identity, target, scope, client_addr FROM tessera_audit_events \
             WHERE time_ms >= $1",
        )
        .bind(since_ms)
        .fetch(&self.pool);
        let mut skipped = 0;
        while let Some(row) = rows.try_next().await.map_err(|e| StoreError::query(&e))? {
            let identity: Option<String> = super::get(&row, "identity")?;
            let Some(identity) = identity.and_then(|t| serde_json::from_str::<Identity>(&t).ok()) else {
                skipped += 1;
                continue;
            };
            let target: String = super::get(&row, "target")?;
            let scope: Option<String> = super::get(&row, "scope")?;
            let client_addr: Option<String> = super::get(&row, "client_addr")?;
            each(&Recorded {
                time_ms: super::get(&row, "time_ms")?,
                identity: &identity,
                audience: &target,
                scope: scope.as_deref(),
                client_addr: client_addr.as_deref(),
            });
        }
        Ok(skipped)
    }
}

/// A SQLite URL query with `mode=ro` in place of any other mode.
fn read_only_query(query: &str) -> String {
    let mut parts: Vec<&str> = query.split('&').filter(|p| !p.starts_with("mode=")).collect();
    parts.push("mode=ro");
    parts.join("&")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::store::AuditStore;
    use crate::metrics::Metrics;

    #[test]
    fn any_mode_in_a_sqlite_url_becomes_read_only() {
        assert_eq!(read_only_query("mode=rwc"), "mode=ro");
        assert_eq!(read_only_query("cache=shared&mode=rw"), "cache=shared&mode=ro");
    }

    #[tokio::test]
    async fn history_reads_what_the_store_wrote_and_cannot_write() {
        use crate::audit::tests::{allowed_event, bare_event};
        let dir = tempfile::tempdir().unwrap();
        let url = SecretUrl::new(format!("sqlite://{}", dir.path().join("audit.db").display()));
        let config = AuditStoreConfig::default();
        let store = AuditStore::open(&config, &url, Arc::new(Metrics::new()), true).await.unwrap();
        for event in [bare_event(), allowed_event()] {
            store.write(&event).await.unwrap();
        }
        let history = History::open(&config, &url).await.unwrap();
        let mut seen = Vec::new();
        let skipped = history
            .requests(0, |r| {
                seen.push((
                    r.time_ms,
                    r.identity.id.clone(),
                    r.audience.to_string(),
                    r.scope.map(str::to_string),
                ))
            })
            .await
            .unwrap();
        assert_eq!(skipped, 1, "the event without an identity");
        let allowed = allowed_event();
        assert_eq!(
            seen,
            [(
                allowed.time_ms,
                "oidc://corp/svc-payments".to_string(),
                "aws-prod".to_string(),
                allowed.scope
            )]
        );
        let later =
            history.requests(allowed.time_ms + 1, |_| panic!("nothing is that recent")).await.unwrap();
        assert_eq!(later, 0);
        let write = sqlx::query("DELETE FROM tessera_audit_events").execute(&history.pool).await;
        assert!(write.is_err(), "a history is read-only: {write:?}");
    }

    #[tokio::test]
    async fn a_store_never_written_is_an_error_and_stays_unmade() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let url = SecretUrl::new(format!("sqlite://{}", db.display()));
        let error = History::open(&AuditStoreConfig::default(), &url).await.unwrap_err();
        assert!(error.to_string().contains("has the broker run"), "{error}");
        assert!(!db.exists());
    }
}
