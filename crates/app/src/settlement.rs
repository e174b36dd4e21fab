//! Settlement runs (docs/rules.md R9-R11): create (a preview over the frozen inputs), approve,
//! post, cancel, list, re-derive, and the run statement export; the transaction helpers the
//! other use cases share. Each function runs on the
//! store's writer thread with `&mut dyn Store`: it reads, asks the domain to decide, and writes
//! in one transaction. One writer per database serialises runs, so caps and pools stay exact;
//! settlement writes also take a database lock first ([`settlement_tx`]), so that stays true
//! on PostgreSQL should a second connection ever write settlement data.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::Utc;
use rust_decimal::Decimal;
use suanli_domain::Registry;
use suanli_domain::ledger::{Journal, payee_of, posting_journal};
use suanli_domain::money::{Fen, format_ratio};
use suanli_domain::registry::{Category, ChipOrigin, Class};
use suanli_domain::restatement::{
    PeriodInput, RunLine, entitlements_observed as entitlements_observed_domain, run_lines,
};
use suanli_domain::settlement::{CutBy, LimitObserver, LineKey, NoObserver, Prior, StatementLine};
use suanli_domain::usage::Period;
use suanli_store::ledger::{
    self as rows, EntryRow, InputRow, LineKeyRow, NewRun, RunLineRow, RunRow,
};
use suanli_store::sql::Sql;
use suanli_store::{Store, StoreError};

use crate::audit::Actor;
use crate::registry::{current_registry, load_registry};

/// Why a settlement, ledger or balance request was refused. The server maps it to a gRPC
/// status in one place (`grpc::status_of`).
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The store's writer has stopped; the server is going down.
    #[error("{0}")]
    Unavailable(String),
}

pub(crate) type Result<T> = std::result::Result<T, SettleError>;

/// A run with its lines.
#[derive(Clone, Debug)]
pub struct RunView {
    pub run: RunRow,
    pub lines: Vec<RunLineRow>,
    pub unchanged: bool,
}

pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Runs `f` in one store transaction, carrying a use-case error out of it.
/// A settlement write (create, approve, cancel, post, payment): the transaction first takes the
/// settlement lock (an advisory lock on PostgreSQL), so the check of what is posted and the
/// write that relies on it are atomic across connections.
pub(crate) fn settlement_tx<T>(
    store: &mut dyn Store,
    mut f: impl FnMut(&mut dyn Sql) -> Result<T>,
) -> Result<T> {
    in_tx(store, |tx| {
        tx.lock_settlement()?;
        f(tx)
    })
}

/// What runs a transaction: the store on the writer thread, or a reader's connection beside it
/// ([`crate::balances::BalanceReader`]).
pub trait Transact {
    fn transact(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Sql) -> std::result::Result<(), StoreError>,
    ) -> std::result::Result<(), StoreError>;

    /// As [`suanli_store::Reader::query_ints`]: one statement of integer columns, alone where
    /// the source can (a reader), else in a transaction of its own.
    fn query_ints(&mut self, sql: &str) -> std::result::Result<Vec<Vec<Option<i64>>>, StoreError> {
        let mut out = Vec::new();
        self.transact(&mut |tx| {
            let sql = sql.replace("{position}", tx.accrual_generation_sql().unwrap_or("NULL"));
            out = tx
                .query(&sql, &[])?
                .iter()
                .map(|row| row.iter().map(|v| v.opt_int()).collect())
                .collect::<std::result::Result<_, _>>()?;
            Ok(())
        })?;
        Ok(out)
    }
}

impl Transact for dyn Store + '_ {
    fn transact(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Sql) -> std::result::Result<(), StoreError>,
    ) -> std::result::Result<(), StoreError> {
        self.transaction(f)
    }
}

pub(crate) fn in_tx<S: Transact + ?Sized, T>(
    store: &mut S,
    mut f: impl FnMut(&mut dyn Sql) -> Result<T>,
) -> Result<T> {
    let mut out: Option<Result<T>> = None;
    let outcome = store.transact(&mut |tx| match f(tx) {
        Ok(v) => {
            out = Some(Ok(v));
            Ok(())
        }
        Err(SettleError::Store(e)) => Err(e),
        Err(e) => {
            out = Some(Err(e));
            // Roll back: a refused request changes nothing.
            Err(StoreError::Corrupt("rolled back".into()))
        }
    });
    match (outcome, out) {
        (_, Some(Err(e))) => Err(e),
        (Ok(()), Some(Ok(v))) => Ok(v),
        (Err(e), _) => Err(SettleError::Store(e)),
        (Ok(()), None) => unreachable!("a committed transaction produced a value"),
    }
}

