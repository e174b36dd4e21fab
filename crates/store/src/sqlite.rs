//! The SQLite backend (the default): one file, WAL with `synchronous=FULL` so a commit is on
//! disk when it returns; ingest groups may instead commit without the fsync and be flushed by
//! another thread before `ACCEPTED` is sent ([`Store::defer_ingest_sync`]). The usage table is a WITHOUT ROWID B-tree keyed
//! (provider_id, record_id), so a record costs one B-tree insert and the insert itself detects
//! an existing key.

use std::borrow::Cow;
use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::common::{
    self, AccrualKey, Engine, FxMap, Kind, Names, Row, TxEffects, decode, now_text,
};
use crate::{
    AccrualRow, Candidate, Decision, Principal, RegistryNames, RegistryVersionRow, Result, Stats,
    Store, StoreError, StoredRecord, VoidResult,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/sqlite/0001_ingest.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/sqlite/0002_settlement.sql"),
    ),
    (3, include_str!("../../../migrations/sqlite/0003_audit.sql")),
    (
        4,
        include_str!("../../../migrations/sqlite/0004_token_lifetime.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/sqlite/0005_ingest_stats.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/sqlite/0006_accrual_pending.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/sqlite/0007_cancelled_by.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/sqlite/0008_opening.sql"),
    ),
    (9, include_str!("../../../migrations/sqlite/0009_users.sql")),
    (
        10,
        include_str!("../../../migrations/sqlite/0010_payment_confirmation.sql"),
    ),
    (
        11,
        include_str!("../../../migrations/sqlite/0011_user_last_signin.sql"),
    ),
    (
        12,
        include_str!("../../../migrations/sqlite/0012_list_indexes.sql"),
    ),
    (
        13,
        include_str!("../../../migrations/sqlite/0013_reject_field.sql"),
    ),
    (
        14,
        include_str!("../../../migrations/sqlite/0014_account_totals.sql"),
    ),
    (
        15,
        include_str!("../../../migrations/sqlite/0015_run_totals.sql"),
    ),
    (
        16,
        include_str!("../../../migrations/sqlite/0016_voided_records.sql"),
    ),
    (
        17,
        include_str!("../../../migrations/sqlite/0017_posted_totals.sql"),
    ),
    (
        18,
        include_str!("../../../migrations/sqlite/0018_drop_posted_totals.sql"),
    ),
];

pub struct SqliteStore {
    conn: Connection,
    engine: Engine,
    /// The engine's key filter and capacity have been read from the records
    /// ([`Store::prepare_ingest`]); its names always are.
    engine_ready: bool,
    /// The database file, for [`Store::defer_ingest_sync`].
    path: std::path::PathBuf,
    /// Ingest groups commit with `synchronous=NORMAL` (no fsync at commit) and are flushed by
    /// a [`WalSync`] before they are acknowledged; every other commit stays `FULL`.
    defer_ingest_sync: bool,
    /// The page cache is at its full size ([`SqliteStore::fit_cache`]).
    cache_full: bool,
    /// When ingest folds the pending accrual deltas ([`common::FOLD_GROUPS`]).
    fold: common::FoldClock,
    /// The accrual deltas of this store's commits, for [`Store::accrual_changes_since`].
    accrual_log: common::AccrualLog,
}

/// Page cache while the database is smaller than SQLite's pending-byte offset, and after.
const CACHE_SMALL_KIB: i64 = 16_384;
const CACHE_FULL_KIB: i64 = 262_144;
/// SQLite's pending-byte offset (1 GiB).
const PENDING_BYTE: i64 = 0x4000_0000;
/// The database's size in bytes.
const SIZE_SQL: &str = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()";

const SELECT_ROW: &str = "SELECT beneficiary_id, sku_id, start_ns, end_ns, quantity, amount_fen, period, class_code, registry_version, voided_at, void_reason FROM usage_records WHERE provider_id = ?1 AND record_id = ?2";

/// Keys per lookup statement and rows per insert statement: big statements amortize SQLite's
/// per-statement cost (11 parameters a row stays far below SQLite's 32,766).
const LOOKUP_KEYS_MAX: usize = 500;
const INSERT_ROWS_MAX: usize = 500;

