//! Shared helpers for the domain's integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::BTreeMap;

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
