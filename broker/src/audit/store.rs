//! The SQL audit store: every exchange event, durable before its credential is returned,
//! and the workload directory kept from them in the same transaction. SQLite (a file in
//! the data directory, nothing to install) or PostgreSQL (shared by replicas), through one
//! set of portable SQL statements.
//!
//! Writes are group-committed: exchanges hand their event to one writer task and wait;
//! the writer takes every event queued since its last commit and commits them in one
//! transaction, so concurrent exchanges share one commit (one fsync on SQLite, one round
//! of WAL flushing on PostgreSQL) instead of queueing behind one each. While a commit
//! runs, the next batch gathers in the queue. The JSON lines of a batch's events follow
//! its commit in one write, and only then are its exchanges answered.
//!
//! Before a commit the writer waits, at most [`GATHER`], for the exchanges already under
//! way (each says so when it starts, [`AuditStore::expect`]) to queue their events, so
//! that under load one commit serves them all instead of one commit each for the first
//! few and another for the rest. Alone, an exchange is committed at once.

mod console;
pub mod history;
mod issued;
mod revocations;
mod sqlite_writer;

pub use console::{
    Activity, DirectoryPage, Edge, EdgeQuery, HOUR_MS, LATENCY_SAMPLE, MinuteCounts, RuleMatches,
    TargetHealth, WorkloadRule,
};
pub use issued::{IssuedFilter, IssuedQuery};

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{AnyPool, Row as _};
use tokio::sync::{Notify, mpsc, oneshot};

use super::{AuditEvent, Decision, IdentityJson, LineError, Lines, Recorded};
use crate::config::{AuditStoreConfig, SecretUrl};
use crate::metrics::Metrics;

/// Events committed in one transaction at most; more wait for the next one.
const MAX_BATCH: usize = 512;
/// Events waiting for the writer at most; beyond, exchanges wait to enqueue.
const QUEUE: usize = 8192;
/// How long the writer waits at most for the events of exchanges under way to join a
/// batch ([`Gathering`]): under load, the interval between commits; alone, no wait.
const GATHER: Duration = Duration::from_millis(1);

/// Which database the store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Schema versions, applied in order at start, each once, under a lock on PostgreSQL so
/// replicas starting together do not race. Statements are portable SQL.
const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE tessera_audit_events (
            event_id TEXT PRIMARY KEY,
            time_ms BIGINT NOT NULL,
            event_time TEXT NOT NULL,
            request_id TEXT NOT NULL,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT,
            source TEXT,
            identity_id TEXT,
            identity TEXT,
            target TEXT NOT NULL,
            scope TEXT,
            rule TEXT,
            cache TEXT,
            issued_ttl BIGINT,
            subject_token_fingerprint TEXT NOT NULL,
            issued_token_fingerprint TEXT,
            client_addr TEXT,
            latency_ms DOUBLE PRECISION NOT NULL
        )",
            "CREATE INDEX tessera_audit_events_time ON tessera_audit_events (time_ms, event_id)",
            "CREATE INDEX tessera_audit_events_identity ON tessera_audit_events (identity_id, time_ms)",
            "CREATE INDEX tessera_audit_events_target ON tessera_audit_events (target, time_ms)",
            "CREATE TABLE tessera_workloads (
            identity_id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            identity TEXT NOT NULL,
            first_seen_ms BIGINT NOT NULL,
            last_seen_ms BIGINT NOT NULL,
            allowed BIGINT NOT NULL,
            denied BIGINT NOT NULL,
            errors BIGINT NOT NULL
        )",
            "CREATE INDEX tessera_workloads_last_seen ON tessera_workloads (last_seen_ms)",
            "CREATE TABLE tessera_workload_outcomes (
            identity_id TEXT NOT NULL,
            target TEXT NOT NULL,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL,
            exchanges BIGINT NOT NULL,
            first_ms BIGINT NOT NULL,
            last_ms BIGINT NOT NULL,
            PRIMARY KEY (identity_id, target, decision, reason)
        )",
        ],
    ),
    (
        2,
        &[
            // Per rule and decision: how often it decided and when last, for the console's
            // rules page; kept with the directory, filled from the events recorded so far.
            "CREATE TABLE tessera_rule_matches (
            rule TEXT NOT NULL,
            decision TEXT NOT NULL,
            exchanges BIGINT NOT NULL,
            first_ms BIGINT NOT NULL,
            last_ms BIGINT NOT NULL,
            PRIMARY KEY (rule, decision)
        )",
            "INSERT INTO tessera_rule_matches (rule, decision, exchanges, first_ms, last_ms) \
             SELECT rule, decision, COUNT(*), MIN(time_ms), MAX(time_ms) FROM tessera_audit_events \
             WHERE rule IS NOT NULL GROUP BY rule, decision",
            // Per minute: the exchanges the console's overview charts, by source, target,
            // decision, cache use and whether the identity was verified.
            "CREATE TABLE tessera_minutes (
            minute BIGINT NOT NULL,
            source TEXT NOT NULL,
            target TEXT NOT NULL,
            decision TEXT NOT NULL,
            cache TEXT NOT NULL,
            verified TEXT NOT NULL,
            exchanges BIGINT NOT NULL,
            first_ms BIGINT NOT NULL,
            last_ms BIGINT NOT NULL,
            PRIMARY KEY (minute, source, target, decision, cache, verified)
        )",
            "INSERT INTO tessera_minutes (minute, source, target, decision, cache, verified, exchanges, first_ms, \
             last_ms) SELECT time_ms / 60000, COALESCE(source, ''), target, decision, COALESCE(cache, ''), \
             CASE WHEN identity_id IS NULL THEN 'no' ELSE 'yes' END, COUNT(*), MIN(time_ms), MAX(time_ms) \
             FROM tessera_audit_events GROUP BY 1, 2, 3, 4, 5, 6",
        ],
    ),
    // Pages of one workload's or one target's events come out of their index in order,
    // with no sort of all their events; an issued token's event is found by its index, not
    // by reading every event (`GET /v1/audit?issued_token=`); refused and failed events,
    // rare among allowed ones, page from an index of their own, which allowed events do
    // not pay for.
    (
        3,
        &[
            "DROP INDEX tessera_audit_events_identity",
            "CREATE INDEX tessera_audit_events_identity ON tessera_audit_events (identity_id, time_ms, event_id)",
            "DROP INDEX tessera_audit_events_target",
            "CREATE INDEX tessera_audit_events_target ON tessera_audit_events (target, time_ms, event_id)",
            "CREATE INDEX tessera_audit_events_issued ON tessera_audit_events (issued_token_fingerprint)",
            "CREATE INDEX tessera_audit_events_refused ON tessera_audit_events (decision, time_ms, event_id) \
             WHERE decision <> 'allow'",
        ],
    ),
    (
        4,
        &[
            // Revocations (see `crate::revocation`). Rows are never deleted: a removed one
            // keeps who removed it and when, so the table is also their audit record.
            "CREATE TABLE tessera_revocations (
            revocation_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            matcher TEXT NOT NULL,
            reason TEXT NOT NULL,
            author TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            expires_ms BIGINT,
            removed_ms BIGINT,
            removed_by TEXT
        )",
            "CREATE INDEX tessera_revocations_created ON tessera_revocations (created_ms, revocation_id)",
        ],
    ),
    (
        5,
        &[
            // Per hour: the exchanges of each verified workload with each target, by
            // decision, for the console's access graph, which reads these instead of every
            // event of its window; filled from the events recorded so far.
            "CREATE TABLE tessera_hours (
            hour BIGINT NOT NULL,
            source TEXT NOT NULL,
            identity_id TEXT NOT NULL,
            target TEXT NOT NULL,
            decision TEXT NOT NULL,
            exchanges BIGINT NOT NULL,
            first_ms BIGINT NOT NULL,
            last_ms BIGINT NOT NULL,
            PRIMARY KEY (hour, source, identity_id, target, decision)
        )",
            "INSERT INTO tessera_hours (hour, source, identity_id, target, decision, exchanges, first_ms, last_ms) \
             SELECT time_ms / 3600000, source, identity_id, target, decision, COUNT(*), MIN(time_ms), MAX(time_ms) \
             FROM tessera_audit_events WHERE identity_id IS NOT NULL AND source IS NOT NULL GROUP BY 1, 2, 3, 4, 5",
        ],
    ),
    (
        6,
        &[
            // Delegated exchanges (RFC 8693 `actor_token`): who acted for the identity, and
            // the actor token's fingerprint; the actor's events page from their own index.
            "ALTER TABLE tessera_audit_events ADD COLUMN actor_id TEXT",
            "ALTER TABLE tessera_audit_events ADD COLUMN actor TEXT",
            "ALTER TABLE tessera_audit_events ADD COLUMN actor_token_fingerprint TEXT",
            "CREATE INDEX tessera_audit_events_actor ON tessera_audit_events (actor_id, time_ms, event_id) \
             WHERE actor_id IS NOT NULL",
        ],
    ),
    (
        7,
        &[
            // An issued token's event by its fingerprint, without an index keyed by the
            // fingerprint alone on SQLite (see `SQLITE_MIGRATIONS`).
            "ALTER TABLE tessera_audit_events ADD COLUMN issued_segment BIGINT",
        ],
    ),
];

