//! The words for money and the explanation of a run's lines, through the use cases on SQLite
//! and PostgreSQL (docs/rules.md "The words for money", docs/settlement.md "Explaining a
//! line"): balances split into entitled, settled, paid out (first in, first out, per payee) and a
//! signed pending; `settlement::explain` on the worked example, on a scenario where a provider
//! cap and the pool bind, on a claw-back, and its records paged.

use std::collections::BTreeMap;

use suanli_app::balances::{self, PaidOut, PendingCache};
use suanli_app::explain::{Explanation, LineExplanation, RecordsPage};
use suanli_app::settlement as settle;
use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_domain::settlement::{ChosenBecause, CutBy};
use suanli_domain::usage::{Period, UsageRecord, validate};
use suanli_store::{Candidate, RegistryNames, Store};
use suanli_testkit::TestDb;

fn actor(name: &str) -> suanli_app::audit::Actor {
    suanli_app::audit::Actor {
        actor: format!("finance:{name}"),
        user: None,
        role: "finance".to_owned(),
        request_id: suanli_app::audit::new_request_id(),
    }
}

struct World {
    store: Box<dyn Store>,
    registry: Registry,
    /// Kept across steps, so that a look-up after a payment, void or run shows whether the
    /// cached figures followed it.
    cache: PendingCache,
    _db: TestDb,
}

impl World {
    fn open(db: TestDb, registry_text: &str) -> World {
        let mut store = suanli_store::open(&db.url).expect("store opens");
        let (registry, _) = Registry::from_toml("test.toml", registry_text).expect("valid");
        store
            .registry_insert(
                &registry.content_hash,
                registry_text,
                &RegistryNames::of(&registry),
                chrono::Utc::now(),
            )
            .expect("registry stored");
        World {
            store,
            registry,
            cache: PendingCache::default(),
            _db: db,
        }
    }

    /// Stores records (provider, id, beneficiary, sku, day of month, month, yuan), one group.
    fn ingest(&mut self, records: &[(&str, &str, &str, &str, u32, u32, &str)]) {
        let group: Vec<Candidate> = records
            .iter()
            .map(|&(provider, id, beneficiary, sku, day, month, amount)| {
                let start = chrono::DateTime::parse_from_rfc3339(&format!(
                    "2025-{month:02}-{day:02}T00:00:00+08:00"
                ))
                .expect("time");
                let record = UsageRecord {
                    provider: provider.into(),
                    record_id: id.into(),
                    beneficiary: beneficiary.into(),
                    sku: sku.into(),
                    start,
                    end: start + chrono::Duration::hours(10),
                    quantity: "50000".parse().expect("decimal"),
                    amount: Fen::parse_cny(amount).expect("money"),
                };
                let class = validate(&self.registry, &record).expect("record is valid");
                Candidate {
                    period: Period::of_instant(record.end),
                    class,
                    capacity: None,
                    registry_version: 1,
                    record,
                }
            })
            .collect();
        let decisions = self.store.ingest(&group).expect("ingest");
        assert!(
            decisions
                .iter()
                .all(|d| *d == suanli_store::Decision::Accepted),
            "{decisions:?}"
        );
    }

