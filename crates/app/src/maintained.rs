//! Year-to-date entitlements kept current change by change (docs/rules.md R6-R9), so that a
//! balance look-up while usage streams in costs what changed since the last one, not a year's
//! settlement. [`MaintainedYear`] holds, per month and programme, every line's demand and its
//! amount after each stage (beneficiary caps, provider caps, pool), with the sums the stages
//! and the next months' prior payments need; a change of accruals recomputes only the groups it
//! can move, month after month. `crates/app/tests/balances_incremental.rs` checks it to the fen
//! against the full recomputation (`domain::restatement`) after random sequences of changes.
//!
//! What a change recomputes, in each month from the first it touches:
//! - the demand (R6) of the changed lines only;
//! - the beneficiary-cap stage (R7) of the beneficiaries whose lines changed, and of those
//!   whose prior payments (earlier months) changed where they have a cap;
//! - the provider-cap stage of the providers whose amounts after beneficiary caps changed, or
//!   whose prior changed: while the provider's cap does not bind (before and after) only the
//!   changed lines are copied through; when it binds, one largest-remainder pass over that
//!   provider's lines;
//! - the pool (R8) the same way over the programme's lines: a pool that binds moves every line
//!   of the programme, so it costs one pass of integer arithmetic over the cached amounts;
//! - the next months see the beneficiaries, providers and programme totals whose final amounts
//!   changed as changed prior payments (R9: a month's entitlement is prior for the next).
//!
//! A new registry version for a month, or newly confirmed opening balances, rebuild the year
//! from the maintained accruals (every line is changed then).
//!
//! Changed keys wait ([`Dirty`]) with a bound on how far they can move any sum. While no pool
//! or provider cap binds, nor can within that bound ([`MaintainedYear::limits_clear`]), a
//! beneficiary's figures depend on its own lines alone: a look-up catches up on its own keys,
//! and the rest are caught up on in slices between look-ups.
//!
//! Beneficiary and provider ids are numbered once ([`Names`]), so that a line's key is a few
//! integers: finding, hashing and copying it costs no string comparison and no allocation.
//! Where the rules need the key order (the tie order of largest remainder, R7), the lines are
//! put in the order of their ids' text: each beneficiary's lines are kept in that order as
//! they come, and the programme's whole order is sorted once and kept until a line comes or
//! goes, for the pool's pass.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use rust_decimal::Decimal;
use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_domain::registry::Class;
use suanli_domain::settlement::{Prior, effective_ratios, limited};
use suanli_domain::usage::Period;
use suanli_store::{AccrualChanges, AccrualDeltas, AccrualMark, AccrualRow, StoreError};

use crate::settlement::{Result, SettleError, class_of};

/// Beneficiary and provider ids (and the other texts a kept figure names: `crate::posted`),
/// each numbered the first time it is seen. Numbers are never reused or dropped while the
/// process runs, so a number names the same id in every year.
#[derive(Default)]
pub(crate) struct Names {
    ids: FxHashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Names {
    fn intern(&mut self, name: String) -> u32 {
        if let Some(&id) = self.ids.get(name.as_str()) {
            return id;
        }
        self.add(name.into())
    }

    fn intern_shared(&mut self, name: Arc<str>) -> u32 {
        if let Some(&id) = self.ids.get(&name) {
            return id;
        }
        self.add(name)
    }

    /// `name`'s number, numbering it if it is new.
    pub(crate) fn intern_str(&mut self, name: &str) -> u32 {
        match self.ids.get(name) {
            Some(&id) => id,
            None => self.add(name.into()),
        }
    }

    fn add(&mut self, name: Arc<str>) -> u32 {
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct ids");
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    pub(crate) fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    pub(crate) fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The order of two line keys as [`suanli_domain::settlement::LineKey`] orders them:
    /// beneficiary, provider (as text), class.
    fn order(&self, a: &Key, b: &Key) -> Ordering {
        let by_beneficiary = if a.beneficiary == b.beneficiary {
            Ordering::Equal
        } else {
            self.name(a.beneficiary).cmp(self.name(b.beneficiary))
        };
        by_beneficiary
            .then_with(|| {
                if a.provider == b.provider {
                    Ordering::Equal
                } else {
                    self.name(a.provider).cmp(self.name(b.provider))
                }
            })
            .then(a.class.cmp(&b.class))
    }
}

/// A settlement line's key (R6) with its ids numbered by [`Names`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    beneficiary: u32,
    provider: u32,
    class: Class,
}

/// One month's accrual totals per line key: (amount in fen, records).
type MonthAccruals = FxHashMap<Key, (i64, i64)>;

/// The running accrual totals as settlement reads them (`settlement::bases_to`), kept by
/// applying [`suanli_store::Store::accrual_changes_since`], with the keys changed since each
/// maintained year last caught up.
#[derive(Default)]
pub(crate) struct Accruals {
    pub(crate) mark: Option<AccrualMark>,
    names: Names,
    /// The store's ids of beneficiaries and providers (its change log's) by their numbers
    /// here, each named once.
    store_ids: FxHashMap<i64, u32>,
    by_year: HashMap<i32, Vec<MonthAccruals>>,
}

/// How much of the waiting keys [`MaintainedYear::catch_up_waiting`] catches up on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scope<'a> {
    /// Every waiting key.
    All,
    /// The keys of this beneficiary, enough for its figures.
    Beneficiary(&'a str),
    /// At most this many keys.
    Slice(usize),
}

/// Keys to catch up on, per month index.
pub(crate) type MonthKeys = Vec<FxHashSet<Key>>;

/// The keys changed since a maintained year last caught up on them, per month index, with a
/// bound on how far catching up on them can move any of the year's sums: Σ over the changes
/// of (|Δ accrual| + 1) fen. A line's demand is round_half_up(base × ratio) with a ratio of at
/// most 1, so it moves by at most |Δ base| + 1 fen; a beneficiary's or a provider's cap stage
/// and the pool only ever pass on, cut or release what their inputs moved.
#[derive(Default)]
pub(crate) struct Dirty {
    /// Per month index: each changed key with its part of `bound`.
    months: Vec<FxHashMap<Key, i128>>,
    /// Each beneficiary's changed keys, with their month index.
    by_beneficiary: FxHashMap<u32, Vec<(usize, Key)>>,
    /// How many changed keys each provider has.
    providers: FxHashMap<u32, usize>,
    bound: i128,
    len: usize,
}

impl Dirty {
    /// Notes a change of `delta_fen` to `key`'s accrual in month index `m`.
    fn mark(&mut self, m: usize, key: Key, delta_fen: i64) {
        if self.months.is_empty() {
            self.months = vec![FxHashMap::default(); 12];
        }
        // In 128 bits: no sum of 64-bit changes overflows it.
        let weight = i128::from(delta_fen.unsigned_abs()) + 1;
        match self.months[m].get_mut(&key) {
            Some(w) => *w += weight,
            None => {
                self.months[m].insert(key, weight);
                self.by_beneficiary
                    .entry(key.beneficiary)
                    .or_default()
                    .push((m, key));
                *self.providers.entry(key.provider).or_default() += 1;
                self.len += 1;
            }
        }
        self.bound += weight;
    }