/// SQLite's own statements, run after the portable ones of the same version.
///
/// 7: the events of issued tokens are indexed by segment (256 consecutive rows, numbered
/// by rowid) and then by a 48-bit prefix of the fingerprint, instead of by the fingerprint
/// alone. A fingerprint is random: in an index keyed by it, every event lands on a page of
/// its own, which a commit then writes twice (WAL and checkpoint) and which is rarely in the
/// cache; that was two thirds of what SQLite wrote per event. Within the newest segment the
/// pages are few and hot. A lookup probes each segment once ([`Sql::issued_token`]): some
/// 4,000 index probes, about 15 ms, at 1M events. PostgreSQL keeps its index on the
/// fingerprint, and `issued_segment` stays empty there.
const SQLITE_MIGRATIONS: &[(i64, &[&str])] = &[(
    7,
    &[
        "UPDATE tessera_audit_events SET issued_segment = rowid >> 8 WHERE issued_token_fingerprint IS NOT NULL",
        "CREATE INDEX tessera_audit_events_issued_segment ON tessera_audit_events \
         (issued_segment, substr(issued_token_fingerprint, 8, 12)) WHERE issued_segment IS NOT NULL",
        "DROP INDEX tessera_audit_events_issued",
    ],
)];

/// Every SQLite connection's settings, the writer's included. WAL: readers never block the
/// writer. FULL: a commit is on disk before the exchange it records returns. Temporary
/// tables and statement journals in memory: not a file made and removed per commit.
const SQLITE_PRAGMAS: [&str; 3] =
    ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA temp_store = MEMORY"];

/// An arbitrary constant naming Tessera's migration lock among PostgreSQL advisory locks.
const MIGRATION_LOCK: i64 = 0x0074_6573_7365_7261;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("audit store {location}: {message}")]
    Open { location: String, message: String },
    #[error("audit store query failed: {0}")]
    Query(String),
}

impl StoreError {
    fn query(e: &sqlx::Error) -> Self {
        Self::Query(describe(e))
    }
}

/// A database error in words, without the connection string (sqlx never puts the
/// password in its errors; the URL is not in them either).
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_string(),
        },
        sqlx::Error::PoolTimedOut => "no connection to the store within the timeout".to_string(),
        other => other.to_string(),
    }
}

/// One event waiting for the writer, and who waits for its commit.
struct Pending {
    entry: Arc<Entry>,
    done: oneshot::Sender<Recorded>,
}

/// An event and its JSON line if there is a JSON-lines sink. The exchange holds the entry
/// too: if the writer has not taken it into a batch by the store's timeout, the exchange
/// takes it back, fails, and appends the line of its failure itself (see
/// [`AuditStore::record`]).
struct Entry {
    event: AuditEvent,
    line: Option<Vec<u8>>,
    /// Set by whoever takes the event: the writer into a batch, or the exchange giving up.
    claimed: AtomicBool,
}

impl Entry {
    /// Claim the line; `false` if the other side already has.
    fn claim(&self) -> bool {
        !self.claimed.swap(true, Ordering::AcqRel)
    }
}

/// The exchanges under way whose events the writer will get, and the signal that none is
/// left: what the writer waits for before a commit, so that concurrent exchanges share it.
#[derive(Debug, Default)]
struct Gathering {
    expected: AtomicUsize,
    /// Signalled when none is left, for PostgreSQL's writer task.
    all_in: Notify,
    /// SQLite's writer thread, unparked when none is left.
    thread: OnceLock<std::thread::Thread>,
}

impl Gathering {
    /// Wait until every event expected has been queued, or [`GATHER`] is up.
    async fn wait(&self) {
        let deadline = tokio::time::Instant::now() + GATHER;
        while self.expected.load(Ordering::Acquire) > 0 {
            // A signal given before this wait is kept by `Notify`: none is lost, and a
            // stale one only turns the loop once more.
            if tokio::time::timeout_at(deadline, self.all_in.notified()).await.is_err() {
                return;
            }
        }
    }

    /// [`Gathering::wait`] on SQLite's writer thread, which parks: no runtime, no timer.
    fn wait_parked(&self) {
        let deadline = Instant::now() + GATHER;
        while self.expected.load(Ordering::Acquire) > 0 {
            // As with `Notify`, an unpark before the park is kept, and a stale one only
            // turns the loop once more.
            match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => std::thread::park_timeout(left),
                _ => return,
            }
        }
    }

    fn none_left(&self) {
        self.all_in.notify_one();
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }
}

/// An exchange under way whose event the store's writer expects ([`AuditStore::expect`]);
/// handed to [`AuditStore::record`], which lets go of it once the event is queued.
/// Dropped, it stops being waited for, whether or not an event came.
#[derive(Debug, Default)]
pub struct Expected(Option<Arc<Gathering>>);

impl Drop for Expected {
    fn drop(&mut self) {
        if let Some(gathering) = self.0.take()
            && gathering.expected.fetch_sub(1, Ordering::AcqRel) == 1
        {
            gathering.none_left();
        }
    }
}

/// Queued events up to the batch's cap, without waiting.
fn drain(queue: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>) {
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(pending) => batch.push(pending),
            Err(_) => return,
        }
    }
}

/// The SQL store. Cloning is cheap; every clone writes through the same writer task.
#[derive(Clone)]
pub struct AuditStore {
    pool: AnyPool,
    backend: Backend,
    location: String,
    queue: mpsc::Sender<Pending>,
    gathering: Arc<Gathering>,
    timeout: Duration,
    runtime: tokio::runtime::Handle,
    lines: Option<Lines>,
}

impl fmt::Debug for AuditStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditStore").field("location", &self.location).finish_non_exhaustive()
    }
}

/// The store's URL: the configured one, or SQLite in the config's `data_dir`. A relative
/// SQLite path is relative to the config file, like every other path in it.
pub fn store_url(config: &crate::config::LoadedConfig) -> SecretUrl {
    let store = config.config.audit().store;
    match store.url {
        None => SecretUrl::new(format!("sqlite://{}", config.data_dir().join("audit.db").display())),
        Some(url) if url.scheme() == "sqlite" => {
            let (path, query) = sqlite_path(url.expose());
            if path.is_absolute() {
                url
            } else {
                let absolute = config.base_dir.join(path);
                SecretUrl::new(format!(
                    "sqlite://{}{}",
                    absolute.display(),
                    query.map(|q| format!("?{q}")).unwrap_or_default()
                ))
            }
        }
        Some(url) => url,
    }
}

/// The file path and query of a `sqlite://` URL.
fn sqlite_path(url: &str) -> (&Path, Option<&str>) {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    match rest.split_once('?') {
        Some((path, query)) => (Path::new(path), Some(query)),
        None => (Path::new(rest), None),
    }
}

/// Make the SQLite file and its directory private before SQLite opens it (its WAL and
/// shared-memory files take the database file's mode).
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Which database `url` names, and where it is with its password redacted. Installs the
/// drivers on first use.
fn backend_of(url: &SecretUrl) -> Result<(Backend, String), StoreError> {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
    let location = url.redacted();
    match url.scheme().as_str() {
        "sqlite" => Ok((Backend::Sqlite, location)),
        "postgres" | "postgresql" => Ok((Backend::Postgres, location)),
        other => Err(StoreError::Open { location, message: format!("unsupported scheme {other}://") }),
    }
}

impl AuditStore {
    /// Connect to `url` (see [`store_url`]), run the migrations and start the writer.
    /// `create`: make a missing SQLite file (the broker does; read-only tools do not).
    pub async fn open(
        config: &AuditStoreConfig,
        url: &SecretUrl,
        metrics: Arc<Metrics>,
        create: bool,
    ) -> Result<Self, StoreError> {
        Self::open_with_lines(config, url, metrics, create, None).await
    }

