//! CLI clients of a running server: `suanli registry import` and `suanli usage import`, and
//! `suanli token create`, which works directly against the database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use suanli_app::audit::Actor;
use suanli_proto::v1 as pb;
use suanli_proto::v1::metering_service_client::MeteringServiceClient;
use suanli_proto::v1::registry_service_client::RegistryServiceClient;
use suanli_store::Principal;
use suanli_store::tokens::{self, TokenRow};
use suanli_store::users::UserRow;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::files;

/// Longest token lifetime `--expires-in-days` accepts: ten years.
pub const TOKEN_DAYS_MAX: u32 = 3650;

fn time_text(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The principal of `--role` with `--provider` or `--beneficiary`.
pub fn principal_of(
    role: &str,
    provider: Option<&str>,
    beneficiary: Option<&str>,
) -> anyhow::Result<Principal> {
    let subject_id = match role {
        "provider" => provider.context("--provider ID is required for role provider")?,
        "beneficiary" => {
            beneficiary.context("--beneficiary ID is required for role beneficiary")?
        }
        _ => {
            if provider.is_some() || beneficiary.is_some() {
                bail!("--provider and --beneficiary apply only to roles provider and beneficiary");
            }
            ""
        }
    };
    Principal::from_parts(role, subject_id).with_context(|| {
        format!("unknown role {role:?}: expected provider, beneficiary, finance, auditor or admin")
    })
}

/// `suanli token create --role`: a token of the generated service account of the role and
/// subject (`svc-ROLE[-SUBJECT]`), kept for scripts written before users.
pub fn token_create(
    database_url: &str,
    role: &str,
    provider: Option<&str>,
    beneficiary: Option<&str>,
    expires_in_days: Option<u32>,
) -> anyhow::Result<()> {
    let principal = principal_of(role, provider, beneficiary)?;
    issue_token(database_url, principal, None, None, expires_in_days)
}

/// Creates a token of `principal` for `user` (its generated service account when `None`),
/// audited with its label; prints it once.
pub fn issue_token(
    database_url: &str,
    principal: Principal,
    user: Option<UserRow>,
    label: Option<&str>,
    expires_in_days: Option<u32>,
) -> anyhow::Result<()> {
    if let Some(days) = expires_in_days
        && !(1..=TOKEN_DAYS_MAX).contains(&days)
    {
        bail!("--expires-in-days must be 1 to {TOKEN_DAYS_MAX}");
    }
    let role = principal.role();
    let subject_id = principal.subject().to_owned();
    let token = suanli_server::auth::new_token();
    let mut store =
        suanli_store::open(database_url).with_context(|| format!("cannot open {database_url}"))?;
    let now = chrono::Utc::now();
    let mut row = TokenRow {
        token_hash: suanli_server::auth::hash_token(&token),
        principal: principal.clone(),
        created_at: time_text(now),
        expires_at: expires_in_days.map(|d| time_text(now + chrono::Duration::days(d.into()))),
        revoked_at: None,
        user: user.as_ref().map(UserRow::user_ref),
        user_disabled_at: None,
        label: label.unwrap_or_default().to_owned(),
    };
    let who = Actor::operator();
    let subject = format!("token:{}", &row.token_hash[..12]);
    let expires_at = row.expires_at.clone().unwrap_or_default();
    let label = label.unwrap_or_default();
    let mut owner = None;
    // The token and its audit entry commit together.
    store.transaction(&mut |tx| {
        tokens::insert(tx, &row)?;
        let stored = tokens::lookup(tx, &row.token_hash)?;
        let user = stored.and_then(|t| t.user);
        let user_id = user
            .as_ref()
            .map_or(String::new(), |u| u.user_id.to_string());
        who.record(
            tx,
            "token.create",
            &subject,
            &[
                &row.token_hash,
                role,
                &subject_id,
                &expires_at,
                &user_id,
                label,
            ],
        )?;
        owner = user;
        Ok(())
    })?;
    row.user = owner;
    let article = if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    eprintln!(
        "created {article} {role} token{}{}{}; it is shown once and only its hash ({}…) is stored:",
        if subject_id.is_empty() {
            String::new()
        } else {
            format!(" for {subject_id}")
        },
        row.user.as_ref().map_or_else(String::new, |u| format!(
            " of user {}",
            suanli_app::audit::user_display(u)
        )),
        row.expires_at
            .as_deref()
            .map_or_else(String::new, |e| format!(
                ", expiring at {}",
                crate::settle_cli::shanghai(e)
            )),
        &row.token_hash[..12]
    );
    outln!("{token}");
    Ok(())
}

/// `suanli token list [--user LOGIN]`: every token (or a user's), by its hash's first 12 hex
/// digits, with its user, role, label and lifetime. Tokens themselves are never stored.
pub fn token_list(database_url: &str, user: Option<&str>) -> anyhow::Result<()> {
    let mut store =
        suanli_store::open(database_url).with_context(|| format!("cannot open {database_url}"))?;
    let mut rows = Vec::new();
    store.transaction(&mut |tx| {
        rows = tokens::all(tx)?;
        Ok(())
    })?;
    if let Some(login) = user {
        rows.retain(|t| t.user.as_ref().is_some_and(|u| u.login == login));
        if rows.is_empty() {
            bail!("user {login:?} has no token (or does not exist)");
        }
    }
    outln!("hash\tuser\trole\tsubject\tlabel\tcreated_at\tstatus");
    for t in rows {
        let status = match (&t.revoked_at, &t.expires_at, &t.user_disabled_at) {
            (Some(at), _, _) => format!("revoked {at}"),
            (None, _, Some(at)) => format!("user disabled {at}"),
            (None, Some(at), None) => format!("expires {at}"),
            (None, None, None) => "active".to_owned(),
        };
        outln!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{status}",
            &t.token_hash[..t.token_hash.len().min(12)],
            t.user
                .as_ref()
                .map_or_else(String::new, suanli_app::audit::user_display),
            t.principal.role(),
            t.principal.subject(),
            t.label,
            t.created_at,
        );
    }
    Ok(())
}

