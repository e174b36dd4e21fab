//! Balances and overviews (docs/rules.md R12 and "The words for money"): a beneficiary's cap,
//! entitled, settled, paid out, pending and remaining per programme-year, what was settled
//! month by month, and each programme's totals for the finance overview. Look-ups are cached
//! and recomputed only when what they derive from changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_domain::usage::Period;
use suanli_store::sql::Sql;
use suanli_store::{
    AccrualChanges, AccrualDeltas, AccrualFeed, AccrualMark, Reader, Store, StoreError,
};

use suanli_domain::settlement::Prior;

use crate::maintained::{Accruals, Dirty, Entitled, MaintainedYear, Scope};
use crate::posted::PostedBook;
use crate::registry::{load_registry, registry_of};
use crate::settlement::{
    Result, SettleError, Transact, bases_to, entitlements, in_tx, period_versions,
};
use rustc_hash::FxHashMap;

/// What balance look-ups read from: the store itself (on the writer thread), or a
/// [`BalanceReader`] beside the writer.
pub trait Source: Transact {
    /// As [`Store::accrual_changes_since`]: the accrual changes since `since`, or every total.
    /// `position`: the database's accrual position (on PostgreSQL the newest `ingest_log` seq)
    /// if the caller read it with the state its look-up began with, so that it is not read
    /// again.
    fn accrual_changes(
        &mut self,
        since: Option<AccrualMark>,
        position: Option<i64>,
    ) -> Result<AccrualUpdate>;
}

/// What a reader of accruals takes in: changes or every total as rows, or the deltas of the
/// writer's change log by the store's ids (named once each, not every time they change).
pub enum AccrualUpdate {
    Rows(AccrualChanges),
    Deltas(AccrualDeltas),
}

impl Source for dyn Store + '_ {
    /// The store's own log knows its position: `position` is not needed.
    fn accrual_changes(
        &mut self,
        since: Option<AccrualMark>,
        _position: Option<i64>,
    ) -> Result<AccrualUpdate> {
        Ok(AccrualUpdate::Rows(self.accrual_changes_since(since)?))
    }
}

/// One programme-year of a beneficiary's balance (R12), in the words of docs/rules.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balance {
    pub programme: String,
    pub year: i32,
    pub cap: Option<Fen>,
    /// 应享: the entitlement to date under the current policy, opening balances included.
    pub entitled: Fen,
    /// 已结算: posted to the ledger by settlement runs, opening balances included.
    pub settled: Fen,
    /// entitled − settled. Negative when more was settled than is now entitled: the amount
    /// the next run claws back (owed back by the payee of the lines).
    pub pending: Fen,
    /// max(0, cap − settled − max(pending, 0)); zero without a cap.
    pub remaining: Fen,
    /// 已拨付: of what was settled, per payee (the beneficiary itself first, then providers
    /// paid on its behalf by id), what payments recorded have paid out.
    pub paid_out: Vec<PaidOut>,
}

impl Balance {
    /// Paid out to the beneficiary itself (reimbursement).
    pub fn paid_out_to_beneficiary(&self) -> Fen {
        self.paid_out
            .iter()
            .filter(|p| p.to_beneficiary)
            .map(|p| p.paid_out)
            .sum()
    }

    /// Paid out to providers on the beneficiary's behalf (quick redemption).
    pub fn paid_out_to_providers(&self) -> Fen {
        self.paid_out
            .iter()
            .filter(|p| !p.to_beneficiary)
            .map(|p| p.paid_out)
            .sum()
    }

    /// What the next run claws back: max(0, settled − entitled).
    pub fn owed_back(&self) -> Fen {
        Fen::ZERO.minus(self.pending).max(Fen::ZERO)
    }
}

/// What was settled for a beneficiary under one programme with one payee, and how much of it
/// payments recorded have paid out (docs/rules.md, "Paid out").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaidOut {
    pub payee: String,
    /// The payee is the beneficiary itself; otherwise a provider paid on its behalf.
    pub to_beneficiary: bool,
    pub settled: Fen,
    pub paid_out: Fen,
}

/// What balance look-ups derive from the database, kept current by what changed since the
/// last look-up: the accrual totals and each fiscal year's entitlement to date, maintained
/// change by change ([`crate::maintained`]); what posted runs settled and payments paid out,
/// each posted run and payment added once ([`PostedBook`]); the registries in use. Every look-up first
/// reads what changed since the last one (the state's version numbers, the accrual changes),
/// so it sees every commit acknowledged before it began.
#[derive(Default)]
pub struct PendingCache {
    registry: Option<(i64, Arc<Registry>)>,
    accruals: Accruals,
    years: HashMap<i32, MaintainedYear>,
    /// Keys changed since each maintained year last caught up, per month index.
    dirty: HashMap<i32, Dirty>,
    registries: HashMap<i64, Arc<Registry>>,
    /// Each year's registry version per month, for (current version, runs).
    versions: HashMap<i32, ((i64, RunsKey), Vec<i64>)>,
    opening: Option<(i64, Arc<Prior>, Opening)>,
    /// What posted runs settled and payments paid out, and the state it was brought up to
    /// date for.
    book: PostedBook,
    book_state: Option<(RunsKey, JournalsMark)>,
    /// The finance overview per year, kept current change by change.
    overviews: HashMap<i32, OverviewCache>,
    /// The years whose overview was asked for: [`BalanceReader::refresh_posted`] prepares
    /// theirs again after a post.
    overview_years: std::collections::BTreeSet<i32>,
    /// Changed pairs at most that a catch-up replaces in a kept overview at once (`None`:
    /// [`OVERVIEW_KEPT_MAX`]).
    overview_kept_max: Option<usize>,
    /// Within a batch of look-ups that all began before it ([`BalanceReader::begin_batch`]):
    /// the state read once for all of them, their accruals already followed.
    batch: Option<State>,
    /// The accrual position read with the state of the look-up under way, until its
    /// accruals are followed.
    position: Option<i64>,
}

/// Confirmed opening balances per (beneficiary, programme).
type Opening = Arc<BTreeMap<(String, String), Fen>>;

/// Changes whenever a run is created, posted or cancelled (approval changes no amount), or
/// opening balances are confirmed.
#[derive(Clone, Copy, PartialEq, Eq)]
struct RunsKey {
    runs: i64,
    last_run: i64,
    posted: i64,
    cancelled: i64,
    openings: i64,
}

/// What a look-up reads first: the current registry version, the runs' key, the journals'
/// mark (count, last id) and, on PostgreSQL, the accrual position (the newest `ingest_log`
/// seq).
#[derive(Clone, Copy)]
struct State {
    version: Option<i64>,
    runs: RunsKey,
    journals: JournalsMark,
    position: Option<i64>,
}

/// The last journal's id (0 before any). Journals are only ever added, each under the
/// settlement lock (an advisory lock on PostgreSQL, held to the commit), so their ids commit
/// in order and the last id changes exactly when a journal is added. Counting them instead
/// read every journal: at a year of a city's payments (1,200,000 journals) 63-75 ms on
/// PostgreSQL for every look-up.
type JournalsMark = i64;

