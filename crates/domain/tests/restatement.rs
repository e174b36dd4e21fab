//! R9 year-to-date restatement: late records, voids and claw-backs across months.

mod common;

use std::collections::BTreeMap;

use common::{cny, period, registry};
use suanli_domain::money::Fen;
use suanli_domain::registry::{Category, ChipOrigin, Class};
use suanli_domain::restatement::{PeriodInput, RunLine, entitlements_to_date, run_lines};
use suanli_domain::settlement::LineKey;
use suanli_domain::usage::Period;

const CAPPED: &str = r#"
[[programme]]
id = "city"
funder = "municipal"
year = 2025
beneficiary_cap = "100.00"
beneficiary_kinds = ["enterprise"]
payee = "provider"
rates = [ { category = "compute", ratio = "0.50" } ]
[[provider]]
id = "p1"
[[sku]]
id = "gpu"
provider = "p1"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
[[beneficiary]]
id = "e1"
kind = "enterprise"
[[grant]]
beneficiary = "e1"
programme = "city"
"#;

fn key() -> LineKey {
    LineKey {
        beneficiary: "e1".into(),
        provider: "p1".into(),
        class: Class {
            category: Category::Compute,
            chip_origin: Some(ChipOrigin::Domestic),
            registered_model: None,
        },
    }
}

/// The year's books: bases per month (CNY), and what has been posted per (period, line).
struct Books {
    bases: BTreeMap<Period, BTreeMap<LineKey, Fen>>,
    posted: BTreeMap<(Period, LineKey), Fen>,
}

impl Books {
    fn new() -> Books {
        Books {
            bases: BTreeMap::new(),
            posted: BTreeMap::new(),
        }
    }

    fn set_base(&mut self, month: &str, amount: &str) {
        self.bases
            .entry(period(month))
            .or_default()
            .insert(key(), cny(amount));
    }

    /// Runs and posts `month`; returns (original period, amount) of every posted line.
    fn run(&mut self, month: &str) -> Vec<(String, String)> {
        let reg = registry(CAPPED);
        let run_period = period(month);
        let empty = BTreeMap::new();
        let months: Vec<Period> = (1..=run_period.month)
            .map(|m| Period {
                year: 2025,
                month: m,
            })
            .collect();
        let inputs: Vec<PeriodInput> = months
            .iter()
            .map(|p| PeriodInput {
                period: *p,
                registry: &reg,
                bases: self.bases.get(p).unwrap_or(&empty),
            })
            .collect();
        let entitlements = entitlements_to_date(&inputs);
        let lines: Vec<RunLine> = run_lines("city", run_period, &entitlements, &self.posted);
        for l in &lines {
            let p = self
                .posted
                .entry((l.line.period, l.line.key.clone()))
                .or_default();
            *p = p.plus(l.amount);
        }
        // After every run, posted = entitlement for every (period, line) to date.
        for statement in &entitlements {
            for line in &statement.lines {
                assert_eq!(
                    self.posted[&(line.period, line.key.clone())],
                    line.subsidy,
                    "posted = entitlement"
                );
            }
        }
        let total: Fen = self.posted.values().copied().sum();
        assert!(total <= cny("100.00"), "the cap is never passed: {total}");
        lines
            .iter()
            .map(|l| (l.line.period.to_string(), l.amount.to_string()))
            .collect()
    }
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn voiding_a_record_of_a_capped_month_claws_nothing_back() {
    // Proves docs/rules.md R9's example: cap 100, March posted 100 on a gross of 150; a March
    // record worth 50 of gross voided in May leaves March's entitlement at 100.
    let mut books = Books::new();
    books.set_base("2025-03", "300.00");
    assert_eq!(books.run("2025-03"), pairs(&[("2025-03", "100.00")]));
    books.set_base("2025-03", "200.00");
    assert_eq!(
        books.run("2025-05"),
        Vec::<(String, String)>::new(),
        "May has no lines and March needs no adjustment"
    );
}

#[test]
fn a_late_record_for_an_earlier_month_shifts_the_cap_between_months() {
    // Proves restatement in order: a late March record takes cap room that April had used,
    // so the May run posts +30 for March and −30 for April.
    let mut books = Books::new();
    books.set_base("2025-03", "120.00");
    assert_eq!(books.run("2025-03"), pairs(&[("2025-03", "60.00")]));
    books.set_base("2025-04", "200.00");
    assert_eq!(books.run("2025-04"), pairs(&[("2025-04", "40.00")]));
    books.set_base("2025-03", "180.00");
    assert_eq!(
        books.run("2025-05"),
        pairs(&[("2025-03", "30.00"), ("2025-04", "-30.00")])
    );
}

#[test]
fn voiding_every_record_of_a_paid_line_claws_it_back_in_full() {
    // Proves a line whose records are all voided gets a negative adjustment of what was paid.
    let mut books = Books::new();
    books.set_base("2025-01", "50.00");
    assert_eq!(books.run("2025-01"), pairs(&[("2025-01", "25.00")]));
    books.bases.remove(&period("2025-01"));
    books.set_base("2025-02", "10.00");
    assert_eq!(
        books.run("2025-02"),
        pairs(&[("2025-02", "5.00"), ("2025-01", "-25.00")])
    );
}

mod properties {
    //! After any sequence of monthly runs with late records, voids of single records and of
    //! whole lines (often), and records on month boundaries in several offsets: every month's
    //! bases and entitlement equal the independent year-to-date restatement
    //! (`common/model.rs`) to the fen; every run posts entitlement − posted before; posted =
    //! entitlement for every (programme, period, line) ever posted, a vanished line's
    //! entitlement being zero; no cap or pool is passed; every journal balances and the journals'
    //! expense equals the sum of what the runs posted.

    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use suanli_domain::intake::intake;
    use suanli_domain::ledger::posting_journal;
    use suanli_domain::money::Fen;
    use suanli_domain::restatement::{PeriodInput, entitlements_to_date, run_lines};
    use suanli_domain::settlement::{LineKey, StatementLine};
    use suanli_domain::usage::Period;