fn lookup_sql(keys: usize) -> String {
    let mut sql = String::from(
        "SELECT u.provider_id, u.record_id, u.beneficiary_id, u.sku_id, u.start_ns, u.end_ns, u.quantity, u.amount_fen, u.period, u.class_code, u.registry_version \
         FROM usage_records u WHERE (u.provider_id, u.record_id) IN (VALUES ",
    );
    push_value_rows(&mut sql, keys, 2);
    sql.push(')');
    sql
}

fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO usage_records (provider_id, record_id, beneficiary_id, sku_id, start_ns, end_ns, quantity, amount_fen, period, class_code, registry_version) VALUES ",
    );
    push_value_rows(&mut sql, rows, 11);
    sql
}

/// Appends `rows` comma-separated tuples of `columns` parameters: `(?,?),(?,?)`.
fn push_value_rows(sql: &mut String, rows: usize, columns: usize) {
    let tuple = format!("({})", vec!["?"; columns].join(","));
    for k in 0..rows {
        if k > 0 {
            sql.push(',');
        }
        sql.push_str(&tuple);
    }
}

type Fetched = (Row<'static>, Option<String>, Option<String>);

/// A stored quantity's text as a number, as a column conversion.
fn quantity_at(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<rust_decimal::Decimal> {
    let text: String = r.get(column)?;
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn fetch(
    stmt: &mut rusqlite::CachedStatement<'_>,
    provider_id: i64,
    record_id: &str,
) -> rusqlite::Result<Option<Fetched>> {
    stmt.query_row(params![provider_id, record_id], |r| {
        Ok((
            Row {
                provider_id,
                record_id: Cow::Owned(record_id.to_owned()),
                beneficiary_id: r.get(0)?,
                sku_id: r.get(1)?,
                start_ns: r.get(2)?,
                end_ns: r.get(3)?,
                quantity: quantity_at(r, 4)?,
                amount_fen: r.get(5)?,
                period: r.get(6)?,
                class_code: r.get(7)?,
                registry_version: r.get(8)?,
            },
            r.get(9)?,
            r.get(10)?,
        ))
    })
    .optional()
}

/// Stores planned names with one prepared statement (a registry declares up to hundreds of
/// thousands; preparing per row doubled the time on the writer).
fn insert_names(tx: &rusqlite::Transaction<'_>, planned: &[(Kind, String, i64)]) -> Result<()> {
    let mut stmt = tx.prepare_cached("INSERT INTO names (id, kind, name) VALUES (?1, ?2, ?3)")?;
    for (kind, name, id) in planned {
        stmt.execute(params![id, kind.as_str(), name])?;
    }
    Ok(())
}

/// Adds the names with ids from `names.next_id` on.
fn read_names(conn: &Connection, names: &mut Names) -> Result<()> {
    let mut stmt = conn.prepare_cached("SELECT id, kind, name FROM names WHERE id >= ?1")?;
    let rows = stmt.query_map([names.next_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (id, kind, name) = row?;
        let kind =
            Kind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("name kind {kind:?}")))?;
        names.insert(kind, name, id);
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating the file and its directory on first start) and migrates.
    pub fn open(path: &str) -> Result<SqliteStore> {
        let path = Path::new(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        // Durable: WAL with synchronous=FULL fsyncs the WAL at every commit.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "busy_timeout", 10_000)?;
        conn.pragma_update(None, "cache_size", -CACHE_SMALL_KIB)?; // see `fit_cache`
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Checkpoint the WAL every ~40 MiB instead of every 4 MiB: fewer, larger checkpoints.
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = SqliteStore {
            conn,
            engine: Engine::default(),
            engine_ready: false,
            path: path.to_path_buf(),
            defer_ingest_sync: false,
            cache_full: false,
            fold: common::FoldClock::default(),
            accrual_log: common::AccrualLog::default(),
        };
        store.migrate()?;
        store.fit_cache(PENDING_BYTE)?;
        read_names(&store.conn, &mut store.engine.names)?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        self.conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")?;
        for (version, sql) in MIGRATIONS {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let applied: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
                [version],
                |r| r.get(0),
            )?;
            if !applied {
                tx.execute_batch(sql)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                    params![version, now_text(Utc::now())],
                )?;
            }
            tx.commit()?;
        }
        Ok(())
    }

    /// Reads the names interned since this store last read them (by another process, say;
    /// ids only grow).
    fn refresh_names(&mut self) -> Result<()> {
        read_names(&self.conn, &mut self.engine.names)
    }

    /// Reads the engine from every stored record, once ([`Store::prepare_ingest`]).
    fn ready_engine(&mut self) -> Result<()> {
        if !self.engine_ready {
            self.load_engine()?;
            self.engine_ready = true;
        }
        Ok(())
    }

    fn load_engine(&mut self) -> Result<()> {
        let mut engine = Engine::default();
        read_names(&self.conn, &mut engine.names)?;
        let mut stmt = self.conn.prepare(
            "SELECT provider_id, record_id, voided_at IS NOT NULL, sku_id, start_ns, end_ns, quantity, amount_fen, period FROM usage_records",
        )?;
        let mut rows = stmt.query([])?;
        let mut shares = Vec::new();
        let mut progress = common::RebuildProgress::start();
        /// Column `i` as text borrowed from the row: nothing allocated per record.
        fn text_at<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str> {
            let v = r.get_ref(i)?;
            v.as_str().map_err(|_| {
                StoreError::Corrupt(format!(
                    "usage_records column {i} is not text: {:?}",
                    v.data_type()
                ))
            })
        }
        while let Some(r) = rows.next()? {
            engine.rebuild_add(
                r.get(0)?,
                text_at(r, 1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                text_at(r, 6)?,
                r.get(7)?,
                r.get(8)?,
                &mut shares,
            )?;
            progress.record();
        }
        progress.done();
        drop(rows);
        drop(stmt);
        engine.names.keep_shared(&self.engine.names);
        self.engine = engine;
        Ok(())
    }
}

impl SqliteStore {
    /// Sizes the page cache: 16 MiB while the database is smaller than 1 GiB, 256 MiB from
    /// then on. While it is smaller, every commit walks the whole page cache: SQLite's b-tree
    /// balancing parks a page at the pending-byte page number (past the end of such a
    /// database), and the commit truncates the cache back to the database's size, which scans
    /// every cached page when that number is far past it. With 256 MiB the scan was 9 % of the
    /// writer's time at half rate (BENCHMARKS.md); past 1 GiB the truncation finds nothing to
    /// do and a large cache keeps the b-tree's inner pages.
    fn fit_cache(&mut self, full_from_bytes: i64) -> Result<()> {
        if self.cache_full {
            return Ok(());
        }
        let bytes: i64 = self
            .conn
            .prepare_cached(SIZE_SQL)?
            .query_row([], |r| r.get(0))?;
        if bytes >= full_from_bytes {
            self.conn
                .pragma_update(None, "cache_size", -CACHE_FULL_KIB)?;
            self.cache_full = true;
        }
        Ok(())
    }

    /// One group in one transaction, committed with the connection's `synchronous` setting.
    fn ingest_group(
        &mut self,
        candidates: &[&Candidate],
        rejected: &[crate::ingest_stats::Rejected],
        at: DateTime<Utc>,
    ) -> Result<Vec<Decision>> {
        self.fit_cache(PENDING_BYTE)?;
        let rows = common::encode_group(&self.engine.names, candidates)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // One lookup of every key of the group, in multi-row statements; usually finds nothing.
        let mut existing = common::Existing::default();
        let maybe = common::maybe_stored(&mut self.engine, &rows, &common::key_hashes(&rows));
        for chunk in maybe.chunks(LOOKUP_KEYS_MAX) {
            let mut stmt = tx.prepare_cached(&lookup_sql(chunk.len()))?;
            let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 2);
            for row in chunk {
                params.push(&row.provider_id);
                params.push(&row.record_id as &dyn rusqlite::ToSql);
            }

            let mut found = stmt.query(params.as_slice())?;
            while let Some(r) = found.next()? {
                let row = Row {
                    provider_id: r.get(0)?,
                    record_id: Cow::Owned(r.get(1)?),
                    beneficiary_id: r.get(2)?,
                    sku_id: r.get(3)?,
                    start_ns: r.get(4)?,
                    end_ns: r.get(5)?,
                    quantity: quantity_at(r, 6)?,
                    amount_fen: r.get(7)?,
                    period: r.get(8)?,
                    class_code: r.get(9)?,
                    registry_version: r.get(10)?,
                };
                existing.insert((row.provider_id, row.record_id.to_string()), row);
            }
        }
        let common::Decided {
            decisions,
            insert,
            effects: mut fx,
        } = common::decide(&self.engine, candidates, &rows, &existing, maybe.is_empty())?;
        let mut quantity = String::new();
        for chunk in insert.chunks(INSERT_ROWS_MAX) {
            let mut stmt = tx.prepare_cached(&insert_sql(chunk.len()))?;
            // Raw binding: no per-parameter trait objects; the statement has exactly these slots.
            let mut slot = 1;
            for &i in chunk {
                let r = &rows[i];
                stmt.raw_bind_parameter(slot, r.provider_id)?;
                stmt.raw_bind_parameter(slot + 1, r.record_id.as_ref())?;
                for (offset, value) in [
                    (2, r.beneficiary_id),
                    (3, r.sku_id),
                    (4, r.start_ns),
                    (5, r.end_ns),
                ] {
                    stmt.raw_bind_parameter(slot + offset, value)?;
                }
                // SQLite copies bound text (SQLITE_TRANSIENT), so one buffer serves every row.
                stmt.raw_bind_parameter(
                    slot + 6,
                    common::quantity_text(r.quantity, &mut quantity),
                )?;
                for (offset, value) in [
                    (7, r.amount_fen),
                    (8, r.period),
                    (9, r.class_code),
                    (10, r.registry_version),
                ] {
                    stmt.raw_bind_parameter(slot + offset, value)?;
                }
                slot += 11;
            }
            stmt.raw_execute()?;
        }
        let mut tx = tx;
        if !fx.accruals.is_empty() {
            tx.prepare_cached("INSERT INTO accrual_pending (deltas) VALUES (?1)")?
                .execute([common::encode_accrual_deltas(
                    &self.engine.names,
                    &fx.accruals,
                )?])?;
            // A fold that fails (a total beyond 64 bits from rows an older version accepted)
            // leaves the pending rows for readers to add up, and must not fail the group: the
            // records beside it are valid, and ingest goes on. Readers report the overflow.
            if self.fold.fold_now() && fold_pending(&mut tx, &self.engine.names).is_ok() {
                self.fold.folded();
            }
        }
        crate::ingest_stats::write(&mut tx, candidates, &decisions, rejected, at)?;
        tx.commit()?;
        crate::note_accrual_change();
        if !fx.accruals.is_empty() {
            self.accrual_log.note(0, std::mem::take(&mut fx.accruals));
        }
        fx.commit_into(&mut self.engine);
        Ok(decisions)
    }
}

/// Rows per accrual upsert statement: powers of two up to this, so a group's upserts use at
/// most eight distinct statements and they stay in the statement cache.
const ACCRUAL_ROWS_MAX: usize = 128;

fn accrual_upsert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO accruals (beneficiary, provider, category, chip_origin, registered_model, period, amount_fen, records) VALUES ",
    );
    push_value_rows(&mut sql, rows, 8);
    sql += " ON CONFLICT (beneficiary, provider, category, chip_origin, registered_model, period) \
            DO UPDATE SET amount_fen = CASE WHEN typeof(amount_fen + excluded.amount_fen) = 'integer' THEN amount_fen + excluded.amount_fen END, \
            records = CASE WHEN typeof(records + excluded.records) = 'integer' THEN records + excluded.records END";
    sql
}

