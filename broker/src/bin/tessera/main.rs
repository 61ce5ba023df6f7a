//! The `tessera` command: a thin shell over the broker library and the `tessera-agent` crate.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use tessera_adapters::clock::format_rfc3339;
use tessera_adapters::{Clock, SystemClock};
use tessera_broker::http::admin_auth::AdminAuth;
use tessera_broker::mapping::MappingSet;
use tessera_broker::{Adapters, Broker, config, demo, issuer};

mod aws;
mod doctor;
mod mappings;
mod replay;
mod revoke;
mod trust;
mod workloads;

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version = concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("TESSERA_COMMIT"),
        ", built ",
        env!("TESSERA_BUILD_DATE"),
        ")"
    ),
    about = "Cross-cloud workload identity broker"
)]
struct Cli {
    /// Log format on standard error. Default: `json` for `serve` and `agent`, `text` for
    /// the commands people run by hand.
    #[arg(long, global = true, value_enum, env = "TESSERA_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

/// `--config`: the broker config file.
const CONFIG_HELP: &str = "The broker config file (broker.yaml)";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    #[command(after_help = "Example:\n  tessera serve --config /etc/tessera/broker.yaml")]
    Serve {
        #[arg(long, short, env = "TESSERA_CONFIG", help = CONFIG_HELP)]
        config: PathBuf,
    },
    /// Check a config file (and the mapping files it names) without serving.
    #[command(after_help = "Example:\n  tessera check --config /etc/tessera/broker.yaml")]
    Check {
        #[arg(long, short, env = "TESSERA_CONFIG", help = CONFIG_HELP)]
        config: PathBuf,
    },
    /// Check what breaks in production: the issuer URL serves discovery and a JWKS that
    /// match the local keys, every source's key set and target's endpoint is reachable,
    /// the store and Redis connect, key files are private, the clock agrees. Exits 1 when
    /// a check fails.
    #[command(after_help = "Example:\n  tessera doctor --config /etc/tessera/broker.yaml")]
    Doctor {
        #[arg(long, short, env = "TESSERA_CONFIG", help = CONFIG_HELP)]
        config: PathBuf,
    },
    /// Manage Tessera's signing keys.
    #[command(after_help = "Example:\n  tessera keys list --config /etc/tessera/broker.yaml")]
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check mapping files and explain decisions.
    #[command(after_help = "Example:\n  tessera mappings check --config /etc/tessera/broker.yaml")]
    Mappings {
        #[command(subcommand)]
        command: mappings::MappingsCommand,
    },
    /// Print the setup a target's platform needs to trust Tessera (an IAM OIDC provider
    /// and role trust policies, a workload identity pool, federated credentials), written
    /// from broker.yaml and the mapping rules that grant the target (docs/targets.md).
    #[command(after_help = "Example:\n  tessera trust aws-prod --config broker.yaml --format terraform")]
    Trust(trust::TrustArgs),
    /// Helpers for workloads on AWS.
    #[command(after_help = "Example:\n  tessera aws sign-request --server-id tessera.example.com")]
    Aws {
        #[command(subcommand)]
        command: aws::AwsCommand,
    },
    /// Run beside a workload: exchange its native credential at the broker and serve the
    /// results where unmodified AWS, Google and Azure SDKs look (docs/agent.md).
    #[command(after_help = "Example:\n  tessera agent --config /etc/tessera/agent.yaml")]
    Agent {
        /// The agent config file (agent.yaml; required).
        #[arg(long, short, env = "TESSERA_AGENT_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: Option<AgentCommand>,
    },
    /// The workload directory: every workload identity seen, from the audit store.
    #[command(after_help = "Example:\n  tessera workloads --config broker.yaml --source eks-prod --limit 20")]
    Workloads(workloads::WorkloadsArgs),
    /// Revoke workload identities, list and remove revocations, through a running broker's
    /// admin API (docs/revocation.md).
    #[command(
        after_help = "Example:\n  tessera revoke --admin-url http://127.0.0.1:8081 add --identity github://octo-org/payments --reason 'leaked token'"
    )]
    Revoke(revoke::RevokeArgs),
    /// Print AWS credentials from a running agent in the AWS `credential_process` format, or
    /// with `--kubernetes` a kubectl `ExecCredential` exchanged at the broker.
    #[command(
        after_help = "Example (in ~/.aws/config):\n  [default]\n  credential_process = tessera credential-process --token-file /var/run/tessera/aws-token"
    )]
    CredentialProcess(tessera_agent::credential_process::CredentialProcessArgs),
    /// Print a shell completion script for `tessera` (docs/operations.md says where each
    /// shell looks for one).
    #[command(after_help = "Example:\n  tessera completions bash > /etc/bash_completion.d/tessera")]
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page tessera(1), or write it and one page per command
    /// (tessera-serve(1), tessera-mappings-diff(1), ...) into a directory.
    #[command(after_help = "Example:\n  tessera man --dir /usr/local/share/man/man1")]
    Man {
        /// Write tessera.1 and tessera-*.1 into this directory instead of printing tessera.1.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Run a command with a PostgreSQL login from the config's `postgres` entries in its
    /// environment (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD); exits with its status.
    #[command(
        after_help = "Example:\n  tessera agent --config /etc/tessera/agent.yaml exec --target orders-db -- psql -c 'select 1'"
    )]
    Exec(tessera_agent::exec::ExecArgs),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create the key directory: signing keys for every configured algorithm (current and
    /// next) and the credential-cache key replicas share. Existing keys are kept. For
    /// filling a read-only volume (a Kubernetes Secret) before replicas start.
    #[command(after_help = "Example:\n  tessera keys init --config broker.yaml")]
    Init {
        #[arg(long, short, env = "TESSERA_CONFIG", help = CONFIG_HELP)]
        config: PathBuf,
    },
    /// Promote the published next key to signing, retire the current one (it stays
    /// published longer than the longest TTL it signed) and publish a new next key.
    #[command(after_help = "Example:\n  tessera keys rotate --config /etc/tessera/broker.yaml")]
    Rotate {
        #[arg(long, short, env = "TESSERA_CONFIG", help = CONFIG_HELP)]
        config: PathBuf,
    },
    /// List keys with their state and dates (never private material).
    #[command(after_help = "Example:\n  tessera keys list --config /etc/tessera/broker.yaml")]
    List {
        #[arg(long, short, env = "TESSERA_CONFIG", help = CONFIG_HELP)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tessera_adapters::process::set_build(tessera_broker::metrics::BUILD);
    let daemon = matches!(cli.command, Command::Serve { .. } | Command::Agent { command: None, .. });
    init_logging(cli.log_format.unwrap_or(if daemon { LogFormat::Json } else { LogFormat::Text }));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", plain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error as people read it: its message, then each cause the message does not already
/// say. Never a backtrace, whatever `RUST_BACKTRACE` says: these are the user's errors
/// (a bad config, an unreachable endpoint), not Tessera's bugs, which panic.
fn plain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(config).await,
            Command::Check { config } => check(config).await,
            Command::Doctor { config } => {
                if !doctor::run(&config).await? {
                    std::process::exit(1);
                }
                Ok(())
            }
            Command::Keys { command: KeysCommand::Init { config } } => init_keys(config),
            Command::Keys { command: KeysCommand::Rotate { config } } => rotate(config).await,
            Command::Keys { command: KeysCommand::List { config } } => list_keys(config),
            Command::Mappings { command } => mappings::run(command).await,
            Command::Trust(args) => trust::run(&args),
            Command::Aws { command } => aws::run(command).await,
            Command::Agent { config, command } => agent(config, command).await,
            Command::Workloads(args) => workloads::run(args).await,
            Command::Revoke(args) => revoke::run(args).await,
            Command::CredentialProcess(args) => Ok(tessera_agent::credential_process::run(&args).await?),
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "tessera", &mut std::io::stdout());
                Ok(())
            }
            Command::Man { dir } => man(dir.as_deref()),
        }
    })
}

