//! What the operator console reads beyond `GET /v1/audit` and `GET /v1/workloads`: the
//! directory's search filters, a workload's deciding rules, the access graph's edges over a
//! window, the overview's recent activity, and each rule's matches. Portable SQL, as the
//! rest of the store.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::AnyPool;

use super::{AuditStore, Backend, MAX_PAGE, Param, Sql, StoreError, WorkloadQuery, get};

/// One page of the directory, how many workloads match in all, and where the next page
/// starts.
#[derive(Debug, Serialize)]
pub struct DirectoryPage {
    pub workloads: Vec<super::Workload>,
    pub total: i64,
    pub next_cursor: Option<String>,
}

/// A workload's exchanges grouped by the rule that decided them (`None`: no rule did, as
/// when none applies), target, decision and reason.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadRule {
    pub rule: Option<String>,
    pub target: String,
    pub decision: String,
    pub reason: String,
    pub exchanges: i64,
    pub last_ms: i64,
}

/// An hour in milliseconds: the access graph counts exchanges in whole hours.
pub const HOUR_MS: i64 = 3_600_000;

/// Filters of the access graph: exchanges since the start of the hour `since_ms` falls in
/// (the graph reads hourly counts, see [`AuditStore::edges`]), optionally of one source,
/// one target, or workloads with one attribute value.
#[derive(Debug, Clone, Default)]
pub struct EdgeQuery {
    pub since_ms: i64,
    pub source: Option<String>,
    pub target: Option<String>,
    pub attribute: Option<(String, String)>,
}

/// The exchanges of one workload (of one source) with one target, by decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub source: String,
    pub identity_id: String,
    pub target: String,
    pub allow: i64,
    pub deny: i64,
    pub error: i64,
}

/// Exchanges of one minute (`minute` is milliseconds since the epoch / 60,000).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MinuteCounts {
    pub minute: i64,
    pub allow: i64,
    pub deny: i64,
    pub error: i64,
}

/// One target's exchanges over a window: by decision, and its credential cache's hits
/// and misses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetHealth {
    pub target: String,
    pub allow: i64,
    pub deny: i64,
    pub error: i64,
    pub cache_hits: i64,
    pub cache_misses: i64,
}

/// Recent activity: exchanges per minute, the latencies of the latest exchanges (at most
/// [`LATENCY_SAMPLE`], slowest last), per target and per source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Activity {
    pub minutes: Vec<MinuteCounts>,
    pub latencies_ms: Vec<f64>,
    pub targets: Vec<TargetHealth>,
    /// Per source: exchanges refused or failed before a rule was looked at (the token
    /// was not verified), and all exchanges.
    pub sources: Vec<(String, i64, i64)>,
}

/// How many of the latest exchanges the overview's percentiles are taken over.
pub const LATENCY_SAMPLE: i64 = 10_000;

/// How often one rule decided, by decision, and when last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatches {
    pub rule: String,
    pub decision: String,
    pub exchanges: i64,
    pub last_ms: i64,
}