    /// Whether no key waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many keys wait.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every waiting key, leaving none.
    pub(crate) fn take_all(&mut self) -> MonthKeys {
        let months = std::mem::take(&mut self.months);
        *self = Dirty::default();
        let mut out: MonthKeys = months
            .into_iter()
            .map(|keys| keys.into_keys().collect())
            .collect();
        out.resize_with(12, FxHashSet::default);
        out
    }

    /// The waiting keys of one beneficiary (of its number in the accruals' names), leaving the
    /// others.
    fn take_beneficiary(&mut self, beneficiary: u32) -> MonthKeys {
        let mut out: MonthKeys = vec![FxHashSet::default(); 12];
        for (m, key) in self.by_beneficiary.remove(&beneficiary).unwrap_or_default() {
            self.forget(m, &key);
            out[m].insert(key);
        }
        out
    }

    /// At most `n` (at least one) of the waiting keys, earliest months first.
    pub(crate) fn take_some(&mut self, n: usize) -> MonthKeys {
        let mut out: MonthKeys = vec![FxHashSet::default(); 12];
        let mut left = n.max(1);
        for (m, taken) in out.iter_mut().enumerate().take(self.months.len()) {
            if left == 0 {
                break;
            }
            let keys: Vec<Key> = self.months[m].keys().take(left).copied().collect();
            left -= keys.len();
            for key in keys {
                self.forget(m, &key);
                if let Some(of) = self.by_beneficiary.get_mut(&key.beneficiary) {
                    of.retain(|(mm, k)| !(*mm == m && *k == key));
                    if of.is_empty() {
                        self.by_beneficiary.remove(&key.beneficiary);
                    }
                }
                taken.insert(key);
            }
            if self.months[m].is_empty() {
                // A map emptied by removals keeps its capacity and is slow to walk.
                self.months[m] = FxHashMap::default();
            }
        }
        out
    }

    /// Takes one key out of the months, the providers' counts and the bound (not out of
    /// `by_beneficiary`).
    fn forget(&mut self, m: usize, key: &Key) {
        let Some(weight) = self.months[m].remove(key) else {
            return;
        };
        self.bound -= weight;
        self.len -= 1;
        if let Some(count) = self.providers.get_mut(&key.provider) {
            *count -= 1;
            if *count == 0 {
                self.providers.remove(&key.provider);
            }
        }
    }
}

/// Month index (0 = January) of a period.
fn month_index(period: Period) -> usize {
    (period.month.clamp(1, 12) - 1) as usize
}

impl Accruals {
    /// Applies what the store returned. Returns `true` when it was every total (the
    /// maintained years must be rebuilt); otherwise the changed keys are added to `dirty`
    /// per year and month.
    pub(crate) fn apply(
        &mut self,
        changes: AccrualChanges,
        dirty: &mut HashMap<i32, Dirty>,
    ) -> Result<bool> {
        if changes.complete {
            self.by_year.clear();
        }
        for a in changes.rows {
            let Some(period) = Period::parse(&a.period) else {
                continue;
            };
            let (amount_fen, records) = (a.amount_fen, a.records);
            let key = self.key_of(a)?;
            let dirty = if changes.complete {
                None
            } else {
                dirty.get_mut(&period.year)
            };
            self.add(key, period, amount_fen, records, dirty)?;
        }
        self.mark = Some(changes.mark);
        Ok(changes.complete)
    }

    /// Applies the deltas of the store's change log, by its ids (never every total), adding
    /// the changed keys to `dirty` per year and month.
    pub(crate) fn apply_deltas(
        &mut self,
        changes: AccrualDeltas,
        dirty: &mut HashMap<i32, Dirty>,
    ) -> Result<()> {
        for d in &changes.deltas {
            let key = Key {
                beneficiary: self.number(&changes, d.beneficiary)?,
                provider: self.number(&changes, d.provider)?,
                class: d.class,
            };
            self.add(
                key,
                d.period,
                d.amount_fen,
                d.records,
                dirty.get_mut(&d.period.year),
            )?;
        }
        self.mark = Some(changes.mark);
        Ok(())
    }

