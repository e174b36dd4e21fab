//! Payments that need a second person, in storage, written once for both backends over
//! [`Sql`]: recorded (awaiting confirmation), confirmed with the journal that booked them, or
//! withdrawn. The decisions (which payments need confirming, who may confirm, what is still
//! owed) are the app's; these functions only read and write rows inside the caller's
//! transaction.

use crate::sql::{Sql, Value};
use crate::{Result, StoreError};

/// A payment awaiting confirmation, or one that was confirmed or withdrawn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentRow {
    pub payment_id: i64,
    pub programme: String,
    pub payee: String,
    pub amount_fen: i64,
    pub reference: String,
    /// `awaiting`, `confirmed` or `withdrawn`.
    pub status: String,
    /// The recorder as actors are shown: `name (login)`.
    pub recorded_by: String,
    /// The recorder's user id, which four eyes compares; `None` for an actor without a user.
    pub recorded_by_user_id: Option<i64>,
    pub recorded_at: String,
    pub confirmed_by: Option<String>,
    pub confirmed_by_user_id: Option<i64>,
    pub confirmed_at: Option<String>,
    pub withdrawn_by: Option<String>,
    pub withdrawn_at: Option<String>,
    /// The payment journal written on confirmation.
    pub journal_id: Option<i64>,
}

/// A payment to record, awaiting confirmation.
#[derive(Clone, Debug)]
pub struct NewPayment {
    pub programme: String,
    pub payee: String,
    pub amount_fen: i64,
    pub reference: String,
    pub recorded_by: String,
    pub recorded_by_user_id: Option<i64>,
    pub recorded_at: String,
}

const COLUMNS: &str = "payment_id, programme, payee, amount_fen, reference, status, recorded_by, \
                       recorded_by_user_id, recorded_at, confirmed_by, confirmed_by_user_id, \
                       confirmed_at, withdrawn_by, withdrawn_at, journal_id";

fn row_of(r: &[Value]) -> Result<PaymentRow> {
    Ok(PaymentRow {
        payment_id: r[0].int()?,
        programme: r[1].text()?,
        payee: r[2].text()?,
        amount_fen: r[3].int()?,
        reference: r[4].text()?,
        status: r[5].text()?,
        recorded_by: r[6].text()?,
        recorded_by_user_id: r[7].opt_int()?,
        recorded_at: r[8].text()?,
        confirmed_by: r[9].opt_text()?,
        confirmed_by_user_id: r[10].opt_int()?,
        confirmed_at: r[11].opt_text()?,
        withdrawn_by: r[12].opt_text()?,
        withdrawn_at: r[13].opt_text()?,
        journal_id: r[14].opt_int()?,
    })
}

fn payments_where(tx: &mut dyn Sql, filter: &str, params: &[Value]) -> Result<Vec<PaymentRow>> {
    let sql = format!("SELECT {COLUMNS} FROM payments WHERE {filter}");
    tx.query(&sql, params)?.iter().map(|r| row_of(r)).collect()
}

/// Stores a payment awaiting confirmation; returns its id. The caller has checked that no
/// live payment holds the reference (the unique index stops a race).
pub fn insert(tx: &mut dyn Sql, p: &NewPayment) -> Result<i64> {
    tx.query(
        "INSERT INTO payments (programme, payee, amount_fen, reference, status, recorded_by, recorded_by_user_id, recorded_at) \
         VALUES ($1, $2, $3, $4, 'awaiting', $5, $6, $7) RETURNING payment_id",
        &[
            p.programme.as_str().into(),
            p.payee.as_str().into(),
            p.amount_fen.into(),
            p.reference.as_str().into(),
            p.recorded_by.as_str().into(),
            p.recorded_by_user_id.into(),
            p.recorded_at.as_str().into(),
        ],
    )?
    .first()
    .ok_or_else(|| StoreError::Corrupt("insert into payments returned no id".into()))?[0]
        .int()
}

pub fn get(tx: &mut dyn Sql, payment_id: i64) -> Result<Option<PaymentRow>> {
    Ok(payments_where(tx, "payment_id = $1", &[payment_id.into()])?
        .into_iter()
        .next())
}

/// The payment awaiting confirmation or confirmed under `reference`, if any (a withdrawn one
/// no longer holds its reference).
pub fn live_by_reference(tx: &mut dyn Sql, reference: &str) -> Result<Option<PaymentRow>> {
    Ok(payments_where(
        tx,
        "reference = $1 AND status IN ('awaiting', 'confirmed')",
        &[reference.into()],
    )?
    .into_iter()
    .next())
}

/// The payments awaiting confirmation to `payee` by `programme`, oldest first.
pub fn awaiting_for(tx: &mut dyn Sql, programme: &str, payee: &str) -> Result<Vec<PaymentRow>> {
    payments_where(
        tx,
        "status = 'awaiting' AND programme = $1 AND payee = $2 ORDER BY payment_id",
        &[programme.into(), payee.into()],
    )
}

/// The newest `limit` payments (only those awaiting confirmation with `awaiting_only`),
/// oldest first.
pub fn list(tx: &mut dyn Sql, awaiting_only: bool, limit: i64) -> Result<Vec<PaymentRow>> {
    let filter = if awaiting_only {
        "status = 'awaiting' ORDER BY payment_id DESC LIMIT $1"
    } else {
        "1 = 1 ORDER BY payment_id DESC LIMIT $1"
    };
    let mut rows = payments_where(tx, filter, &[limit.into()])?;
    rows.reverse();
    Ok(rows)
}

/// Every confirmed payment, oldest first: what `audit verify` accounts for.
pub fn confirmed(tx: &mut dyn Sql) -> Result<Vec<PaymentRow>> {
    payments_where(tx, "status = 'confirmed' ORDER BY payment_id", &[])
}

/// Marks an awaiting payment confirmed with its journal; false when it was not awaiting.
pub fn confirm(
    tx: &mut dyn Sql,
    payment_id: i64,
    by: &str,
    by_user_id: Option<i64>,
    at: &str,
    journal_id: i64,
) -> Result<bool> {
    Ok(tx.exec(
        "UPDATE payments SET status = 'confirmed', confirmed_by = $1, confirmed_by_user_id = $2, confirmed_at = $3, journal_id = $4 \
         WHERE payment_id = $5 AND status = 'awaiting'",
        &[
            by.into(),
            by_user_id.into(),
            at.into(),
            journal_id.into(),
            payment_id.into(),
        ],
    )? == 1)
}

/// Marks an awaiting payment withdrawn; false when it was not awaiting.
pub fn withdraw(tx: &mut dyn Sql, payment_id: i64, by: &str, at: &str) -> Result<bool> {
    Ok(tx.exec(
        "UPDATE payments SET status = 'withdrawn', withdrawn_by = $1, withdrawn_at = $2 \
         WHERE payment_id = $3 AND status = 'awaiting'",
        &[by.into(), at.into(), payment_id.into()],
    )? == 1)
}
