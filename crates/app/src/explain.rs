//! Explanations of a run's lines (docs/settlement.md, "Explaining a line"): for one beneficiary
//! (and optionally one provider), each line's programme and ratio with the engine's reason for
//! it, its base and a bounded page of the usage records it came from, every limit that cut it
//! with the cause, and for an adjustment line the entitlement, what was settled before and the
//! change. The figures come from the engine itself: the run is recomputed from its frozen inputs
//! (as `settle rederive` does) while an observer records each limit stage's decision, and the
//! ratio is the engine's own [`ratio_decision`]; nothing is derived a second way.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_domain::registry::class_label;
use suanli_domain::settlement::{
    ChosenBecause, CutBy, LimitDecision, LimitObserver, LineKey, StatementLine, ratio_decision,
};
use suanli_domain::usage::Period;
use suanli_store::ledger::{self as rows, RunLineRow, RunRow};
pub use suanli_store::records::RecordFilter;
use suanli_store::records::{self, LineRecordRow};
use suanli_store::sql::Sql;

use crate::reasons;
use crate::registry::load_registry;
use crate::settlement::{
    Result, SettleError, entitlements_observed, frozen_inputs, in_tx, key_of_row, period_of,
};

/// Usage records listed per line when the request names no page size.
pub const RECORDS_PAGE_DEFAULT: usize = 20;
/// The most usage records listed per line in one response.
pub const RECORDS_PAGE_MAX: usize = 500;

/// Which page of a line's records to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordsPage {
    /// 0 for [`RECORDS_PAGE_DEFAULT`]; at most [`RECORDS_PAGE_MAX`].
    pub size: usize,
    /// A line's `next_records_page_token` (or [`line_token`]): only that line is explained,
    /// with the page after the token's record.
    pub token: Option<String>,
    /// Only the records whose id starts with this, and only void or not void ones.
    pub filter: RecordFilter,
}

/// A run's lines of one beneficiary, explained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub run: RunRow,
    pub programme_name: String,
    pub beneficiary: String,
    pub beneficiary_name: String,
    pub lines: Vec<LineExplanation>,
}

/// One line of a run, explained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineExplanation {
    /// Its position among the run's lines, from 0.
    pub seq: usize,
    pub line: RunLineRow,
    /// The line's provider's name in the registry of its month (its id when it has none).
    pub provider_name: String,
    /// The plain-language reason of the run's export ([`crate::reasons::line_reason`]).
    pub reason: String,
    /// It names an earlier month than the run's own (R9).
    pub adjustment: bool,
    pub ratio: RatioExplanation,
    /// round_half_up(base × ratio) before any limit (R6).
    pub demand: Fen,
    /// Every limit stage that reduced the line, in stage order.
    pub cuts: Vec<Cut>,
    /// The line's records now: Σ of those not void and their count.
    pub base_now: Fen,
    pub records_now: i64,
    pub records: Vec<LineRecord>,
    pub next_records_page_token: Option<String>,
    /// The explanation in plain language, one sentence an item.
    pub text: Vec<String>,
}

/// Why a line has its ratio: the engine's [`ratio_decision`], in words and figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatioExplanation {
    /// The line's class (`compute/domestic`, `model/registered`, `data`).
    pub class: String,
    /// This run's programme's ratio on the line; zero on a line whose records are all gone.
    pub ratio: Decimal,
    /// The ratio the programme's own rate table gives the class, if an entry matches.
    pub own: Option<Decimal>,
    /// The stacked partner (R5): id, name, its ratio on the line, and whether this run's
    /// programme is the primary.
    pub stacked_with: Option<(String, String, Decimal, bool)>,
    /// The stacking rule's combined ceiling for the class.
    pub ceiling: Option<Decimal>,
    pub chosen_because: ChosenBecause,
    /// The next best package: its programmes and combined ratio.
    pub runner_up: Option<(Vec<String>, Decimal)>,
    pub text: String,
}

/// One limit stage that reduced a line (R7, R8), from the engine's [`LimitDecision`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    pub stage: CutBy,
    /// The beneficiary or provider whose cap it is (empty for the pool), and its name.
    pub subject: String,
    pub subject_name: String,
    pub limit: Fen,
    /// Counted against the limit before the line's month, and the opening balances' part.
    pub prior: Fen,
    pub prior_opening: Fen,
    pub left: Fen,
    pub wanted: Fen,
    /// How many lines of the month shared what was left.
    pub lines: usize,
    pub before: Fen,
    pub after: Fen,
    pub text: String,
}

/// A usage record of a line, void or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineRecord {
    pub record_id: String,
    pub sku: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub quantity: String,
    pub amount: Fen,
    pub voided_at: Option<String>,
    pub void_reason: Option<String>,
    /// Not void when the run was created, so in its frozen base (a record stored after the run
    /// was created is not in it either: then `base_now` differs from the base).
    pub counted: bool,
}

