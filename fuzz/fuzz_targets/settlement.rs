//! Fuzzes the settlement engine and the year-to-date restatement: from the input bytes, a
//! registry (one or two programmes, optional beneficiary cap, provider cap and pool, stacking)
//! and four months of line bases that change between monthly runs (late records, voids, lines
//! that vanish). Each month is run as the service runs it (R9), and the invariants must hold:
//! posted = entitlement for every (period, line) ever posted, no line above its demand, caps and
//! pools never passed, every posting journal balanced — and never a panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use suanli_domain::Registry;
use suanli_domain::ledger::posting_journal;
use suanli_domain::money::Fen;
use suanli_domain::registry::{Category, ChipOrigin, Class};
use suanli_domain::restatement::{PeriodInput, entitlements_to_date, run_lines};
use suanli_domain::settlement::LineKey;
use suanli_domain::usage::Period;

/// Reads the input a byte at a time; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn below(&mut self, n: u8) -> u8 {
        self.byte() % n
    }

    fn fen(&mut self) -> i64 {
        // Up to about 65,000.00 CNY, with zeros and small amounts common.
        i64::from(u16::from_le_bytes([self.byte(), self.byte()])) * i64::from(1 + self.below(100))
    }
}

fn cny(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

const BENEFICIARIES: [&str; 3] = ["e0", "e1", "e2"];
const PROVIDERS: [&str; 2] = ["p0", "p1"];

/// The registry text, and whether it stacks the two programmes.
fn registry(b: &mut Bytes) -> (String, bool) {
    let mut toml = String::new();
    let programmes = 1 + b.below(2);
    for i in 0..programmes {
        let funder = if i == 0 { "national" } else { "municipal" };
        toml += &format!(
            "[[programme]]\nid = \"prog{i}\"\nfunder = \"{funder}\"\nyear = 2025\n\
             beneficiary_kinds = [\"enterprise\"]\npayee = \"{}\"\n",
            if b.below(2) == 0 { "provider" } else { "beneficiary" }
        );
        if b.below(2) == 0 {
            toml += &format!("beneficiary_cap = \"{}\"\n", cny(b.fen() / 4 + 1));
        }
        if b.below(3) == 0 {
            toml += &format!("provider_cap = \"{}\"\n", cny(b.fen() / 2 + 1));
        }
        if b.below(2) == 0 {
            toml += &format!("pool = \"{}\"\n", cny(b.fen() / 2 + 1));
        }
        toml += &format!(
            "rates = [ {{ category = \"compute\", chip_origin = \"domestic\", ratio = \"0.{:02}\" }}, \
             {{ category = \"compute\", chip_origin = \"other\", ratio = \"0.{:02}\" }} ]\n",
            // Within the stacking ceilings (0.45 domestic, 0.25 other), which bound a primary.
            1 + b.below(45),
            1 + b.below(25)
        );
    }
    let stacked = programmes == 2 && b.below(2) == 0;
    if stacked {
        toml += "[[stacking]]\nprimary = \"prog0\"\ntop_up = \"prog1\"\n\
                 ceilings = [ { category = \"compute\", chip_origin = \"domestic\", ratio = \"0.45\" }, \
                 { category = \"compute\", chip_origin = \"other\", ratio = \"0.25\" } ]\n";
    }
    for p in PROVIDERS {
        toml += &format!("[[provider]]\nid = \"{p}\"\n");
        for chip in ["domestic", "other"] {
            toml += &format!(
                "[[sku]]\nid = \"{p}-{chip}\"\nprovider = \"{p}\"\ncategory = \"compute\"\n\
                 chip_origin = \"{chip}\"\nunit = \"gpu_hour\"\n"
            );
        }
    }
    for e in BENEFICIARIES {
        toml += &format!("[[beneficiary]]\nid = \"{e}\"\nkind = \"enterprise\"\n");
        for i in 0..programmes {
            if b.below(4) != 0 {
                toml += &format!("[[grant]]\nbeneficiary = \"{e}\"\nprogramme = \"prog{i}\"\n");
            }
        }
    }
    (toml, stacked)
}

fn keys() -> Vec<LineKey> {
    let mut out = Vec::new();
    for e in BENEFICIARIES {
        for p in PROVIDERS {
            for chip in [ChipOrigin::Domestic, ChipOrigin::Other] {
                out.push(LineKey {
                    beneficiary: e.to_owned(),
                    provider: p.to_owned(),
                    class: Class {
                        category: Category::Compute,
                        chip_origin: Some(chip),
                        registered_model: None,
                    },
                });
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let (text, stacked) = registry(&mut b);
    // The generator writes only valid registries; one the loader refuses is a finding too.
    let (registry, _) = Registry::from_toml("fuzz.toml", &text).expect("a valid registry loads");
    let months: Vec<Period> = (1..=4)
        .map(|m| Period::parse(&format!("2025-{m:02}")).expect("a period"))
        .collect();
    let keys = keys();
    let mut bases: Vec<BTreeMap<LineKey, Fen>> = vec![BTreeMap::new(); months.len()];
    let mut posted: BTreeMap<String, BTreeMap<(Period, LineKey), Fen>> = BTreeMap::new();
    for (run, month) in months.iter().enumerate() {
        // This month's records, and changes to earlier months: late records, voids, vanishing.
        for _ in 0..b.below(8) {
            let key = keys[usize::from(b.below(keys.len() as u8))].clone();
            let m = if b.below(3) == 0 { usize::from(b.below(run as u8 + 1)) } else { run };
            match b.below(4) {
                0 => {
                    bases[m].remove(&key);
                }
                _ => {
                    let fen = b.fen();
                    *bases[m].entry(key).or_default() = Fen(fen);
                }
            }
        }
        let inputs: Vec<PeriodInput<'_>> = months[..=run]
            .iter()
            .zip(&bases)
            .map(|(period, bases)| PeriodInput { period: *period, registry: &registry, bases })
            .collect();
        let statements = entitlements_to_date(&inputs);
        for programme in &registry.programmes {
            let so_far = posted.entry(programme.id.clone()).or_default();
            let lines = run_lines(&programme.id, *month, &statements, so_far);
            let statement_lines: Vec<_> = lines.iter().map(|l| l.line.clone()).collect();
            // Journal::new asserts the balance; a posting journal must build.
            let _ = posting_journal(programme, &statement_lines);
            for l in &lines {
                let entry = so_far.entry((l.line.period, l.line.key.clone())).or_default();
                *entry = entry.plus(l.amount);
            }
            // R9: posted = entitlement for every (period, line) ever posted.
            let mut entitled: BTreeMap<(Period, LineKey), Fen> = BTreeMap::new();
            let mut year = Fen::ZERO;
            let mut by_beneficiary: BTreeMap<&str, Fen> = BTreeMap::new();
            for line in statements.iter().flat_map(|s| &s.lines) {
                if line.programme != programme.id {
                    continue;
                }
                assert!(line.subsidy.0 >= 0 && line.subsidy <= line.demand, "{line:?}");
                entitled.insert((line.period, line.key.clone()), line.subsidy);
                year = year.plus(line.subsidy);
                let t = by_beneficiary.entry(line.key.beneficiary.as_str()).or_default();
                *t = t.plus(line.subsidy);
            }
            for (k, fen) in so_far.iter() {
                assert_eq!(
                    *fen,
                    entitled.get(k).copied().unwrap_or(Fen::ZERO),
                    "posted = entitlement for {k:?}"
                );
            }
            if let Some(pool) = programme.pool {
                assert!(year <= pool, "the pool of {} is never passed", programme.id);
            }
            // With stacking a cap counts the top-up's payments too (R7); checked without it.
            if let Some(cap) = programme.beneficiary_cap.filter(|_| !stacked) {
                for (e, total) in &by_beneficiary {
                    assert!(*total <= cap, "{e}'s cap in {} is never passed", programme.id);
                }
            }
        }
    }
});
