//! Settlement runs and the journal in storage, written once for both backends over [`Sql`].
//! The decisions (what a run posts, whether a journal balances) are the domain's; these
//! functions only read and write rows inside the caller's transaction.

use crate::sql::{Sql, Value};
use crate::{Result, StoreError};

/// A settlement line key in its text form (as in the accruals table).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineKeyRow {
    pub beneficiary: String,
    pub provider: String,
    pub category: String,
    pub chip_origin: String,
    pub registered_model: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunRow {
    pub run_id: i64,
    pub programme: String,
    pub period: String,
    pub status: String,
    pub registry_version: i64,
    pub content_hash: String,
    pub posted_basis: String,
    pub created_by: String,
    pub created_at: String,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
    pub posted_at: Option<String>,
    pub cancelled_at: Option<String>,
    pub journal_id: Option<i64>,
    pub cancelled_by: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLineRow {
    pub original_period: String,
    pub key: LineKeyRow,
    pub base_fen: i64,
    pub ratio: String,
    pub entitlement_fen: i64,
    pub posted_before_fen: i64,
    pub amount_fen: i64,
    pub cut_by: String,
    pub payee: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputRow {
    pub period: String,
    pub key: LineKeyRow,
    pub base_fen: i64,
}

#[derive(Clone, Debug)]
pub struct NewRun {
    pub programme: String,
    pub period: String,
    pub registry_version: i64,
    pub content_hash: String,
    pub posted_basis: String,
    pub created_by: String,
    pub created_at: String,
    /// The registry version used for each period of the year to date.
    pub periods: Vec<(String, i64)>,
    pub inputs: Vec<InputRow>,
    pub lines: Vec<RunLineRow>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryRow {
    pub account: String,
    pub debit_fen: i64,
    pub credit_fen: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalRow {
    pub journal_id: i64,
    pub kind: String,
    pub reference: String,
    pub memo: String,
    pub created_by: String,
    pub created_at: String,
    pub entries: Vec<EntryRow>,
}

const RUN_COLUMNS: &str = "run_id, programme, period, status, registry_version, content_hash, posted_basis, created_by, created_at, approved_by, approved_at, posted_at, cancelled_at, journal_id, cancelled_by";

fn run_of(r: &[Value]) -> Result<RunRow> {
    Ok(RunRow {
        run_id: r[0].int()?,
        programme: r[1].text()?,
        period: r[2].text()?,
        status: r[3].text()?,
        registry_version: r[4].int()?,
        content_hash: r[5].text()?,
        posted_basis: r[6].text()?,
        created_by: r[7].text()?,
        created_at: r[8].text()?,
        approved_by: r[9].opt_text()?,
        approved_at: r[10].opt_text()?,
        posted_at: r[11].opt_text()?,
        cancelled_at: r[12].opt_text()?,
        journal_id: r[13].opt_int()?,
        cancelled_by: r[14].opt_text()?,
    })
}

fn key_of(r: &[Value]) -> Result<LineKeyRow> {
    Ok(LineKeyRow {
        beneficiary: r[0].text()?,
        provider: r[1].text()?,
        category: r[2].text()?,
        chip_origin: r[3].text()?,
        registered_model: r[4].text()?,
    })
}

fn key_values(key: &LineKeyRow) -> [Value; 5] {
    [
        key.beneficiary.as_str().into(),
        key.provider.as_str().into(),
        key.category.as_str().into(),
        key.chip_origin.as_str().into(),
        key.registered_model.as_str().into(),
    ]
}

/// The open or approved (not yet posted) run of a programme and period.
pub fn pending_run(tx: &mut dyn Sql, programme: &str, period: &str) -> Result<Option<RunRow>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM settlement_runs WHERE programme = $1 AND period = $2 AND status IN ('open', 'approved')"
    );
    tx.query(&sql, &[programme.into(), period.into()])?
        .first()
        .map(|r| run_of(r))
        .transpose()
}

pub fn insert_run(tx: &mut dyn Sql, run: &NewRun) -> Result<i64> {
    let rows = tx.query(
        "INSERT INTO settlement_runs (programme, period, status, registry_version, content_hash, posted_basis, created_by, created_at) VALUES ($1, $2, 'open', $3, $4, $5, $6, $7) RETURNING run_id",
        &[
            run.programme.as_str().into(),
            run.period.as_str().into(),
            run.registry_version.into(),
            run.content_hash.as_str().into(),
            run.posted_basis.as_str().into(),
            run.created_by.as_str().into(),
            run.created_at.as_str().into(),
        ],
    )?;
    let run_id = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("insert returned no run id".into()))?[0]
        .int()?;
    for (period, version) in &run.periods {
        tx.exec(
            "INSERT INTO run_periods (run_id, period, registry_version) VALUES ($1, $2, $3)",
            &[run_id.into(), period.as_str().into(), (*version).into()],
        )?;
    }
    let inputs: Vec<Vec<Value>> = run
        .inputs
        .iter()
        .map(|input| {
            let mut row = vec![run_id.into(), input.period.as_str().into()];
            row.extend(key_values(&input.key));
            row.push(input.base_fen.into());
            row
        })
        .collect();
    tx.insert_rows(
        "run_inputs",
        &[
            "run_id",
            "period",
            "beneficiary",
            "provider",
            "category",
            "chip_origin",
            "registered_model",
            "base_fen",
        ],
        &inputs,
    )?;
    let lines: Vec<Vec<Value>> = run
        .lines
        .iter()
        .enumerate()
        .map(|(seq, line)| {
            let mut row = vec![
                run_id.into(),
                (seq as i64).into(),
                line.original_period.as_str().into(),
            ];
            row.extend(key_values(&line.key));
            row.extend([
                line.base_fen.into(),
                line.ratio.as_str().into(),
                line.entitlement_fen.into(),
                line.posted_before_fen.into(),
                line.amount_fen.into(),
                line.cut_by.as_str().into(),
                line.payee.as_str().into(),
            ]);
            row
        })
        .collect();
    tx.insert_rows(
        "run_lines",
        &[
            "run_id",
            "seq",
            "original_period",
            "beneficiary",
            "provider",
            "category",
            "chip_origin",
            "registered_model",
            "base_fen",
            "ratio",
            "entitlement_fen",
            "posted_before_fen",
            "amount_fen",
            "cut_by",
            "payee",
        ],
        &lines,
    )?;
    // Counted and summed once: a run's lines never change after this.
    tx.exec(
        "INSERT INTO run_totals (run_id, lines, amount_fen, adjustment_lines) \
         SELECT CAST($1 AS BIGINT), COUNT(*), CAST(COALESCE(SUM(amount_fen), 0) AS BIGINT), \
                CAST(COALESCE(SUM(CASE WHEN original_period <> $2 THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM run_lines WHERE run_id = $1",
        &[run_id.into(), run.period.as_str().into()],
    )?;
    Ok(run_id)
}

pub fn run(tx: &mut dyn Sql, run_id: i64) -> Result<Option<RunRow>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM settlement_runs WHERE run_id = $1");
    tx.query(&sql, &[run_id.into()])?
        .first()
        .map(|r| run_of(r))
        .transpose()
}