/// The state, in one query (one round trip on PostgreSQL).
fn state_key<S: Transact + ?Sized>(store: &mut S) -> Result<State> {
    // One statement, so one snapshot: alone on a reader, one round trip on PostgreSQL.
    let rows = store.query_ints(
        "SELECT (SELECT MAX(version) FROM registry_versions), COUNT(*), MAX(run_id), \
         COUNT(posted_at), COUNT(cancelled_at), \
         (SELECT COUNT(*) FROM opening_imports WHERE status = 'confirmed'), \
         (SELECT MAX(journal_id) FROM journals), \
         {position} FROM settlement_runs",
    )?;
    let corrupt = |what: &str| SettleError::Store(StoreError::Corrupt(what.into()));
    let r = rows.first().ok_or_else(|| corrupt("no state row"))?;
    let [
        version,
        runs,
        last_run,
        posted,
        cancelled,
        openings,
        last_journal,
        position,
    ] = r[..]
    else {
        return Err(corrupt("a state row of another width"));
    };
    let count = |v: Option<i64>| v.ok_or_else(|| corrupt("a NULL count in the state row"));
    Ok(State {
        version,
        runs: RunsKey {
            runs: count(runs)?,
            last_run: last_run.unwrap_or(0),
            posted: count(posted)?,
            cancelled: count(cancelled)?,
            openings: count(openings)?,
        },
        journals: last_journal.unwrap_or(0),
        position,
    })
}

/// The state: read, or the batch's. A state read here is also kept for the look-up's
/// [`follow_accruals`], which takes its accrual position once.
fn state_of<S: Source + ?Sized>(store: &mut S, cache: &mut PendingCache) -> Result<State> {
    match cache.batch {
        Some(state) => Ok(state),
        None => {
            let state = state_key(store)?;
            cache.position = state.position;
            Ok(state)
        }
    }
}

/// The current registry version, its registry (cached), the runs' key and the journals' mark.
fn cached_state<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
) -> Result<(i64, Arc<Registry>, RunsKey, JournalsMark)> {
    let State {
        version,
        runs,
        journals,
        ..
    } = state_of(store, cache)?;
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
    Ok((version, registry, runs, journals))
}

/// Applies the accrual changes since the cache's mark to its accrual totals, noting the keys
/// each maintained year must catch up on (or, after a complete read, dropping the years).
fn follow_accruals<S: Source + ?Sized>(store: &mut S, cache: &mut PendingCache) -> Result<()> {
    if cache.batch.is_some() {
        // Followed when the batch began, after each of its look-ups did.
        return Ok(());
    }
    // The position read with this look-up's state, once: a later follow reads its own.
    match store.accrual_changes(cache.accruals.mark, cache.position.take())? {
        AccrualUpdate::Rows(changes) => {
            if cache.accruals.apply(changes, &mut cache.dirty)? {
                cache.years.clear();
                cache.dirty.clear();
            }
        }
        AccrualUpdate::Deltas(deltas) => cache.accruals.apply_deltas(deltas, &mut cache.dirty)?,
    }
    Ok(())
}

/// The year's maintained entitlements, caught up with every change since the last look-up,
/// and the confirmed opening balances.
fn maintained_year<'c, S: Source + ?Sized>(
    store: &mut S,
    cache: &'c mut PendingCache,
    year: i32,
    current_version: i64,
    runs: RunsKey,
    scope: Scope<'_>,
) -> Result<(Entitled<'c>, Opening)> {
    follow_accruals(store, cache)?;
    let key = (current_version, runs);
    let versions = match cache.versions.get(&year) {
        Some((k, v)) if *k == key => v.clone(),
        _ => {
            let registries = &mut cache.registries;
            let versions = in_tx(store, |tx| {
                let versions = period_versions(tx, Period { year, month: 12 }, current_version)?;
                for v in versions.values() {
                    load_registry(tx, *v, registries)?;
                }
                Ok(versions.into_values().collect::<Vec<i64>>())
            })?;
            cache.versions.insert(year, (key, versions.clone()));
            let used: HashSet<i64> = cache
                .versions
                .values()
                .flat_map(|(_, v)| v.iter().copied())
                .collect();
            cache.registries.retain(|v, _| used.contains(v));
            versions
        }
    };
    let (prior, opening) = match &cache.opening {
        Some((n, prior, paid)) if *n == runs.openings => (prior.clone(), paid.clone()),
        _ => {
            let (prior, paid) = in_tx(store, |tx| {
                Ok((
                    crate::opening::opening_prior(tx, None)?,
                    crate::opening::opening_paid(tx)?,
                ))
            })?;
            let (prior, paid) = (Arc::new(prior), Arc::new(paid));
            cache.opening = Some((runs.openings, prior.clone(), paid.clone()));
            (prior, paid)
        }
    };
    let rebuild = cache
        .years
        .get(&year)
        .is_none_or(|y| y.versions != versions || y.openings != runs.openings);
    if rebuild {
        cache.dirty.insert(year, Dirty::default());
        let y = MaintainedYear::build(
            year,
            versions,
            runs.openings,
            prior,
            &cache.registries,
            &cache.accruals,
        );
        cache.years.insert(year, y);
    } else {
        let dirty = cache.dirty.entry(year).or_default();
        let y = cache.years.get_mut(&year).expect("checked above");
        y.catch_up_waiting(&cache.registries, &cache.accruals, dirty, scope);
        keep_overview(cache, year, (current_version, runs), &opening);
    }
    Ok((cache.years[&year].with(&cache.accruals), opening))
}

/// Entitlement to date per (programme, beneficiary) of `year`, opening balances included, as
/// balances use it: the maintained figures.
pub fn entitlements_to_date<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
    year: i32,
) -> Result<HashMap<(String, String), Fen>> {
    let (current_version, _, runs, _) = cached_state(store, cache)?;
    let (y, opening) = maintained_year(store, cache, year, current_version, runs, Scope::All)?;
    let mut out: HashMap<(String, String), Fen> = y
        .entitled_all()
        .map(|(p, b, e)| ((p.to_owned(), b.to_owned()), e))
        .collect();
    for ((beneficiary, programme), amount) in opening.iter() {
        let t = out
            .entry((programme.clone(), beneficiary.clone()))
            .or_default();
        *t = t.plus(*amount);
    }
    Ok(out)
}

/// [`entitlements_to_date`] recomputed from every accrual of the year with
/// `domain::restatement`: what the maintained figures must equal to the fen.
pub fn entitlements_recomputed(
    store: &mut dyn Store,
    year: i32,
) -> Result<HashMap<(String, String), Fen>> {
    let current_version = state_key(store)?.version.ok_or_else(|| {
        SettleError::FailedPrecondition("no registry is loaded (suanli registry import)".into())
    })?;
    let last = Period { year, month: 12 };
    let bases = bases_to(store, year, last)?;
    in_tx(store, |tx| {
        let versions = period_versions(tx, last, current_version)?;
        let opening = crate::opening::opening_prior(tx, None)?;
        let mut registries = HashMap::new();
        for v in versions.values() {
            load_registry(tx, *v, &mut registries)?;
        }
        let mut totals: HashMap<(String, String), Fen> = HashMap::new();
        for statement in entitlements(&versions, &registries, &bases, last, &opening) {
            for l in statement.lines {
                let t = totals.entry((l.programme, l.key.beneficiary)).or_default();
                *t = t.plus(l.subsidy);
            }
        }
        // Opening balances are paid and entitled alike, so that entitled − paid stays what
        // runs have yet to post.
        for ((beneficiary, programme), amount) in crate::opening::opening_paid(tx)? {
            let t = totals.entry((programme, beneficiary)).or_default();
            *t = t.plus(amount);
        }
        Ok(totals)
    })
}

