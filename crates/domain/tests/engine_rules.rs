//! The engine's rules one at a time (docs/rules.md R2-R8): each test states the rule it holds.

mod common;

use common::*;
use suanli_domain::settlement::Prior;
use suanli_domain::usage::RejectCode;

/// Two programmes of 2025 without a stacking rule, small caps and pool so limits bind.
const SMALL: &str = r#"
[[programme]]
id = "city"
funder = "municipal"
year = 2025
pool = "100.00"
beneficiary_cap = "60.00"
provider_cap = "70.00"
beneficiary_kinds = ["enterprise"]
payee = "provider"
rates = [ { category = "compute", ratio = "0.50" }, { category = "data", ratio = "0.35" } ]

[[programme]]
id = "nation"
funder = "national"
year = 2025
beneficiary_kinds = ["enterprise", "university"]
payee = "beneficiary"
rates = [ { category = "data", ratio = "0.35" }, { category = "model", ratio = "0.40" }, { category = "model", registered_model = true, ratio = "0.10" } ]

[[provider]]
id = "p1"
[[provider]]
id = "p2"
[[sku]]
id = "p1-gpu"
provider = "p1"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
list_price = "10.00"
capacity = "8"
[[sku]]
id = "p2-gpu"
provider = "p2"
category = "compute"
chip_origin = "other"
unit = "gpu_hour"
[[sku]]
id = "p1-data"
provider = "p1"
category = "data"
unit = "item"
[[sku]]
id = "p2-model"
provider = "p2"
category = "model"
registered_model = true
unit = "token_million"
[[sku]]
id = "p2-model-unreg"
provider = "p2"
category = "model"
unit = "token_million"
[[beneficiary]]
id = "e1"
kind = "enterprise"
[[beneficiary]]
id = "e2"
kind = "enterprise"
[[beneficiary]]
id = "e3"
kind = "enterprise"
[[beneficiary]]
id = "u1"
kind = "university"
[[grant]]
beneficiary = "e1"
programme = "city"
[[grant]]
beneficiary = "e1"
programme = "nation"
[[grant]]
beneficiary = "e2"
programme = "city"
cap = "80.00"
[[grant]]
beneficiary = "e3"
programme = "city"
[[grant]]
beneficiary = "u1"
programme = "nation"
"#;

const S: &str = "2025-03-01T00:00:00+08:00";
const E: &str = "2025-03-02T00:00:00+08:00";

fn statement(rows: Vec<[&str; 8]>, prior: &Prior) -> Vec<String> {
    let registry = registry(SMALL);
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
    csv_lines(&statement)
}

#[test]
fn most_favourable_single_programme_when_no_stacking_rule_joins_them() {
    // Proves 从优、就高、不重复: e1 is eligible under both for data (tie 0.35) and gets one only;
    // the tie goes to the higher funder level (national).
    assert_eq!(
        statement(
            vec![["p1", "d1", "e1", "p1-data", S, E, "1", "10.00"]],
            &Prior::default()
        ),
        ["nation,2025-03,e1,p1,data,,,10.00,0.35,3.50,"]
    );
}

#[test]
fn most_specific_rate_entry_wins_and_registered_flag_comes_from_the_sku() {
    // Proves rate lookup by specificity: registered model 0.10 (two keys) beats model 0.40 (one).
    assert_eq!(
        statement(
            vec![
                ["p2", "m1", "u1", "p2-model", S, E, "1", "100.00"],
                ["p2", "m2", "u1", "p2-model-unreg", S, E, "1", "100.00"]
            ],
            &Prior::default()
        ),
        [
            "nation,2025-03,u1,p2,model,,false,100.00,0.40,40.00,",
            "nation,2025-03,u1,p2,model,,true,100.00,0.10,10.00,",
        ]
    );
}

#[test]
fn rounding_is_half_up_once_per_line_not_per_record() {
    // Proves R1/R6: three records of 0.10 at 0.35 are 0.035 each (0.04 if rounded per record,
    // 0.12 in all) but one line of 0.30 × 0.35 = 0.105 → 0.11 (half-up, not banker's 0.10).
    assert_eq!(
        statement(
            vec![
                ["p1", "a", "u1", "p1-data", S, E, "1", "0.10"],
                ["p1", "b", "u1", "p1-data", S, E, "1", "0.10"],
                ["p1", "c", "u1", "p1-data", S, E, "1", "0.10"],
            ],
            &Prior::default()
        ),
        ["nation,2025-03,u1,p1,data,,,0.30,0.35,0.11,"]
    );
}

