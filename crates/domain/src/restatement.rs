//! Year-to-date restatement (docs/rules.md R9): a programme's entitlement for every period of its
//! fiscal year, recomputed from the corrected record set, and what a run must post so that,
//! after it, posted = entitlement for every (period, line).

use std::collections::BTreeMap;

use crate::money::Fen;
use crate::registry::Registry;
use crate::settlement::{
    LimitObserver, LineKey, NoObserver, Prior, Statement, StatementLine, settle_period_observed,
};
use crate::usage::Period;

/// One period's inputs: the registry version its first run used and the line bases of the
/// records that belong to it now (late arrivals included, voided records excluded).
#[derive(Clone, Copy, Debug)]
pub struct PeriodInput<'a> {
    pub period: Period,
    pub registry: &'a Registry,
    pub bases: &'a BTreeMap<LineKey, Fen>,
}

/// The entitlement of each period, in order: each computed with R6-R8, counting the
/// entitlements of the earlier periods (so computed) as prior payments. `inputs` are the
/// periods of one fiscal year from its first month, in order.
pub fn entitlements_to_date(inputs: &[PeriodInput<'_>]) -> Vec<Statement> {
    entitlements_after_opening(inputs, Prior::default())
}

/// [`entitlements_to_date`] for a year whose programmes paid `opening` before their first run
/// (opening balances): those payments count against caps, provider caps and pools from the
/// first period on, exactly as `simulate --prior` counts prior payments.
pub fn entitlements_after_opening(inputs: &[PeriodInput<'_>], opening: Prior) -> Vec<Statement> {
    entitlements_observed(inputs, opening, &mut NoObserver)
}

/// [`entitlements_after_opening`], telling `observer` what every limit stage of every period
/// decided (for explanations of a run's lines).
pub fn entitlements_observed(
    inputs: &[PeriodInput<'_>],
    opening: Prior,
    observer: &mut dyn LimitObserver,
) -> Vec<Statement> {
    assert!(
        inputs.windows(2).all(|w| w[0].period < w[1].period),
        "periods in order"
    );
    let mut prior = opening;
    let mut statements = Vec::with_capacity(inputs.len());
    for input in inputs {
        let statement =
            settle_period_observed(input.registry, input.period, input.bases, &prior, observer);
        for line in &statement.lines {
            prior.add(
                &line.programme,
                &line.key.beneficiary,
                &line.key.provider,
                line.subsidy,
            );
        }
        statements.push(statement);
    }
    statements
}

/// A line of a settlement run: the entitlement of (original period, line) and what the run
/// posts for it, the difference from what was posted before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLine {
    /// The entitlement line (its `period` is the original period); for a line whose
    /// entitlement vanished (all its records voided) a zero line with the old key.
    pub line: StatementLine,
    pub posted_before: Fen,
    /// entitlement − posted before: positive for late records, negative for claw-backs.
    pub amount: Fen,
}

impl RunLine {
    /// An adjustment line names an earlier period than the run's own.
    pub fn is_adjustment(&self, run_period: Period) -> bool {
        self.line.period != run_period
    }
}

/// What a run of `programme` for `run_period` posts: every entitlement line of its own period,
/// and, for earlier periods, every line whose entitlement differs from what was posted.
/// `posted` holds Σ posted amounts per (period, line) of this programme.
pub fn run_lines(
    programme: &str,
    run_period: Period,
    entitlements: &[Statement],
    posted: &BTreeMap<(Period, LineKey), Fen>,
) -> Vec<RunLine> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<(Period, LineKey), ()> = BTreeMap::new();
    for statement in entitlements {
        for line in statement
            .lines
            .iter()
            .filter(|l| l.programme == programme && l.period <= run_period)
        {
            let key = (line.period, line.key.clone());
            let before = posted.get(&key).copied().unwrap_or_default();
            seen.insert(key, ());
            let amount = line.subsidy.minus(before);
            if line.period == run_period || amount != Fen::ZERO {
                out.push(RunLine {
                    line: line.clone(),
                    posted_before: before,
                    amount,
                });
            }
        }
    }
    // Lines posted before whose entitlement is gone entirely are clawed back in full.
    for ((period, key), before) in posted {
        if *period <= run_period
            && !seen.contains_key(&(*period, key.clone()))
            && *before != Fen::ZERO
        {
            out.push(RunLine {
                line: StatementLine {
                    programme: programme.to_owned(),
                    period: *period,
                    key: key.clone(),
                    base: Fen::ZERO,
                    ratio: rust_decimal::Decimal::ZERO,
                    demand: Fen::ZERO,
                    subsidy: Fen::ZERO,
                    cut_by: None,
                },
                posted_before: *before,
                amount: Fen::ZERO.minus(*before),
            });
        }
    }
    // Own period first, then adjustments by original period; each by line key.
    out.sort_by(|a, b| {
        (a.line.period != run_period, a.line.period, &a.line.key).cmp(&(
            b.line.period != run_period,
            b.line.period,
            &b.line.key,
        ))
    });
    out
}