async fn agent(config: Option<PathBuf>, command: Option<AgentCommand>) -> anyhow::Result<()> {
    let config = config
        .ok_or_else(|| anyhow::anyhow!("name the agent config with --config (or TESSERA_AGENT_CONFIG)"))?;
    match command {
        None => Ok(tessera_agent::run_file(&config, shutdown_signal()).await?),
        Some(AgentCommand::Exec(args)) => {
            let loaded = tessera_agent::load(&config).map_err(tessera_agent::AgentError::from)?;
            let code = tessera_agent::exec::run(&loaded, &args, Arc::new(SystemClock)).await?;
            std::process::exit(code)
        }
    }
}

/// Libraries whose informational lines say nothing an operator acts on (actix's "starting
/// 2 workers", "Actix runtime found"): warnings and errors only, unless `RUST_LOG` names
/// them.
const QUIET_TARGETS: &[&str] = &["actix_server", "actix_web", "actix_http", "actix_rt", "mio", "h2", "hyper"];

/// `RUST_LOG` (default `info`), with [`QUIET_TARGETS`] it does not name at `warn`.
fn log_filter(spec: Option<&str>) -> tracing_subscriber::EnvFilter {
    let spec = spec.filter(|s| !s.trim().is_empty()).unwrap_or("info");
    let quiet = QUIET_TARGETS.iter().filter(|t| !spec.contains(*t)).map(|t| format!("{t}=warn"));
    let full: Vec<String> = std::iter::once(spec.to_string()).chain(quiet).collect();
    tracing_subscriber::EnvFilter::try_new(full.join(","))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

fn init_logging(format: LogFormat) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    // Colour only for a person at a terminal who has not asked for none (no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn load(path: &Path) -> anyhow::Result<config::LoadedConfig> {
    config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

async fn serve(path: PathBuf) -> anyhow::Result<()> {
    let loaded = load(&path)?;
    let listen = loaded.config.listen;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let demo = demo::start(&loaded, Arc::clone(&clock)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let broker = Broker::build(loaded, clock).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let config = broker.config();
    let names = |names: Vec<&str>| names.join(",");
    let mappings = broker.pipeline().mappings();
    tracing::info!(
        listen = %listen,
        admin = %config.config.admin().map_or_else(|| "off".to_string(), |a| a.listen.to_string()),
        metrics = %config.config.metrics().map_or_else(|| "off".to_string(), |m| m.listen.to_string()),
        issuer = broker.issuer().url(),
        sources = %names(config.config.sources().map(|s| s.name()).collect()),
        targets = %names(config.config.targets().map(|t| t.name()).collect()),
        rules = mappings.rule_count(),
        mappings = %config.mappings_dir().display(),
        store = broker.audit_store().map_or("off", |s| s.location()),
        "tessera serving"
    );
    tessera_broker::run(broker, listener, shutdown_signal()).await?;
    if let Some(demo) = demo {
        demo.stop().await;
    }
    tracing::info!("tessera stopped");
    Ok(())
}

/// Validate without side effects: no key is created, no store opened, no network used.
/// The sources, targets, admin authentication and mapping files are built as `serve`
/// builds them, against a signer that refuses to sign.
async fn check(path: PathBuf) -> anyhow::Result<()> {
    let loaded = load(&path)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let adapters = Adapters::build(&loaded, clock).map_err(|e| anyhow::anyhow!("{e}"))?;
    AdminAuth::validate(&loaded, &adapters.targets).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mappings = MappingSet::load_dir(&loaded.mappings_dir(), &adapters.catalog)
        .map_err(|e| anyhow::anyhow!("the mapping files do not load:\n{e}"))?;
    let shown = tessera_adapters::config::normalize(&path);
    println!("{}: ok ({} rules, mappings {})", shown.display(), mappings.rule_count(), mappings.version());
    Ok(())
}

async fn rotate(path: PathBuf) -> anyhow::Result<()> {
    let loaded = load(&path)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Build the targets to learn the longest TTL any key may have signed (without the
    // audit store or Redis: rotating touches only the key directory).
    let adapters = Adapters::build(&loaded, Arc::clone(&clock)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let longest = adapters.targets.iter().map(|t| t.max_ttl()).max().unwrap_or_default();
    let grace = longest + Duration::from_secs(300);
    let report = issuer::rotate(&loaded.config.issuer, &loaded.base_dir, clock, grace)?;
    for r in &report.rotated {
        println!(
            "{}: {} now signs; retired {} (published until {}); next {}",
            r.alg.as_str(),
            r.activated,
            if r.retired.is_empty() { "none".to_string() } else { r.retired.join(", ") },
            format_rfc3339(r.publish_until),
            r.next
        );
    }
    for kid in &report.deleted {
        println!("deleted expired key {kid}");
    }
    Ok(())
}

fn init_keys(path: PathBuf) -> anyhow::Result<()> {
    let loaded = load(&path)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let issuer = issuer::Issuer::open(&loaded.config.issuer, &loaded.base_dir, clock)?;
    tessera_broker::cache::shared::load_or_create_key(issuer.key_dir())
        .with_context(|| format!("credential cache key in {}", issuer.key_dir().display()))?;
    println!("{}: ready", issuer.key_dir().display());
    list_keys(path)
}

fn list_keys(path: PathBuf) -> anyhow::Result<()> {
    let loaded = load(&path)?;
    let time = |t: Option<i64>| t.map_or_else(|| "-".to_string(), format_rfc3339);
    println!(
        "{:<44} {:<6} {:<8} {:<21} {:<21} PUBLISHED UNTIL",
        "KID", "ALG", "STATE", "CREATED", "ACTIVATED"
    );
    for key in issuer::list_keys(&loaded.config.issuer, &loaded.base_dir)? {
        println!(
            "{:<44} {:<6} {:<8} {:<21} {:<21} {}",
            key.kid,
            key.alg.as_str(),
            key.state.as_str(),
            format_rfc3339(key.created_at),
            time(key.activated_at),
            time(key.publish_until)
        );
    }
    Ok(())
}

/// tessera(1) on standard output, or every page into `dir`.
fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    let command = Cli::command();
    match dir {
        None => clap_mangen::Man::new(command).render(&mut std::io::stdout())?,
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write to {}", dir.display()))?;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// Every argument says what it is for and every command shows how it is run, in
    /// `--help`, the completions and the man pages alike.
    #[test]
    fn every_flag_has_help_and_every_command_an_example() {
        fn walk(command: &clap::Command, path: &str, problems: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name()).trim().to_string();
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    problems.push(format!("`{path}`: argument `{id}` has no help"));
                }
            }
            let example = command.get_after_help().or(command.get_after_long_help());
            let has_example = example.is_some_and(|e| e.to_string().contains("tessera "));
            if path != "tessera" && !has_example {
                problems.push(format!("`{path}` has no example in its help"));
            }
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &path, problems);
            }
        }
        let mut command = Cli::command();
        command.build();
        let mut problems = Vec::new();
        walk(&command, "", &mut problems);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        assert!(command.get_subcommands().count() > 10, "the walk saw the commands");
    }
}
