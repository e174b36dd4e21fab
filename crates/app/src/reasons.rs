//! Plain-language reasons for run lines, so that a run's export reconciles line by line without
//! the database: why an adjustment line moves money for an earlier month (R9), and which cap or
//! pool cut a line (R7, R8) with the limit's amount from the registry version the line's month
//! used; and the sentences of a line's full explanation ([`crate::explain`]): its ratio, base,
//! demand, cuts and what it settles.

use std::collections::HashMap;
use std::sync::Arc;

use rust_decimal::Decimal;
use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_domain::settlement::{ChosenBecause, CutBy, RatioDecision, StatementLine};
use suanli_domain::usage::Period;
use suanli_store::ledger::{self as rows, RunLineRow, RunRow};
use suanli_store::sql::Sql;

use crate::registry::load_registry;
use crate::settlement::Result;

/// CNY with thousands separators, as people read amounts: `8,000,000.00`, `-1,234.56`.
pub fn grouped(amount: Fen) -> String {
    let text = amount.to_string();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let mut out = String::with_capacity(text.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if fraction.is_empty() {
        format!("{sign}{out}")
    } else {
        format!("{sign}{out}.{fraction}")
    }
}

/// The reason of one line of `run`, given the registry its month used (None if unknown):
/// empty for an own-period line that nothing cut.
pub fn line_reason(registry: Option<&Registry>, run: &RunRow, l: &RunLineRow) -> String {
    let mut parts = Vec::new();
    if l.original_period != run.period {
        let (before, now) = (
            grouped(Fen(l.posted_before_fen)),
            grouped(Fen(l.entitlement_fen)),
        );
        let period = &l.original_period;
        if l.amount_fen < 0 {
            parts.push(format!(
                "claw-back: the {period} entitlement fell from {before} to {now} after voids or late records"
            ));
        } else if l.amount_fen > 0 {
            parts.push(format!(
                "late records: the {period} entitlement rose from {before} to {now}"
            ));
        }
    }
    let programme = registry.and_then(|r| r.programme(&run.programme));
    let limit =
        |amount: Option<Fen>| amount.map_or_else(String::new, |a| format!(" of {}", grouped(a)));
    match l.cut_by.as_str() {
        "beneficiary_cap" => parts.push(format!(
            "cut by the beneficiary cap{}",
            limit(
                registry
                    .zip(programme)
                    .and_then(|(r, p)| r.beneficiary_cap(p, &l.key.beneficiary))
            )
        )),
        "provider_cap" => parts.push(format!(
            "cut by the provider cap{}",
            limit(programme.and_then(|p| p.provider_cap))
        )),
        "pool" => parts.push(format!(
            "cut by the pool{}",
            limit(programme.and_then(|p| p.pool))
        )),
        _ => {}
    }
    parts.join("; ")
}

/// The reasons of `lines` of `run`, in order, each with the registry version its month used.
pub fn run_reasons(tx: &mut dyn Sql, run: &RunRow, lines: &[RunLineRow]) -> Result<Vec<String>> {
    let mut source = ReasonSource::of_run(tx, run)?;
    Ok(lines.iter().map(|l| source.reason(tx, run, l)).collect())
}

/// What a run's line reasons are read from: the registry version each of its months used, and
/// the registries parsed so far, kept across pages of a run read piece by piece.
pub struct ReasonSource {
    versions: HashMap<String, i64>,
    registries: HashMap<i64, Arc<Registry>>,
}

impl ReasonSource {
    pub fn of_run(tx: &mut dyn Sql, run: &RunRow) -> Result<ReasonSource> {
        Ok(ReasonSource {
            versions: rows::run_periods(tx, run.run_id)?.into_iter().collect(),
            registries: HashMap::new(),
        })
    }

    /// The reason of line `l` of `run` (see [`line_reason`]).
    pub fn reason(&mut self, tx: &mut dyn Sql, run: &RunRow, l: &RunLineRow) -> String {
        let version = self
            .versions
            .get(&l.original_period)
            .copied()
            .unwrap_or(run.registry_version);
        // A version that no longer loads explains less, but never hides the line.
        let registry = load_registry(tx, version, &mut self.registries)
            .ok()
            .map(|()| self.registries[&version].clone());
        line_reason(registry.as_deref(), run, l)
    }
}

/// The reasons of a stored run's lines, in a transaction of their own.
pub fn reasons_of_run(
    store: &mut dyn suanli_store::Store,
    run: &RunRow,
    lines: &[RunLineRow],
) -> Result<Vec<String>> {
    crate::settlement::in_tx(store, |tx| run_reasons(tx, run, lines))
}

/// An amount as the explanations write it: `¥8,000,000.00`, `-¥200,000.00`.
pub fn yuan(amount: Fen) -> String {
    match grouped(amount).strip_prefix('-') {
        Some(rest) => format!("-¥{rest}"),
        None => format!("¥{}", grouped(amount)),
    }
}

/// A ratio as a percentage: `0.15` is `15%`, `0.125` is `12.5%`.
pub fn percent(ratio: Decimal) -> String {
    format!("{}%", (ratio * Decimal::ONE_HUNDRED).normalize())
}

/// Why a line has its ratio, in one sentence, from the engine's decision.
pub fn ratio_text(
    r: &crate::explain::RatioExplanation,
    programme: &str,
    decision: &RatioDecision<'_>,
    computed: Option<&StatementLine>,
) -> String {
    if computed.is_none() {
        return format!(
            "no ratio: nothing of the line is left in its month (its records are void or gone), so {programme} is entitled to nothing on it"
        );
    }
    let mut text = match (&r.stacked_with, r.ceiling) {
        (Some((other, name, other_ratio, true)), Some(ceiling)) => format!(
            "ratio {}: {} is stacked (R5); {programme} is the primary at its own {}, and {other} ({name}) tops it up with {}, {} in all under the ceiling of {}",
            percent(r.ratio),
            r.class,
            percent(r.ratio),
            percent(*other_ratio),
            percent(r.ratio + other_ratio),
            percent(ceiling)
        ),
        (Some((other, name, other_ratio, false)), Some(ceiling)) => format!(
            "ratio {}: {} is stacked (R5); {other} ({name}) is the primary at {}, and {programme} tops it up with min(its own {}, the ceiling {} − {}) = {}",
            percent(r.ratio),
            r.class,
            percent(*other_ratio),
            r.own.map_or_else(|| "rate".to_owned(), percent),
            percent(ceiling),
            percent(*other_ratio),
            percent(r.ratio)
        ),
        _ => format!(
            "ratio {}: {programme}'s own rate for {} (R4)",
            percent(r.ratio),
            r.class
        ),
    };
    if let (Some((programmes, total)), Some(chosen)) = (&r.runner_up, decision.package()) {
        let tie = match r.chosen_because {
            ChosenBecause::HigherRatio | ChosenBecause::Only => String::new(),
            ChosenBecause::StackedOnTie => "; equal, and a stacked pair goes first".to_owned(),
            ChosenBecause::FunderOnTie => format!(
                "; equal, and the higher funder level ({}) goes first",
                chosen.parts[0].programme.funder
            ),
            ChosenBecause::IdOnTie => "; equal, and the lower programme id goes first".to_owned(),
        };
        text.push_str(&format!(
            "; the most favourable package (从优、就高、不重复): {} against {} for {}{tie}",
            percent(chosen.total()),
            percent(*total),
            programmes.join(" + ")
        ));
    }
    text
}

/// The sentence of one cut: what the line had, what the limit left it, and why.
pub fn cut_text(
    c: &crate::explain::Cut,
    demand: Fen,
    period: Period,
    run_period: Period,
    run_id: i64,
    programme: &str,
    cap_of_grant: bool,
) -> String {
    let who = if c.subject_name.is_empty() || c.subject_name == c.subject {
        c.subject.clone()
    } else {
        format!("{} ({})", c.subject_name, c.subject)
    };
    let (name, what) = match c.stage {
        CutBy::BeneficiaryCap => (
            "the beneficiary cap",
            format!(
                "the {} cap{} of {} for {who}",
                period.year,
                if cap_of_grant {
                    " (the grant's own)"
                } else {
                    ""
                },
                yuan(c.limit)
            ),
        ),
        CutBy::ProviderCap => (
            "the provider cap",
            format!(
                "the {} provider cap of {} for {who}",
                period.year,
                yuan(c.limit)
            ),
        ),
        CutBy::Pool => (
            "the pool",
            format!(
                "the {} pool of {} of {programme}",
                period.year,
                yuan(c.limit)
            ),
        ),
    };
    let had = if c.before == demand {
        format!("demand {}", yuan(c.before))
    } else {
        format!("{} after the earlier limits", yuan(c.before))
    };
    let reached = if c.left == Fen::ZERO {
        format!("had been reached before {period} by prior payments")
    } else if period == run_period {
        format!("was reached with run {run_id}")
    } else {
        format!("is reached in {period} as restated by run {run_id}")
    };
    let earlier = c.prior.minus(c.prior_opening);
    let mut parts = Vec::new();
    if earlier != Fen::ZERO {
        parts.push(format!("earlier months {}", yuan(earlier)));
    }
    if c.prior_opening != Fen::ZERO {
        parts.push(format!("opening balances {}", yuan(c.prior_opening)));
    }
    let prior = if parts.is_empty() {
        format!("nothing counted before {period}")
    } else {
        format!(
            "{} counted before {period}: {}",
            yuan(c.prior),
            parts.join(", ")
        )
    };
    format!(
        "{had}, cut to {} by {name}: {what} {reached} ({prior}; {} left, shared by {} line(s) wanting {})",
        yuan(c.after),
        yuan(c.left),
        c.lines,
        yuan(c.wanted)
    )
}

/// What a line's sentences are made of.
pub struct LineFacts<'a> {
    pub run: &'a RunRow,
    pub line: &'a RunLineRow,
    pub ratio: &'a crate::explain::RatioExplanation,
    pub demand: Fen,
    pub cuts: &'a [crate::explain::Cut],
    pub base_now: Fen,
    pub records_now: i64,
}

