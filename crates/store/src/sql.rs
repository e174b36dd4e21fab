//! A small dynamic SQL surface shared by both backends, so the settlement and ledger queries
//! (`ledger.rs`) are written once. Placeholders are `$1, $2, …` in order of appearance: PostgreSQL
//! reads them natively and SQLite binds them positionally in that order.

use crate::{Result, StoreError};

/// A value bound to or read from a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Text(String),
    /// NULL in an integer column.
    NullInt,
    /// NULL in a text column.
    NullText,
}

impl Value {
    pub fn int(&self) -> Result<i64> {
        match self {
            Value::Int(i) => Ok(*i),
            other => Err(StoreError::Corrupt(format!(
                "expected an integer, found {other:?}"
            ))),
        }
    }

    pub fn text(&self) -> Result<String> {
        match self {
            Value::Text(t) => Ok(t.clone()),
            other => Err(StoreError::Corrupt(format!(
                "expected text, found {other:?}"
            ))),
        }
    }

    pub fn opt_text(&self) -> Result<Option<String>> {
        match self {
            Value::NullText | Value::NullInt => Ok(None),
            other => other.text().map(Some),
        }
    }

    pub fn opt_int(&self) -> Result<Option<i64>> {
        match self {
            Value::NullText | Value::NullInt => Ok(None),
            other => other.int().map(Some),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Value {
        v.map_or(Value::NullText, Value::Text)
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Value {
        v.map_or(Value::NullInt, Value::Int)
    }
}

/// The smallest text above every text that starts with `prefix` (but those with U+10FFFF right
/// after it): with byte order (SQLite's BINARY, `COLLATE "C"` on PostgreSQL), `prefix <= x AND
/// x < prefix_end(prefix)` is a range of an index where `LIKE` would not be.
pub fn prefix_end(prefix: &str) -> String {
    format!("{prefix}{}", char::MAX)
}

/// Rows per multi-row INSERT: one statement per chunk instead of one per row (a run of 100,000
/// beneficiaries has 300,000 lines), within SQLite's and PostgreSQL's parameter limits.
const INSERT_ROWS_MAX: usize = 1000;

/// One open transaction of either backend.
pub trait Sql {
    /// Runs a statement; returns the number of rows changed.
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    /// Runs a query; every row as values in column order.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>>;

    /// Inserts many rows (integer or text columns, no NULLs): multi-row `INSERT … VALUES`
    /// statements here; PostgreSQL overrides it with a binary COPY.
    fn insert_rows(&mut self, table: &str, columns: &[&str], rows: &[Vec<Value>]) -> Result<()> {
        for chunk in rows.chunks(INSERT_ROWS_MAX) {
            let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
            let mut n = 0;
            for (i, row) in chunk.iter().enumerate() {
                sql.push_str(if i == 0 { "(" } else { ", (" });
                for c in 0..row.len() {
                    n += 1;
                    sql.push_str(&format!("{}${n}", if c == 0 { "" } else { ", " }));
                }
                sql.push(')');
            }
            let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
            self.exec(&sql, &params)?;
        }
        Ok(())
    }

    /// Serialises settlement writes across connections until this transaction ends. SQLite
    /// needs nothing (one writer holds the database lock for the whole write transaction);
    /// PostgreSQL takes a transaction-scoped advisory lock.
    fn lock_settlement(&mut self) -> Result<()> {
        Ok(())
    }

    /// Serialises audit-log appends across connections until this transaction ends, so two
    /// servers on one database chain after each other instead of colliding on the next seq.
    /// Taken last by every transaction that takes another lock (no lock-order cycle).
    fn lock_audit(&mut self) -> Result<()> {
        Ok(())
    }

    /// A SQL expression for a number that changes whenever accruals change, by any server on
    /// the database (PostgreSQL: the newest `ingest_log` seq), so readers can cache what they
    /// derive from accruals; `None` where one server owns the database (SQLite), whose
    /// process-wide [`crate::accrual_changes`] counter says the same.
    fn accrual_generation_sql(&self) -> Option<&'static str> {
        None
    }
}

/// The advisory-lock key of settlement writes: one lock for every programme, since caps and
/// stacking can tie programmes together (see deploy/SCALING.md).
pub const SETTLEMENT_LOCK_SQL: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('suanli.settlement', 0))";

/// The advisory-lock key of audit-log appends.
pub const AUDIT_LOCK_SQL: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('suanli.audit', 0))";

