//! The `suanli` binary: argument parsing and the client commands. `serve` hands over to
//! `suanli_server`; the offline commands (`simulate`, `check`) call `suanli_domain` directly;
//! the others are gRPC clients of a running server, or work on the database directly (`token`,
//! `audit`). Nothing below this crate depends on it.

// First: its `outln!` is used by every module below.
#[macro_use]
mod stdout;

mod audit_cli;
mod client;
mod files;
mod index_cli;
mod settle_cli;
mod simulate;
mod users_cli;

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
        /// The encoding of --usage and --prior; without it UTF-8 (with or without BOM), else
        /// GB18030 when the bytes are not UTF-8.
        #[arg(long, value_enum)]
        encoding: Option<files::Encoding>,
    },
    /// Checks a registry file and prints what it declares.
    Check {
        /// The registry TOML to validate.
        #[arg(long)]
        registry: PathBuf,
    },
    /// Serves the gRPC services and the web console (http://127.0.0.1:8080/ by default).
    ///
    /// Every setting comes from flag > env SUANLI_… > --config file > default;
    /// deploy/suanli.toml lists and explains every key.
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
        /// server.trust_proxy_tls: a TLS-terminating proxy is in front of the console (allows
        /// password sign-in on a non-loopback --http-addr; Secure cookies).
        #[arg(long)]
        trust_proxy_tls: bool,
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
    /// Named users: people who sign in to the console, and service accounts of machine clients
    /// (no server needed; every change is audited).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The tamper-evident audit log (no server needed).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Optional indexes of usage records: the console's lists by enterprise or by month stay
    /// fast at any size, and ingest writes each index for every record (no server needed).
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Registry versions on a running server.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Usage records on a running server.
    Usage {
        #[command(subcommand)]
        command: UsageCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Settlement runs: create (preview) → approve (another finance user) → post.
    Settle {
        #[command(subcommand)]
        command: SettleCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// The double-entry ledger: payments, journal export, trial balance, opening balances.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// A beneficiary's voucher balance per programme (cap, entitled, settled, paid out, pending,
    /// remaining), or what a payee was settled, paid out and is owed.
    Balance {
        /// The beneficiary (enterprise) whose voucher balance to show.
        #[arg(long, conflicts_with = "payee")]
        beneficiary: Option<String>,
        /// The fiscal year, with --beneficiary.
        #[arg(long)]
        year: Option<i32>,
        /// A payee (beneficiary or provider): what was settled for it, paid out to it, and is
        /// outstanding.
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
        /// The programme id, as in the registry.
        #[arg(long)]
        programme: String,
        /// YYYY-MM (Asia/Shanghai).
        #[arg(long)]
        period: String,
    },
    /// A run's summary and lines.
    Show {
        /// The run id, as printed by `settle create` and `settle list`.
        run: u64,
    },
    /// Writes a run's statement CSV (simulate's columns, then run_id, original_period,
    /// entitlement, settled_before, change and reason).
    Export {
        /// The run id, as printed by `settle create` and `settle list`.
        run: u64,
        /// Where to write the statement CSV.
        #[arg(long)]
        out: PathBuf,
    },
    /// Approves a run; the approver must not be its creator.
    Approve {
        /// The run id, as printed by `settle create` and `settle list`.
        run: u64,
    },
    /// Posts an approved run's journal; posting twice changes nothing.
    Post {
        /// The run id, as printed by `settle create` and `settle list`.
        run: u64,
    },
    /// Cancels a run that is not posted.
    Cancel {
        /// The run id, as printed by `settle create` and `settle list`.
        run: u64,
    },
    /// Lists runs.
    List {
        /// Only the runs of this programme.
        #[arg(long)]
        programme: Option<String>,
    },
    /// Recomputes a run from its frozen inputs and checks every line matches.
    Rederive {
        /// The run id, as printed by `settle create` and `settle list`.
        run: u64,
    },
    /// Explains a run's lines of one beneficiary: ratio and why, base and usage records, every
    /// cut and its cause, and for adjustments the entitlement, settled before and the change.
    Explain {
        /// The run id, as printed by `settle create` and `settle list`.
        run: u64,
        /// The beneficiary whose lines to explain.
        #[arg(long)]
        beneficiary: String,
        /// Only the lines of this provider.
        #[arg(long)]
        provider: Option<String>,
        /// text (sentences, for people) or json (every figure, for programs).
        #[arg(long, value_enum, default_value = "text")]
        format: settle_cli::ExplainFormat,
        /// Usage records listed per line (default 20, at most 500).
        #[arg(long, default_value_t = 20)]
        records: u32,
        /// The next page of one line's records, as `settle explain` printed it.
        #[arg(long)]
        records_page: Option<String>,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Moves an amount of a payee's payable to paid; idempotent by reference. Above the
    /// server's ledger.payment_confirm_above_fen it is only recorded, awaiting confirmation by
    /// another finance user (ledger confirm-payment).
    RecordPayment {
        /// The payee (beneficiary or provider) that was paid.
        #[arg(long)]
        payee: String,
        /// CNY, at most 2 decimals.
        #[arg(long)]
        amount: String,
        /// The bank or treasury reference; a payment is recorded once per reference.
        #[arg(long)]
        reference: String,
        /// Needed when the payee is owed by several programmes.
        #[arg(long)]
        programme: Option<String>,
    },
    /// Writes every journal entry to a CSV.
    Export {
        /// Where to write the journal CSV.
        #[arg(long)]
        out: PathBuf,
    },
    /// Debits and credits per account; fails if they do not balance.
    TrialBalance,
    /// Imports what a programme paid before it used Suanli (opening balances), for a second
    /// finance user to confirm; runs then count it against caps and pools.
    ImportOpening {
        /// The programme id, as in the registry; every row of the file must name it.
        #[arg(long)]
        programme: String,
        /// CSV with the columns programme,beneficiary,provider,amount (as simulate --prior).
        #[arg(long)]
        file: PathBuf,
        /// The file's encoding; without it UTF-8 (with or without BOM), else GB18030 when the
        /// bytes are not UTF-8.
        #[arg(long, value_enum)]
        encoding: Option<files::Encoding>,
    },
    /// Confirms an opening-balance import; the confirmer must not be its importer.
    ConfirmOpening {
        /// The import id, as printed by `ledger import-opening`.
        import: u64,
    },
    /// Lists opening-balance imports and their rows.
    Openings {
        /// Only the imports of this programme.
        #[arg(long)]
        programme: Option<String>,
    },
    /// Confirms a payment awaiting confirmation (above the server's
    /// ledger.payment_confirm_above_fen) and books it; the confirmer must not be its recorder.
    ConfirmPayment {
        /// The payment id, as printed by `ledger record-payment` and `ledger payments`.
        payment: u64,
    },
    /// Withdraws a payment awaiting confirmation; nothing was booked.
    WithdrawPayment {
        /// The payment id, as printed by `ledger record-payment` and `ledger payments`.
        payment: u64,
    },
    /// Lists the payments that needed a second person: awaiting, confirmed, withdrawn.
    Payments {
        /// Only the payments awaiting confirmation.
        #[arg(long)]
        awaiting: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Creates a token, prints it once and stores only its sha256 (no server needed).
    Create {
        /// The user the token belongs to (its login); the token has the user's role and
        /// subject.
        #[arg(long, conflicts_with_all = ["role", "provider", "beneficiary"], required_unless_present = "role")]
        user: Option<String>,
        /// What the token is for ("ERP export"), shown by `suanli token list`.
        #[arg(long, requires = "user")]
        label: Option<String>,
        /// Without --user: provider | beneficiary | finance | auditor | admin. The token belongs
        /// to the generated service account of the role and subject (svc-ROLE[-SUBJECT]).
        #[arg(long)]
        role: Option<String>,
        /// The provider id, with --role provider.
        #[arg(long)]
        provider: Option<String>,
        /// The beneficiary id, with --role beneficiary.
        #[arg(long)]
        beneficiary: Option<String>,
        /// The token stops working this many days from now (1 to 3650); without it, never.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
    /// Lists tokens by the first 12 hex digits of their hash, with user, role, label and
    /// status (no server needed).
    List {
        /// Only the tokens of this user (login).
        #[arg(long)]
        user: Option<String>,
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
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
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates a user.
    Create {
        /// The sign-in name: 1 to 64 of a-z, 0-9, '.', '_', '-'; never changes.
        #[arg(long)]
        login: String,
        /// The name shown wherever the user acts, e.g. "财务一号".
        #[arg(long)]
        name: String,
        /// provider | beneficiary | finance | auditor | admin
        #[arg(long)]
        role: String,
        /// The provider id, with --role provider.
        #[arg(long)]
        provider: Option<String>,
        /// The beneficiary (enterprise) id, with --role beneficiary.
        #[arg(long)]
        beneficiary: Option<String>,
        /// The user's e-mail address: for the operators' records, and what a console single
        /// sign-on naming users by email (auth.oidc.user_claim = email) maps to this user.
        #[arg(long)]
        email: Option<String>,
        /// A service account for a machine client: tokens only, never a password.
        #[arg(long)]
        service: bool,
        /// Reads the user's console password from standard input (one line).
        #[arg(long, conflicts_with = "service")]
        password_stdin: bool,
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
    /// Lists every user.
    List {
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
    /// Disables a user: a running server refuses its tokens and console sessions within
    /// --token-recheck-secs.
    Disable {
        /// The user's login.
        login: String,
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
    /// Enables a disabled user again.
    Enable {
        /// The user's login.
        login: String,
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
    /// Changes a user's role (and its tokens').
    SetRole {
        /// The user's login.
        login: String,
        /// provider | beneficiary | finance | auditor | admin
        #[arg(long)]
        role: String,
        /// The provider id, with --role provider.
        #[arg(long)]
        provider: Option<String>,
        /// The beneficiary (enterprise) id, with --role beneficiary.
        #[arg(long)]
        beneficiary: Option<String>,
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
    /// Removes a user's authenticator (a lost phone); the next password sign-in enrols again
    /// where auth.require_totp_for asks for it.
    ResetTotp {
        /// The user's login.
        login: String,
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
    /// Sets a user's console password: prints a new one-time password, or reads one from
    /// standard input with --password-stdin.
    ResetPassword {
        /// The user's login.
        login: String,
        /// Reads the new password from standard input (one line) instead of generating one.
        #[arg(long)]
        password_stdin: bool,
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recomputes the hash chain; exits non-zero and names the first broken seq on tamper.
    Verify {
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
    /// Writes every entry to a file.
    Export {
        /// Where to write the entries.
        #[arg(long)]
        out: PathBuf,
        /// The file format.
        #[arg(long, value_enum, default_value = "csv")]
        format: audit_cli::Format,
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Lists the optional indexes and whether the database has each.
    List {
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
    /// Builds an index (PostgreSQL: beside ingest; SQLite: ingest waits for the build).
    Create {
        /// Which index.
        #[arg(value_enum)]
        which: index_cli::Which,
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
    /// Drops an index: ingest no longer writes it, and its lists scan again.
    Drop {
        /// Which index.
        #[arg(value_enum)]
        which: index_cli::Which,
        /// The database: sqlite://PATH or postgres://USER@HOST/DB (the server's database.url).
        #[arg(long, default_value = suanli_store::DEFAULT_DATABASE_URL, env = "SUANLI_DATABASE_URL")]
        database_url: String,
    },
}

/// How a client command reaches the server. Every flag is global, so it may stand before or
/// after the subcommand (`suanli settle create … --token T` and `suanli settle --token T
/// create …`); `main` also moves it from before the command (`suanli --token T settle …`).
#[derive(clap::Args)]
#[command(next_help_heading = "Connection")]
struct Remote {
    /// The server: host:port, http://host:port, or https://host:port for TLS.
    #[arg(long, global = true, default_value = client::DEFAULT_SERVER, env = "SUANLI_SERVER")]
    server: String,
    /// A bearer token from `suanli token create` (may be left out with a provider's client
    /// certificate).
    #[arg(long, global = true, env = "SUANLI_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The CA certificate (PEM) that signed the server's certificate; implies TLS. Without it,
    /// https:// servers are checked against the system's roots.
    #[arg(long, global = true, env = "SUANLI_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS; its CN is the provider id.
    #[arg(
        long,
        global = true,
        env = "SUANLI_CLIENT_CERT",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "SUANLI_CLIENT_KEY",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
}

/// The long names of [`Remote`]'s flags, for moving them from before the command.
const REMOTE_FLAGS: [&str; 5] = [
    "--server",
    "--token",
    "--ca-cert",
    "--client-cert",
    "--client-key",
];

/// The commands that take [`Remote`].
const CLIENT_COMMANDS: [&str; 5] = ["registry", "usage", "settle", "ledger", "balance"];

impl Remote {
    fn target(&self) -> client::Target {
        client::Target {
            server: self.server.clone(),
            ca_cert: self.ca_cert.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        }
    }

    /// The bearer token; without one (and without a client certificate) the command stops
    /// before it connects, saying how to give one.
    fn token(&self) -> anyhow::Result<&str> {
        match (&self.token, &self.client_cert) {
            (Some(t), _) if !t.trim().is_empty() => Ok(t.trim()),
            (_, Some(_)) => Ok(""),
            _ => anyhow::bail!(
                "no token: pass --token TOKEN or set SUANLI_TOKEN (`suanli token create` makes one)"
            ),
        }
    }
}

/// Moves connection flags written before a client command to just after it, so
/// `suanli --token T settle create …` parses like `suanli settle --token T create …`. Anything
/// else is left for clap to judge.
fn hoist_remote_flags(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut leading = Vec::new();
    let mut i = 1;
    while let Some(arg) = args.get(i).and_then(|a| a.to_str()) {
        let name = arg.split_once('=').map_or(arg, |(n, _)| n);
        if !REMOTE_FLAGS.contains(&name) {
            break;
        }
        let takes_next = !arg.contains('=');
        let width = if takes_next { 2 } else { 1 };
        if i + width > args.len() {
            return args;
        }
        leading.extend(args[i..i + width].iter().cloned());
        i += width;
    }
    match args.get(i).and_then(|a| a.to_str()) {
        Some(command) if !leading.is_empty() && CLIENT_COMMANDS.contains(&command) => {
            let mut out = vec![args[0].clone(), args[i].clone()];
            out.extend(leading);
            out.extend(args[i + 1..].iter().cloned());
            out
        }
        _ => args,
    }
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Loads a registry TOML as a new version (needs an admin or finance token).
    Import {
        /// The registry TOML to load.
        #[arg(long)]
        file: PathBuf,
    },
    /// Adds or replaces beneficiaries and grants of the current version: FILE holds only
    /// [[beneficiary]] and [[grant]] tables; the result is stored as a new version.
    Patch {
        /// The TOML fragment: [[beneficiary]] and [[grant]] tables only.
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum UsageCommand {
    /// Streams a usage CSV (the format of `simulate`) to the server in batches.
    Import {
        /// The usage CSV: provider,record_id,beneficiary,sku,start,end,quantity,amount.
        #[arg(long)]
        file: PathBuf,
        /// Records per batch sent to the server (at most the server's limits.batch_records_max).
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Where to write rejected and conflicting rows, if any (default: NAME.rejects.csv in
        /// the current directory, NAME being the file's name). Exit 3: a row was rejected;
        /// 4: a row conflicted with a stored record.
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// The file's encoding; without it UTF-8 (with or without BOM), else GB18030 when the
        /// bytes are not UTF-8.
        #[arg(long, value_enum)]
        encoding: Option<files::Encoding>,
    },
    /// Withdraws one of a provider's records; a posted one is clawed back in the next run.
    Void {
        /// The provider that reported the record.
        #[arg(long)]
        provider: String,
        /// The record's id, as the provider reported it.
        #[arg(long)]
        record_id: String,
        /// Why the record is withdrawn (kept in the audit log).
        #[arg(long)]
        reason: String,
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
    // Colours only for a person at a terminal: not in a log file, a pipe or a journal.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
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
    let cli = Cli::parse_from(hoist_remote_flags(std::env::args_os().collect()));
    // A command that succeeds with an outcome to report (rows rejected) sets its own code.
    let mut exit = ExitCode::SUCCESS;
    let result = match cli.command {
        Command::Simulate { registry, usage, period, prior, out, encoding } => {
            simulate::run(&registry, &usage, &period, prior.as_deref(), &out, encoding)
        }
        Command::Check { registry } => files::load_registry(&registry).map(|registry| {
            outln!(
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
        Command::Serve { config, addr, database_url, metrics_addr, health_addr, http_addr, log_json, trust_proxy_tls, tls_cert, tls_key, tls_client_ca, token_recheck_secs } => {
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
                ("--trust-proxy-tls", trust_proxy_tls.then(|| "true".to_owned())),
            ] {
                if let Some(v) = value {
                    flags.push((flag, v));
                }
            }
            serve(config.as_deref(), &flags)
        }
        Command::Token { command: TokenCommand::Create { user: Some(login), label, expires_in_days, database_url, .. } } => {
            users_cli::token_create_for_user(&database_url, &login, label.as_deref(), expires_in_days)
        }
        Command::Token { command: TokenCommand::Create { user: None, role, provider, beneficiary, expires_in_days, database_url, .. } } => {
            client::token_create(&database_url, role.as_deref().unwrap_or_default(), provider.as_deref(), beneficiary.as_deref(), expires_in_days)
        }
        Command::User { command } => match command {
            UserCommand::Create { login, name, role, provider, beneficiary, email, service, password_stdin, database_url } => {
                users_cli::create(&database_url, users_cli::Create { login, name, role, provider, beneficiary, email, service, password_stdin })
            }
            UserCommand::List { database_url } => users_cli::list(&database_url),
            UserCommand::Disable { login, database_url } => users_cli::disable(&database_url, &login, true),
            UserCommand::Enable { login, database_url } => users_cli::disable(&database_url, &login, false),
            UserCommand::SetRole { login, role, provider, beneficiary, database_url } => {
                users_cli::set_role(&database_url, &login, &role, provider.as_deref(), beneficiary.as_deref())
            }
            UserCommand::ResetTotp { login, database_url } => users_cli::reset_totp(&database_url, &login),
            UserCommand::ResetPassword { login, password_stdin, database_url } => {
                users_cli::reset_password(&database_url, &login, password_stdin)
            }
        },
        Command::Token { command: TokenCommand::List { user, database_url } } => client::token_list(&database_url, user.as_deref()),
        Command::Token { command: TokenCommand::Revoke { hash_prefix, token, database_url } } => {
            client::token_revoke(&database_url, hash_prefix.as_deref(), token.as_deref())
        }
        Command::Index { command: IndexCommand::List { database_url } } => index_cli::list(&database_url),
        Command::Index { command: IndexCommand::Create { which, database_url } } => index_cli::create(&database_url, which),
        Command::Index { command: IndexCommand::Drop { which, database_url } } => index_cli::remove(&database_url, which),
        Command::Audit { command: AuditCommand::Verify { database_url } } => audit_cli::verify(&database_url),
        Command::Audit { command: AuditCommand::Export { out, format, database_url } } => {
            audit_cli::export(&database_url, &out, format)
        }
        Command::Registry { command: RegistryCommand::Import { file }, remote } => remote.token().and_then(|token| {
            runtime().and_then(|rt| rt.block_on(client::registry_import(&remote.target(), token, &file)))
        }),
        Command::Registry { command: RegistryCommand::Patch { file }, remote } => remote.token().and_then(|token| {
            runtime().and_then(|rt| rt.block_on(client::registry_patch(&remote.target(), token, &file)))
        }),
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
                SettleCommand::Explain {
                    run,
                    beneficiary,
                    provider,
                    format,
                    records,
                    records_page,
                } => A::Explain {
                    run_id: run,
                    beneficiary,
                    provider,
                    format,
                    records,
                    records_page,
                },
            };
            remote.token().and_then(|token| {
                runtime().and_then(|rt| rt.block_on(settle_cli::settle(&remote.target(), token, action)))
            })
        }
        Command::Ledger { command, remote } => {
            use settle_cli::LedgerAction as A;
            let action = match command {
                LedgerCommand::RecordPayment { payee, amount, reference, programme } => {
                    A::RecordPayment { payee, amount, reference, programme }
                }
                LedgerCommand::Export { out } => A::Export { out },
                LedgerCommand::TrialBalance => A::TrialBalance,
                LedgerCommand::ImportOpening { programme, file, encoding } => A::ImportOpening { programme, file, encoding },
                LedgerCommand::ConfirmOpening { import } => A::ConfirmOpening { import_id: import },
                LedgerCommand::Openings { programme } => A::Openings { programme },
                LedgerCommand::ConfirmPayment { payment } => A::ConfirmPayment { payment_id: payment },
                LedgerCommand::WithdrawPayment { payment } => A::WithdrawPayment { payment_id: payment },
                LedgerCommand::Payments { awaiting } => A::Payments { awaiting },
            };
            remote.token().and_then(|token| {
                runtime().and_then(|rt| rt.block_on(settle_cli::ledger(&remote.target(), token, action)))
            })
        }
        Command::Balance { beneficiary, year, payee, remote } => remote.token().and_then(|token| {
            runtime().and_then(|rt| rt.block_on(settle_cli::balance(&remote.target(), token, beneficiary, year, payee)))
        }),
        Command::Usage { command: UsageCommand::Void { provider, record_id, reason }, remote } => remote.token().and_then(|token| {
            runtime().and_then(|rt| rt.block_on(settle_cli::void(&remote.target(), token, provider, record_id, reason)))
        }),
        Command::Usage { command: UsageCommand::Import { file, batch_size, rejects, encoding }, remote } => remote.token().and_then(|token| {
            let outcome = runtime()
                .and_then(|rt| rt.block_on(client::usage_import(&remote.target(), token, &file, batch_size, rejects, encoding)))?;
            exit = ExitCode::from(outcome.exit_code());
            Ok(())
        }),
    };
    match result {
        Ok(()) => exit,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command below `command`, with its path (`suanli settle create`).
    fn walk(command: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in command.get_subcommands().filter(|c| c.get_name() != "help") {
            let sub_path = format!("{path} {}", sub.get_name());
            out.push((sub_path.clone(), sub.clone()));
            walk(sub, &sub_path, out);
        }
    }

    fn commands() -> Vec<(String, clap::Command)> {
        let mut root = Cli::command();
        root.build();
        let mut out = vec![("suanli".to_owned(), root.clone())];
        walk(&root, "suanli", &mut out);
        out
    }

    // Every argument of every command says what it is for in its help.
    #[test]
    fn every_argument_has_a_help_line() {
        let mut lacking = Vec::new();
        for (path, command) in commands() {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    lacking.push(format!("{path}: {id}"));
                }
            }
        }
        assert!(lacking.is_empty(), "arguments without help: {lacking:#?}");
    }

    // Every client command lists the connection flags in its own help, so they may follow the
    // subcommand; the offline commands do not.
    #[test]
    fn every_client_command_lists_the_connection_flags() {
        let mut checked = 0;
        for (path, mut command) in commands() {
            let words: Vec<&str> = path.split(' ').collect();
            let help = command.render_long_help().to_string();
            let client = words.get(1).is_some_and(|w| CLIENT_COMMANDS.contains(w));
            for flag in REMOTE_FLAGS {
                let flag = &format!("{flag} <");
                if client {
                    assert!(help.contains(flag), "{path} --help lists {flag}:\n{help}");
                } else if words.len() > 1 && words[1] != "token" {
                    assert!(!help.contains(flag), "{path} --help has no {flag}:\n{help}");
                }
            }
            if client && command.get_subcommands().next().is_none() {
                assert!(help.contains("SUANLI_TOKEN") && help.contains("SUANLI_SERVER"));
                checked += 1;
            }
        }
        assert!(
            checked >= 14,
            "the leaf client commands were walked: {checked}"
        );
    }

    // `serve --help` says the web console is served too.
    #[test]
    fn serve_help_mentions_the_web_console() {
        let mut root = Cli::command();
        let help = root
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_long_help()
            .to_string();
        assert!(help.contains("web console"), "{help}");
        assert!(help.contains("--http-addr"), "{help}");
    }

    fn parse(line: &str) -> Cli {
        let args = line.split(' ').map(std::ffi::OsString::from).collect();
        Cli::try_parse_from(hoist_remote_flags(args)).expect(line)
    }

    fn settle_remote(cli: Cli) -> (String, Option<String>) {
        match cli.command {
            Command::Settle { remote, .. } => (remote.server, remote.token),
            _ => panic!("a settle command"),
        }
    }

    // The connection flags parse in every position: after the subcommand, between, and before
    // the command (moved there by `hoist_remote_flags`).
    #[test]
    fn connection_flags_parse_in_any_position() {
        let want = ("h:1".to_owned(), Some("T".to_owned()));
        for line in [
            "suanli settle create --programme p --period 2025-03 --token T --server h:1",
            "suanli settle --token T create --programme p --server=h:1 --period 2025-03",
            "suanli --token T --server h:1 settle create --programme p --period 2025-03",
            "suanli --token=T settle --server h:1 create --programme p --period 2025-03",
        ] {
            assert_eq!(settle_remote(parse(line)), want, "{line}");
        }
        match parse("suanli usage import --file f.csv --token T").command {
            Command::Usage { remote, .. } => assert_eq!(remote.token.as_deref(), Some("T")),
            _ => panic!("usage import"),
        }
        // Before an offline command the flags are not moved, and clap refuses them.
        let args = "suanli --token T simulate"
            .split(' ')
            .map(Into::into)
            .collect();
        assert!(Cli::try_parse_from(hoist_remote_flags(args)).is_err());
    }

    // Without a token or a client certificate a client command says how to give one.
    #[test]
    fn a_missing_token_says_how_to_give_one() {
        let cli = parse("suanli settle list");
        let Command::Settle { remote, .. } = cli.command else {
            panic!("settle")
        };
        if std::env::var_os("SUANLI_TOKEN").is_none() {
            let err = remote.token().unwrap_err().to_string();
            assert!(
                err.contains("--token") && err.contains("SUANLI_TOKEN"),
                "{err}"
            );
        }
    }
}