/// A line's explanation, one sentence an item: ratio, base, demand, cuts, and what it settles.
pub fn line_text(f: &LineFacts<'_>) -> Vec<String> {
    let l = f.line;
    let period = &l.original_period;
    let mut out = vec![f.ratio.text.clone()];
    let now = if f.base_now.0 == l.base_fen {
        format!(
            "its {} record(s) not void now total the same",
            f.records_now
        )
    } else {
        format!(
            "its {} record(s) not void now total {}: records arrived or were voided since, which the next run adjusts",
            f.records_now,
            yuan(f.base_now)
        )
    };
    out.push(format!(
        "base {}: the line's usage records of {period} when run {} was created; {now}",
        yuan(Fen(l.base_fen)),
        f.run.run_id
    ));
    if f.ratio.ratio > Decimal::ZERO {
        out.push(format!(
            "demand {} = {} × {}, rounded half up once (R6)",
            yuan(f.demand),
            yuan(Fen(l.base_fen)),
            percent(f.ratio.ratio)
        ));
        if f.cuts.is_empty() {
            out.push("no cap or pool cut it (R7, R8)".to_owned());
        }
    }
    out.extend(f.cuts.iter().map(|c| c.text.clone()));
    let (entitled, before, change) = (
        yuan(Fen(l.entitlement_fen)),
        yuan(Fen(l.posted_before_fen)),
        yuan(Fen(l.amount_fen)),
    );
    out.push(if l.original_period != f.run.period {
        let kind = if l.amount_fen < 0 {
            "a claw-back"
        } else {
            "late records"
        };
        format!(
            "adjusts {period} (R9): entitled now {entitled}, settled before {before}, change {change} ({kind})"
        )
    } else if l.posted_before_fen == 0 {
        format!("entitled {entitled} for {period}, settled by this run")
    } else {
        format!(
            "entitled {entitled} for {period}, settled before {before}; this run settles {change}"
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_grouped_by_thousands() {
        // Proves the reason's amounts read as people write them.
        assert_eq!(grouped(Fen(800_000_000)), "8,000,000.00");
        assert_eq!(grouped(Fen(-12_345_678)), "-123,456.78");
        assert_eq!(grouped(Fen(99_999)), "999.99");
        assert_eq!(grouped(Fen(100_000)), "1,000.00");
    }

    #[test]
    fn percentages_and_yuan_read_as_people_write_them() {
        // Proves the explanation's figures: ratios as percentages without trailing zeros,
        // amounts in yuan with the sign before the symbol.
        assert_eq!(percent(Decimal::new(15, 2)), "15%");
        assert_eq!(percent(Decimal::new(125, 3)), "12.5%");
        assert_eq!(percent(Decimal::ZERO), "0%");
        assert_eq!(yuan(Fen(-20_000_000)), "-¥200,000.00");
        assert_eq!(yuan(Fen(800_000_000)), "¥8,000,000.00");
    }
}