/// `LIKE` pattern text for `value` with `\`, `%` and `_` escaped (the statements say
/// `ESCAPE '\'`).
fn like_escaped(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// ` AND` the identity JSON in `column` has the attribute `key` with exactly `value`:
/// looked up in its `attributes` object by the database's JSON functions, so neither an
/// identity field of that name, nor a value that merely contains it, nor one differing in
/// case matches.
fn attribute_condition(sql: &mut Sql, column: &str, key: &str, value: &str) {
    let key = sql.param(Param::Text(key.to_string().into()));
    let value = sql.param(Param::Text(value.to_string().into()));
    let condition = match sql.backend {
        Backend::Sqlite => format!(
            " AND EXISTS (SELECT 1 FROM json_each({column}, '$.attributes') \
             WHERE json_each.key = {key} AND json_each.type = 'text' AND json_each.value = {value})"
        ),
        Backend::Postgres => {
            format!(
                " AND (CAST({column} AS jsonb) -> 'attributes' ->> CAST({key} AS text)) = CAST({value} AS text)"
            )
        }
    };
    sql.text.push_str(&condition);
}

/// The conditions of a directory query: `GET /v1/workloads`'s, then the console's.
pub(super) fn directory_filters(sql: &mut Sql, query: &WorkloadQuery) {
    if let Some(source) = &query.source {
        sql.and("source =", Param::Text(source.clone().into()));
    }
    if let Some(identity) = &query.identity {
        sql.and("identity_id =", Param::Text(identity.clone().into()));
    }
    if let Some(seen) = query.seen_since_ms {
        sql.and("last_seen_ms >=", Param::Int(seen));
    }
    if let Some(search) = query.search.as_deref().filter(|s| !s.is_empty()) {
        let p = sql.param(Param::Text(format!("%{}%", like_escaped(search)).into()));
        sql.text.push_str(&format!(" AND identity_id LIKE {p} ESCAPE '\\'"));
    }
    if let Some((key, value)) = &query.attribute {
        attribute_condition(sql, "identity", key, value);
    }
    match query.decision.as_deref() {
        Some("allow") => sql.text.push_str(" AND allowed > 0"),
        Some("deny") => sql.text.push_str(" AND denied > 0"),
        Some("error") => sql.text.push_str(" AND errors > 0"),
        _ => {}
    }
    if let Some(cursor) = &query.cursor {
        let time = sql.param(Param::Int(cursor.last_seen_ms));
        let time_again = sql.param(Param::Int(cursor.last_seen_ms));
        let id = sql.param(Param::Text(cursor.identity_id.clone().into()));
        sql.text.push_str(&format!(
            " AND (last_seen_ms < {time} OR (last_seen_ms = {time_again} AND identity_id > {id}))"
        ));
    }
}

impl AuditStore {
    /// A page of the directory with the count of all workloads the filters match.
    pub async fn directory(&self, query: &WorkloadQuery) -> Result<DirectoryPage, StoreError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let mut fetch = query.clone();
        fetch.limit = limit.saturating_add(1).min(MAX_PAGE + 1);
        let mut workloads = self.workloads(&fetch).await?;
        let next_cursor = if workloads.len() > limit as usize {
            workloads.truncate(limit as usize);
            workloads.last().and_then(|w| {
                let last_seen_ms =
                    chrono::DateTime::parse_from_rfc3339(&w.last_seen).ok()?.timestamp_millis();
                Some(super::WorkloadCursor { last_seen_ms, identity_id: w.id.clone() }.to_string())
            })
        } else {
            None
        };
        let mut count = query.clone();
        count.cursor = None;
        let (backend, total) = (self.backend, count);
        let total = self
            .on_store_runtime(move |pool| async move { count_workloads(&pool, backend, &total).await })
            .await?;
        Ok(DirectoryPage { workloads, total, next_cursor })
    }

    /// The rules that decided a workload's exchanges, most recent first.
    pub async fn workload_rules(&self, identity_id: &str) -> Result<Vec<WorkloadRule>, StoreError> {
        let (backend, id) = (self.backend, identity_id.to_string());
        self.on_store_runtime(move |pool| async move {
            let mut sql = Sql::new(
                backend,
                "SELECT rule, target, decision, reason, COUNT(*) AS n, MAX(time_ms) AS last_ms \
                 FROM tessera_audit_events WHERE 1 = 1",
            );
            sql.and("identity_id =", Param::Text(id.into()));
            sql.text.push_str(" GROUP BY rule, target, decision, reason ORDER BY last_ms DESC");
            let rows = sql.fetch_all(&pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(WorkloadRule {
                        rule: get(row, "rule")?,
                        target: get(row, "target")?,
                        decision: get(row, "decision")?,
                        reason: get(row, "reason")?,
                        exchanges: get(row, "n")?,
                        last_ms: get(row, "last_ms")?,
                    })
                })
                .collect()
        })
        .await
    }

    /// The access graph's edges: exchanges by source, workload and target, counted from
    /// the hourly counts kept with the directory (`tessera_hours`), since the start of the
    /// hour `query.since_ms` falls in: a window's cost grows with the workloads active in
    /// it, not with its events. Events without a verified identity belong to no workload
    /// and are left out.
    pub async fn edges(&self, query: &EdgeQuery) -> Result<Vec<Edge>, StoreError> {
        let (backend, query) = (self.backend, query.clone());
        self.on_store_runtime(move |pool| async move { edges(&pool, backend, &query).await }).await
    }

    /// The identity JSON of each workload of `ids` the directory knows.
    pub async fn identities(
        &self,
        ids: Vec<String>,
    ) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
        let backend = self.backend;
        self.on_store_runtime(move |pool| async move {
            let mut out = BTreeMap::new();
            for chunk in ids.chunks(500) {
                let mut sql = Sql::new(
                    backend,
                    "SELECT identity_id, identity FROM tessera_workloads WHERE identity_id IN (",
                );
                for (i, id) in chunk.iter().enumerate() {
                    let p = sql.param(Param::Text(id.clone().into()));
                    sql.text.push_str(if i == 0 { "" } else { ", " });
                    sql.text.push_str(&p);
                }
                sql.text.push(')');
                for row in sql.fetch_all(&pool).await? {
                    let id: String = get(&row, "identity_id")?;
                    out.insert(id, super::json(get(&row, "identity")?).unwrap_or_default());
                }
            }
            Ok(out)
        })
        .await
    }

    /// What happened since `since_ms`: see [`Activity`].
    pub async fn activity(&self, since_ms: i64) -> Result<Activity, StoreError> {
        let backend = self.backend;
        self.on_store_runtime(move |pool| async move { activity(&pool, backend, since_ms).await }).await
    }

    /// Every rule that ever decided an exchange, by decision.
    pub async fn rule_matches(&self) -> Result<Vec<RuleMatches>, StoreError> {
        let backend = self.backend;
        self.on_store_runtime(move |pool| async move {
            let sql = Sql::new(
                backend,
                "SELECT rule, decision, exchanges, last_ms FROM tessera_rule_matches ORDER BY rule, decision",
            );
            let rows = sql.fetch_all(&pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(RuleMatches {
                        rule: get(row, "rule")?,
                        decision: get(row, "decision")?,
                        exchanges: get(row, "exchanges")?,
                        last_ms: get(row, "last_ms")?,
                    })
                })
                .collect()
        })
        .await
    }
}

