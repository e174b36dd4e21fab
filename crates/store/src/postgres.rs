//! The PostgreSQL backend: the same decisions as SQLite, made per group of batches with one
//! lookup of the keys that may be stored and one binary COPY of the new rows.
//!
//! Several `suanli serve` replicas may share one database. Every ingest and void transaction
//! takes the `suanli.ingest` advisory lock, first applies what other replicas logged in
//! `ingest_log` since this one last looked (stored keys, capacity used), and logs its own
//! changes; so each replica decides duplicates and capacity against the whole database, and
//! ingest transactions are serialised across replicas (each is a group commit of many batches).

use chrono::{DateTime, Utc};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient, IsolationLevel, NoTls};
use std::borrow::Cow;
use std::io::Write;

use crate::common::{self, Engine, FxMap, Kind, Row, TxEffects, decode, now_text};
use crate::{
    AccrualRow, Candidate, Decision, Principal, RegistryNames, RegistryVersionRow, Result, Stats,
    Store, StoreError, StoredRecord, VoidResult,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_ingest.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_settlement.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_audit.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_token_lifetime.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_ingest_stats.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/postgres/0006_ingest_log.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/postgres/0007_ingest_collation.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/postgres/0008_accrual_pending.sql"),
    ),
    (
        9,
        include_str!("../../../migrations/postgres/0009_accrual_pending_lz4.sql"),
    ),
    (
        10,
        include_str!("../../../migrations/postgres/0010_cancelled_by.sql"),
    ),
    (
        11,
        include_str!("../../../migrations/postgres/0011_opening.sql"),
    ),
    (
        12,
        include_str!("../../../migrations/postgres/0012_users.sql"),
    ),
    (
        13,
        include_str!("../../../migrations/postgres/0013_payment_confirmation.sql"),
    ),
    (
        14,
        include_str!("../../../migrations/postgres/0014_user_last_signin.sql"),
    ),
    (
        15,
        include_str!("../../../migrations/postgres/0015_list_indexes.sql"),
    ),
    (
        16,
        include_str!("../../../migrations/postgres/0016_reject_field.sql"),
    ),
    (
        17,
        include_str!("../../../migrations/postgres/0017_account_totals.sql"),
    ),
    (
        18,
        include_str!("../../../migrations/postgres/0018_run_totals.sql"),
    ),
    (
        19,
        include_str!("../../../migrations/postgres/0019_voided_records.sql"),
    ),
    (
        20,
        include_str!("../../../migrations/postgres/0020_posted_totals.sql"),
    ),
    (
        21,
        include_str!("../../../migrations/postgres/0021_drop_posted_totals.sql"),
    ),
];

/// Makes this connection's backend push the data pages it writes to the disk as it goes
/// (`sync_file_range` every 1 MB) instead of leaving them dirty in the kernel's page cache.
/// Ingest writes about a gigabyte a minute, most of it by the backend itself (PostgreSQL's
/// default 128 MB of shared buffers is soon full), and the kernel wrote it back in one burst
/// every 30 s, stalling the commit's WAL fsync for 140-230 ms; with this the p99 at half rate
/// fell from 144-243 ms to 61 ms (BENCHMARKS.md). PostgreSQL's default is 0 (off); a value
/// other than 0 set in postgresql.conf or in the URL's `options` is kept.
const BACKEND_FLUSH_SQL: &str = "SELECT CASE WHEN current_setting('backend_flush_after') = '0' \
     THEN set_config('backend_flush_after', '1MB', false) END";

/// Serialises ingest and void transactions across replicas until the transaction ends.
const INGEST_LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(hashtextextended('suanli.ingest', 0))";

/// Log entries older than this are pruned; a replica this far behind rebuilds its indexes.
const LOG_KEEP: &str = "1 hour";

pub struct PgStore {
    client: Client,
    engine: Engine,
    /// This process's name in `ingest_log.writer` (for operators; decisions do not use it).
    writer: String,
    /// The newest `ingest_log` entry reflected in `engine`.
    log_seq: i64,
    /// The engine's key filter and capacity have been read from the records
    /// ([`Store::prepare_ingest`]); its names always are.
    engine_ready: bool,
    /// When ingest folds the pending accrual deltas ([`common::FOLD_GROUPS`]), unless
    /// `background_fold` does.
    fold: common::FoldClock,
    background_fold: Option<BackgroundFold>,
    /// To open the background fold's connection.
    url: String,
    /// The accrual deltas of this store's commits, for [`Store::accrual_changes_since`].
    accrual_log: common::AccrualLog,
    prepared: Prepared,
}

/// Set to `1` to run on a PostgreSQL server (or connection) that does not flush commits
/// (`synchronous_commit = off` or `fsync = off`), where an acknowledged record can be lost in a
/// power cut. For throwaway test and benchmark databases only.
pub const ALLOW_UNSYNCED_COMMIT_ENV: &str = "SUANLI_ALLOW_UNSYNCED_COMMIT";

/// Opens a connection as every connection of this store is opened.
fn connect(url: &str) -> Result<Client> {
    let mut client = Client::connect(url, NoTls)?;
    client.batch_execute(BACKEND_FLUSH_SQL)?;
    check_durable(&mut client)?;
    Ok(client)
}

