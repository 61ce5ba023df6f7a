//! `tessera trust <target>`: prints what `tessera_broker::trust` writes.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use tessera_adapters::{Clock, SystemClock};
use tessera_broker::mapping::MappingSet;
use tessera_broker::trust::{self, Format};
use tessera_broker::{Adapters, config};

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The target, as named in broker.yaml.
    target: String,
    /// The broker config file (broker.yaml).
    #[arg(long, short, env = "TESSERA_CONFIG")]
    config: PathBuf,
    /// aws_sts: json (default), cloudformation, terraform. gcp: gcloud (default),
    /// terraform. azure: az (default), terraform. jwt, spiffe: json. kubernetes: yaml.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// The mapping directory. Default: the one broker.yaml names.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Json,
    Cloudformation,
    Terraform,
    Gcloud,
    Az,
    Yaml,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Json => Format::Json,
            FormatArg::Cloudformation => Format::Cloudformation,
            FormatArg::Terraform => Format::Terraform,
            FormatArg::Gcloud => Format::Gcloud,
            FormatArg::Az => Format::Az,
            FormatArg::Yaml => Format::Yaml,
        }
    }
}

/// Loads the config and mapping files as the broker would, without keys, stores or network.
pub fn run(args: &TrustArgs) -> anyhow::Result<()> {
    let loaded = config::load(&args.config).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let adapters = Adapters::build(&loaded, clock).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = args.dir.clone().unwrap_or_else(|| loaded.mappings_dir());
    let set = MappingSet::load_dir(&dir, &adapters.catalog)
        .map_err(|e| anyhow::anyhow!("the mapping files do not load:\n{e}"))?;
    let text = trust::render(&loaded, &set, &args.target, args.format.map(Format::from))?;
    print!("{text}");
    Ok(())
}
