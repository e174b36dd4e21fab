//! `loadtest --baseline URL`: the straightforward design Suanli must beat, measured in the same
//! run on the same machine. The same rows, batch by batch (one transaction per batch, as
//! durable as Suanli: SQLite WAL with `synchronous=FULL`), go into an unindexed table of the
//! same backend: SQLite by a multi-row INSERT, PostgreSQL by binary COPY. No key, no
//! validation, no accruals: the floor of "store these rows durably".
//!
//! The table `loadtest_baseline` is created fresh and dropped at the end. Use a scratch
//! database: a SQLite file next to (not equal to) the server's, or a PostgreSQL database the
//! server does not use, on the same PostgreSQL server.

use std::time::Instant;

use anyhow::{Context, bail};
use suanli_proto::v1 as pb;

const COLUMNS: &str = "provider TEXT, record_id TEXT, beneficiary TEXT, sku TEXT, start_s BIGINT, end_s BIGINT, quantity TEXT, amount_fen BIGINT";

/// Stores every record of `batches` into a fresh unindexed table at `url`; returns records/s.
pub fn run(url: &str, batches: &[pb::IngestRequest]) -> anyhow::Result<u128> {
    let records: usize = batches.iter().map(|b| b.records.len()).sum();
    let started = Instant::now();
    if let Some(path) = url.strip_prefix("sqlite://") {
        sqlite(path, batches)?;
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres(url, batches)?;
    } else {
        bail!("--baseline: {url} is neither sqlite://PATH nor postgres://…");
    }
    Ok(records as u128 * 1_000_000 / started.elapsed().as_micros().max(1))
}

fn seconds(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().map_or(0, |t| t.seconds)
}

fn sqlite(path: &str, batches: &[pb::IngestRequest]) -> anyhow::Result<()> {
    let mut conn = rusqlite::Connection::open(path)
        .with_context(|| format!("--baseline: cannot open {path}"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS loadtest_baseline; CREATE TABLE loadtest_baseline ({COLUMNS});"
    ))?;
    // SQLite binds at most 32,766 parameters per statement: 8 per row.
    const ROWS_PER_STATEMENT: usize = 4_000;
    for batch in batches {
        let tx = conn.transaction()?;
        for chunk in batch.records.chunks(ROWS_PER_STATEMENT) {
            let mut sql = String::from("INSERT INTO loadtest_baseline VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str("(?,?,?,?,?,?,?,?)");
            }
            let mut stmt = tx.prepare_cached(&sql)?;
            let mut params: Vec<rusqlite::types::Value> = Vec::with_capacity(chunk.len() * 8);
            for r in chunk {
                params.push(r.provider.clone().into());
                params.push(r.record_id.clone().into());
                params.push(r.beneficiary.clone().into());
                params.push(r.sku.clone().into());
                params.push(seconds(&r.start).into());
                params.push(seconds(&r.end).into());
                params.push(r.quantity.clone().into());
                params.push(r.amount_fen.into());
            }
            stmt.execute(rusqlite::params_from_iter(params))?;
        }
        tx.commit()?;
    }
    conn.execute_batch("DROP TABLE loadtest_baseline;")?;
    Ok(())
}

fn postgres(url: &str, batches: &[pb::IngestRequest]) -> anyhow::Result<()> {
    use postgres::binary_copy::BinaryCopyInWriter;
    use postgres::types::Type;
    let mut client = postgres::Client::connect(url, postgres::NoTls)
        .with_context(|| format!("--baseline: cannot connect to {url}"))?;
    client.batch_execute(&format!(
        "DROP TABLE IF EXISTS loadtest_baseline; CREATE TABLE loadtest_baseline ({COLUMNS});"
    ))?;
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::INT8,
    ];
    for batch in batches {
        let mut tx = client.transaction()?;
        let sink = tx.copy_in("COPY loadtest_baseline FROM STDIN (FORMAT binary)")?;
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        for r in &batch.records {
            writer.write(&[
                &r.provider,
                &r.record_id,
                &r.beneficiary,
                &r.sku,
                &seconds(&r.start),
                &seconds(&r.end),
                &r.quantity,
                &r.amount_fen,
            ])?;
        }
        writer.finish()?;
        tx.commit()?;
    }
    client.batch_execute("DROP TABLE loadtest_baseline;")?;
    Ok(())
}