#[test]
fn beneficiary_cap_shares_by_largest_remainder_in_line_key_order() {
    // Proves R7: e1's two lines want 50.00 + 50.00 against a cap of 60.00 with 0.01 prior:
    // 59.99 shared half and half, the odd fen to the first line in key order (p1 before p2).
    let mut prior = Prior::default();
    prior.add("city", "e1", "", cny("0.01"));
    assert_eq!(
        statement(
            vec![
                ["p1", "g1", "e1", "p1-gpu", S, E, "10", "100.00"],
                ["p2", "g2", "e1", "p2-gpu", S, E, "10", "100.00"]
            ],
            &prior
        ),
        [
            "city,2025-03,e1,p1,compute,domestic,,100.00,0.50,30.00,beneficiary_cap",
            "city,2025-03,e1,p2,compute,other,,100.00,0.50,29.99,beneficiary_cap",
        ]
    );
}

#[test]
fn grant_cap_override_replaces_the_programme_cap() {
    // Proves R4: e2's grant raises its cap from 60.00 to 80.00.
    assert_eq!(
        statement(
            vec![["p2", "g1", "e2", "p2-gpu", S, E, "10", "200.00"]],
            &Prior::default()
        ),
        ["city,2025-03,e2,p2,compute,other,,200.00,0.50,70.00,provider_cap"]
    );
}

#[test]
fn provider_cap_applies_after_beneficiary_caps_and_pool_after_both() {
    // Proves R8's stage order and cut_by naming the last stage that reduced a line:
    // e1 wants 100 → cap 60; e2 wants 100 → cap 80; on p2 together 140 → provider cap 70
    // (60:80 → 30:40); pool 100 − 50 prior = 50 over (30, 40) → 21.43 : 28.57.
    let mut prior = Prior::default();
    prior.add("city", "e3", "p1", cny("50.00"));
    assert_eq!(
        statement(
            vec![
                ["p2", "g1", "e1", "p2-gpu", S, E, "10", "200.00"],
                ["p2", "g2", "e2", "p2-gpu", S, E, "10", "200.00"]
            ],
            &prior
        ),
        [
            "city,2025-03,e1,p2,compute,other,,200.00,0.50,21.43,pool",
            "city,2025-03,e2,p2,compute,other,,200.00,0.50,28.57,pool",
        ]
    );
}

#[test]
fn exhausted_cap_leaves_zero_rows_that_still_appear() {
    // Proves a line with a positive ratio keeps its row at 0.00 when the cap is used up.
    let mut prior = Prior::default();
    prior.add("city", "e3", "p1", cny("60.00"));
    assert_eq!(
        statement(
            vec![["p1", "g1", "e3", "p1-gpu", S, E, "1", "10.00"]],
            &prior
        ),
        ["city,2025-03,e3,p1,compute,domestic,,10.00,0.50,0.00,beneficiary_cap"]
    );
}

#[test]
fn period_is_the_asia_shanghai_month_of_the_end_time() {
    // Proves R6: 2025-03-31T15:59:59Z is March in Shanghai; 16:00:00Z is April 00:00 and out.
    let registry = registry(SMALL);
    let rows = vec![
        row(
            2,
            [
                "p1",
                "in",
                "u1",
                "p1-data",
                "2025-03-31T00:00:00Z",
                "2025-03-31T15:59:59Z",
                "1",
                "1.00",
            ],
        ),
        row(
            3,
            [
                "p1",
                "out",
                "u1",
                "p1-data",
                "2025-03-31T00:00:00Z",
                "2025-03-31T16:00:00Z",
                "1",
                "2.00",
            ],
        ),
        row(
            4,
            [
                "p1",
                "out2",
                "u1",
                "p1-data",
                "2025-03-31T00:00:00+08:00",
                "2025-04-01T00:00:00+08:00",
                "1",
                "4.00",
            ],
        ),
        row(
            5,
            [
                "p1",
                "bad-but-out",
                "nobody",
                "p1-data",
                S,
                "2025-02-28T23:00:00+08:00",
                "1",
                "-4.00",
            ],
        ),
    ];
    let (decided, statement) = run(&registry, "2025-03", rows, &Prior::default());
    assert_eq!(
        (
            decided.accepted.len(),
            decided.ignored,
            decided.rejected.len()
        ),
        (1, 3, 0)
    );
    assert_eq!(
        csv_lines(&statement),
        ["nation,2025-03,u1,p1,data,,,1.00,0.35,0.35,"]
    );
}