/// What posted runs settled and payments paid out, brought up to date with the runs, the
/// openings and the journals of the look-up's state: only what was posted or paid since the
/// last look-up is read ([`PostedBook`]).
fn book<'c, S: Source + ?Sized>(
    store: &mut S,
    cache: &'c mut PendingCache,
    runs: RunsKey,
    journals: JournalsMark,
) -> Result<&'c mut PostedBook> {
    if cache.book_state != Some((runs, journals)) {
        let book = &mut cache.book;
        // The book's state is read in the same snapshot as what it adds, so a run or journal
        // committed since the look-up's state was read is added too; the next look-up's
        // state then differs and the book finds nothing more to add.
        in_tx(store, |tx| book.update(tx, runs.openings))?;
        cache.book_state = Some((runs, journals));
    }
    Ok(&mut cache.book)
}

/// R12: per granted programme-year, cap, entitled (the entitlement to date of the accruals
/// under the current policy), settled, pending (entitled − settled, negative for a claw-back to
/// come), remaining, and what was paid out to whom.
pub fn balance<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
    beneficiary: &str,
    year: i32,
) -> Result<Vec<Balance>> {
    let (current_version, registry, runs, journals) = cached_state(store, cache)?;
    if registry.beneficiary(beneficiary).is_none() {
        return Err(SettleError::NotFound(format!(
            "beneficiary {beneficiary:?} is not in the current registry"
        )));
    }
    let granted: Vec<&suanli_domain::registry::Programme> = registry
        .programmes_of_year(year)
        .filter(|p| registry.grant(beneficiary, &p.id).is_some())
        .collect();
    let book = book(store, cache, runs, journals)?;
    let posted = book.posted();
    let mut paid_out: Vec<Vec<PaidOut>> = granted
        .iter()
        .map(|p| book.paid_out(beneficiary, &p.id))
        .collect();
    // This beneficiary's figures only: while no shared limit can bind, they depend on its
    // own changed lines alone, and the others wait for the balance thread's next slice.
    let (entitled, opening) = maintained_year(
        store,
        cache,
        year,
        current_version,
        runs,
        Scope::Beneficiary(beneficiary),
    )?;
    let mut out = Vec::new();
    for (p, paid_out) in granted.into_iter().zip(paid_out.iter_mut()) {
        let opening = opening
            .get(&(beneficiary.to_owned(), p.id.clone()))
            .copied()
            .unwrap_or_default();
        let entitled = entitled.entitled(&p.id, beneficiary).plus(opening);
        // Settled: what posted runs settled for it (all periods) and its opening balance.
        let settled = posted
            .by_programme
            .get(&p.id)
            .and_then(|(by_beneficiary, _)| by_beneficiary.get(beneficiary))
            .copied()
            .unwrap_or_default()
            .plus(opening);
        let pending = entitled.minus(settled);
        let cap = registry.beneficiary_cap(p, beneficiary);
        let remaining = cap.map_or(Fen::ZERO, |c| {
            c.minus(settled)
                .minus(pending.max(Fen::ZERO))
                .max(Fen::ZERO)
        });
        out.push(Balance {
            programme: p.id.clone(),
            year,
            cap,
            entitled,
            settled,
            pending,
            remaining,
            paid_out: std::mem::take(paid_out),
        });
    }
    Ok(out)
}

/// Subsidy settled for a beneficiary per month (the month each line is for, its original
/// period) of `year`, per programme: index 0 is January. From the posted sums the balance
/// figures keep ([`PostedBook`]).
pub fn monthly_settled<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
    beneficiary: &str,
    year: i32,
) -> Result<BTreeMap<String, [Fen; 12]>> {
    let State { runs, journals, .. } = state_of(store, cache)?;
    let posted = book(store, cache, runs, journals)?.posted();
    let mut out: BTreeMap<String, [Fen; 12]> = BTreeMap::new();
    for (programme, periods) in posted.by_beneficiary.get(beneficiary).into_iter().flatten() {
        for (period, amount) in periods.iter().filter(|(p, _)| p.year == year) {
            let slot = &mut out.entry(programme.clone()).or_insert([Fen::ZERO; 12])
                [(period.month.saturating_sub(1) as usize).min(11)];
            *slot = slot.plus(*amount);
        }
    }
    Ok(out)
}

/// Share of a cap at or above which a beneficiary is "near" it, in per mille (90%).
pub const NEAR_CAP_PER_MILLE: i64 = 900;

/// A programme-year's pool and its beneficiaries' positions against their caps (R8, R12), in
/// the words of docs/rules.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgrammeOverview {
    pub programme: String,
    pub name: String,
    pub year: i32,
    pub pool: Option<Fen>,
    /// 应享: the entitlement to date of its beneficiaries under the current policy, opening
    /// balances included.
    pub entitled: Fen,
    /// 已结算: posted by runs of this programme, with its confirmed opening balances.
    pub settled: Fen,
    /// 已拨付: what payments recorded (and opening balances) paid out to its payees.
    pub paid_out: Fen,
    /// entitled − settled (negative parts of beneficiaries included, see `owed_back`).
    pub pending: Fen,
    /// Σ over beneficiaries of max(0, settled − entitled): what the next runs claw back.
    pub owed_back: Fen,
    /// pool − settled − Σ over beneficiaries of max(0, pending), floored at zero (that is
    /// pool − settled − (pending + owed_back)); zero without a pool.
    pub left: Fen,
    /// Settled per month of the year (the month each line is for); index 0 is January.
    pub monthly_settled: [Fen; 12],
    /// Granted beneficiaries with a cap.
    pub capped: usize,
    /// The larger of settled and entitled at or above [`NEAR_CAP_PER_MILLE`] of the cap, but
    /// below it.
    pub near_cap: usize,
    /// The larger of settled and entitled at or above the cap.
    pub at_cap: usize,
}

/// One beneficiary's part of a programme's overview: its entitlement (opening balances
/// included), what it owes back, and where it stands against its cap.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Part {
    entitled: Fen,
    owed_back: Fen,
    cap: Option<CapState>,
}

impl Part {
    fn of(entitled: Fen, settled: Fen, cap: Option<Fen>) -> Part {
        Part {
            entitled,
            owed_back: settled.minus(entitled).max(Fen::ZERO),
            cap: cap.map(|cap| CapState::of(settled.max(entitled), cap)),
        }
    }
}

/// A programme's overview kept current: the sums of its beneficiaries' [`Part`]s, each part
/// kept so that a changed entitlement replaces only its own.
struct OverviewSums {
    programme: String,
    settled_by: FxHashMap<String, Fen>,
    /// The cap of each granted beneficiary with one.
    caps: FxHashMap<String, Fen>,
    parts: FxHashMap<String, Part>,
    entitled: Fen,
    owed_back: Fen,
    near_cap: usize,
    at_cap: usize,
    settled: Fen,
    monthly_settled: [Fen; 12],
}

impl OverviewSums {
    /// Adds `part` to the sums, or takes it out of them.
    fn add(&mut self, part: Part, take_out: bool) {
        let signed = |f: Fen| if take_out { Fen::ZERO.minus(f) } else { f };
        self.entitled = self.entitled.plus(signed(part.entitled));
        self.owed_back = self.owed_back.plus(signed(part.owed_back));
        let count = match part.cap {
            Some(CapState::Near) => &mut self.near_cap,
            Some(CapState::At) => &mut self.at_cap,
            _ => return,
        };
        *count = if take_out { *count - 1 } else { *count + 1 };
    }