pub fn runs(tx: &mut dyn Sql, programme: Option<&str>) -> Result<Vec<RunRow>> {
    let rows = match programme {
        Some(p) => tx.query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM settlement_runs WHERE programme = $1 ORDER BY run_id"
            ),
            &[p.into()],
        )?,
        None => tx.query(
            &format!("SELECT {RUN_COLUMNS} FROM settlement_runs ORDER BY run_id"),
            &[],
        )?,
    };
    rows.iter().map(|r| run_of(r)).collect()
}

/// At most `count` runs in `status`, newest first.
pub fn latest_runs(tx: &mut dyn Sql, status: &str, count: i64) -> Result<Vec<RunRow>> {
    tx.query(
        &format!(
            "SELECT {RUN_COLUMNS} FROM settlement_runs WHERE status = $1 ORDER BY run_id DESC LIMIT $2"
        ),
        &[status.into(), count.into()],
    )?
    .iter()
    .map(|r| run_of(r))
    .collect()
}

/// A run's lines counted and summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunTotals {
    pub lines: i64,
    pub total_fen: i64,
    /// Lines of an earlier month than the run's (adjustments).
    pub adjustment_lines: i64,
}

/// Per run: how many lines it has, their sum in fen and how many are adjustments, as counted
/// when the run was created (`run_totals`: a run's lines never change).
pub fn run_totals(tx: &mut dyn Sql) -> Result<std::collections::HashMap<i64, RunTotals>> {
    let rows = tx.query(
        "SELECT run_id, lines, amount_fen, adjustment_lines FROM run_totals",
        &[],
    )?;
    rows.iter()
        .map(|r| Ok((r[0].int()?, run_totals_of_row(&r[1..])?)))
        .collect()
}

/// A `run_totals` row's (lines, amount_fen, adjustment_lines).
fn run_totals_of_row(r: &[Value]) -> Result<RunTotals> {
    Ok(RunTotals {
        lines: r[0].int()?,
        total_fen: r[1].int()?,
        adjustment_lines: r[2].int()?,
    })
}

pub fn run_lines(tx: &mut dyn Sql, run_id: i64) -> Result<Vec<RunLineRow>> {
    run_lines_page(tx, run_id, 0, i64::MAX)
}

/// At most `count` lines of run `run_id` from position `from` (from 0) on, in order: a page
/// read by the primary key, so a run of any size is read in bounded pieces.
pub fn run_lines_page(
    tx: &mut dyn Sql,
    run_id: i64,
    from: i64,
    count: i64,
) -> Result<Vec<RunLineRow>> {
    let rows = tx.query(
        &format!(
            "SELECT {LINE_COLUMNS} FROM run_lines WHERE run_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3"
        ),
        &[run_id.into(), from.into(), count.into()],
    )?;
    rows.iter().map(|r| run_line_of(r)).collect()
}

/// At most `count` of run `run_id`'s lines of `beneficiary` from its `from`-th (from 0) on, in
/// line order, each with its position among the run's lines: by the beneficiary's index (whose
/// entries carry the key, so in order), not the run's every line (800,000 for a city).
pub fn beneficiary_lines_of_run(
    tx: &mut dyn Sql,
    run_id: i64,
    beneficiary: &str,
    from: i64,
    count: i64,
) -> Result<Vec<(i64, RunLineRow)>> {
    let rows = tx.query(
        &format!(
            "SELECT {LINE_COLUMNS}, seq FROM run_lines WHERE beneficiary = $1 AND run_id = $2 \
             ORDER BY seq LIMIT $3 OFFSET $4"
        ),
        &[beneficiary.into(), run_id.into(), count.into(), from.into()],
    )?;
    rows.iter()
        .map(|r| Ok((r[13].int()?, run_line_of(r)?)))
        .collect()
}

/// How many lines of run `run_id` are `beneficiary`'s, and their sum in fen.
pub fn run_lines_of_beneficiary(
    tx: &mut dyn Sql,
    run_id: i64,
    beneficiary: &str,
) -> Result<(i64, i64)> {
    let rows = tx.query(
        "SELECT COUNT(*), CAST(COALESCE(SUM(amount_fen), 0) AS BIGINT) FROM run_lines WHERE beneficiary = $1 AND run_id = $2",
        &[beneficiary.into(), run_id.into()],
    )?;
    let r = rows
        .first()
        .ok_or_else(|| crate::StoreError::Corrupt("no count row".into()))?;
    Ok((r[0].int()?, r[1].int()?))
}

