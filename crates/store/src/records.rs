//! Usage records read back by settlement line (R6: beneficiary, provider, class and period), a
//! bounded page at a time, for the explanation of a run's line. Written once for both backends
//! over [`Sql`].

use crate::sql::{Sql, Value};
use crate::{Result, StoreError};

/// A stored record of a line, void or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineRecordRow {
    pub record_id: String,
    pub sku: String,
    /// Unix nanoseconds.
    pub start_ns: i64,
    pub end_ns: i64,
    pub quantity: String,
    pub amount_fen: i64,
    pub voided_at: Option<String>,
    pub void_reason: Option<String>,
}

/// The records of one line, in record-id order after `after` (exclusive; empty for the first
/// page), at most `limit` of them. `class_code` is [`crate::class_code`] of the line's class and
/// `period` its [`crate::period_code`].
///
/// The query walks the provider's records in primary-key order (provider, record id) from
/// `after`, so a page costs at most one pass over the provider's records past it: no index
/// beyond the primary key is kept for this on the ingest path.
pub fn line_records(
    tx: &mut dyn Sql,
    beneficiary: &str,
    provider: &str,
    class_code: i64,
    period: i64,
    after: &str,
    limit: usize,
) -> Result<Vec<LineRecordRow>> {
    line_records_matching(
        tx,
        beneficiary,
        provider,
        class_code,
        period,
        after,
        &RecordFilter::default(),
        limit,
    )
}

/// Which of a line's records to list: those whose id starts with `id_prefix` (all when empty),
/// and only void or only not void ones when `void` says so.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub id_prefix: String,
    pub void: Option<bool>,
}

/// As [`line_records`], keeping only the records `filter` selects. The prefix is compared as
/// the first characters of the id (`substr`, the same on both backends whatever the
/// collation), so no character of it is a pattern.
#[allow(clippy::too_many_arguments)]
pub fn line_records_matching(
    tx: &mut dyn Sql,
    beneficiary: &str,
    provider: &str,
    class_code: i64,
    period: i64,
    after: &str,
    filter: &RecordFilter,
    limit: usize,
) -> Result<Vec<LineRecordRow>> {
    let mut sql = String::from(
        "SELECT u.record_id, s.name, u.start_ns, u.end_ns, u.quantity, u.amount_fen, u.voided_at, u.void_reason \
         FROM usage_records u JOIN names s ON s.id = u.sku_id \
         WHERE u.provider_id = (SELECT id FROM names WHERE kind = 'provider' AND name = $1) \
           AND u.record_id > $2 \
           AND u.beneficiary_id = (SELECT id FROM names WHERE kind = 'beneficiary' AND name = $3) \
           AND u.period = $4 AND u.class_code = $5",
    );
    // Parameters are numbered in the order they appear: SQLite binds `$N` by first appearance.
    let mut params: Vec<Value> = vec![
        provider.into(),
        after.into(),
        beneficiary.into(),
        period.into(),
        class_code.into(),
    ];
    if !filter.id_prefix.is_empty() {
        let chars = i64::try_from(filter.id_prefix.chars().count())
            .map_err(|_| StoreError::Corrupt("record id prefix is too long".into()))?;
        sql.push_str(&format!(
            " AND substr(u.record_id, 1, CAST(CAST(${} AS BIGINT) AS INTEGER)) = ${}",
            params.len() + 1,
            params.len() + 2
        ));
        params.push(Value::Int(chars));
        params.push(filter.id_prefix.as_str().into());
    }
    match filter.void {
        Some(true) => sql.push_str(" AND u.voided_at IS NOT NULL"),
        Some(false) => sql.push_str(" AND u.voided_at IS NULL"),
        None => {}
    }
    sql.push_str(&format!(
        " ORDER BY u.record_id LIMIT ${}",
        params.len() + 1
    ));
    params.push(Value::Int(i64::try_from(limit).map_err(|_| {
        StoreError::Corrupt(format!("page of {limit} records is too large"))
    })?));
    let rows = tx.query(&sql, &params)?;
    rows.iter()
        .map(|r| {
            Ok(LineRecordRow {
                record_id: r[0].text()?,
                sku: r[1].text()?,
                start_ns: r[2].int()?,
                end_ns: r[3].int()?,
                quantity: r[4].text()?,
                amount_fen: r[5].int()?,
                voided_at: r[6].opt_text()?,
                void_reason: r[7].opt_text()?,
            })
        })
        .collect()
}

/// Σ amount and count of one line's records that are not void (what its accrual holds), read
/// from the records themselves with the same walk as [`line_records`].
pub fn line_totals(
    tx: &mut dyn Sql,
    beneficiary: &str,
    provider: &str,
    class_code: i64,
    period: i64,
) -> Result<(i64, i64)> {
    let rows = tx.query(
        "SELECT CAST(COALESCE(SUM(u.amount_fen), 0) AS BIGINT), COUNT(*) FROM usage_records u \
         WHERE u.provider_id = (SELECT id FROM names WHERE kind = 'provider' AND name = $1) \
           AND u.beneficiary_id = (SELECT id FROM names WHERE kind = 'beneficiary' AND name = $2) \
           AND u.period = $3 AND u.class_code = $4 AND u.voided_at IS NULL",
        &[
            provider.into(),
            beneficiary.into(),
            period.into(),
            class_code.into(),
        ],
    )?;
    let r = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("no record totals row".into()))?;
    Ok((r[0].int()?, r[1].int()?))
}
