//! Suanli's persistence behind one trait, [`Store`], with a SQLite and a PostgreSQL backend.
//! A store is driven by one writer (the server's group-commit thread); every method that
//! changes data runs in one transaction, and `ingest` decides duplicate, conflict and capacity
//! for a whole group of batches in that transaction.
//!
//! Depends on `suanli-domain` and the database drivers only: never on the use cases
//! (`suanli-app`), the server, the CLI or the protobuf types (`crates/app/tests/purity.rs`).

pub mod audit;
mod common;
pub mod ingest_stats;
pub mod ledger;
pub mod lists;
pub mod opening;
pub mod payments;
pub mod postgres;
pub mod record_indexes;
pub mod records;
pub mod sql;
pub mod sqlite;
pub mod tokens;
pub mod users;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use suanli_domain::registry::Class;
use suanli_domain::usage::{Period, UsageRecord};

pub use common::{class_code, class_of_code};

/// Errors of the storage layer. Business outcomes (duplicate, conflict, over capacity) are
/// [`Decision`]s, not errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Built through `From`, which also notes a failed sync ([`sync_failure`]).
    #[error("sqlite: {0}")]
    Sqlite(#[source] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("unsupported database url {0:?}: expected sqlite://PATH or postgres://…")]
    Url(String),
    #[error("no database at {0} (suanli serve creates it)")]
    NoDatabase(String),
    #[error("cannot create {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Sending COPY data to PostgreSQL failed (the connection's error, as `std::io::Write`
    /// reports it).
    #[error("postgres: sending COPY data: {0}")]
    CopySend(std::io::Error),
    #[error("folding pending accrual deltas in the background: {0}")]
    BackgroundFold(String),
    /// The database would acknowledge commits it has not made durable.
    #[error("{0}")]
    NotDurable(String),
    /// The background fold thread has ended; pending deltas are no longer folded.
    #[error("the accrual fold thread has stopped: {0}")]
    FoldStopped(String),
    /// A sum of stored amounts or counts that does not fit the 64 bits it is stored in; names
    /// what overflowed.
    #[error("overflow: {0}")]
    Overflow(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A record that passed `suanli_domain::usage::validate`, with what validation derived.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub record: UsageRecord,
    pub class: Class,
    pub period: Period,
    /// The SKU's capacity in units per hour, if it has one (R3).
    pub capacity: Option<Decimal>,
    pub registry_version: u64,
}

/// What the store decided about one candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Accepted,
    Duplicate,
    Conflict,
    /// Storing it would pass the SKU's capacity in a clock hour; the message names the hour.
    OverCapacity(String),
    /// Storing it would bring its provider's records of its month past
    /// [`suanli_domain::usage::PROVIDER_MONTH_FEN_MAX`]; the message names provider and month.
    OverProviderMonth(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryVersionRow {
    pub version: u64,
    pub content_hash: String,
    pub toml_text: String,
    pub loaded_at: String,
}

/// Who a token speaks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Principal {
    Provider(String),
    Beneficiary(String),
    Finance,
    Auditor,
    Admin,
}

impl Principal {
    pub fn role(&self) -> &'static str {
        match self {
            Principal::Provider(_) => "provider",
            Principal::Beneficiary(_) => "beneficiary",
            Principal::Finance => "finance",
            Principal::Auditor => "auditor",
            Principal::Admin => "admin",
        }
    }

    pub fn subject(&self) -> &str {
        match self {
            Principal::Provider(s) | Principal::Beneficiary(s) => s,
            _ => "",
        }
    }

    pub fn from_parts(role: &str, subject: &str) -> Option<Principal> {
        match role {
            "provider" if !subject.is_empty() => Some(Principal::Provider(subject.to_owned())),
            "beneficiary" if !subject.is_empty() => {
                Some(Principal::Beneficiary(subject.to_owned()))
            }
            "finance" => Some(Principal::Finance),
            "auditor" => Some(Principal::Auditor),
            "admin" => Some(Principal::Admin),
            _ => None,
        }
    }
}

/// A running accrual total: the settlement line key (R6) and its period.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccrualRow {
    pub beneficiary: String,
    pub provider: String,
    pub category: String,
    pub chip_origin: String,
    pub registered_model: String,
    pub period: String,
    pub amount_fen: i64,
    pub records: i64,
}

/// Where a reader of [`Store::accrual_changes_since`] stands: the changes it has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccrualMark {
    pub(crate) store: u64,
    pub(crate) seq: u64,
    pub(crate) external: i64,
}