pub(crate) fn class_of(category: &str, chip_origin: &str, registered_model: &str) -> Option<Class> {
    Some(Class {
        category: Category::parse(category)?,
        chip_origin: if chip_origin.is_empty() {
            None
        } else {
            Some(ChipOrigin::parse(chip_origin)?)
        },
        registered_model: match registered_model {
            "" => None,
            "true" => Some(true),
            "false" => Some(false),
            _ => return None,
        },
    })
}

pub(crate) fn key_of_row(k: &LineKeyRow) -> Result<LineKey> {
    let class = class_of(&k.category, &k.chip_origin, &k.registered_model)
        .ok_or_else(|| SettleError::Store(StoreError::Corrupt(format!("bad line class {k:?}"))))?;
    Ok(LineKey {
        beneficiary: k.beneficiary.clone(),
        provider: k.provider.clone(),
        class,
    })
}

pub fn row_of_key(k: &LineKey) -> LineKeyRow {
    LineKeyRow {
        beneficiary: k.beneficiary.clone(),
        provider: k.provider.clone(),
        category: k.class.category.as_str().to_owned(),
        chip_origin: k
            .class
            .chip_origin
            .map(|o| o.as_str().to_owned())
            .unwrap_or_default(),
        registered_model: k
            .class
            .registered_model
            .map(|r| r.to_string())
            .unwrap_or_default(),
    }
}

pub(crate) fn period_of(text: &str) -> Result<Period> {
    Period::parse(text)
        .ok_or_else(|| SettleError::InvalidArgument(format!("period {text:?} is not YYYY-MM")))
}

/// Line bases per period: what the engine settles.
pub(crate) type Bases = BTreeMap<Period, BTreeMap<LineKey, Fen>>;

/// The accruals of a fiscal year up to `last`, as line bases per period: the frozen input set.
pub(crate) fn bases_to(
    store: &mut dyn Store,
    year: i32,
    last: Period,
) -> Result<BTreeMap<Period, BTreeMap<LineKey, Fen>>> {
    let mut bases: BTreeMap<Period, BTreeMap<LineKey, Fen>> = BTreeMap::new();
    for a in store.accruals()? {
        let Some(period) = Period::parse(&a.period) else {
            continue;
        };
        if period.year != year || period > last || a.amount_fen == 0 && a.records == 0 {
            continue;
        }
        let key = key_of_row(&LineKeyRow {
            beneficiary: a.beneficiary,
            provider: a.provider,
            category: a.category,
            chip_origin: a.chip_origin,
            registered_model: a.registered_model,
        })?;
        let base = bases.entry(period).or_default().entry(key).or_default();
        *base = base.plus(Fen(a.amount_fen));
    }
    Ok(bases)
}

/// Entitlements of every period of the year up to `last`, each with its registry version,
/// counting the confirmed opening balances (`opening`) as paid before the year's first period.
pub(crate) fn entitlements(
    versions: &BTreeMap<Period, i64>,
    registries: &HashMap<i64, Arc<Registry>>,
    bases: &BTreeMap<Period, BTreeMap<LineKey, Fen>>,
    last: Period,
    opening: &Prior,
) -> Vec<suanli_domain::settlement::Statement> {
    entitlements_observed(versions, registries, bases, last, opening, &mut NoObserver)
}

/// [`entitlements`], telling `observer` what every limit stage decided.
pub(crate) fn entitlements_observed(
    versions: &BTreeMap<Period, i64>,
    registries: &HashMap<i64, Arc<Registry>>,
    bases: &BTreeMap<Period, BTreeMap<LineKey, Fen>>,
    last: Period,
    opening: &Prior,
    observer: &mut dyn LimitObserver,
) -> Vec<suanli_domain::settlement::Statement> {
    let empty = BTreeMap::new();
    let periods: Vec<Period> = (1..=last.month)
        .map(|month| Period {
            year: last.year,
            month,
        })
        .collect();
    let inputs: Vec<PeriodInput> = periods
        .iter()
        .map(|p| PeriodInput {
            period: *p,
            registry: &registries[&versions[p]],
            bases: bases.get(p).unwrap_or(&empty),
        })
        .collect();
    entitlements_observed_domain(&inputs, opening.clone(), observer)
}

/// R9: each period keeps the registry version its first run used; periods without a run yet
/// use `current`.
pub(crate) fn period_versions(
    tx: &mut dyn Sql,
    last: Period,
    current: i64,
) -> Result<BTreeMap<Period, i64>> {
    let firsts: BTreeMap<String, i64> =
        rows::first_run_versions(tx, &format!("{:04}-", last.year))?
            .into_iter()
            .collect();
    Ok((1..=last.month)
        .map(|month| {
            let p = Period {
                year: last.year,
                month,
            };
            (p, firsts.get(&p.to_string()).copied().unwrap_or(current))
        })
        .collect())
}