/// Fewest hex digits `--hash-prefix` accepts, so a typo cannot match by accident.
pub const HASH_PREFIX_DIGITS_MIN: usize = 8;

pub fn token_revoke(
    database_url: &str,
    hash_prefix: Option<&str>,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let prefix = match (hash_prefix, token) {
        (Some(p), None) => {
            let p = p.trim().to_ascii_lowercase();
            if p.len() < HASH_PREFIX_DIGITS_MIN || !p.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!(
                    "--hash-prefix must be at least {HASH_PREFIX_DIGITS_MIN} hex digits of the token's sha256"
                );
            }
            p
        }
        (None, Some(t)) => suanli_server::auth::hash_token(t.trim()),
        _ => bail!("give either --hash-prefix or --token"),
    };
    let mut store =
        suanli_store::open(database_url).with_context(|| format!("cannot open {database_url}"))?;
    let who = Actor::operator();
    let at = time_text(chrono::Utc::now());
    let mut outcome: Option<(Vec<TokenRow>, bool)> = None;
    // The revocation and its audit entry commit together.
    store.transaction(&mut |tx| {
        let found = tokens::by_prefix(tx, &prefix)?;
        let mut revoked = false;
        if let [one] = found.as_slice() {
            revoked = tokens::revoke(tx, &one.token_hash, &at)?;
            if revoked {
                let subject = format!("token:{}", &one.token_hash[..12]);
                who.record(tx, "token.revoke", &subject, &[&one.token_hash, &at])?;
            }
        }
        outcome = Some((found, revoked));
        Ok(())
    })?;
    let (found, revoked) = outcome.expect("the transaction ran");
    let one = match found.as_slice() {
        [] => bail!("no token's hash starts with {prefix}"),
        [one] => one,
        many => bail!(
            "{} tokens' hashes start with {prefix}; give more digits",
            many.len()
        ),
    };
    let who = match one.principal.subject() {
        "" => one.principal.role().to_owned(),
        s => format!("{} {s}", one.principal.role()),
    };
    if revoked {
        outln!(
            "revoked the {who} token {}…; a running server refuses it within its --token-recheck-secs",
            &one.token_hash[..12]
        );
    } else {
        outln!(
            "the {who} token {}… was already revoked at {}",
            &one.token_hash[..12],
            one.revoked_at
                .as_deref()
                .map_or_else(|| "?".to_owned(), crate::settle_cli::shanghai)
        );
    }
    Ok(())
}

/// The server a client command reaches without `--server` or `SUANLI_SERVER`.
pub const DEFAULT_SERVER: &str = "127.0.0.1:50051";