/// What a run's lines sum to for one payee: for a run's settlement statement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayeeSumsRow {
    pub payee: String,
    pub lines: i64,
    /// Σ of the lines' changes; of the positive ones; of the claw-backs (negative).
    pub amount_fen: i64,
    pub increases_fen: i64,
    pub claw_backs_fen: i64,
    pub base_fen: i64,
}

/// Per payee of run `run_id`, in payee order: its lines' count and sums, summed by the
/// database (a run of any size; no line is read into memory).
pub fn run_payee_sums(tx: &mut dyn Sql, run_id: i64) -> Result<Vec<PayeeSumsRow>> {
    let rows = tx.query(
        "SELECT payee, COUNT(*), CAST(SUM(amount_fen) AS BIGINT), \
         CAST(SUM(CASE WHEN amount_fen > 0 THEN amount_fen ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN amount_fen < 0 THEN amount_fen ELSE 0 END) AS BIGINT), \
         CAST(SUM(base_fen) AS BIGINT) \
         FROM run_lines WHERE run_id = $1 GROUP BY payee ORDER BY payee",
        &[run_id.into()],
    )?;
    rows.iter()
        .map(|r| {
            Ok(PayeeSumsRow {
                payee: r[0].text()?,
                lines: r[1].int()?,
                amount_fen: r[2].int()?,
                increases_fen: r[3].int()?,
                claw_backs_fen: r[4].int()?,
                base_fen: r[5].int()?,
            })
        })
        .collect()
}

/// Run `run_id`'s lines for `payee`, in line order.
pub fn run_lines_of_payee(tx: &mut dyn Sql, run_id: i64, payee: &str) -> Result<Vec<RunLineRow>> {
    tx.query(
        &format!(
            "SELECT {LINE_COLUMNS} FROM run_lines WHERE payee = $1 AND run_id = $2 ORDER BY seq"
        ),
        &[payee.into(), run_id.into()],
    )?
    .iter()
    .map(|r| run_line_of(r))
    .collect()
}

/// Run `run_id`'s line count and sum, as counted when it was created (`run_totals`).
pub fn run_totals_of(tx: &mut dyn Sql, run_id: i64) -> Result<Option<RunTotals>> {
    let rows = tx.query(
        "SELECT lines, amount_fen, adjustment_lines FROM run_totals WHERE run_id = $1",
        &[run_id.into()],
    )?;
    rows.first().map(|r| run_totals_of_row(r)).transpose()
}

/// The columns of a run line, in the order [`run_line_of`] reads them.
const LINE_COLUMNS: &str = "beneficiary, provider, category, chip_origin, registered_model, original_period, base_fen, ratio, entitlement_fen, posted_before_fen, amount_fen, cut_by, payee";

fn run_line_of(r: &[Value]) -> Result<RunLineRow> {
    Ok(RunLineRow {
        key: key_of(r)?,
        original_period: r[5].text()?,
        base_fen: r[6].int()?,
        ratio: r[7].text()?,
        entitlement_fen: r[8].int()?,
        posted_before_fen: r[9].int()?,
        amount_fen: r[10].int()?,
        cut_by: r[11].text()?,
        payee: r[12].text()?,
    })
}

/// The lines of `beneficiary` in every run, as (run id, line), newest run first and in line
/// order within a run: read by the `run_lines (beneficiary)` index, not run by run.
pub fn beneficiary_run_lines(
    tx: &mut dyn Sql,
    beneficiary: &str,
) -> Result<Vec<(i64, RunLineRow)>> {
    let rows = tx.query(
        &format!(
            "SELECT {LINE_COLUMNS}, run_id FROM run_lines WHERE beneficiary = $1 ORDER BY run_id DESC, seq"
        ),
        &[beneficiary.into()],
    )?;
    rows.iter()
        .map(|r| Ok((r[13].int()?, run_line_of(r)?)))
        .collect()
}

pub fn run_inputs(tx: &mut dyn Sql, run_id: i64) -> Result<Vec<InputRow>> {
    let rows = tx.query(
        "SELECT beneficiary, provider, category, chip_origin, registered_model, period, base_fen FROM run_inputs WHERE run_id = $1 ORDER BY period, beneficiary, provider, category, chip_origin, registered_model",
        &[run_id.into()],
    )?;
    rows.iter()
        .map(|r| {
            Ok(InputRow {
                key: key_of(r)?,
                period: r[5].text()?,
                base_fen: r[6].int()?,
            })
        })
        .collect()
}

pub fn run_periods(tx: &mut dyn Sql, run_id: i64) -> Result<Vec<(String, i64)>> {
    let rows = tx.query(
        "SELECT period, registry_version FROM run_periods WHERE run_id = $1 ORDER BY period",
        &[run_id.into()],
    )?;
    rows.iter()
        .map(|r| Ok((r[0].text()?, r[1].int()?)))
        .collect()
}

/// Moves a run from one status to another; false when it was not in `from`.
pub fn transition(
    tx: &mut dyn Sql,
    run_id: i64,
    from: &str,
    to: &str,
    actor: Option<&str>,
    at: &str,
) -> Result<bool> {
    let sql = match to {
        "approved" => {
            "UPDATE settlement_runs SET status = $1, approved_by = $2, approved_at = $3 WHERE run_id = $4 AND status = $5"
        }
        "cancelled" => {
            "UPDATE settlement_runs SET status = $1, cancelled_by = $2, cancelled_at = $3 WHERE run_id = $4 AND status = $5"
        }
        other => return Err(StoreError::Corrupt(format!("no transition to {other}"))),
    };
    let changed = tx.exec(
        sql,
        &[
            to.into(),
            actor.map(str::to_owned).into(),
            at.into(),
            run_id.into(),
            from.into(),
        ],
    )?;
    Ok(changed == 1)
}

