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

/// A PostgreSQL cluster of the test's own that checks passwords (`scram-sha-256` for every
/// connection, local or TCP), unlike the machine's, which trusts loopback: a login only
/// works here with its password, and only until its `VALID UNTIL`. Made with the server's
/// `initdb` in a temporary directory (as the `postgres` system user when the tests run as
/// root, which `initdb` refuses), on a free loopback port; stopped and removed on drop.
/// It holds a database `app` with a schema `app` owned by `app_owner`, tables `orders`
/// (readable by the group `orders_read`) and `salaries` (readable by no group), and
/// `tessera_admin`, a `CREATEROLE` role (no superuser) that is a member of `app_owner`,
/// with password [`ADMIN_PASSWORD`](Self::ADMIN_PASSWORD).
#[derive(Debug)]
pub struct PasswordPostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    as_postgres: bool,
}

impl PasswordPostgres {
    pub const SUPERUSER_PASSWORD: &'static str = "superuser-pw-for-tests";
    pub const ADMIN_PASSWORD: &'static str = "admin-pw-for-tests";

    pub fn start() -> Self {
        let bin = Command::new("pg_config").arg("--bindir").output().expect("pg_config on PATH");
        let bin = std::path::PathBuf::from(String::from_utf8_lossy(&bin.stdout).trim());
        let dir = tempfile::tempdir().expect("tempdir");
        let as_postgres = psql_is_root();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, Self::SUPERUSER_PASSWORD).expect("pwfile");
        if as_postgres {
            run(Command::new("chown").args(["-R", "postgres"]).arg(dir.path()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let me = Self { port, dir, bin, as_postgres };
        let data = me.dir.path().join("data");
        me.pg(&[
            "initdb",
            "-D",
            &data.to_string_lossy(),
            "-A",
            "scram-sha-256",
            "-U",
            "postgres",
            "-N",
            "--pwfile",
            &pwfile.to_string_lossy(),
        ]);
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c password_encryption=scram-sha-256",
            me.dir.path().display()
        );
        let log = me.dir.path().join("log");
        me.pg(&[
            "pg_ctl",
            "-D",
            &data.to_string_lossy(),
            "-o",
            &options,
            "-l",
            &log.to_string_lossy(),
            "-w",
            "start",
        ]);
        for sql in [
            "CREATE DATABASE app".to_string(),
            format!("CREATE ROLE tessera_admin LOGIN CREATEROLE PASSWORD '{}'", Self::ADMIN_PASSWORD),
            "CREATE ROLE app_owner NOLOGIN".into(),
            "GRANT app_owner TO tessera_admin".into(),
            "CREATE ROLE orders_read NOLOGIN".into(),
        ] {
            me.superuser("postgres", &sql);
        }
        for sql in [
            "CREATE SCHEMA app AUTHORIZATION app_owner",
            "CREATE TABLE app.orders (id int, item text)",
            "INSERT INTO app.orders VALUES (1, 'tea')",
            "CREATE TABLE app.salaries (id int, amount int)",
            "ALTER TABLE app.orders OWNER TO app_owner",
            "ALTER TABLE app.salaries OWNER TO app_owner",
            "GRANT USAGE, CREATE ON SCHEMA app TO orders_read",
            "GRANT SELECT ON app.orders TO orders_read",
        ] {
            me.superuser("app", sql);
        }
        me
    }

    /// `postgres://tessera_admin:<password>@127.0.0.1:<port>/app`.
    pub fn admin_url(&self) -> String {
        format!("postgres://tessera_admin:{}@127.0.0.1:{}/app", Self::ADMIN_PASSWORD, self.port)
    }

    /// Run SQL as the superuser in `db`; returns what it printed (unaligned, tuples only).
    pub fn superuser(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-Atqc", sql])
            .env("PGPASSWORD", Self::SUPERUSER_PASSWORD)
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql `{sql}`:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn pg(&self, args: &[&str]) {
        let (program, rest) = args.split_first().expect("a program");
        run(self.server_command(program).args(rest));
    }

    /// One of the server's programs, run as the `postgres` system user when needed.
    fn server_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }
}

/// Whether the tests run as root (whom `initdb` refuses).
fn psql_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for PasswordPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .server_command("pg_ctl")
            .args(["-D", &data.to_string_lossy(), "-m", "immediate", "stop"])
            .output();
    }
}
