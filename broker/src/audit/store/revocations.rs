//! Revocations in the store (`tessera_revocations`, schema version 2): added, listed and
//! removed. A removal sets `removed_ms` and `removed_by` and deletes nothing.

use sqlx::AnyPool;
use sqlx::any::AnyRow;

use super::{AuditStore, Backend, Param, Sql, StoreError, get, rfc3339_ms};
use crate::revocation::{Matcher, Revocation};

const COLUMNS: &str =
    "revocation_id, kind, matcher, reason, author, created_ms, expires_ms, removed_ms, removed_by";

/// Most revocations one listing returns.
pub const MAX_REVOCATIONS: i64 = 10_000;

impl AuditStore {
    /// Store a new revocation; it is committed when this returns.
    pub async fn add_revocation(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let (revocation, backend) = (revocation.clone(), self.backend);
        self.on_store_runtime(move |pool| async move { insert(&pool, backend, &revocation).await }).await
    }

    /// Revocations, oldest first: those not removed, or with `removed` every one ever made.
    /// Expired ones are listed too; [`Revocation::in_force`] tells them apart.
    pub async fn revocations(&self, removed: bool) -> Result<Vec<Revocation>, StoreError> {
        let backend = self.backend;
        self.on_store_runtime(move |pool| async move { list(&pool, backend, removed, None, None).await })
            .await
    }

    /// Every revocation in force at `now_ms` (not removed, not expired), without a page
    /// limit: what a broker enforces.
    pub async fn revocations_in_force(&self, now_ms: i64) -> Result<Vec<Revocation>, StoreError> {
        let backend = self.backend;
        self.on_store_runtime(
            move |pool| async move { list(&pool, backend, false, None, Some(now_ms)).await },
        )
        .await
    }

