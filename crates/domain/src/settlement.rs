//! The subsidy engine: from line bases to statement lines for one period (docs/rules.md R4-R8).
//! Pure and deterministic (R11): the same registry, bases and prior payments give the same
//! statement, whatever order the inputs came in.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use rust_decimal::Decimal;

use crate::money::{Fen, share_largest_remainder};
use crate::registry::{Class, Funder, Programme, Registry, lookup_ratio};
use crate::usage::Period;

/// A settlement line's key (R6): (beneficiary, provider, category, chip origin, registered-model
/// flag). The derived order is the statement's sort order and the tie order of R7.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineKey {
    pub beneficiary: String,
    pub provider: String,
    pub class: Class,
}

/// The stage that last reduced a line (R8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CutBy {
    BeneficiaryCap,
    ProviderCap,
    Pool,
}

impl CutBy {
    pub fn as_str(self) -> &'static str {
        match self {
            CutBy::BeneficiaryCap => "beneficiary_cap",
            CutBy::ProviderCap => "provider_cap",
            CutBy::Pool => "pool",
        }
    }

    pub fn parse(text: &str) -> Option<CutBy> {
        match text {
            "beneficiary_cap" => Some(CutBy::BeneficiaryCap),
            "provider_cap" => Some(CutBy::ProviderCap),
            "pool" => Some(CutBy::Pool),
            _ => None,
        }
    }
}

impl fmt::Display for CutBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a programme already paid earlier in its fiscal year, counted against caps and pools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prior {
    by_beneficiary: HashMap<(String, String), Fen>,
    by_provider: HashMap<(String, String), Fen>,
    by_programme: HashMap<String, Fen>,
}

impl Prior {
    /// Adds a payment of `programme` on a (beneficiary, provider) pair. `provider` may be empty
    /// when unknown: the payment then counts against the beneficiary cap and pool only.
    pub fn add(&mut self, programme: &str, beneficiary: &str, provider: &str, amount: Fen) {
        let b = self
            .by_beneficiary
            .entry((programme.to_owned(), beneficiary.to_owned()))
            .or_default();
        *b = b.plus(amount);
        if !provider.is_empty() {
            let p = self
                .by_provider
                .entry((programme.to_owned(), provider.to_owned()))
                .or_default();
            *p = p.plus(amount);
        }
        let t = self.by_programme.entry(programme.to_owned()).or_default();
        *t = t.plus(amount);
    }

    pub fn beneficiary(&self, programme: &str, beneficiary: &str) -> Fen {
        self.by_beneficiary
            .get(&(programme.to_owned(), beneficiary.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    pub fn provider(&self, programme: &str, provider: &str) -> Fen {
        self.by_provider
            .get(&(programme.to_owned(), provider.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    pub fn programme(&self, programme: &str) -> Fen {
        self.by_programme
            .get(programme)
            .copied()
            .unwrap_or_default()
    }
}

/// One programme's row for one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementLine {
    pub programme: String,
    pub period: Period,
    pub key: LineKey,
    pub base: Fen,
    /// The programme's effective ratio on this line (after stacking).
    pub ratio: Decimal,
    /// round_half_up(base × ratio) before caps and pool (R6).
    pub demand: Fen,
    /// What is paid after caps and pool (R7, R8).
    pub subsidy: Fen,
    pub cut_by: Option<CutBy>,
}

/// A period's statement: lines sorted by programme id, then line key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statement {
    pub lines: Vec<StatementLine>,
}

impl Statement {
    pub fn total_by_programme(&self) -> BTreeMap<&str, Fen> {
        let mut totals: BTreeMap<&str, Fen> = BTreeMap::new();
        for line in &self.lines {
            let t = totals.entry(line.programme.as_str()).or_default();
            *t = t.plus(line.subsidy);
        }
        totals
    }
}

/// One programme's part of a package (R5): the ratio its rate table gives the line's class and
/// what it pays on the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackagePart<'r> {
    pub programme: &'r Programme,
    /// The ratio of the programme's rate table for the class.
    pub own: Decimal,
    /// What it pays: `own`, or for a top-up min(own, ceiling − the primary's ratio).
    pub effective: Decimal,
}

/// What a beneficiary could get on a line: a stacked pair (primary, then top-up) or one
/// programme alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package<'r> {
    pub parts: Vec<PackagePart<'r>>,
    /// The stacking rule's combined ceiling for the class; `None` for a programme alone.
    pub ceiling: Option<Decimal>,
}

impl Package<'_> {
    /// The combined ratio.
    pub fn total(&self) -> Decimal {
        self.parts.iter().map(|p| p.effective).sum()
    }

    pub fn stacked(&self) -> bool {
        self.parts.len() > 1
    }
}

/// Why the chosen package won over the next best one (R5 and the ties of docs/rules.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChosenBecause {
    /// It was the only package.
    Only,
    /// Its combined ratio is the highest (从优、就高、不重复).
    HigherRatio,
    /// Equal ratio: a stacked pair wins over a programme alone.
    StackedOnTie,
    /// Equal ratio and shape: the higher funder level wins (national first).
    FunderOnTie,
    /// Equal on everything else: the lower programme id wins.
    IdOnTie,
}