    /// Replaces `beneficiary`'s part with the one of its entitlement now.
    fn update(&mut self, beneficiary: &str, entitled: Fen) {
        let settled = self
            .settled_by
            .get(beneficiary)
            .copied()
            .unwrap_or_default();
        let part = Part::of(entitled, settled, self.caps.get(beneficiary).copied());
        let old = self.parts.get(beneficiary).copied().unwrap_or_default();
        if old == part {
            return;
        }
        self.add(old, true);
        self.add(part, false);
        match self.parts.get_mut(beneficiary) {
            Some(slot) => *slot = part,
            None => {
                self.parts.insert(beneficiary.to_owned(), part);
            }
        }
    }
}

/// The finance overview of a year, kept while the maintained year (its generation), the
/// registry version and the runs stay the same: a look-at after ingest recomputes only the
/// beneficiaries whose entitlement changed.
struct OverviewCache {
    key: (u64, i64, RunsKey),
    programmes: Vec<OverviewSums>,
}

/// Entitlement of `programme` for `beneficiary`, opening balances included.
fn entitled_of(
    maintained: Entitled<'_>,
    opening: &Opening,
    programme: &str,
    beneficiary: &str,
) -> Fen {
    let opening = if opening.is_empty() {
        Fen::ZERO
    } else {
        opening
            .get(&(beneficiary.to_owned(), programme.to_owned()))
            .copied()
            .unwrap_or_default()
    };
    maintained.entitled(programme, beneficiary).plus(opening)
}

impl PendingCache {
    /// Lowers how many changed pairs a catch-up replaces in the kept overview at once (the
    /// rest waits for the overview's next request), so that tests reach both ways.
    #[doc(hidden)]
    pub fn keep_overview_at_most(&mut self, pairs: usize) {
        self.overview_kept_max = Some(pairs);
    }
}

/// Changed pairs at most that a catch-up replaces in the kept overview at once.
const OVERVIEW_KEPT_MAX: usize = 10_000;

/// After a catch-up: replaces the kept overview's parts of the pairs whose entitlement
/// changed, so that the overview is current whenever it is asked for and its cost is spread
/// over the catch-ups (a few sums per changed pair), not paid by one request. An overview
/// kept for another registry version or other runs is dropped (the next request builds it).
fn keep_overview(cache: &mut PendingCache, year: i32, state: (i64, RunsKey), opening: &Opening) {
    let Some(maintained) = cache.years.get_mut(&year) else {
        return;
    };
    let key = (maintained.generation(), state.0, state.1);
    match cache.overviews.get_mut(&year) {
        // Many pairs changed (a binding pool moves every line each time): the overview's next
        // request replaces them once, rather than every look-up until then.
        Some(kept)
            if kept.key == key
                && maintained.changed_len()
                    > cache.overview_kept_max.unwrap_or(OVERVIEW_KEPT_MAX) => {}
        Some(kept) if kept.key == key => {
            let changed = maintained.take_changed(&cache.accruals);
            kept.replace_parts(&changed, cache.years[&year].with(&cache.accruals), opening);
        }
        Some(_) => {
            cache.overviews.remove(&year);
            maintained.forget_changes();
        }
        None => {}
    }
}

impl OverviewCache {
    /// Replaces the parts of the (programme, beneficiary) pairs in `changed` with the ones of
    /// their entitlement now.
    fn replace_parts(
        &mut self,
        changed: &HashMap<String, Vec<Arc<str>>>,
        maintained: Entitled<'_>,
        opening: &Opening,
    ) {
        for sums in &mut self.programmes {
            for beneficiary in changed.get(&sums.programme).into_iter().flatten() {
                let entitled = entitled_of(maintained, opening, &sums.programme, beneficiary);
                sums.update(beneficiary, entitled);
            }
        }
    }
}

/// Every programme of `year` in the current registry, with its pool and cap positions.
pub fn programme_overview<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
    year: i32,
) -> Result<Vec<ProgrammeOverview>> {
    let (current_version, registry, runs, journals) = cached_state(store, cache)?;
    let book = book(store, cache, runs, journals)?;
    let posted = book.posted();
    let paid_out: HashMap<String, Fen> = registry
        .programmes_of_year(year)
        .map(|p| (p.id.clone(), book.paid_out_of_programme(&p.id)))
        .collect();
    let (_, opening) = maintained_year(store, cache, year, current_version, runs, Scope::All)?;
    let maintained = &cache.years[&year];
    let key = (maintained.generation(), current_version, runs);
    match cache.overviews.get_mut(&year) {
        // Kept current by the catch-ups since (`keep_overview`), but for the pairs they left.
        Some(kept) if kept.key == key => {
            let maintained = cache.years.get_mut(&year).expect("maintained above");
            let changed = maintained.take_changed(&cache.accruals);
            kept.replace_parts(&changed, cache.years[&year].with(&cache.accruals), &opening);
        }
        _ => {
            let maintained = cache.years[&year].with(&cache.accruals);
            let mut programmes = Vec::new();
            for p in registry.programmes_of_year(year) {
                let mut settled_by: FxHashMap<String, Fen> = FxHashMap::default();
                for ((beneficiary, programme), amount) in opening.iter() {
                    if *programme == p.id {
                        let slot = settled_by.entry(beneficiary.clone()).or_default();
                        *slot = slot.plus(*amount);
                    }
                }
                let mut monthly_settled = [Fen::ZERO; 12];
                if let Some((by_beneficiary, by_period)) = posted.by_programme.get(&p.id) {
                    for (beneficiary, amount) in by_beneficiary {
                        let slot = settled_by.entry(beneficiary.clone()).or_default();
                        *slot = slot.plus(*amount);
                    }
                    for (period, amount) in by_period.iter().filter(|(q, _)| q.year == year) {
                        let m =
                            &mut monthly_settled[(period.month.saturating_sub(1) as usize).min(11)];
                        *m = m.plus(*amount);
                    }
                }
                let caps: FxHashMap<String, Fen> = registry
                    .grants
                    .iter()
                    .filter(|g| g.programme == p.id)
                    .filter_map(|g| {
                        registry
                            .beneficiary_cap(p, &g.beneficiary)
                            .map(|cap| (g.beneficiary.clone(), cap))
                    })
                    .collect();
                // Every beneficiary with an entitlement, an opening balance, a settled amount
                // or a capped grant.
                let mut beneficiaries: HashSet<&str> =
                    settled_by.keys().map(String::as_str).collect();
                beneficiaries.extend(caps.keys().map(String::as_str));
                beneficiaries.extend(maintained.entitled_in(&p.id).map(|(b, _)| b));
                for (beneficiary, programme) in opening.keys() {
                    if *programme == p.id {
                        beneficiaries.insert(beneficiary);
                    }
                }
                let beneficiaries: Vec<String> =
                    beneficiaries.into_iter().map(str::to_owned).collect();
                let mut sums = OverviewSums {
                    programme: p.id.clone(),
                    settled: settled_by.values().copied().sum(),
                    settled_by,
                    caps,
                    parts: FxHashMap::with_capacity_and_hasher(
                        beneficiaries.len(),
                        Default::default(),
                    ),
                    entitled: Fen::ZERO,
                    owed_back: Fen::ZERO,
                    near_cap: 0,
                    at_cap: 0,
                    monthly_settled,
                };
                for beneficiary in beneficiaries {
                    let entitled = entitled_of(maintained, &opening, &p.id, &beneficiary);
                    sums.update(&beneficiary, entitled);
                }
                programmes.push(sums);
            }
            // From now on every catch-up keeps it current with the pairs that changed.
            let maintained = cache.years.get_mut(&year).expect("maintained above");
            maintained.take_changed(&cache.accruals);
            cache
                .overviews
                .insert(year, OverviewCache { key, programmes });
            cache.overview_years.insert(year);
        }
    }
    let kept = &cache.overviews[&year];
    let mut out = Vec::new();
    for (p, sums) in registry.programmes_of_year(year).zip(&kept.programmes) {
        let pending = sums.entitled.minus(sums.settled);
        let left = p.pool.map_or(Fen::ZERO, |pool| {
            pool.minus(sums.settled)
                .minus(pending.plus(sums.owed_back))
                .max(Fen::ZERO)
        });
        out.push(ProgrammeOverview {
            programme: p.id.clone(),
            name: p.name.clone(),
            year,
            pool: p.pool,
            entitled: sums.entitled,
            settled: sums.settled,
            paid_out: paid_out.get(&p.id).copied().unwrap_or_default(),
            pending,
            owed_back: sums.owed_back,
            left,
            monthly_settled: sums.monthly_settled,
            capped: sums.caps.len(),
            near_cap: sums.near_cap,
            at_cap: sums.at_cap,
        });
    }
    Ok(out)
}

