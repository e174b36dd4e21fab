//! Opening balances in storage, written once for both backends over [`Sql`]: imports, their
//! rows, and the confirmed rows that settlement counts as prior payments. The decisions (who may
//! confirm, whether an import contradicts posted runs) are the app's.

use crate::sql::{Sql, Value};
use crate::{Result, StoreError};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpeningImportRow {
    pub import_id: i64,
    pub programme: String,
    pub content_hash: String,
    pub status: String,
    pub registry_version: i64,
    pub created_by: String,
    pub created_at: String,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<String>,
    pub journal_id: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpeningLineRow {
    pub beneficiary: String,
    pub provider: String,
    pub payee: String,
    pub amount_fen: i64,
}

const COLUMNS: &str = "import_id, programme, content_hash, status, registry_version, created_by, created_at, confirmed_by, confirmed_at, journal_id";

fn import_of(r: &[Value]) -> Result<OpeningImportRow> {
    Ok(OpeningImportRow {
        import_id: r[0].int()?,
        programme: r[1].text()?,
        content_hash: r[2].text()?,
        status: r[3].text()?,
        registry_version: r[4].int()?,
        created_by: r[5].text()?,
        created_at: r[6].text()?,
        confirmed_by: r[7].opt_text()?,
        confirmed_at: r[8].opt_text()?,
        journal_id: r[9].opt_int()?,
    })
}

fn imports_where(
    tx: &mut dyn Sql,
    filter: &str,
    params: &[Value],
) -> Result<Vec<OpeningImportRow>> {
    let sql = format!("SELECT {COLUMNS} FROM opening_imports WHERE {filter} ORDER BY import_id");
    tx.query(&sql, params)?
        .iter()
        .map(|r| import_of(r))
        .collect()
}

pub fn import(tx: &mut dyn Sql, import_id: i64) -> Result<Option<OpeningImportRow>> {
    Ok(imports_where(tx, "import_id = $1", &[import_id.into()])?
        .into_iter()
        .next())
}

/// A programme's imports that are pending or confirmed (not superseded), oldest first.
pub fn live_imports(tx: &mut dyn Sql, programme: &str) -> Result<Vec<OpeningImportRow>> {
    imports_where(
        tx,
        "programme = $1 AND status IN ('pending', 'confirmed')",
        &[programme.into()],
    )
}

/// Every import, oldest first.
pub fn imports(tx: &mut dyn Sql) -> Result<Vec<OpeningImportRow>> {
    imports_where(tx, "1 = 1", &[])
}

pub fn insert_import(
    tx: &mut dyn Sql,
    import: &OpeningImportRow,
    lines: &[OpeningLineRow],
) -> Result<i64> {
    let rows = tx.query(
        "INSERT INTO opening_imports (programme, content_hash, status, registry_version, created_by, created_at) VALUES ($1, $2, 'pending', $3, $4, $5) RETURNING import_id",
        &[
            import.programme.as_str().into(),
            import.content_hash.as_str().into(),
            import.registry_version.into(),
            import.created_by.as_str().into(),
            import.created_at.as_str().into(),
        ],
    )?;
    let import_id = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("insert returned no import id".into()))?[0]
        .int()?;
    let values: Vec<Vec<Value>> = lines
        .iter()
        .enumerate()
        .map(|(seq, l)| {
            vec![
                import_id.into(),
                (seq as i64).into(),
                l.beneficiary.as_str().into(),
                l.provider.as_str().into(),
                l.payee.as_str().into(),
                l.amount_fen.into(),
            ]
        })
        .collect();
    tx.insert_rows(
        "opening_lines",
        &[
            "import_id",
            "seq",
            "beneficiary",
            "provider",
            "payee",
            "amount_fen",
        ],
        &values,
    )?;
    Ok(import_id)
}

pub fn lines(tx: &mut dyn Sql, import_id: i64) -> Result<Vec<OpeningLineRow>> {
    tx.query(
        "SELECT beneficiary, provider, payee, amount_fen FROM opening_lines WHERE import_id = $1 ORDER BY seq",
        &[import_id.into()],
    )?
    .iter()
    .map(|r| {
        Ok(OpeningLineRow {
            beneficiary: r[0].text()?,
            provider: r[1].text()?,
            payee: r[2].text()?,
            amount_fen: r[3].int()?,
        })
    })
    .collect()
}

/// Marks a pending import superseded by a newer one; false when it was not pending.
pub fn supersede(tx: &mut dyn Sql, import_id: i64) -> Result<bool> {
    Ok(tx.exec(
        "UPDATE opening_imports SET status = 'superseded' WHERE import_id = $1 AND status = 'pending'",
        &[import_id.into()],
    )? == 1)
}

/// Marks a pending import confirmed with its journal; false when it was not pending.
pub fn confirm(
    tx: &mut dyn Sql,
    import_id: i64,
    by: &str,
    at: &str,
    journal_id: Option<i64>,
) -> Result<bool> {
    Ok(tx.exec(
        "UPDATE opening_imports SET status = 'confirmed', confirmed_by = $1, confirmed_at = $2, journal_id = $3 WHERE import_id = $4 AND status = 'pending'",
        &[by.into(), at.into(), journal_id.into(), import_id.into()],
    )? == 1)
}

/// The confirmed rows of every programme, with the programme and the confirmation time:
/// (programme, confirmed_at, line).
pub fn confirmed_lines(tx: &mut dyn Sql) -> Result<Vec<(String, String, OpeningLineRow)>> {
    tx.query(
        "SELECT i.programme, i.confirmed_at, l.beneficiary, l.provider, l.payee, l.amount_fen \
         FROM opening_lines l JOIN opening_imports i ON i.import_id = l.import_id \
         WHERE i.status = 'confirmed' ORDER BY i.import_id, l.seq",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok((
            r[0].text()?,
            r[1].opt_text()?.unwrap_or_default(),
            OpeningLineRow {
                beneficiary: r[2].text()?,
                provider: r[3].text()?,
                payee: r[4].text()?,
                amount_fen: r[5].int()?,
            },
        ))
    })
    .collect()
}
