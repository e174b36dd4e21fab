//! the worked example of docs/rules.md: every worked example as a test, one beneficiary at a time and all together.

mod common;

use common::*;
use suanli_domain::settlement::Prior;

const MARCH: [&str; 2] = ["2025-03-01T00:00:00+08:00", "2025-03-11T00:00:00+08:00"];

fn check(rows: Vec<[&str; 8]>, prior: &Prior, expected: &[&str]) {
    let registry = worked_registry();
    let rows = rows
        .into_iter()
        .enumerate()
        .map(|(i, f)| row(i as u64 + 2, f))
        .collect();
    let (decided, statement) = run(&registry, "2025-03", rows, prior);
    assert!(
        decided.rejected.is_empty(),
        "no record is rejected: {:?}",
        decided.rejected
    );
    assert_eq!(csv_lines(&statement), expected, "statement lines");
}

#[test]
fn enterprise_a_domestic_compute_stacks_to_45_percent() {
    // Proves R5 stacking: national 30% + municipal top-up min(30%, 45% − 30%) = 15%.
    check(
        vec![[
            "dc-a",
            "r1",
            "ent-a",
            "a-dom",
            MARCH[0],
            MARCH[1],
            "50000",
            "1000000.00",
        ]],
        &Prior::default(),
        &[
            "hz-municipal-2025,2025-03,ent-a,dc-a,compute,domestic,,1000000.00,0.15,150000.00,",
            "national-intelligence-2025,2025-03,ent-a,dc-a,compute,domestic,,1000000.00,0.30,300000.00,",
        ],
    );
}

#[test]
fn enterprise_b_municipal_only_other_compute_gets_20_percent() {
    // Proves a single eligible programme pays its own rate for other-origin compute.
    check(
        vec![[
            "dc-b",
            "r2",
            "ent-b",
            "b-oth",
            MARCH[0],
            MARCH[1],
            "40000",
            "1000000.00",
        ]],
        &Prior::default(),
        &["hz-municipal-2025,2025-03,ent-b,dc-b,compute,other,,1000000.00,0.20,200000.00,"],
    );
}

#[test]
fn enterprise_c_other_compute_stacks_to_25_percent() {
    // Proves the top-up is bounded by the ceiling: national 10%, municipal min(20%, 25% − 10%).
    check(
        vec![[
            "dc-b",
            "r3",
            "ent-c",
            "b-oth",
            MARCH[0],
            MARCH[1],
            "40000",
            "1000000.00",
        ]],
        &Prior::default(),
        &[
            "hz-municipal-2025,2025-03,ent-c,dc-b,compute,other,,1000000.00,0.15,150000.00,",
            "national-intelligence-2025,2025-03,ent-c,dc-b,compute,other,,1000000.00,0.10,100000.00,",
        ],
    );
}

#[test]
fn university_u_data_processing_gets_national_30_percent() {
    // Proves category data is subsidised by the national programme alone, with no chip origin.
    check(
        vec![[
            "dc-a",
            "r4",
            "uni-u",
            "a-data",
            "2025-03-01T00:00:00+08:00",
            "2025-03-02T00:00:00+08:00",
            "1000",
            "500000.00",
        ]],
        &Prior::default(),
        &["national-intelligence-2025,2025-03,uni-u,dc-a,data,,,500000.00,0.30,150000.00,"],
    );
}

#[test]
fn enterprise_d_is_cut_to_what_is_left_of_the_8_million_cap() {
    // Proves R7: 7,900,000.00 already paid leaves 100,000.00 of the 8,000,000.00 cap.
    let mut prior = Prior::default();
    prior.add("hz-municipal-2025", "ent-d", "dc-a", cny("7900000.00"));
    check(
        vec![[
            "dc-a",
            "r5",
            "ent-d",
            "a-dom",
            MARCH[0],
            MARCH[1],
            "50000",
            "1000000.00",
        ]],
        &prior,
        &[
            "hz-municipal-2025,2025-03,ent-d,dc-a,compute,domestic,,1000000.00,0.30,100000.00,beneficiary_cap",
        ],
    );
}

#[test]
fn all_worked_examples_together_match_the_shipped_statement() {
    // Proves the whole §4 table at once equals examples/worked/statement.csv.
    let expected: Vec<String> = include_str!("../../../examples/worked/statement.csv")
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect();
    let usage = include_str!("../../../examples/worked/usage.csv");
    let rows: Vec<Vec<&str>> = usage
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let rows = rows
        .iter()
        .map(|f| [f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]])
        .collect();
    let mut prior = Prior::default();
    prior.add("hz-municipal-2025", "ent-d", "dc-a", cny("7900000.00"));
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    check(rows, &prior, &expected);
}