pub fn mark_posted(
    tx: &mut dyn Sql,
    run_id: i64,
    journal_id: Option<i64>,
    at: &str,
) -> Result<bool> {
    let changed = tx.exec(
        "UPDATE settlement_runs SET status = 'posted', journal_id = $1, posted_at = $2 WHERE run_id = $3 AND status = 'approved'",
        &[journal_id.into(), at.into(), run_id.into()],
    )?;
    Ok(changed == 1)
}

/// Σ posted per (original period, line) of a programme: what R9 subtracts.
pub fn posted_lines(tx: &mut dyn Sql, programme: &str) -> Result<Vec<(String, LineKeyRow, i64)>> {
    let rows = tx.query(
        "SELECT l.beneficiary, l.provider, l.category, l.chip_origin, l.registered_model, l.original_period, CAST(SUM(l.amount_fen) AS BIGINT) \
         FROM run_lines l JOIN settlement_runs r ON r.run_id = l.run_id \
         WHERE r.programme = $1 AND r.status = 'posted' \
         GROUP BY l.beneficiary, l.provider, l.category, l.chip_origin, l.registered_model, l.original_period",
        &[programme.into()],
    )?;
    rows.iter()
        .map(|r| Ok((r[5].text()?, key_of(r)?, r[6].int()?)))
        .collect()
}

/// One line of a posted run, for the balance figures: what it settled for whom, and to which
/// payee (the attribution of payments, docs/rules.md "Paid out").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostedLineRow {
    pub original_period: String,
    pub key: LineKeyRow,
    pub payee: String,
    pub amount_fen: i64,
}

/// Every posted run's id and programme, by id. A programme's runs are posted in run id order
/// (a run computed before another run of its programme was posted is refused at posting),
/// and a posted run is never changed: the balance figures add each run's lines once.
pub fn posted_runs(tx: &mut dyn Sql) -> Result<Vec<(i64, String)>> {
    tx.query(
        "SELECT run_id, programme FROM settlement_runs WHERE status = 'posted' ORDER BY run_id",
        &[],
    )?
    .iter()
    .map(|r| Ok((r[0].int()?, r[1].text()?)))
    .collect()
}

/// A run's lines in line order (zero amounts included), read by the run's key.
pub fn lines_of_posted_run(tx: &mut dyn Sql, run_id: i64) -> Result<Vec<PostedLineRow>> {
    tx.query(
        "SELECT beneficiary, provider, category, chip_origin, registered_model, original_period, payee, amount_fen \
         FROM run_lines WHERE run_id = $1 ORDER BY seq",
        &[run_id.into()],
    )?
    .iter()
    .map(|r| {
        Ok(PostedLineRow {
            key: key_of(r)?,
            original_period: r[5].text()?,
            payee: r[6].text()?,
            amount_fen: r[7].int()?,
        })
    })
    .collect()
}

/// Per account, credits − debits of the journals of `kind` after journal `after` (0: all;
/// `payment`: what payments moved to each `paid:…` account).
pub fn net_credits_of_kind(tx: &mut dyn Sql, kind: &str, after: i64) -> Result<Vec<(String, i64)>> {
    tx.query(
        "SELECT e.account, CAST(SUM(e.credit_fen) - SUM(e.debit_fen) AS BIGINT) \
             FROM journal_entries e JOIN journals j ON j.journal_id = e.journal_id \
             WHERE j.kind = $1 AND j.journal_id > $2 GROUP BY e.account ORDER BY e.account",
        &[kind.into(), after.into()],
    )?
    .iter()
    .map(|r| Ok((r[0].text()?, r[1].int()?)))
    .collect()
}

/// The last journal's id (0 before any). Journals are append-only and written under the
/// settlement lock, so this changes exactly when a journal is added and ids commit in order.
pub fn journals_mark(tx: &mut dyn Sql) -> Result<i64> {
    let rows = tx.query("SELECT MAX(journal_id) FROM journals", &[])?;
    let r = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("no journal row".into()))?;
    Ok(r[0].opt_int()?.unwrap_or(0))
}

/// For each period of a year (`YYYY-` prefix), the registry version of its first run that was
/// not cancelled (R9).
pub fn first_run_versions(tx: &mut dyn Sql, year_prefix: &str) -> Result<Vec<(String, i64)>> {
    let rows = tx.query(
        "SELECT p.period, p.registry_version FROM run_periods p \
         WHERE p.run_id = (SELECT MIN(q.run_id) FROM run_periods q JOIN settlement_runs r ON r.run_id = q.run_id \
                           WHERE q.period = p.period AND r.status <> 'cancelled') \
           AND p.period LIKE $1 ORDER BY p.period",
        &[format!("{year_prefix}%").into()],
    )?;
    rows.iter()
        .map(|r| Ok((r[0].text()?, r[1].int()?)))
        .collect()
}

/// The ids of a programme's posted runs, comma-separated: a run computed on one basis may only
/// be posted while the basis is unchanged (otherwise its "posted before" figures are stale).
pub fn posted_basis(tx: &mut dyn Sql, programme: &str) -> Result<String> {
    let rows = tx.query("SELECT run_id FROM settlement_runs WHERE programme = $1 AND status = 'posted' ORDER BY run_id", &[programme.into()])?;
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r[0].int().map(|i| i.to_string()))
        .collect::<Result<_>>()?;
    Ok(ids.join(","))
}

/// The latest period of a programme with a posted run.
pub fn latest_posted_period(tx: &mut dyn Sql, programme: &str) -> Result<Option<String>> {
    let rows = tx.query(
        "SELECT MAX(period) FROM settlement_runs WHERE programme = $1 AND status = 'posted'",
        &[programme.into()],
    )?;
    rows.first().map_or(Ok(None), |r| r[0].opt_text())
}