#[test]
fn no_grant_or_no_matching_rate_means_no_row() {
    // Proves eligibility needs a grant and a rate: e3 has no national grant and city has no model rate.
    assert!(
        statement(
            vec![["p2", "m", "e3", "p2-model", S, E, "1", "10.00"]],
            &Prior::default()
        )
        .is_empty()
    );
}

#[test]
fn every_rejection_reason_is_named() {
    // Proves each invalid record is excluded with its code, identical duplicates count once and
    // conflicting versions are all excluded whatever their order.
    let registry = registry(SMALL);
    let cases: Vec<([&str; 8], RejectCode)> = vec![
        (
            ["zz", "1", "e1", "p1-gpu", S, E, "1", "1.00"],
            RejectCode::UnknownProvider,
        ),
        (
            ["p1", "2", "zz", "p1-gpu", S, E, "1", "1.00"],
            RejectCode::UnknownBeneficiary,
        ),
        (
            ["p1", "3", "e1", "zz", S, E, "1", "1.00"],
            RejectCode::UnknownSku,
        ),
        (
            ["p1", "4", "e1", "p2-gpu", S, E, "1", "1.00"],
            RejectCode::SkuNotOfProvider,
        ),
        (
            ["p1", "5", "e1", "p1-gpu", E, E, "1", "1.00"],
            RejectCode::EndNotAfterStart,
        ),
        (
            ["p1", "6", "e1", "p1-gpu", S, E, "1", "-1.00"],
            RejectCode::NegativeAmount,
        ),
        (
            ["p1", "7", "e1", "p1-gpu", S, E, "1", "1.001"],
            RejectCode::AmountPrecision,
        ),
        (
            ["p1", "8", "e1", "p1-gpu", S, E, "1", "10.02"],
            RejectCode::AboveListPrice,
        ),
        (
            ["p1", "9", "e1", "p1-gpu", S, E, "192.01", "0.00"],
            RejectCode::OverCapacity,
        ),
        (
            ["p1", "10", "e1", "p1-gpu", S, E, "-1", "0.00"],
            RejectCode::NegativeQuantity,
        ),
        (
            ["p1", "11", "e1", "p1-gpu", "yesterday", E, "1", "1.00"],
            RejectCode::InvalidField,
        ),
        (
            ["p1", "12", "e1", "p1-gpu", S, E, "", "1.00"],
            RejectCode::MissingField,
        ),
    ];
    for (fields, code) in &cases {
        let (decided, _) = run(
            &registry,
            "2025-03",
            vec![row(2, *fields)],
            &Prior::default(),
        );
        assert_eq!(
            decided.rejected.len(),
            1,
            "record {} is rejected",
            fields[1]
        );
        assert_eq!(
            decided.rejected[0].rejection.code, *code,
            "record {}: {}",
            fields[1], decided.rejected[0].rejection
        );
    }
    // At the limits: amount = quantity × list price + 0.01 and quantity = capacity × hours pass.
    let (decided, _) = run(
        &registry,
        "2025-03",
        vec![row(
            2,
            ["p1", "edge", "e1", "p1-gpu", S, E, "192", "1920.01"],
        )],
        &Prior::default(),
    );
    assert!(
        decided.rejected.is_empty(),
        "limits are inclusive: {:?}",
        decided.rejected
    );

    let dup = ["p1", "d", "u1", "p1-data", S, E, "1", "1.00"];
    let dup_spelled_otherwise = [
        "p1",
        "d",
        "u1",
        "p1-data",
        "2025-02-28T16:00:00Z",
        E,
        "1.0",
        "1",
    ];
    let other = ["p1", "d", "u1", "p1-data", S, E, "1", "2.00"];
    let (decided, st) = run(
        &registry,
        "2025-03",
        vec![row(2, dup), row(3, dup_spelled_otherwise)],
        &Prior::default(),
    );
    assert_eq!((decided.accepted.len(), decided.duplicates), (1, 1));
    assert_eq!(
        csv_lines(&st),
        ["nation,2025-03,u1,p1,data,,,1.00,0.35,0.35,"]
    );
    for rows in [
        vec![row(2, dup), row(3, other)],
        vec![row(2, other), row(3, dup)],
    ] {
        let (decided, st) = run(&registry, "2025-03", rows, &Prior::default());
        assert!(
            decided.accepted.is_empty() && st.lines.is_empty(),
            "a conflict admits neither version"
        );
        assert!(
            decided
                .rejected
                .iter()
                .all(|r| r.rejection.code == RejectCode::Conflict)
        );
        assert_eq!(decided.rejected.len(), 2);
    }
}