/// One limit stage of one traced line, as the engine decided it.
struct Stage {
    stage: CutBy,
    subject: String,
    limit: Fen,
    prior: Fen,
    left: Fen,
    wanted: Fen,
    lines: usize,
    before: Fen,
    after: Fen,
}

/// Records the stages of the lines asked about, and each traced line's statement line.
struct Traces<'a> {
    programme: &'a str,
    beneficiary: &'a str,
    wanted: &'a BTreeSet<(Period, LineKey)>,
    stages: HashMap<(Period, LineKey), Vec<Stage>>,
}

impl LimitObserver for Traces<'_> {
    fn stage(
        &mut self,
        d: &LimitDecision<'_>,
        lines: &[StatementLine],
        group: &[usize],
        before: &[Fen],
    ) {
        for (&i, &was) in group.iter().zip(before) {
            let l = &lines[i];
            if l.programme != self.programme || l.key.beneficiary != self.beneficiary {
                continue;
            }
            let key = (l.period, l.key.clone());
            if !self.wanted.contains(&key) {
                continue;
            }
            self.stages.entry(key).or_default().push(Stage {
                stage: d.stage,
                subject: d.subject.to_owned(),
                limit: d.limit,
                prior: d.prior,
                left: d.left,
                wanted: d.wanted,
                lines: group.len(),
                before: was,
                after: l.subsidy,
            });
        }
    }
}

const SEPARATOR: char = '\u{1f}';

/// A page token: the line (original period and key) and the last record id listed, hex-encoded
/// so that it is opaque and safe in any client (ids never hold a control character).
fn token_of(line: &RunLineRow, last: &str) -> String {
    line_token(line, last)
}

/// The page token of `line` naming the records after `last` (`""`: the first page): explains
/// that line alone. A client that shows several lines uses it to page or search one of them.
pub fn line_token(line: &RunLineRow, last: &str) -> String {
    let text = [
        line.original_period.as_str(),
        &line.key.provider,
        &line.key.category,
        &line.key.chip_origin,
        &line.key.registered_model,
        last,
    ]
    .join(&SEPARATOR.to_string());
    hex::encode(text)
}