/// Reads a store's accrual change log from another thread ([`Store::accrual_feed`]): a balance
/// reader applies the changes of the writer's commits without waiting in its queue.
#[derive(Clone)]
pub struct AccrualFeed {
    pub(crate) log: std::sync::Arc<common::SharedLog>,
    pub(crate) names: common::SharedNames,
}

/// A change of one running accrual total by the store's ids ([`AccrualFeed::deltas_since`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccrualDelta {
    /// The beneficiary's id, named by [`AccrualDeltas::name`].
    pub beneficiary: i64,
    /// The provider's id, named by [`AccrualDeltas::name`].
    pub provider: i64,
    pub class: Class,
    pub period: Period,
    pub amount_fen: i64,
    pub records: i64,
}

/// What [`AccrualFeed::deltas_since`] returns: the deltas since a mark, by ids, and the mark
/// after them.
pub struct AccrualDeltas {
    pub mark: AccrualMark,
    pub deltas: Vec<AccrualDelta>,
    names: common::SharedNames,
}

impl AccrualDeltas {
    /// The name (beneficiary or provider id) of one of the deltas' ids.
    pub fn name(&self, id: i64) -> std::result::Result<std::sync::Arc<str>, StoreError> {
        common::shared_name(&self.names.read().unwrap_or_else(|e| e.into_inner()), id).cloned()
    }
}

/// What [`Store::accrual_changes_since`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccrualChanges {
    pub mark: AccrualMark,
    /// `true`: `rows` are every total (the mark given was not usable); `false`: `rows` are
    /// the deltas since the mark given, per accrual key (keys whose deltas net to nothing
    /// left out).
    pub complete: bool,
    pub rows: Vec<AccrualRow>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoidResult {
    NotFound,
    Voided { at: String },
    AlreadyVoided { at: String },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub voided_records: u64,
    pub amount_fen: i64,
}

/// A stored record, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub record: UsageRecord,
    pub class: Class,
    pub registry_version: u64,
    pub voided_at: Option<String>,
    pub void_reason: Option<String>,
}