/// Every limit stage's decision on one group, as the engine reports it to an observer:
/// (stage, subject, limit, prior, left, wanted, [(beneficiary, before, after)]).
type Seen = (
    suanli_domain::settlement::CutBy,
    String,
    i64,
    i64,
    i64,
    i64,
    Vec<(String, i64, i64)>,
);

#[derive(Default)]
struct Recorder(Vec<Seen>);

impl suanli_domain::settlement::LimitObserver for Recorder {
    fn stage(
        &mut self,
        d: &suanli_domain::settlement::LimitDecision<'_>,
        lines: &[suanli_domain::settlement::StatementLine],
        group: &[usize],
        before: &[suanli_domain::money::Fen],
    ) {
        self.0.push((
            d.stage,
            d.subject.to_owned(),
            d.limit.0,
            d.prior.0,
            d.left.0,
            d.wanted.0,
            group
                .iter()
                .zip(before)
                .map(|(&i, b)| (lines[i].key.beneficiary.clone(), b.0, lines[i].subsidy.0))
                .collect(),
        ));
    }
}

#[test]
fn the_engine_reports_each_limit_stage_with_its_limit_prior_and_shares() {
    // Proves the decision data explanations read: for the stage-order case above, each stage's
    // limit, what earlier payments used, what was left, what the lines wanted and each line's
    // amount before and after, exactly as the engine cut them.
    use suanli_domain::settlement::{CutBy, settle_period_observed};
    let registry = registry(SMALL);
    let mut prior = Prior::default();
    prior.add("city", "e3", "p1", cny("50.00"));
    let rows = vec![
        row(2, ["p2", "g1", "e1", "p2-gpu", S, E, "10", "200.00"]),
        row(3, ["p2", "g2", "e2", "p2-gpu", S, E, "10", "200.00"]),
    ];
    let p = period("2025-03");
    let bases = suanli_domain::intake::intake(&registry, p, rows).bases();
    let mut seen = Recorder::default();
    let statement = settle_period_observed(&registry, p, &bases, &prior, &mut seen);
    assert_eq!(
        csv_lines(&statement),
        statement_of_plain(&registry, &bases, &prior),
        "observing changes nothing"
    );
    let e = |b: &str, before: i64, after: i64| (b.to_owned(), before, after);
    assert_eq!(
        seen.0,
        vec![
            (
                CutBy::BeneficiaryCap,
                "e1".into(),
                6000,
                0,
                6000,
                10000,
                vec![e("e1", 10000, 6000)]
            ),
            (
                CutBy::BeneficiaryCap,
                "e2".into(),
                8000,
                0,
                8000,
                10000,
                vec![e("e2", 10000, 8000)]
            ),
            (
                CutBy::ProviderCap,
                "p2".into(),
                7000,
                0,
                7000,
                14000,
                vec![e("e1", 6000, 3000), e("e2", 8000, 4000)]
            ),
            (
                CutBy::Pool,
                String::new(),
                10000,
                5000,
                5000,
                7000,
                vec![e("e1", 3000, 2143), e("e2", 4000, 2857)]
            ),
        ]
    );
}

fn statement_of_plain(
    registry: &suanli_domain::Registry,
    bases: &std::collections::BTreeMap<
        suanli_domain::settlement::LineKey,
        suanli_domain::money::Fen,
    >,
    prior: &Prior,
) -> Vec<String> {
    csv_lines(&suanli_domain::settlement::settle_period(
        registry,
        period("2025-03"),
        bases,
        prior,
    ))
}

#[test]
fn the_ratio_decision_names_the_package_and_why_it_won() {
    // Proves the ratio's explanation is the engine's own decision: on a tie of 35% between two
    // unjoined programmes the national one wins by funder level, and the municipal one is the
    // runner-up; a class no rate matches is granted but not eligible.
    use suanli_domain::registry::{Category, Class};
    use suanli_domain::settlement::{ChosenBecause, ratio_decision};
    let registry = registry(SMALL);
    let data = Class {
        category: Category::Data,
        chip_origin: None,
        registered_model: None,
    };
    let d = ratio_decision(&registry, 2025, "e1", data);
    let chosen = d.package().expect("a package");
    assert_eq!(chosen.parts[0].programme.id, "nation");
    assert!(!chosen.stacked());
    assert_eq!(d.because, ChosenBecause::FunderOnTie);
    assert_eq!(
        d.packages[d.runner_up.expect("a runner-up")].parts[0]
            .programme
            .id,
        "city"
    );
    let model = Class {
        category: Category::Model,
        chip_origin: None,
        registered_model: Some(false),
    };
    let d = ratio_decision(&registry, 2025, "e1", model);
    assert_eq!(
        d.granted
            .iter()
            .map(|(p, r)| (p.id.as_str(), r.map(|r| r.to_string())))
            .collect::<Vec<_>>(),
        [("city", None), ("nation", Some("0.40".to_owned()))],
        "city's rate table has no model entry"
    );
    assert_eq!(d.because, ChosenBecause::Only);
}