    /// Mark revocation `id` removed by `by` at `now_ms`. `None` when there is no such
    /// revocation or it was already removed.
    pub async fn remove_revocation(
        &self,
        id: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<Option<Revocation>, StoreError> {
        let (id, by, backend) = (id.to_string(), by.to_string(), self.backend);
        self.on_store_runtime(move |pool| async move { remove(&pool, backend, &id, &by, now_ms).await }).await
    }
}

async fn insert(pool: &AnyPool, backend: Backend, r: &Revocation) -> Result<(), StoreError> {
    let matcher = serde_json::to_string(&r.matcher).map_err(|e| StoreError::Query(e.to_string()))?;
    let mut sql = Sql::new(backend, &format!("INSERT INTO tessera_revocations ({COLUMNS}) VALUES "));
    sql.tuple(
        0,
        [
            Param::Text(r.id.clone().into()),
            Param::Text(r.matcher.kind().to_string().into()),
            Param::Text(matcher.into()),
            Param::Text(r.reason.clone().into()),
            Param::Text(r.author.clone().into()),
            Param::Int(r.created_ms),
            Param::OptInt(r.expires_ms),
            Param::OptInt(None),
            Param::OptText(None),
        ],
    );
    sql.query().execute(pool).await.map(|_| ()).map_err(|e| StoreError::query(&e))
}

async fn list(
    pool: &AnyPool,
    backend: Backend,
    removed: bool,
    id: Option<&str>,
    in_force_at: Option<i64>,
) -> Result<Vec<Revocation>, StoreError> {
    let mut sql = Sql::new(backend, &format!("SELECT {COLUMNS} FROM tessera_revocations WHERE 1 = 1"));
    if !removed {
        sql.text.push_str(" AND removed_ms IS NULL");
    }
    if let Some(id) = id {
        sql.and("revocation_id =", Param::Text(id.to_string().into()));
    }
    if let Some(now_ms) = in_force_at {
        let now = sql.param(Param::Int(now_ms));
        sql.text.push_str(&format!(" AND (expires_ms IS NULL OR expires_ms > {now})"));
    }
    sql.text.push_str(" ORDER BY created_ms, revocation_id");
    // A listing is paged; what is enforced never is, so none goes unenforced.
    if in_force_at.is_none() {
        let limit = sql.param(Param::Int(MAX_REVOCATIONS));
        sql.text.push_str(&format!(" LIMIT {limit}"));
    }
    sql.fetch_all(pool).await?.iter().map(read).collect()
}

async fn remove(
    pool: &AnyPool,
    backend: Backend,
    id: &str,
    by: &str,
    now_ms: i64,
) -> Result<Option<Revocation>, StoreError> {
    let mut sql = Sql::new(backend, "UPDATE tessera_revocations SET removed_ms = ");
    let now = sql.param(Param::Int(now_ms));
    sql.text.push_str(&now);
    sql.text.push_str(", removed_by = ");
    let who = sql.param(Param::Text(by.to_string().into()));
    sql.text.push_str(&who);
    sql.text.push_str(" WHERE removed_ms IS NULL");
    sql.and("revocation_id =", Param::Text(id.to_string().into()));
    let updated = sql.query().execute(pool).await.map_err(|e| StoreError::query(&e))?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    Ok(list(pool, backend, true, Some(id), None).await?.into_iter().next())
}

fn read(row: &AnyRow) -> Result<Revocation, StoreError> {
    let matcher: String = get(row, "matcher")?;
    let matcher: Matcher = serde_json::from_str(&matcher)
        .map_err(|e| StoreError::Query(format!("stored revocation does not parse: {e}")))?;
    let created_ms: i64 = get(row, "created_ms")?;
    let expires_ms: Option<i64> = get(row, "expires_ms")?;
    let removed_ms: Option<i64> = get(row, "removed_ms")?;
    Ok(Revocation {
        id: get(row, "revocation_id")?,
        matcher,
        reason: get(row, "reason")?,
        author: get(row, "author")?,
        created: rfc3339_ms(created_ms),
        created_ms,
        expires: expires_ms.map(rfc3339_ms),
        expires_ms,
        removed: removed_ms.map(rfc3339_ms),
        removed_by: get(row, "removed_by")?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::sqlite_store;
    use super::*;

    fn revocation(id: &str, created_ms: i64, matcher: Matcher) -> Revocation {
        Revocation {
            id: id.to_string(),
            matcher,
            reason: "repository compromised".into(),
            author: "ops@example".into(),
            created: rfc3339_ms(created_ms),
            created_ms,
            expires: Some(rfc3339_ms(created_ms + 60_000)),
            expires_ms: Some(created_ms + 60_000),
            removed: None,
            removed_by: None,
        }
    }

    #[tokio::test]
    async fn revocations_are_stored_listed_and_removed_but_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let first = revocation("r1", 1_000, Matcher::Identity { id: "github://octo/app".into() });
        let attributes = [("github.ref".to_string(), "refs/heads/main".to_string())].into();
        let second = revocation("r2", 2_000, Matcher::Attributes { source: "github".into(), attributes });
        store.add_revocation(&second).await.unwrap();
        store.add_revocation(&first).await.unwrap();
        assert_eq!(store.revocations(false).await.unwrap(), vec![first.clone(), second.clone()]);

        let removed = store.remove_revocation("r1", "admin@example", 3_000).await.unwrap().unwrap();
        assert_eq!(removed.removed.as_deref(), Some(rfc3339_ms(3_000).as_str()));
        assert_eq!(removed.removed_by.as_deref(), Some("admin@example"));
        assert_eq!(store.revocations(false).await.unwrap(), vec![second.clone()]);
        assert_eq!(store.revocations(true).await.unwrap(), vec![removed, second.clone()]);
        assert_eq!(store.remove_revocation("r1", "admin@example", 4_000).await.unwrap(), None);
        assert_eq!(store.remove_revocation("nope", "admin@example", 4_000).await.unwrap(), None);
        // Enforced: not removed and not expired (`second` expires at 62_000).
        assert_eq!(store.revocations_in_force(61_999).await.unwrap(), vec![second]);
        assert!(store.revocations_in_force(62_000).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn revocations_survive_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let kept = revocation("r1", 1_000, Matcher::Source { source: "github".into() });
        sqlite_store(dir.path()).await.add_revocation(&kept).await.unwrap();
        assert_eq!(sqlite_store(dir.path()).await.revocations(false).await.unwrap(), vec![kept]);
    }
}
