//! Shared helpers for the domain's integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod model;
pub mod world;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::test_runner::{Config, RngAlgorithm, RngSeed};

use suanli_domain::Registry;
use suanli_domain::intake::{Intake, Row, intake};
use suanli_domain::money::Fen;
use suanli_domain::settlement::{LineKey, Prior, Statement, settle_period};
use suanli_domain::usage::{Period, UsageFields, parse_fields};

pub fn registry(text: &str) -> Registry {
    match Registry::from_toml("test.toml", text) {
        Ok((r, _)) => r,
        Err(e) => panic!("registry should load: {e}"),
    }
}

pub fn worked_registry() -> Registry {
    registry(include_str!("../../../../examples/worked/registry.toml"))
}

/// A usage row from its text fields, as a CSV line would give it.
pub fn row(line: u64, fields: [&str; 8]) -> Row {
    let parsed = parse_fields(UsageFields {
        provider: fields[0],
        record_id: fields[1],
        beneficiary: fields[2],
        sku: fields[3],
        start: fields[4],
        end: fields[5],
        quantity: fields[6],
        amount: fields[7],
    });
    let end_period = chrono::DateTime::parse_from_rfc3339(fields[5])
        .ok()
        .map(Period::of_instant);
    Row {
        line,
        provider: fields[0].into(),
        record_id: fields[1].into(),
        end_period,
        parsed,
    }
}

pub fn period(text: &str) -> Period {
    Period::parse(text).expect("valid period")
}

pub fn run(
    registry: &Registry,
    period_text: &str,
    rows: Vec<Row>,
    prior: &Prior,
) -> (Intake, Statement) {
    let p = period(period_text);
    let decided = intake(registry, p, rows);
    let bases: BTreeMap<LineKey, Fen> = decided.bases();
    let statement = settle_period(registry, p, &bases, prior);
    (decided, statement)
}

/// The statement as CSV text lines (without header), the form the CLI writes.
pub fn csv_lines(statement: &Statement) -> Vec<String> {
    statement
        .lines
        .iter()
        .map(|l| l.csv_fields().join(","))
        .collect()
}

pub fn cny(text: &str) -> Fen {
    Fen::parse_cny(text).expect("valid money")
}

/// The seed of this test process's property tests: `SUANLI_PROPTEST_SEED` when set (CI runs a
/// fixed one and a fresh one), else a random one. Printed so a failure reproduces from it.
pub fn proptest_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("SUANLI_PROPTEST_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SUANLI_PROPTEST_SEED={text:?} is not a u64")),
        Err(_) => {
            use std::hash::BuildHasher;
            // The standard library's hasher keys are random per process: a fresh seed without
            // a random-number crate.
            std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
        }
    })
}

/// A proptest configuration of `cases` cases on the ChaCha generator seeded by
/// [`proptest_seed`], which it prints (cargo shows it with a failing test's output).
pub fn proptest_config(cases: u32) -> Config {
    let seed = proptest_seed();
    eprintln!("proptest seed {seed}: rerun with SUANLI_PROPTEST_SEED={seed}");
    Config {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        // Integration tests have no lib.rs for proptest's regression files; the printed seed
        // is what reproduces a failure.
        failure_persistence: None,
        ..Config::default()
    }
}
