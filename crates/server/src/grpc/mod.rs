//! The gRPC services, one module each: metering (ingest, void, stats), registry, settlement,
//! ledger and balance. Each module maps proto ↔ use case beside its service; this module holds
//! what they share: the state, the caller and its role check, and the mapping of use-case errors
//! to gRPC statuses.

use std::sync::{Arc, RwLock};

use chrono::DateTime;
use suanli_app::audit::Actor;
use suanli_app::ingest::{Writer, WriterError};
use suanli_app::metrics::METRICS;
use suanli_app::settlement::SettleError;
use suanli_domain::Registry;
use suanli_store::{Principal, RegistryVersionRow};
use tonic::{Request, Status};

use crate::auth::Authenticator;

pub mod balance;
pub mod ledger;
pub mod metering;
pub mod registry;
pub mod settlement;

pub use balance::BalanceService;
pub use ledger::LedgerService;
pub use metering::MeteringService;
pub use registry::RegistryService;
pub use settlement::SettlementService;

/// The registry version records are validated against.
pub struct CurrentRegistry {
    pub version: u64,
    pub content_hash: String,
    pub loaded_at: String,
    /// Shared with settlement's cache of parsed registries.
    pub registry: Arc<Registry>,
    /// The version's text: a patch is merged onto it.
    pub toml_text: Arc<str>,
}

impl CurrentRegistry {
    pub fn from_row(row: RegistryVersionRow) -> anyhow::Result<CurrentRegistry> {
        let (registry, _) =
            Registry::from_toml(&format!("registry version {}", row.version), &row.toml_text)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "stored registry version {} no longer loads: {e}",
                        row.version
                    )
                })?;
        let registry = Arc::new(registry);
        suanli_app::registry::remember_registry(&row.content_hash, registry.clone());
        Ok(CurrentRegistry {
            version: row.version,
            content_hash: row.content_hash,
            loaded_at: row.loaded_at,
            registry,
            toml_text: row.toml_text.into(),
        })
    }
}

pub(crate) fn timestamp_of_text(text: &str) -> Option<prost_types::Timestamp> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        })
}

/// State shared by the services.
pub struct Shared {
    pub writer: Writer,
    pub auth: Authenticator,
    pub registry: RwLock<Option<Arc<CurrentRegistry>>>,
    /// `limits.batch_records_max`.
    pub batch_records_max: usize,
    /// `limits.stream_idle_secs`: how long a stream may wait for its client's next message.
    pub stream_idle: std::time::Duration,
    /// `limits.registry_bytes_max`.
    pub registry_bytes_max: usize,
    /// `limits.message_bytes_max`: a run's lines go in its RunResponse only when they fit.
    pub message_bytes_max: usize,
    /// The maintained balance figures, read beside the writer and shared by the balance
    /// service and the console so both catch up from the same point.
    pub balances: suanli_app::balances::Balances,
    /// `ledger.payment_confirm_above_fen`: payments of more need a second finance user.
    pub payment_confirm_above: Option<suanli_domain::money::Fen>,
}

impl Shared {
    pub(crate) fn current(&self) -> Option<Arc<CurrentRegistry>> {
        self.registry.read().expect("registry lock").clone()
    }

    /// Makes `current` the version records are validated against, unless a newer one is
    /// already installed (loads through this server and through others race).
    pub(crate) fn install_registry(&self, current: Arc<CurrentRegistry>) {
        let mut slot = self.registry.write().expect("registry lock");
        if slot.as_ref().is_none_or(|s| s.version <= current.version) {
            *slot = Some(current);
        }
    }
}

pub(crate) fn writer_status(e: WriterError) -> Status {
    match e {
        WriterError::Gone => Status::unavailable("the server is shutting down"),
        WriterError::Store(msg) => Status::unavailable(format!(
            "storage failed, nothing of this batch was stored; retry: {msg}"
        )),
    }
}

pub(crate) fn status_of(e: SettleError) -> Status {
    match e {
        SettleError::NotFound(m) => Status::not_found(m),
        SettleError::InvalidArgument(m) => Status::invalid_argument(m),
        SettleError::FailedPrecondition(m) => Status::failed_precondition(m),
        SettleError::PermissionDenied(m) => Status::permission_denied(m),
        SettleError::AlreadyExists(m) => Status::already_exists(m),
        SettleError::Store(e) => Status::internal(format!("store: {e}")),
        SettleError::Unavailable(m) => Status::unavailable(m),
    }
}

/// Who is calling: the principal and the audit actor (the token's user, see
/// [`suanli_app::audit::Actor`]).
pub(crate) struct Caller {
    pub(crate) principal: Principal,
    pub(crate) actor: Actor,
}

pub(crate) async fn caller<T>(shared: &Shared, request: &Request<T>) -> Result<Caller, Status> {
    let identity = shared.auth.identity(request.extensions()).await?;
    let actor = crate::auth::actor_of_request(&identity, request.extensions(), request.metadata());
    Ok(Caller {
        principal: identity.principal,
        actor,
    })
}