/// Appends a journal; the caller has checked that it balances (the domain's `Journal`).
pub fn insert_journal(
    tx: &mut dyn Sql,
    kind: &str,
    reference: &str,
    memo: &str,
    by: &str,
    at: &str,
    entries: &[EntryRow],
) -> Result<i64> {
    let rows = tx.query(
        "INSERT INTO journals (kind, reference, memo, created_by, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING journal_id",
        &[kind.into(), reference.into(), memo.into(), by.into(), at.into()],
    )?;
    let journal_id = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("insert returned no journal id".into()))?[0]
        .int()?;
    // The entries in bulk (COPY on PostgreSQL): a run's journal has an entry per payee.
    let rows: Vec<Vec<Value>> = entries
        .iter()
        .enumerate()
        .map(|(seq, e)| {
            vec![
                journal_id.into(),
                (seq as i64).into(),
                e.account.as_str().into(),
                e.debit_fen.into(),
                e.credit_fen.into(),
            ]
        })
        .collect();
    tx.insert_rows(
        "journal_entries",
        &["journal_id", "seq", "account", "debit_fen", "credit_fen"],
        &rows,
    )?;
    // Each account's Σ debits, Σ credits and entries of this journal, added to the running
    // totals in the same transaction, in one statement (a sum past 64 bits fails it, and the
    // journal with it).
    tx.exec(
        "INSERT INTO account_totals (account, debit_fen, credit_fen, entries) \
         SELECT account, CAST(SUM(debit_fen) AS BIGINT), CAST(SUM(credit_fen) AS BIGINT), COUNT(*) \
         FROM journal_entries WHERE journal_id = $1 GROUP BY account \
         ON CONFLICT (account) DO UPDATE SET debit_fen = account_totals.debit_fen + excluded.debit_fen, \
         credit_fen = account_totals.credit_fen + excluded.credit_fen, entries = account_totals.entries + excluded.entries",
        &[journal_id.into()],
    )?;
    Ok(journal_id)
}

/// An account's Σ debits, Σ credits and number of entries.
pub type AccountSums = [i64; 3];

/// Accounts whose running totals differ from the sums of their entries, as (account, kept,
/// summed); an account missing on one side counts zeros there. Empty when they agree, as they
/// do unless the tables were edited outside the store.
pub fn account_totals_drift(tx: &mut dyn Sql) -> Result<Vec<(String, AccountSums, AccountSums)>> {
    let summed = tx.query(
        "SELECT account, CAST(SUM(debit_fen) AS BIGINT), CAST(SUM(credit_fen) AS BIGINT), COUNT(*) \
         FROM journal_entries GROUP BY account ORDER BY account",
        &[],
    )?;
    let kept = tx.query(
        "SELECT account, debit_fen, credit_fen, entries FROM account_totals ORDER BY account",
        &[],
    )?;
    let mut all: std::collections::BTreeMap<String, (AccountSums, AccountSums)> =
        std::collections::BTreeMap::new();
    for (rows, kept_side) in [(&kept, true), (&summed, false)] {
        for r in rows {
            let v = [r[1].int()?, r[2].int()?, r[3].int()?];
            let both = all.entry(r[0].text()?).or_default();
            if kept_side {
                both.0 = v;
            } else {
                both.1 = v;
            }
        }
    }
    Ok(all
        .into_iter()
        .filter(|(_, (kept, summed))| kept != summed)
        .map(|(account, (kept, summed))| (account, kept, summed))
        .collect())
}

pub fn journal_by_reference(
    tx: &mut dyn Sql,
    kind: &str,
    reference: &str,
) -> Result<Option<JournalRow>> {
    let rows = tx.query(
        "SELECT journal_id FROM journals WHERE kind = $1 AND reference = $2",
        &[kind.into(), reference.into()],
    )?;
    match rows.first() {
        Some(r) => Ok(journals(tx, Some(r[0].int()?))?.into_iter().next()),
        None => Ok(None),
    }
}

/// Journals with their entries, in order; one journal when `only` is given.
pub fn journals(tx: &mut dyn Sql, only: Option<i64>) -> Result<Vec<JournalRow>> {
    let (head_where, entry_where, params): (&str, &str, Vec<Value>) = match only {
        Some(id) => (
            "WHERE j.journal_id = $1",
            "WHERE journal_id = $1",
            vec![id.into()],
        ),
        None => ("", "", vec![]),
    };
    let mut out: Vec<JournalRow> = tx
        .query(
            &format!(
                "SELECT {JOURNAL_HEAD_COLUMNS} FROM journals j {head_where} ORDER BY j.journal_id"
            ),
            &params,
        )?
        .iter()
        .map(|r| journal_head_of(r))
        .collect::<Result<_>>()?;
    let mut index = 0;
    let entries = tx.query(
        &format!(
            "SELECT journal_id, account, debit_fen, credit_fen FROM journal_entries {entry_where} ORDER BY journal_id, seq"
        ),
        &params,
    )?;
    for r in entries {
        let id = r[0].int()?;
        while index < out.len() && out[index].journal_id < id {
            index += 1;
        }
        let journal = out
            .get_mut(index)
            .filter(|j| j.journal_id == id)
            .ok_or_else(|| StoreError::Corrupt(format!("entry of unknown journal {id}")))?;
        journal.entries.push(entry_of(&r, 1)?);
    }
    Ok(out)
}

/// Σ debits and Σ credits per account, by account name: the trial balance.
pub fn account_totals(tx: &mut dyn Sql) -> Result<Vec<(String, i64, i64)>> {
    account_totals_page(tx, i64::MAX, None, i64::MAX)
}

