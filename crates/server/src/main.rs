//! The `suanli` binary: command-line entry points around the domain core.

mod files;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "suanli",
    version,
    about = "Meters and settles compute vouchers (算力券)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Computes a period's statement offline from a registry and a usage file.
    Simulate {
        /// The registry TOML (programmes, stacking, providers, SKUs, beneficiaries, grants).
        #[arg(long)]
        registry: PathBuf,
        /// Usage CSV: provider,record_id,beneficiary,sku,start,end,quantity,amount
        #[arg(long)]
        usage: PathBuf,
        /// The fiscal period, YYYY-MM (Asia/Shanghai).
        #[arg(long)]
        period: String,
        /// Payments made earlier in the fiscal year: programme,beneficiary,provider,amount
        #[arg(long)]
        prior: Option<PathBuf>,
        /// Where to write the statement CSV; rejects go to OUT.rejects.csv.
        #[arg(long)]
        out: PathBuf,
    },
    /// Checks a registry file and prints what it declares.
    Check {
        #[arg(long)]
        registry: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate { registry, usage, period, prior, out } => {
            simulate::run(&registry, &usage, &period, prior.as_deref(), &out)
        }
        Command::Check { registry } => files::load_registry(&registry).map(|registry| {
            println!(
                "{}: {} programme(s), {} stacking rule(s), {} provider(s), {} SKU(s), {} beneficiary(ies), {} grant(s); sha256 {}",
                registry.0.display(),
                registry.1.programmes.len(),
                registry.1.stacking.len(),
                registry.1.providers.len(),
                registry.1.skus.len(),
                registry.1.beneficiaries.len(),
                registry.1.grants.len(),
                registry.1.content_hash
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
