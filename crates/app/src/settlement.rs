//! Settlement, ledger and balance use cases (POLICY.md R9-R12). Each function runs on the
//! store's writer thread with `&mut dyn Store`: it reads, asks the domain to decide, and writes
//! in one transaction. One writer per database serialises runs, so caps and pools stay exact;
//! settlement writes also take a database lock first ([`settlement_tx`]), so that stays true
//! on PostgreSQL should a second connection ever write settlement data.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use chrono::Utc;
use rust_decimal::Decimal;
use suanli_domain::Registry;
use suanli_domain::ledger::{Account, Entry, Journal, payee_of, posting_journal};
use suanli_domain::money::{Fen, format_ratio};
use suanli_domain::registry::{Category, ChipOrigin, Class};
use suanli_domain::restatement::{PeriodInput, RunLine, entitlements_to_date, run_lines};
use suanli_domain::settlement::{CutBy, LineKey, StatementLine};
use suanli_domain::usage::Period;
use suanli_store::ledger::{
    self as rows, EntryRow, InputRow, LineKeyRow, NewRun, RunLineRow, RunRow,
};
use suanli_store::sql::{Sql, Value};
use suanli_store::{Store, StoreError};

use crate::audit::Actor;

/// Why a settlement or ledger request was refused. Mapped to gRPC status in `grpc_settle`.
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
}

type Result<T> = std::result::Result<T, SettleError>;

