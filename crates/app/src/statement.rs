//! What a person signs or checks, with names: the settlement statement (结算单) of a run — its
//! programme, period, lines with the beneficiaries', providers' and payees' names from the
//! run's registry version, totals per payee and in all, who created and approved it and when —
//! and the posted lines of one beneficiary, so each can be opened and explained.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_store::ledger::{self as rows, RunLineRow, RunRow};

use crate::registry::load_registry;
use crate::settlement::{Result, SettleError, Transact, in_tx};

/// One line of a run's statement, with the names of the parties it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementEntry {
    pub line: RunLineRow,
    pub beneficiary_name: String,
    pub provider_name: String,
    pub payee_name: String,
}

/// What one payee receives (or owes back) by a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayeeTotal {
    pub payee: String,
    pub name: String,
    pub lines: usize,
    pub amount: Fen,
}

/// Lines at most that the statement of a whole run lists. A larger run's statement gives its
/// totals and its payees' totals, each payee's statement listing the payee's lines: a city's
/// monthly run of 800,000 lines made a document of 367 MB that no browser can print.
pub const STATEMENT_LINES_MAX: i64 = 10_000;

/// The settlement statement of a run, or of a payee's part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunStatement {
    pub run: RunRow,
    pub programme_name: String,
    /// The payee whose part of the run this is (`None`: the whole run).
    pub payee: Option<PayeeTotal>,
    /// The lines, unless `summarised`.
    pub lines: Vec<StatementEntry>,
    /// How many lines the statement covers: the run's, or the payee's.
    pub line_count: usize,
    /// The whole run's statement of a run of more than [`STATEMENT_LINES_MAX`] lines: its
    /// totals and its payees', without the lines, which each payee's statement lists.
    pub summarised: bool,
    /// Per payee, in payee id order.
    pub payees: Vec<PayeeTotal>,
    /// Σ of the lines' changes: what the run posts.
    pub total: Fen,
    /// Σ of the positive changes and Σ of the claw-backs (negative).
    pub increases: Fen,
    pub claw_backs: Fen,
    pub base: Fen,
}

/// The name of `id` in `registry`: a beneficiary's, else a provider's, else the id itself.
fn party_name(registry: Option<&Registry>, id: &str) -> String {
    registry
        .and_then(|r| {
            r.beneficiary(id)
                .map(|b| b.name.clone())
                .or_else(|| r.provider(id).map(|p| p.name.clone()))
        })
        .unwrap_or_else(|| id.to_owned())
}

/// The statement of run `run_id` (of `payee`'s lines only, if given), names from the registry
/// version the run was created with (a payee with no line in the run has no lines, and
/// `payee` is then `None`). The whole
/// run's statement lists its lines up to `lines_max` of them ([`STATEMENT_LINES_MAX`]), and
/// is summarised past that.
pub fn run_statement<S: Transact + ?Sized>(
    store: &mut S,
    run_id: i64,
    payee: Option<&str>,
    lines_max: i64,
) -> Result<RunStatement> {
    in_tx(store, |tx| {
        let run = rows::run(tx, run_id)?
            .ok_or_else(|| SettleError::NotFound(format!("run {run_id} does not exist")))?;
        let mut registries: HashMap<i64, Arc<Registry>> = HashMap::new();
        // A version that no longer loads names less, but never hides a line.
        let registry = load_registry(tx, run.registry_version, &mut registries)
            .ok()
            .map(|()| registries[&run.registry_version].clone());
        let registry = registry.as_deref();
        let programme_name = registry
            .and_then(|r| r.programme(&run.programme))
            .map_or_else(|| run.programme.clone(), |p| p.name.clone());
        let lines = match payee {
            Some(payee) => rows::run_lines_of_payee(tx, run_id, payee)?,
            None => {
                if crate::settlement::totals_of(tx, run_id)?.lines > lines_max {
                    return summarised(tx, run, programme_name, registry);
                }
                rows::run_lines(tx, run_id)?
            }
        };
        let mut payees: BTreeMap<String, PayeeTotal> = BTreeMap::new();
        let (mut total, mut increases, mut claw_backs, mut base) =
            (Fen::ZERO, Fen::ZERO, Fen::ZERO, Fen::ZERO);
        let entries: Vec<StatementEntry> = lines
            .into_iter()
            .map(|line| {
                let amount = Fen(line.amount_fen);
                total = total.plus(amount);
                base = base.plus(Fen(line.base_fen));
                if amount.0 < 0 {
                    claw_backs = claw_backs.plus(amount);
                } else {
                    increases = increases.plus(amount);
                }
                let payee_name = party_name(registry, &line.payee);
                let entry = payees
                    .entry(line.payee.clone())
                    .or_insert_with(|| PayeeTotal {
                        payee: line.payee.clone(),
                        name: payee_name.clone(),
                        lines: 0,
                        amount: Fen::ZERO,
                    });
                entry.lines += 1;
                entry.amount = entry.amount.plus(amount);
                StatementEntry {
                    beneficiary_name: registry
                        .and_then(|r| r.beneficiary(&line.key.beneficiary))
                        .map_or_else(|| line.key.beneficiary.clone(), |b| b.name.clone()),
                    provider_name: registry
                        .and_then(|r| r.provider(&line.key.provider))
                        .map_or_else(|| line.key.provider.clone(), |p| p.name.clone()),
                    payee_name,
                    line,
                }
            })
            .collect();
        let payees: Vec<PayeeTotal> = payees.into_values().collect();
        Ok(RunStatement {
            run,
            programme_name,
            payee: payee.and_then(|_| payees.first().cloned()),
            line_count: entries.len(),
            lines: entries,
            summarised: false,
            payees,
            total,
            increases,
            claw_backs,
            base,
        })
    })
}