pub(crate) fn posted_map(
    tx: &mut dyn Sql,
    programme: &str,
) -> Result<BTreeMap<(Period, LineKey), Fen>> {
    let mut posted = BTreeMap::new();
    for (period, key, amount) in rows::posted_lines(tx, programme)? {
        posted.insert((period_of(&period)?, key_of_row(&key)?), Fen(amount));
    }
    Ok(posted)
}

pub(crate) fn line_row(programme: &suanli_domain::registry::Programme, l: &RunLine) -> RunLineRow {
    RunLineRow {
        original_period: l.line.period.to_string(),
        key: row_of_key(&l.line.key),
        base_fen: l.line.base.0,
        ratio: format_ratio(l.line.ratio),
        entitlement_fen: l.line.subsidy.0,
        posted_before_fen: l.posted_before.0,
        amount_fen: l.amount.0,
        cut_by: l
            .line
            .cut_by
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        payee: payee_of(programme, &l.line).to_owned(),
    }
}

/// What a run of `programme` for `period` would post now, with the inputs it froze.
struct Computed {
    version: i64,
    content_hash: String,
    versions: BTreeMap<Period, i64>,
    bases: BTreeMap<Period, BTreeMap<LineKey, Fen>>,
    lines: Vec<RunLineRow>,
}

fn compute(
    tx: &mut dyn Sql,
    programme_id: &str,
    period: Period,
    versions: BTreeMap<Period, i64>,
    bases: BTreeMap<Period, BTreeMap<LineKey, Fen>>,
    own_version: i64,
) -> Result<Computed> {
    let mut registries = HashMap::new();
    for v in versions.values().chain([&own_version]) {
        load_registry(tx, *v, &mut registries)?;
    }
    let registry = &registries[&own_version];
    let programme = registry.programme(programme_id).ok_or_else(|| {
        SettleError::NotFound(format!(
            "programme {programme_id:?} is not in registry version {own_version}"
        ))
    })?;
    let opening = crate::opening::opening_prior(tx, None)?;
    let statements = entitlements(&versions, &registries, &bases, period, &opening);
    let posted = posted_map(tx, programme_id)?;
    let lines = run_lines(programme_id, period, &statements, &posted)
        .iter()
        .map(|l| line_row(programme, l))
        .collect();
    Ok(Computed {
        version: own_version,
        content_hash: registry.content_hash.clone(),
        versions,
        bases,
        lines,
    })
}

/// `settle create`: freezes the input set and computes the preview.
pub fn create_run(
    store: &mut dyn Store,
    programme: &str,
    period_text: &str,
    who: &Actor,
) -> Result<RunView> {
    let period = period_of(period_text)?;
    // Parsed once per version (cached by content hash), not per run.
    let (current_version, registry) = current_registry(store)?;
    let p = registry.programme(programme).ok_or_else(|| {
        SettleError::NotFound(format!(
            "programme {programme:?} is not in the current registry"
        ))
    })?;
    if p.year != period.year {
        return Err(SettleError::InvalidArgument(format!(
            "period {period} is not in programme {programme:?}'s fiscal year {}",
            p.year
        )));
    }
    let started = std::time::Instant::now();
    let bases = bases_to(store, period.year, period)?;
    tracing::info!(programme, %period, lines = bases.values().map(BTreeMap::len).sum::<usize>(), elapsed_ms = started.elapsed().as_millis() as u64, "run inputs read from accruals");
    settlement_tx(store, |tx| {
        if let Some(open) = rows::pending_run(tx, programme, &period.to_string())? {
            return Err(SettleError::AlreadyExists(format!(
                "run {} is already {} for {programme} {period}; one open run per programme and period",
                open.run_id, open.status
            )));
        }
        for earlier in period.earlier_in_year() {
            if let Some(open) = rows::pending_run(tx, programme, &earlier.to_string())? {
                return Err(SettleError::FailedPrecondition(format!(
                    "run {} for the earlier period {earlier} is {}; post or cancel it first (periods are posted in order)",
                    open.run_id, open.status
                )));
            }
        }
        if let Some(latest) = rows::latest_posted_period(tx, programme)?
            && latest.as_str() > period.to_string().as_str()
        {
            return Err(SettleError::FailedPrecondition(format!(
                "{programme} is posted up to {latest}; a run for {period} would go back (late records of {period} are adjusted in the next run)"
            )));
        }
        let versions = period_versions(tx, period, current_version)?;
        let own_version = versions[&period];
        let computed = compute(tx, programme, period, versions, bases.clone(), own_version)?;
        tracing::info!(programme, %period, lines = computed.lines.len(), elapsed_ms = started.elapsed().as_millis() as u64, "run computed");
        // A run without lines would post nothing, yet as an open run it would block the
        // later months until someone cancelled it.
        if computed.lines.is_empty() {
            return Err(SettleError::FailedPrecondition(format!(
                "nothing to settle for {programme} in {period}: no usage and no adjustments"
            )));
        }
        let basis = rows::posted_basis(tx, programme)?;
        let new = NewRun {
            programme: programme.to_owned(),
            period: period.to_string(),
            registry_version: computed.version,
            content_hash: computed.content_hash.clone(),
            posted_basis: basis,
            created_by: who.actor.clone(),
            created_at: now(),
            periods: computed
                .versions
                .iter()
                .map(|(p, v)| (p.to_string(), *v))
                .collect(),
            inputs: computed
                .bases
                .iter()
                .flat_map(|(p, lines)| {
                    lines.iter().map(move |(k, b)| InputRow {
                        period: p.to_string(),
                        key: row_of_key(k),
                        base_fen: b.0,
                    })
                })
                .collect(),
            lines: computed.lines.clone(),
        };
        let run_id = rows::insert_run(tx, &new)?;
        tracing::info!(programme, %period, run_id, elapsed_ms = started.elapsed().as_millis() as u64, "run stored");
        let run = rows::run(tx, run_id)?.expect("the run just inserted");
        audit_run(tx, who, "run.create", &run, &computed.lines)?;
        Ok(RunView {
            run,
            lines: computed.lines,
            unchanged: false,
        })
    })
}