/// The `accruals` table's rows.
fn accrual_table(conn: &Connection) -> Result<Vec<AccrualRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT beneficiary, provider, category, chip_origin, registered_model, period, amount_fen, records FROM accruals WHERE records <> 0 OR amount_fen <> 0",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(AccrualRow {
            beneficiary: r.get(0)?,
            provider: r.get(1)?,
            category: r.get(2)?,
            chip_origin: r.get(3)?,
            registered_model: r.get(4)?,
            period: r.get(5)?,
            amount_fen: r.get(6)?,
            records: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Folds every pending accrual delta into `accruals` and deletes the pending rows
/// ([`common::FOLD_GROUPS`]), in a savepoint: a fold that fails changes nothing, so the
/// transaction around it can still commit.
fn fold_pending(tx: &mut rusqlite::Transaction<'_>, names: &Names) -> Result<()> {
    let fold = tx.savepoint()?;
    let pending = read_pending(&fold)?;
    upsert_accruals(&fold, &common::keyed_deltas(names, &pending)?)?;
    fold.execute("DELETE FROM accrual_pending", [])?;
    fold.commit()?;
    Ok(())
}

/// The sum of the pending accrual deltas.
fn read_pending(conn: &Connection) -> Result<common::Sums> {
    let mut pending = FxMap::default();
    let mut stmt = conn.prepare_cached("SELECT deltas FROM accrual_pending")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let deltas: Vec<u8> = r.get(0)?;
        common::add_accrual_deltas(&deltas, &mut pending)?;
    }
    Ok(pending)
}

