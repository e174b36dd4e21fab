//! An independent restatement of docs/rules.md R2-R9 over a generated [`World`], written from the
//! rules and not from the engine: integer arithmetic in fen and permille, no engine helper
//! called. The property tests compare the engine with it to the fen.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike};

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use suanli_domain::registry::Class;
use suanli_domain::settlement::{LineKey, StatementLine};

use super::world::{RecordSpec, World};

/// A line key as indices: (beneficiary, provider, class). With single-digit ids the order of
/// the tuple is the order of the line key (beneficiary, provider, category, chip origin,
/// registered-model flag).
pub type Key = (usize, usize, usize);

/// One programme's row for one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub programme: usize,
    pub key: Key,
    pub base: i64,
    /// Permille.
    pub ratio: u32,
    pub demand: i64,
    pub subsidy: i64,
    pub cut_by: Option<&'static str>,
}

/// (year, month) of an instant in Asia/Shanghai, which is UTC+8 all year.
pub fn period_of(unix_seconds: i64) -> (i32, u32) {
    let local = DateTime::from_timestamp(unix_seconds + 8 * 3600, 0).expect("in range");
    (local.year(), local.month())
}

/// R2, R3 and the registry's ids: the line a record counts on, or every reject code that
/// applies to it (the rules do not say which one to report first).
pub fn validate(world: &World, r: &RecordSpec) -> Result<Key, Vec<&'static str>> {
    let mut codes = Vec::new();
    if r.provider.is_none() {
        codes.push("unknown_provider");
    }
    if r.beneficiary.is_none() {
        codes.push("unknown_beneficiary");
    }
    if r.sku.is_none() {
        codes.push("unknown_sku");
    }
    if r.end <= r.start {
        codes.push("end_not_after_start");
    }
    if let Some(sku) = r.sku.map(|s| &world.skus[s]) {
        if r.provider.is_some_and(|p| p != sku.provider) {
            codes.push("sku_not_of_provider");
        }
        // R2: amount ≤ quantity × list price + 0.01, in thousandths of a fen.
        if let Some(price) = sku.list_price
            && i128::from(r.amount) * 1000 > i128::from(r.quantity_milli) * i128::from(price) + 1000
        {
            codes.push("above_list_price");
        }
        // R3: quantity ≤ capacity × hours; capacity in tenths per hour, quantity in thousandths.
        if let Some(capacity) = sku.capacity
            && i128::from(r.quantity_milli) * 36
                > i128::from(capacity) * i128::from(r.end - r.start)
        {
            codes.push("over_capacity");
        }
    }
    match (codes.is_empty(), r.beneficiary, r.provider, r.sku) {
        (true, Some(b), Some(p), Some(s)) => Ok((b, p, world.skus[s].class)),
        _ => Err(codes),
    }
}

/// R2, R6: Σ amount per line of the accepted records whose end lies in `period`.
pub fn bases(world: &World, records: &[RecordSpec], period: (i32, u32)) -> BTreeMap<Key, i64> {
    let mut out: BTreeMap<Key, i64> = BTreeMap::new();
    for r in records.iter().filter(|r| period_of(r.end) == period) {
        if let Ok(key) = validate(world, r) {
            *out.entry(key).or_default() += r.amount;
        }
    }
    out
}