/// At most `count` accounts of the trial balance of the journals up to `through`, by account
/// name, after the account `after` (from the first when `None`): Σ debits and Σ credits of
/// each, read by the account index so a ledger of any size is read in bounded pieces.
pub fn account_totals_page(
    tx: &mut dyn Sql,
    through: i64,
    after: Option<&str>,
    count: i64,
) -> Result<Vec<(String, i64, i64)>> {
    const COLUMNS: &str = "SELECT account, CAST(SUM(debit_fen) AS BIGINT), CAST(SUM(credit_fen) AS BIGINT) FROM journal_entries";
    let rows = match after {
        Some(after) => tx.query(
            &format!(
                "{COLUMNS} WHERE account > $1 AND journal_id <= $2 GROUP BY account ORDER BY account LIMIT $3"
            ),
            &[after.into(), through.into(), count.into()],
        )?,
        None => tx.query(
            &format!(
                "{COLUMNS} WHERE journal_id <= $1 GROUP BY account ORDER BY account LIMIT $2"
            ),
            &[through.into(), count.into()],
        )?,
    };
    rows.iter()
        .map(|r| Ok((r[0].text()?, r[1].int()?, r[2].int()?)))
        .collect()
}

/// What a listing of the ledger holds, counted and summed in the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    pub journals: i64,
    pub entries: i64,
    /// Accounts with entries (counted for the trial balance only; 0 otherwise).
    pub accounts: i64,
    pub debit_fen: i64,
    pub credit_fen: i64,
}

/// The accounts of the journals up to `through`, counted, with their entries' debits and
/// credits summed: what the trial balance of those journals adds up to.
pub fn trial_balance_totals(tx: &mut dyn Sql, through: i64) -> Result<LedgerTotals> {
    let rows = tx.query(
        "SELECT COUNT(DISTINCT account), COUNT(*), CAST(COALESCE(SUM(debit_fen), 0) AS BIGINT), CAST(COALESCE(SUM(credit_fen), 0) AS BIGINT) FROM journal_entries WHERE journal_id <= $1",
        &[through.into()],
    )?;
    totals_of(&rows, "trial balance totals")
}

/// Which journals a listing holds: those up to `through` (journals are append-only, so a
/// listing read in pieces is the ledger as it stood when it began), of `kind` unless empty,
/// with an entry on an account that starts with `account_prefix` unless empty, of `reference`
/// unless empty, and created at or after `from` and before `before` (instants as stored, UTC
/// RFC 3339 in milliseconds) unless empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalFilter {
    pub through: i64,
    pub kind: String,
    pub account_prefix: String,
    pub reference: String,
    pub from: String,
    pub before: String,
}

impl JournalFilter {
    /// The filter as a condition on `journals j`, its placeholders numbered from `$first`, and
    /// their values.
    fn condition(&self, first: usize) -> (String, Vec<Value>) {
        let mut sql = format!("j.journal_id <= ${first}");
        let mut params: Vec<Value> = vec![self.through.into()];
        if !self.kind.is_empty() {
            sql.push_str(&format!(" AND j.kind = ${}", first + params.len()));
            params.push(self.kind.as_str().into());
        }
        for (value, test) in [
            (&self.reference, "j.reference ="),
            (&self.from, "j.created_at >="),
            (&self.before, "j.created_at <"),
        ] {
            if !value.is_empty() {
                sql.push_str(&format!(" AND {test} ${}", first + params.len()));
                params.push(value.as_str().into());
            }
        }
        if !self.account_prefix.is_empty() {
            let n = first + params.len();
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM journal_entries f WHERE f.journal_id = j.journal_id \
                 AND substr(f.account, 1, length(CAST(${n} AS TEXT))) = CAST(${n} AS TEXT))"
            ));
            params.push(self.account_prefix.as_str().into());
        }
        (sql, params)
    }
}

/// The journals of `filter` counted, with their entries counted and summed.
pub fn journal_totals(tx: &mut dyn Sql, filter: &JournalFilter) -> Result<LedgerTotals> {
    let (condition, params) = filter.condition(1);
    let journals = tx.query(
        &format!("SELECT COUNT(*) FROM journals j WHERE {condition}"),
        &params,
    )?;
    let entries = tx.query(
        &format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM(e.debit_fen), 0) AS BIGINT), CAST(COALESCE(SUM(e.credit_fen), 0) AS BIGINT) \
             FROM journal_entries e WHERE e.journal_id IN (SELECT j.journal_id FROM journals j WHERE {condition})"
        ),
        &params,
    )?;
    let (Some(j), Some(e)) = (journals.first(), entries.first()) else {
        return Err(StoreError::Corrupt("no journal totals row".into()));
    };
    Ok(LedgerTotals {
        journals: j[0].int()?,
        entries: e[0].int()?,
        accounts: 0,
        debit_fen: e[1].int()?,
        credit_fen: e[2].int()?,
    })
}

/// How many journals `filter` selects, counted up to `max` + 1: a count above `max` only says
/// there are more, so a count costs at most that many journals.
pub fn journals_counted(tx: &mut dyn Sql, filter: &JournalFilter, max: i64) -> Result<i64> {
    let (condition, mut params) = filter.condition(1);
    params.push(max.saturating_add(1).into());
    let rows = tx.query(
        &format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM journals j WHERE {condition} LIMIT ${}) AS selected",
            params.len()
        ),
        &params,
    )?;
    rows.first()
        .ok_or_else(|| StoreError::Corrupt("no journal count row".into()))?[0]
        .int()
}

/// A journal as a page shows it: at most the first entries, and how many it has in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalShown {
    pub journal: JournalRow,
    pub entries: i64,
    /// The journal was cut short and the filter names an account prefix: the entries shown
    /// are the first on such accounts, not the journal's first.
    pub matching_only: bool,
}