    /// [`AuditStore::open`], with the JSON lines that follow each commit.
    pub async fn open_with_lines(
        config: &AuditStoreConfig,
        url: &SecretUrl,
        metrics: Arc<Metrics>,
        create: bool,
        lines: Option<Lines>,
    ) -> Result<Self, StoreError> {
        let (backend, location) = backend_of(url)?;
        let open_error = |message: String| StoreError::Open { location: location.clone(), message };
        let mut connect = url.expose().to_string();
        if backend == Backend::Sqlite {
            let (path, query) = sqlite_path(url.expose());
            if create {
                create_private(path).map_err(|e| open_error(e.to_string()))?;
            } else if !path.exists() {
                return Err(open_error("no such file: has the broker run with this config?".to_string()));
            }
            if query.is_none() {
                connect.push_str(if create { "?mode=rwc" } else { "?mode=rw" });
            }
        }
        let options: AnyConnectOptions =
            connect.parse().map_err(|e: sqlx::Error| open_error(describe(&e)))?;
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        for pragma in SQLITE_PRAGMAS.iter().chain(&["PRAGMA busy_timeout = 5000"]) {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| open_error(describe(&e)))?;
        migrate(&pool, backend).await.map_err(|e| open_error(describe(&e)))?;

        let (queue, pending) = mpsc::channel(QUEUE);
        let gathering = Arc::new(Gathering::default());
        let writer = Writer {
            pool: pool.clone(),
            backend,
            metrics,
            timeout: config.timeout,
            lines: lines.clone(),
            gathering: Arc::clone(&gathering),
        };
        match backend {
            Backend::Sqlite => {
                let (path, query) = sqlite_path(url.expose());
                let file = sqlite_writer::File::new(path, query);
                sqlite_writer::spawn(writer, file, pending).map_err(|e| open_error(e.to_string()))?;
            }
            Backend::Postgres => {
                tokio::spawn(writer.run(pending));
            }
        }
        let runtime = tokio::runtime::Handle::current();
        Ok(Self { pool, backend, location, queue, gathering, timeout: config.timeout, runtime, lines })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the store is, password redacted.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Store one event; returns once it is committed.
    pub async fn write(&self, event: &AuditEvent) -> Result<(), String> {
        self.record(event.clone(), None, Expected::default()).await.stored
    }

    /// Say that an exchange has started whose event will be recorded: until the event is
    /// queued (or the returned value dropped), the writer waits for it before a commit,
    /// at most [`GATHER`].
    pub fn expect(&self) -> Expected {
        self.gathering.expected.fetch_add(1, Ordering::AcqRel);
        Expected(Some(Arc::clone(&self.gathering)))
    }

    /// Store one event and append its JSON line `line` (with the JSON-lines sink the store
    /// was opened with); returns once both are done. An event still queued when the
    /// store's timeout is up is taken back: not committed, and the line of its failure
    /// appended here. One the writer has taken into a batch shares that batch's outcome,
    /// which its commit's own timeout bounds, so the store never holds the event of an
    /// exchange answered as failed by its timeout.
    pub async fn record(&self, event: AuditEvent, line: Option<Vec<u8>>, expected: Expected) -> Recorded {
        let stopped = || "the audit writer has stopped".to_string();
        let (done, mut answer) = oneshot::channel();
        let entry = Arc::new(Entry { event, line, claimed: AtomicBool::new(false) });
        let deadline = tokio::time::Instant::now() + self.timeout;
        let queued = match tokio::time::timeout_at(deadline, self.queue.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(Pending { entry: Arc::clone(&entry), done });
                Ok(())
            }
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(late(self.timeout)),
        };
        // Queued or not, the writer has nothing more to wait for from this exchange.
        drop(expected);
        if let Err(e) = queued {
            return self.refused(&entry, e);
        }
        if let Ok(answer) = tokio::time::timeout_at(deadline, &mut answer).await {
            return answer.unwrap_or_else(|_| Recorded { stored: Err(stopped()), line: Ok(()) });
        }
        if entry.claim() {
            return self.refused(&entry, late(self.timeout));
        }
        // In a commit: its outcome is this exchange's.
        answer.await.unwrap_or_else(|_| Recorded { stored: Err(stopped()), line: Ok(()) })
    }

    /// The outcome of an event whose exchange stops waiting for the writer: not stored (as
    /// far as it knows), and the line of its failure appended here.
    fn refused(&self, entry: &Entry, error: String) -> Recorded {
        let stored = Err(error);
        let line = match (&self.lines, &entry.line) {
            (Some(lines), Some(line)) => lines.append(&lines.final_line(&entry.event, line, &stored)),
            _ => Ok(()),
        };
        Recorded { stored, line }
    }

    /// Audit events, newest first, one page at a time.
    pub async fn events(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let (query, backend) = (query.clone(), self.backend);
        self.on_store_runtime(move |pool| async move { events(&pool, backend, &query).await }).await
    }

    /// The workload directory, most recently seen first.
    pub async fn workloads(&self, query: &WorkloadQuery) -> Result<Vec<Workload>, StoreError> {
        let (query, backend) = (query.clone(), self.backend);
        self.on_store_runtime(move |pool| async move { workloads(&pool, backend, &query).await }).await
    }

    /// Run a query on the runtime the store was opened on. Connections are sockets of
    /// that runtime; one opened on an HTTP worker's runtime would die with the worker.
    async fn on_store_runtime<T, F>(&self, query: impl FnOnce(AnyPool) -> F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.runtime
            .spawn(query(self.pool.clone()))
            .await
            .map_err(|e| StoreError::Query(format!("the query task failed: {e}")))?
    }
}

/// The failure of an exchange that stopped waiting for the store.
fn late(timeout: Duration) -> String {
    format!("not committed within {timeout:?}")
}

/// See [`AuditStore::events`].
async fn events(pool: &AnyPool, backend: Backend, query: &EventQuery) -> Result<EventPage, StoreError> {
    let limit = query.limit.clamp(1, MAX_PAGE);
    let rows = events_sql(backend, query, limit).fetch_all(pool).await?;
    let mut events = rows.iter().map(read_event).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if events.len() > limit as usize {
        events.truncate(limit as usize);
        events.last().and_then(|e| {
            let event_id = e.event_id.clone()?;
            Some(Cursor { time_ms: e.time_ms, event_id }.to_string())
        })
    } else {
        None
    };
    Ok(EventPage { events, next_cursor })
}

/// The query of a page of [`events`], one more than `limit` to tell whether there are more.
fn events_sql<'a>(backend: Backend, query: &'a EventQuery, limit: u32) -> Sql<'a> {
    let mut sql = Sql::new(
        backend,
        &format!("SELECT {} FROM tessera_audit_events WHERE 1 = 1", EVENT_COLUMNS.join(", ")),
    );
    if let Some(since) = query.since_ms {
        sql.and("time_ms >=", Param::Int(since));
    }
    if let Some(until) = query.until_ms {
        sql.and("time_ms <", Param::Int(until));
    }
    if let Some(identity) = &query.identity {
        sql.and("identity_id =", Param::Text(Cow::Borrowed(identity)));
    }
    if let Some(target) = &query.target {
        sql.and("target =", Param::Text(Cow::Borrowed(target)));
    }
    if let Some(source) = &query.source {
        sql.and("source =", Param::Text(Cow::Borrowed(source)));
    }
    if let Some(decision) = &query.decision {
        sql.and("decision =", Param::Text(Cow::Borrowed(decision)));
        if decision != Decision::Allow.as_str() {
            // The condition of the index of refused events, word for word, which is how
            // SQLite knows it may use that index.
            sql.text.push_str(" AND decision <> 'allow'");
        }
    }
    if let Some(fingerprint) = &query.issued_token_fingerprint {
        sql.issued_token(fingerprint);
    }
    if let Some(cursor) = &query.cursor {
        let time = sql.param(Param::Int(cursor.time_ms));
        let time_again = sql.param(Param::Int(cursor.time_ms));
        let id = sql.param(Param::Text(Cow::Borrowed(&cursor.event_id)));
        sql.text
            .push_str(&format!(" AND (time_ms < {time} OR (time_ms = {time_again} AND event_id < {id}))"));
    }
    let fetch = sql.param(Param::Int(i64::from(limit) + 1));
    sql.text.push_str(&format!(" ORDER BY time_ms DESC, event_id DESC LIMIT {fetch}"));
    sql
}