/// The whole run's statement without its lines: its payees' totals, summed by the database.
fn summarised(
    tx: &mut dyn suanli_store::sql::Sql,
    run: RunRow,
    programme_name: String,
    registry: Option<&Registry>,
) -> Result<RunStatement> {
    let sums = rows::run_payee_sums(tx, run.run_id)?;
    let sum = |f: fn(&rows::PayeeSumsRow) -> i64| Fen(sums.iter().map(f).sum());
    let line_count = sums.iter().map(|p| p.lines).sum::<i64>();
    Ok(RunStatement {
        programme_name,
        payee: None,
        lines: Vec::new(),
        line_count: usize::try_from(line_count).unwrap_or(usize::MAX),
        summarised: true,
        total: sum(|p| p.amount_fen),
        increases: sum(|p| p.increases_fen),
        claw_backs: sum(|p| p.claw_backs_fen),
        base: sum(|p| p.base_fen),
        payees: sums
            .iter()
            .map(|p| PayeeTotal {
                payee: p.payee.clone(),
                name: party_name(registry, &p.payee),
                lines: usize::try_from(p.lines).unwrap_or(usize::MAX),
                amount: Fen(p.amount_fen),
            })
            .collect(),
        run,
    })
}

/// A posted line of a beneficiary, with its run and the programme's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostedLine {
    pub run: RunRow,
    pub programme_name: String,
    pub provider_name: String,
    pub line: RunLineRow,
}

/// The lines of `beneficiary` in the posted runs of fiscal `year` (the runs' own periods),
/// newest run first, at most `limit` of them, and how many there are in all; read by the
/// beneficiary's index of run lines, so the cost follows its own lines, not every run's.
pub fn posted_lines<S: Transact + ?Sized>(
    store: &mut S,
    beneficiary: &str,
    year: i32,
    limit: usize,
) -> Result<(Vec<PostedLine>, usize)> {
    in_tx(store, |tx| {
        let prefix = format!("{year:04}-");
        let runs: HashMap<i64, RunRow> = rows::runs(tx, None)?
            .into_iter()
            .filter(|r| r.status == "posted" && r.period.starts_with(&prefix))
            .map(|r| (r.run_id, r))
            .collect();
        let mut registries: HashMap<i64, Arc<Registry>> = HashMap::new();
        let mut out = Vec::new();
        let mut all = 0;
        for (run_id, line) in rows::beneficiary_run_lines(tx, beneficiary)? {
            let Some(run) = runs.get(&run_id) else {
                continue;
            };
            all += 1;
            if out.len() >= limit {
                continue;
            }
            // A version that no longer loads names less, but never hides a line.
            let registry = load_registry(tx, run.registry_version, &mut registries)
                .ok()
                .map(|()| registries[&run.registry_version].clone());
            let registry = registry.as_deref();
            out.push(PostedLine {
                run: run.clone(),
                programme_name: registry
                    .and_then(|r| r.programme(&run.programme))
                    .map_or_else(|| run.programme.clone(), |p| p.name.clone()),
                provider_name: registry
                    .and_then(|r| r.provider(&line.key.provider))
                    .map_or_else(|| line.key.provider.clone(), |p| p.name.clone()),
                line,
            });
        }
        Ok((out, all))
    })
}
