//! Balances and overviews (docs/rules.md R12): a beneficiary's cap, paid, pending and remaining
//! per programme-year, what was posted month by month, and each programme's totals for the
//! finance overview. Look-ups are cached and recomputed only when what they derive from changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_domain::usage::Period;
use suanli_store::ledger::{self as rows};
use suanli_store::sql::Sql;
use suanli_store::{AccrualChanges, AccrualFeed, AccrualMark, Reader, Store, StoreError};

use suanli_domain::settlement::{LineKey, Prior};

use crate::maintained::{Accruals, MaintainedYear};
use crate::registry::{load_registry, registry_of};
use crate::settlement::{
    Result, SettleError, Transact, bases_to, entitlements, in_tx, period_versions,
};

/// What balance look-ups read from: the store itself (on the writer thread), or a
/// [`BalanceReader`] beside the writer.
pub trait Source: Transact {
    /// As [`Store::accrual_changes_since`]: the accrual changes since `since`, or every total.
    fn accrual_changes(&mut self, since: Option<AccrualMark>) -> Result<AccrualChanges>;
}

impl Source for dyn Store + '_ {
    fn accrual_changes(&mut self, since: Option<AccrualMark>) -> Result<AccrualChanges> {
        Ok(self.accrual_changes_since(since)?)
    }
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

/// What balance look-ups derive from the database, kept current by what changed since the
/// last look-up: the accrual totals and each fiscal year's entitlement to date, maintained
/// change by change ([`crate::maintained`]); what posted runs and opening balances paid
/// (recomputed when runs or openings changed); the registries in use. Every look-up first
/// reads what changed since the last one (the state's version numbers, the accrual changes),
/// so it sees every commit acknowledged before it began.
#[derive(Default)]
pub struct PendingCache {
    registry: Option<(i64, Arc<Registry>)>,
    paid: Option<(RunsKey, Paid)>,
    accruals: Accruals,
    years: HashMap<i32, MaintainedYear>,
    /// Keys changed since each maintained year last caught up, per month index.
    dirty: HashMap<i32, Vec<HashSet<LineKey>>>,
    registries: HashMap<i64, Arc<Registry>>,
    /// Each year's registry version per month, for (current version, runs).
    versions: HashMap<i32, ((i64, RunsKey), Vec<i64>)>,
    opening: Option<(i64, Arc<Prior>, Opening)>,
    posted: Option<(RunsKey, Arc<Posted>)>,
}

/// Confirmed opening balances per (beneficiary, programme).
type Opening = Arc<BTreeMap<(String, String), Fen>>;

/// Posted per beneficiary, per programme.
type Paid = Arc<HashMap<String, BTreeMap<String, i64>>>;

/// One programme's postings: per beneficiary (all periods), and per original period.
type ProgrammePosted = (HashMap<String, Fen>, BTreeMap<Period, Fen>);

/// Posted run lines summed, for the finance overview and the enterprise page.
#[derive(Default)]
struct Posted {
    /// Per programme: what runs posted per beneficiary (all periods), and per original period.
    by_programme: HashMap<String, ProgrammePosted>,
    /// Per beneficiary: per programme, per original period.
    by_beneficiary: HashMap<String, BTreeMap<String, BTreeMap<Period, Fen>>>,
}

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

/// The current registry version and the runs' key, in one query.
fn state_key(tx: &mut dyn Sql) -> Result<(Option<i64>, RunsKey)> {
    let rows = tx.query(
        "SELECT (SELECT MAX(version) FROM registry_versions), COUNT(*), MAX(run_id), COUNT(posted_at), COUNT(cancelled_at) FROM settlement_runs",
        &[],
    )?;
    let r = rows
        .first()
        .ok_or_else(|| SettleError::Store(StoreError::Corrupt("no state row".into())))?;
    let openings = crate::opening::confirmed_count(tx)?;
    Ok((
        r[0].opt_int()?,
        RunsKey {
            runs: r[1].int()?,
            last_run: r[2].opt_int()?.unwrap_or(0),
            posted: r[3].int()?,
            cancelled: r[4].int()?,
            openings,
        },
    ))
}

/// The current registry version, its registry (cached) and the runs' key.
fn cached_state<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
) -> Result<(i64, Arc<Registry>, RunsKey)> {
    let (version, runs) = in_tx(store, state_key)?;
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
    Ok((version, registry, runs))
}