/// The line a token names, as (original period, provider, category, chip origin, registered
/// model), and the record id to continue after.
fn parse_token(token: &str) -> Result<([String; 5], String)> {
    let bad = || {
        SettleError::InvalidArgument(format!(
            "records_page_token {token:?} is not a token this server gave"
        ))
    };
    let bytes = hex::decode(token.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let parts: Vec<&str> = text.split(SEPARATOR).collect();
    let [
        period,
        provider,
        category,
        chip_origin,
        registered_model,
        last,
    ] = parts[..]
    else {
        return Err(bad());
    };
    Ok((
        [period, provider, category, chip_origin, registered_model].map(str::to_owned),
        last.to_owned(),
    ))
}

fn time_of(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `settle explain`: the lines of `run_id` whose beneficiary is `beneficiary` (and provider
/// `provider`, if given), explained. Read-only.
pub fn explain<S: crate::settlement::Transact + ?Sized>(
    store: &mut S,
    run_id: i64,
    beneficiary: &str,
    provider: Option<&str>,
    page: &RecordsPage,
) -> Result<Explanation> {
    if page.size > RECORDS_PAGE_MAX {
        return Err(SettleError::InvalidArgument(format!(
            "records_page_size {} is above the most, {RECORDS_PAGE_MAX}",
            page.size
        )));
    }
    let size = if page.size == 0 {
        RECORDS_PAGE_DEFAULT
    } else {
        page.size
    };
    let token = page.token.as_deref().map(parse_token).transpose()?;
    if page.filter.id_prefix.len() > suanli_domain::usage::ID_BYTES_MAX {
        return Err(SettleError::InvalidArgument(format!(
            "a record id has at most {} bytes",
            suanli_domain::usage::ID_BYTES_MAX
        )));
    }
    in_tx(store, |tx| {
        explain_in(
            tx,
            run_id,
            beneficiary,
            provider,
            size,
            token.as_ref(),
            &page.filter,
        )
    })
}

type Token = ([String; 5], String);

fn explain_in(
    tx: &mut dyn Sql,
    run_id: i64,
    beneficiary: &str,
    provider: Option<&str>,
    size: usize,
    token: Option<&Token>,
    filter: &RecordFilter,
) -> Result<Explanation> {
    let run = rows::run(tx, run_id)?
        .ok_or_else(|| SettleError::NotFound(format!("run {run_id} does not exist")))?;
    // The beneficiary's lines alone, by its index: a city's run has 800,000.
    let selected: Vec<(usize, RunLineRow)> =
        rows::beneficiary_lines_of_run(tx, run_id, beneficiary, 0, i64::MAX)?
            .into_iter()
            .map(|(seq, l)| (usize::try_from(seq).unwrap_or(usize::MAX), l))
            .filter(|(_, l)| provider.is_none_or(|p| l.key.provider == p))
            .filter(|(_, l)| {
                token.is_none_or(|(line, _)| {
                    [
                        &l.original_period,
                        &l.key.provider,
                        &l.key.category,
                        &l.key.chip_origin,
                        &l.key.registered_model,
                    ]
                    .iter()
                    .zip(line)
                    .all(|(a, b)| *a == b)
                })
            })
            .collect();
    if selected.is_empty() {
        let whose = match provider {
            Some(p) => format!("beneficiary {beneficiary:?} with provider {p:?}"),
            None => format!("beneficiary {beneficiary:?}"),
        };
        return Err(if token.is_some() {
            SettleError::InvalidArgument(format!(
                "records_page_token names no line of run {run_id} of {whose}"
            ))
        } else {
            SettleError::NotFound(format!("run {run_id} has no line of {whose}"))
        });
    }
    let programme_id = run.programme.as_str();
    let run_period = period_of(&run.period)?;

    // The engine, once more over the run's frozen inputs, watched.
    let (versions, bases) = frozen_inputs(tx, run_id)?;
    let mut registries: HashMap<i64, Arc<Registry>> = HashMap::new();
    for v in versions.values().chain([&run.registry_version]) {
        load_registry(tx, *v, &mut registries)?;
    }
    let opening = crate::opening::opening_prior(tx, Some(&run.created_at))?;
    let mut wanted = BTreeSet::new();
    for (_, l) in &selected {
        wanted.insert((period_of(&l.original_period)?, key_of_row(&l.key)?));
    }
    let mut traces = Traces {
        programme: programme_id,
        beneficiary,
        wanted: &wanted,
        stages: HashMap::new(),
    };
    let statements = entitlements_observed(
        &versions,
        &registries,
        &bases,
        run_period,
        &opening,
        &mut traces,
    );
    let mut statement_lines: HashMap<(Period, &LineKey), &StatementLine> = HashMap::new();
    for statement in &statements {
        for l in statement
            .lines
            .iter()
            .filter(|l| l.programme == programme_id)
        {
            statement_lines.insert((l.period, &l.key), l);
        }
    }
    let mut stages = traces.stages;

    let run_registry = registries[&run.registry_version].clone();
    let programme_name = run_registry
        .programme(programme_id)
        .map_or_else(|| programme_id.to_owned(), |p| p.name.clone());
    let beneficiary_name = run_registry
        .beneficiary(beneficiary)
        .map_or_else(|| beneficiary.to_owned(), |b| b.name.clone());
    let reasons_of_lines = crate::reasons::run_reasons(
        tx,
        &run,
        &selected.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
    )?;
    let created_at = time_of(&run.created_at);

    let mut out = Vec::with_capacity(selected.len());
    for ((seq, line), reason) in selected.into_iter().zip(reasons_of_lines) {
        let period = period_of(&line.original_period)?;
        let key = key_of_row(&line.key)?;
        let registry = registries[&versions
            .get(&period)
            .copied()
            .unwrap_or(run.registry_version)]
            .clone();
        let computed = statement_lines.get(&(period, &key)).copied();
        let entitlement = computed.map_or(Fen::ZERO, |l| l.subsidy);
        if entitlement.0 != line.entitlement_fen {
            return Err(SettleError::FailedPrecondition(format!(
                "run {run_id}'s line {seq} ({} {} {} {}) does not match its re-derivation: entitled {} recomputed, {} stored; see `suanli settle rederive {run_id}`",
                line.original_period,
                line.key.beneficiary,
                line.key.provider,
                class_label(key.class),
                entitlement,
                Fen(line.entitlement_fen)
            )));
        }
        let ratio = ratio_explanation(&registry, programme_id, period, &key, computed);
        let cuts: Vec<Cut> = stages
            .remove(&(period, key.clone()))
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.after < s.before)
            .map(|s| {
                let (subject_name, prior_opening) = match s.stage {
                    CutBy::BeneficiaryCap => (
                        registry
                            .beneficiary(&s.subject)
                            .map_or_else(|| s.subject.clone(), |b| b.name.clone()),
                        opening.beneficiary(programme_id, &s.subject),
                    ),
                    CutBy::ProviderCap => (
                        registry
                            .provider(&s.subject)
                            .map_or_else(|| s.subject.clone(), |p| p.name.clone()),
                        opening.provider(programme_id, &s.subject),
                    ),
                    CutBy::Pool => (String::new(), opening.programme(programme_id)),
                };
                let mut cut = Cut {
                    stage: s.stage,
                    subject: s.subject,
                    subject_name,
                    limit: s.limit,
                    prior: s.prior,
                    prior_opening,
                    left: s.left,
                    wanted: s.wanted,
                    lines: s.lines,
                    before: s.before,
                    after: s.after,
                    text: String::new(),
                };
                let cap_of_grant = s.stage == CutBy::BeneficiaryCap
                    && registry
                        .grant(&cut.subject, programme_id)
                        .and_then(|g| g.cap)
                        .is_some();
                cut.text = reasons::cut_text(
                    &cut,
                    computed.map_or(Fen::ZERO, |l| l.demand),
                    period,
                    run_period,
                    run.run_id,
                    programme_id,
                    cap_of_grant,
                );
                cut
            })
            .collect();

        // The records of the line: a bounded page, and the line's totals now.
        let after = token.map_or("", |(_, last)| last.as_str());
        let class_code = suanli_store::class_code(key.class);
        let period_code = suanli_store::period_code(period);
        let mut page = records::line_records_matching(
            tx,
            beneficiary,
            &line.key.provider,
            class_code,
            period_code,
            after,
            filter,
            size + 1,
        )?;
        let more = page.len() > size;
        page.truncate(size);
        let next_records_page_token = more
            .then(|| page.last().map(|r| token_of(&line, &r.record_id)))
            .flatten();
        let (base_now, records_now) =
            records::line_totals(tx, beneficiary, &line.key.provider, class_code, period_code)?;
        let records: Vec<LineRecord> = page.into_iter().map(|r| record_of(r, created_at)).collect();
        let demand = computed.map_or(Fen::ZERO, |l| l.demand);
        let adjustment = line.original_period != run.period;
        let text = reasons::line_text(&reasons::LineFacts {
            run: &run,
            line: &line,
            ratio: &ratio,
            demand,
            cuts: &cuts,
            base_now: Fen(base_now),
            records_now,
        });
        let provider_name = registry
            .provider(&line.key.provider)
            .map_or_else(|| line.key.provider.clone(), |p| p.name.clone());
        out.push(LineExplanation {
            seq,
            provider_name,
            line,
            reason,
            adjustment,
            ratio,
            demand,
            cuts,
            base_now: Fen(base_now),
            records_now,
            records,
            next_records_page_token,
            text,
        });
    }
    Ok(Explanation {
        run,
        programme_name,
        beneficiary: beneficiary.to_owned(),
        beneficiary_name,
        lines: out,
    })
}

fn record_of(r: LineRecordRow, created_at: Option<DateTime<Utc>>) -> LineRecord {
    let voided = r.voided_at.as_deref().and_then(time_of);
    let counted = match (voided, created_at) {
        (None, _) => r.voided_at.is_none(),
        (Some(v), Some(c)) => v > c,
        (Some(_), None) => false,
    };
    LineRecord {
        record_id: r.record_id,
        sku: r.sku,
        start: DateTime::from_timestamp_nanos(r.start_ns),
        end: DateTime::from_timestamp_nanos(r.end_ns),
        quantity: r.quantity,
        amount: Fen(r.amount_fen),
        voided_at: r.voided_at,
        void_reason: r.void_reason,
        counted,
    }
}

/// The engine's ratio decision for the line, from the registry version of the line's month.
fn ratio_explanation(
    registry: &Registry,
    programme_id: &str,
    period: Period,
    key: &LineKey,
    computed: Option<&StatementLine>,
) -> RatioExplanation {
    let decision = ratio_decision(registry, period.year, &key.beneficiary, key.class);
    let own = decision
        .granted
        .iter()
        .find(|(p, _)| p.id == programme_id)
        .and_then(|(_, r)| *r);
    let package = decision.package();
    let stacked_with = package.filter(|p| p.stacked()).and_then(|p| {
        let index = p
            .parts
            .iter()
            .position(|x| x.programme.id == programme_id)?;
        let other = &p.parts[1 - index];
        Some((
            other.programme.id.clone(),
            other.programme.name.clone(),
            other.effective,
            index == 0,
        ))
    });
    let runner_up = decision.runner_up.map(|i| {
        let p = &decision.packages[i];
        (
            p.parts.iter().map(|x| x.programme.id.clone()).collect(),
            p.total(),
        )
    });
    let mut explanation = RatioExplanation {
        class: class_label(key.class),
        ratio: computed.map_or(Decimal::ZERO, |l| l.ratio),
        own,
        stacked_with,
        ceiling: package.and_then(|p| p.ceiling),
        chosen_because: decision.because,
        runner_up,
        text: String::new(),
    };
    explanation.text = reasons::ratio_text(&explanation, programme_id, &decision, computed);
    explanation
}
