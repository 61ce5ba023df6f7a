//! `tessera agent exec -- <command>`: run a command with a PostgreSQL login from one of
//! the agent config's `postgres` entries in its environment, where libpq and the clients
//! built on it (psql, psycopg, ...) read it: `PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`,
//! `PGPASSWORD`.
//!
//! A process's environment cannot change once it runs, so a command that outlives its
//! login is restarted with a new one when `--restart-on-refresh` is given (the agent's
//! `refresh` policy says when; the command gets `SIGTERM`, then `SIGKILL` after
//! [`STOP_GRACE`]); without it, the command keeps the login it started with, whose open
//! sessions last but which takes no new connection once it expires. The exit status is
//! the command's.

use std::ffi::OsString;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use tessera_adapters::Clock;
use tokio::process::{Child, Command};

use crate::AgentError;
use crate::config::LoadedAgentConfig;
use crate::credentials::{BrokerClient, Issued, OutFile, Store, Want};

/// How long a restarted command has to exit after `SIGTERM`.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// `tessera agent exec` arguments (the agent config comes from `tessera agent --config`).
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// The `postgres` entry whose login the command gets, by target; needed when the agent
    /// config lists more than one.
    #[arg(long)]
    pub target: Option<String>,
    /// Renew the login before it expires and restart the command with the new one.
    #[arg(long)]
    pub restart_on_refresh: bool,
    /// The command and its arguments, after `--`.
    #[arg(required = true, last = true)]
    pub command: Vec<OsString>,
}

/// Run `args.command` with a login, until it exits; returns its exit code (128 + the
/// signal's number when a signal ended it).
pub async fn run(
    loaded: &LoadedAgentConfig,
    args: &ExecArgs,
    clock: Arc<dyn Clock>,
) -> Result<i32, AgentError> {
    let entry = pick(loaded, args.target.as_deref())?;
    let want = Want { target: entry.target.clone(), scope: entry.scope.clone() };
    let passfile = entry.passfile.as_ref().map(|p| OutFile::Passfile(loaded.resolve(p)));
    let store = Store::new(vec![(want.clone(), passfile)], Arc::clone(&clock), loaded.config.refresh());
    let client = crate::broker_client(loaded)?;
    let mut issued = obtain(&store, &client, &want).await?;
    let mut child = spawn(&args.command, &issued)?;
    let mut failures = 0;
    loop {
        let renew_at = if failures == 0 { store.refresh_at(&issued) } else { store.now() };
        let pause = if failures == 0 {
            Duration::ZERO
        } else {
            crate::credentials::backoff(&store.refresh, failures)
        };
        tokio::select! {
            status = child.wait() => return Ok(exit_code(status?)),
            () = async {
                tokio::time::sleep(pause).await;
                crate::credentials::wait_until(clock.as_ref(), renew_at, Duration::ZERO).await;
            }, if args.restart_on_refresh => {
                match obtain(&store, &client, &want).await {
                    Ok(new) => {
                        failures = 0;
                        stop(&mut child).await?;
                        issued = new;
                        child = spawn(&args.command, &issued)?;
                        tracing::info!(target_name = %want.target, "command restarted with a new login");
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(target_name = %want.target, error = %e, failures, "login not renewed; the command keeps the current one");
                    }
                }
            }
        }
    }
}

/// The `postgres` entry for `target`, or the only one.
fn pick<'a>(
    loaded: &'a LoadedAgentConfig,
    target: Option<&str>,
) -> Result<&'a crate::config::PostgresConfig, AgentError> {
    let entries: Vec<_> = loaded
        .config
        .postgres
        .iter()
        .map(|e| &e.value)
        .filter(|e| target.is_none_or(|t| e.target == t))
        .collect();
    match entries.as_slice() {
        [one] => Ok(one),
        [] => Err(AgentError::Exec(match target {
            Some(t) => format!("the agent config has no `postgres` entry for target `{t}`"),
            None => "the agent config has no `postgres` entry".into(),
        })),
        _ => Err(AgentError::Exec(
            "the agent config has several `postgres` entries: name one with --target".into(),
        )),
    }
}

/// One exchange; the login, with the password file written if the entry has one.
async fn obtain(store: &Store, client: &BrokerClient, want: &Want) -> Result<Issued, AgentError> {
    let issued = client.exchange(want, || store.now()).await.map_err(|e| AgentError::Exec(e.to_string()))?;
    if issued.postgres.is_none() {
        return Err(AgentError::Exec(format!("target `{}` issued no PostgreSQL login", want.target)));
    }
    if let Some(slot) = store.slots().next() {
        slot.write(&issued).await.map_err(AgentError::Exec)?;
    }
    Ok(issued)
}

/// The command with the login in its environment.
fn spawn(command: &[OsString], issued: &Issued) -> Result<Child, AgentError> {
    let (program, args) = command.split_first().ok_or_else(|| AgentError::Exec("no command given".into()))?;
    let login = issued.postgres.as_ref().ok_or_else(|| AgentError::Exec("no PostgreSQL login".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args).env("PGUSER", &login.username).env("PGPASSWORD", login.password.expose());
    if let Some(host) = &login.host {
        cmd.env("PGHOST", host);
    }
    if let Some(port) = login.port {
        cmd.env("PGPORT", port.to_string());
    }
    if let Some(database) = &login.database {
        cmd.env("PGDATABASE", database);
    }
    cmd.kill_on_drop(true)
        .spawn()
        .map_err(|e| AgentError::Exec(format!("cannot run {}: {e}", std::path::Path::new(program).display())))
}

/// `SIGTERM`, then `SIGKILL` if the command has not exited within [`STOP_GRACE`].
async fn stop(child: &mut Child) -> Result<(), AgentError> {
    let pid = child.id().and_then(|id| i32::try_from(id).ok()).and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
        child.start_kill()?;
        child.wait().await?;
    }
    Ok(())
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}