/// R4, R5 and the choices: the programmes that pay a beneficiary's line of `class`, with their
/// effective ratios (permille), the most favourable package chosen.
pub fn package(world: &World, beneficiary: usize, class: usize) -> Vec<(usize, u32)> {
    let eligible = |p: usize| -> Option<u32> {
        world.grants[beneficiary][p]?;
        world.rate(p, class).filter(|r| *r > 0)
    };
    let mut packages: Vec<Vec<(usize, u32)>> = Vec::new();
    let mut joined = vec![false; world.programmes.len()];
    for rule in &world.stacking {
        if let (Some(primary), Some(top_up), Some(ceiling)) = (
            eligible(rule.primary),
            eligible(rule.top_up),
            world.ceiling(rule, class),
        ) {
            // R5: the top-up pays min(its own ratio, ceiling − primary ratio).
            let top = top_up.min(ceiling.saturating_sub(primary));
            packages.push(vec![(rule.primary, primary), (rule.top_up, top)]);
            joined[rule.primary] = true;
            joined[rule.top_up] = true;
        }
    }
    for (p, joined) in joined.iter().enumerate() {
        if let (Some(r), false) = (eligible(p), *joined) {
            packages.push(vec![(p, r)]);
        }
    }
    // 从优: the highest combined ratio; ties to the stacked pair, then the higher funder level
    // (a pair's primary's), then the lower programme id.
    let rank = |pk: &Vec<(usize, u32)>| {
        let total: u32 = pk.iter().map(|(_, r)| r).sum();
        (
            total,
            pk.len(),
            std::cmp::Reverse(world.programmes[pk[0].0].funder),
            std::cmp::Reverse(pk[0].0),
        )
    };
    let mut best: Option<Vec<(usize, u32)>> = None;
    for pk in packages {
        if best.as_ref().is_none_or(|b| rank(&pk) > rank(b)) {
            best = Some(pk);
        }
    }
    best.unwrap_or_default()
        .into_iter()
        .filter(|(_, r)| *r > 0)
        .collect()
}

/// What each programme paid earlier in the year, per beneficiary, per provider and in all.
#[derive(Clone, Debug, Default)]
pub struct Paid {
    pub beneficiary: BTreeMap<(usize, usize), i64>,
    pub provider: BTreeMap<(usize, usize), i64>,
    pub programme: BTreeMap<usize, i64>,
}

impl Paid {
    /// A payment of `programme`; `provider` `None` counts against the beneficiary cap and the
    /// pool only.
    pub fn add(&mut self, programme: usize, beneficiary: usize, provider: Option<usize>, fen: i64) {
        *self
            .beneficiary
            .entry((programme, beneficiary))
            .or_default() += fen;
        if let Some(p) = provider {
            *self.provider.entry((programme, p)).or_default() += fen;
        }
        *self.programme.entry(programme).or_default() += fen;
    }
}

/// Largest remainder at fen precision: parts proportional to `weights` summing to `available`;
/// each leftover fen goes to the largest remainder not yet served, the earlier line on ties.
pub fn largest_remainder(weights: &[i64], available: i64) -> Vec<i64> {
    let total: i128 = weights.iter().map(|w| i128::from(*w)).sum();
    let mut parts: Vec<i64> = Vec::new();
    let mut remainders: Vec<Option<i128>> = Vec::new();
    for w in weights {
        let product = i128::from(*w) * i128::from(available);
        parts.push(i64::try_from(product / total).expect("part fits"));
        remainders.push(Some(product % total));
    }
    let mut left = available - parts.iter().sum::<i64>();
    while left > 0 {
        let mut pick: Option<usize> = None;
        for (i, r) in remainders.iter().enumerate() {
            if let Some(r) = r
                && pick.is_none_or(|p| *r > remainders[p].expect("picked is open"))
            {
                pick = Some(i);
            }
        }
        let i = pick.expect("a remainder is open for every leftover fen");
        parts[i] += 1;
        remainders[i] = None;
        left -= 1;
    }
    parts
}

/// Limits the lines at `indices` to `left`, sharing by largest remainder when they want more.
fn limit(lines: &mut [Line], indices: &[usize], left: i64, stage: &'static str) {
    let weights: Vec<i64> = indices.iter().map(|&i| lines[i].subsidy).collect();
    if weights.iter().sum::<i64>() <= left {
        return;
    }
    for (&i, share) in indices.iter().zip(largest_remainder(&weights, left.max(0))) {
        if share < lines[i].subsidy {
            lines[i].subsidy = share;
            lines[i].cut_by = Some(stage);
        }
    }
}