/// The accrual deltas of a transaction, as multi-row upserts (one statement per up to
/// [`ACCRUAL_ROWS_MAX`] line keys instead of one per key: a fold touches hundreds of keys).
fn write_effects(tx: &Connection, fx: &TxEffects, names: &Names) -> Result<()> {
    upsert_accruals(tx, &fx.accrual_deltas(names)?)
}

fn upsert_accruals(tx: &Connection, deltas: &[(AccrualKey, i64, i64)]) -> Result<()> {
    let mut rest = deltas;
    while !rest.is_empty() {
        let n = if rest.len() >= ACCRUAL_ROWS_MAX {
            ACCRUAL_ROWS_MAX
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut stmt = tx.prepare_cached(&accrual_upsert_sql(n))?;
        let mut slot = 1;
        for (k, amount, count) in chunk {
            for (offset, text) in [&k.0, &k.1, &k.2, &k.3, &k.4, &k.5].into_iter().enumerate() {
                stmt.raw_bind_parameter(slot + offset, text.as_str())?;
            }
            stmt.raw_bind_parameter(slot + 6, *amount)?;
            stmt.raw_bind_parameter(slot + 7, *count)?;
            slot += 8;
        }
        stmt.raw_execute().map_err(|e| accrual_overflow(e, chunk))?;
    }
    Ok(())
}

/// SQLite turns an integer sum that overflows into a float; the upsert makes it NULL instead,
/// which the NOT NULL column refuses. That failure is an overflow of one of the chunk's
/// accruals, named here.
fn accrual_overflow(e: rusqlite::Error, chunk: &[(AccrualKey, i64, i64)]) -> StoreError {
    let not_null = matches!(
        &e,
        rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL
    );
    if !not_null {
        return e.into();
    }
    let keys: Vec<String> = chunk
        .iter()
        .map(|(k, a, _)| {
            format!(
                "beneficiary {:?}, provider {:?}, period {} (+{a} fen)",
                k.0, k.1, k.5
            )
        })
        .collect();
    StoreError::Overflow(format!(
        "an accrual total passes a 64-bit amount when adding one of: {}",
        keys.join("; ")
    ))
}

impl Store for SqliteStore {
    fn registry_current(&mut self) -> Result<Option<RegistryVersionRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT version, content_hash, toml_text, loaded_at FROM registry_versions ORDER BY version DESC LIMIT 1",
                [],
                |r| {
                    Ok(RegistryVersionRow {
                        version: r.get::<_, i64>(0)? as u64,
                        content_hash: r.get(1)?,
                        toml_text: r.get(2)?,
                        loaded_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    fn registry_insert_audited(
        &mut self,
        content_hash: &str,
        toml_text: &str,
        names: &RegistryNames,
        at: DateTime<Utc>,
        audit: &mut dyn FnMut(&mut dyn crate::sql::Sql, u64) -> Result<()>,
    ) -> Result<u64> {
        let planned = self.engine.names.plan(names);
        let mut tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM registry_versions",
            [],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO registry_versions (version, content_hash, toml_text, loaded_at) VALUES (?1, ?2, ?3, ?4)",
            params![version, content_hash, toml_text, now_text(at)],
        )?;
        insert_names(&tx, &planned)?;
        audit(&mut tx, version as u64)?;
        tx.commit()?;
        for (kind, name, id) in planned {
            self.engine.names.insert(kind, name, id);
        }
        Ok(version as u64)
    }

    fn registry_intern(&mut self, names: &RegistryNames) -> Result<usize> {
        let planned = self.engine.names.plan(names);
        if planned.is_empty() {
            return Ok(0);
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        insert_names(&tx, &planned)?;
        tx.commit()?;
        let count = planned.len();
        for (kind, name, id) in planned {
            self.engine.names.insert(kind, name, id);
        }
        Ok(count)
    }

    fn prepare_ingest(&mut self) -> Result<()> {
        self.ready_engine()
    }

    fn defer_ingest_sync(&mut self) -> Option<crate::WalSync> {
        let mode: String = self
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .ok()?;
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let wal = std::path::PathBuf::from(wal);
        if !mode.eq_ignore_ascii_case("wal") || !wal.is_file() {
            return None;
        }
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        self.defer_ingest_sync = true;
        Some(crate::WalSync::new(wal, dir).with_checkpoints(self.path.clone()))
    }

    fn ingest_noting(
        &mut self,
        candidates: &[&Candidate],
        rejected: &[crate::ingest_stats::Rejected],
        at: DateTime<Utc>,
    ) -> Result<Vec<Decision>> {
        self.ready_engine()?;
        if !self.defer_ingest_sync {
            return self.ingest_group(candidates, rejected, at);
        }
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let result = self.ingest_group(candidates, rejected, at);
        // Back to FULL for every other write, even if the group failed.
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        result
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
        let Some(provider_id) = self.engine.names.id(Kind::Provider, provider) else {
            return Ok(VoidResult::NotFound);
        };
        let mut tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let fetched = {
            let mut select = tx.prepare_cached(SELECT_ROW)?;
            fetch(&mut select, provider_id, record_id)?
        };
        let Some((row, voided_at, _)) = fetched else {
            return Ok(VoidResult::NotFound);
        };
        if let Some(at) = voided_at {
            return Ok(VoidResult::AlreadyVoided { at });
        }
        let at = now_text(at);
        tx.execute(
            "UPDATE usage_records SET voided_at = ?3, void_reason = ?4 WHERE provider_id = ?1 AND record_id = ?2",
            params![provider_id, record_id, at, reason],
        )?;
        let record = decode(&self.engine.names, &row)?;
        let mut fx = TxEffects::default();
        fx.release(&self.engine, &row, record.quantity);
        write_effects(&tx, &fx, &self.engine.names)?;
        audit(&mut tx, &at)?;
        tx.commit()?;
        crate::note_accrual_change();
        self.accrual_log.note(0, std::mem::take(&mut fx.accruals));
        fx.commit_into(&mut self.engine);
        Ok(VoidResult::Voided { at })
    }

    fn token_lookup(&mut self, token_hash: &str) -> Result<Option<Principal>> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT role, subject FROM tokens WHERE token_hash = ?1",
                [token_hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(role, subject)| Principal::from_parts(&role, &subject)))
    }

    fn accruals(&mut self) -> Result<Vec<AccrualRow>> {
        // The table and the pending deltas from one snapshot (a read transaction).
        let tx = self.conn.transaction()?;
        let pending = read_pending(&tx)?;
        let table = accrual_table(&tx)?;
        tx.commit()?;
        if !pending.is_empty() {
            // Names another process interned after this one opened.
            self.refresh_names()?;
        }
        common::with_pending(&self.engine.names, table, &pending)
    }

    fn accrual_changes_since(
        &mut self,
        since: Option<crate::AccrualMark>,
    ) -> Result<crate::AccrualChanges> {
        if let Some(since) = since
            && let Some((mark, rows)) = self.accrual_log.since(&self.engine.names, since, None)?
        {
            return Ok(crate::AccrualChanges {
                mark,
                complete: false,
                rows,
            });
        }
        let mark = self.accrual_log.mark(0);
        Ok(crate::AccrualChanges {
            mark,
            complete: true,
            rows: self.accruals()?,
        })
    }

    fn accrual_feed(&mut self) -> crate::AccrualFeed {
        self.accrual_log.feed(&self.engine.names)
    }

    fn fold_accruals(&mut self) -> Result<bool> {
        if !self.fold.quiet() {
            return Ok(false);
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let pending: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM accrual_pending)", [], |r| {
                r.get(0)
            })?;
        let mut tx = tx;
        if pending {
            fold_pending(&mut tx, &self.engine.names)?;
        }
        tx.commit()?;
        self.fold.folded();
        Ok(pending)
    }

    fn recount_accruals(&mut self) -> Result<Vec<AccrualRow>> {
        self.refresh_names()?;
        let mut stmt = self.conn.prepare(
            "SELECT beneficiary_id, provider_id, class_code, period, amount_fen FROM usage_records WHERE voided_at IS NULL",
        )?;
        let rows: Vec<(i64, i64, i64, i64, i64)> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        common::recount(&self.engine.names, rows.into_iter())
    }

    fn stats(&mut self, provider: Option<&str>) -> Result<Stats> {
        let sql = "SELECT COUNT(*), COALESCE(SUM(voided_at IS NOT NULL), 0), COALESCE(SUM(CASE WHEN voided_at IS NULL THEN amount_fen ELSE 0 END), 0) FROM usage_records";
        let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Stats> {
            Ok(Stats {
                records: r.get::<_, i64>(0)? as u64,
                voided_records: r.get::<_, i64>(1)? as u64,
                amount_fen: r.get(2)?,
            })
        };
        Ok(match provider {
            None => self.conn.query_row(sql, [], map)?,
            Some(p) => match self.engine.names.id(Kind::Provider, p) {
                None => Stats::default(),
                Some(id) => {
                    self.conn
                        .query_row(&format!("{sql} WHERE provider_id = ?1"), [id], map)?
                }
            },
        })
    }

    fn record(&mut self, provider: &str, record_id: &str) -> Result<Option<StoredRecord>> {
        let Some(provider_id) = self.engine.names.id(Kind::Provider, provider) else {
            return Ok(None);
        };
        let mut select = self.conn.prepare_cached(SELECT_ROW)?;
        let Some((row, voided_at, void_reason)) = fetch(&mut select, provider_id, record_id)?
        else {
            return Ok(None);
        };
        drop(select);
        stored(&self.engine.names, &row, voided_at, void_reason).map(Some)
    }

    fn transaction(
        &mut self,
        f: &mut dyn FnMut(&mut dyn crate::sql::Sql) -> Result<()>,
    ) -> Result<()> {
        let mut tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        f(&mut tx)?;
        tx.commit()?;
        Ok(())
    }
}

