//! What is still out there: the credentials the store recorded as issued (allowed events
//! with an issued token) that have not expired at a given instant, for the listing of what
//! a revoked workload still holds (`GET /v1/revocations/{id}/issued`).

use std::borrow::Cow;

use sqlx::AnyPool;

use super::{AuditStore, Backend, EVENT_COLUMNS, Param, Sql, StoreError, read_event};
use crate::audit::AuditEvent;

/// Which issued credentials to read, by one indexed column (or none: every one, to be
/// filtered by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuedFilter {
    All,
    Identity(String),
    Source(String),
    Rule(String),
    Fingerprint(String),
}

/// A query for [`AuditStore::issued_unexpired`].
#[derive(Debug, Clone)]
pub struct IssuedQuery {
    pub filter: IssuedFilter,
    /// Issued at or after this instant (ms): no credential lives longer than the longest
    /// lifetime of any target, so older events need not be read.
    pub since_ms: i64,
    /// Still valid at this instant (ms).
    pub now_ms: i64,
    /// Most events returned; one more is read to tell whether there were more.
    pub limit: u32,
}

impl AuditStore {
    /// Allowed events with an issued token whose credential is still valid at
    /// `query.now_ms` (issued at plus its lifetime), newest first. `true` with them when
    /// more than `query.limit` matched.
    pub async fn issued_unexpired(&self, query: &IssuedQuery) -> Result<(Vec<AuditEvent>, bool), StoreError> {
        let (query, backend) = (query.clone(), self.backend);
        self.on_store_runtime(move |pool| async move { unexpired(&pool, backend, &query).await }).await
    }
}

async fn unexpired(
    pool: &AnyPool,
    backend: Backend,
    query: &IssuedQuery,
) -> Result<(Vec<AuditEvent>, bool), StoreError> {
    let mut sql = Sql::new(
        backend,
        &format!(
            "SELECT {} FROM tessera_audit_events WHERE decision = 'allow' \
             AND issued_token_fingerprint IS NOT NULL AND issued_ttl IS NOT NULL",
            EVENT_COLUMNS.join(", ")
        ),
    );
    match &query.filter {
        IssuedFilter::All => {}
        IssuedFilter::Identity(id) => sql.and("identity_id =", Param::Text(Cow::Borrowed(id))),
        IssuedFilter::Source(source) => sql.and("source =", Param::Text(Cow::Borrowed(source))),
        IssuedFilter::Rule(rule) => sql.and("rule =", Param::Text(Cow::Borrowed(rule))),
        IssuedFilter::Fingerprint(f) => sql.issued_token(f),
    }
    sql.and("time_ms >=", Param::Int(query.since_ms));
    let now = sql.param(Param::Int(query.now_ms));
    sql.text.push_str(&format!(" AND time_ms + issued_ttl * 1000 > {now}"));
    let fetch = sql.param(Param::Int(i64::from(query.limit) + 1));
    sql.text.push_str(&format!(" ORDER BY time_ms DESC, event_id DESC LIMIT {fetch}"));
    let mut events = sql.fetch_all(pool).await?.iter().map(read_event).collect::<Result<Vec<_>, _>>()?;
    let more = events.len() > query.limit as usize;
    events.truncate(query.limit as usize);
    Ok((events, more))
}