/// A connection of its own beside the writer's ([`crate::Reader`]): each read is a read-only
/// transaction that sees every commit made before it began.
pub(crate) struct PgReader {
    client: Client,
    url: String,
}

impl PgReader {
    pub(crate) fn open(url: &str) -> Result<PgReader> {
        Ok(PgReader {
            client: connect(url)?,
            url: url.to_owned(),
        })
    }

    /// A connection the server closed (a restart, an idle timeout) is opened again.
    fn reconnect_if_closed(&mut self) -> Result<()> {
        if self.client.is_closed() {
            self.client = connect(&self.url)?;
        }
        Ok(())
    }
}

impl crate::Reader for PgReader {
    fn read(&mut self, f: &mut dyn FnMut(&mut dyn crate::sql::Sql) -> Result<()>) -> Result<()> {
        self.reconnect_if_closed()?;
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        f(&mut tx)?;
        tx.commit()?;
        Ok(())
    }

    fn query_ints(&mut self, sql: &str) -> Result<Vec<Vec<Option<i64>>>> {
        self.reconnect_if_closed()?;
        let sql = sql.replace("{position}", crate::sql::PG_ACCRUAL_POSITION_SQL);
        // The simple protocol: one message, one round trip, the values as text.
        let mut out = Vec::new();
        for message in self.client.simple_query(&sql)? {
            if let postgres::SimpleQueryMessage::Row(row) = message {
                let values = (0..row.len())
                    .map(|i| {
                        row.get(i)
                            .map(|text| {
                                text.parse::<i64>().map_err(|_| {
                                    StoreError::Corrupt(format!("not an integer: {text:?}"))
                                })
                            })
                            .transpose()
                    })
                    .collect::<Result<Vec<_>>>()?;
                out.push(values);
            }
        }
        Ok(out)
    }

    fn accrual_position(&mut self) -> Result<Option<i64>> {
        self.reconnect_if_closed()?;
        Ok(Some(
            self.client
                .query_one("SELECT COALESCE(MAX(seq), 0) FROM ingest_log", &[])?
                .get(0),
        ))
    }
}

/// Refuses a connection whose commits are not on disk when they return: a batch is
/// acknowledged right after its commit, so `synchronous_commit = off` (or `fsync = off`) would
/// acknowledge records a power cut can lose. An operator may opt out for throwaway databases
/// with [`ALLOW_UNSYNCED_COMMIT_ENV`].
fn check_durable(client: &mut Client) -> Result<()> {
    let setting = |client: &mut Client, name: &str| -> Result<String> {
        Ok(client
            .query_one("SELECT current_setting($1)", &[&name])?
            .get::<_, String>(0))
    };
    let synchronous_commit = setting(client, "synchronous_commit")?;
    let fsync = setting(client, "fsync")?;
    let unsynced = synchronous_commit == "off" || fsync == "off";
    if unsynced && std::env::var(ALLOW_UNSYNCED_COMMIT_ENV).as_deref() != Ok("1") {
        return Err(StoreError::NotDurable(format!(
            "PostgreSQL has synchronous_commit = {synchronous_commit} and fsync = {fsync}: \
             commits would be acknowledged before they are on disk; set both on, or set \
             {ALLOW_UNSYNCED_COMMIT_ENV}=1 for a throwaway database"
        )));
    }
    Ok(())
}

/// Serialises the folds of pending accrual deltas across replicas and threads (not ingest:
/// a fold deletes only pending rows that were committed when it began).
const FOLD_LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(hashtextextended('suanli.fold', 0))";

/// A thread that folds the pending accrual deltas every [`common::FOLD_EVERY`] on a
/// connection of its own, beside ingest ([`Store::fold_in_background`]). Folding inside an
/// ingest transaction held every batch of that group 14 ms longer once a second, which was
/// most of PostgreSQL's p99 at a steady rate (BENCHMARKS.md). Stops (after the fold
/// in progress, if any) when dropped.
struct BackgroundFold {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The last failure not yet reported ([`Store::fold_accruals`] reports it).
    failure: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl BackgroundFold {
    fn spawn(url: &str) -> Result<BackgroundFold> {
        let mut client = connect(url)?;
        let url = url.to_owned();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let failure = std::sync::Arc::new(std::sync::Mutex::new(None));
        let failed = failure.clone();
        let thread = std::thread::Builder::new()
            .name("suanli-fold".into())
            .spawn(move || {
                let mut names = common::Names::default();
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(common::FOLD_EVERY)
                {
                    if client.is_closed() {
                        match connect(&url) {
                            Ok(c) => client = c,
                            Err(e) => {
                                note_failure(&failed, format!("reconnecting: {e}"));
                                continue;
                            }
                        }
                    }
                    let fold = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        fold_detached(&mut client, &mut names)
                    }));
                    match fold {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => note_failure(&failed, e.to_string()),
                        Err(_) => {
                            // Ends the thread; `Store::fold_accruals` reports it as stopped.
                            note_failure(&failed, "the fold panicked".into());
                            return;
                        }
                    }
                }
            })
            .map_err(|source| StoreError::Io {
                path: "the accrual fold thread".into(),
                source,
            })?;
        Ok(BackgroundFold {
            stop: Some(stop),
            thread: Some(thread),
            failure,
        })
    }

    fn take_failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }
}

