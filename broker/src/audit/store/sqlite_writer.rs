//! SQLite's writer: a thread of its own with one connection to the store's file, whose few
//! statements (one row each) are prepared once and kept. A batch is one transaction,
//! `BEGIN IMMEDIATE` to `COMMIT` with `synchronous = FULL`, run on this thread: nothing
//! handed to a driver's worker thread and back per batch or per statement, and no SQL text
//! parsed per batch. The thread only commits: a task on the store's runtime appends each
//! committed batch's JSON lines and answers its exchanges, in commit order, while the
//! thread commits the next batch. So the exchanges of a batch are answered only after its
//! commit returned and its lines were appended, as with PostgreSQL's writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};
use tokio::sync::mpsc;

use super::{
    Backend, Directory, EVENT_COLUMNS, MAX_BATCH, Param, Pending, Row, SQLITE_PRAGMAS, Writer,
    directory_statements, drain, rows,
};

/// The statements the writer keeps prepared: `BEGIN`, `COMMIT` and one per table.
const STATEMENTS: usize = 16;

/// The store's file as the writer opens it: its path, and the query of the store's URL if
/// it has one (then opened as an SQLite URI, which reads the same `mode`, `cache`, `vfs`
/// and `immutable` parameters).
pub(super) struct File {
    path: PathBuf,
    query: Option<String>,
}

impl File {
    pub(super) fn new(path: &Path, query: Option<&str>) -> Self {
        Self { path: path.to_path_buf(), query: query.map(str::to_string) }
    }

    /// A connection with the store's settings (see [`super::AuditStore::open`]), whose
    /// lock waits end after `timeout`. The file exists: the store made and migrated it.
    fn open(&self, timeout: Duration) -> rusqlite::Result<Connection> {
        let flags =
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match &self.query {
            None => Connection::open_with_flags(&self.path, flags)?,
            Some(query) => Connection::open_with_flags(uri(&self.path, query), flags)?,
        };
        conn.busy_timeout(timeout)?;
        for pragma in SQLITE_PRAGMAS {
            // `journal_mode` answers with a row, the others with none.
            conn.query_row(pragma, [], |_| Ok(())).optional()?;
        }
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        Ok(conn)
    }
}

/// `path` and `query` as an SQLite URI. The file exists by now: `mode=rwc` asks no more
/// than `mode=rw` of it, and SQLite refuses a mode wider than the connection's flags.
fn uri(path: &Path, query: &str) -> String {
    let mut text = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => text.push_str("%25"),
            '?' => text.push_str("%3f"),
            '#' => text.push_str("%23"),
            c => text.push(c),
        }
    }
    let query: Vec<&str> =
        query.split('&').map(|pair| if pair == "mode=rwc" { "mode=rw" } else { pair }).collect();
    text.push('?');
    text.push_str(&query.join("&"));
    text
}

/// A batch the thread has committed (or failed to), for the task that answers it.
struct Committed {
    batch: Vec<Pending>,
    stored: Result<(), String>,
    started: Instant,
    queued: usize,
}

/// Start the writer's thread, which ends when every sender of `queue` is gone, and the task
/// that answers its batches (on the current runtime).
pub(super) fn spawn(writer: Writer, file: File, queue: mpsc::Receiver<Pending>) -> std::io::Result<()> {
    let writer = Arc::new(writer);
    let (committed, mut answer) = mpsc::unbounded_channel::<Committed>();
    let answering = Arc::clone(&writer);
    tokio::spawn(async move {
        let mut text = Vec::new();
        while let Some(Committed { mut batch, stored, started, queued }) = answer.recv().await {
            answering.answer(&mut batch, stored, started, &mut text, queued);
        }
    });
    std::thread::Builder::new()
        .name("tessera-audit".to_string())
        .spawn(move || run(&writer, &file, queue, &committed))?;
    Ok(())
}

