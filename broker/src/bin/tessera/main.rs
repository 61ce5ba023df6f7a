//! The `tessera` command: a thin shell over the broker library and the `tessera-agent` crate.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        /// The broker config file.
        #[arg(long, short, env = "TESSERA_CONFIG")]
        config: PathBuf,
    },
    /// Check a config file (and the mapping files it names) without serving.
    Check {
        #[arg(long, short, env = "TESSERA_CONFIG")]
        config: PathBuf,
    },
    /// Check what breaks in production: the issuer URL serves discovery and a JWKS that
    /// match the local keys, every source's key set and target's endpoint is reachable,
    /// the store and Redis connect, key files are private, the clock agrees. Exits 1 when
    /// a check fails. Example: `tessera doctor --config /etc/tessera/broker.yaml`
    Doctor {
        #[arg(long, short, env = "TESSERA_CONFIG")]
        config: PathBuf,
    },
    /// Manage Tessera's signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check mapping files and explain decisions.
    Mappings {
        #[command(subcommand)]
        command: mappings::MappingsCommand,
    },
    /// Print the setup a target's platform needs to trust Tessera (an IAM OIDC provider
    /// and role trust policies, a workload identity pool, federated credentials), written
    /// from broker.yaml and the mapping rules that grant the target (docs/targets.md).
    Trust(trust::TrustArgs),
    /// Helpers for workloads on AWS.
    Aws {
        #[command(subcommand)]
        command: aws::AwsCommand,
    },
    /// Run beside a workload: exchange its native credential at the broker and serve the
    /// results where unmodified AWS, Google and Azure SDKs look (docs/agent.md).
    Agent {
        /// The agent config file.
        #[arg(long, short, env = "TESSERA_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// The workload directory: every workload identity seen, from the audit store.
    Workloads(workloads::WorkloadsArgs),
    /// Revoke workload identities, list and remove revocations, through a running broker's
    /// admin API (docs/revocation.md).
    Revoke(revoke::RevokeArgs),
    /// Print AWS credentials from a running agent in the AWS `credential_process` format, or
    /// with `--kubernetes` a kubectl `ExecCredential` exchanged at the broker.
    CredentialProcess(tessera_agent::credential_process::CredentialProcessArgs),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create the key directory: signing keys for every configured algorithm (current and
    /// next) and the credential-cache key replicas share. Existing keys are kept. For
    /// filling a read-only volume (a Kubernetes Secret) before replicas start.
    Init {
        #[arg(long, short, env = "TESSERA_CONFIG")]
        config: PathBuf,
    },
    /// Promote the published next key to signing, retire the current one (it stays
    /// published longer than the longest TTL it signed) and publish a new next key.
    Rotate {
        #[arg(long, short, env = "TESSERA_CONFIG")]
        config: PathBuf,
    },
    /// List keys with their state and dates (never private material).
    List {
        #[arg(long, short, env = "TESSERA_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Command::Serve { .. } | Command::Agent { .. });
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
            Command::Agent { config } => Ok(tessera_agent::run_file(&config, shutdown_signal()).await?),
            Command::Workloads(args) => workloads::run(args).await,
            Command::Revoke(args) => revoke::run(args).await,
            Command::CredentialProcess(args) => Ok(tessera_agent::credential_process::run(&args).await?),
        }
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
    println!("{}: ok ({} rules, mappings {})", path.display(), mappings.rule_count(), mappings.version());
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