fn note_failure(failure: &std::sync::Mutex<Option<String>>, e: String) {
    if let Ok(mut f) = failure.lock() {
        *f = Some(e);
    }
}

impl Drop for BackgroundFold {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One background fold: nothing to do is one cheap query.
fn fold_detached(client: &mut Client, names: &mut common::Names) -> Result<bool> {
    let pending: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM accrual_pending)", &[])?
        .get(0);
    if !pending {
        return Ok(false);
    }
    let mut tx = client.transaction()?;
    let folded = fold_pending(&mut tx, names)?;
    tx.commit()?;
    Ok(folded)
}

/// The ingest path's statements, prepared once per connection: an unprepared statement costs
/// a round trip of its own (parse and describe) every time it runs, and a group runs several.
/// Only statements whose best plan cannot change as tables grow belong here (inserts, COPY,
/// the lock); see [`catch_up`] for one that did.
#[derive(Default)]
struct Prepared(std::collections::HashMap<&'static str, postgres::Statement>);

impl Prepared {
    fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &'static str,
    ) -> Result<postgres::Statement> {
        if let Some(statement) = self.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        self.0.insert(sql, statement.clone());
        Ok(statement)
    }
}

const ROW_COLUMNS: &str = "u.provider_id, u.record_id, u.beneficiary_id, u.sku_id, u.start_ns, u.end_ns, u.quantity, u.amount_fen, u.period, u.class_code, u.registry_version, u.voided_at, u.void_reason";

/// A stored row with its `voided_at` and `void_reason`.
type Fetched = (Row<'static>, Option<String>, Option<String>);

/// The signature, flags and header extension length that open a binary COPY stream.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Bytes of COPY data encoded before they are handed to the connection, so the backend
/// starts on the first rows while the writer encodes the rest.
const COPY_CHUNK: usize = 64 * 1024;

/// Appends one `usage_records` row in PostgreSQL's binary COPY format (the 11 columns of the
/// ingest COPY, in its order). Encoded by hand: `BinaryCopyInWriter` costs about 1.6 µs a row
/// (a runtime round trip and a dynamic `ToSql` call per field), this about a tenth of it.
fn copy_row(buf: &mut Vec<u8>, r: &Row<'_>, quantity: &mut String) {
    fn int8(buf: &mut Vec<u8>, v: i64) {
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&v.to_be_bytes());
    }
    fn text(buf: &mut Vec<u8>, v: &str) {
        // Record ids are at most a few hundred bytes (validated); a batch is at most 64 MiB.
        let len = i32::try_from(v.len()).expect("a text field longer than 2 GiB");
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(v.as_bytes());
    }
    buf.extend_from_slice(&11i16.to_be_bytes());
    int8(buf, r.provider_id);
    text(buf, &r.record_id);
    int8(buf, r.beneficiary_id);
    int8(buf, r.sku_id);
    int8(buf, r.start_ns);
    int8(buf, r.end_ns);
    text(buf, common::quantity_text(r.quantity, quantity));
    int8(buf, r.amount_fen);
    int8(buf, r.period);
    int8(buf, r.class_code);
    int8(buf, r.registry_version);
}

fn row_of(r: &postgres::Row) -> Result<Fetched> {
    let quantity: &str = r.get(6);
    Ok((
        Row {
            provider_id: r.get(0),
            record_id: Cow::Owned(r.get(1)),
            beneficiary_id: r.get(2),
            sku_id: r.get(3),
            start_ns: r.get(4),
            end_ns: r.get(5),
            quantity: common::parse_quantity(quantity)?,
            amount_fen: r.get(7),
            period: r.get(8),
            class_code: r.get(9),
            registry_version: r.get(10),
        },
        r.get(11),
        r.get(12),
    ))
}

impl PgStore {
    pub fn open(url: &str) -> Result<PgStore> {
        let mut store = PgStore {
            client: connect(url)?,
            url: url.to_owned(),
            accrual_log: common::AccrualLog::default(),
            engine: Engine::default(),
            engine_ready: false,
            writer: format!("pid {} at {}", std::process::id(), now_text(Utc::now())),
            log_seq: 0,
            fold: common::FoldClock::default(),
            background_fold: None,
            prepared: Prepared::default(),
        };
        store.migrate()?;
        refresh_names(&mut store.client, &mut store.engine.names)?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        self.client.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.client.transaction()?;
            // Serializes concurrent starts against one database.
            tx.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE", &[])?;
            let applied = tx
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[version],
                )?
                .is_some();
            if !applied {
                tx.batch_execute(sql)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    &[version, &now_text(Utc::now())],
                )?;
            }
            tx.commit()?;
        }
        Ok(())
    }

    /// Reads the engine from every stored record, once ([`Store::prepare_ingest`]); from
    /// then on it follows the log.
    fn ready_engine(&mut self) -> Result<()> {
        if !self.engine_ready {
            self.load_engine()?;
            self.engine_ready = true;
        }
        Ok(())
    }

    /// Builds the indexes from one consistent snapshot of the records and the log.
    fn load_engine(&mut self) -> Result<()> {
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let (mut engine, seq) = rebuild(&mut tx)?;
        tx.commit()?;
        engine.names.keep_shared(&self.engine.names);
        self.engine = engine;
        self.log_seq = seq;
        Ok(())
    }

    /// The id of a name, reading names interned by other replicas on a miss.
    fn name_id(&mut self, kind: Kind, name: &str) -> Result<Option<i64>> {
        if let Some(id) = self.engine.names.id(kind, name) {
            return Ok(Some(id));
        }
        refresh_names(&mut self.client, &mut self.engine.names)?;
        Ok(self.engine.names.id(kind, name))
    }

    fn select_one(&mut self, provider_id: i64, record_id: &str) -> Result<Option<Fetched>> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM usage_records u WHERE u.provider_id = $1 AND u.record_id = $2"
        );
        self.client
            .query_opt(&sql, &[&provider_id, &record_id])?
            .as_ref()
            .map(row_of)
            .transpose()
    }
}