/// Where a capped grant stands against its cap (the console's enterprise list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CapState {
    /// Below [`NEAR_CAP_PER_MILLE`] of the cap.
    Below,
    /// At or above [`NEAR_CAP_PER_MILLE`] of the cap, but below it.
    Near,
    /// At or above the cap.
    At,
}

impl CapState {
    /// Where `used` (the larger of settled and entitled) stands against `cap`.
    pub fn of(used: Fen, cap: Fen) -> CapState {
        if used >= cap {
            CapState::At
        } else if i128::from(used.0) * 1000 >= i128::from(cap.0) * i128::from(NEAR_CAP_PER_MILLE) {
            CapState::Near
        } else {
            CapState::Below
        }
    }
}

/// One granted beneficiary's position under one programme of a year: what `programme_overview`
/// counts in `capped`, `near_cap` and `at_cap`, one grant at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapPosition {
    pub programme: String,
    pub beneficiary: String,
    pub cap: Option<Fen>,
    /// Opening balances included, as in [`ProgrammeOverview`].
    pub entitled: Fen,
    pub settled: Fen,
    /// `None` without a cap.
    pub state: Option<CapState>,
}

/// Every grant of `year`'s programmes in the current registry with its position against its
/// cap, and that registry (for names). The same figures and the same rule as
/// [`programme_overview`]'s counts.
pub fn cap_positions<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
    year: i32,
) -> Result<(Arc<Registry>, Vec<CapPosition>)> {
    let (current_version, registry, runs, journals) = cached_state(store, cache)?;
    let posted = book(store, cache, runs, journals)?.posted();
    let (maintained, opening) =
        maintained_year(store, cache, year, current_version, runs, Scope::All)?;
    let mut out = Vec::new();
    for p in registry.programmes_of_year(year) {
        let by_beneficiary = posted.by_programme.get(&p.id).map(|(b, _)| b);
        for g in registry.grants.iter().filter(|g| g.programme == p.id) {
            let opening_amount = opening
                .get(&(g.beneficiary.clone(), p.id.clone()))
                .copied()
                .unwrap_or_default();
            let settled = by_beneficiary
                .and_then(|b| b.get(&g.beneficiary))
                .copied()
                .unwrap_or_default()
                .plus(opening_amount);
            let entitled = maintained
                .entitled(&p.id, &g.beneficiary)
                .plus(opening_amount);
            let cap = registry.beneficiary_cap(p, &g.beneficiary);
            let state = cap.map(|cap| CapState::of(settled.max(entitled), cap));
            out.push(CapPosition {
                programme: p.id.clone(),
                beneficiary: g.beneficiary.clone(),
                cap,
                entitled,
                settled,
                state,
            });
        }
    }
    Ok((registry, out))
}

/// Fen settled so far by each of `programmes`' runs (all periods), in the given order: the
/// sums kept per run when it was created, not its lines (on the writer thread at every start
/// and post; reading a city's 800,000 lines of a run took 3.4 s there).
pub fn settled_totals(store: &mut dyn Store, programmes: &[String]) -> Result<Vec<(String, i64)>> {
    let runs = crate::settlement::runs_with_totals(store, None)?;
    Ok(programmes
        .iter()
        .map(|id| {
            let total = runs
                .iter()
                .filter(|(run, _, _)| run.programme == *id && run.status == "posted")
                .fold(0i64, |total, (_, _, fen)| total.saturating_add(fen.0));
            (id.clone(), total)
        })
        .collect())
}

/// Reads every accrual total through the store's writer: the first look-up's, and any after
/// the change log lost track ([`Store::accrual_changes_since`] run on the writer thread).
pub type CompleteRead = Box<dyn FnMut(Option<AccrualMark>) -> Result<AccrualChanges> + Send>;

/// Balance look-ups beside the writer, so that they never wait in its queue behind ingest: the
/// runs, registries and opening balances are read on a connection of the reader's own
/// ([`suanli_store::Reader`]), and what ingest and voids changed in the accruals from the
/// writer's change log ([`AccrualFeed`]), which the writer fills after each commit and before
/// acknowledging it. A look-up therefore reflects every commit acknowledged before it began.
/// Only a complete read of the accruals (the first look-up, another server's ingest on a
/// shared PostgreSQL database, or a log that dropped what the reader had not read yet) goes to
/// the writer.
pub struct BalanceReader {
    source: ReaderSource,
    cache: PendingCache,
    /// When the log was last read between look-ups.
    followed: std::time::Instant,
    /// Keys at most per catch-up between look-ups (`None`: [`CATCH_UP_SLICE`]).
    catch_up_slice: Option<usize>,
}

struct ReaderSource {
    reader: OwnReader,
    feed: AccrualFeed,
    complete: CompleteRead,
    /// Complete reads asked of the writer so far.
    complete_reads: u64,
}

/// A read connection of its own beside the writer, opened on first use.
struct OwnReader {
    url: String,
    reader: Option<Box<dyn Reader>>,
}

impl OwnReader {
    fn reader(&mut self) -> std::result::Result<&mut Box<dyn Reader>, StoreError> {
        if self.reader.is_none() {
            self.reader = Some(suanli_store::open_reader(&self.url)?);
        }
        Ok(self.reader.as_mut().expect("opened above"))
    }
}

impl Transact for OwnReader {
    fn transact(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Sql) -> std::result::Result<(), StoreError>,
    ) -> std::result::Result<(), StoreError> {
        self.reader()?.read(f)
    }

    fn query_ints(&mut self, sql: &str) -> std::result::Result<Vec<Vec<Option<i64>>>, StoreError> {
        self.reader()?.query_ints(sql)
    }
}

impl Transact for ReaderSource {
    fn transact(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Sql) -> std::result::Result<(), StoreError>,
    ) -> std::result::Result<(), StoreError> {
        self.reader.transact(f)
    }

    fn query_ints(&mut self, sql: &str) -> std::result::Result<Vec<Vec<Option<i64>>>, StoreError> {
        self.reader.query_ints(sql)
    }
}

impl ReaderSource {
    /// The changes since `since` from the writer's log alone, or `None` when it cannot serve
    /// them. On PostgreSQL the newest entry the database shows may be this server's own
    /// commit, not noted yet: the feed waits for its note; another server's stays missing.
    fn logged_since(
        &mut self,
        since: AccrualMark,
        position: Option<i64>,
    ) -> Result<Option<AccrualDeltas>> {
        let current = match position {
            Some(position) => Some(position),
            None => self.reader.reader()?.accrual_position()?,
        };
        Ok(self.feed.deltas_since(since, current)?)
    }
}