    /// The number here of the store's id `id`.
    fn number(&mut self, changes: &AccrualDeltas, id: i64) -> Result<u32> {
        if let Some(&n) = self.store_ids.get(&id) {
            return Ok(n);
        }
        let n = self.names.intern_shared(changes.name(id)?);
        self.store_ids.insert(id, n);
        Ok(n)
    }

    /// Adds a change to `key`'s total in `period`, noting it in `dirty` (the period's year's).
    fn add(
        &mut self,
        key: Key,
        period: Period,
        amount_fen: i64,
        records: i64,
        dirty: Option<&mut Dirty>,
    ) -> Result<()> {
        let months = self
            .by_year
            .entry(period.year)
            .or_insert_with(|| vec![MonthAccruals::default(); 12]);
        let m = month_index(period);
        let total = months[m].entry(key).or_insert((0, 0));
        let sum = total
            .0
            .checked_add(amount_fen)
            .zip(total.1.checked_add(records));
        let Some(sum) = sum else {
            return Err(self.overflow(&key, period));
        };
        *total = sum;
        if *total == (0, 0) {
            months[m].remove(&key);
        }
        if let Some(d) = dirty {
            d.mark(m, key, amount_fen);
        }
        Ok(())
    }

    fn key_of(&mut self, a: AccrualRow) -> Result<Key> {
        let class =
            class_of(&a.category, &a.chip_origin, &a.registered_model).ok_or_else(|| {
                SettleError::Store(StoreError::Corrupt(format!(
                    "bad line class ({:?}, {:?}, {:?}) of beneficiary {:?}, provider {:?}",
                    a.category, a.chip_origin, a.registered_model, a.beneficiary, a.provider
                )))
            })?;
        Ok(Key {
            beneficiary: self.names.intern(a.beneficiary),
            provider: self.names.intern(a.provider),
            class,
        })
    }

    fn overflow(&self, key: &Key, period: Period) -> SettleError {
        SettleError::Store(StoreError::Overflow(format!(
            "the accrual of beneficiary {:?}, provider {:?}, period {period} passes 64 bits",
            self.names.name(key.beneficiary),
            self.names.name(key.provider)
        )))
    }

    fn months(&self, year: i32) -> Option<&Vec<MonthAccruals>> {
        self.by_year.get(&year)
    }
}

/// The programmes paying on a line and their effective ratios.
type Ratios = Arc<[(String, Decimal)]>;

/// One line's amounts through the stages.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Line {
    /// round_half_up(base × ratio) (R6).
    demand: Fen,
    /// After the beneficiary cap (R7).
    after_beneficiary: Fen,
    /// After the provider cap.
    after_provider: Fen,
    /// After the pool (R8): the entitlement.
    subsidy: Fen,
}

impl Line {
    fn is_zero(&self) -> bool {
        *self == Line::default()
    }
}

/// One programme's lines of one month, with the sums the stages and later months need.
#[derive(Default)]
struct ProgrammeMonth {
    /// Each line's place in `slots`.
    index: FxHashMap<Key, u32>,
    /// The lines with their keys, where the stages read and write them without hashing
    /// (`None`: a free place, listed in `free`).
    slots: Vec<Option<(Key, Line)>>,
    free: Vec<u32>,
    /// Each beneficiary's lines (places) in key order (the tie order of R7).
    of_beneficiary: FxHashMap<u32, Vec<u32>>,
    /// Every line (place) in key order, for the pool's pass; `None` once a line came or went.
    ordered: Option<Vec<u32>>,
    /// Σ demand and Σ after the beneficiary cap per beneficiary: equal while its cap does not
    /// bind, so a changed prior payment that leaves room for the demand changes nothing.
    demand_by_beneficiary: FxHashMap<u32, Fen>,
    capped_by_beneficiary: FxHashMap<u32, Fen>,
    /// Σ subsidy per beneficiary, per provider and in all: prior payments of later months.
    by_beneficiary: FxHashMap<u32, Fen>,
    by_provider: FxHashMap<u32, Fen>,
    total: Fen,
    /// Σ after beneficiary caps per provider, and the providers whose cap binds now.
    provider_in: FxHashMap<u32, Fen>,
    provider_binding: FxHashSet<u32>,
    /// Σ after provider caps, and whether the pool binds now.
    pool_in: Fen,
    pool_binding: bool,
}

impl ProgrammeMonth {
    fn slot(&self, key: &Key) -> Option<u32> {
        self.index.get(key).copied()
    }

    fn key(&self, slot: u32) -> Key {
        self.slots[slot as usize]
            .as_ref()
            .expect("a line's place")
            .0
    }

    fn line(&self, slot: u32) -> &Line {
        &self.slots[slot as usize]
            .as_ref()
            .expect("a line's place")
            .1
    }

    fn line_mut(&mut self, slot: u32) -> &mut Line {
        &mut self.slots[slot as usize]
            .as_mut()
            .expect("a line's place")
            .1
    }