/// A run with its lines.
#[derive(Clone, Debug)]
pub struct RunView {
    pub run: RunRow,
    pub lines: Vec<RunLineRow>,
    pub unchanged: bool,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Runs `f` in one store transaction, carrying a use-case error out of it.
/// A settlement write (create, approve, cancel, post, payment): the transaction first takes the
/// settlement lock (an advisory lock on PostgreSQL), so the check of what is posted and the
/// write that relies on it are atomic across connections.
fn settlement_tx<T>(
    store: &mut dyn Store,
    mut f: impl FnMut(&mut dyn Sql) -> Result<T>,
) -> Result<T> {
    in_tx(store, |tx| {
        tx.lock_settlement()?;
        f(tx)
    })
}

fn in_tx<T>(store: &mut dyn Store, mut f: impl FnMut(&mut dyn Sql) -> Result<T>) -> Result<T> {
    let mut out: Option<Result<T>> = None;
    let outcome = store.transaction(&mut |tx| match f(tx) {
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

fn parse_registry(version: i64, text: &str) -> Result<Registry> {
    Registry::from_toml(&format!("registry version {version}"), text)
        .map(|(r, _)| r)
        .map_err(|e| {
            SettleError::FailedPrecondition(format!(
                "stored registry version {version} no longer loads: {e}"
            ))
        })
}

/// Parsed registries by content hash. A version's text never changes, and parsing a city's
/// registry (100,000 beneficiaries) takes longer than a whole run's arithmetic.
static REGISTRIES: LazyLock<Mutex<HashMap<String, Arc<Registry>>>> = LazyLock::new(Mutex::default);
const REGISTRIES_CACHED_MAX: usize = 16;

fn registry_of(tx: &mut dyn Sql, version: i64) -> Result<Arc<Registry>> {
    let hash = rows::registry_hash(tx, version)?.ok_or_else(|| {
        SettleError::NotFound(format!("registry version {version} is not stored"))
    })?;
    if let Some(r) = REGISTRIES.lock().expect("registry cache lock").get(&hash) {
        return Ok(r.clone());
    }
    let text = rows::registry_text(tx, version)?.ok_or_else(|| {
        SettleError::NotFound(format!("registry version {version} is not stored"))
    })?;
    let registry = Arc::new(parse_registry(version, &text)?);
    remember_registry(&hash, registry.clone());
    Ok(registry)
}

/// Shares a registry parsed elsewhere (the server parses each version it loads or restores)
/// with settlement, so a run does not parse the same text again.
pub fn remember_registry(content_hash: &str, registry: Arc<Registry>) {
    let mut cache = REGISTRIES.lock().expect("registry cache lock");
    if cache.len() >= REGISTRIES_CACHED_MAX {
        cache.clear();
    }
    cache.insert(content_hash.to_owned(), registry);
}

fn load_registry(
    tx: &mut dyn Sql,
    version: i64,
    cache: &mut HashMap<i64, Arc<Registry>>,
) -> Result<()> {
    if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(version) {
        slot.insert(registry_of(tx, version)?);
    }
    Ok(())
}

/// The current registry version and its parsed registry.
fn current_registry(store: &mut dyn Store) -> Result<(i64, Arc<Registry>)> {
    in_tx(store, |tx| {
        let rows = tx.query("SELECT MAX(version) FROM registry_versions", &[])?;
        let version = rows
            .first()
            .and_then(|r| r[0].opt_int().ok().flatten())
            .ok_or_else(|| {
                SettleError::FailedPrecondition(
                    "no registry is loaded (suanli registry import)".into(),
                )
            })?;
        Ok((version, registry_of(tx, version)?))
    })
}

fn class_of(category: &str, chip_origin: &str, registered_model: &str) -> Option<Class> {
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

fn key_of_row(k: &LineKeyRow) -> Result<LineKey> {
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

fn period_of(text: &str) -> Result<Period> {
    Period::parse(text)
        .ok_or_else(|| SettleError::InvalidArgument(format!("period {text:?} is not YYYY-MM")))
}

/// The accruals of a fiscal year up to `last`, as line bases per period: the frozen input set.
fn bases_to(
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

/// Entitlements of every period of the year up to `last`, each with its registry version.
fn entitlements(
    versions: &BTreeMap<Period, i64>,
    registries: &HashMap<i64, Arc<Registry>>,
    bases: &BTreeMap<Period, BTreeMap<LineKey, Fen>>,
    last: Period,
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
    entitlements_to_date(&inputs)
}

/// R9: each period keeps the registry version its first run used; periods without a run yet
/// use `current`.
fn period_versions(tx: &mut dyn Sql, last: Period, current: i64) -> Result<BTreeMap<Period, i64>> {
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

fn posted_map(tx: &mut dyn Sql, programme: &str) -> Result<BTreeMap<(Period, LineKey), Fen>> {
    let mut posted = BTreeMap::new();
    for (period, key, amount) in rows::posted_lines(tx, programme)? {
        posted.insert((period_of(&period)?, key_of_row(&key)?), Fen(amount));
    }
    Ok(posted)
}

fn line_row(programme: &suanli_domain::registry::Programme, l: &RunLine) -> RunLineRow {
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
    let statements = entitlements(&versions, &registries, &bases, period);
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

pub fn show_run(store: &mut dyn Store, run_id: i64) -> Result<RunView> {
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

pub fn list_runs(store: &mut dyn Store, programme: Option<&str>) -> Result<Vec<RunRow>> {
    in_tx(store, |tx| Ok(rows::runs(tx, programme)?))
}

/// Four eyes: the approver must be a finance principal other than the creator.
pub fn approve_run(store: &mut dyn Store, run_id: i64, who: &Actor) -> Result<RunView> {
    let actor = who.actor.as_str();
    settlement_tx(store, |tx| {
        let run = rows::run(tx, run_id)?
            .ok_or_else(|| SettleError::NotFound(format!("run {run_id} does not exist")))?;
        if run.status == "approved" && run.approved_by.as_deref() == Some(actor) {
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
        if run.created_by == actor {
            return Err(SettleError::PermissionDenied(format!(
                "run {run_id} was created by {actor}; another finance user must approve it (four eyes)"
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
        let statement_lines: Vec<StatementLine> = lines
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
            .collect::<Result<_>>()?;
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
    let total_fen: i64 = lines.iter().map(|l| l.amount_fen).sum();
    let parts = [
        run.run_id.to_string(),
        run.programme.clone(),
        run.period.clone(),
        run.status.clone(),
        run.registry_version.to_string(),
        run.content_hash.clone(),
        run.posted_basis.clone(),
        lines.len().to_string(),
        total_fen.to_string(),
        run.journal_id.map_or_else(String::new, |j| j.to_string()),
    ];
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    who.record(tx, action, &format!("run:{}", run.run_id), &parts)?;
    Ok(())
}

fn entry_rows(journal: &Journal) -> Vec<EntryRow> {
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

/// Recomputes a run from its frozen inputs, registry versions and the posted runs before it,
/// and compares line by line (R11).
pub fn rederive_run(store: &mut dyn Store, run_id: i64) -> Result<(RunRow, Option<String>)> {
    in_tx(store, |tx| {
        let run = rows::run(tx, run_id)?
            .ok_or_else(|| SettleError::NotFound(format!("run {run_id} does not exist")))?;
        let period = period_of(&run.period)?;
        let stored = rows::run_lines(tx, run_id)?;
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
        let statements = entitlements(&versions, &registries, &bases, period);
        let recomputed: Vec<RunLineRow> = run_lines(&run.programme, period, &statements, &posted)
            .iter()
            .map(|l| line_row(&programme, l))
            .collect();
        let difference = if recomputed == stored {
            None
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

/// One programme-year of a beneficiary's balance (R12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balance {
    pub programme: String,
    pub year: i32,
    pub cap: Option<Fen>,
    pub paid: Fen,
    pub pending: Fen,
    pub remaining: Fen,
}

/// What balance look-ups derive from the database, cached and recomputed only when what they
/// derive from changed: the year-to-date entitlement per (programme, beneficiary) per fiscal
/// year (accruals, registry, runs), what posted runs paid per beneficiary (runs), and the
/// current registry (its version). A look-up then costs one query of the state's version
/// numbers and, on PostgreSQL, one of the accrual generation — not a year's settlement
/// arithmetic.
#[derive(Default)]
pub struct PendingCache {
    years: HashMap<i32, (PendingKey, Entitled)>,
    registry: Option<(i64, Arc<Registry>)>,
    paid: Option<(RunsKey, Paid)>,
}

/// Entitlement to date per (programme, beneficiary).
type Entitled = Arc<HashMap<(String, String), Fen>>;

/// Posted per beneficiary, per programme.
type Paid = Arc<HashMap<String, BTreeMap<String, i64>>>;

/// Changes whenever a run is created, posted or cancelled (approval changes no amount).
#[derive(Clone, Copy, PartialEq, Eq)]
struct RunsKey {
    runs: i64,
    last_run: i64,
    posted: i64,
    cancelled: i64,
}

#[derive(Clone, PartialEq, Eq)]
struct PendingKey {
    accrual_changes: u64,
    registry_version: i64,
    runs: RunsKey,
}

/// The current registry version, the runs' key and the accrual generation, in one query.
fn state_key(tx: &mut dyn Sql) -> Result<(Option<i64>, RunsKey, u64)> {
    let generation = tx.accrual_generation_sql().unwrap_or("0");
    let rows = tx.query(
        &format!("SELECT (SELECT MAX(version) FROM registry_versions), COUNT(*), MAX(run_id), COUNT(posted_at), COUNT(cancelled_at), {generation} FROM settlement_runs"),
        &[],
    )?;
    let r = rows
        .first()
        .ok_or_else(|| SettleError::Store(StoreError::Corrupt("no state row".into())))?;
    let generation = match tx.accrual_generation_sql() {
        Some(_) => r[5].int()? as u64,
        None => suanli_store::accrual_changes(),
    };
    Ok((
        r[0].opt_int()?,
        RunsKey {
            runs: r[1].int()?,
            last_run: r[2].opt_int()?.unwrap_or(0),
            posted: r[3].int()?,
            cancelled: r[4].int()?,
        },
        generation,
    ))
}

/// The current registry version, its registry (cached), the runs' key and the accrual
/// generation.
fn cached_state(
    store: &mut dyn Store,
    cache: &mut PendingCache,
) -> Result<(i64, Arc<Registry>, RunsKey, u64)> {
    let (version, runs, generation) = in_tx(store, state_key)?;
    let version = version.ok_or_else(|| {
        SettleError::FailedPrecondition("no registry is loaded (suanli registry import)".into())
    })?;
    let registry = match &cache.registry {
        Some((v, r)) if *v == version => r.clone(),
        _ => {
            let r = in_tx(store, |tx| registry_of(tx, version))?;
            cache.registry = Some((version, r.clone()));
            r
        }
    };
    Ok((version, registry, runs, generation))
}

/// What posted runs paid each beneficiary, per programme; recomputed when the runs changed.
fn paid_by_beneficiary(
    store: &mut dyn Store,
    cache: &mut PendingCache,
    runs: RunsKey,
) -> Result<Paid> {
    if let Some((k, v)) = &cache.paid
        && *k == runs
    {
        return Ok(v.clone());
    }
    let rows = in_tx(store, |tx| Ok(rows::posted_totals_by_beneficiary(tx)?))?;
    let mut paid: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
    for (beneficiary, programme, amount) in rows {
        paid.entry(beneficiary)
            .or_default()
            .insert(programme, amount);
    }
    let paid = Arc::new(paid);
    cache.paid = Some((runs, paid.clone()));
    Ok(paid)
}

fn year_entitlements(
    store: &mut dyn Store,
    cache: &mut PendingCache,
    year: i32,
    current_version: i64,
    runs: RunsKey,
    accrual_changes: u64,
) -> Result<Entitled> {
    let key = PendingKey {
        accrual_changes,
        registry_version: current_version,
        runs,
    };
    if let Some((k, v)) = cache.years.get(&year)
        && *k == key
    {
        return Ok(v.clone());
    }
    let last = Period { year, month: 12 };
    let bases = bases_to(store, year, last)?;
    let totals = in_tx(store, |tx| {
        let versions = period_versions(tx, last, current_version)?;
        let mut registries = HashMap::new();
        for v in versions.values() {
            load_registry(tx, *v, &mut registries)?;
        }
        let mut totals: HashMap<(String, String), Fen> = HashMap::new();
        for statement in entitlements(&versions, &registries, &bases, last) {
            for l in statement.lines {
                let t = totals.entry((l.programme, l.key.beneficiary)).or_default();
                *t = t.plus(l.subsidy);
            }
        }
        Ok(totals)
    })?;
    let totals = Arc::new(totals);
    cache.years.insert(year, (key, totals.clone()));
    Ok(totals)
}

/// R12: per granted programme-year, cap, paid (posted), pending (entitlement to date of the
/// accruals under the current policy, less what is posted) and remaining.
pub fn balance(
    store: &mut dyn Store,
    cache: &mut PendingCache,
    beneficiary: &str,
    year: i32,
) -> Result<Vec<Balance>> {
    let (current_version, registry, runs, generation) = cached_state(store, cache)?;
    if registry.beneficiary(beneficiary).is_none() {
        return Err(SettleError::NotFound(format!(
            "beneficiary {beneficiary:?} is not in the current registry"
        )));
    }
    let entitled = year_entitlements(store, cache, year, current_version, runs, generation)?;
    let paid_all = paid_by_beneficiary(store, cache, runs)?;
    let no_payments = BTreeMap::new();
    let paid = paid_all.get(beneficiary).unwrap_or(&no_payments);
    let mut out = Vec::new();
    for p in registry
        .programmes_of_year(year)
        .filter(|p| registry.grant(beneficiary, &p.id).is_some())
    {
        let entitled = entitled
            .get(&(p.id.clone(), beneficiary.to_owned()))
            .copied()
            .unwrap_or_default();
        let paid = Fen(paid.get(&p.id).copied().unwrap_or(0));
        let pending = entitled.minus(paid).max(Fen::ZERO);
        let cap = registry.beneficiary_cap(p, beneficiary);
        let remaining = cap.map_or(Fen::ZERO, |c| c.minus(paid).minus(pending).max(Fen::ZERO));
        out.push(Balance {
            programme: p.id.clone(),
            year,
            cap,
            paid,
            pending,
            remaining,
        });
    }
    Ok(out)
}

/// A payee's position per programme, derived from the journal's payable and paid accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayeePosition {
    pub programme: String,
    pub posted: Fen,
    pub paid: Fen,
    pub outstanding: Fen,
}

pub fn payee(store: &mut dyn Store, payee: &str) -> Result<Vec<PayeePosition>> {
    in_tx(store, |tx| payee_positions(tx, payee))
}

fn payee_positions(tx: &mut dyn Sql, payee: &str) -> Result<Vec<PayeePosition>> {
    // The payee's own accounts only (`payable:P:payee`, `paid:P:payee` for every programme P
    // that has runs), found by the account index, never a scan of the whole journal.
    let mut accounts: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for r in tx.query(
        "SELECT DISTINCT programme FROM settlement_runs ORDER BY programme",
        &[],
    )? {
        let programme = r[0].text()?;
        accounts.insert(
            format!("payable:{programme}:{payee}"),
            (programme.clone(), true),
        );
        accounts.insert(format!("paid:{programme}:{payee}"), (programme, false));
    }
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=accounts.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT e.account, j.kind, CAST(SUM(e.credit_fen) AS BIGINT), CAST(SUM(e.debit_fen) AS BIGINT) \
         FROM journal_entries e JOIN journals j ON j.journal_id = e.journal_id \
         WHERE e.account IN ({}) GROUP BY e.account, j.kind",
        placeholders.join(", ")
    );
    let params: Vec<Value> = accounts.keys().map(|a| a.as_str().into()).collect();
    let mut by_programme: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in tx.query(&sql, &params)? {
        let account = r[0].text()?;
        let kind = r[1].text()?;
        let net = r[2].int()? - r[3].int()?;
        let Some((programme, payable)) = accounts.get(&account) else {
            continue;
        };
        let slot = by_programme.entry(programme.clone()).or_default();
        // A payable grows by run journals (payments move it to paid); paid by payments.
        match (payable, kind.as_str()) {
            (true, "run") => slot.0 += net,
            (false, _) => slot.1 += net,
            _ => {}
        }
    }
    Ok(by_programme
        .into_iter()
        .map(|(programme, (posted, paid))| PayeePosition {
            programme,
            posted: Fen(posted),
            paid: Fen(paid),
            outstanding: Fen(posted - paid),
        })
        .collect())
}

/// `ledger record-payment`: moves `amount` of a payee's payable to paid. Idempotent by
/// reference: the same reference with the same content is a duplicate; with other content, an
/// error.
pub fn record_payment(
    store: &mut dyn Store,
    programme: Option<&str>,
    payee: &str,
    amount: Fen,
    reference: &str,
    who: &Actor,
) -> Result<(i64, bool, Fen)> {
    if amount.0 <= 0 {
        return Err(SettleError::InvalidArgument(format!(
            "amount {amount} must be positive"
        )));
    }
    if reference.trim().is_empty() {
        return Err(SettleError::InvalidArgument(
            "reference is empty; it makes a payment idempotent".into(),
        ));
    }
    settlement_tx(store, |tx| {
        let positions = payee_positions(tx, payee)?;
        let programme = match programme {
            Some(p) if !p.is_empty() => p.to_owned(),
            _ => {
                let owed: Vec<&PayeePosition> =
                    positions.iter().filter(|p| p.outstanding.0 > 0).collect();
                match owed.as_slice() {
                    [one] => one.programme.clone(),
                    [] => {
                        return Err(SettleError::FailedPrecondition(format!(
                            "nothing is owed to payee {payee:?}"
                        )));
                    }
                    _ => {
                        return Err(SettleError::InvalidArgument(format!(
                            "payee {payee:?} is owed by several programmes; name one with --programme"
                        )));
                    }
                }
            }
        };
        let journal = Journal::new(vec![
            Entry::signed(
                Account::Payable {
                    programme: programme.clone(),
                    payee: payee.to_owned(),
                },
                amount,
            ),
            Entry::signed(
                Account::Paid {
                    programme: programme.clone(),
                    payee: payee.to_owned(),
                },
                Fen(-amount.0),
            ),
        ])
        .expect("a two-sided payment balances");
        let entries = entry_rows(&journal);
        if let Some(existing) = rows::journal_by_reference(tx, "payment", reference)? {
            if existing.entries == entries {
                let outstanding = positions
                    .iter()
                    .find(|p| p.programme == programme)
                    .map_or(Fen::ZERO, |p| p.outstanding);
                return Ok((existing.journal_id, true, outstanding));
            }
            return Err(SettleError::AlreadyExists(format!(
                "payment reference {reference:?} was already used for a different payment (journal {})",
                existing.journal_id
            )));
        }
        let outstanding = positions
            .iter()
            .find(|p| p.programme == programme)
            .map_or(Fen::ZERO, |p| p.outstanding);
        if amount > outstanding {
            return Err(SettleError::FailedPrecondition(format!(
                "payment {amount} to {payee} exceeds the {outstanding} owed by {programme}"
            )));
        }
        let id = rows::insert_journal(
            tx,
            "payment",
            reference,
            &format!("payment to {payee} by {programme}"),
            &who.actor,
            &now(),
            &entries,
        )?;
        who.record(
            tx,
            "payment",
            &format!("journal:{id}"),
            &[
                &id.to_string(),
                reference,
                &programme,
                payee,
                &amount.0.to_string(),
            ],
        )?;
        Ok((id, false, outstanding.minus(amount)))
    })
}

pub fn journals(store: &mut dyn Store) -> Result<Vec<rows::JournalRow>> {
    in_tx(store, |tx| Ok(rows::journals(tx, None)?))
}

pub fn trial_balance(store: &mut dyn Store) -> Result<Vec<(String, i64, i64)>> {
    in_tx(store, |tx| Ok(rows::account_totals(tx)?))
}

/// The columns of a run's statement export: `suanli simulate`'s statement columns, then
/// `run_id` and `original_period` (set on adjustment lines only). Shared by `settle export`
/// and the web console's statement downloads.
pub const RUN_STATEMENT_HEADER: [&str; 13] = {
    let mut header = [""; 13];
    let mut i = 0;
    while i < suanli_domain::settlement::STATEMENT_HEADER.len() {
        header[i] = suanli_domain::settlement::STATEMENT_HEADER[i];
        i += 1;
    }
    header[11] = "run_id";
    header[12] = "original_period";
    header
};

/// One line of a run as a statement record in [`RUN_STATEMENT_HEADER`] order; `subsidy` is
/// what the run posts.
pub fn run_statement_record(run: &RunRow, l: &RunLineRow) -> [String; 13] {
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
    ]
}

/// The posted runs' lines that `keep` selects, as statement records, in run then line order:
/// a beneficiary's or a provider's statement.
pub fn posted_statement(
    store: &mut dyn Store,
    year: Option<i32>,
    keep: impl Fn(&RunLineRow) -> bool,
) -> Result<Vec<[String; 13]>> {
    in_tx(store, |tx| {
        let mut out = Vec::new();
        for run in rows::runs(tx, None)? {
            if run.status != "posted"
                || year.is_some_and(|y| !run.period.starts_with(&format!("{y:04}-")))
            {
                continue;
            }
            for l in rows::run_lines(tx, run.run_id)? {
                if keep(&l) {
                    out.push(run_statement_record(&run, &l));
                }
            }
        }
        Ok(out)
    })
}

/// Subsidy posted to a beneficiary per month (the month each line is for, its original period)
/// of `year`, per programme: index 0 is January.
pub fn monthly_posted(
    store: &mut dyn Store,
    beneficiary: &str,
    year: i32,
) -> Result<BTreeMap<String, [Fen; 12]>> {
    in_tx(store, |tx| {
        let mut out: BTreeMap<String, [Fen; 12]> = BTreeMap::new();
        for run in rows::runs(tx, None)? {
            if run.status != "posted" {
                continue;
            }
            for l in rows::run_lines(tx, run.run_id)? {
                if l.key.beneficiary != beneficiary {
                    continue;
                }
                let Some(p) = Period::parse(&l.original_period).filter(|p| p.year == year) else {
                    continue;
                };
                let slot = &mut out.entry(run.programme.clone()).or_insert([Fen::ZERO; 12])
                    [(p.month.saturating_sub(1) as usize).min(11)];
                *slot = slot.plus(Fen(l.amount_fen));
            }
        }
        Ok(out)
    })
}

/// Share of a cap at or above which a beneficiary is "near" it, in per mille (90%).
pub const NEAR_CAP_PER_MILLE: i64 = 900;

/// A programme-year's pool and its beneficiaries' positions against their caps (R8, R12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgrammeOverview {
    pub programme: String,
    pub name: String,
    pub year: i32,
    pub pool: Option<Fen>,
    /// Posted by runs of this programme.
    pub paid: Fen,
    /// Entitlement to date under the current policy, less what is posted (floored per
    /// beneficiary at zero), as in the balance (R12).
    pub pending: Fen,
    /// pool − paid − pending, floored at zero; zero without a pool.
    pub left: Fen,
    /// Posted per month of the year (the month each line is for); index 0 is January.
    pub monthly_paid: [Fen; 12],
    /// Granted beneficiaries with a cap.
    pub capped: usize,
    /// Paid + pending at or above [`NEAR_CAP_PER_MILLE`] of the cap, but below it.
    pub near_cap: usize,
    /// Paid + pending at or above the cap.
    pub at_cap: usize,
}

/// Every programme of `year` in the current registry, with its pool and cap positions.
pub fn programme_overview(
    store: &mut dyn Store,
    cache: &mut PendingCache,
    year: i32,
) -> Result<Vec<ProgrammeOverview>> {
    let (current_version, registry, runs, generation) = cached_state(store, cache)?;
    let entitled = year_entitlements(store, cache, year, current_version, runs, generation)?;
    let mut out = Vec::new();
    for p in registry.programmes_of_year(year) {
        let posted = in_tx(store, |tx| Ok(rows::posted_lines(tx, &p.id)?))?;
        let mut paid_by: HashMap<String, Fen> = HashMap::new();
        let mut monthly_paid = [Fen::ZERO; 12];
        for (period, key, amount) in &posted {
            let slot = paid_by.entry(key.beneficiary.clone()).or_default();
            *slot = slot.plus(Fen(*amount));
            if let Some(period) = Period::parse(period).filter(|q| q.year == year) {
                let m = &mut monthly_paid[(period.month.saturating_sub(1) as usize).min(11)];
                *m = m.plus(Fen(*amount));
            }
        }
        let paid: Fen = paid_by.values().copied().sum();
        let mut pending = Fen::ZERO;
        for ((programme, beneficiary), e) in entitled.iter() {
            if *programme == p.id {
                let own = paid_by.get(beneficiary).copied().unwrap_or_default();
                pending = pending.plus(e.minus(own).max(Fen::ZERO));
            }
        }
        let (mut capped, mut near_cap, mut at_cap) = (0, 0, 0);
        for g in registry.grants.iter().filter(|g| g.programme == p.id) {
            let Some(cap) = registry.beneficiary_cap(p, &g.beneficiary) else {
                continue;
            };
            capped += 1;
            let own_paid = paid_by.get(&g.beneficiary).copied().unwrap_or_default();
            let own_entitled = entitled
                .get(&(p.id.clone(), g.beneficiary.clone()))
                .copied()
                .unwrap_or_default();
            let used = own_paid.max(own_entitled);
            if used >= cap {
                at_cap += 1;
            } else if i128::from(used.0) * 1000
                >= i128::from(cap.0) * i128::from(NEAR_CAP_PER_MILLE)
            {
                near_cap += 1;
            }
        }
        let left = p.pool.map_or(Fen::ZERO, |pool| {
            pool.minus(paid).minus(pending).max(Fen::ZERO)
        });
        out.push(ProgrammeOverview {
            programme: p.id.clone(),
            name: p.name.clone(),
            year,
            pool: p.pool,
            paid,
            pending,
            left,
            monthly_paid,
            capped,
            near_cap,
            at_cap,
        });
    }
    Ok(out)
}

/// The fiscal years of the current registry's programmes, newest first.
pub fn registry_years(store: &mut dyn Store) -> Result<Vec<i32>> {
    let (_, registry) = current_registry(store)?;
    let years: BTreeSet<i32> = registry.programmes.iter().map(|p| p.year).collect();
    Ok(years.into_iter().rev().collect())
}

/// The ids of the current registry's beneficiaries and providers (for pickers and checks).
pub fn registry_parties(store: &mut dyn Store) -> Result<(Vec<String>, Vec<String>)> {
    let (_, registry) = current_registry(store)?;
    Ok((
        registry
            .beneficiaries
            .iter()
            .map(|b| b.id.clone())
            .collect(),
        registry.providers.iter().map(|p| p.id.clone()).collect(),
    ))
}