impl Source for ReaderSource {
    fn accrual_changes(
        &mut self,
        since: Option<AccrualMark>,
        position: Option<i64>,
    ) -> Result<AccrualUpdate> {
        if let Some(since) = since
            && let Some(deltas) = self.logged_since(since, position)?
        {
            return Ok(AccrualUpdate::Deltas(deltas));
        }
        crate::metrics::METRICS.balance_complete_reads.inc();
        self.complete_reads += 1;
        Ok(AccrualUpdate::Rows((self.complete)(since)?))
    }
}

impl BalanceReader {
    /// A reader of the database at `url` (which the writer has opened), following `feed`
    /// (the writer's [`Store::accrual_feed`]); `complete` runs a complete read on the writer.
    pub fn new(url: &str, feed: AccrualFeed, complete: CompleteRead) -> BalanceReader {
        BalanceReader {
            source: ReaderSource {
                reader: OwnReader {
                    url: url.to_owned(),
                    reader: None,
                },
                feed,
                complete,
                complete_reads: 0,
            },
            cache: PendingCache::default(),
            followed: std::time::Instant::now(),
            catch_up_slice: None,
        }
    }

    /// Takes in the accrual changes committed since the last look-up, so that the mark stays
    /// within what the writer's change log holds (which is bounded) however rarely look-ups
    /// come; with `catch_up`, also brings the maintained years a step closer to them, so that
    /// the next look-up finds little left to do: a slice of the waiting keys at most
    /// ([`CATCH_UP_SLICE`]) while no shared limit can bind, so that a look-up arriving
    /// meanwhile waits for one slice, not for everything that came in; otherwise all of them
    /// (a binding limit moves every line at each catch-up, so it is done once). The balance
    /// thread does it between look-ups, and at most half the time while none comes
    /// ([`LOOKUPS_RECENT`]) unless the backlog passes [`IDLE_BACKLOG_MAX`]. Nothing before the
    /// first look-up (which reads every accrual), and nothing the log cannot serve. Returns
    /// whether keys still wait.
    pub fn follow(&mut self, catch_up: bool) -> Result<bool> {
        let Some(mark) = self.cache.accruals.mark else {
            return Ok(false);
        };
        // The log is read when nothing waits, and at least every FOLLOW_EVERY while slices
        // run. From the log only: a complete read (another replica's commit, say) waits for
        // the next look-up, so that no reader asks the writer for one while nobody looks up.
        let waiting = self.waiting();
        if !(catch_up && waiting) || self.followed.elapsed() >= FOLLOW_EVERY {
            if let Some(deltas) = self.source.logged_since(mark, None)? {
                self.cache
                    .accruals
                    .apply_deltas(deltas, &mut self.cache.dirty)?;
            }
            self.followed = std::time::Instant::now();
        }
        if !catch_up {
            return Ok(self.waiting());
        }
        // A new registry version or runs found by the next look-up rebuild what they change.
        let slice = self.catch_up_slice.unwrap_or(CATCH_UP_SLICE);
        let cache = &mut self.cache;
        for (year, y) in cache.years.iter_mut() {
            if let Some(dirty) = cache.dirty.get_mut(year) {
                y.catch_up_waiting(
                    &cache.registries,
                    &cache.accruals,
                    dirty,
                    Scope::Slice(slice),
                );
            }
        }
        // The kept overviews take in what the catch-up changed now, a slice at a time, rather
        // than all of it at their next request. One kept for other runs or openings than the
        // cache's is dropped by that request anyway.
        let years: Vec<i32> = cache.overviews.keys().copied().collect();
        for year in years {
            let (_, version, runs) = cache.overviews[&year].key;
            if let Some((openings, _, opening)) = &cache.opening
                && *openings == runs.openings
            {
                let opening = opening.clone();
                keep_overview(cache, year, (version, runs), &opening);
            }
        }
        Ok(self.waiting())
    }

    /// Between look-ups, once figures were prepared: when a run was posted (or created or
    /// cancelled), opening balances confirmed or a payment recorded since, brings what posted
    /// runs settled and payments paid out up to date, and the finance overviews asked for
    /// before, so that the next page or look-up does not wait for them. At city scale adding a
    /// run's 800,000 lines takes seconds; the first enterprise page after a post took them.
    pub fn refresh_posted(&mut self) -> Result<()> {
        let Some(book_state) = self.cache.book_state else {
            // Nothing prepared yet: the first look-up reads it all anyway.
            return Ok(());
        };
        let state = state_key(&mut self.source)?;
        // An overview asked for before and since dropped or kept for other runs (a look-up
        // that came first took the post in, or a registry load), prepared again too.
        let stale: Vec<i32> = self
            .cache
            .overview_years
            .iter()
            .copied()
            .filter(|year| self.cache.overviews.get(year).map(|o| o.key.2) != Some(state.runs))
            .collect();
        if book_state == (state.runs, state.journals) && stale.is_empty() {
            return Ok(());
        }
        book(
            &mut self.source,
            &mut self.cache,
            state.runs,
            state.journals,
        )?;
        for year in stale {
            programme_overview(&mut self.source, &mut self.cache, year)?;
        }
        Ok(())
    }

    /// How many times posted runs' lines were read into the figures: each run is read once
    /// unless the figures are dropped.
    #[doc(hidden)]
    pub fn posted_runs_read(&self) -> u64 {
        self.cache.book.runs_read()
    }

    /// How many changed keys the maintained years have to catch up on.
    fn waiting_keys(&self) -> usize {
        self.cache
            .years
            .keys()
            .filter_map(|y| self.cache.dirty.get(y))
            .map(|d| d.len())
            .sum()
    }

    /// Whether a maintained year has changed keys to catch up on.
    fn waiting(&self) -> bool {
        self.cache
            .years
            .keys()
            .any(|y| self.cache.dirty.get(y).is_some_and(|d| !d.is_empty()))
    }

    /// Lowers how many keys [`BalanceReader::follow`] catches up on at once, so that tests
    /// reach catch-ups in parts.
    #[doc(hidden)]
    pub fn catch_up_slice_at_most(&mut self, keys: usize) {
        self.catch_up_slice = Some(keys);
    }

    /// How many times this reader read every accrual through the writer (the first look-up,
    /// and whenever the change log could not serve what changed).
    pub fn complete_reads(&self) -> u64 {
        self.source.complete_reads
    }

    /// Forgets every figure, so the next look-up reads everything again.
    pub fn reset(&mut self) {
        self.cache = PendingCache::default();
    }

    /// Begins a batch of look-ups that all began before this call: the state (registry
    /// version, runs) is read and the accrual log followed once, now, for all of them — which
    /// reflects every commit acknowledged before any of them began — instead of once each.
    /// On PostgreSQL that saves two round trips a look-up when look-ups queue.
    pub fn begin_batch(&mut self) -> Result<()> {
        self.cache.batch = None;
        let state = state_key(&mut self.source)?;
        self.cache.position = state.position;
        follow_accruals(&mut self.source, &mut self.cache)?;
        self.cache.batch = Some(state);
        Ok(())
    }

    /// Ends the batch: the next look-up reads for itself again.
    pub fn end_batch(&mut self) {
        self.cache.batch = None;
    }

    /// [`balance`], read beside the writer.
    pub fn balance(&mut self, beneficiary: &str, year: i32) -> Result<Vec<Balance>> {
        balance(&mut self.source, &mut self.cache, beneficiary, year)
    }

    /// [`monthly_settled`], read beside the writer.
    pub fn monthly_settled(
        &mut self,
        beneficiary: &str,
        year: i32,
    ) -> Result<BTreeMap<String, [Fen; 12]>> {
        monthly_settled(&mut self.source, &mut self.cache, beneficiary, year)
    }