    /// Creates, approves and posts a run; returns its id.
    fn settle(&mut self, programme: &str, period: &str) -> i64 {
        let run = settle::create_run(&mut *self.store, programme, period, &actor("a"))
            .expect("create")
            .run
            .run_id;
        settle::approve_run(&mut *self.store, run, &actor("b")).expect("approve");
        settle::post_run(&mut *self.store, run, &actor("b")).expect("post");
        // What a balance says was settled is what posted runs' lines and confirmed opening
        // balances add up to, read from the tables here.
        let mut summed: BTreeMap<(String, String), i64> = BTreeMap::new();
        self.store
            .transaction(&mut |tx| {
                summed.clear();
                for r in tx.query(
                    "SELECT l.beneficiary, r.programme, CAST(SUM(l.amount_fen) AS BIGINT) \
                     FROM run_lines l JOIN settlement_runs r ON r.run_id = l.run_id \
                     WHERE r.status = 'posted' GROUP BY l.beneficiary, r.programme",
                    &[],
                )? {
                    *summed.entry((r[0].text()?, r[1].text()?)).or_default() += r[2].int()?;
                }
                for (programme, _, l) in suanli_store::opening::confirmed_lines(tx)? {
                    *summed.entry((l.beneficiary, programme)).or_default() += l.amount_fen;
                }
                Ok(())
            })
            .expect("read the posted lines and openings");
        assert!(!summed.is_empty());
        let beneficiaries: std::collections::BTreeSet<&String> =
            summed.keys().map(|(b, _)| b).collect();
        for b in beneficiaries {
            let kept =
                balances::balance(&mut *self.store, &mut self.cache, b, 2025).expect("balance");
            for balance in kept {
                let want = summed
                    .get(&(b.clone(), balance.programme.clone()))
                    .copied()
                    .unwrap_or(0);
                assert_eq!(
                    balance.settled,
                    Fen(want),
                    "{b}'s settled under {} after run {run}",
                    balance.programme
                );
            }
        }
        // The statement summarised by the database (a run of more lines than a statement
        // lists) has the figures of the one summed from its lines, and each payee's statement
        // has the payee's part of them.
        let listed = suanli_app::statement::run_statement(&mut *self.store, run, None, i64::MAX)
            .expect("statement");
        let summed = suanli_app::statement::run_statement(&mut *self.store, run, None, 0)
            .expect("summarised statement");
        assert!(!listed.summarised && summed.summarised);
        assert!(summed.lines.is_empty() && !listed.lines.is_empty());
        assert_eq!(
            (
                summed.line_count,
                summed.total,
                summed.increases,
                summed.claw_backs,
                summed.base
            ),
            (
                listed.line_count,
                listed.total,
                listed.increases,
                listed.claw_backs,
                listed.base
            ),
            "run {run}'s statement"
        );
        assert_eq!(summed.payees, listed.payees, "run {run}'s payees");
        for payee in &listed.payees {
            let part =
                suanli_app::statement::run_statement(&mut *self.store, run, Some(&payee.payee), 0)
                    .expect("a payee's statement");
            assert_eq!(part.payee.as_ref(), Some(payee));
            assert_eq!((part.line_count, part.total), (payee.lines, payee.amount));
            assert!(part.lines.iter().all(|l| l.line.payee == payee.payee));
        }
        run
    }

    fn explain(&mut self, run: i64, beneficiary: &str) -> Explanation {
        settle::explain(
            &mut *self.store,
            run,
            beneficiary,
            None,
            &RecordsPage::default(),
        )
        .expect("explain")
    }

    /// The balance from the kept cache, checked against one computed from scratch.
    fn balance(&mut self, beneficiary: &str, programme: &str) -> balances::Balance {
        let cached = balances::balance(&mut *self.store, &mut self.cache, beneficiary, 2025)
            .expect("balance");
        let mut fresh = PendingCache::default();
        let computed =
            balances::balance(&mut *self.store, &mut fresh, beneficiary, 2025).expect("balance");
        assert_eq!(cached, computed, "the cached balance of {beneficiary}");
        cached
            .into_iter()
            .find(|b| b.programme == programme)
            .expect("a grant of the programme")
    }

    fn pay(&mut self, programme: &str, payee: &str, yuan: &str, reference: &str) {
        suanli_app::ledger::record_payment(
            &mut *self.store,
            Some(programme),
            payee,
            Fen::parse_cny(yuan).expect("money"),
            reference,
            &actor("a"),
            // Every payment booked at once: no second person in these scenarios.
            None,
        )
        .expect("payment");
    }
}

fn line<'e>(e: &'e Explanation, provider: &str, period: &str) -> &'e LineExplanation {
    e.lines
        .iter()
        .find(|l| l.line.key.provider == provider && l.line.original_period == period)
        .unwrap_or_else(|| panic!("a line of {provider} for {period}: {e:#?}"))
}

fn cny(text: &str) -> Fen {
    Fen::parse_cny(text).expect("money")
}

fn paid_out(payee: &str, to_beneficiary: bool, settled: &str, paid: &str) -> PaidOut {
    PaidOut {
        payee: payee.into(),
        to_beneficiary,
        settled: cny(settled),
        paid_out: cny(paid),
    }
}

const WORKED: &str = include_str!("../../../examples/worked/registry.toml");