/// How the engine chose the ratios of a line of `class` for one beneficiary (R4, R5): the
/// decision and its explanation, from which [`effective_ratios`] takes the ratios.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatioDecision<'r> {
    pub class: Class,
    /// The programmes of the year the beneficiary holds a grant of, in registry order, with the
    /// ratio their rate tables give the class (`None`: no entry matches it).
    pub granted: Vec<(&'r Programme, Option<Decimal>)>,
    /// Every package of the eligible programmes (granted, ratio above zero).
    pub packages: Vec<Package<'r>>,
    /// The index of the package the beneficiary gets; `None` when nothing is eligible.
    pub chosen: Option<usize>,
    /// The best package after the chosen one, and why the chosen one won.
    pub runner_up: Option<usize>,
    pub because: ChosenBecause,
}

impl<'r> RatioDecision<'r> {
    /// The effective ratio of each programme of the chosen package, those above zero.
    pub fn effective(&self) -> Vec<(&'r Programme, Decimal)> {
        self.chosen
            .map(|i| {
                self.packages[i]
                    .parts
                    .iter()
                    .filter(|p| p.effective > Decimal::ZERO)
                    .map(|p| (p.programme, p.effective))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The chosen package.
    pub fn package(&self) -> Option<&Package<'r>> {
        self.chosen.map(|i| &self.packages[i])
    }
}

/// The effective ratio of each programme that pays on a line of `class` for `beneficiary` in a
/// fiscal year (R4, R5), most favourable package chosen. Only ratios above zero are returned.
/// [`ratio_decision`] explains the choice.
pub fn effective_ratios<'r>(
    registry: &'r Registry,
    year: i32,
    beneficiary: &str,
    class: Class,
) -> Vec<(&'r Programme, Decimal)> {
    ratio_decision(registry, year, beneficiary, class).effective()
}

/// R4, R5: the packages a beneficiary could get on a line of `class` and the one it gets.
///
/// A programme is eligible when the beneficiary holds a grant of it and its rate table gives the
/// class a ratio above zero. Two eligible programmes joined by a stacking rule that has a ceiling
/// for the class form a package: the primary pays its own ratio and the top-up pays
/// min(own ratio, ceiling − primary ratio). Every other eligible programme is a package alone.
/// The beneficiary gets the single package with the highest combined ratio (从优、就高、不重复).
/// Ties (our choice, the rules are silent): a stacked package before a single programme, then the
/// higher funder level (national before provincial, municipal, district, since higher-level
/// money costs the city nothing), then the lower programme id.
pub fn ratio_decision<'r>(
    registry: &'r Registry,
    year: i32,
    beneficiary: &str,
    class: Class,
) -> RatioDecision<'r> {
    let granted: Vec<(&Programme, Option<Decimal>)> = registry
        .programmes_of_year(year)
        .filter(|p| registry.grant(beneficiary, &p.id).is_some())
        .map(|p| (p, lookup_ratio(&p.rates, class)))
        .collect();
    let eligible: Vec<(&Programme, Decimal)> = granted
        .iter()
        .filter_map(|&(p, r)| r.filter(|r| *r > Decimal::ZERO).map(|r| (p, r)))
        .collect();
    let mut packages: Vec<Package> = Vec::new();
    let mut joined = vec![false; eligible.len()];
    for (i, &(primary, primary_ratio)) in eligible.iter().enumerate() {
        for (j, &(top_up, top_up_ratio)) in eligible.iter().enumerate() {
            let Some(rule) = registry
                .stacking
                .iter()
                .find(|s| s.primary == primary.id && s.top_up == top_up.id)
            else {
                continue;
            };
            let Some(ceiling) = lookup_ratio(&rule.ceilings, class) else {
                continue;
            };
            // R5: the top-up fills the room between the primary's ratio and the ceiling.
            let room = (ceiling - primary_ratio).max(Decimal::ZERO);
            packages.push(Package {
                parts: vec![
                    PackagePart {
                        programme: primary,
                        own: primary_ratio,
                        effective: primary_ratio,
                    },
                    PackagePart {
                        programme: top_up,
                        own: top_up_ratio,
                        effective: top_up_ratio.min(room),
                    },
                ],
                ceiling: Some(ceiling),
            });
            joined[i] = true;
            joined[j] = true;
        }
    }
    for (i, &(p, r)) in eligible.iter().enumerate() {
        if !joined[i] {
            packages.push(Package {
                parts: vec![PackagePart {
                    programme: p,
                    own: r,
                    effective: r,
                }],
                ceiling: None,
            });
        }
    }
    let funder_rank = |f: Funder| f as u8;
    // Each key of the order, so that the reason of a win can name the first that differs.
    let keys = |a: &Package, b: &Package| {
        [
            a.total().cmp(&b.total()),
            a.parts.len().cmp(&b.parts.len()),
            funder_rank(b.parts[0].programme.funder).cmp(&funder_rank(a.parts[0].programme.funder)),
            b.parts[0].programme.id.cmp(&a.parts[0].programme.id),
        ]
    };
    let order = |a: &Package, b: &Package| {
        keys(a, b)
            .into_iter()
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    let best = |skip: Option<usize>| {
        (0..packages.len())
            .filter(|i| Some(*i) != skip)
            .max_by(|&a, &b| order(&packages[a], &packages[b]))
    };
    let chosen = best(None);
    let runner_up = chosen.and_then(|c| best(Some(c)));
    let because = match (chosen, runner_up) {
        (Some(c), Some(r)) => {
            match keys(&packages[c], &packages[r])
                .iter()
                .position(|o| o.is_ne())
            {
                Some(0) => ChosenBecause::HigherRatio,
                Some(1) => ChosenBecause::StackedOnTie,
                Some(2) => ChosenBecause::FunderOnTie,
                _ => ChosenBecause::IdOnTie,
            }
        }
        _ => ChosenBecause::Only,
    };
    RatioDecision {
        class,
        granted,
        packages,
        chosen,
        runner_up,
        because,
    }
}

