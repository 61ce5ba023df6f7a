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
use crate::mapping::{Folding, Recorded};

/// A read-only view of the store's events.
pub struct History {
    pool: AnyPool,
    backend: Backend,
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
            Ok(Some(_)) => Ok(Self { pool, backend, location }),
            Ok(None) | Err(_) => {
                Err(open_error("no audit events here: has the broker run with this config?".into()))
            }
        }
    }

    /// Where the store is, password redacted.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Every request recorded at or after `since_ms`, folded as `folding` allows (the
    /// store counts them), in no particular order, to `each`. Returns how many recorded
    /// requests had no verified identity (or one this version cannot read) and so were not
    /// handed over.
    pub async fn requests(
        &self,
        since_ms: i64,
        folding: Folding,
        mut each: impl FnMut(&Recorded<'_>),
    ) -> Result<u64, StoreError> {
        let sql = fold_query(folding, self.backend);
        let mut rows = sqlx::query(&sql).bind(since_ms).fetch(&self.pool);
        let mut skipped = 0;
        // Rows of one identity tend to come together (SQLite groups by sorting): parse once.
        let mut last: Option<(String, Identity)> = None;
        while let Some(row) = rows.try_next().await.map_err(|e| StoreError::query(&e))? {
            let exchanges: i64 = super::get(&row, "exchanges")?;
            let exchanges = u64::try_from(exchanges).unwrap_or(0);
            let text: Option<String> = super::get(&row, "identity")?;
            let Some(text) = text else {
                skipped += exchanges;
                continue;
            };
            if last.as_ref().is_none_or(|(seen, _)| *seen != text) {
                match serde_json::from_str::<Identity>(&text) {
                    Ok(identity) => last = Some((text, identity)),
                    Err(_) => {
                        skipped += exchanges;
                        continue;
                    }
                }
            }
            let Some((_, identity)) = &last else { continue };
            let target: String = super::get(&row, "target")?;
            let scope: Option<String> = super::get(&row, "scope")?;
            let client_addr: Option<String> =
                if folding.by_client_addr { super::get(&row, "client_addr")? } else { None };
            each(&Recorded {
                time_ms: super::get(&row, "last_ms")?,
                exchanges,
                identity,
                audience: &target,
                scope: scope.as_deref(),
                client_addr: client_addr.as_deref(),
            });
        }
        Ok(skipped)
    }
}

/// The events since `$1`, one row per group of requests a replay decides alike, with
/// their count and last time. Unless folding by expiry, the identity is read without
/// `expires_at` (which the identity then defaults to 0).
fn fold_query(folding: Folding, backend: Backend) -> String {
    let identity = match (folding.by_expiry, backend) {
        (true, _) => "identity",
        (false, Backend::Sqlite) => "json_remove(identity, '$.expires_at')",
        (false, Backend::Postgres) => "(identity::jsonb - 'expires_at')::text",
    };
    let mut columns = vec!["target", "scope"];
    if folding.by_client_addr {
        columns.push("client_addr");
    }
    let mut group = vec!["1"];
    group.extend(&columns);
    if folding.by_second {
        group.push("time_ms / 1000");
    }
    format!(
        "SELECT {identity} AS identity, {}, COUNT(*) AS exchanges, MAX(time_ms) AS last_ms \
         FROM tessera_audit_events WHERE time_ms >= $1 GROUP BY {}",
        columns.join(", "),
        group.join(", ")
    )
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
    use crate::audit::IdentityJson;
    use crate::audit::store::AuditStore;
    use crate::metrics::Metrics;

    #[test]
    fn any_mode_in_a_sqlite_url_becomes_read_only() {
        assert_eq!(read_only_query("mode=rwc"), "mode=ro");
        assert_eq!(read_only_query("cache=shared&mode=rw"), "cache=shared&mode=ro");
    }

    /// (time_ms, exchanges, identity id, audience, scope, client address) of each row.
    type Row = (i64, u64, String, String, Option<String>, Option<String>);

    async fn rows(history: &History, since_ms: i64, folding: Folding) -> (Vec<Row>, u64) {
        let mut seen = Vec::new();
        let skipped = history
            .requests(since_ms, folding, |r| {
                seen.push((
                    r.time_ms,
                    r.exchanges,
                    r.identity.id.clone(),
                    r.audience.to_string(),
                    r.scope.map(str::to_string),
                    r.client_addr.map(str::to_string),
                ))
            })
            .await
            .unwrap();
        seen.sort();
        (seen, skipped)
    }

    /// Requests alike are read as one row with their count and last time; the client
    /// address and the second they were made in tell them apart only when the rules read
    /// those.
    #[tokio::test]
    async fn history_reads_what_the_store_wrote_folded_and_cannot_write() {
        use crate::audit::tests::{allowed_event, bare_event};
        let dir = tempfile::tempdir().unwrap();
        let url = SecretUrl::new(format!("sqlite://{}", dir.path().join("audit.db").display()));
        let config = AuditStoreConfig::default();
        let store = AuditStore::open(&config, &url, Arc::new(Metrics::new()), true).await.unwrap();
        let allowed = allowed_event();
        let t = allowed.time_ms;
        let at = |ms: i64, addr: &str| {
            let mut e = allowed_event();
            (e.time_ms, e.client_addr) = (ms, Some(addr.to_string()));
            e
        };
        // The same workload with a later token: only `expires_at` differs.
        let mut renewed = at(t + 2000, "10.0.0.1");
        let mut identity: Identity =
            serde_json::from_str(renewed.identity.as_ref().unwrap().as_str()).unwrap();
        identity.expires_at += 3600;
        renewed.identity = Some(IdentityJson::new(&identity).unwrap());
        for event in [bare_event(), bare_event(), at(t, "10.0.0.1"), at(t + 500, "10.0.0.2"), renewed] {
            store.write(&event).await.unwrap();
        }
        let history = History::open(&config, &url).await.unwrap();
        let row = |ms, n, addr: Option<&str>| {
            let id = "oidc://corp/svc-payments".to_string();
            (ms, n, id, "aws-prod".to_string(), allowed.scope.clone(), addr.map(str::to_string))
        };

        let (seen, skipped) = rows(&history, 0, Folding::default()).await;
        assert_eq!(skipped, 2, "the events without an identity");
        assert_eq!(seen, [row(t + 2000, 3, None)]);
        let by_second = Folding { by_second: true, ..Folding::default() };
        assert_eq!(rows(&history, 0, by_second).await.0, [row(t + 500, 2, None), row(t + 2000, 1, None)]);
        let by_expiry = Folding { by_expiry: true, ..Folding::default() };
        assert_eq!(rows(&history, 0, by_expiry).await.0, [row(t + 500, 2, None), row(t + 2000, 1, None)]);
        let by_addr = Folding { by_client_addr: true, ..Folding::default() };
        assert_eq!(
            rows(&history, 0, by_addr).await.0,
            [row(t + 500, 1, Some("10.0.0.2")), row(t + 2000, 2, Some("10.0.0.1"))]
        );

        let later = history.requests(t + 2001, Folding::default(), |_| panic!("nothing is that recent"));
        assert_eq!(later.await.unwrap(), 0);
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