pub fn show_run<S: Transact + ?Sized>(store: &mut S, run_id: i64) -> Result<RunView> {
    in_tx(store, |tx| {
        let run = rows::run(tx, run_id)?
            .ok_or_else(|| SettleError::NotFound(format!("run {run_id} does not exist")))?;
        let lines = rows::run_lines(tx, run_id)?;
        Ok(RunView {
            run,
            lines,
            unchanged: false,
        })
    })
}

/// One page of a run's lines, as the console shows them.
pub struct RunLinesPage {
    pub run: RunRow,
    /// The run's lines and their sum, as counted when it was created.
    pub lines_total: i64,
    pub total_fen: i64,
    /// The lines the page's filter selects (the run's without one), and their sum.
    pub selected: i64,
    pub selected_fen: i64,
    /// At most the page's count of them.
    pub lines: Vec<RunLineRow>,
}

/// Run `run_id` with at most `count` of its lines from the `from`-th (from 0) on, of
/// `beneficiary` alone when given: a page costs its own lines, not the run's (800,000 lines
/// for a city of 100,000 enterprises).
pub fn run_lines_page<S: Transact + ?Sized>(
    store: &mut S,
    run_id: i64,
    beneficiary: Option<&str>,
    from: i64,
    count: i64,
) -> Result<RunLinesPage> {
    in_tx(store, |tx| {
        let run = rows::run(tx, run_id)?
            .ok_or_else(|| SettleError::NotFound(format!("run {run_id} does not exist")))?;
        let totals = totals_of(tx, run_id)?;
        let (selected, selected_fen) = match beneficiary {
            Some(b) => rows::run_lines_of_beneficiary(tx, run_id, b)?,
            None => (totals.lines, totals.total_fen),
        };
        let lines = match beneficiary {
            _ if from >= selected => Vec::new(),
            Some(b) => rows::beneficiary_lines_of_run(tx, run_id, b, from, count)?
                .into_iter()
                .map(|(_, line)| line)
                .collect(),
            None => rows::run_lines_page(tx, run_id, from, count)?,
        };
        Ok(RunLinesPage {
            run,
            lines_total: totals.lines,
            total_fen: totals.total_fen,
            selected,
            selected_fen,
            lines,
        })
    })
}

/// The line count and sum kept for run `run_id` when it was created.
pub(crate) fn totals_of(tx: &mut dyn Sql, run_id: i64) -> Result<rows::RunTotals> {
    rows::run_totals_of(tx, run_id)?.ok_or_else(|| {
        SettleError::Store(suanli_store::StoreError::Corrupt(format!(
            "run {run_id} has no totals"
        )))
    })
}

/// What posting or cancelling a run moves, as its confirmation shows it.
pub struct RunSummary {
    pub run: RunRow,
    pub lines: i64,
    pub total_fen: i64,
    /// Per payee: its lines and their sum, the largest sum first.
    pub payees: Vec<(String, i64, i64)>,
}