    /// [`programme_overview`], read beside the writer.
    pub fn programme_overview(&mut self, year: i32) -> Result<Vec<ProgrammeOverview>> {
        programme_overview(&mut self.source, &mut self.cache, year)
    }

    /// Runs `f` on the reader's own connection (other read-only queries of the same pages,
    /// such as [`crate::settlement::list_runs`]), beside the writer.
    pub fn read<T>(&mut self, f: impl FnOnce(&mut dyn Transact) -> Result<T>) -> Result<T> {
        f(&mut self.source)
    }

    /// [`cap_positions`], read beside the writer.
    pub fn cap_positions(&mut self, year: i32) -> Result<(Arc<Registry>, Vec<CapPosition>)> {
        cap_positions(&mut self.source, &mut self.cache, year)
    }

    /// The current registry, parsed once per version.
    pub fn registry(&mut self) -> Result<Arc<Registry>> {
        Ok(cached_state(&mut self.source, &mut self.cache)?.1)
    }

    /// [`entitlements_to_date`], read beside the writer.
    pub fn entitlements_to_date(&mut self, year: i32) -> Result<HashMap<(String, String), Fen>> {
        entitlements_to_date(&mut self.source, &mut self.cache, year)
    }
}

/// How often the balance thread takes in the writer's accrual changes while no look-up comes:
/// the writer's change log is bounded (2^20 delta rows, about 17 s of ingest at 60,000
/// distinct keys a second), and a reader whose mark falls out of it must read every accrual
/// again through the writer, which at that rate took longer than the log lasts.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Changed keys at most that the balance thread catches up on between two looks at its
/// queue, while no shared limit can bind: about a millisecond of work.
const CATCH_UP_SLICE: usize = 64;

/// Queued look-ups answered at most after one read of the state.
const BATCH_JOBS_MAX: usize = 256;

/// How long after the last look-up (or console page) the balance thread catches up on the
/// waiting keys whenever its queue is empty; after that it catches up at most half the time
/// ([`IDLE_REST_PER_WORK`]) while the backlog is small ([`IDLE_BACKLOG_MAX`]), so that
/// figures nobody reads take at most half a core from ingest and yet stay current for the next
/// look-up or page (at a quarter, PostgreSQL's half rate in the balances bench outran them, and
/// the first finance overview after a quiet minute waited up to a second).
const LOOKUPS_RECENT: std::time::Duration = std::time::Duration::from_secs(10);

/// While no look-up is recent, the balance thread rests this many times as long as its last
/// catch-up took before the next one.
const IDLE_REST_PER_WORK: u32 = 1;

/// Keys at most left waiting while the balance thread rests: past them it catches up without
/// resting, so that the first page after a quiet spell of fast ingest finds at most this many
/// to catch up on (at PostgreSQL's half rate in the balances bench, half the time let the
/// backlog grow, and the first finance overview took it all in: 311 ms).
const IDLE_BACKLOG_MAX: usize = 4_096;

/// A job for the balance thread.
type BalanceJob = Box<dyn FnOnce(&mut BalanceReader) + Send>;

/// A job as queued: `whole` when it reads every beneficiary's figures (a finance overview, the
/// enterprise list), so that the thread first catches up beside the look-ups ([`catch_up_beside`]).
struct Job {
    run: BalanceJob,
    whole: bool,
}

/// How long the balance thread at most catches up, a slice at a time and answering look-ups in
/// between, before a job that reads every beneficiary's figures: past it (ingest outrunning
/// the thread), the job catches up on the rest itself.
const WHOLE_CATCH_UP_MAX: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs `jobs` in order; more than one are a batch that reads the state and follows the log
/// once for all of them (they all began before now). A job that panics leaves the figures
/// possibly half updated: they are dropped (its caller sees its reply dropped).
fn run_batch(reader: &mut BalanceReader, jobs: Vec<BalanceJob>) {
    let batched = jobs.len() > 1
        && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.begin_batch()))
            .is_ok_and(|r| r.is_ok());
    for job in jobs {
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job(reader);
        }));
        if done.is_err() {
            reader.reset();
        }
    }
    if batched {
        reader.end_batch();
    }
}

/// Before a job that reads every beneficiary's figures: catches up on the waiting keys a slice
/// at a time, following the log, and answers the look-ups that arrive meanwhile between two
/// slices, so that none waits behind the whole catch-up (at 200 look-ups a second, those behind
/// a finance overview that took in a second's changes at once made the look-ups' p99). Jobs of
/// the same kind that arrive are kept in `later`. Stops when nothing waits or after
/// [`WHOLE_CATCH_UP_MAX`].
fn catch_up_beside(
    reader: &mut BalanceReader,
    rx: &std::sync::mpsc::Receiver<Job>,
    later: &mut std::collections::VecDeque<BalanceJob>,
) {
    let started = std::time::Instant::now();
    loop {
        let mut light = Vec::new();
        while light.len() < BATCH_JOBS_MAX {
            match rx.try_recv() {
                Ok(job) if job.whole => later.push_back(job.run),
                Ok(job) => light.push(job.run),
                Err(_) => break,
            }
        }
        if !light.is_empty() {
            run_batch(reader, light);
        }
        if started.elapsed() >= WHOLE_CATCH_UP_MAX {
            return;
        }
        if !follow_slice(reader) {
            return;
        }
    }
}

/// One slice of catch-up between jobs ([`BalanceReader::follow`]), with the log followed.
/// A failure (or a panic) drops the figures, so the next look-up or page reads again and
/// reports what fails. Returns whether keys still wait.
fn follow_slice(reader: &mut BalanceReader) -> bool {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.follow(true))) {
        Ok(Ok(more)) => more,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "balance figures could not follow the accrual log; the next look-up reads again");
            reader.reset();
            false
        }
        Err(_) => {
            tracing::error!("following the accrual log failed; the next look-up reads again");
            reader.reset();
            false
        }
    }
}

/// [`BalanceReader::refresh_posted`] while the thread is idle. A failure (or a panic) drops
/// the figures, so that the next look-up or page reads again and reports what fails.
fn refresh_posted(reader: &mut BalanceReader) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.refresh_posted())) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "balance figures could not take in a post or payment; the next look-up reads again");
            reader.reset();
        }
        Err(_) => {
            tracing::error!("taking in a post or payment failed; the next look-up reads again");
            reader.reset();
        }
    }
}

/// Debug builds only: holds the figures prepared at start for `SUANLI_TEST_HOLD_FIGURES_MS`
/// milliseconds, so that end-to-end tests can see a server that is still preparing them
/// without a database of millions of rows. Release builds have no such knob.
fn hold_for_tests() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("SUANLI_TEST_HOLD_FIGURES_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Marks the figures of [`Balances::warm`] prepared when dropped.
struct Prepared(Arc<std::sync::Mutex<Option<std::time::Instant>>>);

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Ok(mut since) = self.0.lock() {
            *since = None;
        }
    }
}