/// See [`AuditStore::workloads`].
async fn workloads(
    pool: &AnyPool,
    backend: Backend,
    query: &WorkloadQuery,
) -> Result<Vec<Workload>, StoreError> {
    let mut sql = Sql::new(
        backend,
        "SELECT identity_id, source, identity, first_seen_ms, last_seen_ms, allowed, denied, errors \
         FROM tessera_workloads WHERE 1 = 1",
    );
    console::directory_filters(&mut sql, query);
    let limit = sql.param(Param::Int(i64::from(query.limit.clamp(1, MAX_PAGE))));
    sql.text.push_str(&format!(" ORDER BY last_seen_ms DESC, identity_id LIMIT {limit}"));
    let rows = sql.fetch_all(pool).await?;
    let mut workloads = Vec::with_capacity(rows.len());
    let mut index = BTreeMap::new();
    for row in &rows {
        let workload = workload(row)?;
        index.insert(workload.id.clone(), workloads.len());
        workloads.push(workload);
    }
    if workloads.is_empty() {
        return Ok(workloads);
    }
    let mut sql = Sql::new(
        backend,
        "SELECT identity_id, target, decision, reason, exchanges, first_ms, last_ms \
         FROM tessera_workload_outcomes WHERE identity_id IN (",
    );
    for (i, w) in workloads.iter().enumerate() {
        let p = sql.param(Param::Text(Cow::Borrowed(&w.id)));
        sql.text.push_str(if i == 0 { "" } else { ", " });
        sql.text.push_str(&p);
    }
    sql.text.push_str(") ORDER BY identity_id, last_ms DESC, target, reason");
    for row in sql.fetch_all(pool).await? {
        let id: String = get(&row, "identity_id")?;
        let outcome = Outcome {
            target: get(&row, "target")?,
            decision: get(&row, "decision")?,
            reason: get(&row, "reason")?,
            exchanges: get(&row, "exchanges")?,
            first: rfc3339_ms(get(&row, "first_ms")?),
            last: rfc3339_ms(get(&row, "last_ms")?),
        };
        if let Some(w) = index.get(&id).and_then(|&i| workloads.get_mut(i)) {
            if outcome.decision == "allow" {
                w.targets.push(outcome);
            } else {
                w.refusals.push(outcome);
            }
        }
    }
    Ok(workloads)
}

async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS tessera_schema (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let current: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM tessera_schema")
        .fetch_one(&mut *tx)
        .await?
        .try_get("v")?;
    // Dated by the wall clock, not an injected one: this records when the database's schema
    // changed, no decision hangs on it, and opening a store takes no clock.
    let now = tessera_adapters::Clock::now_millis(&tessera_adapters::SystemClock);
    for (version, statements) in MIGRATIONS.iter().filter(|(v, _)| Some(*v) > current) {
        let own = SQLITE_MIGRATIONS.iter().filter(|(v, _)| backend == Backend::Sqlite && v == version);
        for statement in statements.iter().chain(own.flat_map(|(_, own)| own.iter())) {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO tessera_schema (version, applied_ms) VALUES ($1, $2)")
            .bind(*version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, "audit store migrated");
    }
    tx.commit().await
}

/// The writer: commit whatever is queued, in one transaction, append the batch's JSON
/// lines in one write, and tell every waiter. On PostgreSQL it is a task that keeps one
/// connection of the pool for itself between commits (taking one from the pool per commit
/// costs a round trip to test it); on SQLite, a thread of its own with its own connection
/// ([`sqlite_writer`]). While a commit runs, the next batch gathers in the queue.
struct Writer {
    pool: AnyPool,
    backend: Backend,
    metrics: Arc<Metrics>,
    timeout: Duration,
    lines: Option<Lines>,
    gathering: Arc<Gathering>,
}

impl Writer {
    async fn run(self, mut queue: mpsc::Receiver<Pending>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut conn = None;
        let mut text = Vec::new();
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.gathering.wait().await;
            drain(&mut queue, &mut batch);
            if !self.take(&mut batch, queue.len()) {
                continue;
            }
            let started = Instant::now();
            let rows = rows(&batch);
            let mut result = commit(&self.pool, &mut conn, self.backend, &rows, self.timeout).await;
            if self.retry(&result, started) {
                let left = self.timeout.saturating_sub(started.elapsed());
                result = commit(&self.pool, &mut conn, self.backend, &rows, left).await;
            }
            drop(rows);
            self.answer(&mut batch, result, started, &mut text, queue.len());
        }
    }

    /// Keep the events of the batch still waited for; `false` if none is. The events of
    /// exchanges that stopped waiting are not committed; each has appended the line of its
    /// failure.
    fn take(&self, batch: &mut Vec<Pending>, queued: usize) -> bool {
        batch.retain(|p| p.entry.claim());
        self.metrics.audit_queue_depth(queued + batch.len());
        !batch.is_empty()
    }

    /// Whether a failed commit is tried once more, on a new connection (the server may
    /// have closed the last one): when half the timeout is left.
    fn retry(&self, result: &Result<(), String>, started: Instant) -> bool {
        result.is_err() && started.elapsed() < self.timeout / 2
    }

    /// Count the commit, append the batch's lines and answer its exchanges; `text` is the
    /// reused buffer of the lines.
    fn answer(
        &self,
        batch: &mut Vec<Pending>,
        stored: Result<(), String>,
        started: Instant,
        text: &mut Vec<u8>,
        queued: usize,
    ) {
        self.metrics.audit_commit(stored.is_ok(), batch.len(), started.elapsed());
        if let Err(e) = &stored {
            tracing::error!(events = batch.len(), error = %e, reason = "TS-AUD-STORE", "audit store commit failed");
        }
        let line = self.append_lines(batch, &stored, text);
        for pending in batch.drain(..) {
            let _ = pending.done.send(Recorded { stored: stored.clone(), line: line.clone() });
        }
        self.metrics.audit_queue_depth(queued);
    }

    /// Append the JSON line of every event of the batch, in queue order, in one write;
    /// `text` is the reused buffer.
    fn append_lines(
        &self,
        batch: &[Pending],
        stored: &Result<(), String>,
        text: &mut Vec<u8>,
    ) -> Result<(), LineError> {
        let Some(lines) = &self.lines else { return Ok(()) };
        text.clear();
        for Pending { entry, .. } in batch {
            if let Some(line) = &entry.line {
                text.extend_from_slice(&lines.final_line(&entry.event, line, stored));
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        let written = lines.append(text);
        // A large batch's buffer is not kept for the small ones after it.
        if text.capacity() > 1 << 20 {
            *text = Vec::new();
        }
        written
    }
}

/// The batch's events as the writer commits them, each with its id: time-ordered and
/// increasing in queue order, so events of one millisecond page in the order they were
/// committed, which is the order of their JSON lines.
fn rows(batch: &[Pending]) -> Vec<Row<'_>> {
    batch.iter().map(|p| Row { id: uuid::Uuid::now_v7().to_string(), event: &p.entry.event }).collect()
}

/// Commit `rows` in one transaction on the writer's connection `conn`, taking one from the
/// pool when it has none. After a failure the connection is closed, not reused: the next
/// attempt starts on a fresh one (which also ends a transaction left open).
async fn commit(
    pool: &AnyPool,
    conn: &mut Option<PoolConnection<sqlx::Any>>,
    backend: Backend,
    rows: &[Row<'_>],
    timeout: Duration,
) -> Result<(), String> {
    let work = async {
        let held = match conn {
            Some(held) => held,
            None => conn.insert(pool.acquire().await?),
        };
        let directory = Directory::fold(rows);
        // One statement, one round trip, in a transaction of its own: a statement that
        // outlives the timeout (a lock wait, say) is rolled back with the connection,
        // not committed after its exchanges were answered as failed.
        let statement = one_statement(backend, batch_statements(backend, rows, &directory));
        let mut tx = sqlx::Connection::begin(&mut **held).await?;
        statement.query().execute(&mut *tx).await?;
        tx.commit().await
    };
    let result = match tokio::time::timeout(timeout, work).await {
        Ok(result) => result.map_err(|e| describe(&e)),
        Err(_) => Err(format!("no commit within {timeout:?}")),
    };
    if result.is_err()
        && let Some(mut failed) = conn.take()
    {
        failed.close_on_drop();
    }
    result
}

/// Rows per INSERT statement: one parameter per column each, well under SQLite's and
/// PostgreSQL's parameter limits.
const INSERT_ROWS: usize = 128;

/// `statements` (INSERTs without `RETURNING`) as one: each a data-modifying `WITH` query
/// of a `SELECT 1`, which PostgreSQL runs exactly once each, atomically together, and in
/// one round trip. Their placeholders are numbered on from those before them.
fn one_statement<'a>(backend: Backend, statements: Vec<Sql<'a>>) -> Sql<'a> {
    let mut one = Sql::new(backend, "WITH ");
    for (i, statement) in statements.into_iter().enumerate() {
        if i > 0 {
            one.text.push_str(", ");
        }
        one.text.push_str(&format!("s{i} AS ("));
        let offset = one.params.len();
        let mut text = statement.text.chars().peekable();
        while let Some(c) = text.next() {
            one.text.push(c);
            if c != '$' {
                continue;
            }
            let mut n = 0usize;
            while let Some(digit) = text.peek().and_then(|d| d.to_digit(10)) {
                n = n * 10 + digit as usize;
                text.next();
            }
            one.text.push_str(&(n + offset).to_string());
        }
        one.text.push(')');
        one.params.extend(statement.params);
    }
    one.text.push_str(" SELECT 1");
    one
}

/// The statements that commit `rows` and fold them into the directory, in order, each
/// table's rows in as few statements as [`INSERT_ROWS`] allows (PostgreSQL's writer).
fn batch_statements<'a>(backend: Backend, rows: &'a [Row<'a>], directory: &Directory<'a>) -> Vec<Sql<'a>> {
    let mut statements: Vec<Sql<'a>> =
        rows.chunks(INSERT_ROWS).map(|chunk| insert_events(backend, chunk)).collect();
    statements.extend(directory_statements(backend, directory, usize::MAX));
    statements
}