/// Run `run_id`'s totals (kept at its creation) and its payees' shares, summed by the
/// database: a confirmation of a run of any size reads no line into memory.
pub fn run_summary<S: Transact + ?Sized>(store: &mut S, run_id: i64) -> Result<RunSummary> {
    in_tx(store, |tx| {
        let run = rows::run(tx, run_id)?
            .ok_or_else(|| SettleError::NotFound(format!("run {run_id} does not exist")))?;
        let totals = totals_of(tx, run_id)?;
        Ok(RunSummary {
            run,
            lines: totals.lines,
            total_fen: totals.total_fen,
            payees: {
                let mut payees: Vec<(String, i64, i64)> = rows::run_payee_sums(tx, run_id)?
                    .into_iter()
                    .map(|p| (p.payee, p.lines, p.amount_fen))
                    .collect();
                payees.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
                payees
            },
        })
    })
}

/// A run's lines read page by page, each with its reason (as [`crate::reasons::run_reasons`]
/// gives it): how a run of any size is sent in bounded pieces. Each page is a read transaction
/// of its own, by the primary key; a run's lines never change once it is created, so the pages
/// join into the run's lines.
pub struct LinePages {
    run: RunRow,
    source: crate::reasons::ReasonSource,
    next: i64,
}

impl LinePages {
    /// Opens run `run_id`'s lines at position `from` (from 0).
    pub fn open<S: Transact + ?Sized>(store: &mut S, run_id: i64, from: i64) -> Result<LinePages> {
        in_tx(store, |tx| {
            let run = rows::run(tx, run_id)?
                .ok_or_else(|| SettleError::NotFound(format!("run {run_id} does not exist")))?;
            let source = crate::reasons::ReasonSource::of_run(tx, &run)?;
            Ok(LinePages {
                run,
                source,
                next: from,
            })
        })
    }

    /// The position (from 0) of the next page's first line.
    pub fn position(&self) -> i64 {
        self.next
    }

    /// The next at most `count` lines with their reasons; empty after the last line.
    pub fn next_page<S: Transact + ?Sized>(
        &mut self,
        store: &mut S,
        count: usize,
    ) -> Result<Vec<(RunLineRow, String)>> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let page = in_tx(store, |tx| {
            let lines = rows::run_lines_page(tx, self.run.run_id, self.next, count)?;
            Ok(lines
                .into_iter()
                .map(|l| {
                    let reason = self.source.reason(tx, &self.run, &l);
                    (l, reason)
                })
                .collect::<Vec<_>>())
        })?;
        self.next += page.len() as i64;
        Ok(page)
    }
}

/// The user who created run `run_id`, from the audit log's `run.create` entry (`user:<id> …`);
/// `None` when a credential without a user created it.
pub fn run_creator_user_id<S: Transact + ?Sized>(
    store: &mut S,
    run_id: i64,
) -> Result<Option<i64>> {
    in_tx(store, |tx| {
        let actor = suanli_store::audit::first_actor(tx, "run.create", &format!("run:{run_id}"))?;
        Ok(actor.and_then(|a| {
            a.strip_prefix("user:")?
                .split(' ')
                .next()?
                .parse::<i64>()
                .ok()
        }))
    })
}

pub fn list_runs<S: Transact + ?Sized>(
    store: &mut S,
    programme: Option<&str>,
) -> Result<Vec<RunRow>> {
    in_tx(store, |tx| Ok(rows::runs(tx, programme)?))
}

/// Every run (of `programme`, or all) with its number of lines and their sum: the finance
/// overview's list, read without loading any run's lines.
pub fn runs_with_totals<S: Transact + ?Sized>(
    store: &mut S,
    programme: Option<&str>,
) -> Result<Vec<(RunRow, usize, Fen)>> {
    Ok(runs_with_line_totals(store, programme)?
        .into_iter()
        .map(|(run, t)| (run, usize::try_from(t.lines).unwrap_or(0), Fen(t.total_fen)))
        .collect())
}

/// Every run (of `programme`, or all) with its lines counted and summed, read without loading
/// any run's lines: a list of runs costs the same whatever their size.
pub fn runs_with_line_totals<S: Transact + ?Sized>(
    store: &mut S,
    programme: Option<&str>,
) -> Result<Vec<(RunRow, rows::RunTotals)>> {
    in_tx(store, |tx| {
        let totals = rows::run_totals(tx)?;
        Ok(rows::runs(tx, programme)?
            .into_iter()
            .map(|run| {
                let t = totals.get(&run.run_id).copied().unwrap_or_default();
                (run, t)
            })
            .collect())
    })
}

