//! Property tests on random registries and usage aimed at the edges (records on period
//! boundaries in several offsets, SKUs with list prices and capacities, amounts and quantities
//! at and just past their limits, unknown ids, beneficiaries without a grant, caps and pools that
//! bind): intake and the statement equal an independent restatement of the rules
//! (`common/model.rs`) to the fen; caps and pools are never passed and are met exactly when
//! they bind; no line passes its ceiling; the statement ignores input order.
//! Seeded by `SUANLI_PROPTEST_SEED`, or a fresh seed that a failing test prints.

mod common;

use std::collections::BTreeMap;

use common::model::{self, Paid};
use common::world::{PROVIDERS, RecordSpec, World, month_start, record_raw, world};
use common::{proptest_config, row, run};
use proptest::prelude::*;
use rust_decimal::Decimal;
use suanli_domain::Registry;
use suanli_domain::intake::Row;
use suanli_domain::money::Fen;
use suanli_domain::registry::lookup_ratio;
use suanli_domain::settlement::{CutBy, Prior, StatementLine};

/// The settled period.
const MARCH: (i32, u32) = (2025, 3);

#[derive(Clone, Debug)]
struct Case {
    world: World,
    records: Vec<RecordSpec>,
    /// Earlier payments: (programme, beneficiary, provider if known, fen).
    prior: Vec<(usize, usize, Option<usize>, i64)>,
    /// Whether the file repeats its first row identically (counted once).
    repeat_first: bool,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        world(),
        proptest::collection::vec(record_raw(), 0..30),
        proptest::collection::vec(
            (
                0usize..3,
                0usize..5,
                proptest::option::weighted(0.8, 0..PROVIDERS),
                0i64..150_000,
            ),
            0..4,
        ),
        any::<bool>(),
        any::<u64>(),
        proptest::bool::weighted(0.3),
    )
        .prop_map(
            |(mut world, raws, prior, repeat_first, seed, equal_amounts)| {
                if equal_amounts {
                    // One rate per programme for every class, so equal bases give equal subsidies.
                    for p in &mut world.programmes {
                        p.default_rate = Some(p.default_rate.unwrap_or(300).max(1));
                        p.category_rates = [None; 3];
                        p.class_rates = [None; 5];
                    }
                }
                // March's first and last instants and the ones next to them, and mid-March.
                let anchors = [month_start(3), month_start(4), month_start(3) + 15 * 86_400];
                let mut records: Vec<RecordSpec> = raws
                    .iter()
                    .enumerate()
                    .map(|(i, r)| r.build(&world, format!("r{i}"), &anchors))
                    .collect();
                // Equal amounts make equal line subsidies, whose equal remainders leave the fen a
                // binding limit cannot split to the tie rule (the earlier line in key order).
                if equal_amounts {
                    for r in &mut records {
                        if r.sku.is_none_or(|s| world.skus[s].list_price.is_none()) {
                            r.amount = 10_001;
                        }
                    }
                }
                let prior = prior
                    .into_iter()
                    .filter(|(p, ..)| *p < world.programmes.len())
                    .map(|(p, b, pv, fen)| (p, b % world.grants.len(), pv, fen))
                    .collect();
                Case {
                    world,
                    records,
                    prior,
                    repeat_first,
                    seed,
                }
            },
        )
}

impl Case {
    fn registry(&self) -> Registry {
        match Registry::from_toml("p.toml", &self.world.toml()) {
            Ok((r, _)) => r,
            Err(e) => panic!(
                "the generated registry should load: {e}\n{}",
                self.world.toml()
            ),
        }
    }

    fn rows(&self) -> Vec<[String; 8]> {
        let mut rows: Vec<[String; 8]> =
            self.records.iter().map(|r| self.world.fields(r)).collect();
        if let (true, Some(first)) = (self.repeat_first, rows.first().cloned()) {
            rows.push(first);
        }
        rows
    }

    fn prior(&self) -> Prior {
        let mut prior = Prior::default();
        for &(p, b, pv, fen) in &self.prior {
            prior.add(
                &World::programme_id(p),
                &World::beneficiary_id(b),
                &pv.map(World::provider_id).unwrap_or_default(),
                Fen(fen),
            );
        }
        prior
    }

    fn paid(&self) -> Paid {
        let mut paid = Paid::default();
        for &(p, b, pv, fen) in &self.prior {
            paid.add(p, b, pv, fen);
        }
        paid
    }
}

fn to_rows(rows: &[[String; 8]]) -> Vec<Row> {
    rows.iter()
        .enumerate()
        .map(|(i, f)| {
            row(
                i as u64 + 2,
                [&f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7]],
            )
        })
        .collect()
}