/// The journals of `filter`, newest first, `offset` of them skipped and at most `count` read,
/// each with at most its first `entries_max` entries: a page reads the journals it shows and
/// those it skips, and a bounded part of each one's entries, by the primary keys.
pub fn journals_newest(
    tx: &mut dyn Sql,
    filter: &JournalFilter,
    offset: i64,
    count: i64,
    entries_max: i64,
) -> Result<Vec<JournalShown>> {
    let (condition, mut params) = filter.condition(1);
    params.push(count.into());
    params.push(offset.into());
    let mut out: Vec<JournalShown> = tx
        .query(
            &format!(
                "SELECT {JOURNAL_HEAD_COLUMNS} FROM journals j WHERE {condition} \
                 ORDER BY j.journal_id DESC LIMIT ${} OFFSET ${}",
                params.len() - 1,
                params.len()
            ),
            &params,
        )?
        .iter()
        .map(|r| {
            Ok(JournalShown {
                journal: journal_head_of(r)?,
                entries: 0,
                matching_only: false,
            })
        })
        .collect::<Result<_>>()?;
    for shown in &mut out {
        let id = shown.journal.journal_id;
        shown.journal.entries = tx
            .query(
                "SELECT account, debit_fen, credit_fen FROM journal_entries WHERE journal_id = $1 ORDER BY seq LIMIT $2",
                &[id.into(), entries_max.into()],
            )?
            .iter()
            .map(|r| entry_of(r, 0))
            .collect::<Result<_>>()?;
        shown.entries = shown.journal.entries.len() as i64;
        if shown.entries == entries_max {
            // Cut short: its entries are numbered from 0, so the last one's seq counts them.
            let last = tx.query(
                "SELECT MAX(seq) FROM journal_entries WHERE journal_id = $1",
                &[id.into()],
            )?;
            if let Some(seq) = last.first().map(|r| r[0].opt_int()).transpose()?.flatten() {
                shown.entries = shown.entries.max(seq + 1);
            }
        }
        if shown.entries > entries_max && !filter.account_prefix.is_empty() {
            // Selected for its entries on the prefix's accounts, which may all lie past the
            // first ones: show those instead.
            shown.journal.entries = tx
                .query(
                    "SELECT account, debit_fen, credit_fen FROM journal_entries WHERE journal_id = $1 \
                     AND substr(account, 1, length(CAST($2 AS TEXT))) = CAST($2 AS TEXT) ORDER BY seq LIMIT $3",
                    &[
                        id.into(),
                        filter.account_prefix.as_str().into(),
                        entries_max.into(),
                    ],
                )?
                .iter()
                .map(|r| entry_of(r, 0))
                .collect::<Result<_>>()?;
            shown.matching_only = true;
        }
    }
    Ok(out)
}

/// What the running totals per account add up to: the accounts with entries, the entries,
/// and their debits and credits, as the whole ledger holds them now. The console's ledger page
/// reads these on every view; the trial balance and the ledger export sum the entries
/// themselves, and `suanli audit verify` checks the two agree ([`account_totals_drift`]).
pub fn running_totals(tx: &mut dyn Sql) -> Result<LedgerTotals> {
    let rows = tx.query(
        "SELECT COUNT(*), CAST(COALESCE(SUM(entries), 0) AS BIGINT), CAST(COALESCE(SUM(debit_fen), 0) AS BIGINT), CAST(COALESCE(SUM(credit_fen), 0) AS BIGINT) FROM account_totals",
        &[],
    )?;
    totals_of(&rows, "running totals")
}

/// The totals row (accounts, entries, Σ debits, Σ credits) of a trial balance query.
fn totals_of(rows: &[Vec<Value>], what: &str) -> Result<LedgerTotals> {
    let r = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt(format!("no {what} row")))?;
    Ok(LedgerTotals {
        journals: 0,
        accounts: r[0].int()?,
        entries: r[1].int()?,
        debit_fen: r[2].int()?,
        credit_fen: r[3].int()?,
    })
}

/// Accounts of the trial balance of the whole ledger by account name, those starting with
/// `prefix` (all when it is empty), `offset` of them skipped and at most `count` read: Σ debits
/// and Σ credits of each, read from the running totals by the account key.
pub fn account_totals_window(
    tx: &mut dyn Sql,
    prefix: &str,
    offset: i64,
    count: i64,
) -> Result<Vec<(String, i64, i64)>> {
    let (condition, mut params) = account_prefix_condition(prefix);
    params.push(count.into());
    params.push(offset.into());
    tx.query(
        &format!(
            "SELECT account, debit_fen, credit_fen FROM account_totals {condition} \
             ORDER BY account LIMIT ${} OFFSET ${}",
            params.len() - 1,
            params.len()
        ),
        &params,
    )?
    .iter()
    .map(|r| Ok((r[0].text()?, r[1].int()?, r[2].int()?)))
    .collect()
}

/// How many accounts with entries start with `prefix` (a non-empty one; the trial balance's
/// totals count them all): a range of the running totals' key.
pub fn accounts_count(tx: &mut dyn Sql, prefix: &str) -> Result<i64> {
    let (condition, params) = account_prefix_condition(prefix);
    let rows = tx.query(
        &format!("SELECT COUNT(*) FROM account_totals {condition}"),
        &params,
    )?;
    rows.first()
        .ok_or_else(|| StoreError::Corrupt("no account count row".into()))?[0]
        .int()
}

/// `WHERE` an account starts with `prefix` (`$1`, `$2`), or nothing when it is empty: a range
/// of the key, as account names compare byte by byte on both backends (SQLite's BINARY,
/// `COLLATE "C"` on PostgreSQL), so every name that starts with the prefix sorts from the
/// prefix itself to the prefix followed by the last code point.
fn account_prefix_condition(prefix: &str) -> (&'static str, Vec<Value>) {
    if prefix.is_empty() {
        ("", Vec::new())
    } else {
        (
            "WHERE account >= $1 AND account < $2",
            vec![prefix.into(), crate::sql::prefix_end(prefix).into()],
        )
    }
}

/// A journal, or the part of it a page holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalPart {
    /// The position (from 0) among the journal's entries of the first of `journal.entries`.
    pub first_entry: i64,
    pub journal: JournalRow,
}

