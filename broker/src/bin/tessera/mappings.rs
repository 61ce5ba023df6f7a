//! `tessera mappings check` and `tessera mappings explain`; the replaying commands are in
//! `replay`.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use tessera_adapters::oauth::token_type;
use tessera_adapters::{Clock, Secret, SubjectToken, SubjectTokenType, SystemClock};
use tessera_broker::explain::{self, ExplainRequest, Subject};
use tessera_broker::mapping::{CheckReport, MappingSet, identity_keys, parse_identity};
use tessera_broker::{Adapters, config};

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum MappingsCommand {
    /// Validate a mapping directory against broker.yaml's sources and targets, run every
    /// file's inline `tests:`, and warn about rules that can never apply or overlap.
    /// Exits 1 on any error or failed test (with --strict, on any warning too).
    #[command(after_help = "Example:\n  tessera mappings check ./mappings --config broker.yaml --strict")]
    Check {
        /// The mapping directory. Default: the `mappings` directory broker.yaml names.
        dir: Option<PathBuf>,
        /// The broker config whose sources and targets the rules may name.
        #[arg(long, short, env = "TESSERA_CONFIG")]
        config: PathBuf,
        /// Output for people (`text`) or for tools (`json`).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Fail on warnings as well.
        #[arg(long)]
        strict: bool,
        /// Run test cases that set no `now:` at this time (RFC 3339). Default: now.
        #[arg(long)]
        now: Option<String>,
    },
    /// Explain the decision for an identity (as in a test case) or a real subject token
    /// (verified by the configured source): every rule for the audience and why it
    /// applied or not, the decision, and the grant.
    #[command(
        after_help = "Examples:\n  tessera mappings explain --config broker.yaml --token @token.jwt --audience aws-prod\n  tessera mappings explain --config broker.yaml --token @ci.jwt --actor bot.yaml --audience deploy-api\n  echo '{source: eks-prod, subject: \"system:serviceaccount:payments:api\"}' \\\n    | tessera mappings explain --config broker.yaml --identity - --audience aws-prod"
    )]
    Explain {
        /// The broker config: its sources, targets and mapping directory.
        #[arg(long, short, env = "TESSERA_CONFIG")]
        config: PathBuf,
        /// A YAML or JSON file holding the identity, as in a test case; `-` reads standard
        /// input. With only `source` and `subject`, the rest is derived as the source's
        /// kind derives it from a token (`id`, `provider`, ...).
        #[arg(long, conflicts_with = "token", required_unless_present = "token")]
        identity: Option<PathBuf>,
        /// The actor of a delegated request (RFC 8693 `actor_token`): a YAML or JSON file
        /// holding it as in a test case's `actor:`, completed like `--identity`.
        #[arg(long)]
        actor: Option<PathBuf>,
        /// The subject token; `@FILE` reads it from a file and `-` from standard input
        /// (which keeps it out of shell history).
        #[arg(long)]
        token: Option<String>,
        /// `jwt`, `id_token`, `aws-signed-request`, or a token type URI.
        #[arg(long, default_value = "jwt")]
        token_type: String,
        /// The target name, as a workload would send it.
        #[arg(long)]
        audience: String,
        /// The scope, as a workload would send it (a role ARN for AWS).
        #[arg(long)]
        scope: Option<String>,
        /// The client address conditions see as `request.client_addr`.
        #[arg(long)]
        client_addr: Option<String>,
        /// The time conditions see as `now` (RFC 3339). Default: now.
        #[arg(long)]
        now: Option<String>,
        /// The mapping directory. Default: the one broker.yaml names.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Output for people (`text`) or for tools (`json`).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Replay the requests recorded in the audit store against proposed mapping files and
    /// report which workloads would be newly refused, newly allowed, or get a different
    /// rule or grant, by rule and by workload. Read-only.
    Diff(crate::replay::DiffArgs),
    /// List the rules that decided none of the requests recorded in a window (dead rules).
    Unused(crate::replay::UnusedArgs),
    /// List the workloads whose recorded requests a rule decided: who depends on it.
    Dependents(crate::replay::DependentsArgs),
}