fn settle(registry: &Registry, rows: &[[String; 8]], prior: &Prior) -> Vec<StatementLine> {
    run(registry, "2025-03", to_rows(rows), prior).1.lines
}

proptest! {
    #![proptest_config(proptest_config(300))]

    #[test]
    fn engine_matches_the_independent_model(c in case()) {
        let registry = c.registry();
        let (decided, statement) = run(&registry, "2025-03", to_rows(&c.rows()), &c.prior());
        let world = &c.world;
        // Intake: out-of-period rows ignored, the repeated row counted once, every accepted
        // and rejected record as the rules decide it.
        let in_march: Vec<&RecordSpec> = c.records.iter().filter(|r| model::period_of(r.end) == MARCH).collect();
        let repeated_in_march = c.repeat_first && c.records.first().is_some_and(|r| model::period_of(r.end) == MARCH);
        let ignored = c.records.len() - in_march.len() + usize::from(c.repeat_first && !repeated_in_march && !c.records.is_empty());
        prop_assert_eq!(decided.ignored, ignored as u64, "ignored rows");
        prop_assert_eq!(decided.duplicates, u64::from(repeated_in_march), "repeated rows");
        let mut accepted: Vec<&str> = decided.accepted.iter().map(|(r, _)| r.record_id.as_str()).collect();
        accepted.sort_unstable();
        let mut expected: Vec<&str> = in_march.iter().filter(|r| model::validate(world, r).is_ok()).map(|r| r.id.as_str()).collect();
        expected.sort_unstable();
        prop_assert_eq!(accepted, expected, "accepted records");
        prop_assert_eq!(decided.rejected.len(), in_march.len() - decided.accepted.len(), "every other record is rejected");
        for rejected in &decided.rejected {
            let record = in_march.iter().find(|r| r.id == rejected.record_id).expect("a rejected record is a March record");
            let codes = model::validate(world, record).expect_err("the model rejects it too");
            prop_assert!(codes.contains(&rejected.rejection.code.as_str()), "record {} rejected as {} where the rules give {:?}", record.id, rejected.rejection.code.as_str(), codes);
        }
        // R2, R6: the line bases.
        let expected_bases = model::bases(world, &c.records, MARCH);
        let bases: BTreeMap<model::Key, i64> = decided.bases().iter().map(|(k, b)| (model::key_from_engine(k), b.0)).collect();
        prop_assert_eq!(bases, expected_bases, "line bases");
        // R4-R8: every statement line, to the fen.
        let lines: Vec<model::Line> = statement.lines.iter().map(model::from_engine).collect();
        let expected_lines = model::settle(world, &model::bases(world, &c.records, MARCH), &c.paid());
        prop_assert_eq!(lines, expected_lines, "statement lines");
    }
}

