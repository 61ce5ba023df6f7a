//! `tessera workloads`: the workload directory, read straight from the audit store the
//! config names (a broker need not be running).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tessera_broker::audit::store::{AuditStore, MAX_PAGE, Workload, WorkloadQuery};
use tessera_broker::config;
use tessera_broker::metrics::Metrics;

use crate::mappings::Format;

#[derive(Debug, Args)]
pub struct WorkloadsArgs {
    /// The broker config file: its audit store holds the directory.
    #[arg(long, short, env = "TESSERA_CONFIG")]
    config: PathBuf,
    /// Only workloads from this source.
    #[arg(long)]
    source: Option<String>,
    /// Only workloads seen since (RFC 3339).
    #[arg(long)]
    seen_since: Option<String>,
    /// At most this many, most recently seen first.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PAGE)))]
    limit: u32,
    /// Output for people (`text`) or for tools (`json`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub async fn run(args: WorkloadsArgs) -> anyhow::Result<()> {
    let loaded = config::load(&args.config).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let audit = loaded.config.audit();
    anyhow::ensure!(audit.store.enabled, "{}: audit.store.enabled is false", args.config.display());
    let seen_since_ms = args
        .seen_since
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.timestamp_millis())
                .map_err(|_| anyhow::anyhow!("--seen-since must be RFC 3339"))
        })
        .transpose()?;
    let url = tessera_broker::audit::store::store_url(&loaded);
    let store = AuditStore::open(&audit.store, &url, Arc::new(Metrics::new()), false).await?;
    let query =
        WorkloadQuery { source: args.source, seen_since_ms, limit: args.limit, ..WorkloadQuery::default() };
    let workloads = store.workloads(&query).await?;
    match args.format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "workloads": workloads }))?)
        }
        Format::Text => print!("{}", table(&workloads)),
    }
    Ok(())
}

/// One line per workload: where it came from, when, and what it reached or was refused.
fn table(workloads: &[Workload]) -> String {
    let width = workloads.iter().map(|w| w.id.len()).max().unwrap_or(0).max("IDENTITY".len());
    let mut out = format!(
        "{:<width$}  {:<12} {:<24} {:<24} {:>6} {:>6} {:>6}  TARGETS\n",
        "IDENTITY", "SOURCE", "FIRST SEEN", "LAST SEEN", "ALLOW", "DENY", "ERROR"
    );
    for w in workloads {
        let targets: Vec<String> =
            w.targets.iter().map(|t| format!("{}×{}", t.target, t.exchanges)).collect();
        let refused: Vec<String> =
            w.refusals.iter().map(|r| format!("{}:{}×{}", r.target, r.reason, r.exchanges)).collect();
        let mut reached = if targets.is_empty() { "-".to_string() } else { targets.join(", ") };
        if !refused.is_empty() {
            reached.push_str(&format!("  refused: {}", refused.join(", ")));
        }
        out.push_str(&format!(
            "{:<width$}  {:<12} {:<24} {:<24} {:>6} {:>6} {:>6}  {}\n",
            w.id,
            w.source,
            w.first_seen,
            w.last_seen,
            w.exchanges.allow,
            w.exchanges.deny,
            w.exchanges.error,
            reached
        ));
    }
    out
}