/// Names interned by other replicas since this one last read them (ids only grow).
fn refresh_names(client: &mut impl GenericClient, names: &mut common::Names) -> Result<()> {
    let next = names.next_id;
    for r in client.query("SELECT id, kind, name FROM names WHERE id >= $1", &[&next])? {
        let kind: String = r.get(1);
        let kind =
            Kind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("name kind {kind:?}")))?;
        names.insert(kind, r.get(2), r.get(0));
    }
    Ok(())
}

/// Stores planned names in one statement per 50,000 (a round trip per name made a city's
/// registry take seconds on the writer).
fn insert_names(tx: &mut impl GenericClient, planned: &[(Kind, String, i64)]) -> Result<()> {
    for chunk in planned.chunks(50_000) {
        let ids: Vec<i64> = chunk.iter().map(|(_, _, id)| *id).collect();
        let kinds: Vec<&str> = chunk.iter().map(|(k, _, _)| k.as_str()).collect();
        let names: Vec<&str> = chunk.iter().map(|(_, n, _)| n.as_str()).collect();
        tx.execute(
            "INSERT INTO names (id, kind, name) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[])",
            &[&ids, &kinds, &names],
        )?;
    }
    Ok(())
}

/// The indexes and the log position, rebuilt from the records. The caller makes the reads
/// consistent: a repeatable-read snapshot, or the ingest lock held.
fn rebuild(client: &mut impl GenericClient) -> Result<(Engine, i64)> {
    let mut engine = Engine::default();
    let seq: i64 = client
        .query_one("SELECT COALESCE(MAX(seq), 0) FROM ingest_log", &[])?
        .get(0);
    refresh_names(client, &mut engine.names)?;
    // Streamed, not collected: tens of millions of rows are never in memory at once.
    let mut rows = client.query_raw(
        "SELECT provider_id, record_id, voided_at IS NOT NULL, sku_id, start_ns, end_ns, quantity, amount_fen, period FROM usage_records",
        std::iter::empty::<&(dyn postgres::types::ToSql + Sync)>(),
    )?;
    let mut shares = Vec::new();
    let mut progress = common::RebuildProgress::start();
    while let Some(r) = rows.next()? {
        engine.rebuild_add(
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
            r.try_get(5)?,
            r.try_get(6)?,
            r.try_get(7)?,
            r.try_get(8)?,
            &mut shares,
        )?;
        progress.record();
    }
    progress.done();
    Ok((engine, seq))
}

/// Applies the log entries other replicas committed after `log_seq`. Committed entries are a
/// contiguous run of seqs (each is assigned under the ingest lock, held until commit), so a gap
/// means entries were pruned before this replica read them: it rebuilds instead.
///
/// The read must go by the log's key, whose end is all it wants, however long the log (an
/// hour of groups) and whatever PostgreSQL's statistics of it (none until the table is first
/// analyzed). Two things see to that:
/// - both ends of the range are given (the upper one is the log's `MAX(seq)`, read from the
///   key's end): with no statistics PostgreSQL takes a one-sided range for a third of the
///   table, and a sequential scan for the cheapest way to read it, but a two-sided range for
///   a small slice, read by the key;
/// - the query is planned at every call (`query_typed`, still one round trip), not prepared
///   once: a prepared statement keeps the plan made when the log held a few rows (a
///   sequential scan) until the table is analyzed.
///
/// With the one-sided range prepared once, every group's catch-up read the whole log, and
/// each group cost more than the last (BENCHMARKS.md).
fn catch_up(client: &mut impl GenericClient, engine: &mut Engine, log_seq: &mut i64) -> Result<()> {
    let rows = client.query_typed(
        "SELECT seq, keys, capacity FROM ingest_log \
         WHERE seq > $1 AND seq <= (SELECT MAX(seq) FROM ingest_log) ORDER BY seq",
        &[(&*log_seq, postgres::types::Type::INT8)],
    )?;
    let Some(first) = rows.first() else {
        return Ok(());
    };
    refresh_names(client, &mut engine.names)?;
    if first.get::<_, i64>(0) != *log_seq + 1 {
        let (mut rebuilt, seq) = rebuild(client)?;
        rebuilt.names.keep_shared(&engine.names);
        *engine = rebuilt;
        *log_seq = seq;
        return Ok(());
    }
    for r in &rows {
        engine.apply_logged(r.get(1), r.get(2))?;
        *log_seq = r.get(0);
    }
    Ok(())
}