async fn count_workloads(pool: &AnyPool, backend: Backend, query: &WorkloadQuery) -> Result<i64, StoreError> {
    let mut sql = Sql::new(backend, "SELECT COUNT(*) AS n FROM tessera_workloads WHERE 1 = 1");
    directory_filters(&mut sql, query);
    let rows = sql.fetch_all(pool).await?;
    rows.first().map_or(Ok(0), |row| get(row, "n"))
}

async fn edges(pool: &AnyPool, backend: Backend, query: &EdgeQuery) -> Result<Vec<Edge>, StoreError> {
    let mut sql = Sql::new(
        backend,
        "SELECT source, identity_id, target, decision, CAST(SUM(exchanges) AS BIGINT) AS n FROM tessera_hours \
         WHERE 1 = 1",
    );
    sql.and("hour >=", Param::Int(query.since_ms.div_euclid(HOUR_MS)));
    if let Some(source) = &query.source {
        sql.and("source =", Param::Text(source.clone().into()));
    }
    if let Some(target) = &query.target {
        sql.and("target =", Param::Text(target.clone().into()));
    }
    if let Some((key, value)) = &query.attribute {
        // The attributes the workload was last seen with, as the directory filters them.
        sql.text.push_str(" AND identity_id IN (SELECT identity_id FROM tessera_workloads WHERE 1 = 1");
        attribute_condition(&mut sql, "identity", key, value);
        sql.text.push(')');
    }
    sql.text.push_str(" GROUP BY source, identity_id, target, decision");
    let mut edges: BTreeMap<(String, String, String), Edge> = BTreeMap::new();
    for row in sql.fetch_all(pool).await? {
        let (source, id, target): (String, String, String) =
            (get(&row, "source")?, get(&row, "identity_id")?, get(&row, "target")?);
        let decision: String = get(&row, "decision")?;
        let n: i64 = get(&row, "n")?;
        let edge = edges.entry((source.clone(), id.clone(), target.clone())).or_insert(Edge {
            source,
            identity_id: id,
            target,
            allow: 0,
            deny: 0,
            error: 0,
        });
        match decision.as_str() {
            "allow" => edge.allow += n,
            "deny" => edge.deny += n,
            _ => edge.error += n,
        }
    }
    Ok(edges.into_values().collect())
}