#[test]
fn the_ratio_decision_of_a_stacked_line_carries_the_ceiling() {
    // Proves R5's explanation data on the worked example's ent-a: the national primary pays its
    // own 30%, the municipal top-up min(30%, 45% − 30%) = 15% under the 45% ceiling.
    use suanli_domain::registry::{Category, ChipOrigin, Class};
    use suanli_domain::settlement::ratio_decision;
    let registry = worked_registry();
    let class = Class {
        category: Category::Compute,
        chip_origin: Some(ChipOrigin::Domestic),
        registered_model: None,
    };
    let d = ratio_decision(&registry, 2025, "ent-a", class);
    let p = d.package().expect("a package");
    assert!(p.stacked());
    assert_eq!(p.ceiling.map(|c| c.to_string()).as_deref(), Some("0.45"));
    let parts: Vec<(&str, String, String)> = p
        .parts
        .iter()
        .map(|x| {
            (
                x.programme.id.as_str(),
                x.own.to_string(),
                x.effective.to_string(),
            )
        })
        .collect();
    assert_eq!(
        parts,
        [
            ("national-intelligence-2025", "0.30".into(), "0.30".into()),
            ("hz-municipal-2025", "0.30".into(), "0.15".into()),
        ]
    );
}

#[test]
fn a_providers_records_of_a_month_add_up_to_at_most_ten_trillion_cny() {
    // Proves the bound that keeps every total within 64 bits (docs/rules.md, bounds of one
    // record): dc-a's hundred records at the largest amount of one record fill its month;
    // the next, in record id order, is refused naming provider and month, records of that
    // provider in another month and another provider's are unaffected, and the bases sum.
    use suanli_domain::intake::Row;
    use suanli_domain::money::Fen;
    use suanli_domain::usage::{AMOUNT_FEN_MAX, PROVIDER_MONTH_FEN_MAX};
    let registry = worked_registry();
    let max = Fen(AMOUNT_FEN_MAX).to_string();
    let (s, e) = ("2025-03-01T00:00:00+08:00", "2025-03-02T00:00:00+08:00");
    let ids: Vec<String> = (0..=100).map(|i| format!("r{i:03}")).collect();
    // Rows in reverse id order: the decision follows record ids, not lines.
    let mut rows: Vec<Row> = ids
        .iter()
        .rev()
        .enumerate()
        .map(|(line, id)| {
            row(
                line as u64 + 2,
                ["dc-a", id, "ent-a", "a-data", s, e, "1", &max],
            )
        })
        .collect();
    rows.push(row(
        200,
        ["dc-b", "b1", "ent-b", "b-oth", s, e, "1", "30.00"],
    ));
    rows.push(row(
        201,
        [
            "dc-a",
            "zz-april",
            "ent-a",
            "a-data",
            "2025-04-01T00:00:00+08:00",
            "2025-04-02T00:00:00+08:00",
            "1",
            "1.00",
        ],
    ));
    let decided = suanli_domain::intake::intake(&registry, period("2025-03"), rows);
    assert_eq!(decided.ignored, 1, "April's record is another month's");
    assert_eq!(decided.accepted.len(), 101, "100 of dc-a and dc-b's one");
    assert_eq!(decided.rejected.len(), 1);
    let refused = &decided.rejected[0];
    assert_eq!(refused.record_id, "r100", "the last in record id order");
    assert_eq!(refused.rejection.code, RejectCode::AmountOutOfRange);
    assert_eq!(refused.rejection.field, "amount");
    assert!(
        refused.rejection.message.contains("\"dc-a\"")
            && refused.rejection.message.contains("2025-03"),
        "{}",
        refused.rejection.message
    );
    let total: i64 = decided.bases().values().map(|f| f.0).sum();
    assert_eq!(total, PROVIDER_MONTH_FEN_MAX + 3000);
}