/// Computes the statement of one period for every programme of its fiscal year.
/// `bases` holds Σ amount per line of the period's accepted records; `prior` what each programme
/// already paid earlier in the year.
pub fn settle_period(
    registry: &Registry,
    period: Period,
    bases: &BTreeMap<LineKey, Fen>,
    prior: &Prior,
) -> Statement {
    settle_period_observed(registry, period, bases, prior, &mut NoObserver)
}

/// [`settle_period`], telling `observer` what every limit stage decided (for explanations).
pub fn settle_period_observed(
    registry: &Registry,
    period: Period,
    bases: &BTreeMap<LineKey, Fen>,
    prior: &Prior,
    observer: &mut dyn LimitObserver,
) -> Statement {
    // R4/R5/R6: per programme, the lines it pays on and their uncut demand.
    let mut by_programme: BTreeMap<&str, Vec<StatementLine>> = BTreeMap::new();
    let mut ratio_cache: HashMap<(&str, Class), Vec<(&Programme, Decimal)>> = HashMap::new();
    for (key, &base) in bases {
        let ratios = ratio_cache
            .entry((key.beneficiary.as_str(), key.class))
            .or_insert_with(|| {
                effective_ratios(registry, period.year, &key.beneficiary, key.class)
            });
        for &(programme, ratio) in ratios.iter() {
            let demand = base.times_ratio_half_up(ratio);
            by_programme
                .entry(programme.id.as_str())
                .or_default()
                .push(StatementLine {
                    programme: programme.id.clone(),
                    period,
                    key: key.clone(),
                    base,
                    ratio,
                    demand,
                    subsidy: demand,
                    cut_by: None,
                });
        }
    }
    let mut lines = Vec::new();
    for (id, mut programme_lines) in by_programme {
        let programme = registry
            .programme(id)
            .expect("ratios come from registry programmes");
        apply_limits_observed(registry, programme, prior, &mut programme_lines, observer);
        lines.extend(programme_lines);
    }
    Statement { lines }
}