/// The window's per-minute counts (`tessera_minutes`, kept with the directory), folded by
/// minute, target and source; and the latency sample, read newest first through the time
/// index. The window starts at the minute `since_ms` falls in.
async fn activity(pool: &AnyPool, backend: Backend, since_ms: i64) -> Result<Activity, StoreError> {
    let mut sql = Sql::new(
        backend,
        "SELECT minute, source, target, decision, cache, verified, exchanges AS n FROM tessera_minutes WHERE 1 = 1",
    );
    sql.and("minute >=", Param::Int(since_ms.div_euclid(60_000)));
    let mut minutes: BTreeMap<i64, MinuteCounts> = BTreeMap::new();
    let mut targets: BTreeMap<String, TargetHealth> = BTreeMap::new();
    let mut sources: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in sql.fetch_all(pool).await? {
        let (minute, n): (i64, i64) = (get(&row, "minute")?, get(&row, "n")?);
        let decision: String = get(&row, "decision")?;
        let m = minutes.entry(minute).or_insert_with(|| MinuteCounts { minute, ..MinuteCounts::default() });
        add_decision(&mut m.allow, &mut m.deny, &mut m.error, &decision, n);
        let target: String = get(&row, "target")?;
        let t = targets
            .entry(target.clone())
            .or_insert_with(|| TargetHealth { target, ..TargetHealth::default() });
        add_decision(&mut t.allow, &mut t.deny, &mut t.error, &decision, n);
        match get::<String>(&row, "cache")?.as_str() {
            "hit" => t.cache_hits += n,
            "miss" => t.cache_misses += n,
            _ => {}
        }
        let source: String = get(&row, "source")?;
        if !source.is_empty() {
            let s = sources.entry(source).or_default();
            if get::<String>(&row, "verified")? == "no" {
                s.0 += n;
            }
            s.1 += n;
        }
    }
    let mut sql = Sql::new(backend, "SELECT latency_ms FROM tessera_audit_events WHERE 1 = 1");
    sql.and("time_ms >=", Param::Int(since_ms));
    let limit = sql.param(Param::Int(LATENCY_SAMPLE));
    sql.text.push_str(&format!(" ORDER BY time_ms DESC LIMIT {limit}"));
    let rows = sql.fetch_all(pool).await?;
    let mut latencies =
        rows.iter().map(|row| get::<f64>(row, "latency_ms")).collect::<Result<Vec<_>, _>>()?;
    latencies.sort_by(f64::total_cmp);
    Ok(Activity {
        minutes: minutes.into_values().collect(),
        latencies_ms: latencies,
        targets: targets.into_values().collect(),
        sources: sources.into_iter().map(|(s, (bad, all))| (s, bad, all)).collect(),
    })
}

fn add_decision(allow: &mut i64, deny: &mut i64, error: &mut i64, decision: &str, n: i64) {
    match decision {
        "allow" => *allow += n,
        "deny" => *deny += n,
        _ => *error += n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_their_wildcards() {
        assert_eq!(like_escaped("a_b%c\\d"), "a\\_b\\%c\\\\d");
    }

    #[test]
    fn a_workload_cursor_reads_back_what_it_wrote() {
        let cursor = super::super::WorkloadCursor {
            last_seen_ms: 1_790_000_000_123,
            identity_id: "oidc://demo/payments.api".into(),
        };
        assert_eq!(cursor.to_string().parse::<super::super::WorkloadCursor>().unwrap(), cursor);
        assert!("x.oidc://a".parse::<super::super::WorkloadCursor>().is_err());
        assert!("12.".parse::<super::super::WorkloadCursor>().is_err());
    }
}