    use super::common::model::{self, Key};
    use super::common::world::{RecordRaw, RecordSpec, World, month_start, record_raw, world};
    use super::common::{proptest_config, row};

    /// Months run, one run per month in order.
    const MONTHS: u32 = 6;

    #[derive(Clone, Debug)]
    enum Event {
        /// A new record, late or on time, its end near a month boundary.
        Add(RecordRaw),
        /// Void one live record.
        Void(usize),
        /// Void every live record of one record's line and month, so the line vanishes.
        VoidLine(usize),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            11 => record_raw().prop_map(Event::Add),
            5 => any::<usize>().prop_map(Event::Void),
            4 => any::<usize>().prop_map(Event::VoidLine),
        ]
    }

    /// The month a live record counts in and its line, where it is accepted.
    fn line_of(world: &World, r: &RecordSpec) -> Option<((i32, u32), Key)> {
        model::validate(world, r)
            .ok()
            .map(|k| (model::period_of(r.end), k))
    }

    fn apply(world: &World, live: &mut Vec<RecordSpec>, next_id: &mut usize, event: &Event) {
        // The first instants of January to July: December 2024 and the month after the last
        // run lie one second and one anchor away.
        let anchors: Vec<i64> = (1..=MONTHS + 1).map(month_start).collect();
        match event {
            Event::Add(raw) => {
                live.push(raw.build(world, format!("r{next_id}"), &anchors));
                *next_id += 1;
            }
            Event::Void(pick) if !live.is_empty() => {
                live.remove(pick % live.len());
            }
            Event::VoidLine(pick) if !live.is_empty() => {
                let chosen = live.remove(pick % live.len());
                if let Some(line) = line_of(world, &chosen) {
                    live.retain(|r| line_of(world, r) != Some(line));
                }
            }
            _ => {}
        }
    }