/// The storage trait. Methods take `&mut self`: one writer owns a store.
pub trait Store: Send {
    /// The newest registry version, if any was loaded.
    fn registry_current(&mut self) -> Result<Option<RegistryVersionRow>>;
    /// Stores a new registry version and interns the names it declares; returns its number.
    /// `audit` runs in the same transaction with the new version number, so the version and
    /// its audit entry are committed together or not at all.
    fn registry_insert_audited(
        &mut self,
        content_hash: &str,
        toml_text: &str,
        names: &RegistryNames,
        at: DateTime<Utc>,
        audit: &mut dyn FnMut(&mut dyn sql::Sql, u64) -> Result<()>,
    ) -> Result<u64>;
    /// Interns the names of `names` not interned yet, in a transaction of its own, without
    /// storing a version; returns how many it interned. A load interns a large registry's names
    /// in slices before it stores the version, so the writer never holds ingest up for the
    /// whole list at once. Names interned by a load that then fails are harmless: no record can
    /// use them until a version declaring them is stored.
    fn registry_intern(&mut self, names: &RegistryNames) -> Result<usize>;
    /// [`Store::registry_insert_audited`] without an audit entry (tests, benchmarks).
    fn registry_insert(
        &mut self,
        content_hash: &str,
        toml_text: &str,
        names: &RegistryNames,
        at: DateTime<Utc>,
    ) -> Result<u64> {
        self.registry_insert_audited(content_hash, toml_text, names, at, &mut |_, _| Ok(()))
    }
    /// Decides and stores a group of candidates in one transaction, in order. A candidate
    /// whose key appeared earlier in the group is a duplicate or conflict of that one.
    fn ingest(&mut self, candidates: &[Candidate]) -> Result<Vec<Decision>> {
        let candidates: Vec<&Candidate> = candidates.iter().collect();
        self.ingest_noting(&candidates, &[], Utc::now())
    }
    /// [`Store::ingest`], also counting the group's outcomes and the records `rejected` before
    /// they reached the store into the ingest statistics ([`ingest_stats`]), in the same
    /// transaction; `at` dates the counts (its Asia/Shanghai day). The candidates are
    /// references so a group of several batches needs no copy of them.
    fn ingest_noting(
        &mut self,
        candidates: &[&Candidate],
        rejected: &[ingest_stats::Rejected],
        at: DateTime<Utc>,
    ) -> Result<Vec<Decision>>;
    /// Asks the store to commit ingest groups without waiting for the disk, and returns what
    /// makes those commits durable ([`WalSync::sync`]), to be run on another thread before the
    /// groups are acknowledged, while the next group is being written. `None` (the default, and
    /// PostgreSQL): every commit is durable when it returns. Every other write still waits for
    /// the disk at its own commit, which also flushes the ingest groups committed before it.
    fn defer_ingest_sync(&mut self) -> Option<WalSync> {
        None
    }
    /// Marks a record void, subtracting it from accruals and capacity, in one transaction;
    /// `audit` runs in it with the void's time when the record is voided now.
    fn void_audited(
        &mut self,
        provider: &str,
        record_id: &str,
        reason: &str,
        at: DateTime<Utc>,
        audit: &mut dyn FnMut(&mut dyn sql::Sql, &str) -> Result<()>,
    ) -> Result<VoidResult>;
    /// [`Store::void_audited`] without an audit entry (tests).
    fn void(
        &mut self,
        provider: &str,
        record_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<VoidResult> {
        self.void_audited(provider, record_id, reason, at, &mut |_, _| Ok(()))
    }
    /// Stores a token of `principal`, belonging to the principal's generated service account.
    fn token_insert(
        &mut self,
        token_hash: &str,
        principal: &Principal,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let row = tokens::TokenRow {
            token_hash: token_hash.to_owned(),
            principal: principal.clone(),
            created_at: common::now_text(at),
            expires_at: None,
            revoked_at: None,
            user: None,
            user_disabled_at: None,
            label: String::new(),
        };
        self.transaction(&mut |tx| tokens::insert(tx, &row))
    }
    /// The principal only, ignoring expiry and revocation: authentication must use
    /// [`tokens::lookup`], which returns both.
    fn token_lookup(&mut self, token_hash: &str) -> Result<Option<Principal>>;
    /// The running accrual totals, sorted by key: the `accruals` table plus the deltas still
    /// pending (see `common::FOLD_GROUPS`), read in one snapshot.
    fn accruals(&mut self) -> Result<Vec<AccrualRow>>;
    /// Folds the pending accrual deltas into the `accruals` table if none were folded for
    /// `common::FOLD_EVERY` (ingest folds as it goes; this is for a server gone quiet, so the
    /// table alone is current again). Returns whether it folded. After
    /// [`Store::fold_in_background`] it folds nothing and returns the fold thread's last
    /// failure, if any.
    fn fold_accruals(&mut self) -> Result<bool>;
    /// From now on a thread of this store folds the pending accrual deltas every
    /// `common::FOLD_EVERY` on a connection of its own, and ingest transactions no longer fold
    /// (PostgreSQL; `fold_accruals` then reports the thread's last failure, if any). Returns
    /// whether it does: SQLite has one writing connection, so its ingest keeps folding.
    fn fold_in_background(&mut self) -> Result<bool> {
        Ok(false)
    }
    /// Reads what ingest and voids decide with (the stored keys' filter, the capacity used per
    /// SKU and hour) from every stored record, now rather than at the first ingest or void.
    /// Opening a store does not read them, so a command that neither ingests nor voids (a
    /// user, a token, an index) opens a database of tens of millions of records at once; a
    /// server prepares them before it listens.
    fn prepare_ingest(&mut self) -> Result<()> {
        Ok(())
    }
    /// What changed in the running accrual totals since `since` (a mark an earlier call
    /// returned): the deltas per accrual key, summed, if this store saw every change since
    /// then; otherwise, and without a mark, every total ([`Store::accruals`]). The returned
    /// mark covers every change committed before the call. A reader that keeps figures derived
    /// from accruals applies the deltas instead of reading every total again.
    fn accrual_changes_since(&mut self, since: Option<AccrualMark>) -> Result<AccrualChanges>;
    /// A handle on the log [`Store::accrual_changes_since`] reads, for a reader on another
    /// thread: given a mark of this store's, it returns the changes of this store's commits
    /// since, as far as the log holds them.
    fn accrual_feed(&mut self) -> AccrualFeed;
    /// The same totals recounted from the raw records (records that are not void), sorted.
    fn recount_accruals(&mut self) -> Result<Vec<AccrualRow>>;
    fn stats(&mut self, provider: Option<&str>) -> Result<Stats>;
    fn record(&mut self, provider: &str, record_id: &str) -> Result<Option<StoredRecord>>;
    /// Runs `f` in one transaction, committed when it returns `Ok` (settlement and ledger
    /// queries, written once for both backends in [`ledger`]).
    fn transaction(&mut self, f: &mut dyn FnMut(&mut dyn sql::Sql) -> Result<()>) -> Result<()>;

    /// Catches up with what other servers on the same database changed (PostgreSQL replicas:
    /// interned names, stored keys, capacity used). A SQLite database has one server.
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The ids a registry version declares, interned when it is loaded so ingest never has to.
#[derive(Clone, Debug, Default)]
pub struct RegistryNames {
    pub providers: Vec<String>,
    pub beneficiaries: Vec<String>,
    pub skus: Vec<String>,
}

impl RegistryNames {
    /// How many names are listed.
    pub fn len(&self) -> usize {
        self.providers.len() + self.beneficiaries.len() + self.skus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names in slices of at most `size` names each (kinds kept apart), in order.
    pub fn slices(&self, size: usize) -> Vec<RegistryNames> {
        let size = size.max(1);
        let mut out = Vec::new();
        for chunk in self.providers.chunks(size) {
            out.push(RegistryNames {
                providers: chunk.to_vec(),
                ..RegistryNames::default()
            });
        }
        for chunk in self.skus.chunks(size) {
            out.push(RegistryNames {
                skus: chunk.to_vec(),
                ..RegistryNames::default()
            });
        }
        for chunk in self.beneficiaries.chunks(size) {
            out.push(RegistryNames {
                beneficiaries: chunk.to_vec(),
                ..RegistryNames::default()
            });
        }
        out
    }

    pub fn of(registry: &suanli_domain::Registry) -> RegistryNames {
        RegistryNames {
            providers: registry.providers.iter().map(|p| p.id.clone()).collect(),
            beneficiaries: registry
                .beneficiaries
                .iter()
                .map(|b| b.id.clone())
                .collect(),
            skus: registry.skus.iter().map(|s| s.id.clone()).collect(),
        }
    }
}

/// Counts committed changes to accruals (ingest groups and voids) in this process, so readers
/// can cache what they derive from accruals and recompute only after a change.
static ACCRUAL_CHANGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn note_accrual_change() {
    ACCRUAL_CHANGES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// How many accrual changes this process has committed (any store); a cache of something derived
/// from accruals is current while this number is unchanged.
pub fn accrual_changes() -> u64 {
    ACCRUAL_CHANGES.load(std::sync::atomic::Ordering::SeqCst)
}

/// The default database: a SQLite file under `./suanli-data/`, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./suanli-data/suanli.db";

/// Flushes a SQLite database's write-ahead log to disk: every transaction committed before
/// [`WalSync::sync`] is called is durable when it returns. Runs on any thread, beside the
/// connection that keeps writing (the log is appended to, never rewritten in place while a
/// commit is unflushed: a checkpoint flushes the log first).
#[derive(Debug)]
pub struct WalSync {
    wal: std::path::PathBuf,
    dir: std::path::PathBuf,
    dir_synced: bool,
    /// The database, for [`WalSync::checkpointer`]; `None`: no checkpoints from here.
    db: Option<std::path::PathBuf>,
}

impl WalSync {
    /// The log file `wal`, whose directory entry is in `dir`.
    pub fn new(wal: std::path::PathBuf, dir: std::path::PathBuf) -> WalSync {
        WalSync {
            wal,
            dir,
            dir_synced: false,
            db: None,
        }
    }

    pub(crate) fn with_checkpoints(mut self, db: std::path::PathBuf) -> WalSync {
        self.db = Some(db);
        self
    }

    /// A connection that copies the log into the database ([`Checkpointer::checkpoint`]) on
    /// a thread of its own, so the writer does not stop for it; `None` if this log's writer
    /// checkpoints by itself.
    pub fn checkpointer(&self) -> Result<Option<Checkpointer>> {
        let Some(db) = &self.db else {
            return Ok(None);
        };
        let conn = rusqlite::Connection::open(db)?;
        conn.pragma_update(None, "busy_timeout", 10_000)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Some(Checkpointer { conn }))
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        // Opened each time: the file SQLite has now, whatever it did with the one before.
        std::fs::File::open(&self.wal)?.sync_data()?;
        if !self.dir_synced {
            // Once: the log file's own directory entry.
            std::fs::File::open(&self.dir)?.sync_all()?;
            self.dir_synced = true;
        }
        Ok(())
    }

    pub fn path(&self) -> &std::path::Path {
        &self.wal
    }
}

/// Checkpoints a SQLite database beside its writer (see [`WalSync::checkpointer`]).
pub struct Checkpointer {
    conn: rusqlite::Connection,
}

impl Checkpointer {
    /// Copies every frame of the log that no reader needs into the database and flushes it
    /// (a PASSIVE checkpoint: it never waits for the writer). The writer starts the log over
    /// once a checkpoint has copied all of it.
    ///
    /// While the writer keeps appending, a passive checkpoint does not reach the end of the
    /// log, so the writer's own checkpoint (`wal_autocheckpoint`) still lets it start the log
    /// over; it then finds most frames copied already and waits only for the rest.
    pub fn checkpoint(&mut self) -> Result<()> {
        // One row (busy, log frames, frames copied); nothing here needs the counts.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        note_sync_failure(&e);
        StoreError::Sqlite(e)
    }
}

/// The first fsync of a database file that SQLite reported failed in this process.
static SYNC_FAILURE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn note_sync_failure(e: &rusqlite::Error) {
    if let rusqlite::Error::SqliteFailure(failure, _) = e
        && matches!(
            failure.extended_code,
            rusqlite::ffi::SQLITE_IOERR_FSYNC | rusqlite::ffi::SQLITE_IOERR_DIR_FSYNC
        )
    {
        let _ = SYNC_FAILURE.set(e.to_string());
    }
}

/// Whether SQLite has reported a failed fsync in this process (by any connection: a commit, a
/// checkpoint), and its error. After one, the kernel may have dropped the pages that failed
/// while marking them written, so a later fsync that succeeds proves nothing about them:
/// whoever acknowledges on the strength of a sync must stop acknowledging for good, and a
/// restart recovers from what is on disk.
pub fn sync_failure() -> Option<&'static str> {
    SYNC_FAILURE.get().map(String::as_str)
}

/// Opens a store by URL and runs its migrations.
pub fn open(url: &str) -> Result<Box<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Box::new(sqlite::SqliteStore::open(path)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(postgres::PgStore::open(url)?))
    } else {
        Err(StoreError::Url(url.to_owned()))
    }
}