proptest! {
    #![proptest_config(proptest_config(150))]

    #[test]
    fn limits_hold_and_bind_exactly(c in case()) {
        let registry = c.registry();
        let prior = c.prior();
        let lines = settle(&registry, &c.rows(), &prior);
        for programme in &registry.programmes {
            let mine: Vec<&StatementLine> = lines.iter().filter(|l| l.programme == programme.id).collect();
            let left = |cap: Fen, paid: Fen| cap.minus(paid).max(Fen::ZERO);
            let mut by_b: BTreeMap<&str, Vec<&StatementLine>> = BTreeMap::new();
            let mut by_p: BTreeMap<&str, Vec<&StatementLine>> = BTreeMap::new();
            for l in &mine {
                prop_assert!(l.subsidy <= l.demand && l.subsidy.0 >= 0);
                prop_assert_eq!(l.cut_by.is_none(), l.subsidy == l.demand);
                by_b.entry(&l.key.beneficiary).or_default().push(l);
                by_p.entry(&l.key.provider).or_default().push(l);
            }
            let total: Fen = mine.iter().map(|l| l.subsidy).sum();
            if let Some(pool) = programme.pool {
                let pool_left = left(pool, prior.programme(&programme.id));
                prop_assert!(total <= pool_left, "pool passed");
                if mine.iter().any(|l| l.cut_by == Some(CutBy::Pool)) {
                    prop_assert_eq!(total, pool_left, "a binding pool is met exactly");
                }
            }
            for (b, ls) in &by_b {
                let sum: Fen = ls.iter().map(|l| l.subsidy).sum();
                if let Some(cap) = registry.beneficiary_cap(programme, b) {
                    let cap_left = left(cap, prior.beneficiary(&programme.id, b));
                    prop_assert!(sum <= cap_left, "beneficiary cap passed");
                    if ls.iter().all(|l| l.cut_by.is_none_or(|c| c == CutBy::BeneficiaryCap)) && ls.iter().any(|l| l.cut_by.is_some()) {
                        prop_assert_eq!(sum, cap_left, "a binding beneficiary cap is met exactly");
                    }
                } else {
                    prop_assert!(ls.iter().all(|l| l.cut_by != Some(CutBy::BeneficiaryCap)));
                }
            }
            for (p, ls) in &by_p {
                let sum: Fen = ls.iter().map(|l| l.subsidy).sum();
                if let Some(cap) = programme.provider_cap {
                    let cap_left = left(cap, prior.provider(&programme.id, p));
                    prop_assert!(sum <= cap_left, "provider cap passed");
                    if ls.iter().any(|l| l.cut_by == Some(CutBy::ProviderCap)) && ls.iter().all(|l| l.cut_by != Some(CutBy::Pool)) {
                        prop_assert_eq!(sum, cap_left, "a binding provider cap is met exactly");
                    }
                }
            }
        }
    }

    #[test]
    fn no_line_gets_more_than_its_ceiling(c in case()) {
        let registry = c.registry();
        let lines = settle(&registry, &c.rows(), &Prior::default());
        let mut by_key: BTreeMap<_, Vec<&StatementLine>> = BTreeMap::new();
        for l in &lines {
            let own = lookup_ratio(&registry.programme(&l.programme).unwrap().rates, l.key.class).unwrap();
            prop_assert!(l.ratio > Decimal::ZERO && l.ratio <= own, "ratio within the programme's own rate");
            by_key.entry(l.key.clone()).or_default().push(l);
        }
        for (key, ls) in by_key {
            prop_assert!(ls.len() <= 2);
            if ls.len() == 2 {
                let rule = registry.stacking_between(&ls[0].programme, &ls[1].programme);
                prop_assert!(rule.is_some(), "two programmes pay one line only when stacked");
                let ceiling = lookup_ratio(&rule.unwrap().ceilings, key.class).unwrap();
                prop_assert!(ls[0].ratio + ls[1].ratio <= ceiling, "combined ratio within the ceiling");
            }
        }
    }

    #[test]
    fn statement_ignores_row_order(c in case()) {
        let registry = c.registry();
        let prior = c.prior();
        let mut rows = c.rows();
        // Add an identical duplicate and a conflicting pair so intake's order-freedom is tested too.
        if let Some(first) = rows.first().cloned() {
            rows.push(first.clone());
            let mut conflict = rows[rows.len() / 2].clone();
            conflict[7] = "0.01".into();
            rows.push(conflict);
        }
        let forward = run_rows(&registry, &rows, &prior);
        let mut shuffled = rows.clone();
        let mut state = c.seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(forward, run_rows(&registry, &shuffled, &prior));
    }
}

fn run_rows(
    registry: &Registry,
    rows: &[[String; 8]],
    prior: &Prior,
) -> (Vec<String>, Vec<(String, String)>) {
    let (decided, statement) = run(registry, "2025-03", to_rows(rows), prior);
    let mut rejected: Vec<(String, String)> = decided
        .rejected
        .iter()
        .map(|r| (r.record_id.clone(), r.rejection.code.as_str().to_owned()))
        .collect();
    rejected.sort();
    (common::csv_lines(&statement), rejected)
}