/// Four eyes: the approver must be another person than the creator — another user, whatever
/// tokens either used (compared by login, see [`crate::audit::person_of`]).
pub fn approve_run(store: &mut dyn Store, run_id: i64, who: &Actor) -> Result<RunView> {
    let actor = who.actor.as_str();
    settlement_tx(store, |tx| {
        let run = rows::run(tx, run_id)?
            .ok_or_else(|| SettleError::NotFound(format!("run {run_id} does not exist")))?;
        if run.status == "approved"
            && run
                .approved_by
                .as_deref()
                .is_some_and(|a| who.same_person(a))
        {
            let lines = rows::run_lines(tx, run_id)?;
            return Ok(RunView {
                run,
                lines,
                unchanged: true,
            });
        }
        if run.status != "open" {
            return Err(SettleError::FailedPrecondition(format!(
                "run {run_id} is {}, only an open run can be approved",
                run.status
            )));
        }
        if who.same_person(&run.created_by) {
            return Err(SettleError::PermissionDenied(format!(
                "run {run_id} was created by {}; another finance user must approve it (four eyes)",
                run.created_by
            )));
        }
        rows::transition(tx, run_id, "open", "approved", Some(actor), &now())?;
        let run = rows::run(tx, run_id)?.expect("run exists");
        let lines = rows::run_lines(tx, run_id)?;
        audit_run(tx, who, "run.approve", &run, &lines)?;
        Ok(RunView {
            run,
            lines,
            unchanged: false,
        })
    })
}

pub fn cancel_run(store: &mut dyn Store, run_id: i64, who: &Actor) -> Result<RunView> {
    let actor = who.actor.as_str();
    settlement_tx(store, |tx| {
        let run = rows::run(tx, run_id)?
            .ok_or_else(|| SettleError::NotFound(format!("run {run_id} does not exist")))?;
        if run.status == "cancelled" {
            return Ok(RunView {
                lines: rows::run_lines(tx, run_id)?,
                run,
                unchanged: true,
            });
        }
        if run.status == "posted" {
            return Err(SettleError::FailedPrecondition(format!(
                "run {run_id} is posted; a posted run cannot be cancelled"
            )));
        }
        rows::transition(tx, run_id, &run.status, "cancelled", Some(actor), &now())?;
        let run = rows::run(tx, run_id)?.expect("run exists");
        let lines = rows::run_lines(tx, run_id)?;
        audit_run(tx, who, "run.cancel", &run, &lines)?;
        Ok(RunView {
            run,
            lines,
            unchanged: false,
        })
    })
}

/// Writes the run's balanced journal and marks it posted, atomically. A posted run is returned
/// unchanged (idempotent).
pub fn post_run(store: &mut dyn Store, run_id: i64, who: &Actor) -> Result<RunView> {
    let actor = who.actor.as_str();
    settlement_tx(store, |tx| {
        let run = rows::run(tx, run_id)?
            .ok_or_else(|| SettleError::NotFound(format!("run {run_id} does not exist")))?;
        let lines = rows::run_lines(tx, run_id)?;
        if run.status == "posted" {
            return Ok(RunView {
                run,
                lines,
                unchanged: true,
            });
        }
        if run.status != "approved" {
            return Err(SettleError::FailedPrecondition(format!(
                "run {run_id} is {}; only an approved run can be posted",
                run.status
            )));
        }
        let period = period_of(&run.period)?;
        for earlier in period.earlier_in_year() {
            if let Some(open) = rows::pending_run(tx, &run.programme, &earlier.to_string())? {
                return Err(SettleError::FailedPrecondition(format!(
                    "run {} for the earlier period {earlier} is {}; periods are posted in order",
                    open.run_id, open.status
                )));
            }
        }
        if rows::posted_basis(tx, &run.programme)? != run.posted_basis {
            return Err(SettleError::FailedPrecondition(format!(
                "run {run_id} was computed before another run of {} was posted; cancel it and create a new run",
                run.programme
            )));
        }
        let mut registries = HashMap::new();
        load_registry(tx, run.registry_version, &mut registries)?;
        let programme = registries[&run.registry_version]
            .programme(&run.programme)
            .ok_or_else(|| {
                SettleError::NotFound(format!(
                    "programme {:?} is not in registry version {}",
                    run.programme, run.registry_version
                ))
            })?
            .clone();
        let statement_lines = statement_lines_of(&run, &lines)?;
        let at = now();
        let journal_id = match posting_journal(&programme, &statement_lines) {
            Some(journal) => {
                let entries = entry_rows(&journal);
                Some(rows::insert_journal(
                    tx,
                    "run",
                    &format!("run:{run_id}"),
                    &format!("settlement run {run_id}: {} {}", run.programme, run.period),
                    actor,
                    &at,
                    &entries,
                )?)
            }
            None => None,
        };
        if !rows::mark_posted(tx, run_id, journal_id, &at)? {
            return Err(SettleError::FailedPrecondition(format!(
                "run {run_id} changed while posting"
            )));
        }
        let run = rows::run(tx, run_id)?.expect("run exists");
        audit_run(tx, who, "run.post", &run, &lines)?;
        Ok(RunView {
            run,
            lines,
            unchanged: false,
        })
    })
}