/// The statements that fold a batch into the directory, in order, each of at most `most`
/// rows. SQLite's writer has one row per statement, so that its statements are always the
/// same few, prepared once and kept.
fn directory_statements<'a>(backend: Backend, directory: &Directory<'a>, most: usize) -> Vec<Sql<'a>> {
    let most = most.max(1);
    let mut statements = Vec::new();
    // Keys go in sorted order, so replicas committing at once lock rows in the same order
    // and never deadlock.
    let workloads: Vec<_> = directory.workloads.iter().collect();
    statements.extend(workloads.chunks(most).map(|chunk| upsert_workloads(backend, chunk)));
    let mut counts = |table: &str, keys: &[&str], rows: Vec<(Vec<Param<'a>>, &OutcomeFold)>| {
        statements.extend(rows.chunks(most).map(|chunk| upsert_counts(backend, table, keys, chunk)));
    };
    let outcomes = directory.outcomes.iter().map(|((id, target, decision, reason), o)| {
        (vec![text(id), text(target), text(decision), text(reason)], o)
    });
    counts("tessera_workload_outcomes", &["identity_id", "target", "decision", "reason"], outcomes.collect());
    let rules = directory.rules.iter().map(|((rule, decision), o)| (vec![text(rule), text(decision)], o));
    counts("tessera_rule_matches", &["rule", "decision"], rules.collect());
    let minutes = directory.minutes.iter().map(|((minute, source, target, decision, cache, verified), o)| {
        (
            vec![
                Param::Int(*minute),
                text(source),
                text(target),
                text(decision),
                text(cache),
                text(verified),
            ],
            o,
        )
    });
    counts(
        "tessera_minutes",
        &["minute", "source", "target", "decision", "cache", "verified"],
        minutes.collect(),
    );
    let hours = directory.hours.iter().map(|((hour, source, id, target, decision), o)| {
        (vec![Param::Int(*hour), text(source), text(id), text(target), text(decision)], o)
    });
    counts("tessera_hours", &["hour", "source", "identity_id", "target", "decision"], hours.collect());
    statements
}

/// An event as the writer commits it, with the id it gives it.
struct Row<'a> {
    id: String,
    event: &'a AuditEvent,
}

fn insert_events<'a>(backend: Backend, rows: &'a [Row<'a>]) -> Sql<'a> {
    let mut sql = Sql::new(
        backend,
        &format!("INSERT INTO tessera_audit_events ({}) VALUES ", EVENT_COLUMNS.join(", ")),
    );
    for (i, row) in rows.iter().enumerate() {
        sql.tuple(i, row.values());
    }
    sql
}

impl Row<'_> {
    /// The event's values in column order, its id first.
    fn values(&self) -> [Param<'_>; EVENT_COLUMNS.len()] {
        let mut values = event_values(self.event);
        if let Some(id) = values.first_mut() {
            // `event_id` is the first column.
            *id = Param::Text(Cow::Borrowed(&self.id));
        }
        values
    }
}

/// The columns of `tessera_audit_events` in table order (see [`MIGRATIONS`]), each with
/// the [`AuditEvent`] field it holds. The INSERT, the SELECT, an event's values and an
/// event read back are all made from this one list.
macro_rules! event_columns {
    ($($column:literal => $field:ident,)*) => {
        const EVENT_COLUMNS: &[&str] = &[$($column),*];

        /// An event's values, in column order.
        fn event_values(event: &AuditEvent) -> [Param<'_>; EVENT_COLUMNS.len()] {
            [$(Column::param(&event.$field)),*]
        }

        fn read_event(row: &AnyRow) -> Result<AuditEvent, StoreError> {
            Ok(AuditEvent { $($field: Column::read(row, $column)?),* })
        }
    };
}

event_columns! {
    "event_id" => event_id,
    "time_ms" => time_ms,
    "event_time" => time,
    "request_id" => request_id,
    "decision" => decision,
    "reason" => reason,
    "detail" => detail,
    "source" => source,
    "identity_id" => identity_id,
    "identity" => identity,
    "target" => target,
    "scope" => scope,
    "rule" => rule,
    "cache" => cache,
    "issued_ttl" => issued_ttl,
    "subject_token_fingerprint" => subject_token_fingerprint,
    "issued_token_fingerprint" => issued_token_fingerprint,
    "client_addr" => client_addr,
    "latency_ms" => latency_ms,
    "actor_id" => actor_id,
    "actor" => actor,
    "actor_token_fingerprint" => actor_token_fingerprint,
}

/// A type of [`AuditEvent`] field as a column: bound in an INSERT, read from a row.
trait Column: Sized {
    fn param(&self) -> Param<'_>;
    fn read(row: &AnyRow, column: &str) -> Result<Self, StoreError>;
}

impl Column for String {
    fn param(&self) -> Param<'_> {
        Param::Text(Cow::Borrowed(self))
    }

    fn read(row: &AnyRow, column: &str) -> Result<Self, StoreError> {
        get(row, column)
    }
}

impl Column for Option<String> {
    fn param(&self) -> Param<'_> {
        Param::OptText(self.as_deref().map(Cow::Borrowed))
    }

    fn read(row: &AnyRow, column: &str) -> Result<Self, StoreError> {
        get(row, column)
    }
}

impl Column for i64 {
    fn param(&self) -> Param<'_> {
        Param::Int(*self)
    }

    fn read(row: &AnyRow, column: &str) -> Result<Self, StoreError> {
        get(row, column)
    }
}

impl Column for Option<i64> {
    fn param(&self) -> Param<'_> {
        Param::OptInt(*self)
    }

    fn read(row: &AnyRow, column: &str) -> Result<Self, StoreError> {
        get(row, column)
    }
}

impl Column for f64 {
    fn param(&self) -> Param<'_> {
        Param::Float(*self)
    }

    fn read(row: &AnyRow, column: &str) -> Result<Self, StoreError> {
        get(row, column)
    }
}

impl Column for Decision {
    fn param(&self) -> Param<'_> {
        Param::Text(Cow::Borrowed(self.as_str()))
    }

    fn read(row: &AnyRow, column: &str) -> Result<Self, StoreError> {
        let name: String = get(row, column)?;
        Decision::parse(&name).ok_or_else(|| StoreError::Query(format!("unknown {column} `{name}`")))
    }
}

impl Column for Option<IdentityJson> {
    fn param(&self) -> Param<'_> {
        Param::OptText(self.as_ref().map(|i| Cow::Borrowed(i.as_str())))
    }

    fn read(row: &AnyRow, column: &str) -> Result<Self, StoreError> {
        let text: Option<String> = get(row, column)?;
        Ok(text.and_then(|t| IdentityJson::from_stored(&t)))
    }
}

/// A batch of events summed up for the directory. Events without a verified identity
/// belong to no workload and are left out.
#[derive(Default)]
struct Directory<'a> {
    workloads: BTreeMap<&'a str, WorkloadFold<'a>>,
    outcomes: BTreeMap<OutcomeKey<'a>, OutcomeFold>,
    /// (rule, decision): the events a rule decided.
    rules: BTreeMap<(&'a str, &'a str), OutcomeFold>,
    /// Every event, by minute and what the console's overview shows of it.
    minutes: BTreeMap<MinuteKey<'a>, OutcomeFold>,
    /// The events of verified workloads, by hour, workload, target and decision: the
    /// access graph's edges.
    hours: BTreeMap<HourKey<'a>, OutcomeFold>,
}

/// (hour since the epoch, source, workload, target, decision)
type HourKey<'a> = (i64, &'a str, &'a str, &'a str, &'a str);

/// (minute since the epoch, source or "", target, decision, cache or "", "yes" when the
/// identity was verified else "no")
type MinuteKey<'a> = (i64, &'a str, &'a str, &'a str, &'a str, &'a str);

/// (workload, target, decision, reason)
type OutcomeKey<'a> = (&'a str, &'a str, &'a str, &'a str);

/// One workload's events: its identity as last seen, and its exchanges by decision.
struct WorkloadFold<'a> {
    source: Cow<'a, str>,
    identity: &'a str,
    first: i64,
    last: i64,
    allowed: i64,
    denied: i64,
    errors: i64,
}

/// The exchanges of one workload, target, decision and reason (or of one rule and
/// decision).
struct OutcomeFold {
    exchanges: i64,
    first: i64,
    last: i64,
}

impl Default for OutcomeFold {
    fn default() -> Self {
        Self { exchanges: 0, first: i64::MAX, last: i64::MIN }
    }
}

