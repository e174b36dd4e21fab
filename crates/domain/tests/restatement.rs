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
    //! After any sequence of runs with late records and voids: posted = entitlement for every
    //! (period, line), no cap or pool is passed, every journal balances, and the journals'
    //! expense equals the sum of what the runs posted.

    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use suanli_domain::ledger::posting_journal;
    use suanli_domain::money::Fen;
    use suanli_domain::registry::{Category, ChipOrigin, Class};
    use suanli_domain::restatement::{PeriodInput, entitlements_to_date, run_lines};
    use suanli_domain::settlement::{LineKey, StatementLine};
    use suanli_domain::usage::Period;

    const POOLED: &str = r#"
[[programme]]
id = "city"
funder = "municipal"
year = 2025
pool = "500.00"
beneficiary_cap = "200.00"
beneficiary_kinds = ["enterprise"]
payee = "provider"
funding = [ { funder = "city", share = "0.6" }, { funder = "district", share = "0.4" } ]
rates = [ { category = "compute", ratio = "0.50" } ]
[[provider]]
id = "p1"
[[provider]]
id = "p2"
[[sku]]
id = "g1"
provider = "p1"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
[[beneficiary]]
id = "e1"
kind = "enterprise"
[[beneficiary]]
id = "e2"
kind = "enterprise"
[[beneficiary]]
id = "e3"
kind = "enterprise"
[[grant]]
beneficiary = "e1"
programme = "city"
[[grant]]
beneficiary = "e2"
programme = "city"
[[grant]]
beneficiary = "e3"
programme = "city"
"#;

    fn key(b: usize, p: usize) -> LineKey {
        LineKey {
            beneficiary: format!("e{}", b + 1),
            provider: format!("p{}", p + 1),
            class: Class {
                category: Category::Compute,
                chip_origin: Some(ChipOrigin::Domestic),
                registered_model: None,
            },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, rng_seed: proptest::test_runner::RngSeed::Fixed(9), ..ProptestConfig::default() })]

        #[test]
        fn runs_keep_posted_equal_to_entitlement(
            // Per run (months 1..=6 in order): changes (month offset back, beneficiary, provider, new base in fen).
            changes in proptest::collection::vec(proptest::collection::vec((0u32..3, 0usize..3, 0usize..2, 0i64..60_000), 0..5), 6)
        ) {
            let registry = super::registry(POOLED);
            let programme = registry.programme("city").unwrap().clone();
            let mut bases: BTreeMap<Period, BTreeMap<LineKey, Fen>> = BTreeMap::new();
            let mut posted: BTreeMap<(Period, LineKey), Fen> = BTreeMap::new();
            let mut journal_expense = 0i64;
            for (run_index, run_changes) in changes.iter().enumerate() {
                let run_period = Period { year: 2025, month: run_index as u32 + 1 };
                for &(back, b, p, base) in run_changes {
                    // A late record or a void changes a month at or before the run's month.
                    let month = run_period.month.saturating_sub(back).max(1);
                    let lines = bases.entry(Period { year: 2025, month }).or_default();
                    if base == 0 { lines.remove(&key(b, p)); } else { lines.insert(key(b, p), Fen(base)); }
                }
                let empty = BTreeMap::new();
                let periods: Vec<Period> = (1..=run_period.month).map(|m| Period { year: 2025, month: m }).collect();
                let inputs: Vec<PeriodInput> = periods.iter().map(|q| PeriodInput { period: *q, registry: &registry, bases: bases.get(q).unwrap_or(&empty) }).collect();
                let entitlements = entitlements_to_date(&inputs);
                let lines = run_lines("city", run_period, &entitlements, &posted);
                let as_statement: Vec<StatementLine> = lines.iter().map(|l| StatementLine { subsidy: l.amount, ..l.line.clone() }).collect();
                if let Some(journal) = posting_journal(&programme, &as_statement) {
                    let debits: Fen = journal.entries().iter().map(|e| e.debit).sum();
                    let credits: Fen = journal.entries().iter().map(|e| e.credit).sum();
                    prop_assert_eq!(debits, credits, "the journal balances");
                    journal_expense += journal.entries().iter().filter(|e| e.account.to_string().starts_with("expense:")).map(|e| e.debit.0 - e.credit.0).sum::<i64>();
                }
                for l in &lines {
                    let slot = posted.entry((l.line.period, l.line.key.clone())).or_default();
                    *slot = slot.plus(l.amount);
                }
                for statement in &entitlements {
                    for line in &statement.lines {
                        prop_assert_eq!(posted.get(&(line.period, line.key.clone())).copied().unwrap_or_default(), line.subsidy);
                    }
                }
                let total: i64 = posted.values().map(|f| f.0).sum();
                prop_assert!(total <= 50_000, "the pool is never passed: {}", total);
                prop_assert_eq!(journal_expense, total, "journal expense = Σ posted");
                for b in 0..3 {
                    let by_b: i64 = posted.iter().filter(|((_, k), _)| k.beneficiary == format!("e{}", b + 1)).map(|(_, f)| f.0).sum();
                    prop_assert!(by_b <= 20_000, "a beneficiary cap is never passed");
                    prop_assert!(by_b >= 0);
                }
            }
        }
    }
}