/// Appends a run's audit entry; the digest covers the run's state and totals after the action.
fn audit_run(
    tx: &mut dyn Sql,
    who: &Actor,
    action: &str,
    run: &RunRow,
    lines: &[RunLineRow],
) -> Result<()> {
    let parts = if action == "run.post" {
        // The post's digest covers the lines and the journal as stored, read back in this
        // transaction (crate::seal), so an edit of posted money is found by `audit verify`.
        let journal = match run.journal_id {
            Some(id) => rows::journals(tx, Some(id))?.into_iter().next(),
            None => None,
        };
        crate::seal::posted_run_parts(run, lines, journal.as_ref())
    } else {
        crate::seal::run_parts(run, lines)
    };
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    who.record(tx, action, &format!("run:{}", run.run_id), &parts)?;
    Ok(())
}

pub(crate) fn entry_rows(journal: &Journal) -> Vec<EntryRow> {
    journal
        .entries()
        .iter()
        .map(|e| EntryRow {
            account: e.account.to_string(),
            debit_fen: e.debit.0,
            credit_fen: e.credit.0,
        })
        .collect()
}

/// A run's stored lines as the engine's statement lines, from which its journal is built.
fn statement_lines_of(run: &RunRow, lines: &[RunLineRow]) -> Result<Vec<StatementLine>> {
    lines
        .iter()
        .map(|l| {
            Ok(StatementLine {
                programme: run.programme.clone(),
                period: period_of(&l.original_period)?,
                key: key_of_row(&l.key)?,
                base: Fen(l.base_fen),
                ratio: l.ratio.parse::<Decimal>().unwrap_or_default(),
                demand: Fen(l.entitlement_fen),
                subsidy: Fen(l.amount_fen),
                cut_by: CutBy::parse(&l.cut_by),
            })
        })
        .collect()
}

/// A run's frozen inputs: the registry version of each period of its year to date, and the
/// line bases of each period as the accruals stood when it was created.
pub(crate) fn frozen_inputs(
    tx: &mut dyn Sql,
    run_id: i64,
) -> Result<(BTreeMap<Period, i64>, Bases)> {
    let mut versions = BTreeMap::new();
    for (p, v) in rows::run_periods(tx, run_id)? {
        versions.insert(period_of(&p)?, v);
    }
    let mut bases: BTreeMap<Period, BTreeMap<LineKey, Fen>> = BTreeMap::new();
    for input in rows::run_inputs(tx, run_id)? {
        bases
            .entry(period_of(&input.period)?)
            .or_default()
            .insert(key_of_row(&input.key)?, Fen(input.base_fen));
    }
    Ok((versions, bases))
}

/// Recomputes a run from its frozen inputs, registry versions and the posted runs before it,
/// and compares line by line (R11).
pub fn rederive_run(store: &mut dyn Store, run_id: i64) -> Result<(RunRow, Option<String>)> {
    in_tx(store, |tx| {
        let run = rows::run(tx, run_id)?
            .ok_or_else(|| SettleError::NotFound(format!("run {run_id} does not exist")))?;
        let period = period_of(&run.period)?;
        let stored = rows::run_lines(tx, run_id)?;
        let (versions, bases) = frozen_inputs(tx, run_id)?;
        // What was posted before this run: its stored basis of posted runs.
        let basis: BTreeSet<i64> = run
            .posted_basis
            .split(',')
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect();
        let mut posted: BTreeMap<(Period, LineKey), Fen> = BTreeMap::new();
        for id in &basis {
            for l in rows::run_lines(tx, *id)? {
                let e = posted
                    .entry((period_of(&l.original_period)?, key_of_row(&l.key)?))
                    .or_default();
                *e = e.plus(Fen(l.amount_fen));
            }
        }
        let mut registries = HashMap::new();
        for v in versions.values().chain([&run.registry_version]) {
            load_registry(tx, *v, &mut registries)?;
        }
        let programme = registries[&run.registry_version]
            .programme(&run.programme)
            .ok_or_else(|| {
                SettleError::NotFound(format!(
                    "programme {:?} is gone from registry version {}",
                    run.programme, run.registry_version
                ))
            })?
            .clone();
        // Opening balances are confirmed before a programme's first run; those confirmed
        // before this run was created are the ones it counted.
        let opening = crate::opening::opening_prior(tx, Some(&run.created_at))?;
        let statements = entitlements(&versions, &registries, &bases, period, &opening);
        let recomputed: Vec<RunLineRow> = run_lines(&run.programme, period, &statements, &posted)
            .iter()
            .map(|l| line_row(&programme, l))
            .collect();
        let difference = if recomputed == stored {
            // The lines match; a posted run's journal must be the one they imply.
            let implied = posting_journal(&programme, &statement_lines_of(&run, &recomputed)?)
                .map(|j| entry_rows(&j))
                .unwrap_or_default();
            let posted = match run.journal_id {
                Some(id) => rows::journals(tx, Some(id))?
                    .into_iter()
                    .next()
                    .map(|j| j.entries)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            (run.status == "posted" && implied != posted).then(|| {
                format!(
                    "the lines match, but journal {} holds {posted:?} where the lines imply {implied:?}",
                    run.journal_id.map_or_else(|| "(none)".to_owned(), |j| j.to_string())
                )
            })
        } else if recomputed.len() != stored.len() {
            Some(format!(
                "{} lines recomputed, {} stored",
                recomputed.len(),
                stored.len()
            ))
        } else {
            recomputed
                .iter()
                .zip(&stored)
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("recomputed {a:?}, stored {b:?}"))
        };
        Ok((run, difference))
    })
}

