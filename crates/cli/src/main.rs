//! The `suanli` binary: argument parsing and the client commands. `serve` hands over to
//! `suanli_server`; the offline commands (`simulate`, `check`) call `suanli_domain` directly;
//! the others are gRPC clients of a running server, or work on the database directly (`token`,
//! `audit`). Nothing below this crate depends on it.

mod audit_cli;
mod client;
mod files;
mod settle_cli;
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
    /// Serves the gRPC services. Every setting comes from flag > env SUANLI_… > --config file >
    /// default; deploy/suanli.toml lists and explains every key.
    Serve {
        /// A TOML configuration file (see deploy/suanli.toml).
        #[arg(long, env = "SUANLI_CONFIG")]
        config: Option<PathBuf>,
        /// server.addr: the gRPC listen address (default 127.0.0.1:50051).
        #[arg(long)]
        addr: Option<String>,
        /// database.url: sqlite://PATH (created on first start) or postgres://USER@HOST/DB.
        #[arg(long)]
        database_url: Option<String>,
        /// server.metrics_addr: serve Prometheus metrics over HTTP on this address.
        #[arg(long)]
        metrics_addr: Option<String>,
        /// server.health_addr: a plain-text listener serving only grpc.health.v1 (for probes).
        #[arg(long)]
        health_addr: Option<String>,
        /// server.http_addr: the web console's HTTP address (default 127.0.0.1:8080; "off": none).
        #[arg(long)]
        http_addr: Option<String>,
        /// server.log_json: log JSON lines instead of text (the filter comes from RUST_LOG).
        #[arg(long)]
        log_json: bool,
        /// tls.cert_path: the server certificate chain (PEM).
        #[arg(long)]
        tls_cert: Option<String>,
        /// tls.key_path: the server private key (PEM).
        #[arg(long)]
        tls_key: Option<String>,
        /// tls.client_ca_path: the CA (PEM) of provider client certificates (CN = provider id).
        #[arg(long)]
        tls_client_ca: Option<String>,
        /// limits.token_recheck_secs: seconds a cached token is trusted before it is read again.
        #[arg(long)]
        token_recheck_secs: Option<String>,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The tamper-evident audit log (no server needed).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Registry versions on a running server.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Usage records on a running server.
    Usage {
        #[command(subcommand)]
        command: UsageCommand,
    },
    /// Settlement runs: create (preview) → approve (another finance user) → post.
    Settle {
        #[command(subcommand)]
        command: SettleCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// The double-entry ledger: payments, journal export, trial balance.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// A beneficiary's voucher balance per programme (cap, paid, pending, remaining), or what a
    /// payee is owed.
    Balance {
        #[arg(long, conflicts_with = "payee")]
        beneficiary: Option<String>,
        /// The fiscal year, with --beneficiary.
        #[arg(long)]
        year: Option<i32>,
        #[arg(long)]
        payee: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum SettleCommand {
    /// Freezes the input set of a programme's period and computes the preview.
    Create {
        #[arg(long)]
        programme: String,
        /// YYYY-MM (Asia/Shanghai).
        #[arg(long)]
        period: String,
    },
    /// A run's summary and lines.
    Show { run: u64 },
    /// Writes a run's statement CSV (simulate's columns, then run_id and original_period).
    Export {
        run: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Approves a run; the approver must not be its creator.
    Approve { run: u64 },
    /// Posts an approved run's journal; posting twice changes nothing.
    Post { run: u64 },
    /// Cancels a run that is not posted.
    Cancel { run: u64 },
    /// Lists runs.
    List {
        #[arg(long)]
        programme: Option<String>,
    },
    /// Recomputes a run from its frozen inputs and checks every line matches.
    Rederive { run: u64 },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Moves an amount of a payee's payable to paid; idempotent by reference.
    RecordPayment {
        #[arg(long)]
        payee: String,
        /// CNY, at most 2 decimals.
        #[arg(long)]
        amount: String,
        #[arg(long)]
        reference: String,
        /// Needed when the payee is owed by several programmes.
        #[arg(long)]
        programme: Option<String>,
    },
    /// Writes every journal entry to a CSV.
    Export {
        #[arg(long)]
        out: PathBuf,
    },
    /// Debits and credits per account; fails if they do not balance.
    TrialBalance,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Creates a token, prints it once and stores only its sha256 (no server needed).
    Create {
        /// provider | beneficiary | finance | auditor | admin
        #[arg(long)]
        role: String,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        beneficiary: Option<String>,
        /// The token stops working this many days from now (1 to 3650); without it, never.
        #[arg(long)]
        expires_in_days: Option<u32>,
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
    /// Revokes a token (no server needed); a running server refuses it within
    /// --token-recheck-secs.
    Revoke {
        /// At least 8 hex digits of the token's sha256, matching exactly one token.
        #[arg(long, conflicts_with = "token", required_unless_present = "token")]
        hash_prefix: Option<String>,
        /// The token itself.
        #[arg(long)]
        token: Option<String>,
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recomputes the hash chain; exits non-zero and names the first broken seq on tamper.
    Verify {
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
    /// Writes every entry to a file.
    Export {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "csv")]
        format: audit_cli::Format,
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
}

#[derive(clap::Args)]
struct Remote {
    /// The server: host:port, http://host:port, or https://host:port for TLS.
    #[arg(long, default_value = "127.0.0.1:50051", env = "SUANLI_SERVER")]
    server: String,
    /// A bearer token from `suanli token create` (may be left out with a provider's client
    /// certificate).
    #[arg(long, env = "SUANLI_TOKEN", hide_env_values = true, default_value = "")]
    token: String,
    /// The CA certificate (PEM) that signed the server's certificate; implies TLS. Without it,
    /// https:// servers are checked against the system's roots.
    #[arg(long, env = "SUANLI_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS; its CN is the provider id.
    #[arg(long, env = "SUANLI_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "SUANLI_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
}

impl Remote {
    fn target(&self) -> client::Target {
        client::Target {
            server: self.server.clone(),
            ca_cert: self.ca_cert.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        }
    }
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Loads a registry TOML as a new version (needs an admin or finance token).
    Import {
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Adds or replaces beneficiaries and grants of the current version: FILE holds only
    /// [[beneficiary]] and [[grant]] tables; the result is stored as a new version.
    Patch {
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum UsageCommand {
    /// Streams a usage CSV (the format of `simulate`) to the server in batches.
    Import {
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Where to write rejected and conflicting rows (default FILE.rejects.csv).
        #[arg(long)]
        rejects: Option<PathBuf>,
    },
    /// Withdraws one of a provider's records; a posted one is clawed back in the next run.
    Void {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        record_id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn serve(file: Option<&std::path::Path>, flags: &[(&'static str, String)]) -> anyhow::Result<()> {
    let (config, sources) = suanli_server::config::load(file, flags)?;
    init_tracing(config.log_json);
    for (key, source) in sources
        .iter()
        .filter(|(_, s)| *s != suanli_server::config::Source::Default)
    {
        tracing::info!(key = *key, source = %source, "configuration");
    }
    runtime()?.block_on(suanli_server::serve::run(
        config,
        suanli_server::serve::shutdown_signal(),
    ))
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
        Command::Serve { config, addr, database_url, metrics_addr, health_addr, http_addr, log_json, tls_cert, tls_key, tls_client_ca, token_recheck_secs } => {
            let mut flags: Vec<(&'static str, String)> = Vec::new();
            for (flag, value) in [
                ("--addr", addr),
                ("--database-url", database_url),
                ("--metrics-addr", metrics_addr),
                ("--health-addr", health_addr),
                ("--http-addr", http_addr),
                ("--tls-cert", tls_cert),
                ("--tls-key", tls_key),
                ("--tls-client-ca", tls_client_ca),
                ("--token-recheck-secs", token_recheck_secs),
                ("--log-json", log_json.then(|| "true".to_owned())),
            ] {
                if let Some(v) = value {
                    flags.push((flag, v));
                }
            }
            serve(config.as_deref(), &flags)
        }
        Command::Token { command: TokenCommand::Create { role, provider, beneficiary, expires_in_days, database_url } } => {
            client::token_create(&database_url, &role, provider.as_deref(), beneficiary.as_deref(), expires_in_days)
        }
        Command::Token { command: TokenCommand::Revoke { hash_prefix, token, database_url } } => {
            client::token_revoke(&database_url, hash_prefix.as_deref(), token.as_deref())
        }
        Command::Audit { command: AuditCommand::Verify { database_url } } => audit_cli::verify(&database_url),
        Command::Audit { command: AuditCommand::Export { out, format, database_url } } => {
            audit_cli::export(&database_url, &out, format)
        }
        Command::Registry { command: RegistryCommand::Import { file, remote } } => {
            runtime().and_then(|rt| rt.block_on(client::registry_import(&remote.target(), &remote.token, &file)))
        }
        Command::Registry { command: RegistryCommand::Patch { file, remote } } => {
            runtime().and_then(|rt| rt.block_on(client::registry_patch(&remote.target(), &remote.token, &file)))
        }
        Command::Settle { command, remote } => {
            use settle_cli::SettleAction as A;
            let action = match command {
                SettleCommand::Create { programme, period } => A::Create { programme, period },
                SettleCommand::Show { run } => A::Show { run_id: run },
                SettleCommand::Export { run, out } => A::Export { run_id: run, out },
                SettleCommand::Approve { run } => A::Approve { run_id: run },
                SettleCommand::Post { run } => A::Post { run_id: run },
                SettleCommand::Cancel { run } => A::Cancel { run_id: run },
                SettleCommand::List { programme } => A::List { programme },
                SettleCommand::Rederive { run } => A::Rederive { run_id: run },
            };
            runtime().and_then(|rt| rt.block_on(settle_cli::settle(&remote.target(), &remote.token, action)))
        }
        Command::Ledger { command, remote } => {
            use settle_cli::LedgerAction as A;
            let action = match command {
                LedgerCommand::RecordPayment { payee, amount, reference, programme } => {
                    A::RecordPayment { payee, amount, reference, programme }
                }
                LedgerCommand::Export { out } => A::Export { out },
                LedgerCommand::TrialBalance => A::TrialBalance,
            };
            runtime().and_then(|rt| rt.block_on(settle_cli::ledger(&remote.target(), &remote.token, action)))
        }
        Command::Balance { beneficiary, year, payee, remote } => runtime()
            .and_then(|rt| rt.block_on(settle_cli::balance(&remote.target(), &remote.token, beneficiary, year, payee))),
        Command::Usage { command: UsageCommand::Void { provider, record_id, reason, remote } } => runtime()
            .and_then(|rt| rt.block_on(settle_cli::void(&remote.target(), &remote.token, provider, record_id, reason))),
        Command::Usage { command: UsageCommand::Import { file, remote, batch_size, rejects } } => runtime()
            .and_then(|rt| rt.block_on(client::usage_import(&remote.target(), &remote.token, &file, batch_size, rejects))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