/// A connection of its own beside the writer, for readers that must not wait in the writer's
/// queue (balance look-ups). Each [`Reader::read`] is one read-only transaction that sees
/// every commit made before it began.
pub trait Reader: Send {
    fn read(&mut self, f: &mut dyn FnMut(&mut dyn sql::Sql) -> Result<()>) -> Result<()>;
    /// The newest `ingest_log` seq (PostgreSQL: what [`AccrualFeed::deltas_since`] compares to notice
    /// another server's commits); `None` on SQLite, where one server writes.
    fn accrual_position(&mut self) -> Result<Option<i64>>;
    /// The rows of one statement whose every column is an integer or NULL, read alone: one
    /// statement sees one snapshot, so it needs no transaction around it, and on PostgreSQL
    /// it takes one round trip instead of the four of a read-only transaction around a
    /// prepared query. `{position}` in `sql` stands for the database's accrual position
    /// ([`sql::Sql::accrual_generation_sql`]), NULL where there is none.
    fn query_ints(&mut self, sql: &str) -> Result<Vec<Vec<Option<i64>>>>;
}

/// Opens a [`Reader`] on the database at `url`, which a store has opened (and migrated).
pub fn open_reader(url: &str) -> Result<Box<dyn Reader>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Box::new(sqlite::SqliteReader::open(path)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(postgres::PgReader::open(url)?))
    } else {
        Err(StoreError::Url(url.to_owned()))
    }
}

/// The fiscal period as stored in usage rows: yyyymm.
pub fn period_code(period: Period) -> i64 {
    i64::from(period.year) * 100 + i64::from(period.month)
}

/// The period of a [`period_code`], if it is one.
pub fn period_of_code(code: i64) -> Option<Period> {
    let period = Period {
        year: i32::try_from(code / 100).ok()?,
        month: u32::try_from(code % 100).ok()?,
    };
    (1..=12).contains(&period.month).then_some(period)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A failed fsync reported by SQLite is noted for the whole process as it becomes a
    // StoreError; other I/O errors (a full disk, a failed write) are not.
    #[test]
    fn a_failed_sync_is_noted_once_it_becomes_a_store_error() {
        let failure = |code| {
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("io".into()))
        };
        let _ = StoreError::from(failure(rusqlite::ffi::SQLITE_FULL));
        let _ = StoreError::from(failure(rusqlite::ffi::SQLITE_IOERR_WRITE));
        assert_eq!(sync_failure(), None);
        let _ = StoreError::from(failure(rusqlite::ffi::SQLITE_IOERR_FSYNC));
        assert!(sync_failure().is_some_and(|e| e.contains("io")));
    }
}