/// What one limit stage decided for one group of lines (R7, R8): a beneficiary's lines under
/// its cap, a provider's under its cap, or all of a programme's lines under its pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitDecision<'a> {
    pub stage: CutBy,
    /// The beneficiary or provider whose cap it is; empty for the pool.
    pub subject: &'a str,
    /// The annual cap or pool.
    pub limit: Fen,
    /// Counted against it before this period: the entitlements of the earlier periods of the
    /// year and the opening balances (R7, R9).
    pub prior: Fen,
    /// max(0, limit − prior): what this period's lines of the group could share.
    pub left: Fen,
    /// Σ of what the stage before left the group's lines.
    pub wanted: Fen,
}

impl LimitDecision<'_> {
    /// The group wanted more than was left, so `left` was shared.
    pub fn binds(&self) -> bool {
        self.wanted > self.left
    }
}

/// Sees what each limit stage decided, as the engine decides it; explanations of a line's cuts
/// are made from it, never by re-deriving the stages.
pub trait LimitObserver {
    /// One group of one stage, after it was shared: `group` indexes `lines`, `before[k]` is what
    /// line `group[k]` had before the stage, and `lines` hold what they have after it.
    fn stage(
        &mut self,
        decision: &LimitDecision<'_>,
        lines: &[StatementLine],
        group: &[usize],
        before: &[Fen],
    );
}

/// An observer that looks at nothing: settlement as usual.
pub struct NoObserver;