/// Where and how the CLI reaches a server.
pub struct Target {
    pub server: String,
    pub ca_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// A gRPC status as a person reads it: a short word for the code, then the server's message,
/// without tonic's generic sentence for the code ("The caller does not have permission to
/// execute the specified operation").
pub(crate) fn grpc_error(status: tonic::Status) -> anyhow::Error {
    use tonic::Code;
    let word = match status.code() {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "error",
        Code::InvalidArgument => "invalid",
        Code::DeadlineExceeded => "timed out",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "limit reached",
        Code::FailedPrecondition => "refused",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not supported by this server",
        Code::Internal => "server error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    };
    match status.message().trim() {
        "" => anyhow::anyhow!("{word}"),
        message => anyhow::anyhow!("{word}: {message}"),
    }
}

/// The innermost cause of an error, e.g. "Connection refused (os error 111)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Connects to the server; TLS when the URL is https:// or a CA or client certificate is given.
pub(crate) async fn channel(target: &Target) -> anyhow::Result<Channel> {
    let tls_wanted = target.ca_cert.is_some() || target.client_cert.is_some();
    let url = match target.server.split_once("://") {
        Some(("http", _)) if tls_wanted => bail!(
            "--ca-cert and --client-cert need TLS: use https://{}",
            target.server.trim_start_matches("http://")
        ),
        Some(_) => target.server.clone(),
        None if tls_wanted => format!("https://{}", target.server),
        None => format!("http://{}", target.server),
    };
    let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| {
        anyhow::anyhow!(
            "--server {:?} is not a server address ({}); give host:port, http://host:port or https://host:port",
            target.server,
            root_cause(&e)
        )
    })?;
    if url.starts_with("https://") {
        let read = |flag: &str, path: &Path| {
            std::fs::read(path).with_context(|| format!("{flag}: cannot read {}", path.display()))
        };
        let mut tls = ClientTlsConfig::new();
        tls = match &target.ca_cert {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read("--ca-cert", ca)?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&target.client_cert, &target.client_key) {
            tls = tls.identity(Identity::from_pem(
                read("--client-cert", cert)?,
                read("--client-key", key)?,
            ));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    endpoint.connect().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to the server at {url} ({}); is `suanli serve` running there? \
             Point --server or SUANLI_SERVER at it",
            root_cause(&e)
        )
    })
}

/// Adds the bearer token; an empty token sends none (a client certificate may authenticate).
pub(crate) fn authorize<T>(message: T, token: &str) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    if token.is_empty() {
        return Ok(request);
    }
    let value: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .context("token is not a valid header value")?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// Bytes of registry text per message: under the smallest message limit a server accepts
/// (64 KiB), so a registry of any size loads whatever the server's `limits.message_bytes_max`.
const REGISTRY_CHUNK_BYTES: usize = 60 * 1024;