    proptest! {
        #![proptest_config(proptest_config(300))]

        #[test]
        fn runs_keep_posted_equal_to_entitlement(
            world in world(),
            runs in proptest::collection::vec(proptest::collection::vec(event(), 2..14), MONTHS as usize),
        ) {
            let registry = super::registry(&world.toml());
            let mut live: Vec<RecordSpec> = Vec::new();
            let mut next_id = 0;
            // Per programme: Σ posted per (period, line), and the expense its journals booked.
            let mut posted: Vec<BTreeMap<(Period, LineKey), Fen>> = vec![BTreeMap::new(); world.programmes.len()];
            let mut journal_expense = vec![0i64; world.programmes.len()];
            for (run_index, events) in runs.iter().enumerate() {
                let run_month = run_index as u32 + 1;
                let run_period = Period { year: 2025, month: run_month };
                for e in events {
                    apply(&world, &mut live, &mut next_id, e);
                }
                let rows: Vec<[String; 8]> = live.iter().map(|r| world.fields(r)).collect();
                let periods: Vec<Period> = (1..=run_month).map(|m| Period { year: 2025, month: m }).collect();
                let bases: Vec<BTreeMap<LineKey, Fen>> = periods.iter().map(|q| {
                    let rows = rows.iter().enumerate().map(|(i, f)| row(i as u64 + 2, [&f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7]])).collect();
                    intake(&registry, *q, rows).bases()
                }).collect();
                for (q, b) in periods.iter().zip(&bases) {
                    let engine: BTreeMap<Key, i64> = b.iter().map(|(k, f)| (model::key_from_engine(k), f.0)).collect();
                    prop_assert_eq!(engine, model::bases(&world, &live, (2025, q.month)), "bases of {}", q);
                }
                let inputs: Vec<PeriodInput> = periods.iter().zip(&bases).map(|(q, b)| PeriodInput { period: *q, registry: &registry, bases: b }).collect();
                let entitlements = entitlements_to_date(&inputs);
                let expected = model::entitlements(&world, &live, run_month);
                for (statement, expected) in entitlements.iter().zip(&expected) {
                    let lines: Vec<model::Line> = statement.lines.iter().map(model::from_engine).collect();
                    prop_assert_eq!(&lines, expected, "entitlement of {} at the run of {}", statement.lines.first().map(|l| l.period.to_string()).unwrap_or_default(), run_period);
                }
                for (p, programme) in world.programmes.iter().enumerate().map(|(p, _)| (p, registry.programme(&World::programme_id(p)).expect("generated programme"))) {
                    let entitled: BTreeMap<(Period, LineKey), Fen> = entitlements.iter().flat_map(|s| &s.lines).filter(|l| l.programme == programme.id).map(|l| ((l.period, l.key.clone()), l.subsidy)).collect();
                    let lines = run_lines(&programme.id, run_period, &entitlements, &posted[p]);
                    // R9: the run posts entitlement − posted before on its own period's lines and
                    // wherever an earlier period's difference is not zero, nothing else.
                    let all: BTreeSet<&(Period, LineKey)> = entitled.keys().chain(posted[p].keys()).collect();
                    let mut wanted: Vec<((Period, LineKey), Fen)> = all.into_iter().filter_map(|k| {
                        let amount = entitled.get(k).copied().unwrap_or_default().minus(posted[p].get(k).copied().unwrap_or_default());
                        (entitled.contains_key(k) && k.0 == run_period || amount != Fen::ZERO).then(|| (k.clone(), amount))
                    }).collect();
                    wanted.sort();
                    let mut got: Vec<((Period, LineKey), Fen)> = lines.iter().map(|l| ((l.line.period, l.line.key.clone()), l.amount)).collect();
                    got.sort();
                    prop_assert_eq!(got, wanted, "what the run of {} posts for {}", run_period, &programme.id);
                    let as_statement: Vec<StatementLine> = lines.iter().map(|l| StatementLine { subsidy: l.amount, ..l.line.clone() }).collect();
                    if let Some(journal) = posting_journal(programme, &as_statement) {
                        let debits: Fen = journal.entries().iter().map(|e| e.debit).sum();
                        let credits: Fen = journal.entries().iter().map(|e| e.credit).sum();
                        prop_assert_eq!(debits, credits, "the journal balances");
                        journal_expense[p] += journal.entries().iter().filter(|e| e.account.to_string().starts_with("expense:")).map(|e| e.debit.0 - e.credit.0).sum::<i64>();
                    }
                    for l in &lines {
                        let slot = posted[p].entry((l.line.period, l.line.key.clone())).or_default();
                        *slot = slot.plus(l.amount);
                    }
                    // posted = entitlement for every line ever posted or entitled, vanished
                    // lines included (their entitlement is zero).
                    for (k, amount) in &posted[p] {
                        prop_assert_eq!(*amount, entitled.get(k).copied().unwrap_or_default(), "posted = entitlement for {} {:?} of {}", k.0, &k.1, &programme.id);
                    }
                    for (k, amount) in &entitled {
                        prop_assert_eq!(posted[p].get(k).copied().unwrap_or_default(), *amount, "an entitled line is posted: {} {:?} of {}", k.0, &k.1, &programme.id);
                    }
                    let total: i64 = posted[p].values().map(|f| f.0).sum();
                    prop_assert_eq!(journal_expense[p], total, "journal expense = Σ posted");
                    if let Some(pool) = programme.pool {
                        prop_assert!(total <= pool.0, "the pool is never passed: {}", total);
                    }
                    for b in 0..world.grants.len() {
                        let id = World::beneficiary_id(b);
                        let by_b: i64 = posted[p].iter().filter(|((_, k), _)| k.beneficiary == id).map(|(_, f)| f.0).sum();
                        prop_assert!(by_b >= 0, "nothing is clawed back below zero");
                        if let Some(cap) = registry.beneficiary_cap(programme, &id) {
                            prop_assert!(by_b <= cap.0, "a beneficiary cap is never passed");
                        }
                    }
                }
            }
        }
    }
}