/// `settle explain`: the lines of a run for one beneficiary (and optionally one provider),
/// each with its ratio and why, its base and a page of its records, its cuts and their causes
/// ([`crate::explain`]).
pub fn explain<S: Transact + ?Sized>(
    store: &mut S,
    run_id: i64,
    beneficiary: &str,
    provider: Option<&str>,
    page: &crate::explain::RecordsPage,
) -> Result<crate::explain::Explanation> {
    crate::explain::explain(store, run_id, beneficiary, provider, page)
}

/// How many columns a run's statement export has.
pub const RUN_STATEMENT_COLUMNS: usize = 17;

/// The columns of a run's statement export: `suanli simulate`'s statement columns, then
/// `run_id` and `original_period` (set on adjustment lines only), then what reconciles a line
/// without the database: its `entitlement`, what was `settled_before`, the `change` this run
/// posts (entitlement − settled before, equal to `subsidy`) and a plain-language `reason` on
/// adjustment and cut lines. Shared by `settle export` and the web console's downloads.
pub const RUN_STATEMENT_HEADER: [&str; RUN_STATEMENT_COLUMNS] = {
    let mut header = [""; RUN_STATEMENT_COLUMNS];
    let mut i = 0;
    while i < suanli_domain::settlement::STATEMENT_HEADER.len() {
        header[i] = suanli_domain::settlement::STATEMENT_HEADER[i];
        i += 1;
    }
    header[11] = "run_id";
    header[12] = "original_period";
    header[13] = "entitlement";
    header[14] = "settled_before";
    header[15] = "change";
    header[16] = "reason";
    header
};

/// One line of a run as a statement record in [`RUN_STATEMENT_HEADER`] order; `subsidy` is
/// what the run posts, `reason` the line's explanation ([`crate::reasons`]).
pub fn run_statement_record(
    run: &RunRow,
    l: &RunLineRow,
    reason: &str,
) -> [String; RUN_STATEMENT_COLUMNS] {
    [
        run.programme.clone(),
        run.period.clone(),
        l.key.beneficiary.clone(),
        l.key.provider.clone(),
        l.key.category.clone(),
        l.key.chip_origin.clone(),
        l.key.registered_model.clone(),
        Fen(l.base_fen).to_string(),
        l.ratio.clone(),
        Fen(l.amount_fen).to_string(),
        l.cut_by.clone(),
        run.run_id.to_string(),
        if l.original_period != run.period {
            l.original_period.clone()
        } else {
            String::new()
        },
        Fen(l.entitlement_fen).to_string(),
        Fen(l.posted_before_fen).to_string(),
        Fen(l.amount_fen).to_string(),
        reason.to_owned(),
    ]
}

/// The posted runs' lines that `keep` selects, as statement records, in run then line order:
/// a beneficiary's or a provider's statement.
pub fn posted_statement(
    store: &mut dyn Store,
    year: Option<i32>,
    keep: impl Fn(&RunLineRow) -> bool,
) -> Result<Vec<[String; RUN_STATEMENT_COLUMNS]>> {
    in_tx(store, |tx| {
        let mut out = Vec::new();
        for run in rows::runs(tx, None)? {
            if run.status != "posted"
                || year.is_some_and(|y| !run.period.starts_with(&format!("{y:04}-")))
            {
                continue;
            }
            let lines: Vec<RunLineRow> = rows::run_lines(tx, run.run_id)?
                .into_iter()
                .filter(|l| keep(l))
                .collect();
            if lines.is_empty() {
                continue;
            }
            let reasons = crate::reasons::run_reasons(tx, &run, &lines)?;
            for (l, reason) in lines.iter().zip(&reasons) {
                out.push(run_statement_record(&run, l, reason));
            }
        }
        Ok(out)
    })
}