fn worked_example(db: TestDb) {
    let mut w = World::open(db, WORKED);
    // ent-d's 7,900,000.00 paid before Suanli, as the worked example's prior payments.
    let import = suanli_app::opening::import_opening(
        &mut *w.store,
        "hz-municipal-2025",
        &[suanli_app::opening::OpeningRow {
            beneficiary: "ent-d".into(),
            provider: "dc-a".into(),
            amount: cny("7900000.00"),
            line: 2,
        }],
        &actor("a"),
    )
    .expect("import");
    suanli_app::opening::confirm_opening(&mut *w.store, import.import.import_id, &actor("b"))
        .expect("confirm");
    w.ingest(&[
        ("dc-a", "r1", "ent-a", "a-dom", 1, 3, "1000000.00"),
        ("dc-b", "r2", "ent-b", "b-oth", 1, 3, "1000000.00"),
        ("dc-b", "r3", "ent-c", "b-oth", 1, 3, "1000000.00"),
        ("dc-a", "r4", "uni-u", "a-data", 1, 3, "500000.00"),
        ("dc-a", "r5", "ent-d", "a-dom", 1, 3, "1000000.00"),
    ]);
    let city = w.settle("hz-municipal-2025", "2025-03");
    let nation = w.settle("national-intelligence-2025", "2025-03");

    // A: stacked, the municipal top-up fills 45% − 30%.
    let e = w.explain(city, "ent-a");
    let a = line(&e, "dc-a", "2025-03");
    assert_eq!(e.programme_name, "杭州市级算力券 2025");
    assert_eq!(a.ratio.ratio.to_string(), "0.15");
    assert_eq!(a.ratio.own.map(|r| r.to_string()).as_deref(), Some("0.30"));
    assert_eq!(
        a.ratio.stacked_with.as_ref().map(|(id, _, r, primary)| (
            id.as_str(),
            r.to_string(),
            *primary
        )),
        Some(("national-intelligence-2025", "0.30".to_owned(), false))
    );
    assert_eq!(
        a.ratio.ceiling.map(|c| c.to_string()).as_deref(),
        Some("0.45")
    );
    assert!(
        a.ratio.text.contains(
            "hz-municipal-2025 tops it up with min(its own 30%, the ceiling 45% − 30%) = 15%"
        ),
        "{}",
        a.ratio.text
    );
    assert_eq!(a.demand, cny("150000.00"));
    assert!(a.cuts.is_empty());
    assert_eq!(
        (a.records.len(), a.records[0].record_id.as_str()),
        (1, "r1")
    );
    assert!(a.records[0].counted);
    assert!(
        a.text
            .contains(&"entitled ¥150,000.00 for 2025-03, settled by this run".to_owned()),
        "{:#?}",
        a.text
    );

    // D: the cap, reached with this run after the opening balance.
    let e = w.explain(city, "ent-d");
    let d = line(&e, "dc-a", "2025-03");
    assert_eq!(d.demand, cny("300000.00"));
    assert_eq!(d.cuts.len(), 1, "{:#?}", d.cuts);
    let cut = &d.cuts[0];
    assert_eq!(
        (
            cut.stage,
            cut.limit,
            cut.prior,
            cut.prior_opening,
            cut.left,
            cut.before,
            cut.after
        ),
        (
            CutBy::BeneficiaryCap,
            cny("8000000.00"),
            cny("7900000.00"),
            cny("7900000.00"),
            cny("100000.00"),
            cny("300000.00"),
            cny("100000.00")
        )
    );
    assert_eq!(
        cut.text,
        format!(
            "demand ¥300,000.00, cut to ¥100,000.00 by the beneficiary cap: the 2025 cap of ¥8,000,000.00 for ent-d was reached with run {city} (¥7,900,000.00 counted before 2025-03: opening balances ¥7,900,000.00; ¥100,000.00 left, shared by 1 line(s) wanting ¥300,000.00)"
        )
    );

    // U: data, the national programme alone at its own rate.
    let e = w.explain(nation, "uni-u");
    let u = line(&e, "dc-a", "2025-03");
    assert_eq!(u.ratio.class, "data");
    assert_eq!(u.ratio.chosen_because, ChosenBecause::Only);
    assert!(u.ratio.stacked_with.is_none());
    assert_eq!(u.line.entitlement_fen, cny("150000.00").0);
    let err = settle::explain(
        &mut *w.store,
        nation,
        "ent-b",
        None,
        &RecordsPage::default(),
    )
    .expect_err("ent-b has no national line");
    assert!(
        err.to_string().contains(&format!(
            "run {nation} has no line of beneficiary \"ent-b\""
        )),
        "{err}"
    );

    // Paid out: dc-a is paid 100,000.00 (ent-a's line comes first), dc-b 150,000.00 (ent-b's
    // line first), ent-a its national 300,000.00.
    assert_eq!(
        w.balance("ent-a", "hz-municipal-2025").paid_out,
        [paid_out("dc-a", false, "150000.00", "0.00")],
        "nothing is paid out before a payment"
    );
    w.pay("hz-municipal-2025", "dc-a", "100000.00", "P-1");
    w.pay("hz-municipal-2025", "dc-b", "150000.00", "P-2");
    w.pay("national-intelligence-2025", "ent-a", "300000.00", "P-3");
    let b = w.balance("ent-a", "hz-municipal-2025");
    assert_eq!(
        (b.entitled, b.settled, b.pending),
        (cny("150000.00"), cny("150000.00"), Fen::ZERO)
    );
    assert_eq!(
        b.paid_out,
        [paid_out("dc-a", false, "150000.00", "100000.00")]
    );
    assert_eq!(b.paid_out_to_providers(), cny("100000.00"));
    let b = w.balance("ent-a", "national-intelligence-2025");
    assert_eq!(
        b.paid_out,
        [paid_out("ent-a", true, "300000.00", "300000.00")]
    );
    assert_eq!(b.paid_out_to_beneficiary(), cny("300000.00"));
    let b = w.balance("ent-d", "hz-municipal-2025");
    assert_eq!((b.settled, b.remaining), (cny("8000000.00"), Fen::ZERO));
    assert_eq!(
        b.paid_out,
        [paid_out("dc-a", false, "8000000.00", "7900000.00")],
        "the opening balance was paid out before Suanli"
    );
    assert_eq!(
        w.balance("ent-b", "hz-municipal-2025").paid_out,
        [paid_out("dc-b", false, "200000.00", "150000.00")]
    );

    // ent-b's record is voided: more was settled than is now entitled.
    w.store
        .void("dc-b", "r2", "billed twice", chrono::Utc::now())
        .expect("void");
    let b = w.balance("ent-b", "hz-municipal-2025");
    assert_eq!(
        (b.entitled, b.settled, b.pending, b.owed_back()),
        (
            Fen::ZERO,
            cny("200000.00"),
            Fen::ZERO.minus(cny("200000.00")),
            cny("200000.00")
        )
    );
    assert_eq!(
        b.remaining,
        cny("7800000.00"),
        "remaining counts no negative pending"
    );
    let mut cache = PendingCache::default();
    let overview = balances::programme_overview(&mut *w.store, &mut cache, 2025).expect("o");
    let o = overview
        .iter()
        .find(|o| o.programme == "hz-municipal-2025")
        .expect("municipal");
    assert_eq!(
        (o.entitled, o.settled, o.paid_out, o.pending, o.owed_back),
        (
            cny("8300000.00"),
            cny("8500000.00"),
            cny("8150000.00"),
            Fen::ZERO.minus(cny("200000.00")),
            cny("200000.00")
        )
    );

    // April's run claws it back; the explanation gives entitlement, settled before and change.
    w.ingest(&[("dc-a", "r6", "ent-a", "a-dom", 2, 4, "100.00")]);
    let april = w.settle("hz-municipal-2025", "2025-04");
    let e = w.explain(april, "ent-b");
    let back = line(&e, "dc-b", "2025-03");
    assert!(back.adjustment);
    assert_eq!(
        (
            back.line.entitlement_fen,
            back.line.posted_before_fen,
            back.line.amount_fen
        ),
        (0, cny("200000.00").0, Fen::ZERO.minus(cny("200000.00")).0)
    );
    assert!(
        back.text.contains(&"adjusts 2025-03 (R9): entitled now ¥0.00, settled before ¥200,000.00, change -¥200,000.00 (a claw-back)".to_owned()),
        "{:#?}",
        back.text
    );
    assert_eq!(back.records.len(), 1);
    let r2 = &back.records[0];
    assert_eq!(r2.void_reason.as_deref(), Some("billed twice"));
    assert!(
        !r2.counted,
        "voided before the April run was created, so not in its base"
    );
    // After the claw-back, dc-b's 150,000.00 covers ent-c's line: ent-b's slice is gone.
    assert_eq!(
        w.balance("ent-b", "hz-municipal-2025").paid_out,
        [paid_out("dc-b", false, "0.00", "0.00")]
    );
    assert_eq!(
        w.balance("ent-c", "hz-municipal-2025").paid_out,
        [paid_out("dc-b", false, "150000.00", "150000.00")]
    );
    for b in ["ent-a", "ent-b", "ent-c", "ent-d", "uni-u"] {
        let mut cache = PendingCache::default();
        for balance in balances::balance(&mut *w.store, &mut cache, b, 2025).expect("balance") {
            assert_eq!(
                balance.paid_out.iter().map(|p| p.settled).sum::<Fen>(),
                balance.settled,
                "{b}: settled per payee sums to settled"
            );
        }
    }
}

