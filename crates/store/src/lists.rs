//! The console's lists read a bounded page at a time: settlement runs, payments, usage records
//! and the audit log, each with its filters, an allow-listed order, `LIMIT`/`OFFSET` and a count
//! of the rows the filters select. Written once for both backends over [`Sql`].
//!
//! Usage records are the large table (tens of millions of rows) and keep no index beyond their
//! primary key, which ingest maintains anyway (a secondary index cost ingest most of its rate):
//! their order is the key's (provider, record id), so a page reads the rows it shows plus those
//! it skips and those the filters drop, a provider's (or a SKU's) records only that provider's
//! part of the key; their count stops at [`RECORDS_COUNTED_MAX`].

use crate::sql::{Sql, Value};
use crate::{Result, StoreError};

/// A page of a list: skip `offset` rows, return at most `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub offset: u64,
    pub limit: u64,
}

impl Window {
    fn params(self) -> Result<(Value, Value)> {
        let int = |v: u64| {
            i64::try_from(v)
                .map(Value::Int)
                .map_err(|_| StoreError::Corrupt(format!("page bound {v} is too large")))
        };
        Ok((int(self.limit)?, int(self.offset)?))
    }
}

/// Numbered placeholders and their values, in order of appearance.
#[derive(Default)]
struct Params {
    values: Vec<Value>,
}

impl Params {
    /// Binds `v`; returns its placeholder (`$3`).
    fn bind(&mut self, v: impl Into<Value>) -> String {
        self.values.push(v.into());
        format!("${}", self.values.len())
    }
}

/// `text` for a `LIKE … ESCAPE '\'` pattern: `%`, `_` and `\` match themselves.
pub fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn count_of(rows: &[Vec<Value>]) -> Result<u64> {
    let n = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("no count row".into()))?[0]
        .int()?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn direction(desc: bool) -> &'static str {
    if desc { "DESC" } else { "ASC" }
}

// ---- Settlement runs -------------------------------------------------------------------------

/// What the runs list filters by; `None` is any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub programme: Option<String>,
    /// `YYYY-MM`.
    pub period: Option<String>,
    /// `open`, `approved`, `posted` or `cancelled`.
    pub status: Option<String>,
}

/// The runs list's orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOrder {
    Id,
    Period,
    Programme,
}

/// A run as the list shows it: with its number of lines and their total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunListRow {
    pub run_id: i64,
    pub programme: String,
    pub period: String,
    pub status: String,
    pub created_by: String,
    pub created_at: String,
    pub approved_by: Option<String>,
    pub lines: i64,
    pub amount_fen: i64,
}

fn run_where(f: &RunFilter, p: &mut Params) -> String {
    let mut w = vec!["1 = 1".to_owned()];
    if let Some(v) = &f.programme {
        w.push(format!("r.programme = {}", p.bind(v.as_str())));
    }
    if let Some(v) = &f.period {
        w.push(format!("r.period = {}", p.bind(v.as_str())));
    }
    if let Some(v) = &f.status {
        w.push(format!("r.status = {}", p.bind(v.as_str())));
    }
    w.join(" AND ")
}

/// How many runs `f` selects.
pub fn runs_count(tx: &mut dyn Sql, f: &RunFilter) -> Result<u64> {
    let mut p = Params::default();
    let w = run_where(f, &mut p);
    count_of(&tx.query(
        &format!("SELECT COUNT(*) FROM settlement_runs r WHERE {w}"),
        &p.values,
    )?)
}

