//! Optional indexes of usage records, for the console's record lists at scale.
//!
//! Usage records are stored by their key (provider, record id) and nothing else: every other
//! index would be written by ingest for every record (a secondary index cut ingest on SQLite
//! from about 600,000 to 170,000 records/s). Without one, a list filtered by enterprise or by
//! month walks the key's order until it has a page: milliseconds when the filter matches often,
//! a scan of every record when it matches rarely or never (about a second at 10,000,000 records
//! on SQLite). An operator who wants those lists fast at any size, and can spare the ingest
//! rate, adds the index here; the lists' queries use it without change, and dropping it gives
//! the ingest rate back.

use crate::{Result, StoreError};

/// An optional index of usage records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordIndex {
    /// By enterprise (beneficiary): an enterprise's records, its records of a provider.
    Enterprise,
    /// By month (period): a month's records, and an empty month at once.
    Month,
}

impl RecordIndex {
    pub const ALL: [RecordIndex; 2] = [RecordIndex::Enterprise, RecordIndex::Month];

    /// The word that names it on the command line.
    pub fn word(self) -> &'static str {
        match self {
            RecordIndex::Enterprise => "enterprise",
            RecordIndex::Month => "month",
        }
    }

    /// The index's name in the database.
    pub fn name(self) -> &'static str {
        match self {
            RecordIndex::Enterprise => "usage_records_by_beneficiary",
            RecordIndex::Month => "usage_records_by_period",
        }
    }

    /// Its columns: the filter's, then the lists' order (the key), so a filtered page is a
    /// range of the index in the order the page shows.
    fn columns(self) -> &'static str {
        match self {
            RecordIndex::Enterprise => "(beneficiary_id, provider_id, record_id)",
            RecordIndex::Month => "(period, provider_id, record_id)",
        }
    }
}

/// The optional indexes the database at `url` has (PostgreSQL: valid ones only; one left
/// invalid by an interrupted build counts as absent).
pub fn present(url: &str) -> Result<Vec<RecordIndex>> {
    let mut out = Vec::new();
    match connect(url)? {
        Conn::Sqlite(c) => {
            for index in RecordIndex::ALL {
                if present_sqlite(&c, index)? {
                    out.push(index);
                }
            }
        }
        Conn::Postgres(mut c) => {
            for index in RecordIndex::ALL {
                if pg_state(&mut c, index)? == Some(true) {
                    out.push(index);
                }
            }
        }
    }
    Ok(out)
}

/// Builds `index` unless the database has it; true when it was built. On SQLite the build
/// holds the database's write lock until it ends (ingest waits, and past the server's busy
/// timeout its commits fail and are retried by clients); on PostgreSQL it is built
/// concurrently, beside ingest, a build left invalid by an interruption is replaced, and the
/// table is analysed after.
pub fn create(url: &str, index: RecordIndex) -> Result<bool> {
    match connect(url)? {
        Conn::Sqlite(c) => {
            let before = present_sqlite(&c, index)?;
            c.execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS {} ON usage_records {}",
                index.name(),
                index.columns()
            ))?;
            Ok(!before)
        }
        Conn::Postgres(mut c) => {
            match pg_state(&mut c, index)? {
                Some(true) => return Ok(false),
                Some(false) => {
                    c.batch_execute(&format!("DROP INDEX CONCURRENTLY {}", index.name()))?;
                }
                None => {}
            }
            c.batch_execute(&format!(
                "CREATE INDEX CONCURRENTLY {} ON usage_records {}",
                index.name(),
                index.columns()
            ))?;
            // Statistics, so the planner knows which filters the index serves: without them
            // (autovacuum off or not yet run) it read a month holding every record through
            // the index, ten times slower than by the key.
            c.batch_execute("ANALYZE usage_records")?;
            Ok(true)
        }
    }
}

/// Drops `index` if the database has it; true when it was there.
pub fn remove(url: &str, index: RecordIndex) -> Result<bool> {
    match connect(url)? {
        Conn::Sqlite(c) => {
            let before = present_sqlite(&c, index)?;
            c.execute_batch(&format!("DROP INDEX IF EXISTS {}", index.name()))?;
            Ok(before)
        }
        Conn::Postgres(mut c) => {
            let before = pg_state(&mut c, index)?;
            if before.is_some() {
                c.batch_execute(&format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {}",
                    index.name()
                ))?;
            }
            Ok(before == Some(true))
        }
    }
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(::postgres::Client),
}

/// A plain connection to the database at `url`, after the store has opened it once (so it
/// exists and its migrations have run).
fn connect(url: &str) -> Result<Conn> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        // An index of a database that is not there yet is a mistyped path, not a new database.
        if !std::path::Path::new(path).exists() {
            return Err(StoreError::NoDatabase(path.to_owned()));
        }
    }
    drop(crate::open(url)?);
    if let Some(path) = url.strip_prefix("sqlite://") {
        let c = rusqlite::Connection::open(path)?;
        // Wait for the server's writer between its commits rather than fail at once.
        c.pragma_update(None, "busy_timeout", 60_000)?;
        Ok(Conn::Sqlite(c))
    } else {
        Ok(Conn::Postgres(::postgres::Client::connect(
            url,
            ::postgres::NoTls,
        )?))
    }
}

fn present_sqlite(c: &rusqlite::Connection, index: RecordIndex) -> Result<bool> {
    let n: i64 = c.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?1",
        [index.name()],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Whether PostgreSQL has `index` on usage records: `Some(valid)`, or `None`.
fn pg_state(c: &mut ::postgres::Client, index: RecordIndex) -> Result<Option<bool>> {
    let rows = c.query(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE c.relname = $1 AND i.indrelid = 'usage_records'::regclass",
        &[&index.name()],
    )?;
    match rows.first() {
        Some(r) => Ok(Some(r.get::<_, bool>(0))),
        None => Ok(None),
    }
}