/// What posted runs and confirmed opening balances paid each beneficiary, per programme;
/// recomputed when the runs or the opening balances changed.
fn paid_by_beneficiary<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
    runs: RunsKey,
) -> Result<Paid> {
    if let Some((k, v)) = &cache.paid
        && *k == runs
    {
        return Ok(v.clone());
    }
    let (rows, opening) = in_tx(store, |tx| {
        Ok((
            rows::posted_totals_by_beneficiary(tx)?,
            crate::opening::opening_paid(tx)?,
        ))
    })?;
    let mut paid: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
    for (beneficiary, programme, amount) in rows {
        *paid
            .entry(beneficiary)
            .or_default()
            .entry(programme)
            .or_default() += amount;
    }
    for ((beneficiary, programme), amount) in opening {
        *paid
            .entry(beneficiary)
            .or_default()
            .entry(programme)
            .or_default() += amount.0;
    }
    let paid = Arc::new(paid);
    cache.paid = Some((runs, paid.clone()));
    Ok(paid)
}

/// The year's maintained entitlements, caught up with every change since the last look-up,
/// and the confirmed opening balances.
fn maintained_year<'c, S: Source + ?Sized>(
    store: &mut S,
    cache: &'c mut PendingCache,
    year: i32,
    current_version: i64,
    runs: RunsKey,
) -> Result<(&'c MaintainedYear, Opening)> {
    let changes = store.accrual_changes(cache.accruals.mark)?;
    if cache.accruals.apply(changes, &mut cache.dirty)? {
        cache.years.clear();
        cache.dirty.clear();
    }
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
        cache.dirty.insert(year, vec![HashSet::new(); 12]);
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
        let dirty = cache
            .dirty
            .insert(year, vec![HashSet::new(); 12])
            .unwrap_or_else(|| vec![HashSet::new(); 12]);
        let y = cache.years.get_mut(&year).expect("checked above");
        y.catch_up(&cache.registries, &cache.accruals, dirty);
    }
    Ok((&cache.years[&year], opening))
}