impl LimitObserver for NoObserver {
    fn stage(&mut self, _: &LimitDecision<'_>, _: &[StatementLine], _: &[usize], _: &[Fen]) {}
}

/// R7, R8: beneficiary caps, then provider caps, then the pool, each sharing what is left in
/// proportion to what the stage before left, by largest remainder in line key order.
/// `lines` are one programme's lines in key order.
pub fn apply_limits(
    registry: &Registry,
    programme: &Programme,
    prior: &Prior,
    lines: &mut [StatementLine],
) {
    apply_limits_observed(registry, programme, prior, lines, &mut NoObserver);
}

/// [`apply_limits`], telling `observer` what each stage decided for each group.
pub fn apply_limits_observed(
    registry: &Registry,
    programme: &Programme,
    prior: &Prior,
    lines: &mut [StatementLine],
    observer: &mut dyn LimitObserver,
) {
    debug_assert!(
        lines.windows(2).all(|w| w[0].key < w[1].key),
        "lines arrive in key order"
    );
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        groups
            .entry(line.key.beneficiary.as_str())
            .or_default()
            .push(i);
    }
    let beneficiary_groups: Vec<(String, Vec<usize>)> =
        groups.into_iter().map(|(b, v)| (b.to_owned(), v)).collect();
    for (beneficiary, indices) in beneficiary_groups {
        if let Some(cap) = registry.beneficiary_cap(programme, &beneficiary) {
            let prior = prior.beneficiary(&programme.id, &beneficiary);
            let stage = (CutBy::BeneficiaryCap, beneficiary.as_str(), cap, prior);
            limit(lines, &indices, stage, observer);
        }
    }
    if let Some(cap) = programme.provider_cap {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, line) in lines.iter().enumerate() {
            groups.entry(line.key.provider.clone()).or_default().push(i);
        }
        for (provider, indices) in groups {
            let prior = prior.provider(&programme.id, &provider);
            let stage = (CutBy::ProviderCap, provider.as_str(), cap, prior);
            limit(lines, &indices, stage, observer);
        }
    }
    if let Some(pool) = programme.pool {
        let prior = prior.programme(&programme.id);
        let all: Vec<usize> = (0..lines.len()).collect();
        limit(lines, &all, (CutBy::Pool, "", pool, prior), observer);
    }
}

/// R7/R8's sharing: `left` shared over `amounts` by largest remainder when they pass it (then
/// met exactly, never passed), otherwise the amounts unchanged. Used by every limit stage here
/// and by the maintained balances, so both cut the same way.
pub fn limited(amounts: &[Fen], left: Fen) -> Vec<Fen> {
    let wanted: Fen = amounts.iter().copied().sum();
    if wanted <= left {
        return amounts.to_vec();
    }
    let shares = share_largest_remainder(amounts, left);
    assert_eq!(
        shares.iter().copied().sum::<Fen>(),
        left,
        "a limit is met exactly, never passed"
    );
    shares
}

/// Shares what is left of a limit (stage, subject, limit, prior) over the lines at `indices`
/// when their subsidies exceed it.
fn limit(
    lines: &mut [StatementLine],
    indices: &[usize],
    (stage, subject, limit, prior): (CutBy, &str, Fen, Fen),
    observer: &mut dyn LimitObserver,
) {
    let left = limit.minus(prior).max(Fen::ZERO);
    let amounts: Vec<Fen> = indices.iter().map(|&i| lines[i].subsidy).collect();
    let shares = limited(&amounts, left);
    for (&i, share) in indices.iter().zip(shares) {
        if share < lines[i].subsidy {
            lines[i].subsidy = share;
            lines[i].cut_by = Some(stage);
        }
    }
    let decision = LimitDecision {
        stage,
        subject,
        limit,
        prior,
        left,
        wanted: amounts.iter().copied().sum(),
    };
    observer.stage(&decision, lines, indices, &amounts);
}

/// The statement file's header, shared by `suanli simulate` and run exports.
pub const STATEMENT_HEADER: [&str; 11] = [
    "programme",
    "period",
    "beneficiary",
    "provider",
    "category",
    "chip_origin",
    "registered_model",
    "base",
    "ratio",
    "subsidy",
    "cut_by",
];

impl StatementLine {
    /// The line as statement fields, in [`STATEMENT_HEADER`] order: money with exactly two
    /// decimals, chip origin only for compute, the registered flag only for model lines.
    pub fn csv_fields(&self) -> [String; 11] {
        [
            self.programme.clone(),
            self.period.to_string(),
            self.key.beneficiary.clone(),
            self.key.provider.clone(),
            self.key.class.category.as_str().to_owned(),
            self.key
                .class
                .chip_origin
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default(),
            self.key
                .class
                .registered_model
                .map(|r| r.to_string())
                .unwrap_or_default(),
            self.base.to_string(),
            crate::money::format_ratio(self.ratio),
            self.subsidy.to_string(),
            self.cut_by
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
        ]
    }
}