/// A page of the runs `f` selects; ties in the order broken by run id.
pub fn runs(
    tx: &mut dyn Sql,
    f: &RunFilter,
    order: RunOrder,
    desc: bool,
    window: Window,
) -> Result<Vec<RunListRow>> {
    let mut p = Params::default();
    let w = run_where(f, &mut p);
    let d = direction(desc);
    let order = match order {
        RunOrder::Id => format!("r.run_id {d}"),
        RunOrder::Period => format!("r.period {d}, r.run_id {d}"),
        RunOrder::Programme => format!("r.programme {d}, r.run_id {d}"),
    };
    let (limit, offset) = window.params()?;
    let (l, o) = (p.bind(limit), p.bind(offset));
    let sql = format!(
        "SELECT r.run_id, r.programme, r.period, r.status, r.created_by, r.created_at, r.approved_by, \
           COALESCE(t.lines, 0), COALESCE(t.amount_fen, 0) \
         FROM settlement_runs r LEFT JOIN run_totals t ON t.run_id = r.run_id \
         WHERE {w} ORDER BY {order} LIMIT {l} OFFSET {o}"
    );
    tx.query(&sql, &p.values)?
        .iter()
        .map(|r| {
            Ok(RunListRow {
                run_id: r[0].int()?,
                programme: r[1].text()?,
                period: r[2].text()?,
                status: r[3].text()?,
                created_by: r[4].text()?,
                created_at: r[5].text()?,
                approved_by: r[6].opt_text()?,
                lines: r[7].int()?,
                amount_fen: r[8].int()?,
            })
        })
        .collect()
}

// ---- Payments --------------------------------------------------------------------------------

/// What the payments list filters by. A payment is either booked (its journal written: at once,
/// or on confirmation by a second person) or, above the confirmation threshold, recorded and
/// awaiting confirmation, or withdrawn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    pub payee: Option<String>,
    pub programme: Option<String>,
    /// `booked`, `awaiting` or `withdrawn`.
    pub state: Option<String>,
}

/// The payments list's orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentOrder {
    /// When recorded (booked payments by their journal's time).
    At,
    Amount,
    Payee,
}

/// One payment of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentListRow {
    /// `j<journal id>` for a booked payment, `p<payment id>` for one not booked.
    pub key: String,
    pub programme: String,
    pub payee: String,
    pub amount_fen: i64,
    pub reference: String,
    /// `booked`, `awaiting` or `withdrawn`.
    pub state: String,
    pub recorded_by: String,
    pub recorded_at: String,
    /// Who confirmed a payment that needed a second person.
    pub confirmed_by: Option<String>,
}

/// The payments as one relation: booked ones from their journals (the `paid:` entry names the
/// programme and the payee), the others from the payments awaiting or withdrawn.
const PAYMENTS_SQL: &str = "SELECT 'j' || CAST(j.journal_id AS TEXT) AS key, e.account AS account, \
       e.credit_fen AS amount_fen, j.reference AS reference, 'booked' AS state, \
       COALESCE(p.recorded_by, j.created_by) AS recorded_by, \
       COALESCE(p.recorded_at, j.created_at) AS recorded_at, p.confirmed_by AS confirmed_by, \
       j.journal_id AS n \
     FROM journals j JOIN journal_entries e ON e.journal_id = j.journal_id AND e.account LIKE 'paid:%' \
     LEFT JOIN payments p ON p.journal_id = j.journal_id \
     WHERE j.kind = 'payment' \
   UNION ALL \
   SELECT 'p' || CAST(p.payment_id AS TEXT), 'paid:' || p.programme || ':' || p.payee, p.amount_fen, \
       p.reference, p.status, p.recorded_by, p.recorded_at, p.confirmed_by, p.payment_id \
     FROM payments p WHERE p.status IN ('awaiting', 'withdrawn')";

fn payment_where(f: &PaymentFilter, p: &mut Params) -> String {
    let mut w = vec!["1 = 1".to_owned()];
    match (&f.programme, &f.payee) {
        (Some(programme), Some(payee)) => {
            w.push(format!(
                "x.account = {}",
                p.bind(format!("paid:{programme}:{payee}"))
            ));
        }
        (Some(programme), None) => w.push(format!(
            "x.account LIKE {} ESCAPE '\\'",
            p.bind(format!("paid:{}:%", like_escaped(programme)))
        )),
        (None, Some(payee)) => w.push(format!(
            "x.account LIKE {} ESCAPE '\\'",
            p.bind(format!("paid:%:{}", like_escaped(payee)))
        )),
        (None, None) => {}
    }
    if let Some(v) = &f.state {
        w.push(format!("x.state = {}", p.bind(v.as_str())));
    }
    w.join(" AND ")
}

/// How many payments `f` selects.
pub fn payments_count(tx: &mut dyn Sql, f: &PaymentFilter) -> Result<u64> {
    let mut p = Params::default();
    let w = payment_where(f, &mut p);
    count_of(&tx.query(
        &format!("SELECT COUNT(*) FROM ({PAYMENTS_SQL}) x WHERE {w}"),
        &p.values,
    )?)
}