/// The server's [`BalanceReader`] on a thread of its own, beside the writer's: look-ups and
/// the console's balance pages queue here, never behind ingest. A thread, not the runtime's
/// blocking pool: the PostgreSQL client blocks on a runtime of its own, which a thread of
/// another runtime may not. Cheap to clone; the thread ends when every handle is dropped.
#[derive(Clone)]
pub struct Balances {
    jobs: std::sync::mpsc::Sender<Job>,
    url: Arc<str>,
    /// Since when the figures queued at start ([`Balances::warm`]) are being prepared; `None`
    /// once they are (or there was nothing to prepare).
    preparing: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl Balances {
    /// Starts the reader of the database `writer` has open at `url`: it follows the writer's
    /// accrual change log and sends only complete reads to the writer.
    pub async fn beside(writer: &crate::ingest::Writer, url: &str) -> anyhow::Result<Balances> {
        let feed = writer.call(|s| s.accrual_feed()).await?;
        let (writer, runtime) = (writer.clone(), tokio::runtime::Handle::current());
        let complete: CompleteRead = Box::new(move |since| {
            // On the balance thread, which is not one of the runtime's: it may block on it.
            runtime
                .block_on(writer.call(move |s| s.accrual_changes_since(since)))
                .map_err(|e| SettleError::Unavailable(e.to_string()))?
                .map_err(SettleError::Store)
        });
        let mut reader = BalanceReader::new(url, feed, complete);
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("suanli-balances".into())
            .spawn(move || {
                let mut last_job = std::time::Instant::now();
                let mut refreshed = std::time::Instant::now();
                // Keys wait to be caught up on, a slice at a time; `rest`: the pause after the
                // last catch-up while no look-up is recent.
                let mut waiting = false;
                let mut rest = std::time::Duration::ZERO;
                loop {
                    let wait = if !waiting {
                        FOLLOW_EVERY
                    } else if last_job.elapsed() < LOOKUPS_RECENT {
                        std::time::Duration::ZERO
                    } else {
                        rest
                    };
                    let job = match rx.recv_timeout(wait) {
                        Ok(job) => job,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                            let started = std::time::Instant::now();
                            waiting = follow_slice(&mut reader);
                            // A post or payment since is taken in between look-ups too, at
                            // most every FOLLOW_EVERY (one read of the state when nothing
                            // changed), also while keys wait under steady ingest.
                            if refreshed.elapsed() >= FOLLOW_EVERY {
                                refresh_posted(&mut reader);
                                refreshed = std::time::Instant::now();
                            }
                            // Resting only while the backlog stays small: when ingest
                            // outruns half the time, the next look-up or page would pay
                            // for all of it.
                            rest = if reader.waiting_keys() > IDLE_BACKLOG_MAX {
                                std::time::Duration::ZERO
                            } else {
                                started.elapsed() * IDLE_REST_PER_WORK
                            };
                            continue;
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    last_job = std::time::Instant::now();
                    // The jobs queued behind it began before now too: one batch reads the
                    // state and follows the log once for all of them. Those that read every
                    // beneficiary's figures go after, each once the thread has caught up
                    // beside the look-ups.
                    let mut light = Vec::new();
                    let mut whole = std::collections::VecDeque::new();
                    let mut next = Some(job);
                    while let Some(job) = next.take() {
                        if job.whole {
                            whole.push_back(job.run);
                        } else {
                            light.push(job.run);
                        }
                        if light.len() + whole.len() < BATCH_JOBS_MAX {
                            next = rx.try_recv().ok();
                        }
                    }
                    if !light.is_empty() {
                        run_batch(&mut reader, light);
                    }
                    while let Some(job) = whole.pop_front() {
                        catch_up_beside(&mut reader, &rx, &mut whole);
                        run_batch(&mut reader, vec![job]);
                    }
                    // A look-up catches up on its own beneficiary's keys: the rest wait.
                    waiting = reader.waiting();
                }
            })?;
        let balances = Balances {
            jobs,
            url: Arc::from(url),
            preparing: Arc::default(),
        };
        balances.warm();
        Ok(balances)
    }

    /// Queues, first of all, the figures of the newest year of the registry's programmes (the
    /// year the console's finance pages open on): its programme overview and every
    /// beneficiary's cap position. With 100,000 beneficiaries that is seconds of work, which
    /// the first page after a start would otherwise wait for. A look-up that comes sooner
    /// waits behind it; most of that work (reading every accrual, building the year) it would
    /// have done itself.
    fn warm(&self) {
        let preparing = self.preparing.clone();
        *preparing.lock().expect("preparing lock") = Some(std::time::Instant::now());
        let sent = self.send(false, move |reader: &mut BalanceReader| {
            // Cleared however the job ends, a panic included: a page must not wait forever.
            let _prepared = Prepared(preparing);
            let started = std::time::Instant::now();
            hold_for_tests();
            let warmed = reader
                .read(|s| crate::registry::registry_years(s))
                .and_then(|years| match years.first() {
                    Some(&year) => {
                        reader.programme_overview(year)?;
                        reader.cap_positions(year)?;
                        Ok(Some(year))
                    }
                    None => Ok(None),
                });
            match warmed {
                Ok(Some(year)) => tracing::info!(
                    year,
                    seconds = started.elapsed().as_secs_f64(),
                    "balance figures ready"
                ),
                // Nothing to prepare before a registry is loaded.
                Ok(None) | Err(SettleError::FailedPrecondition(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "balance figures could not be prepared at start; the first page reads them");
                    reader.reset();
                }
            }
        });
        if sent.is_err() {
            *self.preparing.lock().expect("preparing lock") = None;
        }
    }

    /// How long the figures queued at start have been in preparation, while they are: a page
    /// that would wait for them can say so instead (at 10,000,000 records on PostgreSQL they
    /// took 14-16 s after the server listened).
    pub fn preparing_for(&self) -> Option<std::time::Duration> {
        self.preparing
            .lock()
            .expect("preparing lock")
            .map(|since| since.elapsed())
    }

    fn send(
        &self,
        whole: bool,
        run: impl FnOnce(&mut BalanceReader) + Send + 'static,
    ) -> std::result::Result<(), std::sync::mpsc::SendError<Job>> {
        self.jobs.send(Job {
            run: Box::new(run),
            whole,
        })
    }

    /// Runs `f` on a thread and a read connection of its own, for a long read (a run's
    /// explanation recomputes its programme-year) that must hold up neither ingest nor the
    /// balance look-ups. The caller bounds how many run at once (per-credential call limits).
    pub async fn read_alone<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Transact) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let url = self.url.to_string();
        std::thread::Builder::new()
            .name("suanli-read".into())
            .spawn(move || {
                let mut reader = OwnReader { url, reader: None };
                let _ = reply.send(f(&mut reader));
            })
            .map_err(|e| SettleError::Unavailable(format!("cannot start a reader: {e}")))?;
        rx.await
            .map_err(|_| SettleError::Unavailable("the reader stopped".into()))?
    }

    /// Runs `f` on the balance thread, after the look-ups queued before it.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut BalanceReader) -> R + Send + 'static,
    ) -> Result<R> {
        self.call_as(false, f).await
    }

    /// Runs `f`, which reads every beneficiary's figures (a finance overview, the cap
    /// positions of the enterprise list), on the balance thread: first the thread catches up
    /// on the waiting keys a slice at a time, answering the look-ups that come meanwhile, so
    /// that they do not wait behind all of it. `f` still reflects every commit acknowledged
    /// before it began.
    pub async fn call_whole<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut BalanceReader) -> R + Send + 'static,
    ) -> Result<R> {
        self.call_as(true, f).await
    }

    /// [`Balances::call_whole`] when `whole`, else [`Balances::call`].
    pub async fn call_as<R: Send + 'static>(
        &self,
        whole: bool,
        f: impl FnOnce(&mut BalanceReader) -> R + Send + 'static,
    ) -> Result<R> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let gone = || SettleError::Unavailable("the balance reader has stopped".into());
        self.send(whole, move |reader| {
            let _ = reply.send(f(reader));
        })
        .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}