/// The chunks of a registry text, the first carrying its file name and total size.
fn registry_chunks(file: &Path, text: Vec<u8>) -> Vec<pb::RegistryChunk> {
    let total_bytes = text.len() as u64;
    let mut chunks: Vec<pb::RegistryChunk> = text
        .chunks(REGISTRY_CHUNK_BYTES)
        .map(|c| pb::RegistryChunk {
            text: c.to_vec(),
            ..Default::default()
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(pb::RegistryChunk::default());
    }
    chunks[0].file_name = file.display().to_string();
    chunks[0].total_bytes = total_bytes;
    chunks
}

fn version_line(current: &pb::RegistryVersion, created: bool) -> String {
    format!(
        "registry version {} {} (sha256 {}): {} provider(s), {} SKU(s), {} beneficiary(ies), {} programme(s)",
        current.version,
        if created { "loaded" } else { "unchanged" },
        current.content_hash,
        current.providers,
        current.skus,
        current.beneficiaries,
        current.programmes
    )
}

/// Streams a registry file to the server in chunks (`LoadRegistryStream`), so its size is bound
/// by the server's `limits.registry_bytes_max`, not by the message size limit.
pub async fn registry_import(server: &Target, token: &str, file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut client = RegistryServiceClient::new(channel(server).await?);
    let chunks = tokio_stream::iter(registry_chunks(file, text));
    let response = client
        .load_registry_stream(authorize(chunks, token)?)
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    for w in &response.warnings {
        eprintln!("warning: {w}");
    }
    let current = response.current.context("server returned no version")?;
    outln!("{}", version_line(&current, response.created));
    Ok(())
}

/// Sends a fragment of `[[beneficiary]]` and `[[grant]]` tables (`PatchRegistry`); the server
/// merges it onto the current version and stores the result as a new version.
pub async fn registry_patch(server: &Target, token: &str, file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut client = RegistryServiceClient::new(channel(server).await?);
    let chunks = tokio_stream::iter(registry_chunks(file, text));
    let response = client
        .patch_registry(authorize(chunks, token)?)
        .await
        .map_err(grpc_error)?
        .into_inner();
    for w in &response.warnings {
        eprintln!("warning: {w}");
    }
    let current = response.current.context("server returned no version")?;
    outln!(
        "patch onto version {}: beneficiaries {} added, {} changed; grants {} added, {} changed",
        response.base_version,
        response.beneficiaries_added,
        response.beneficiaries_changed,
        response.grants_added,
        response.grants_changed
    );
    outln!("{}", version_line(&current, response.created));
    Ok(())
}

fn to_timestamp(t: chrono::DateTime<chrono::FixedOffset>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// The line, provider and record id of a sent row, to name it in the rejects file.
type RowKey = (u64, String, String);

/// One line of the rejects file.
struct Reject {
    provider: String,
    record_id: String,
    line: u64,
    reason: String,
    message: String,
}

/// What `usage import` did with a file's records, for its exit code.
pub struct ImportOutcome {
    pub rejected: u64,
    pub conflicts: u64,
}

/// `usage import` exits 3 when a row was rejected.
pub const EXIT_REJECTED: u8 = 3;
/// `usage import` exits 4 when a row conflicted with a stored record (even if others were
/// rejected too: a conflict needs someone to look at what is stored, not just a fixed row).
pub const EXIT_CONFLICT: u8 = 4;

impl ImportOutcome {
    pub fn exit_code(&self) -> u8 {
        if self.conflicts > 0 {
            EXIT_CONFLICT
        } else if self.rejected > 0 {
            EXIT_REJECTED
        } else {
            0
        }
    }
}

/// The rejects file of `usage import` by default: in the current directory, named after the
/// input file (`march.csv` → `march.csv.rejects.csv`), so a read-only or shared input
/// directory is never written to.
fn default_rejects_path(file: &Path) -> PathBuf {
    let mut name = file
        .file_name()
        .map_or_else(|| "usage".into(), ToOwned::to_owned);
    name.push(".rejects.csv");
    PathBuf::from(name)
}

pub async fn usage_import(
    server: &Target,
    token: &str,
    file: &Path,
    batch_records: usize,
    rejects_path: Option<PathBuf>,
    encoding: Option<files::Encoding>,
) -> anyhow::Result<ImportOutcome> {
    let ceiling = suanli_server::config::BATCH_RECORDS_BOUNDS.1 as usize;
    if !(1..=ceiling).contains(&batch_records) {
        bail!(
            "--batch-size must be 1 to {ceiling} (and at most the server's limits.batch_records_max)"
        );
    }
    let rows = files::read_usage(file, encoding)?;
    let total = rows.len();
    let mut rejects = Vec::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    // Records that parse locally are sent; the server validates them against the registry.
    let mut batches: Vec<(Vec<pb::UsageRecord>, Vec<RowKey>)> = Vec::new();
    let mut current = (Vec::new(), Vec::new());
    for row in rows {
        match row.parsed {
            Err(rejection) => {
                *counts.entry("rejected").or_default() += 1;
                rejects.push(Reject {
                    provider: row.provider,
                    record_id: row.record_id,
                    line: row.line,
                    reason: rejection.code.as_str().to_owned(),
                    message: rejection.message,
                });
            }
            Ok(r) => {
                current
                    .1
                    .push((row.line, r.provider.clone(), r.record_id.clone()));
                current.0.push(pb::UsageRecord {
                    provider: r.provider,
                    record_id: r.record_id,
                    beneficiary: r.beneficiary,
                    sku: r.sku,
                    start: Some(to_timestamp(r.start)),
                    end: Some(to_timestamp(r.end)),
                    quantity: r.quantity.to_string(),
                    amount_fen: r.amount.0,
                });
                if current.0.len() == batch_records {
                    batches.push(std::mem::take(&mut current));
                }
            }
        }
    }
    if !current.0.is_empty() {
        batches.push(current);
    }
    let started = Instant::now();
    let mut client = MeteringServiceClient::new(channel(server).await?)
        .max_decoding_message_size(suanli_server::serve::MESSAGE_BYTES_MAX)
        .max_encoding_message_size(suanli_server::serve::MESSAGE_BYTES_MAX);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::IngestRequest>(4);
    let mut lines = Vec::with_capacity(batches.len());
    let mut requests = Vec::with_capacity(batches.len());
    for (i, (records, keys)) in batches.into_iter().enumerate() {
        lines.push(keys);
        requests.push(pb::IngestRequest {
            batch_id: i.to_string(),
            records,
        });
    }
    let sender = tokio::spawn(async move {
        for r in requests {
            if tx.send(r).await.is_err() {
                break;
            }
        }
    });
    let mut acks = client
        .ingest_stream(authorize(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            token,
        )?)
        .await
        .map_err(grpc_error)?
        .into_inner();
    let mut done = 0usize;
    let batch_count = lines.len();
    while let Some(ack) = acks.message().await.map_err(grpc_error)? {
        let index: usize = ack
            .batch_id
            .parse()
            .context("server echoed an unknown batch id")?;
        let keys = lines
            .get(index)
            .context("server echoed an unknown batch id")?;
        for &o in &ack.outcomes {
            let label = match pb::Outcome::try_from(o) {
                Ok(pb::Outcome::Accepted) => "accepted",
                Ok(pb::Outcome::Duplicate) => "duplicate",
                Ok(pb::Outcome::Conflict) => "conflict",
                Ok(pb::Outcome::Rejected) => "rejected",
                _ => "unknown",
            };
            *counts.entry(label).or_default() += 1;
        }
        for p in &ack.problems {
            let outcome = pb::Outcome::try_from(p.outcome).unwrap_or(pb::Outcome::Unspecified);
            if outcome == pb::Outcome::Duplicate {
                continue;
            }
            let (line, provider, record_id) =
                keys.get(p.index as usize).cloned().unwrap_or_default();
            let reason = match outcome {
                pb::Outcome::Conflict => "conflict".to_owned(),
                _ => pb::RejectReason::try_from(p.reason).map_or("unspecified".to_owned(), |r| {
                    r.as_str_name()
                        .trim_start_matches("REJECT_REASON_")
                        .to_ascii_lowercase()
                }),
            };
            rejects.push(Reject {
                provider,
                record_id,
                line,
                reason,
                message: p.message.clone(),
            });
        }
        done += 1;
        eprint!(
            "\rbatches {done}/{batch_count}, records {}/{total}",
            counts.values().sum::<u64>()
        );
    }
    eprintln!();
    sender.await?;
    if done != batch_count {
        bail!(
            "the server acknowledged {done} of {batch_count} batches; resend the file (resending is safe)"
        );
    }
    rejects.sort_by_key(|r| r.line);
    // A rejects file only when there are rejects, so its presence means work to do.
    let written = if rejects.is_empty() {
        None
    } else {
        let path = rejects_path.unwrap_or_else(|| default_rejects_path(file));
        write_rejects(&path, &rejects)?;
        Some(path)
    };
    let elapsed = started.elapsed();
    let summary: Vec<String> = ["accepted", "duplicate", "conflict", "rejected"]
        .iter()
        .map(|k| format!("{k} {}", counts.get(k).copied().unwrap_or(0)))
        .collect();
    outln!(
        "{} record(s) in {:.1?}: {}{}",
        total,
        elapsed,
        summary.join(", "),
        written
            .as_ref()
            .map_or_else(String::new, |p| format!("; rejects in {}", p.display()))
    );
    Ok(ImportOutcome {
        rejected: counts.get("rejected").copied().unwrap_or(0),
        conflicts: counts.get("conflict").copied().unwrap_or(0),
    })
}

fn write_rejects(path: &Path, rejects: &[Reject]) -> anyhow::Result<()> {
    let context = || format!("cannot write {}", path.display());
    let mut w = csv::Writer::from_path(path).with_context(context)?;
    w.write_record(["provider", "record_id", "line", "reason", "message"])
        .with_context(context)?;
    for r in rejects {
        w.write_record([
            r.provider.as_str(),
            r.record_id.as_str(),
            &r.line.to_string(),
            r.reason.as_str(),
            r.message.as_str(),
        ])
        .with_context(context)?;
    }
    w.flush().with_context(context)?;
    Ok(())
}