/// A page of the payments `f` selects.
pub fn payments(
    tx: &mut dyn Sql,
    f: &PaymentFilter,
    order: PaymentOrder,
    desc: bool,
    window: Window,
) -> Result<Vec<PaymentListRow>> {
    let mut p = Params::default();
    let w = payment_where(f, &mut p);
    let d = direction(desc);
    let order = match order {
        PaymentOrder::At => format!("x.recorded_at {d}, x.key {d}"),
        PaymentOrder::Amount => format!("x.amount_fen {d}, x.recorded_at {d}, x.key {d}"),
        PaymentOrder::Payee => format!("x.account {d}, x.recorded_at {d}, x.key {d}"),
    };
    let (limit, offset) = window.params()?;
    let (l, o) = (p.bind(limit), p.bind(offset));
    let sql = format!(
        "SELECT x.key, x.account, x.amount_fen, x.reference, x.state, x.recorded_by, x.recorded_at, x.confirmed_by \
         FROM ({PAYMENTS_SQL}) x WHERE {w} ORDER BY {order} LIMIT {l} OFFSET {o}"
    );
    tx.query(&sql, &p.values)?
        .iter()
        .map(|r| {
            let account = r[1].text()?;
            let (programme, payee) = account
                .strip_prefix("paid:")
                .and_then(|rest| rest.split_once(':'))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("payment account {account:?} is not paid:…:…"))
                })?;
            Ok(PaymentListRow {
                key: r[0].text()?,
                programme: programme.to_owned(),
                payee: payee.to_owned(),
                amount_fen: r[2].int()?,
                reference: r[3].text()?,
                state: r[4].text()?,
                recorded_by: r[5].text()?,
                recorded_at: r[6].text()?,
                confirmed_by: r[7].opt_text()?,
            })
        })
        .collect()
}

// ---- Usage records ---------------------------------------------------------------------------

/// The most usage records a list counts: beyond it the page says "more than".
pub const RECORDS_COUNTED_MAX: u64 = 100_000;

/// What the usage-records list filters by (ids as the registry names them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub provider: Option<String>,
    pub beneficiary: Option<String>,
    pub sku: Option<String>,
    /// [`crate::period_code`] of the month.
    pub period: Option<i64>,
    /// `Some(true)`: void records only; `Some(false)`: live ones only.
    pub void: Option<bool>,
    /// A prefix of the record id.
    pub record_prefix: Option<String>,
}

/// One usage record of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordListRow {
    /// The provider's interned id: with the record id, the key a following page starts after.
    pub provider_id: i64,
    pub provider: String,
    pub record_id: String,
    pub beneficiary: String,
    pub sku: String,
    /// Unix nanoseconds.
    pub start_ns: i64,
    pub end_ns: i64,
    pub quantity: String,
    pub amount_fen: i64,
    /// [`crate::period_code`].
    pub period: i64,
    pub voided_at: Option<String>,
    pub void_reason: Option<String>,
}

/// The interned id of `name`, or `None` when no record ever named it.
fn name_id(tx: &mut dyn Sql, kind: &str, name: &str) -> Result<Option<i64>> {
    tx.query(
        "SELECT id FROM names WHERE kind = $1 AND name = $2",
        &[kind.into(), name.into()],
    )?
    .first()
    .map(|r| r[0].int())
    .transpose()
}

/// The filter's conditions, or `None` when a named party has no records at all.
fn record_where(tx: &mut dyn Sql, f: &RecordFilter, p: &mut Params) -> Result<Option<String>> {
    let mut w = vec!["1 = 1".to_owned()];
    for (kind, column, value) in [
        ("provider", "u.provider_id", &f.provider),
        ("beneficiary", "u.beneficiary_id", &f.beneficiary),
        ("sku", "u.sku_id", &f.sku),
    ] {
        if let Some(name) = value {
            match name_id(tx, kind, name)? {
                Some(id) => w.push(format!("{column} = {}", p.bind(id))),
                None => return Ok(None),
            }
        }
    }
    if let Some(period) = f.period {
        w.push(format!("u.period = {}", p.bind(period)));
    }
    match f.void {
        Some(true) => w.push("u.voided_at IS NOT NULL".into()),
        Some(false) => w.push("u.voided_at IS NULL".into()),
        None => {}
    }
    if let Some(prefix) = &f.record_prefix {
        // A range on the key, not LIKE: byte order on both backends (BINARY, COLLATE "C").
        w.push(format!("u.record_id >= {}", p.bind(prefix.as_str())));
        w.push(format!(
            "u.record_id < {}",
            p.bind(crate::sql::prefix_end(prefix))
        ));
    }
    Ok(Some(w.join(" AND ")))
}