impl OutcomeFold {
    fn add(&mut self, time: i64) {
        self.exchanges += 1;
        self.first = self.first.min(time);
        self.last = self.last.max(time);
    }
}

impl<'a> Directory<'a> {
    fn fold(rows: &[Row<'a>]) -> Self {
        let mut directory = Self::default();
        for &Row { event, .. } in rows {
            let minute = (
                event.time_ms.div_euclid(60_000),
                event.source.as_deref().unwrap_or(""),
                event.target.as_str(),
                event.decision.as_str(),
                event.cache.as_deref().unwrap_or(""),
                if event.identity_id.is_some() { "yes" } else { "no" },
            );
            directory.minutes.entry(minute).or_default().add(event.time_ms);
            if let Some(rule) = &event.rule {
                directory
                    .rules
                    .entry((rule.as_str(), event.decision.as_str()))
                    .or_default()
                    .add(event.time_ms);
            }
            if let (Some(id), Some(source)) = (&event.identity_id, &event.source) {
                let hour = (
                    event.time_ms.div_euclid(HOUR_MS),
                    source.as_str(),
                    id.as_str(),
                    event.target.as_str(),
                    event.decision.as_str(),
                );
                directory.hours.entry(hour).or_default().add(event.time_ms);
            }
            if let (Some(id), Some(actor)) = (&event.actor_id, &event.actor) {
                directory.seen_acting(id, actor.as_str(), event.time_ms);
            }
            let (Some(id), Some(identity), Some(source)) =
                (&event.identity_id, &event.identity, &event.source)
            else {
                continue;
            };
            let w = directory.seen(id, Cow::Borrowed(source), identity.as_str(), event.time_ms);
            match event.decision {
                Decision::Allow => w.allowed += 1,
                Decision::Deny => w.denied += 1,
                Decision::Error => w.errors += 1,
            }
            let key = (id.as_str(), event.target.as_str(), event.decision.as_str(), event.reason.as_str());
            directory.outcomes.entry(key).or_default().add(event.time_ms);
        }
        directory
    }

    /// The directory entry of workload `id`, seen at `time` as `identity` of `source`.
    fn seen(
        &mut self,
        id: &'a str,
        source: Cow<'a, str>,
        identity: &'a str,
        time: i64,
    ) -> &mut WorkloadFold<'a> {
        let w = self.workloads.entry(id).or_insert(WorkloadFold {
            source: source.clone(),
            identity,
            first: time,
            last: time,
            allowed: 0,
            denied: 0,
            errors: 0,
        });
        if time >= w.last {
            (w.source, w.identity, w.last) = (source, identity, time);
        }
        w.first = w.first.min(time);
        w
    }

    /// An actor (RFC 8693 delegation) is a workload seen too: the directory lists it, with
    /// when it was first and last seen, acting or not; its exchange counts stay those it
    /// made as the subject.
    fn seen_acting(&mut self, id: &'a str, identity: &'a str, time: i64) {
        #[derive(serde::Deserialize)]
        struct Source<'s> {
            #[serde(borrow)]
            source: Cow<'s, str>,
        }
        // The store wrote this JSON from a verified identity: it always has a source.
        if let Ok(Source { source }) = serde_json::from_str::<Source<'a>>(identity) {
            self.seen(id, source, identity, time);
        }
    }
}

fn upsert_workloads<'a>(backend: Backend, workloads: &[(&&'a str, &WorkloadFold<'a>)]) -> Sql<'a> {
    let mut sql = Sql::new(
        backend,
        "INSERT INTO tessera_workloads (identity_id, source, identity, first_seen_ms, last_seen_ms, allowed, \
         denied, errors) VALUES ",
    );
    for (i, &(&id, w)) in workloads.iter().enumerate() {
        sql.tuple(
            i,
            [
                Param::Text(Cow::Borrowed(id)),
                Param::Text(w.source.clone()),
                Param::Text(Cow::Borrowed(w.identity)),
                Param::Int(w.first),
                Param::Int(w.last),
                Param::Int(w.allowed),
                Param::Int(w.denied),
                Param::Int(w.errors),
            ],
        );
    }
    // Within SET, both databases read the row's values from before the update.
    sql.text.push_str(
        " ON CONFLICT (identity_id) DO UPDATE SET \
         source = CASE WHEN excluded.last_seen_ms >= tessera_workloads.last_seen_ms \
             THEN excluded.source ELSE tessera_workloads.source END, \
         identity = CASE WHEN excluded.last_seen_ms >= tessera_workloads.last_seen_ms \
             THEN excluded.identity ELSE tessera_workloads.identity END, \
         first_seen_ms = CASE WHEN excluded.first_seen_ms < tessera_workloads.first_seen_ms \
             THEN excluded.first_seen_ms ELSE tessera_workloads.first_seen_ms END, \
         last_seen_ms = CASE WHEN excluded.last_seen_ms > tessera_workloads.last_seen_ms \
             THEN excluded.last_seen_ms ELSE tessera_workloads.last_seen_ms END, \
         allowed = tessera_workloads.allowed + excluded.allowed, \
         denied = tessera_workloads.denied + excluded.denied, \
         errors = tessera_workloads.errors + excluded.errors",
    );
    sql
}

/// Add folded counts to a table keyed by `keys` with the columns `exchanges`, `first_ms`
/// and `last_ms`: one multi-row upsert, rows in the order given.
fn upsert_counts<'a>(
    backend: Backend,
    table: &str,
    keys: &[&str],
    rows: &[(Vec<Param<'a>>, &OutcomeFold)],
) -> Sql<'a> {
    let keys = keys.join(", ");
    let mut sql =
        Sql::new(backend, &format!("INSERT INTO {table} ({keys}, exchanges, first_ms, last_ms) VALUES "));
    for (i, (key, o)) in rows.iter().enumerate() {
        let counts = [Param::Int(o.exchanges), Param::Int(o.first), Param::Int(o.last)];
        sql.tuple(i, key.iter().cloned().chain(counts));
    }
    sql.text.push_str(&format!(
        " ON CONFLICT ({keys}) DO UPDATE SET \
         exchanges = {table}.exchanges + excluded.exchanges, \
         first_ms = CASE WHEN excluded.first_ms < {table}.first_ms THEN excluded.first_ms ELSE {table}.first_ms END, \
         last_ms = CASE WHEN excluded.last_ms > {table}.last_ms THEN excluded.last_ms ELSE {table}.last_ms END"
    ));
    sql
}

fn text<'a>(value: &&'a str) -> Param<'a> {
    Param::Text(Cow::Borrowed(value))
}

/// Largest page of events or workloads one query returns.
pub const MAX_PAGE: u32 = 1000;

/// Filters of `GET /v1/audit`; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub identity: Option<String>,
    pub target: Option<String>,
    pub source: Option<String>,
    pub decision: Option<String>,
    /// The event that issued a token, found by the token's fingerprint (`sha256:...`), as
    /// when a leaked token must be traced to its workload.
    pub issued_token_fingerprint: Option<String>,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

/// Where the next page starts: after the last event of this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub time_ms: i64,
    pub event_id: String,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.time_ms, self.event_id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || "cursor is not one this API returned".to_string();
        let (time, id) = s.split_once('.').ok_or_else(bad)?;
        let time_ms = time.parse().map_err(|_| bad())?;
        uuid::Uuid::parse_str(id).map_err(|_| bad())?;
        Ok(Self { time_ms, event_id: id.to_string() })
    }
}

/// One page of events and where the next starts (`None`: this was the last).
#[derive(Debug, Serialize)]
pub struct EventPage {
    pub events: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

/// Filters of `GET /v1/workloads` and of the console's directory; all optional, combined
/// with AND.
#[derive(Debug, Clone, Default)]
pub struct WorkloadQuery {
    pub source: Option<String>,
    pub identity: Option<String>,
    pub seen_since_ms: Option<i64>,
    /// Part of the identity id, anywhere in it.
    pub search: Option<String>,
    /// An attribute and its exact value (`oidc.team`, `payments`).
    pub attribute: Option<(String, String)>,
    /// Workloads with at least one exchange of this decision (`allow`, `deny`, `error`).
    pub decision: Option<String>,
    pub limit: u32,
    /// Where the page starts: after this workload in the directory's order.
    pub cursor: Option<WorkloadCursor>,
}

/// A place in the directory's order (most recently seen first, then by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadCursor {
    pub last_seen_ms: i64,
    pub identity_id: String,
}

impl fmt::Display for WorkloadCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.last_seen_ms, self.identity_id)
    }
}

impl std::str::FromStr for WorkloadCursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || "cursor is not one this page returned".to_string();
        let (time, id) = s.split_once('.').ok_or_else(bad)?;
        let last_seen_ms = time.parse().map_err(|_| bad())?;
        if id.is_empty() {
            return Err(bad());
        }
        Ok(Self { last_seen_ms, identity_id: id.to_string() })
    }
}