/// A payee's posted lines: (line id, beneficiary, signed amount), in posting order, each line's
/// running sum never below zero (R9: after every run, posted = entitlement ≥ 0).
fn payable_lines() -> impl Strategy<Value = Vec<(u8, String, Fen)>> {
    proptest::collection::vec((0u8..5, 0i64..10_000, any::<bool>()), 0..40).prop_map(|ops| {
        let mut net = [0i64; 5];
        ops.into_iter()
            .map(|(line, amount, claw_back)| {
                let signed = if claw_back {
                    -(amount.min(net[line as usize]))
                } else {
                    amount
                };
                net[line as usize] += signed;
                // A line belongs to one beneficiary: lines 0-2 to b0-b2, 3-4 to b0 and b1.
                (line, format!("b{}", line % 3), Fen(signed))
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(proptest_config(300))]

    #[test]
    fn payments_are_attributed_exactly_and_never_beyond_what_was_settled(
        lines in payable_lines(),
        paid in 0i64..250_000,
        more in 0i64..10_000,
    ) {
        // Proves the paid-out rule's guarantees (docs/rules.md "The words for money"): the
        // attributions sum to min(payments, settled) to the fen, each beneficiary's lies
        // between zero and what was settled for it, the rest is unattributed, and paying more
        // never attributes less to anyone.
        use suanli_domain::ledger::attribute_payments;
        let mut settled: BTreeMap<String, Fen> = BTreeMap::new();
        for (_, b, amount) in &lines {
            let slot = settled.entry(b.clone()).or_default();
            *slot = slot.plus(*amount);
        }
        let total: Fen = settled.values().copied().sum();
        let a = attribute_payments(lines.clone(), Fen(paid));
        let attributed: Fen = a.paid_out.values().copied().sum();
        prop_assert_eq!(attributed, Fen(paid).min(total));
        prop_assert_eq!(a.unattributed, Fen(paid).minus(attributed));
        for (b, amount) in &a.paid_out {
            prop_assert!(amount.0 >= 0 && *amount <= settled[b], "{} gets {} of {}", b, amount, settled[b]);
        }
        let after = attribute_payments(lines, Fen(paid + more));
        for (b, amount) in &a.paid_out {
            prop_assert!(after.paid_out[b] >= *amount, "paying more took from {}", b);
        }
    }
}

/// The first-in, first-out attribution written plainly, as docs/rules.md says it ("Paid
/// out"): every line at once, a stack of each line's slices still above zero. The kept
/// [`suanli_domain::ledger::Payable`] must give what this gives to the fen, however its lines
/// came in.
fn attribution_as_written(lines: &[(u8, String, Fen)], paid: Fen) -> BTreeMap<String, Fen> {
    let mut slices: Vec<(u8, String, i64)> = Vec::new();
    let mut of_line: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
    for (line, beneficiary, amount) in lines {
        if amount.0 > 0 {
            of_line.entry(*line).or_default().push(slices.len());
            slices.push((*line, beneficiary.clone(), amount.0));
            continue;
        }
        let mut owed = -amount.0;
        if let Some(stack) = of_line.get_mut(line) {
            while owed > 0 {
                let Some(&i) = stack.last() else { break };
                let take = owed.min(slices[i].2);
                slices[i].2 -= take;
                owed -= take;
                if slices[i].2 == 0 {
                    stack.pop();
                }
            }
        }
        for same_beneficiary in [true, false] {
            for i in (0..slices.len()).rev() {
                if owed == 0 {
                    break;
                }
                if slices[i].2 == 0 || (same_beneficiary && slices[i].1 != *beneficiary) {
                    continue;
                }
                let take = owed.min(slices[i].2);
                slices[i].2 -= take;
                owed -= take;
                if slices[i].2 == 0
                    && let Some(stack) = of_line.get_mut(&slices[i].0)
                {
                    stack.retain(|&j| j != i);
                }
            }
        }
    }
    let mut left = paid.max(Fen::ZERO).0;
    let mut out = BTreeMap::new();
    for (_, beneficiary, amount) in &slices {
        let take = left.min(*amount);
        if take > 0 {
            let slot: &mut Fen = out.entry(beneficiary.clone()).or_default();
            *slot = slot.plus(Fen(take));
            left -= take;
        }
    }
    out
}

proptest! {
    #![proptest_config(proptest_config(300))]

    #[test]
    fn a_kept_payable_attributes_as_if_every_line_were_read_at_once(
        ops in proptest::collection::vec((0u8..6, -6_000i64..10_000, 0u8..4), 0..60),
        paid in proptest::collection::vec(0i64..200_000, 1..6),
    ) {
        // Proves that the payable the balance figures keep from run to run — each posted run's
        // lines added to it, its attribution taken after any of them — attributes exactly what
        // the rule applied to every line so far gives, claw-backs beyond a line's own slices
        // included (they take from the beneficiary's, then anyone's newest slices).
        use suanli_domain::ledger::Payable;
        let lines: Vec<(u8, String, Fen)> = ops
            .iter()
            .map(|(line, amount, _)| (*line, format!("b{}", line % 4), Fen(*amount)))
            .collect();
        let mut payable: Payable<u8, String> = Payable::default();
        for (i, (line, beneficiary, amount)) in lines.iter().enumerate() {
            payable.push(*line, beneficiary.clone(), *amount);
            // A run ends after this line (or the last line): attribute what was paid so far.
            if ops[i].2 == 0 || i + 1 == lines.len() {
                for p in &paid {
                    let kept = payable.attribute(Fen(*p)).paid_out;
                    let written = attribution_as_written(&lines[..=i], Fen(*p));
                    prop_assert_eq!(&kept, &written, "after line {} paid {}", i, p);
                }
            }
        }
    }
}