/// How many records `f` selects, counted up to [`RECORDS_COUNTED_MAX`] + 1: a count above the
/// maximum means "more than".
pub fn records_count(tx: &mut dyn Sql, f: &RecordFilter) -> Result<u64> {
    let mut p = Params::default();
    let Some(w) = record_where(tx, f, &mut p)? else {
        return Ok(0);
    };
    let cap = p.bind(i64::try_from(RECORDS_COUNTED_MAX + 1).unwrap_or(i64::MAX));
    count_of(&tx.query(
        &format!("SELECT COUNT(*) FROM (SELECT 1 FROM usage_records u WHERE {w} LIMIT {cap}) c"),
        &p.values,
    )?)
}

/// A page of the records `f` selects, by (provider, record id) as their ids sort; `desc`
/// reverses it. `after` (a row's provider id and record id) starts the page after that row
/// instead of skipping `window.offset` rows: an export walks the whole list that way, each page
/// costing only its own rows.
pub fn records(
    tx: &mut dyn Sql,
    f: &RecordFilter,
    desc: bool,
    window: Window,
    after: Option<(i64, &str)>,
) -> Result<Vec<RecordListRow>> {
    let Some((provider_id, record_id)) = after else {
        return records_where(tx, f, desc, window, None);
    };
    // Two ranges of the key, each an index range on both backends (a row-value comparison
    // over the key was not one on SQLite: each page read the provider's records from their
    // start): the rest of the row's provider, then the providers after it.
    let op = if desc { "<" } else { ">" };
    let mut rows = records_where(
        tx,
        f,
        desc,
        window,
        Some((
            format!("u.provider_id = {{a}} AND u.record_id {op} {{b}}"),
            vec![provider_id.into(), record_id.into()],
        )),
    )?;
    let left = window.limit.saturating_sub(rows.len() as u64);
    if left > 0 {
        rows.extend(records_where(
            tx,
            f,
            desc,
            Window {
                offset: 0,
                limit: left,
            },
            Some((
                format!("u.provider_id {op} {{a}}"),
                vec![provider_id.into()],
            )),
        )?);
    }
    Ok(rows)
}

/// A page of the records `f` and `extra` (a condition whose `{a}`, `{b}` are its values)
/// select.
fn records_where(
    tx: &mut dyn Sql,
    f: &RecordFilter,
    desc: bool,
    window: Window,
    extra: Option<(String, Vec<Value>)>,
) -> Result<Vec<RecordListRow>> {
    let mut p = Params::default();
    let Some(mut w) = record_where(tx, f, &mut p)? else {
        return Ok(Vec::new());
    };
    let d = direction(desc);
    if let Some((condition, values)) = extra {
        let mut condition = condition;
        for (name, v) in ["{a}", "{b}"].into_iter().zip(values) {
            condition = condition.replace(name, &p.bind(v));
        }
        w.push_str(&format!(" AND {condition}"));
    }
    let order = format!("u.provider_id {d}, u.record_id {d}");
    let (limit, offset) = window.params()?;
    let (l, o) = (p.bind(limit), p.bind(offset));
    // The page first, then its names, each looked up by its key for the rows shown (a join
    // could hash the whole names table for every page).
    let sql = format!(
        "SELECT (SELECT n.name FROM names n WHERE n.id = x.provider_id), x.record_id, \
                (SELECT n.name FROM names n WHERE n.id = x.beneficiary_id), \
                (SELECT n.name FROM names n WHERE n.id = x.sku_id), \
                x.start_ns, x.end_ns, x.quantity, x.amount_fen, \
                x.period, x.voided_at, x.void_reason, x.provider_id \
         FROM (SELECT u.provider_id, u.record_id, u.beneficiary_id, u.sku_id, u.start_ns, u.end_ns, \
                      u.quantity, u.amount_fen, u.period, u.voided_at, u.void_reason \
               FROM usage_records u WHERE {w} ORDER BY {order} LIMIT {l} OFFSET {o}) x \
         ORDER BY {}",
        order.replace("u.", "x.")
    );
    tx.query(&sql, &p.values)?
        .iter()
        .map(|r| {
            Ok(RecordListRow {
                provider_id: r[11].int()?,
                provider: r[0].text()?,
                record_id: r[1].text()?,
                beneficiary: r[2].text()?,
                sku: r[3].text()?,
                start_ns: r[4].int()?,
                end_ns: r[5].int()?,
                quantity: r[6].text()?,
                amount_fen: r[7].int()?,
                period: r[8].int()?,
                voided_at: r[9].opt_text()?,
                void_reason: r[10].opt_text()?,
            })
        })
        .collect()
}