pub(crate) fn require(caller: &Caller, allowed: &[&str], what: &str) -> Result<(), Status> {
    if allowed.contains(&caller.principal.role()) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "{what} needs one of the roles {}; this token is {}",
            allowed.join(", "),
            caller.principal.role()
        )))
    }
}

pub(crate) const FINANCE: &[&str] = &["finance"];
pub(crate) const READERS: &[&str] = &["finance", "auditor", "admin"];

pub(crate) async fn on_store<R: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&mut dyn suanli_store::Store) -> Result<R, SettleError> + Send + 'static,
) -> Result<R, Status> {
    shared
        .writer
        .call(f)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?
        .map_err(status_of)
}

/// The largest reply carrying rows of any number (a run's lines, journals, the trial balance),
/// below the server's message limit too: the largest message gRPC clients accept by default
/// (tonic's and grpc-go's 4 MiB), so a client that sets no limit reads any of them.
const REPLY_BYTES_MAX: usize = 4 * 1024 * 1024;

pub(crate) fn reply_bytes_max(shared: &Shared) -> usize {
    shared.message_bytes_max.min(REPLY_BYTES_MAX)
}

/// A message of a server stream takes a few bytes beyond what it carries (its framing, a page's
/// position): a stream's messages are filled to [`reply_bytes_max`] less this.
pub(crate) const STREAM_MESSAGE_SLACK: usize = 64;

/// A server stream of what a reader sends.
pub(crate) type PageStream<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// Streams what `read` produces. `read` runs on a thread with a read connection of its own (no
/// use of the writer), reads the store page by page, each page in its own transaction, and
/// hands each message to its `send`, which waits for the client to take it: anything of any
/// size is sent with a few messages in memory. `send` returns false once the stream is over
/// (the client went away, or took nothing for limits.stream_idle_secs: the client then gets
/// that reason after the messages it had taken, never an end that looks complete), and `read`
/// should stop. An error of `read` ends the stream with its status. `what` names what is read
/// in the log.
pub(crate) fn page_stream<T: Send + 'static>(
    shared: &Arc<Shared>,
    what: &'static str,
    read: impl FnOnce(
        &mut dyn suanli_app::settlement::Transact,
        &mut dyn FnMut(T) -> bool,
    ) -> Result<(), SettleError>
    + Send
    + 'static,
) -> PageStream<T> {
    let idle = shared.stream_idle;
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let runtime = tokio::runtime::Handle::current();
    let send = move |item: Result<T, Status>| {
        use tokio::sync::mpsc::error::SendTimeoutError;
        match runtime.block_on(tx.send_timeout(item, idle)) {
            Ok(()) => true,
            Err(SendTimeoutError::Closed(_)) => false,
            Err(SendTimeoutError::Timeout(_)) => {
                let _ = runtime.block_on(tx.send_timeout(
                    Err(Status::deadline_exceeded(format!(
                        "stream idle: the client took nothing for {} s (limits.stream_idle_secs); the server ended the stream",
                        idle.as_secs()
                    ))),
                    idle,
                ));
                false
            }
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let read = shared
            .balances
            .read_alone(move |s| {
                if let Err(e) = read(s, &mut |item| send(Ok(item))) {
                    send(Err(status_of(e)));
                }
                Ok(())
            })
            .await;
        if let Err(e) = read {
            tracing::warn!(error = %e, "{what} could not be read");
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Sets the pool and posted-total gauges of every programme of the current registry; the posted
/// total is read from the store (the sum of its posted runs' lines).
pub async fn refresh_programme_gauges(shared: &Shared) {
    let Some(current) = shared.registry.read().expect("registry lock").clone() else {
        return;
    };
    for p in &current.registry.programmes {
        METRICS
            .programme_pool_fen
            .with_label_values(&[p.id.as_str()])
            .set(p.pool.map_or(0, |f| f.0));
    }
    let ids: Vec<String> = current
        .registry
        .programmes
        .iter()
        .map(|p| p.id.clone())
        .collect();
    let totals = shared
        .writer
        .call(move |s| suanli_app::balances::settled_totals(s, &ids))
        .await;
    match totals {
        Ok(Ok(totals)) => {
            for (id, total) in totals {
                METRICS
                    .programme_posted_fen
                    .with_label_values(&[id.as_str()])
                    .set(total);
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot compute programme totals for metrics"),
        Err(e) => tracing::warn!(error = %e, "cannot compute programme totals for metrics"),
    }
}

/// Longest id or reference in a request (programme, period, beneficiary, provider, payee,
/// payment reference, journal kind or account prefix), in bytes: the bound of a record's ids.
pub use suanli_domain::usage::ID_BYTES_MAX;
/// Longest file name a registry load may carry (it names the file in error messages).
pub const FILE_NAME_BYTES_MAX: usize = 256;

/// Refuses a request text field longer than `max` bytes or holding a control character, naming
/// the field: such a value could only be a mistake or an attack, and every id the service
/// stores is bounded the same way.
pub(crate) fn bounded(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() > max {
        return Err(Status::invalid_argument(format!(
            "{field} is {} bytes; at most {max}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "{field} holds a control character"
        )));
    }
    Ok(())
}