fn run(
    writer: &Writer,
    file: &File,
    mut queue: mpsc::Receiver<Pending>,
    committed: &mpsc::UnboundedSender<Committed>,
) {
    // One writer thread per store: the only one to set it.
    let _ = writer.gathering.thread.set(std::thread::current());
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut conn = None;
    while queue.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        writer.gathering.wait_parked();
        drain(&mut queue, &mut batch);
        if !writer.take(&mut batch, queue.len()) {
            continue;
        }
        let started = Instant::now();
        let rows = rows(&batch);
        let mut stored = commit(&mut conn, file, &rows, writer.timeout);
        if writer.retry(&stored, started) {
            stored = commit(&mut conn, file, &rows, writer.timeout.saturating_sub(started.elapsed()));
        }
        drop(rows);
        let batch = std::mem::take(&mut batch);
        // Without the runtime no exchange waits any more: dropped, the batch tells any
        // that does that the writer stopped.
        if committed.send(Committed { batch, stored, started, queued: queue.len() }).is_err() {
            return;
        }
    }
}

/// The one-row INSERT of an event, with the segment of SQLite's index of issued tokens (see
/// `SQLITE_MIGRATIONS`) for an event that issued one: that of the row after the last. A
/// lookup probes every segment from the least to the greatest, so any value would be
/// found (after deletes or a `VACUUM` that renumbers rows too); this one keeps segments
/// near 256 rows.
static INSERT_EVENT: LazyLock<String> = LazyLock::new(|| {
    let values: Vec<String> = (1..=EVENT_COLUMNS.len()).map(|i| format!("?{i}")).collect();
    let issued = EVENT_COLUMNS.iter().position(|c| *c == "issued_token_fingerprint").unwrap_or(0) + 1;
    format!(
        "INSERT INTO tessera_audit_events ({}, issued_segment) VALUES ({}, CASE WHEN ?{issued} IS NULL \
         THEN NULL ELSE (IFNULL((SELECT MAX(rowid) FROM tessera_audit_events), 0) + 1) >> 8 END)",
        EVENT_COLUMNS.join(", "),
        values.join(", ")
    )
});

/// Commit `rows` in one transaction on `conn`, opening it when there is none. After a
/// failure the connection is closed (which also rolls back a transaction left open) and
/// the next attempt opens a new one. Lock waits end after `timeout`.
fn commit(
    conn: &mut Option<Connection>,
    file: &File,
    rows: &[Row<'_>],
    timeout: Duration,
) -> Result<(), String> {
    let held = match conn {
        Some(held) => held,
        None => conn.insert(file.open(timeout).map_err(|e| e.to_string())?),
    };
    let result = held.busy_timeout(timeout).and_then(|()| transaction(held, rows));
    if result.is_err() {
        *conn = None;
    }
    result.map_err(|e| e.to_string())
}

fn transaction(conn: &Connection, rows: &[Row<'_>]) -> rusqlite::Result<()> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let written = write(conn, rows).and_then(|()| conn.prepare_cached("COMMIT")?.execute([]));
    if written.is_err() && !conn.is_autocommit() {
        // Best effort: the connection is closed after a failure anyway.
        let _ = conn.execute_batch("ROLLBACK");
    }
    written.map(|_| ())
}

/// The batch's events, one prepared INSERT run once each, then its directory counts.
fn write(conn: &Connection, rows: &[Row<'_>]) -> rusqlite::Result<()> {
    if !rows.is_empty() {
        let mut insert = conn.prepare_cached(&INSERT_EVENT)?;
        for row in rows {
            insert.execute(rusqlite::params_from_iter(row.values()))?;
        }
    }
    for statement in directory_statements(Backend::Sqlite, &Directory::fold(rows), 1) {
        conn.prepare_cached(&statement.text)?.execute(rusqlite::params_from_iter(&statement.params))?;
    }
    Ok(())
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let value = match self {
            Param::Text(v) => ValueRef::Text(v.as_bytes()),
            Param::OptText(v) => v.as_deref().map_or(ValueRef::Null, |v| ValueRef::Text(v.as_bytes())),
            Param::Int(v) => ValueRef::Integer(*v),
            Param::OptInt(v) => v.map_or(ValueRef::Null, ValueRef::Integer),
            Param::Float(v) => ValueRef::Real(*v),
        };
        Ok(ToSqlOutput::Borrowed(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_url_with_a_query_opens_as_an_sqlite_uri_of_the_existing_file() {
        assert_eq!(uri(Path::new("/srv/audit.db"), "mode=rwc"), "file:/srv/audit.db?mode=rw");
        assert_eq!(
            uri(Path::new("/srv/a%b?#/audit.db"), "cache=private&mode=ro"),
            "file:/srv/a%25b%3f%23/audit.db?cache=private&mode=ro"
        );
    }
}