// ---- The audit log ---------------------------------------------------------------------------

/// What the audit-log list filters by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Part of the actor as stored (`name (login)`, `role:hash`).
    pub actor: Option<String>,
    /// The action exactly (`run.post`).
    pub action: Option<String>,
    /// RFC 3339 UTC instants as stored (`2025-03-31T16:00:00.000Z`): `from` inclusive, `to`
    /// exclusive.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// One audit-log entry of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditListRow {
    pub seq: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub subject: String,
    pub at: String,
    pub request_id: String,
    pub hash: String,
}

fn audit_where(f: &AuditFilter, p: &mut Params) -> String {
    let mut w = vec!["1 = 1".to_owned()];
    if let Some(v) = &f.actor {
        w.push(format!(
            "a.actor LIKE {} ESCAPE '\\'",
            p.bind(format!("%{}%", like_escaped(v)))
        ));
    }
    if let Some(v) = &f.action {
        w.push(format!("a.action = {}", p.bind(v.as_str())));
    }
    if let Some(v) = &f.from {
        w.push(format!("a.at >= {}", p.bind(v.as_str())));
    }
    if let Some(v) = &f.to {
        w.push(format!("a.at < {}", p.bind(v.as_str())));
    }
    w.join(" AND ")
}

/// How many entries `f` selects.
pub fn audit_count(tx: &mut dyn Sql, f: &AuditFilter) -> Result<u64> {
    let mut p = Params::default();
    let w = audit_where(f, &mut p);
    count_of(&tx.query(
        &format!("SELECT COUNT(*) FROM audit_log a WHERE {w}"),
        &p.values,
    )?)
}

/// A page of the entries `f` selects, by seq.
pub fn audit(
    tx: &mut dyn Sql,
    f: &AuditFilter,
    desc: bool,
    window: Window,
) -> Result<Vec<AuditListRow>> {
    let mut p = Params::default();
    let w = audit_where(f, &mut p);
    let d = direction(desc);
    let (limit, offset) = window.params()?;
    let (l, o) = (p.bind(limit), p.bind(offset));
    let sql = format!(
        "SELECT a.seq, a.actor, a.role, a.action, a.subject, a.at, a.request_id, a.hash \
         FROM audit_log a WHERE {w} ORDER BY a.seq {d} LIMIT {l} OFFSET {o}"
    );
    tx.query(&sql, &p.values)?
        .iter()
        .map(|r| {
            Ok(AuditListRow {
                seq: r[0].int()?,
                actor: r[1].text()?,
                role: r[2].text()?,
                action: r[3].text()?,
                subject: r[4].text()?,
                at: r[5].text()?,
                request_id: r[6].text()?,
                hash: r[7].text()?,
            })
        })
        .collect()
}

/// The distinct actions of the audit log, for the filter's choices.
pub fn audit_actions(tx: &mut dyn Sql) -> Result<Vec<String>> {
    tx.query("SELECT DISTINCT action FROM audit_log ORDER BY action", &[])?
        .iter()
        .map(|r| r[0].text())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_the_text_itself() {
        assert_eq!(like_escaped("a_b%c\\d"), "a\\_b\\%c\\\\d");
        assert_eq!(like_escaped("杭宇"), "杭宇");
    }
}