/// A position in a listing of journals: a journal id and an entry's seq within it.
pub type JournalPosition = (i64, i64);

const JOURNAL_HEAD_COLUMNS: &str =
    "j.journal_id, j.kind, j.reference, j.memo, j.created_by, j.created_at";

/// A journal's header, selected by [`JOURNAL_HEAD_COLUMNS`], without its entries.
fn journal_head_of(r: &[Value]) -> Result<JournalRow> {
    Ok(JournalRow {
        journal_id: r[0].int()?,
        kind: r[1].text()?,
        reference: r[2].text()?,
        memo: r[3].text()?,
        created_by: r[4].text()?,
        created_at: r[5].text()?,
        entries: Vec::new(),
    })
}

/// An entry selected as `account, debit_fen, credit_fen` from column `at` on.
fn entry_of(r: &[Value], at: usize) -> Result<EntryRow> {
    Ok(EntryRow {
        account: r[at].text()?,
        debit_fen: r[at + 1].int()?,
        credit_fen: r[at + 2].int()?,
    })
}

/// The journals of `filter` from position `from` on, in order, with at most `count` entries in
/// all (at least 1): the first journal may begin after its first entry, the last may be cut
/// short. Empty after the last journal. Returns the position of the next page too. Every query
/// reads by the primary keys from the position on, so a journal of any size is read in pieces
/// of the same cost.
pub fn journals_page(
    tx: &mut dyn Sql,
    filter: &JournalFilter,
    from: JournalPosition,
    count: i64,
) -> Result<(Vec<JournalPart>, JournalPosition)> {
    let count = count.max(1);
    let mut out = Vec::new();
    let mut start = from.0;
    if from.1 > 0 {
        // The rest of the journal the position points into (its first entries were listed, so
        // it matches the filter), read by itself.
        let rest = tx.query(
            "SELECT seq, account, debit_fen, credit_fen FROM journal_entries WHERE journal_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
            &[from.0.into(), from.1.into(), count.into()],
        )?;
        if let Some(last) = rest.last() {
            let last_seq = last[0].int()?;
            let head = tx.query(
                &format!("SELECT {JOURNAL_HEAD_COLUMNS} FROM journals j WHERE j.journal_id = $1"),
                &[from.0.into()],
            )?;
            let mut journal = journal_head_of(head.first().ok_or_else(|| {
                StoreError::Corrupt(format!("entries of unknown journal {}", from.0))
            })?)?;
            journal.entries = rest.iter().map(|r| entry_of(r, 1)).collect::<Result<_>>()?;
            out.push(JournalPart {
                first_entry: from.1,
                journal,
            });
            if rest.len() as i64 == count {
                return Ok((out, (from.0, last_seq + 1)));
            }
        }
        start = from.0 + 1;
    }
    let left = count - out.first().map_or(0, |p| p.journal.entries.len() as i64);

    // The next journals, each from its first entry: at most `left` of them, since each has
    // an entry (an empty one takes nothing, and the next page goes on after it).
    let (condition, mut params) = filter.condition(2);
    params.insert(0, start.into());
    params.push(left.into());
    let heads = tx.query(
        &format!(
            "SELECT {JOURNAL_HEAD_COLUMNS} FROM journals j WHERE j.journal_id >= $1 AND {condition} \
             ORDER BY j.journal_id LIMIT ${}",
            params.len()
        ),
        &params,
    )?;
    let Some(last_head) = heads.last().map(|r| r[0].int()).transpose()? else {
        return Ok((out, (start, 0)));
    };
    let first_head = out.len();
    for r in &heads {
        out.push(JournalPart {
            first_entry: 0,
            journal: journal_head_of(r)?,
        });
    }
    // Their entries, in order, at most `left`.
    let (condition, mut params) = filter.condition(3);
    params.splice(0..0, [start.into(), last_head.into()]);
    params.push(left.into());
    let entries = tx.query(
        &format!(
            "SELECT e.journal_id, e.seq, e.account, e.debit_fen, e.credit_fen FROM journal_entries e \
             WHERE e.journal_id >= $1 AND e.journal_id <= $2 \
             AND e.journal_id IN (SELECT j.journal_id FROM journals j WHERE j.journal_id >= $1 AND j.journal_id <= $2 AND {condition}) \
             ORDER BY e.journal_id, e.seq LIMIT ${}",
            params.len()
        ),
        &params,
    )?;
    let mut index = first_head;
    let mut last_read = None;
    for r in &entries {
        let id = r[0].int()?;
        let seq = r[1].int()?;
        while index < out.len() && out[index].journal.journal_id < id {
            index += 1;
        }
        let part = out
            .get_mut(index)
            .filter(|p| p.journal.journal_id == id)
            .ok_or_else(|| StoreError::Corrupt(format!("entry {seq} of unknown journal {id}")))?;
        part.journal.entries.push(entry_of(r, 2)?);
        last_read = Some((id, seq));
    }
    match last_read {
        // A full page may stop inside a journal: the journals after it come in the next page.
        Some((id, seq)) if entries.len() as i64 == left => {
            out.retain(|p| p.journal.journal_id <= id);
            Ok((out, (id, seq + 1)))
        }
        _ => Ok((out, (last_head + 1, 0))),
    }
}

/// The content hash of a registry version.
pub fn registry_hash(tx: &mut dyn Sql, version: i64) -> Result<Option<String>> {
    let rows = tx.query(
        "SELECT content_hash FROM registry_versions WHERE version = $1",
        &[version.into()],
    )?;
    rows.first().map(|r| r[0].text()).transpose()
}

/// The TOML text of a registry version.
pub fn registry_text(tx: &mut dyn Sql, version: i64) -> Result<Option<String>> {
    let rows = tx.query(
        "SELECT toml_text FROM registry_versions WHERE version = $1",
        &[version.into()],
    )?;
    rows.first().map(|r| r[0].text()).transpose()
}