pub async fn run(command: MappingsCommand) -> anyhow::Result<()> {
    match command {
        MappingsCommand::Check { dir, config, format, strict, now } => {
            check(dir, &config, format, strict, now)
        }
        MappingsCommand::Explain {
            config,
            identity,
            actor,
            token,
            token_type,
            audience,
            scope,
            client_addr,
            now,
            dir,
            format,
        } => {
            let loaded = load(&config)?;
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let (subject, adapters) = match (identity, token) {
                (Some(path), _) => {
                    // No token to verify: the sources need not fetch keys.
                    let adapters = adapters(&loaded)?;
                    let identity = read_identity(&path, &adapters.sources)?;
                    (Subject::Identity(Box::new(identity)), adapters)
                }
                (None, Some(token)) => {
                    let token = SubjectToken {
                        token_type: token_type_of(&token_type)?,
                        value: Secret::new(read_token(&token)?),
                    };
                    let adapters =
                        Adapters::build(&loaded, Arc::clone(&clock)).map_err(|e| anyhow::anyhow!("{e}"))?;
                    (Subject::Token(token), adapters)
                }
                (None, None) => anyhow::bail!("give --identity or --token"),
            };
            let actor = actor.map(|path| read_identity(&path, &adapters.sources)).transpose()?;
            let dir = dir.unwrap_or_else(|| loaded.mappings_dir());
            let set = MappingSet::load_dir(&dir, &adapters.catalog)
                .map_err(|e| anyhow::anyhow!("the mapping files do not load:\n{e}"))?;
            let request = ExplainRequest {
                subject,
                actor,
                audience,
                scope,
                client_addr,
                now: time(now.as_deref(), clock.as_ref())?,
            };
            let explanation = explain::explain(&adapters.router, &set, request).await?;
            match format {
                Format::Text => println!("{explanation}"),
                Format::Json => println!("{}", serde_json::to_string_pretty(&explanation)?),
            }
            Ok(())
        }
        MappingsCommand::Diff(args) => crate::replay::diff(args).await,
        MappingsCommand::Unused(args) => crate::replay::unused(args).await,
        MappingsCommand::Dependents(args) => crate::replay::dependents(args).await,
    }
}

pub fn load(path: &Path) -> anyhow::Result<config::LoadedConfig> {
    config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

fn time(text: Option<&str>, clock: &dyn Clock) -> anyhow::Result<i64> {
    match text {
        None => Ok(clock.now()),
        Some(t) => Ok(chrono::DateTime::parse_from_rfc3339(t)
            .with_context(|| format!("--now `{t}` is not an RFC 3339 time (e.g. 2026-01-05T09:00:00Z)"))?
            .timestamp()),
    }
}

fn check(
    dir: Option<PathBuf>,
    config: &Path,
    format: Format,
    strict: bool,
    now: Option<String>,
) -> anyhow::Result<()> {
    let loaded = load(config)?;
    let clock = SystemClock;
    let adapters = adapters(&loaded)?;
    let dir = dir.unwrap_or_else(|| loaded.mappings_dir());
    let report = CheckReport::run(&dir, &adapters.catalog, time(now.as_deref(), &clock)?);
    match format {
        Format::Text => println!("{report}"),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if report.passed(strict) { Ok(()) } else { anyhow::bail!("{}: mapping check failed", dir.display()) }
}

/// The sources and targets of `loaded`, built on a thread outside the async runtime, so
/// sources start no background key-set refresh: checking and replaying need only names
/// and limits, never the network.
pub fn adapters(loaded: &config::LoadedConfig) -> anyhow::Result<Adapters> {
    std::thread::scope(|s| s.spawn(|| Adapters::build(loaded, Arc::new(SystemClock))).join())
        .map_err(|_| anyhow::anyhow!("building the sources and targets failed"))?
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// The identity in `path`, completed from its source as [`explain::complete_identity`] says.
fn read_identity(
    path: &Path,
    sources: &[Arc<dyn tessera_adapters::IdentitySource>],
) -> anyhow::Result<tessera_adapters::Identity> {
    let text = read_input(path)?;
    let written = parse_identity(path, &text).map_err(|e| anyhow::anyhow!("invalid identity:\n{e}"))?;
    explain::complete_identity(sources, written, &identity_keys(&text))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn read_token(arg: &str) -> anyhow::Result<String> {
    let text = match arg.strip_prefix('@') {
        Some(file) => read_input(Path::new(file))?,
        None if arg == "-" => read_input(Path::new("-"))?,
        None => arg.to_string(),
    };
    Ok(text.trim().to_string())
}

fn token_type_of(name: &str) -> anyhow::Result<SubjectTokenType> {
    let uri = match name {
        "jwt" => token_type::JWT,
        "id_token" => token_type::ID_TOKEN,
        "aws-signed-request" => token_type::AWS_SIGNED_REQUEST,
        other => other,
    };
    SubjectTokenType::from_uri(uri).with_context(|| format!("unknown token type `{name}`"))
}