/// Takes the ingest lock, held until the transaction ends.
fn lock_ingest(tx: &mut postgres::Transaction<'_>, prepared: &mut Prepared) -> Result<()> {
    let lock = prepared.get(tx, INGEST_LOCK_SQL)?;
    tx.execute(&lock, &[])?;
    Ok(())
}

/// Takes the ingest lock and applies what other replicas logged before it was taken.
fn lock_and_catch_up(
    tx: &mut postgres::Transaction<'_>,
    prepared: &mut Prepared,
    engine: &mut Engine,
    log_seq: &mut i64,
) -> Result<()> {
    lock_ingest(tx, prepared)?;
    catch_up(tx, engine, log_seq)
}

/// Appends this transaction's index changes to the log, after catching up (lock held).
fn log_changes(
    tx: &mut postgres::Transaction<'_>,
    prepared: &mut Prepared,
    writer: &str,
    seq: i64,
    keys: &[u8],
    capacity: &[u8],
) -> Result<()> {
    let insert = prepared.get(
        tx,
        "INSERT INTO ingest_log (seq, writer, keys, capacity) VALUES ($1, $2, $3, $4)",
    )?;
    tx.execute(&insert, &[&seq, &writer, &keys, &capacity])?;
    if seq % 1024 == 0 {
        tx.execute(
            &format!(
                "DELETE FROM ingest_log WHERE seq < $1 AND at < now() - interval '{LOG_KEEP}'"
            ),
            &[&seq],
        )?;
    }
    Ok(())
}

/// Folds the pending accrual deltas into `accruals` and deletes their rows
/// ([`common::FOLD_GROUPS`]), holding the fold lock: the rows committed when the `DELETE`
/// began; rows that ingest commits meanwhile wait for the next fold. Returns whether there
/// was anything to fold.
fn fold_pending(tx: &mut postgres::Transaction<'_>, names: &mut common::Names) -> Result<bool> {
    tx.execute(FOLD_LOCK_SQL, &[])?;
    let rows = tx.query("DELETE FROM accrual_pending RETURNING deltas", &[])?;
    let pending = sum_pending(&rows)?;
    // Other replicas' rows may name what they interned after this one last read the names.
    refresh_names(tx, names)?;
    let mut deltas = common::keyed_deltas(names, &pending)?;
    // One order for every folder, so two that touch the same keys wait, not deadlock.
    deltas.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    upsert_accruals(tx, deltas)?;
    Ok(!rows.is_empty())
}

/// The sum of the pending accrual deltas in `rows` (one `deltas` column).
fn sum_pending(rows: &[postgres::Row]) -> Result<common::Sums> {
    let mut pending = FxMap::default();
    for r in rows {
        common::add_accrual_deltas(r.get(0), &mut pending)?;
    }
    Ok(pending)
}

fn write_effects(
    tx: &mut postgres::Transaction<'_>,
    fx: &TxEffects,
    names: &common::Names,
) -> Result<()> {
    upsert_accruals(tx, fx.accrual_deltas(names)?)
}

fn upsert_accruals(
    tx: &mut postgres::Transaction<'_>,
    deltas: Vec<(common::AccrualKey, i64, i64)>,
) -> Result<()> {
    if !deltas.is_empty() {
        let mut cols: [Vec<String>; 6] = Default::default();
        let (mut amounts, mut counts) = (Vec::new(), Vec::new());
        for (k, a, n) in deltas {
            for (col, v) in cols.iter_mut().zip([k.0, k.1, k.2, k.3, k.4, k.5]) {
                col.push(v);
            }
            amounts.push(a);
            counts.push(n);
        }
        tx.execute(
            "INSERT INTO accruals AS a (beneficiary, provider, category, chip_origin, registered_model, period, amount_fen, records) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[]) \
             ON CONFLICT (beneficiary, provider, category, chip_origin, registered_model, period) \
             DO UPDATE SET amount_fen = a.amount_fen + excluded.amount_fen, records = a.records + excluded.records",
            &[&cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5], &amounts, &counts],
        )
        .map_err(|e| {
            // A total beyond 64 bits: name the accruals this upsert added to.
            if e.code() != Some(&postgres::error::SqlState::NUMERIC_VALUE_OUT_OF_RANGE) {
                return StoreError::from(e);
            }
            let keys: Vec<String> = (0..amounts.len())
                .map(|i| {
                    format!(
                        "beneficiary {:?}, provider {:?}, period {} (+{} fen)",
                        cols[0][i], cols[1][i], cols[5][i], amounts[i]
                    )
                })
                .collect();
            StoreError::Overflow(format!(
                "an accrual total passes a 64-bit amount when adding one of: {}",
                keys.join("; ")
            ))
        })?;
    }
    Ok(())
}

