//! The machine's PostgreSQL (127.0.0.1:5432, trust auth, started by scripts/test.sh): a
//! database of the test's own, created empty and dropped when the test ends, driven with
//! `psql` so the test can also take it away from under a broker.

use std::process::Command;
use std::sync::OnceLock;

/// A database no other test uses.
#[derive(Debug)]
pub struct TestPostgres {
    pub name: String,
}

impl Default for TestPostgres {
    fn default() -> Self {
        Self::new()
    }
}

/// Run SQL in the `test` database; returns what it printed (unaligned, tuples only).
pub fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", "5432", "-d", "test", "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
        .output()
        .expect("psql (PostgreSQL's client) on PATH");
    assert!(out.status.success(), "psql `{sql}`:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The role the tests connect as (trust auth: whoever runs them).
fn user() -> &'static str {
    static USER: OnceLock<String> = OnceLock::new();
    USER.get_or_init(|| psql("SELECT current_user"))
}

impl TestPostgres {
    pub fn new() -> Self {
        let name = format!("tessera_test_{}", uuid::Uuid::new_v4().simple());
        psql(&format!("CREATE DATABASE {name}"));
        Self { name }
    }

    pub fn url(&self) -> String {
        format!("postgres://{}@127.0.0.1:5432/{}", user(), self.name)
    }

    /// The `store:` lines of a broker's `audit:` block.
    pub fn store_config(&self) -> String {
        format!("store:\n  url: {}\n", self.url())
    }

    /// Run SQL in this database.
    pub fn query(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", "5432", "-d", &self.name, "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql `{sql}`:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// An outage (`false`): no new connection is accepted and every open one is cut, as
    /// when the server goes away. `true` brings it back.
    pub fn set_available(&self, available: bool) {
        psql(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS {available}", self.name));
        if !available {
            psql(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                self.name
            ));
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", "5432", "-d", "test", "-Atqc"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .output();
    }
}