// The worked example on SQLite: explanations and the paid-out split as docs/rules.md gives them.
#[test]
fn worked_example_explained_and_paid_out_on_sqlite() {
    worked_example(suanli_testkit::sqlite("explain_worked"));
}

// The same on PostgreSQL.
#[test]
fn worked_example_explained_and_paid_out_on_postgres() {
    if let Some(db) = suanli_testkit::postgres("explain_worked") {
        worked_example(db);
    }
}

/// A municipal programme whose provider cap and pool bind: pool 1,000.00, provider cap 600.00,
/// beneficiary cap 500.00, 50% on domestic compute, paid to providers.
const LIMITED: &str = r#"
[[programme]]
id = "city"
name = "City voucher"
funder = "municipal"
year = 2025
pool = "1000.00"
beneficiary_cap = "500.00"
provider_cap = "600.00"
beneficiary_kinds = ["enterprise"]
payee = "provider"
rates = [ { category = "compute", chip_origin = "domestic", ratio = "0.50" } ]
[[provider]]
id = "p1"
name = "Provider One"
[[provider]]
id = "p2"
[[sku]]
id = "d1"
provider = "p1"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
[[sku]]
id = "d2"
provider = "p2"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
[[beneficiary]]
id = "e1"
name = "杭宇智能"
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