/// One workload identity as the directory knows it.
#[derive(Debug, Serialize)]
pub struct Workload {
    pub id: String,
    pub source: String,
    pub first_seen: String,
    pub last_seen: String,
    /// The identity as last verified: normalized fields and attributes.
    pub identity: serde_json::Value,
    pub exchanges: Counts,
    /// Targets it obtained credentials for.
    pub targets: Vec<Outcome>,
    /// Exchanges refused (`deny`) or failed (`error`), by target and reason.
    pub refusals: Vec<Outcome>,
}

#[derive(Debug, Serialize)]
pub struct Counts {
    pub allow: i64,
    pub deny: i64,
    pub error: i64,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub target: String,
    pub decision: String,
    pub reason: String,
    pub exchanges: i64,
    pub first: String,
    pub last: String,
}

fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(|e| StoreError::query(&e))
}

fn json(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

pub(crate) fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn workload(row: &AnyRow) -> Result<Workload, StoreError> {
    Ok(Workload {
        id: get(row, "identity_id")?,
        source: get(row, "source")?,
        first_seen: rfc3339_ms(get(row, "first_seen_ms")?),
        last_seen: rfc3339_ms(get(row, "last_seen_ms")?),
        identity: json(get(row, "identity")?).unwrap_or_default(),
        exchanges: Counts {
            allow: get(row, "allowed")?,
            deny: get(row, "denied")?,
            error: get(row, "errors")?,
        },
        targets: Vec::new(),
        refusals: Vec::new(),
    })
}

/// A bound value, borrowed from what it binds where it can be. See [`Sql::param`] for the
/// placeholders.
#[derive(Debug, Clone)]
enum Param<'a> {
    Text(Cow<'a, str>),
    OptText(Option<Cow<'a, str>>),
    Int(i64),
    OptInt(Option<i64>),
    Float(f64),
}

/// SQL text with its parameters, in the order their placeholders appear in the text.
struct Sql<'a> {
    backend: Backend,
    text: String,
    params: Vec<Param<'a>>,
}

impl<'a> Sql<'a> {
    fn new(backend: Backend, text: &str) -> Self {
        Self { backend, text: text.to_string(), params: Vec::new() }
    }

    /// Add a parameter; returns its placeholder, which the caller writes into the text
    /// after every placeholder returned before it. PostgreSQL numbers them (`$n`); SQLite
    /// takes them in order (`?`): it looks a `$n` up by name among the statement's earlier
    /// ones, and a batch of events has thousands.
    fn param(&mut self, value: Param<'a>) -> String {
        self.params.push(value);
        match self.backend {
            Backend::Sqlite => "?".to_string(),
            Backend::Postgres => format!("${}", self.params.len()),
        }
    }

    /// ` AND <condition> $n`.
    fn and(&mut self, condition: &str, value: Param<'a>) {
        let p = self.param(value);
        self.text.push_str(&format!(" AND {condition} {p}"));
    }

    /// ` AND` the event issued the token of `fingerprint`. On SQLite, through the index of
    /// segments (migration 7 of [`SQLITE_MIGRATIONS`]): each segment from the first to the
    /// last is probed for the fingerprint's prefix, and the rows found are compared whole.
    fn issued_token(&mut self, fingerprint: &'a str) {
        self.and("issued_token_fingerprint =", Param::Text(Cow::Borrowed(fingerprint)));
        if self.backend == Backend::Sqlite {
            let prefix = self.param(Param::Text(Cow::Borrowed(fingerprint)));
            self.text.push_str(&format!(
                " AND rowid IN (WITH RECURSIVE segment(n) AS (\
                 SELECT MIN(issued_segment) FROM tessera_audit_events WHERE issued_segment IS NOT NULL \
                 UNION ALL SELECT n + 1 FROM segment WHERE n < (SELECT MAX(issued_segment) \
                 FROM tessera_audit_events WHERE issued_segment IS NOT NULL)) \
                 SELECT e.rowid FROM segment CROSS JOIN tessera_audit_events e \
                 WHERE e.issued_segment = segment.n \
                 AND substr(e.issued_token_fingerprint, 8, 12) = substr({prefix}, 8, 12))"
            ));
        }
    }

    /// One `(…)` of a multi-row VALUES list; the `i`-th.
    fn tuple(&mut self, i: usize, values: impl IntoIterator<Item = Param<'a>>) {
        if i > 0 {
            self.text.push_str(", ");
        }
        self.text.push('(');
        for (j, value) in values.into_iter().enumerate() {
            let p = self.param(value);
            if j > 0 {
                self.text.push_str(", ");
            }
            self.text.push_str(&p);
        }
        self.text.push(')');
    }

    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        // Not prepared and kept: batch statements differ by their row count.
        let mut query = sqlx::query(&self.text).persistent(false);
        for param in &self.params {
            query = match param {
                Param::Text(v) => query.bind(v.as_ref()),
                Param::OptText(v) => query.bind(v.as_deref()),
                Param::Int(v) => query.bind(*v),
                Param::OptInt(v) => query.bind(*v),
                Param::Float(v) => query.bind(*v),
            };
        }
        query
    }

    async fn fetch_all(&self, pool: &AnyPool) -> Result<Vec<AnyRow>, StoreError> {
        self.query().fetch_all(pool).await.map_err(|e| StoreError::query(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_wrote_and_refuses_anything_else() {
        let cursor = Cursor { time_ms: 1_790_000_000_123, event_id: uuid::Uuid::new_v4().to_string() };
        assert_eq!(cursor.to_string().parse::<Cursor>().unwrap(), cursor);
        assert!("1790000000123".parse::<Cursor>().is_err());
        assert!("abc.5b0e4a3e-0000-4000-8000-000000000000".parse::<Cursor>().is_err());
        assert!("1.not-a-uuid".parse::<Cursor>().is_err());
    }

    #[test]
    fn parameters_are_numbered_in_order_across_tuples() {
        let build = |backend| {
            let mut sql = Sql::new(backend, "INSERT INTO t (a, b) VALUES ");
            sql.tuple(0, [Param::Int(1), Param::Text("x".into())]);
            sql.tuple(1, [Param::Int(2), Param::OptText(None)]);
            sql.and("c =", Param::Float(1.5));
            assert_eq!(sql.params.len(), 5);
            sql.text
        };
        assert_eq!(build(Backend::Postgres), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) AND c = $5");
        assert_eq!(build(Backend::Sqlite), "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) AND c = ?");
    }

    #[test]
    fn statements_made_one_number_their_placeholders_on() {
        let statement = |table: &str, values: [i64; 2]| {
            let mut sql = Sql::new(Backend::Postgres, &format!("INSERT INTO {table} (a, b) VALUES "));
            sql.tuple(0, values.map(Param::Int));
            sql.text.push_str(" ON CONFLICT (a) DO UPDATE SET b = excluded.b");
            sql
        };
        let one = one_statement(Backend::Postgres, vec![statement("t", [1, 2]), statement("u", [3, 4])]);
        assert_eq!(
            one.text,
            "WITH s0 AS (INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT (a) DO UPDATE SET b = excluded.b), \
             s1 AS (INSERT INTO u (a, b) VALUES ($3, $4) ON CONFLICT (a) DO UPDATE SET b = excluded.b) SELECT 1"
        );
        let values: Vec<i64> = one
            .params
            .iter()
            .map(|p| if let Param::Int(v) = p { *v } else { panic!("an integer") })
            .collect();
        assert_eq!(values, [1, 2, 3, 4]);
    }

    #[test]
    fn the_default_store_is_sqlite_in_the_data_directory_and_relative_paths_follow_the_config() {
        let config = |audit: &str| {
            let text = format!(
                "version: 1\nissuer: {{ url: 'https://tessera.example' }}\nsources:\n  - {{ name: corp, type: oidc, issuer: 'https://idp.example', audiences: [tessera] }}\ntargets:\n  - {{ name: api, type: jwt }}\n{audit}"
            );
            crate::config::parse(Path::new("/etc/tessera/broker.yaml"), &text).unwrap()
        };
        assert_eq!(store_url(&config("")).expose(), "sqlite:///etc/tessera/data/audit.db");
        assert_eq!(
            store_url(&config("data_dir: /var/lib/tessera\n")).expose(),
            "sqlite:///var/lib/tessera/audit.db"
        );
        let relative = config("audit:\n  store:\n    url: sqlite://state/audit.db?mode=rwc\n");
        assert_eq!(store_url(&relative).expose(), "sqlite:///etc/tessera/state/audit.db?mode=rwc");
        let absolute = config("audit:\n  store:\n    url: sqlite:///srv/audit.db\n");
        assert_eq!(store_url(&absolute).expose(), "sqlite:///srv/audit.db");
        let pg = config("audit:\n  store:\n    url: postgres://u:p@db.internal/tessera\n");
        assert_eq!(store_url(&pg).expose(), "postgres://u:p@db.internal/tessera");
    }

    pub(super) async fn sqlite_store(dir: &Path) -> AuditStore {
        let url = SecretUrl::new(format!("sqlite://{}", dir.join("audit.db").display()));
        AuditStore::open(&AuditStoreConfig::default(), &url, Arc::new(Metrics::new()), true).await.unwrap()
    }

    #[tokio::test]
    async fn the_column_table_names_the_migrated_columns_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let rows = sqlx::query("SELECT name FROM pragma_table_info('tessera_audit_events') ORDER BY cid")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let columns: Vec<String> = rows.iter().map(|row| row.try_get("name").unwrap()).collect();
        // Then the segment of SQLite's index of issued tokens, which is never read back.
        assert_eq!(columns[..EVENT_COLUMNS.len()], *EVENT_COLUMNS);
        assert_eq!(columns[EVENT_COLUMNS.len()..], ["issued_segment"]);
    }

    /// The writer waits only for exchanges still to queue their events: one that queued
    /// it, was refused, or ended without one is no longer counted.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_exchange_is_waited_for_until_its_event_is_queued_or_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let expected = || store.gathering.expected.load(Ordering::Acquire);
        let (first, second) = (store.expect(), store.expect());
        assert_eq!(expected(), 2);
        let recorded = store.record(crate::audit::tests::allowed_event(), None, first).await;
        assert!(recorded.stored.is_ok());
        assert_eq!(expected(), 1, "queued and committed");
        drop(second);
        assert_eq!(expected(), 0, "ended without an event");
        // With none under way the writer does not wait: no commit waits for a timeout.
        tokio::time::timeout(GATHER, store.gathering.wait()).await.unwrap();
    }

    /// An allowed event `i` whose issued token's fingerprint is `fingerprint`.
    fn issued_event(i: usize, fingerprint: String) -> AuditEvent {
        AuditEvent {
            request_id: format!("r{i}"),
            issued_token_fingerprint: Some(fingerprint),
            ..crate::audit::tests::allowed_event()
        }
    }

    /// A fingerprint of its own for each `i`, spread as SHA-256 digests are.
    fn fingerprint(i: usize) -> String {
        tessera_adapters::secret::fingerprint(&i.to_be_bytes())
    }

    /// The request ids of the events that issued the token of `fingerprint`.
    async fn traced(store: &AuditStore, fingerprint: &str) -> Vec<String> {
        let query = EventQuery {
            issued_token_fingerprint: Some(fingerprint.to_string()),
            limit: 10,
            ..Default::default()
        };
        store.events(&query).await.unwrap().events.into_iter().map(|e| e.request_id).collect()
    }

    /// On SQLite an issued token's event is found through the segments of its index, one
    /// probe each, never by reading every event; a fingerprint sharing the indexed prefix
    /// of another's is told apart by the whole.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_issued_token_is_traced_through_the_segments_of_its_index_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let mut events: Vec<AuditEvent> = (0..700).map(|i| issued_event(i, fingerprint(i))).collect();
        // The same first 12 hex digits as event 3's, then others.
        let twin = format!("{}{}", &fingerprint(3)[..19], &fingerprint(700)[19..]);
        events.push(issued_event(700, twin.clone()));
        events.push(crate::audit::tests::bare_event());
        for chunk in events.chunks(100) {
            let writes = chunk.iter().map(|e| store.write(e));
            assert!(futures::future::join_all(writes).await.iter().all(Result::is_ok));
        }
        for i in [0, 3, 255, 256, 511, 699] {
            assert_eq!(traced(&store, &fingerprint(i)).await, [format!("r{i}")], "event {i}");
        }
        assert_eq!(traced(&store, &twin).await, ["r700"]);
        assert!(traced(&store, &fingerprint(701)).await.is_empty());

        let segments: (i64, i64) = sqlx::query_as(
            "SELECT COUNT(DISTINCT issued_segment), SUM(issued_segment IS NULL) FROM tessera_audit_events",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(segments, (3, 1), "701 issued tokens in three segments; the refused event in none");

        let query = EventQuery { issued_token_fingerprint: Some(fingerprint(3)), ..Default::default() };
        let sql = events_sql(Backend::Sqlite, &query, 10);
        let explain = Sql { text: format!("EXPLAIN QUERY PLAN {}", sql.text), ..sql };
        let plan: Vec<String> = explain
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("detail").unwrap())
            .collect();
        assert!(
            plan.iter().any(|step| step
                .contains("USING INDEX tessera_audit_events_issued_segment (issued_segment=? AND <expr>=?)")),
            "{plan:#?}"
        );
        // Only the segment numbers are scanned; no event is read but those found.
        assert!(plan.iter().all(|step| !step.starts_with("SCAN") || step == "SCAN segment"), "{plan:#?}");
    }

    /// A store of schema 6, whose issued tokens were indexed by fingerprint, has its events
    /// placed in segments by the migration, and they are traced as the new ones are.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_issued_tokens_of_an_older_store_are_traced_after_its_migration() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        for i in 0..3 {
            store.write(&issued_event(i, fingerprint(i))).await.unwrap();
        }
        for statement in [
            "DROP INDEX tessera_audit_events_issued_segment",
            "ALTER TABLE tessera_audit_events DROP COLUMN issued_segment",
            "CREATE INDEX tessera_audit_events_issued ON tessera_audit_events (issued_token_fingerprint)",
            "DELETE FROM tessera_schema WHERE version >= 7",
        ] {
            sqlx::query(statement).execute(&store.pool).await.unwrap();
        }
        store.pool.close().await;
        drop(store);
        let store = sqlite_store(dir.path()).await;
        store.write(&issued_event(3, fingerprint(3))).await.unwrap();
        for i in 0..4 {
            assert_eq!(traced(&store, &fingerprint(i)).await, [format!("r{i}")], "event {i}");
        }
        let old: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'tessera_audit_events_issued'",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(old, 0, "the index by fingerprint is gone");
    }

    /// `GET /v1/audit` answers with the page as serialized here: each event's fields as
    /// the JSON line has them, after the store's `event_id`.
    #[tokio::test]
    async fn events_read_back_as_get_v1_audit_shows_them() {
        use crate::audit::tests::{allowed_event, bare_event, event};
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        for written in [bare_event(), event(), allowed_event()] {
            store.write(&written).await.unwrap();
        }
        let page = store.events(&EventQuery { limit: 10, ..EventQuery::default() }).await.unwrap();
        let mut json = serde_json::to_string(&page).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for (i, event) in value["events"].as_array().unwrap().iter().enumerate() {
            json = json.replace(event["event_id"].as_str().unwrap(), &format!("id-{i}"));
        }
        assert_eq!(
            json,
            concat!(
                r#"{"events":[{"event_id":"id-0","time":"2026-11-23T08:00:01Z","request_id":"r2","#,
                r#""decision":"allow","reason":"TS-OK","source":"corp","#,
                r#""identity":{"attributes":{"k8s.pod":"api-7d","oidc.team":"pay"},"#,
                r#""expires_at":1795424400,"id":"oidc://corp/svc-payments","instance":"api-7d","#,
                r#""issuer":"https://idp.example","name":"api","namespace":"payments","#,
                r#""provider":"oidc","region":"eu-west-1","source":"corp","#,
                r#""subject":"svc-payments","tenant":"acme"},"target":"aws-prod","#,
                r#""scope":"arn:aws:iam::123456789012:role/reader","rule":"payments-read","#,
                r#""cache":"miss","issued_ttl":900,"subject_token_fingerprint":"sha256:01","#,
                r#""issued_token_fingerprint":"sha256:02","client_addr":"10.0.0.7","#,
                r#""latency_ms":2.25},{"event_id":"id-1","time":"2026-11-23T08:00:00Z","#,
                r#""request_id":"r1","decision":"deny","reason":"TS-SRC-EXPIRED","#,
                r#""detail":"token has expired","source":"corp","target":"api","#,
                r#""subject_token_fingerprint":"sha256:00","client_addr":"127.0.0.1","#,
                r#""latency_ms":1.5},{"event_id":"id-2","time":"2026-11-23T08:00:00Z","#,
                r#""request_id":"r1","decision":"deny","reason":"TS-SRC-MALFORMED","target":"api","#,
                r#""subject_token_fingerprint":"sha256:00","latency_ms":0.5}],"next_cursor":null}"#,
            )
        );
    }

    #[tokio::test]
    async fn the_embedded_store_is_private_to_the_broker() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data/audit.db");
        let url = SecretUrl::new(format!("sqlite://{}", db.display()));
        let store = AuditStore::open(&AuditStoreConfig::default(), &url, Arc::new(Metrics::new()), true)
            .await
            .unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(db.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.path().join("data/audit.db-wal")), 0o600);
    }
}