/// Entitlement to date per (programme, beneficiary) of `year`, opening balances included, as
/// balances use it: the maintained figures.
pub fn entitlements_to_date<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
    year: i32,
) -> Result<HashMap<(String, String), Fen>> {
    let (current_version, _, runs) = cached_state(store, cache)?;
    let (y, opening) = maintained_year(store, cache, year, current_version, runs)?;
    let mut out = y.entitled_all().clone();
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
    let current_version = in_tx(store, state_key)?.0.ok_or_else(|| {
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

/// Posted run lines summed per programme and per beneficiary, recomputed when runs changed.
fn posted<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
    runs: RunsKey,
) -> Result<Arc<Posted>> {
    if let Some((k, v)) = &cache.posted
        && *k == runs
    {
        return Ok(v.clone());
    }
    let posted = in_tx(store, |tx| {
        let mut programmes: Vec<String> = rows::runs(tx, None)?
            .into_iter()
            .filter(|r| r.status == "posted")
            .map(|r| r.programme)
            .collect();
        programmes.sort();
        programmes.dedup();
        let mut out = Posted::default();
        for programme in programmes {
            let (paid_by, by_period) = out.by_programme.entry(programme.clone()).or_default();
            for (period, key, amount) in rows::posted_lines(tx, &programme)? {
                let slot = paid_by.entry(key.beneficiary.clone()).or_default();
                *slot = slot.plus(Fen(amount));
                let Some(period) = Period::parse(&period) else {
                    continue;
                };
                let slot = by_period.entry(period).or_default();
                *slot = slot.plus(Fen(amount));
                let slot = out
                    .by_beneficiary
                    .entry(key.beneficiary)
                    .or_default()
                    .entry(programme.clone())
                    .or_default()
                    .entry(period)
                    .or_default();
                *slot = slot.plus(Fen(amount));
            }
        }
        Ok(out)
    })?;
    let posted = Arc::new(posted);
    cache.posted = Some((runs, posted.clone()));
    Ok(posted)
}

/// R12: per granted programme-year, cap, paid (posted), pending (entitlement to date of the
/// accruals under the current policy, less what is posted) and remaining.
pub fn balance<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
    beneficiary: &str,
    year: i32,
) -> Result<Vec<Balance>> {
    let (current_version, registry, runs) = cached_state(store, cache)?;
    if registry.beneficiary(beneficiary).is_none() {
        return Err(SettleError::NotFound(format!(
            "beneficiary {beneficiary:?} is not in the current registry"
        )));
    }
    let paid_all = paid_by_beneficiary(store, cache, runs)?;
    let (entitled, opening) = maintained_year(store, cache, year, current_version, runs)?;
    let no_payments = BTreeMap::new();
    let paid = paid_all.get(beneficiary).unwrap_or(&no_payments);
    let mut out = Vec::new();
    for p in registry
        .programmes_of_year(year)
        .filter(|p| registry.grant(beneficiary, &p.id).is_some())
    {
        let opening = opening
            .get(&(beneficiary.to_owned(), p.id.clone()))
            .copied()
            .unwrap_or_default();
        let entitled = entitled.entitled(&p.id, beneficiary).plus(opening);
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

/// Subsidy posted to a beneficiary per month (the month each line is for, its original period)
/// of `year`, per programme: index 0 is January. Read from the posted totals cached until runs
/// change.
pub fn monthly_posted<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
    beneficiary: &str,
    year: i32,
) -> Result<BTreeMap<String, [Fen; 12]>> {
    let (runs,) = (in_tx(store, state_key)?.1,);
    let posted = posted(store, cache, runs)?;
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

/// A programme-year's pool and its beneficiaries' positions against their caps (R8, R12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgrammeOverview {
    pub programme: String,
    pub name: String,
    pub year: i32,
    pub pool: Option<Fen>,
    /// Posted by runs of this programme, with its confirmed opening balances.
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
pub fn programme_overview<S: Source + ?Sized>(
    store: &mut S,
    cache: &mut PendingCache,
    year: i32,
) -> Result<Vec<ProgrammeOverview>> {
    let (current_version, registry, runs) = cached_state(store, cache)?;
    let posted = posted(store, cache, runs)?;
    let (maintained, opening) = maintained_year(store, cache, year, current_version, runs)?;
    // Entitlement per (programme, beneficiary), opening balances included.
    let entitled_of = |programme: &str, beneficiary: &str| {
        maintained.entitled(programme, beneficiary).plus(
            opening
                .get(&(beneficiary.to_owned(), programme.to_owned()))
                .copied()
                .unwrap_or_default(),
        )
    };
    let mut out = Vec::new();
    for p in registry.programmes_of_year(year) {
        let mut paid_by: HashMap<String, Fen> = HashMap::new();
        for ((beneficiary, programme), amount) in opening.iter() {
            if *programme == p.id {
                let slot = paid_by.entry(beneficiary.clone()).or_default();
                *slot = slot.plus(*amount);
            }
        }
        let mut monthly_paid = [Fen::ZERO; 12];
        if let Some((by_beneficiary, by_period)) = posted.by_programme.get(&p.id) {
            for (beneficiary, amount) in by_beneficiary {
                let slot = paid_by.entry(beneficiary.clone()).or_default();
                *slot = slot.plus(*amount);
            }
            for (period, amount) in by_period.iter().filter(|(q, _)| q.year == year) {
                let m = &mut monthly_paid[(period.month.saturating_sub(1) as usize).min(11)];
                *m = m.plus(*amount);
            }
        }
        let paid: Fen = paid_by.values().copied().sum();
        let mut pending = Fen::ZERO;
        let mut seen: HashSet<&str> = HashSet::new();
        for (programme, beneficiary) in maintained.entitled_all().keys() {
            if *programme == p.id {
                seen.insert(beneficiary);
                let own = paid_by.get(beneficiary).copied().unwrap_or_default();
                pending = pending.plus(
                    entitled_of(programme, beneficiary)
                        .minus(own)
                        .max(Fen::ZERO),
                );
            }
        }
        for (beneficiary, programme) in opening.keys() {
            if *programme == p.id && !seen.contains(beneficiary.as_str()) {
                let own = paid_by.get(beneficiary).copied().unwrap_or_default();
                pending = pending.plus(
                    entitled_of(programme, beneficiary)
                        .minus(own)
                        .max(Fen::ZERO),
                );
            }
        }
        let (mut capped, mut near_cap, mut at_cap) = (0, 0, 0);
        for g in registry.grants.iter().filter(|g| g.programme == p.id) {
            let Some(cap) = registry.beneficiary_cap(p, &g.beneficiary) else {
                continue;
            };
            capped += 1;
            let own_paid = paid_by.get(&g.beneficiary).copied().unwrap_or_default();
            let own_entitled = entitled_of(&p.id, &g.beneficiary);
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

/// Fen posted so far by each of `programmes`' runs (all periods), in the given order.
pub fn posted_totals(store: &mut dyn Store, programmes: &[String]) -> Result<Vec<(String, i64)>> {
    let mut totals = Vec::new();
    for id in programmes {
        let mut total = 0i64;
        for run in crate::settlement::list_runs(store, Some(id.as_str()))? {
            if run.status == "posted" {
                let view = crate::settlement::show_run(store, run.run_id)?;
                total = total.saturating_add(view.lines.iter().map(|l| l.amount_fen).sum());
            }
        }
        totals.push((id.clone(), total));
    }
    Ok(totals)
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
}

struct ReaderSource {
    url: String,
    /// Opened on first use.
    reader: Option<Box<dyn Reader>>,
    feed: AccrualFeed,
    complete: CompleteRead,
}

/// How long a reader waits, at most twice, for the writer to note a commit of its own that the
/// database already shows (PostgreSQL: between the commit and the note) before it reads every
/// accrual through the writer instead.
const NOTE_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

impl ReaderSource {
    fn reader(&mut self) -> std::result::Result<&mut Box<dyn Reader>, StoreError> {
        if self.reader.is_none() {
            self.reader = Some(suanli_store::open_reader(&self.url)?);
        }
        Ok(self.reader.as_mut().expect("opened above"))
    }
}

impl Transact for ReaderSource {
    fn transact(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Sql) -> std::result::Result<(), StoreError>,
    ) -> std::result::Result<(), StoreError> {
        self.reader()?.read(f)
    }
}

impl Source for ReaderSource {
    fn accrual_changes(&mut self, since: Option<AccrualMark>) -> Result<AccrualChanges> {
        if let Some(since) = since {
            let current = self.reader()?.accrual_position()?;
            for attempt in 0..3 {
                if let Some(changes) = self.feed.since(since, current)? {
                    return Ok(changes);
                }
                // SQLite: the log alone decides. PostgreSQL: the newest entry may be this
                // server's own commit, not noted yet; another server's stays missing.
                if current.is_none() || attempt == 2 {
                    break;
                }
                std::thread::sleep(NOTE_WAIT);
            }
        }
        crate::metrics::METRICS.balance_complete_reads.inc();
        (self.complete)(since)
    }
}

impl BalanceReader {
    /// A reader of the database at `url` (which the writer has opened), following `feed`
    /// (the writer's [`Store::accrual_feed`]); `complete` runs a complete read on the writer.
    pub fn new(url: &str, feed: AccrualFeed, complete: CompleteRead) -> BalanceReader {
        BalanceReader {
            source: ReaderSource {
                url: url.to_owned(),
                reader: None,
                feed,
                complete,
            },
            cache: PendingCache::default(),
        }
    }

    /// Forgets every figure, so the next look-up reads everything again.
    pub fn reset(&mut self) {
        self.cache = PendingCache::default();
    }

    /// [`balance`], read beside the writer.
    pub fn balance(&mut self, beneficiary: &str, year: i32) -> Result<Vec<Balance>> {
        balance(&mut self.source, &mut self.cache, beneficiary, year)
    }

    /// [`monthly_posted`], read beside the writer.
    pub fn monthly_posted(
        &mut self,
        beneficiary: &str,
        year: i32,
    ) -> Result<BTreeMap<String, [Fen; 12]>> {
        monthly_posted(&mut self.source, &mut self.cache, beneficiary, year)
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

    /// [`entitlements_to_date`], read beside the writer.
    pub fn entitlements_to_date(&mut self, year: i32) -> Result<HashMap<(String, String), Fen>> {
        entitlements_to_date(&mut self.source, &mut self.cache, year)
    }
}

/// A job for the balance thread.
type BalanceJob = Box<dyn FnOnce(&mut BalanceReader) + Send>;

/// The server's [`BalanceReader`] on a thread of its own, beside the writer's: look-ups and
/// the console's balance pages queue here, never behind ingest. A thread, not the runtime's
/// blocking pool: the PostgreSQL client blocks on a runtime of its own, which a thread of
/// another runtime may not. Cheap to clone; the thread ends when every handle is dropped.
#[derive(Clone)]
pub struct Balances {
    jobs: std::sync::mpsc::Sender<BalanceJob>,
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
        let (jobs, rx) = std::sync::mpsc::channel::<BalanceJob>();
        std::thread::Builder::new()
            .name("suanli-balances".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        job(&mut reader);
                    }));
                    if done.is_err() {
                        // The figures may be half updated: start afresh (the caller sees its
                        // reply dropped).
                        reader.reset();
                    }
                }
            })?;
        Ok(Balances { jobs })
    }

    /// Runs `f` on the balance thread, after the look-ups queued before it.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut BalanceReader) -> R + Send + 'static,
    ) -> Result<R> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let gone = || SettleError::Unavailable("the balance reader has stopped".into());
        self.jobs
            .send(Box::new(move |reader| {
                let _ = reply.send(f(reader));
            }))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}