fn limits_bind(db: TestDb) {
    let mut w = World::open(db, LIMITED);
    // e1: 5 records of 160.00 through p1 (demand 400.00); e2: 600.00 through p1 (300.00);
    // e3: 1,200.00 through p2 (600.00, above its cap of 500.00).
    w.ingest(&[
        ("p1", "a1", "e1", "d1", 1, 3, "160.00"),
        ("p1", "a2", "e1", "d1", 2, 3, "160.00"),
        ("p1", "a3", "e1", "d1", 3, 3, "160.00"),
        ("p1", "a4", "e1", "d1", 4, 3, "160.00"),
        ("p1", "a5", "e1", "d1", 5, 3, "160.00"),
        ("p1", "b1", "e2", "d1", 1, 3, "600.00"),
        ("p2", "c1", "e3", "d2", 1, 3, "1200.00"),
    ]);
    let march = w.settle("city", "2025-03");

    // e1: p1's cap shares 600.00 as 400 : 300 (342.86 : 257.14), then the pool shares 1,000.00
    // over 342.86 : 257.14 : 500.00 (311.69 : 233.76 : 454.55).
    let e = w.explain(march, "e1");
    assert_eq!(e.beneficiary_name, "杭宇智能");
    let l = line(&e, "p1", "2025-03");
    assert_eq!(l.line.cut_by, "pool");
    let stages: Vec<(CutBy, Fen, Fen, Fen, Fen, usize)> = l
        .cuts
        .iter()
        .map(|c| (c.stage, c.limit, c.left, c.wanted, c.after, c.lines))
        .collect();
    assert_eq!(
        stages,
        [
            (
                CutBy::ProviderCap,
                cny("600.00"),
                cny("600.00"),
                cny("700.00"),
                cny("342.86"),
                2
            ),
            (
                CutBy::Pool,
                cny("1000.00"),
                cny("1000.00"),
                cny("1100.00"),
                cny("311.69"),
                3
            ),
        ]
    );
    assert_eq!(
        l.cuts[0].text,
        format!(
            "demand ¥400.00, cut to ¥342.86 by the provider cap: the 2025 provider cap of ¥600.00 for Provider One (p1) was reached with run {march} (nothing counted before 2025-03; ¥600.00 left, shared by 2 line(s) wanting ¥700.00)"
        )
    );
    assert_eq!(
        l.cuts[1].text,
        format!(
            "¥342.86 after the earlier limits, cut to ¥311.69 by the pool: the 2025 pool of ¥1,000.00 of city was reached with run {march} (nothing counted before 2025-03; ¥1,000.00 left, shared by 3 line(s) wanting ¥1,100.00)"
        )
    );
    assert_eq!(l.line.entitlement_fen, cny("311.69").0);
    let e3 = w.explain(march, "e3");
    let l3 = line(&e3, "p2", "2025-03");
    assert_eq!(
        l3.cuts
            .iter()
            .map(|c| (c.stage, c.before, c.after))
            .collect::<Vec<_>>(),
        [
            (CutBy::BeneficiaryCap, cny("600.00"), cny("500.00")),
            (CutBy::Pool, cny("500.00"), cny("454.55")),
        ]
    );
    assert!(
        l3.cuts[0]
            .text
            .starts_with("demand ¥600.00, cut to ¥500.00 by the beneficiary cap: the 2025 cap of ¥500.00 for e3 was reached with run"),
        "{}",
        l3.cuts[0].text
    );

    // e1's records, two a page, in record-id order, each page naming the next.
    let mut seen = Vec::new();
    let mut token = None;
    for _ in 0..4 {
        let e = settle::explain(
            &mut *w.store,
            march,
            "e1",
            Some("p1"),
            &RecordsPage {
                size: 2,
                token,
                ..RecordsPage::default()
            },
        )
        .expect("explain a page");
        assert_eq!(e.lines.len(), 1);
        let l = &e.lines[0];
        assert!(l.records.len() <= 2);
        seen.extend(l.records.iter().map(|r| r.record_id.clone()));
        token = l.next_records_page_token.clone();
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["a1", "a2", "a3", "a4", "a5"]);
    // A record id searched by its beginning, within the line a token names, and by void state.
    let first = settle::explain(
        &mut *w.store,
        march,
        "e1",
        Some("p1"),
        &RecordsPage::default(),
    )
    .expect("explain");
    let line_token = suanli_app::explain::line_token(&first.lines[0].line, "");
    let mut found = |prefix: &str, void: Option<bool>| -> Vec<String> {
        settle::explain(
            &mut *w.store,
            march,
            "e1",
            None,
            &RecordsPage {
                token: Some(line_token.clone()),
                filter: suanli_app::explain::RecordFilter {
                    id_prefix: prefix.into(),
                    void,
                },
                ..RecordsPage::default()
            },
        )
        .expect("explain a search")
        .lines
        .iter()
        .flat_map(|l| l.records.iter().map(|r| r.record_id.clone()))
        .collect()
    };
    assert_eq!(found("a3", None), ["a3"]);
    assert_eq!(found("a", Some(false)).len(), 5);
    assert!(found("a", Some(true)).is_empty());
    assert!(found("a%", None).is_empty(), "a prefix is not a pattern");
    assert!(found("b1", None).is_empty(), "b1 is e2's, not this line's");
    let err = settle::explain(
        &mut *w.store,
        march,
        "e1",
        None,
        &RecordsPage {
            size: 2,
            token: Some("zz".into()),
            ..RecordsPage::default()
        },
    )
    .expect_err("a made-up token");
    assert!(err.to_string().contains("records_page_token"), "{err}");

    // April: the pool was used up by March's entitlements (prior payments), so e1's April line
    // gets nothing.
    w.ingest(&[("p1", "a6", "e1", "d1", 2, 4, "100.00")]);
    let april = w.settle("city", "2025-04");
    let e = w.explain(april, "e1");
    let l = line(&e, "p1", "2025-04");
    assert_eq!(l.line.entitlement_fen, 0);
    let pool = l.cuts.last().expect("the pool cut it");
    assert_eq!(
        (pool.stage, pool.prior, pool.left),
        (CutBy::Pool, cny("1000.00"), Fen::ZERO)
    );
    assert_eq!(
        pool.text,
        "demand ¥50.00, cut to ¥0.00 by the pool: the 2025 pool of ¥1,000.00 of city had been reached before 2025-04 by prior payments (¥1,000.00 counted before 2025-04: earlier months ¥1,000.00; ¥0.00 left, shared by 1 line(s) wanting ¥50.00)"
    );
}

// A provider cap and the pool binding, explained stage by stage on SQLite; records paged.
#[test]
fn provider_cap_and_pool_cuts_explained_on_sqlite() {
    limits_bind(suanli_testkit::sqlite("explain_limits"));
}

// The same on PostgreSQL.
#[test]
fn provider_cap_and_pool_cuts_explained_on_postgres() {
    if let Some(db) = suanli_testkit::postgres("explain_limits") {
        limits_bind(db);
    }
}
