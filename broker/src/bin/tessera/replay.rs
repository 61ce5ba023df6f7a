//! `tessera mappings diff`, `unused` and `dependents`: the requests recorded in the audit
//! store, decided again by mapping files. Read-only: the store is opened read-only and
//! nothing is issued.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use tessera_adapters::{Clock as _, SystemClock};
use tessera_broker::audit::store::history::History;
use tessera_broker::audit::store::store_url;
use tessera_broker::config::LoadedConfig;
use tessera_broker::mapping::{ChangeKind, Folding, Impact, MappingSet, Recorded, Usage, format_time};

use crate::mappings::{Format, adapters, load};

/// Which changes make `diff` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// A workload allowed today would be refused.
    Refused,
    /// A workload refused today would be allowed.
    Allowed,
    /// A workload would get a different rule or grant.
    Changed,
}

impl FailOn {
    fn kind(self) -> ChangeKind {
        match self {
            Self::Refused => ChangeKind::NewlyRefused,
            Self::Allowed => ChangeKind::NewlyAllowed,
            Self::Changed => ChangeKind::ChangedGrant,
        }
    }
}

/// What every replaying command takes.
#[derive(Debug, Args)]
pub struct Window {
    /// The broker config: its sources, targets, mapping directory and audit store.
    #[arg(long, short, env = "TESSERA_CONFIG")]
    pub config: PathBuf,
    /// Replay the requests recorded within this long before now (`7d`, `12h`, `30m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Output for people (`text`) or for tools (`json`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  tessera mappings diff --config broker.yaml --proposed ./mappings --since 7d --fail-on refused"
)]
pub struct DiffArgs {
    #[command(flatten)]
    pub window: Window,
    /// The proposed mapping directory (a checkout of the repository holding them).
    #[arg(long)]
    pub proposed: PathBuf,
    /// The mapping directory in force. Default: the one broker.yaml names.
    #[arg(long)]
    pub current: Option<PathBuf>,
    /// Exit 1 when the proposed files would make any of these changes (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub fail_on: Vec<FailOn>,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  tessera mappings unused --config broker.yaml --since 30d")]
pub struct UnusedArgs {
    #[command(flatten)]
    pub window: Window,
    /// The mapping directory. Default: the one broker.yaml names.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  tessera mappings dependents payments-api-reads-invoices --config broker.yaml --since 30d"
)]
pub struct DependentsArgs {
    /// The rule's name.
    pub rule: String,
    #[command(flatten)]
    pub window: Window,
    /// The mapping directory. Default: the one broker.yaml names.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const DIFF_DEFAULT: Duration = Duration::from_secs(7 * 86_400);
const USAGE_DEFAULT: Duration = Duration::from_secs(30 * 86_400);

pub async fn diff(args: DiffArgs) -> anyhow::Result<()> {
    let loaded = load(&args.window.config)?;
    let catalog = adapters(&loaded)?.catalog;
    let current_dir = args.current.unwrap_or_else(|| loaded.mappings_dir());
    let current = load_set(&current_dir, &catalog, "the current")?;
    let proposed = load_set(&args.proposed, &catalog, "the proposed")?;
    let mut impact = Impact::new(&current, &proposed);
    let folding = impact.folding();
    let skipped = replay(&loaded, &args.window, DIFF_DEFAULT, folding, |r| impact.add(r)).await?;
    let report = impact.report(skipped);
    match args.window.format {
        Format::Text => print!("{report}"),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    let failing: Vec<ChangeKind> = args.fail_on.iter().map(|f| f.kind()).collect();
    if report.has_any(&failing) {
        let names: Vec<&str> =
            failing.iter().filter(|k| report.has_any(&[**k])).map(|k| k.as_str()).collect();
        anyhow::bail!("the proposed mapping files would make changes --fail-on names: {}", names.join(", "));
    }
    Ok(())
}

pub async fn unused(args: UnusedArgs) -> anyhow::Result<()> {
    let loaded = load(&args.window.config)?;
    let set =
        load_set(&args.dir.unwrap_or_else(|| loaded.mappings_dir()), &adapters(&loaded)?.catalog, "the")?;
    let mut usage = Usage::new(&set);
    let folding = usage.folding();
    let skipped = replay(&loaded, &args.window, USAGE_DEFAULT, folding, |r| usage.add(r)).await?;
    let report = usage.report(skipped);
    match args.window.format {
        Format::Json => {
            let unused: Vec<_> = report.unused().map(|r| &r.rule).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "replayed": report.replayed, "unused_rules": unused })
                )?
            );
        }
        Format::Text => {
            println!("replayed {} recorded requests; rules that decided none of them:", report.replayed);
            for r in report.unused() {
                println!("  {}", r.rule);
            }
        }
    }
    Ok(())
}

pub async fn dependents(args: DependentsArgs) -> anyhow::Result<()> {
    let loaded = load(&args.window.config)?;
    let set =
        load_set(&args.dir.unwrap_or_else(|| loaded.mappings_dir()), &adapters(&loaded)?.catalog, "the")?;
    anyhow::ensure!(
        set.rules().any(|r| r.rule == args.rule),
        "no rule named `{}` in the mapping files",
        args.rule
    );
    let mut usage = Usage::new(&set);
    let folding = usage.folding();
    let skipped = replay(&loaded, &args.window, USAGE_DEFAULT, folding, |r| usage.add(r)).await?;
    let report = usage.report(skipped);
    let Some(rule) = report.rule(&args.rule) else { anyhow::bail!("no rule named `{}`", args.rule) };
    match args.window.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(rule)?),
        Format::Text => {
            println!(
                "{}: {} of {} replayed requests, from {} workloads",
                args.rule,
                rule.exchanges,
                report.replayed,
                rule.workloads.len()
            );
            for w in &rule.workloads {
                println!(
                    "  {} {}: {} requests, last seen {}",
                    w.workload,
                    w.decision,
                    w.exchanges,
                    format_time(w.last_seen)
                );
            }
        }
    }
    Ok(())
}

fn load_set(
    dir: &Path,
    catalog: &tessera_broker::mapping::Catalog,
    which: &str,
) -> anyhow::Result<MappingSet> {
    MappingSet::load_dir(dir, catalog).map_err(|e| anyhow::anyhow!("{which} mapping files do not load:\n{e}"))
}

/// Hand every request recorded in the window to `each`; returns how many had no verified
/// identity.
async fn replay(
    loaded: &LoadedConfig,
    window: &Window,
    default: Duration,
    folding: Folding,
    mut each: impl FnMut(&Recorded<'_>),
) -> anyhow::Result<u64> {
    let audit = loaded.config.audit();
    anyhow::ensure!(
        audit.store.enabled,
        "{}: audit.store.enabled is false; replay reads the audit store",
        window.config.display()
    );
    let history = History::open(&audit.store, &store_url(loaded)).await?;
    let since = window.since.unwrap_or(default);
    let since_ms =
        SystemClock.now_millis().saturating_sub(i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
    Ok(history.requests(since_ms, folding, |r| each(r)).await?)
}
