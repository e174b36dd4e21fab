//! Property tests (proptest, seeded by proptest's own persistence): for random registries,
//! prior payments and usage, caps and pools are never passed, limits are met exactly when they
//! bind, no line gets more than its ceiling, and the statement ignores input order.

mod common;

use std::collections::BTreeMap;

use common::{row, run};
use proptest::prelude::*;
use rust_decimal::Decimal;
use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_domain::registry::lookup_ratio;
use suanli_domain::settlement::{CutBy, Prior, StatementLine};

const CLASSES: [(&str, &str, &str); 5] = [
    ("compute", "chip_origin = \"domestic\"", "domestic"),
    ("compute", "chip_origin = \"other\"", "other"),
    ("data", "", ""),
    ("model", "registered_model = false", ""),
    ("model", "registered_model = true", ""),
];

/// Rates per class (None = no entry), pool, beneficiary cap, provider cap, in fen or percent.
type ProgrammeSpec = (Vec<Option<u32>>, Option<u32>, Option<u32>, Option<u32>);

#[derive(Debug, Clone)]
struct Scenario {
    /// Per programme: rates per class (None = no entry), pool, beneficiary cap, provider cap.
    programmes: Vec<ProgrammeSpec>,
    /// Stacking between programme 0 (primary) and 1 with a ceiling bonus per class.
    stacking: Option<Vec<Option<u32>>>,
    /// Per beneficiary: which programmes it holds grants of, with optional cap override.
    grants: Vec<Vec<Option<Option<u32>>>>,
    /// (beneficiary, provider, class, amount in fen)
    records: Vec<(usize, usize, usize, u32)>,
    /// (programme, beneficiary, provider, fen)
    prior: Vec<(usize, usize, usize, u32)>,
    seed: u64,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let rate = proptest::option::weighted(0.7, 0u32..=100);
    let limit = proptest::option::weighted(0.5, 0u32..200_000);
    let programme = (
        proptest::collection::vec(rate, 5),
        limit.clone(),
        limit.clone(),
        limit.clone(),
    );
    (
        proptest::collection::vec(programme, 1..=3),
        proptest::option::of(proptest::collection::vec(
            proptest::option::of(0u32..=60),
            5,
        )),
        proptest::collection::vec(
            proptest::collection::vec(
                proptest::option::weighted(0.7, proptest::option::weighted(0.3, 0u32..100_000)),
                3,
            ),
            1..=4,
        ),
        proptest::collection::vec((0usize..4, 0usize..2, 0usize..5, 0u32..500_000), 0..25),
        proptest::collection::vec((0usize..3, 0usize..4, 0usize..2, 0u32..100_000), 0..4),
        any::<u64>(),
    )
        .prop_map(
            |(programmes, stacking, grants, records, prior, seed)| Scenario {
                programmes,
                stacking,
                grants,
                records,
                prior,
                seed,
            },
        )
}

fn pct(p: u32) -> String {
    format!("{}", Decimal::new(i64::from(p), 2))
}

fn fen(f: u32) -> String {
    Fen(i64::from(f)).to_string()
}