    /// The places of every line, in no order.
    fn all(&self) -> impl Iterator<Item = u32> + '_ {
        self.index.values().copied()
    }

    /// The place of the line of `key`, added at zero (in key order) when it is not there.
    fn slot_or_add(&mut self, names: &Names, key: Key) -> u32 {
        if let Some(slot) = self.slot(&key) {
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some((key, Line::default()));
                slot
            }
            None => {
                self.slots.push(Some((key, Line::default())));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 lines")
            }
        };
        self.index.insert(key, slot);
        let slots = &self.slots;
        let key_at = |s: u32| slots[s as usize].as_ref().expect("a line's place").0;
        let group = self.of_beneficiary.entry(key.beneficiary).or_default();
        let at = group.partition_point(|s| names.order(&key_at(*s), &key) == Ordering::Less);
        group.insert(at, slot);
        self.ordered = None;
        slot
    }

    fn remove_line(&mut self, key: &Key) {
        let Some(slot) = self.index.remove(key) else {
            return;
        };
        self.slots[slot as usize] = None;
        self.free.push(slot);
        if let Some(group) = self.of_beneficiary.get_mut(&key.beneficiary) {
            group.retain(|s| *s != slot);
            if group.is_empty() {
                self.of_beneficiary.remove(&key.beneficiary);
            }
        }
        self.ordered = None;
    }
}

/// What changed in a month's final amounts of one programme: prior payments of later months.
#[derive(Default)]
struct Changed {
    beneficiaries: FxHashSet<u32>,
    providers: FxHashSet<u32>,
    total: bool,
}

/// A fiscal year's entitlements to date, maintained.
pub(crate) struct MaintainedYear {
    year: i32,
    /// The registry version each month uses (R9).
    pub(crate) versions: Vec<i64>,
    /// How many opening imports were confirmed when built.
    pub(crate) openings: i64,
    opening: Arc<Prior>,
    /// No opening balances: prior payments are the earlier months' alone.
    opening_empty: bool,
    months: Vec<BTreeMap<String, ProgrammeMonth>>,
    /// The effective ratios (R4, R5) per (registry version, beneficiary, class), so a changed
    /// line costs a look-up, not the package comparison.
    ratios: FxHashMap<(i64, u32, Class), Ratios>,
    /// Each beneficiary's cap per programme and registry version (`None`: no cap), so that
    /// a changed line costs no look-up of the registry's grants by name.
    caps: HashMap<String, FxHashMap<(i64, u32), Option<Fen>>>,
    /// Σ subsidies of the year per programme and beneficiary, opening balances excluded.
    entitled: HashMap<String, FxHashMap<u32, Fen>>,
    /// Tells this year from one built before or after it (a figure derived from it may be
    /// kept while the generation is the same, updated by [`MaintainedYear::take_changed`]).
    generation: u64,
    /// The beneficiaries per programme whose entitlement changed since the last
    /// [`MaintainedYear::take_changed`]; `None` while nobody asks.
    changed: Option<HashMap<String, FxHashSet<u32>>>,
}

/// A maintained year's entitlements to date (opening balances excluded), by id.
#[derive(Clone, Copy)]
pub(crate) struct Entitled<'a> {
    year: &'a MaintainedYear,
    names: &'a Names,
}

impl<'a> Entitled<'a> {
    /// Entitlement to date of `programme` for `beneficiary`.
    pub(crate) fn entitled(&self, programme: &str, beneficiary: &str) -> Fen {
        self.names
            .id(beneficiary)
            .and_then(|b| self.year.entitled.get(programme)?.get(&b))
            .copied()
            .unwrap_or_default()
    }

    /// Every beneficiary with an entitlement line this year in `programme`, with it.
    pub(crate) fn entitled_in(&self, programme: &str) -> impl Iterator<Item = (&'a str, Fen)> {
        let names = self.names;
        self.year
            .entitled
            .get(programme)
            .into_iter()
            .flatten()
            .map(move |(b, e)| (names.name(*b), *e))
    }