impl Sql for rusqlite::Transaction<'_> {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut stmt = self.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter().map(sqlite_value)))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>> {
        let mut stmt = self.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(sqlite_value)))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => Value::NullText,
                    rusqlite::types::ValueRef::Integer(v) => Value::Int(v),
                    rusqlite::types::ValueRef::Text(t) => {
                        Value::Text(String::from_utf8_lossy(t).into_owned())
                    }
                    other => {
                        // Named by the row's first column (every query here selects its key
                        // first: the audit log's seq, a run's id), so the bad row can be found.
                        let key = match row.get_ref(0)? {
                            rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                            rusqlite::types::ValueRef::Text(t) => {
                                format!("{:?}", String::from_utf8_lossy(t))
                            }
                            _ => "?".to_owned(),
                        };
                        let found = match other {
                            rusqlite::types::ValueRef::Blob(b) => {
                                format!("{} bytes that are not text", b.len())
                            }
                            v => format!("{:?}", v.data_type()),
                        };
                        return Err(StoreError::Corrupt(format!(
                            "column {} of the row where {} = {key} holds {found}",
                            stmt_column(&rows, i),
                            stmt_column(&rows, 0)
                        )));
                    }
                });
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// The name of a result column.
fn stmt_column(rows: &rusqlite::Rows<'_>, i: usize) -> String {
    rows.as_ref()
        .and_then(|stmt| stmt.column_name(i).ok())
        .unwrap_or("?")
        .to_owned()
}

fn sqlite_value(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
        Value::NullInt | Value::NullText => rusqlite::types::Value::Null,
    }
}

/// PostgreSQL's accrual position: the newest `ingest_log` seq.
pub(crate) const PG_ACCRUAL_POSITION_SQL: &str = "(SELECT COALESCE(MAX(seq), 0) FROM ingest_log)";

impl Sql for postgres::Transaction<'_> {
    fn insert_rows(&mut self, table: &str, columns: &[&str], rows: &[Vec<Value>]) -> Result<()> {
        use postgres::types::Type;
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let types: Vec<Type> = first
            .iter()
            .map(|v| {
                if matches!(v, Value::Int(_)) {
                    Type::INT8
                } else {
                    Type::TEXT
                }
            })
            .collect();
        let sink = self.copy_in(&format!(
            "COPY {table} ({}) FROM STDIN (FORMAT binary)",
            columns.join(", ")
        ))?;
        let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
        for row in rows {
            let bound = pg_params(row);
            let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                bound.iter().map(|b| b.as_ref()).collect();
            writer.write(&refs)?;
        }
        writer.finish()?;
        Ok(())
    }

    fn lock_settlement(&mut self) -> Result<()> {
        self.execute(SETTLEMENT_LOCK_SQL, &[])?;
        Ok(())
    }

    fn lock_audit(&mut self) -> Result<()> {
        self.execute(AUDIT_LOCK_SQL, &[])?;
        Ok(())
    }

    fn accrual_generation_sql(&self) -> Option<&'static str> {
        Some(PG_ACCRUAL_POSITION_SQL)
    }

    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let bound = pg_params(params);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            bound.iter().map(|b| b.as_ref()).collect();
        Ok(self.execute(sql, &refs)?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>> {
        let bound = pg_params(params);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            bound.iter().map(|b| b.as_ref()).collect();
        let rows = postgres::GenericClient::query(self, sql, &refs)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(row.len());
            for (i, column) in row.columns().iter().enumerate() {
                use postgres::types::Type;
                let ty = column.type_();
                values.push(if *ty == Type::INT8 {
                    row.get::<_, Option<i64>>(i)
                        .map_or(Value::NullInt, Value::Int)
                } else if *ty == Type::INT4 {
                    row.get::<_, Option<i32>>(i)
                        .map_or(Value::NullInt, |v| Value::Int(i64::from(v)))
                } else if *ty == Type::TEXT || *ty == Type::VARCHAR {
                    row.get::<_, Option<String>>(i)
                        .map_or(Value::NullText, Value::Text)
                } else {
                    return Err(StoreError::Corrupt(format!(
                        "unexpected postgres column type {ty}"
                    )));
                });
            }
            out.push(values);
        }
        Ok(out)
    }
}

fn pg_params(params: &[Value]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|v| -> Box<dyn postgres::types::ToSql + Sync> {
            match v {
                Value::Int(i) => Box::new(*i),
                Value::Text(t) => Box::new(t.clone()),
                Value::NullInt => Box::new(Option::<i64>::None),
                Value::NullText => Box::new(Option::<String>::None),
            }
        })
        .collect()
}