impl Store for PgStore {
    fn registry_current(&mut self) -> Result<Option<RegistryVersionRow>> {
        let row = self.client.query_opt(
            "SELECT version, content_hash, toml_text, loaded_at FROM registry_versions ORDER BY version DESC LIMIT 1",
            &[],
        )?;
        Ok(row.map(|r| RegistryVersionRow {
            version: r.get::<_, i64>(0) as u64,
            content_hash: r.get(1),
            toml_text: r.get(2),
            loaded_at: r.get(3),
        }))
    }

    fn registry_insert_audited(
        &mut self,
        content_hash: &str,
        toml_text: &str,
        names: &RegistryNames,
        at: DateTime<Utc>,
        audit: &mut dyn FnMut(&mut dyn crate::sql::Sql, u64) -> Result<()>,
    ) -> Result<u64> {
        let mut tx = self.client.transaction()?;
        // Serialises loads across replicas; names are interned only here, so after reading
        // the names others interned, the ids planned are free.
        tx.execute("LOCK TABLE registry_versions IN EXCLUSIVE MODE", &[])?;
        refresh_names(&mut tx, &mut self.engine.names)?;
        let planned = self.engine.names.plan(names);
        let version: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM registry_versions",
                &[],
            )?
            .get(0);
        tx.execute(
            "INSERT INTO registry_versions (version, content_hash, toml_text, loaded_at) VALUES ($1, $2, $3, $4)",
            &[&version, &content_hash, &toml_text, &now_text(at)],
        )?;
        insert_names(&mut tx, &planned)?;
        audit(&mut tx, version as u64)?;
        tx.commit()?;
        for (kind, name, id) in planned {
            self.engine.names.insert(kind, name, id);
        }
        Ok(version as u64)
    }

    fn registry_intern(&mut self, names: &RegistryNames) -> Result<usize> {
        let mut tx = self.client.transaction()?;
        // The same lock as a load: ids are planned only under it, after reading the names
        // other replicas interned.
        tx.execute("LOCK TABLE registry_versions IN EXCLUSIVE MODE", &[])?;
        refresh_names(&mut tx, &mut self.engine.names)?;
        let planned = self.engine.names.plan(names);
        if planned.is_empty() {
            return Ok(0);
        }
        insert_names(&mut tx, &planned)?;
        tx.commit()?;
        let count = planned.len();
        for (kind, name, id) in planned {
            self.engine.names.insert(kind, name, id);
        }
        Ok(count)
    }

    fn ingest_noting(
        &mut self,
        candidates: &[&Candidate],
        rejected: &[crate::ingest_stats::Rejected],
        at: DateTime<Utc>,
    ) -> Result<Vec<Decision>> {
        self.ready_engine()?;
        let encode_all = |engine: &Engine| common::encode_group(&engine.names, candidates);
        let rows = match encode_all(&self.engine) {
            Ok(rows) => rows,
            Err(_) => {
                // A registry version loaded by another replica interned new names.
                refresh_names(&mut self.client, &mut self.engine.names)?;
                encode_all(&self.engine)?
            }
        };
        let mut tx = self.client.transaction()?;
        lock_and_catch_up(
            &mut tx,
            &mut self.prepared,
            &mut self.engine,
            &mut self.log_seq,
        )?;
        let hashes = common::key_hashes(&rows);
        let maybe = common::maybe_stored(&mut self.engine, &rows, &hashes);
        let providers: Vec<i64> = maybe.iter().map(|r| r.provider_id).collect();
        let ids: Vec<&str> = maybe.iter().map(|r| r.record_id.as_ref()).collect();
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM usage_records u JOIN UNNEST($1::bigint[], $2::text[]) AS k(p, r) ON u.provider_id = k.p AND u.record_id = k.r"
        );
        let mut existing = common::Existing::default();
        let found = if maybe.is_empty() {
            Vec::new()
        } else {
            tx.query(&sql, &[&providers, &ids])?
        };
        for r in found {
            let (row, _, _) = row_of(&r)?;
            existing.insert((row.provider_id, row.record_id.to_string()), row);
        }
        let common::Decided {
            decisions,
            insert,
            effects: mut fx,
        } = common::decide(&self.engine, candidates, &rows, &existing, maybe.is_empty())?;
        if !insert.is_empty() {
            // Binary COPY straight into the table: the keys are known to be new (one writer).
            let copy = self.prepared.get(
                &mut tx,
                "COPY usage_records (provider_id, record_id, beneficiary_id, sku_id, start_ns, end_ns, quantity, amount_fen, period, class_code, registry_version) FROM STDIN (FORMAT binary)",
            )?;
            let mut sink = tx.copy_in(&copy)?;
            let mut buf = Vec::with_capacity(COPY_CHUNK + 512);
            buf.extend_from_slice(COPY_HEADER);
            let mut quantity = String::new();
            for &i in &insert {
                copy_row(&mut buf, &rows[i], &mut quantity);
                if buf.len() >= COPY_CHUNK {
                    sink.write_all(&buf).map_err(StoreError::CopySend)?;
                    buf.clear();
                }
            }
            buf.extend_from_slice(&(-1i16).to_be_bytes());
            sink.write_all(&buf).map_err(StoreError::CopySend)?;
            sink.finish()?;
        }
        if !fx.accruals.is_empty() {
            let insert = self
                .prepared
                .get(&mut tx, "INSERT INTO accrual_pending (deltas) VALUES ($1)")?;
            let deltas = common::encode_accrual_deltas(&self.engine.names, &fx.accruals)?;
            tx.execute(&insert, &[&deltas])?;
            // In a savepoint: a fold that fails (a total beyond 64 bits from rows an older
            // version accepted) leaves the pending rows for readers, who report the overflow,
            // and must not fail the valid records of this group.
            if self.background_fold.is_none() && self.fold.fold_now() {
                let mut fold = tx.transaction()?;
                if fold_pending(&mut fold, &mut self.engine.names).is_ok() {
                    fold.commit()?;
                    self.fold.folded();
                }
            }
        }
        let seq = self.log_seq + 1;
        // The inserted keys' hashes, logged for the other replicas (this one's filter has
        // every key of the group since `maybe_stored`).
        let keys = common::encode_key_hashes(&hashes, &insert);
        if !insert.is_empty() {
            let capacity = common::capacity_deltas(&self.engine, &fx);
            log_changes(
                &mut tx,
                &mut self.prepared,
                &self.writer,
                seq,
                &keys,
                &common::encode_capacity(&capacity),
            )?;
        }
        crate::ingest_stats::write(&mut tx, candidates, &decisions, rejected, at)?;
        if !insert.is_empty() {
            self.accrual_log.committing(seq);
        }
        if let Err(e) = tx.commit() {
            self.accrual_log.abandon();
            return Err(e.into());
        }
        if !insert.is_empty() {
            self.log_seq = seq;
            self.accrual_log.note(seq, std::mem::take(&mut fx.accruals));
        }
        crate::note_accrual_change();
        fx.commit_into(&mut self.engine);
        Ok(decisions)
    }

    fn void_audited(
        &mut self,
        provider: &str,
        record_id: &str,
        reason: &str,
        at: DateTime<Utc>,
        audit: &mut dyn FnMut(&mut dyn crate::sql::Sql, &str) -> Result<()>,
    ) -> Result<VoidResult> {
        self.ready_engine()?;
        let Some(provider_id) = self.name_id(Kind::Provider, provider)? else {
            return Ok(VoidResult::NotFound);
        };
        let mut tx = self.client.transaction()?;
        lock_and_catch_up(
            &mut tx,
            &mut self.prepared,
            &mut self.engine,
            &mut self.log_seq,
        )?;
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM usage_records u WHERE u.provider_id = $1 AND u.record_id = $2 FOR UPDATE"
        );
        let Some(r) = tx.query_opt(&sql, &[&provider_id, &record_id])? else {
            return Ok(VoidResult::NotFound);
        };
        let (row, voided_at, _) = row_of(&r)?;
        if let Some(at) = voided_at {
            return Ok(VoidResult::AlreadyVoided { at });
        }
        let at = now_text(at);
        tx.execute(
            "UPDATE usage_records SET voided_at = $3, void_reason = $4 WHERE provider_id = $1 AND record_id = $2",
            &[&provider_id, &record_id, &at, &reason],
        )?;
        let record = decode(&self.engine.names, &row)?;
        let mut fx = TxEffects::default();
        fx.release(&self.engine, &row, record.quantity);
        write_effects(&mut tx, &fx, &self.engine.names)?;
        // Logged even without a capacity change: the log's seq is the accrual generation.
        let seq = self.log_seq + 1;
        let capacity = common::capacity_deltas(&self.engine, &fx);
        log_changes(
            &mut tx,
            &mut self.prepared,
            &self.writer,
            seq,
            &[],
            &common::encode_capacity(&capacity),
        )?;
        audit(&mut tx, &at)?;
        self.accrual_log.committing(seq);
        if let Err(e) = tx.commit() {
            self.accrual_log.abandon();
            return Err(e.into());
        }
        self.log_seq = seq;
        self.accrual_log.note(seq, std::mem::take(&mut fx.accruals));
        crate::note_accrual_change();
        fx.commit_into(&mut self.engine);
        Ok(VoidResult::Voided { at })
    }

    fn token_lookup(&mut self, token_hash: &str) -> Result<Option<Principal>> {
        let row = self.client.query_opt(
            "SELECT role, subject FROM tokens WHERE token_hash = $1",
            &[&token_hash],
        )?;
        Ok(row.and_then(|r| Principal::from_parts(r.get(0), r.get(1))))
    }

    fn accruals(&mut self) -> Result<Vec<AccrualRow>> {
        // The table and the pending deltas from one snapshot.
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let pending = sum_pending(&tx.query("SELECT deltas FROM accrual_pending", &[])?)?;
        let rows = tx.query(
            "SELECT beneficiary, provider, category, chip_origin, registered_model, period, amount_fen, records FROM accruals WHERE records <> 0 OR amount_fen <> 0",
            &[],
        )?;
        if !pending.is_empty() {
            refresh_names(&mut tx, &mut self.engine.names)?;
        }
        tx.commit()?;
        common::with_pending(
            &self.engine.names,
            rows.iter()
                .map(|r| AccrualRow {
                    beneficiary: r.get(0),
                    provider: r.get(1),
                    category: r.get(2),
                    chip_origin: r.get(3),
                    registered_model: r.get(4),
                    period: r.get(5),
                    amount_fen: r.get(6),
                    records: r.get(7),
                })
                .collect(),
            &pending,
        )
    }

    fn accrual_changes_since(
        &mut self,
        since: Option<crate::AccrualMark>,
    ) -> Result<crate::AccrualChanges> {
        // Read before the totals: a commit of another server in between only makes the next
        // call read everything again, never miss a change.
        let current: i64 = self
            .client
            .query_one("SELECT COALESCE(MAX(seq), 0) FROM ingest_log", &[])?
            .get(0);
        if let Some(since) = since
            && let Some((mark, rows)) =
                self.accrual_log
                    .since(&self.engine.names, since, Some(current))?
        {
            return Ok(crate::AccrualChanges {
                mark,
                complete: false,
                rows,
            });
        }
        let mark = self.accrual_log.mark(current);
        Ok(crate::AccrualChanges {
            mark,
            complete: true,
            rows: self.accruals()?,
        })
    }

    fn accrual_feed(&mut self) -> crate::AccrualFeed {
        self.accrual_log.feed(&self.engine.names)
    }

    fn prepare_ingest(&mut self) -> Result<()> {
        self.ready_engine()
    }

    fn fold_in_background(&mut self) -> Result<bool> {
        if self.background_fold.is_none() {
            self.background_fold = Some(BackgroundFold::spawn(&self.url)?);
        }
        Ok(true)
    }

    fn fold_accruals(&mut self) -> Result<bool> {
        if let Some(background) = &self.background_fold {
            let stopped = background.thread.as_ref().is_none_or(|t| t.is_finished());
            return match (background.take_failure(), stopped) {
                (e, true) => Err(StoreError::FoldStopped(
                    e.unwrap_or_else(|| "without an error".into()),
                )),
                (None, false) => Ok(false),
                (Some(e), false) => Err(StoreError::BackgroundFold(e)),
            };
        }
        if !self.fold.quiet() {
            return Ok(false);
        }
        // Checked before taking the ingest lock, which other replicas' ingest waits for: an
        // idle server must not take it every second for nothing.
        let pending: bool = self
            .client
            .query_one("SELECT EXISTS (SELECT 1 FROM accrual_pending)", &[])?
            .get(0);
        if !pending {
            self.fold.folded();
            return Ok(false);
        }
        let mut tx = self.client.transaction()?;
        lock_ingest(&mut tx, &mut self.prepared)?;
        let folded = fold_pending(&mut tx, &mut self.engine.names)?;
        tx.commit()?;
        self.fold.folded();
        Ok(folded)
    }

    fn recount_accruals(&mut self) -> Result<Vec<AccrualRow>> {
        refresh_names(&mut self.client, &mut self.engine.names)?;
        let rows = self.client.query(
            "SELECT beneficiary_id, provider_id, class_code, period, amount_fen FROM usage_records WHERE voided_at IS NULL",
            &[],
        )?;
        common::recount(
            &self.engine.names,
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))),
        )
    }

    fn stats(&mut self, provider: Option<&str>) -> Result<Stats> {
        let sql = "SELECT COUNT(*)::bigint, COUNT(voided_at)::bigint, COALESCE(SUM(CASE WHEN voided_at IS NULL THEN amount_fen ELSE 0 END), 0)::bigint FROM usage_records";
        let map = |r: postgres::Row| Stats {
            records: r.get::<_, i64>(0) as u64,
            voided_records: r.get::<_, i64>(1) as u64,
            amount_fen: r.get(2),
        };
        Ok(match provider {
            None => map(self.client.query_one(sql, &[])?),
            Some(p) => match self.name_id(Kind::Provider, p)? {
                None => Stats::default(),
                Some(id) => map(self
                    .client
                    .query_one(&format!("{sql} WHERE provider_id = $1"), &[&id])?),
            },
        })
    }

    fn record(&mut self, provider: &str, record_id: &str) -> Result<Option<StoredRecord>> {
        let Some(provider_id) = self.name_id(Kind::Provider, provider)? else {
            return Ok(None);
        };
        let Some((row, voided_at, void_reason)) = self.select_one(provider_id, record_id)? else {
            return Ok(None);
        };
        crate::sqlite::stored(&self.engine.names, &row, voided_at, void_reason).map(Some)
    }

    fn transaction(
        &mut self,
        f: &mut dyn FnMut(&mut dyn crate::sql::Sql) -> Result<()>,
    ) -> Result<()> {
        let mut tx = self.client.transaction()?;
        f(&mut tx)?;
        tx.commit()?;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        // One snapshot, so that a rebuild (after a gap) reads records and log consistently.
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        refresh_names(&mut tx, &mut self.engine.names)?;
        catch_up(&mut tx, &mut self.engine, &mut self.log_seq)?;
        tx.commit()?;
        Ok(())
    }
}