impl Scenario {
    fn toml(&self) -> String {
        let mut t = String::new();
        for (i, (rates, pool, cap, pcap)) in self.programmes.iter().enumerate() {
            t += &format!(
                "[[programme]]\nid = \"prog{i}\"\nfunder = \"{}\"\nyear = 2025\n",
                ["national", "municipal", "district"][i]
            );
            t += "beneficiary_kinds = [\"enterprise\"]\npayee = \"provider\"\n";
            if let Some(p) = pool {
                t += &format!("pool = \"{}\"\n", fen(*p));
            }
            if let Some(c) = cap {
                t += &format!("beneficiary_cap = \"{}\"\n", fen(*c));
            }
            if let Some(c) = pcap {
                t += &format!("provider_cap = \"{}\"\n", fen(*c));
            }
            t += "rates = [\n";
            for (class, rate) in CLASSES.iter().zip(rates) {
                if let Some(r) = rate {
                    let extra = if class.1.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", class.1)
                    };
                    t += &format!(
                        "  {{ category = \"{}\"{extra}, ratio = \"{}\" }},\n",
                        class.0,
                        pct(*r)
                    );
                }
            }
            t += "]\n";
        }
        if let (Some(bonus), true) = (&self.stacking, self.programmes.len() >= 2) {
            t += "[[stacking]]\nprimary = \"prog0\"\ntop_up = \"prog1\"\nceilings = [\n";
            for ((class, b), primary) in CLASSES.iter().zip(bonus).zip(&self.programmes[0].0) {
                if let Some(b) = b {
                    let extra = if class.1.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", class.1)
                    };
                    let ceiling = (primary.unwrap_or(0) + b).min(100);
                    t += &format!(
                        "  {{ category = \"{}\"{extra}, ratio = \"{}\" }},\n",
                        class.0,
                        pct(ceiling)
                    );
                }
            }
            t += "]\n";
        }
        for p in 0..2 {
            t += &format!("[[provider]]\nid = \"pv{p}\"\n");
            for (c, class) in CLASSES.iter().enumerate() {
                t += &format!(
                    "[[sku]]\nid = \"pv{p}-c{c}\"\nprovider = \"pv{p}\"\ncategory = \"{}\"\nunit = \"item\"\n",
                    class.0
                );
                if !class.1.is_empty() {
                    t += &format!("{}\n", class.1);
                }
            }
        }
        for (b, grants) in self.grants.iter().enumerate() {
            t += &format!("[[beneficiary]]\nid = \"b{b}\"\nkind = \"enterprise\"\n");
            for (p, grant) in grants.iter().enumerate().take(self.programmes.len()) {
                if let Some(cap) = grant {
                    t += &format!("[[grant]]\nbeneficiary = \"b{b}\"\nprogramme = \"prog{p}\"\n");
                    if let Some(c) = cap {
                        t += &format!("cap = \"{}\"\n", fen(*c));
                    }
                }
            }
        }
        t
    }

    fn rows(&self) -> Vec<[String; 8]> {
        self.records
            .iter()
            .enumerate()
            .map(|(i, &(b, p, c, amount))| {
                [
                    format!("pv{p}"),
                    format!("r{i}"),
                    format!("b{}", b % self.grants.len()),
                    format!("pv{p}-c{c}"),
                    "2025-03-01T00:00:00+08:00".into(),
                    "2025-03-02T00:00:00+08:00".into(),
                    "1".into(),
                    fen(amount),
                ]
            })
            .collect()
    }

    fn prior(&self) -> Prior {
        let mut prior = Prior::default();
        for &(p, b, pv, amount) in &self.prior {
            if p < self.programmes.len() {
                prior.add(
                    &format!("prog{p}"),
                    &format!("b{}", b % self.grants.len()),
                    &format!("pv{pv}"),
                    Fen(i64::from(amount)),
                );
            }
        }
        prior
    }
}

fn settle(registry: &Registry, rows: &[[String; 8]], prior: &Prior) -> Vec<StatementLine> {
    let rows = rows
        .iter()
        .enumerate()
        .map(|(i, f)| {
            row(
                i as u64 + 2,
                [&f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7]],
            )
        })
        .collect();
    let (decided, statement) = run(registry, "2025-03", rows, prior);
    assert!(decided.rejected.is_empty(), "{:?}", decided.rejected);
    statement.lines
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, rng_seed: proptest::test_runner::RngSeed::Fixed(20251126), ..ProptestConfig::default() })]

    #[test]
    fn limits_hold_and_bind_exactly(s in scenario()) {
        let (registry, _) = Registry::from_toml("p.toml", &s.toml()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let prior = s.prior();
        let lines = settle(&registry, &s.rows(), &prior);
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
    fn no_line_gets_more_than_its_ceiling(s in scenario()) {
        let (registry, _) = Registry::from_toml("p.toml", &s.toml()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let lines = settle(&registry, &s.rows(), &Prior::default());
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
    fn statement_ignores_row_order(s in scenario()) {
        let (registry, _) = Registry::from_toml("p.toml", &s.toml()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let prior = s.prior();
        let mut rows = s.rows();
        // Add an identical duplicate and a conflicting pair so intake's order-freedom is tested too.
        if let Some(first) = rows.first().cloned() {
            rows.push(first.clone());
            let mut conflict = rows[rows.len() / 2].clone();
            conflict[7] = "0.01".into();
            rows.push(conflict);
        }
        let forward = run_rows(&registry, &rows, &prior);
        let mut shuffled = rows.clone();
        let mut state = s.seed | 1;
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
    let rows = rows
        .iter()
        .enumerate()
        .map(|(i, f)| {
            row(
                i as u64 + 2,
                [&f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7]],
            )
        })
        .collect();
    let (decided, statement) = run(registry, "2025-03", rows, prior);
    let mut rejected: Vec<(String, String)> = decided
        .rejected
        .iter()
        .map(|r| (r.record_id.clone(), r.rejection.code.as_str().to_owned()))
        .collect();
    rejected.sort();
    (common::csv_lines(&statement), rejected)
}