    /// Every (programme, beneficiary) with an entitlement line this year, with it.
    pub(crate) fn entitled_all(&self) -> impl Iterator<Item = (&'a str, &'a str, Fen)> {
        let names = self.names;
        self.year.entitled.iter().flat_map(move |(p, by)| {
            by.iter()
                .map(move |(b, e)| (p.as_str(), names.name(*b), *e))
        })
    }
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl MaintainedYear {
    /// Builds the year from the maintained accruals: every line is new.
    pub(crate) fn build(
        year: i32,
        versions: Vec<i64>,
        openings: i64,
        opening: Arc<Prior>,
        registries: &HashMap<i64, Arc<Registry>>,
        accruals: &Accruals,
    ) -> MaintainedYear {
        let opening_empty = *opening == Prior::default();
        let mut y = MaintainedYear {
            year,
            versions,
            openings,
            opening,
            opening_empty,
            ratios: FxHashMap::default(),
            caps: HashMap::new(),
            months: (0..12).map(|_| BTreeMap::new()).collect(),
            entitled: HashMap::new(),
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            changed: None,
        };
        let dirty: MonthKeys = (0..12)
            .map(|m| {
                accruals
                    .months(year)
                    .map(|months| months[m].keys().copied().collect())
                    .unwrap_or_default()
            })
            .collect();
        y.catch_up(registries, accruals, dirty);
        y
    }

    /// The year's entitlements read with the names of `accruals` (which this year was
    /// caught up with).
    pub(crate) fn with<'a>(&'a self, accruals: &'a Accruals) -> Entitled<'a> {
        Entitled {
            year: self,
            names: &accruals.names,
        }
    }

    /// See [`MaintainedYear::take_changed`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The (programme, beneficiary) pairs whose entitlement changed since the last call (the
    /// first call: none, and from then on they are kept, until [`MaintainedYear::forget_changes`]).
    /// A figure derived from every entitlement of this year's [`MaintainedYear::generation`]
    /// stays current by recomputing these pairs' parts only.
    pub(crate) fn take_changed(&mut self, accruals: &Accruals) -> HashMap<String, Vec<Arc<str>>> {
        let changed = self.changed.replace(HashMap::new()).unwrap_or_default();
        changed
            .into_iter()
            .map(|(programme, beneficiaries)| {
                let names = beneficiaries
                    .into_iter()
                    .map(|b| accruals.names.names[b as usize].clone())
                    .collect();
                (programme, names)
            })
            .collect()
    }

    /// How many pairs [`MaintainedYear::take_changed`] would return.
    pub(crate) fn changed_len(&self) -> usize {
        self.changed
            .as_ref()
            .map_or(0, |by| by.values().map(|b| b.len()).sum())
    }

    /// Stops keeping the changed pairs (nobody derives a figure from them any more).
    pub(crate) fn forget_changes(&mut self) {
        self.changed = None;
    }

    /// Catches up on the keys waiting in `dirty`, as far as `scope` asks: all of them, or
    /// only a beneficiary's or a slice of them while no shared limit can bind
    /// ([`MaintainedYear::limits_clear`]); otherwise all of them.
    pub(crate) fn catch_up_waiting(
        &mut self,
        registries: &HashMap<i64, Arc<Registry>>,
        accruals: &Accruals,
        dirty: &mut Dirty,
        scope: Scope<'_>,
    ) {
        if dirty.is_empty() {
            return;
        }
        let keys = match scope {
            Scope::All => dirty.take_all(),
            _ if !self.limits_clear(registries, &accruals.names, dirty) => dirty.take_all(),
            Scope::Beneficiary(name) => match accruals.names.id(name) {
                Some(b) => dirty.take_beneficiary(b),
                // Never seen in the accruals: none of its keys waits.
                None => return,
            },
            Scope::Slice(n) => dirty.take_some(n),
        };
        if keys.iter().all(|k| k.is_empty()) {
            return;
        }
        self.catch_up(registries, accruals, keys);
    }

    /// Whether no shared limit (a programme's pool, a provider's cap) binds in any month of
    /// the year, nor can bind once the keys waiting in `dirty` are caught up on: each has at
    /// least the waiting changes' bound left in every month. A stage that does not bind
    /// passes every line through, so a beneficiary's entitlements then depend on its own
    /// lines alone (its demand and its own cap), and catching up on some of the waiting keys
    /// gives the figures of those keys as if the others had not changed yet: the waiting
    /// keys may be caught up on in parts.
    ///
    /// The months' sums through a month are Σ opening + Σ amounts of the months up to it; a
    /// stage binds in a month when that sum passes its limit. Each cap stage passes on at
    /// most what its inputs moved (through any month, a beneficiary's sum after its cap is
    /// min(its demand's sum, cap)), so catching up moves every such sum by at most the bound.
    fn limits_clear(
        &self,
        registries: &HashMap<i64, Arc<Registry>>,
        names: &Names,
        dirty: &Dirty,
    ) -> bool {
        let bound = dirty.bound;
        let mut programmes: Vec<&str> = Vec::new();
        for v in &self.versions {
            // A month's registry not at hand: its limits are unknown.
            let Some(r) = registries.get(v) else {
                return false;
            };
            for p in r.programmes_of_year(self.year) {
                if !programmes.contains(&p.id.as_str()) {
                    programmes.push(&p.id);
                }
            }
        }
        for id in programmes {
            let opening = |f: &dyn Fn(&Prior) -> Fen| {
                if self.opening_empty {
                    0
                } else {
                    i128::from(f(&self.opening).0)
                }
            };
            let mut through = opening(&|o| o.programme(id));
            let mut through_provider: FxHashMap<u32, i128> = FxHashMap::default();
            for m in 0..12 {
                if let Some(pm) = self.months[m].get(id) {
                    if pm.pool_binding || !pm.provider_binding.is_empty() {
                        return false;
                    }
                    through += i128::from(pm.total.0);
                    for (q, v) in &pm.by_provider {
                        *through_provider
                            .entry(*q)
                            .or_insert_with(|| opening(&|o| o.provider(id, names.name(*q)))) +=
                            i128::from(v.0);
                    }
                }
                let Some(programme) = registries
                    .get(&self.versions[m])
                    .and_then(|r| r.programme(id))
                else {
                    continue;
                };
                if let Some(pool) = programme.pool
                    && i128::from(pool.0) - through < bound
                {
                    return false;
                }
                if let Some(cap) = programme.provider_cap {
                    let left = |sum: i128| i128::from(cap.0) - sum >= bound;
                    if !through_provider.values().all(|sum| left(*sum)) {
                        return false;
                    }
                    // A provider with waiting keys and nothing yet this year: its opening.
                    for q in dirty.providers.keys() {
                        if !through_provider.contains_key(q)
                            && !left(opening(&|o| o.provider(id, names.name(*q))))
                        {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    /// Recomputes what the keys changed in each month (`dirty`, by month index) can move.
    pub(crate) fn catch_up(
        &mut self,
        registries: &HashMap<i64, Arc<Registry>>,
        accruals: &Accruals,
        dirty: MonthKeys,
    ) {
        let empty = MonthAccruals::default();
        let mut prior_changed: HashMap<String, Changed> = HashMap::new();
        for (m, keys) in dirty.into_iter().enumerate() {
            if keys.is_empty() && prior_changed.is_empty() {
                continue;
            }
            let registry = registries[&self.versions[m]].clone();
            let bases = accruals
                .months(self.year)
                .map_or(&empty, |months| &months[m]);
            let out =
                self.update_month(m, &registry, bases, &accruals.names, &keys, &prior_changed);
            for (programme, c) in out {
                let slot = prior_changed.entry(programme).or_default();
                slot.beneficiaries.extend(c.beneficiaries);
                slot.providers.extend(c.providers);
                slot.total |= c.total;
            }
        }
    }

    fn prior_beneficiary(&self, m: usize, programme: &str, names: &Names, beneficiary: u32) -> Fen {
        let mut sum = if self.opening_empty {
            Fen::ZERO
        } else {
            self.opening.beneficiary(programme, names.name(beneficiary))
        };
        for month in &self.months[..m] {
            if let Some(v) = month
                .get(programme)
                .and_then(|p| p.by_beneficiary.get(&beneficiary))
            {
                sum = sum.plus(*v);
            }
        }
        sum
    }

    fn prior_provider(&self, m: usize, programme: &str, names: &Names, provider: u32) -> Fen {
        let mut sum = if self.opening_empty {
            Fen::ZERO
        } else {
            self.opening.provider(programme, names.name(provider))
        };
        for month in &self.months[..m] {
            if let Some(v) = month
                .get(programme)
                .and_then(|p| p.by_provider.get(&provider))
            {
                sum = sum.plus(*v);
            }
        }
        sum
    }

    fn prior_programme(&self, m: usize, programme: &str) -> Fen {
        let mut sum = if self.opening_empty {
            Fen::ZERO
        } else {
            self.opening.programme(programme)
        };
        for month in &self.months[..m] {
            if let Some(p) = month.get(programme) {
                sum = sum.plus(p.total);
            }
        }
        sum
    }

    /// One month: demand of the changed keys, then the stages of the groups they (or changed
    /// prior payments) can move. Returns what changed in the month's final amounts.
    fn update_month(
        &mut self,
        m: usize,
        registry: &Registry,
        bases: &MonthAccruals,
        names: &Names,
        keys: &FxHashSet<Key>,
        prior_changed: &HashMap<String, Changed>,
    ) -> HashMap<String, Changed> {
        let year = self.year;
        let version = self.versions[m];
        // R4-R6: the demand of each changed line, per programme that pays on it.
        let mut beneficiaries_dirty: FxHashMap<String, FxHashSet<u32>> = FxHashMap::default();
        let mut demands: Vec<(usize, Fen)> = Vec::new();
        for key in keys {
            demands.clear();
            let ratios: Option<Ratios> = bases.get(key).map(|&(amount, _)| {
                let ratios = self
                    .ratios
                    .entry((version, key.beneficiary, key.class))
                    .or_insert_with(|| {
                        effective_ratios(registry, year, names.name(key.beneficiary), key.class)
                            .into_iter()
                            .map(|(p, r)| (p.id.clone(), r))
                            .collect()
                    })
                    .clone();
                for (i, (_, r)) in ratios.iter().enumerate() {
                    demands.push((i, Fen(amount).times_ratio_half_up(*r)));
                }
                ratios
            });
            let pays = |id: &str| {
                ratios
                    .as_ref()
                    .is_some_and(|r| r.iter().any(|(p, _)| p == id))
            };
            let month = &mut self.months[m];
            for (id, pm) in month.iter_mut() {
                if pays(id) {
                    continue;
                }
                // The line is gone (or this programme no longer pays on it): it goes through
                // the stages at zero and is dropped once every amount is zero.
                if let Some(slot) = pm.slot(key) {
                    let line = pm.line_mut(slot);
                    let demand = line.demand;
                    line.demand = Fen::ZERO;
                    add(
                        &mut pm.demand_by_beneficiary,
                        key.beneficiary,
                        Fen::ZERO.minus(demand),
                    );
                    mark_dirty(&mut beneficiaries_dirty, id, key.beneficiary);
                }
            }
            for &(i, demand) in &demands {
                let id = ratios.as_ref().expect("demands come with ratios")[i]
                    .0
                    .as_str();
                if !month.contains_key(id) {
                    month.insert(id.to_owned(), ProgrammeMonth::default());
                }
                let pm = month.get_mut(id).expect("inserted above");
                let slot = pm.slot_or_add(names, *key);
                let line = pm.line_mut(slot);
                let old = line.demand;
                line.demand = demand;
                add(
                    &mut pm.demand_by_beneficiary,
                    key.beneficiary,
                    demand.minus(old),
                );
                mark_dirty(&mut beneficiaries_dirty, id, key.beneficiary);
            }
        }
        let mut programmes: Vec<String> = beneficiaries_dirty.keys().cloned().collect();
        programmes.extend(
            prior_changed
                .keys()
                .filter(|p| !beneficiaries_dirty.contains_key(*p))
                .cloned(),
        );
        let mut out = HashMap::new();
        for id in programmes {
            if !self.months[m].contains_key(&id) {
                continue;
            }
            let Some(programme) = registry.programme(&id) else {
                continue;
            };
            let mut beneficiaries = beneficiaries_dirty.remove(&id).unwrap_or_default();
            let none = Changed::default();
            let prior = prior_changed.get(&id).unwrap_or(&none);
            // Each beneficiary's cap in this programme, looked up in the registry once.
            let mut caps = self.caps.remove(&id).unwrap_or_default();
            let mut cap_of = |b: u32| {
                *caps
                    .entry((version, b))
                    .or_insert_with(|| registry.beneficiary_cap(programme, names.name(b)))
            };
            if let Some(pm) = self.months[m].get(&id) {
                for &b in &prior.beneficiaries {
                    if beneficiaries.contains(&b) {
                        continue;
                    }
                    let (Some(cap), Some(&wanted)) = (cap_of(b), pm.demand_by_beneficiary.get(&b))
                    else {
                        continue;
                    };
                    let capped = pm
                        .capped_by_beneficiary
                        .get(&b)
                        .copied()
                        .unwrap_or_default();
                    let left = cap
                        .minus(self.prior_beneficiary(m, &id, names, b))
                        .max(Fen::ZERO);
                    // Not binding before (every line kept its demand) nor now: nothing moves.
                    if capped == wanted && wanted <= left {
                        continue;
                    }
                    beneficiaries.insert(b);
                }
            }
            // Prior payments of the groups to recompute, read before the month is borrowed.
            let mut beneficiaries: Vec<(u32, Option<Fen>)> = beneficiaries
                .into_iter()
                .map(|b| {
                    let left = cap_of(b).map(|cap| {
                        cap.minus(self.prior_beneficiary(m, &id, names, b))
                            .max(Fen::ZERO)
                    });
                    (b, left)
                })
                .collect();
            self.caps.insert(id.clone(), caps);
            beneficiaries.sort_unstable();
            let provider_prior: FxHashMap<u32, Fen> = match programme.provider_cap {
                Some(_) => {
                    let mut providers: FxHashSet<u32> = prior.providers.clone();
                    if let Some(pm) = self.months[m].get(&id) {
                        for (b, _) in &beneficiaries {
                            for slot in pm.of_beneficiary.get(b).into_iter().flatten() {
                                providers.insert(pm.key(*slot).provider);
                            }
                        }
                    }
                    providers
                        .into_iter()
                        .map(|p| (p, self.prior_provider(m, &id, names, p)))
                        .collect()
                }
                None => FxHashMap::default(),
            };
            let pool_left = programme
                .pool
                .map(|pool| pool.minus(self.prior_programme(m, &id)).max(Fen::ZERO));
            let pm = self.months[m].get_mut(&id).expect("checked above");
            let changed = limit_programme(
                pm,
                names,
                &beneficiaries,
                programme.provider_cap,
                &provider_prior,
                &prior.providers,
                pool_left,
                prior.total,
            );
            if changed.is_empty() {
                continue;
            }
            // Every line in `changed` moved (old ≠ new): its beneficiary's entitlement changed.
            let entitled = self.entitled.entry(id.clone()).or_default();
            let mut noted = self
                .changed
                .as_mut()
                .map(|by| by.entry(id.clone()).or_default());
            let c: &mut Changed = out.entry(id).or_default();
            c.total = true;
            for (key, old, new) in changed {
                let e = entitled.entry(key.beneficiary).or_default();
                *e = e.minus(old).plus(new);
                if let Some(noted) = &mut noted {
                    noted.insert(key.beneficiary);
                }
                c.beneficiaries.insert(key.beneficiary);
                c.providers.insert(key.provider);
            }
        }
        // Lines that went to zero and have no base any more are dropped.
        for pm in self.months[m].values_mut() {
            for key in keys {
                if pm.slot(key).is_some_and(|slot| pm.line(slot).is_zero())
                    && !bases.contains_key(key)
                {
                    pm.remove_line(key);
                }
            }
        }
        self.months[m].retain(|_, pm| !pm.index.is_empty() || pm.total != Fen::ZERO);
        out
    }
}

/// Notes that `beneficiary`'s lines of `programme` must go through the stages again, copying
/// the programme's id only the first time.
fn mark_dirty(dirty: &mut FxHashMap<String, FxHashSet<u32>>, programme: &str, beneficiary: u32) {
    match dirty.get_mut(programme) {
        Some(set) => {
            set.insert(beneficiary);
        }
        None => {
            dirty.insert(programme.to_owned(), FxHashSet::from_iter([beneficiary]));
        }
    }
}

/// Adds `delta` to `key`'s sum.
fn add(sums: &mut FxHashMap<u32, Fen>, key: u32, delta: Fen) {
    let v = sums.entry(key).or_default();
    *v = v.plus(delta);
}

/// The three stages of one programme's month for the groups that can move. `beneficiaries`:
/// the beneficiaries to recompute with what is left of their cap (`None`: no cap);
/// `provider_prior`: prior payments of the providers that may need their stage (provider cap
/// `provider_cap`); `providers_prior_changed`: providers whose prior changed; `pool_left`: what
/// is left of the pool; `total_prior_changed`: the programme's prior changed. Returns the lines
/// whose subsidy changed, with the old and new subsidy.
#[allow(clippy::too_many_arguments)]
fn limit_programme(
    pm: &mut ProgrammeMonth,
    names: &Names,
    beneficiaries: &[(u32, Option<Fen>)],
    provider_cap: Option<Fen>,
    provider_prior: &FxHashMap<u32, Fen>,
    providers_prior_changed: &FxHashSet<u32>,
    pool_left: Option<Fen>,
    total_prior_changed: bool,
) -> Vec<(Key, Fen, Fen)> {
    // Beneficiary caps: each beneficiary's lines on their own, in key order.
    let mut stage_a: Vec<u32> = Vec::new();
    {
        let ProgrammeMonth {
            slots,
            of_beneficiary,
            provider_in,
            capped_by_beneficiary,
            ..
        } = &mut *pm;
        let mut amounts: Vec<Fen> = Vec::new();
        for (b, left) in beneficiaries {
            let Some(group) = of_beneficiary.get(b) else {
                continue;
            };
            amounts.clear();
            amounts.extend(group.iter().map(|s| {
                slots[*s as usize]
                    .as_ref()
                    .expect("a line's place")
                    .1
                    .demand
            }));
            let shares = left.map(|left| limited(&amounts, left));
            for (i, slot) in group.iter().enumerate() {
                let share = shares.as_ref().map_or(amounts[i], |s| s[i]);
                let (key, line) = slots[*slot as usize].as_mut().expect("a line's place");
                if line.after_beneficiary != share {
                    let v = provider_in.entry(key.provider).or_default();
                    *v = v.minus(line.after_beneficiary).plus(share);
                    add(
                        capped_by_beneficiary,
                        key.beneficiary,
                        share.minus(line.after_beneficiary),
                    );
                    line.after_beneficiary = share;
                    stage_a.push(*slot);
                }
            }
        }
    }
    // Provider caps: copied through while a provider's cap binds neither before nor after,
    // otherwise one pass over that provider's lines.
    let mut stage_b: Vec<u32> = Vec::new();
    let mut set_after_provider = |pm: &mut ProgrammeMonth, slot: u32, v: Fen| {
        let line = pm.line_mut(slot);
        let old = line.after_provider;
        if old != v {
            line.after_provider = v;
            pm.pool_in = pm.pool_in.minus(old).plus(v);
            stage_b.push(slot);
        }
    };
    match provider_cap {
        None => {
            for &slot in &stage_a {
                let v = pm.line(slot).after_beneficiary;
                set_after_provider(pm, slot, v);
            }
        }
        Some(cap) => {
            let mut providers: FxHashSet<u32> =
                stage_a.iter().map(|s| pm.key(*s).provider).collect();
            providers.extend(providers_prior_changed.iter().copied());
            let mut passes: FxHashMap<u32, Fen> = FxHashMap::default();
            for provider in providers {
                let prior = provider_prior.get(&provider).copied().unwrap_or_default();
                let left = cap.minus(prior).max(Fen::ZERO);
                let wanted = pm.provider_in.get(&provider).copied().unwrap_or_default();
                let binding = wanted > left;
                let was = pm.provider_binding.contains(&provider);
                if binding || was {
                    passes.insert(provider, left);
                }
                if binding {
                    pm.provider_binding.insert(provider);
                } else {
                    pm.provider_binding.remove(&provider);
                }
            }
            for &slot in &stage_a {
                if !passes.contains_key(&pm.key(slot).provider) {
                    let v = pm.line(slot).after_beneficiary;
                    set_after_provider(pm, slot, v);
                }
            }
            if !passes.is_empty() {
                let mut groups: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
                for slot in pm.all() {
                    let provider = pm.key(slot).provider;
                    if passes.contains_key(&provider) {
                        groups.entry(provider).or_default().push(slot);
                    }
                }
                for (provider, mut group) in groups {
                    group.sort_unstable_by(|a, b| names.order(&pm.key(*a), &pm.key(*b)));
                    let amounts: Vec<Fen> = group
                        .iter()
                        .map(|s| pm.line(*s).after_beneficiary)
                        .collect();
                    let shares = limited(&amounts, passes[&provider]);
                    for (slot, share) in group.into_iter().zip(shares) {
                        set_after_provider(pm, slot, share);
                    }
                }
            }
        }
    }
    // The pool: copied through while it binds neither before nor after, otherwise one pass.
    let mut changed = Vec::new();
    let mut set_subsidy = |pm: &mut ProgrammeMonth, slot: u32, v: Fen| {
        let (key, line) = pm.slots[slot as usize].as_mut().expect("a line's place");
        let (key, old) = (*key, line.subsidy);
        if old != v {
            line.subsidy = v;
            add(&mut pm.by_beneficiary, key.beneficiary, v.minus(old));
            add(&mut pm.by_provider, key.provider, v.minus(old));
            pm.total = pm.total.minus(old).plus(v);
            changed.push((key, old, v));
        }
    };
    let pass = match pool_left {
        None => None,
        Some(left) => {
            let binding = pm.pool_in > left;
            let was = pm.pool_binding;
            pm.pool_binding = binding;
            ((binding || was) && (!stage_b.is_empty() || total_prior_changed || binding != was))
                .then_some(left)
        }
    };
    match pass {
        Some(left) => {
            // Every line of the programme in key order: one pass over the cached amounts.
            let ordered = match pm.ordered.take() {
                Some(ordered) => ordered,
                None => {
                    let mut all: Vec<u32> = pm.all().collect();
                    all.sort_unstable_by(|a, b| names.order(&pm.key(*a), &pm.key(*b)));
                    all
                }
            };
            let amounts: Vec<Fen> = ordered.iter().map(|s| pm.line(*s).after_provider).collect();
            let shares = limited(&amounts, left);
            for (slot, share) in ordered.iter().zip(shares) {
                set_subsidy(pm, *slot, share);
            }
            pm.ordered = Some(ordered);
        }
        None if pm.pool_binding => {}
        None => {
            for &slot in &stage_b {
                let v = pm.line(slot).after_provider;
                set_subsidy(pm, slot, v);
            }
        }
    }
    changed
}
