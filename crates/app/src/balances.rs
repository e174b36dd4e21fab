//! Balances and overviews (docs/rules.md R12): a beneficiary's cap, paid, pending and remaining
//! per programme-year, what was posted month by month, and each programme's totals for the
//! finance overview. Look-ups are cached and recomputed only when what they derive from changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_domain::usage::Period;
use suanli_store::ledger::{self as rows};
use suanli_store::sql::Sql;
use suanli_store::{Store, StoreError};

use crate::registry::{load_registry, registry_of};
use crate::settlement::{Result, SettleError, bases_to, entitlements, in_tx, period_versions};

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
    let openings = crate::opening::confirmed_count(tx)?;
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
            openings,
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

/// What posted runs and confirmed opening balances paid each beneficiary, per programme;
/// recomputed when the runs or the opening balances changed.
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
pub fn programme_overview(
    store: &mut dyn Store,
    cache: &mut PendingCache,
    year: i32,
) -> Result<Vec<ProgrammeOverview>> {
    let (current_version, registry, runs, generation) = cached_state(store, cache)?;
    let entitled = year_entitlements(store, cache, year, current_version, runs, generation)?;
    let mut out = Vec::new();
    for p in registry.programmes_of_year(year) {
        let (posted, opening) = in_tx(store, |tx| {
            Ok((
                rows::posted_lines(tx, &p.id)?,
                crate::opening::opening_paid(tx)?,
            ))
        })?;
        let mut paid_by: HashMap<String, Fen> = HashMap::new();
        for ((beneficiary, programme), amount) in opening {
            if programme == p.id {
                let slot = paid_by.entry(beneficiary).or_default();
                *slot = slot.plus(amount);
            }
        }
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