/// A read-only connection beside the writer's ([`crate::Reader`]). In WAL mode a reader never
/// waits for the writer, and sees every transaction committed before its own began.
pub(crate) struct SqliteReader {
    conn: Connection,
}

impl SqliteReader {
    pub(crate) fn open(path: &str) -> Result<SqliteReader> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "busy_timeout", 10_000)?;
        conn.pragma_update(None, "cache_size", -CACHE_SMALL_KIB)?;
        Ok(SqliteReader { conn })
    }
}

impl crate::Reader for SqliteReader {
    fn read(&mut self, f: &mut dyn FnMut(&mut dyn crate::sql::Sql) -> Result<()>) -> Result<()> {
        let mut tx = self.conn.transaction()?;
        f(&mut tx)?;
        // Nothing was written: ending the transaction only releases its snapshot.
        tx.rollback()?;
        Ok(())
    }

    fn accrual_position(&mut self) -> Result<Option<i64>> {
        Ok(None)
    }

    fn query_ints(&mut self, sql: &str) -> Result<Vec<Vec<Option<i64>>>> {
        let mut stmt = self
            .conn
            .prepare_cached(&sql.replace("{position}", "NULL"))?;
        let columns = stmt.column_count();
        let rows = stmt.query_map([], |row| {
            (0..columns)
                .map(|i| row.get::<_, Option<i64>>(i))
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

pub(crate) fn stored(
    names: &Names,
    row: &Row,
    voided_at: Option<String>,
    void_reason: Option<String>,
) -> Result<StoredRecord> {
    Ok(StoredRecord {
        record: decode(names, row)?,
        class: common::class_of_code(row.class_code)
            .ok_or_else(|| StoreError::Corrupt(format!("class_code {}", row.class_code)))?,
        registry_version: row.registry_version as u64,
        voided_at,
        void_reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_kib(store: &SqliteStore) -> i64 {
        -store
            .conn
            .query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0))
            .expect("cache_size")
    }

    // A fresh database gets the small page cache, and the full one once it reaches the size
    // given (in production SQLite's pending-byte offset, 1 GiB); the cache does not shrink back.
    #[test]
    fn the_page_cache_grows_once_the_database_passes_the_threshold() {
        let dir = suanli_testkit::scratch_dir("page-cache");
        let path = dir.join("s.db");
        let mut store = SqliteStore::open(path.to_str().expect("utf-8 path")).expect("open");
        assert_eq!(cache_kib(&store), CACHE_SMALL_KIB);
        let bytes: i64 = store
            .conn
            .query_row(SIZE_SQL, [], |r| r.get(0))
            .expect("size");
        store.fit_cache(bytes + 1).expect("fit");
        assert_eq!(cache_kib(&store), CACHE_SMALL_KIB, "one byte short");
        store.fit_cache(bytes).expect("fit");
        assert_eq!(cache_kib(&store), CACHE_FULL_KIB);
        store.fit_cache(PENDING_BYTE).expect("fit");
        assert_eq!(cache_kib(&store), CACHE_FULL_KIB, "never shrinks back");
        drop(store);
        let store = SqliteStore::open(path.to_str().expect("utf-8 path")).expect("reopen");
        assert_eq!(
            cache_kib(&store),
            CACHE_SMALL_KIB,
            "a small file reopens small"
        );
    }

    #[test]
    fn value_rows_have_the_shape_asked_for() {
        let mut sql = String::new();
        push_value_rows(&mut sql, 3, 2);
        assert_eq!(sql, "(?,?),(?,?),(?,?)");
        let mut one = String::new();
        push_value_rows(&mut one, 1, 11);
        assert_eq!(one, "(?,?,?,?,?,?,?,?,?,?,?)");
    }

    // Accrual upserts split into power-of-two statements add every key's delta exactly once,
    // for key counts around and above the statement size.
    #[test]
    fn chunked_accrual_upserts_add_every_key_once() {
        for keys in [1usize, 127, 128, 129, 300] {
            let dir = suanli_testkit::scratch_dir(&format!("accrual-chunks-{keys}"));
            let path = dir.join("s.db");
            let mut store = SqliteStore::open(path.to_str().expect("utf-8 path")).expect("open");
            let mut names = Names::default();
            names.insert(Kind::Provider, "dc".into(), 10_000);
            let mut fx = TxEffects::default();
            for i in 0..keys as i64 {
                names.insert(Kind::Beneficiary, format!("ent-{i:03}"), i + 1);
                fx.accruals
                    .insert((i + 1, 10_000, 0, 202503), (i128::from(i + 1), 1));
            }
            for _ in 0..2 {
                let tx = store.conn.transaction().expect("tx");
                write_effects(&tx, &fx, &names).expect("upserts");
                tx.commit().expect("commit");
            }
            let rows = store.accruals().expect("accruals");
            assert_eq!(rows.len(), keys, "{keys} keys");
            for row in rows {
                let i: i64 = row.beneficiary["ent-".len()..].parse().expect("index");
                assert_eq!((row.amount_fen, row.records), (2 * (i + 1), 2), "{row:?}");
                assert_eq!(
                    (row.provider.as_str(), row.period.as_str()),
                    ("dc", "2025-03")
                );
            }
        }
    }
}