/// R6-R8 for one period: lines sorted by programme, then key.
pub fn settle(world: &World, bases: &BTreeMap<Key, i64>, paid: &Paid) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    for (&key, &base) in bases {
        for (programme, ratio) in package(world, key.0, key.2) {
            // R1/R6: half-up to the fen, once per line; base and ratio are never negative.
            let demand =
                i64::try_from((i128::from(base) * i128::from(ratio) + 500) / 1000).expect("fits");
            lines.push(Line {
                programme,
                key,
                base,
                ratio,
                demand,
                subsidy: demand,
                cut_by: None,
            });
        }
    }
    lines.sort_by_key(|l| (l.programme, l.key));
    for (p, spec) in world.programmes.iter().enumerate() {
        let mine: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].programme == p)
            .collect();
        // R7: beneficiary caps, the grant's override first.
        for b in 0..world.grants.len() {
            let cap = world.grants[b][p].flatten().or(spec.beneficiary_cap);
            if let Some(cap) = cap {
                let group: Vec<usize> = mine
                    .iter()
                    .copied()
                    .filter(|&i| lines[i].key.0 == b)
                    .collect();
                let left = cap - paid.beneficiary.get(&(p, b)).copied().unwrap_or(0);
                limit(&mut lines, &group, left.max(0), "beneficiary_cap");
            }
        }
        // R7: provider caps.
        if let Some(cap) = spec.provider_cap {
            for provider in 0..super::world::PROVIDERS {
                let group: Vec<usize> = mine
                    .iter()
                    .copied()
                    .filter(|&i| lines[i].key.1 == provider)
                    .collect();
                let left = cap - paid.provider.get(&(p, provider)).copied().unwrap_or(0);
                limit(&mut lines, &group, left.max(0), "provider_cap");
            }
        }
        // R8: the pool over all the programme's lines.
        if let Some(pool) = spec.pool {
            let left = pool - paid.programme.get(&p).copied().unwrap_or(0);
            limit(&mut lines, &mine, left.max(0), "pool");
        }
    }
    lines
}

/// R9: the entitlement of each month 1..=`months.len()` of 2025 from the records that belong to
/// it now, the earlier months' entitlements counting as paid.
pub fn entitlements(world: &World, records: &[RecordSpec], months: u32) -> Vec<Vec<Line>> {
    let mut paid = Paid::default();
    let mut out = Vec::new();
    for month in 1..=months {
        let lines = settle(world, &bases(world, records, (2025, month)), &paid);
        for l in &lines {
            paid.add(l.programme, l.key.0, Some(l.key.1), l.subsidy);
        }
        out.push(lines);
    }
    out
}

/// The index in an id such as `b3`; an id the world cannot have maps to `usize::MAX`.
fn index(text: &str, prefix: &str) -> usize {
    text.strip_prefix(prefix)
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// An engine line key in the model's terms.
pub fn key_from_engine(key: &LineKey) -> Key {
    (
        index(&key.beneficiary, "b"),
        index(&key.provider, "pv"),
        Class::ALL
            .iter()
            .position(|c| *c == key.class)
            .unwrap_or(usize::MAX),
    )
}

/// An engine line in the model's terms, so the two compare with `==`. An id or ratio the world
/// cannot have maps to a value no model line has.
pub fn from_engine(l: &StatementLine) -> Line {
    let ratio = l.ratio * Decimal::from(1000);
    Line {
        programme: index(&l.programme, "prog"),
        key: key_from_engine(&l.key),
        base: l.base.0,
        ratio: if ratio.fract().is_zero() {
            ratio.to_u32().unwrap_or(u32::MAX)
        } else {
            u32::MAX
        },
        demand: l.demand.0,
        subsidy: l.subsidy.0,
        cut_by: l.cut_by.map(|c| c.as_str()),
    }
}
