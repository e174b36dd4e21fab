//! Settlement end to end through the real binary on both backends: registry import → usage
//! import → settle create/approve/post → balance, late records and voids across months, the
//! ledger, and a preview equal to `suanli simulate` on the same data (the worked example of docs/rules.md, R9-R12).

mod support;

use suanli_testkit::TestDb as Db;
use support::cli::{
    HEADER, POOLED_REGISTRY, Server, may_record, pg_db, run_id, sqlite_db, wide_registry,
};
use support::{bin, root};

/// The statement rows of one programme from a CSV text, without the header.
fn rows_of(csv: &str, programme: &str) -> Vec<String> {
    csv.lines()
        .skip(1)
        .filter(|l| l.starts_with(&format!("{programme},")))
        .map(str::to_owned)
        .collect()
}

fn worked_example_end_to_end(db: Db) {
    let s = Server::start(db);
    let admin = s.token(&["--role", "admin"]);
    let f1 = s.token(&["--role", "finance"]);
    let f2 = s.token(&["--role", "finance"]);
    let auditor = s.token(&["--role", "auditor"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let dc_b = s.token(&["--role", "provider", "--provider", "dc-b"]);
    let ent_d = s.token(&["--role", "beneficiary", "--beneficiary", "ent-d"]);
    s.ok(
        &admin,
        &[
            "registry",
            "import",
            "--file",
            "examples/worked/registry.toml",
        ],
    );

    // January: ent-d receives 7,900,000.00 of the municipal voucher (0.30 × 26,333,333.33).
    let jan = s.file("jan.csv", &format!("{HEADER}dc-a,j1,ent-d,a-dom,2025-01-01T00:00:00+08:00,2025-01-11T00:00:00+08:00,1316667,26333333.33\n"));
    s.ok(&dc_a, &["usage", "import", "--file", &jan]);
    let out = s.ok(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "hz-municipal-2025",
            "--period",
            "2025-01",
        ],
    );
    let jan_run = run_id(&out);
    assert!(
        out.contains("ent-d dc-a compute/domestic base 26333333.33 ratio 0.30 → 7900000.00"),
        "{out}"
    );
    let err = s.fails(&f1, &["settle", "approve", &jan_run]);
    assert!(
        err.contains("four eyes"),
        "the creator cannot approve: {err}"
    );
    let err = s.fails(&dc_a, &["settle", "approve", &jan_run]);
    assert!(
        err.contains("permission"),
        "a provider cannot approve: {err}"
    );
    s.ok(&f2, &["settle", "approve", &jan_run]);
    assert!(s.ok(&f1, &["settle", "post", &jan_run]).contains("posted"));
    assert!(
        s.ok(&f1, &["settle", "post", &jan_run])
            .contains("unchanged"),
        "posting twice changes nothing"
    );

    // March: the worked example of docs/rules.md through the service.
    let usage = std::fs::read_to_string(root().join("examples/worked/usage.csv")).unwrap();
    for (provider, token) in [("dc-a", &dc_a), ("dc-b", &dc_b)] {
        let mine: String = usage
            .lines()
            .filter(|l| l.starts_with(&format!("{provider},")))
            .map(|l| format!("{l}\n"))
            .collect();
        let f = s.file(&format!("march-{provider}.csv"), &format!("{HEADER}{mine}"));
        s.ok(token, &["usage", "import", "--file", &f]);
    }
    let expected = std::fs::read_to_string(root().join("examples/worked/statement.csv")).unwrap();
    // The preview equals `suanli simulate` on the same registry, usage and prior payments.
    let sim_out = s.db.dir.join("sim.csv");
    let o = bin()
        .args([
            "simulate",
            "--registry",
            "examples/worked/registry.toml",
            "--usage",
            "examples/worked/usage.csv",
        ])
        .args([
            "--prior",
            "examples/worked/prior.csv",
            "--period",
            "2025-03",
            "--out",
            sim_out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let simulated = std::fs::read_to_string(&sim_out).unwrap();
    assert_eq!(simulated, expected);
    let mut runs = Vec::new();
    for programme in ["hz-municipal-2025", "national-intelligence-2025"] {
        let id = run_id(&s.ok(
            &f1,
            &[
                "settle",
                "create",
                "--programme",
                programme,
                "--period",
                "2025-03",
            ],
        ));
        let err = s.fails(
            &f1,
            &[
                "settle",
                "create",
                "--programme",
                programme,
                "--period",
                "2025-03",
            ],
        );
        assert!(
            err.contains("one open run per programme and period"),
            "{err}"
        );
        let export = s.db.dir.join(format!("run-{id}.csv"));
        s.ok(
            &auditor,
            &["settle", "export", &id, "--out", export.to_str().unwrap()],
        );
        let exported = std::fs::read_to_string(&export).unwrap();
        assert!(exported.starts_with(
            "programme,period,beneficiary,provider,category,chip_origin,registered_model,base,ratio,subsidy,cut_by,run_id,original_period,entitlement,settled_before,change,reason\n"
        ));
        // Own-period lines: simulate's columns, run_id, an empty original_period, then
        // entitlement, settled_before (nothing yet) and the change, equal to the subsidy.
        let trimmed: Vec<String> = rows_of(&exported, programme)
            .iter()
            .map(|r| {
                let fields: Vec<&str> = r.split(',').collect();
                assert_eq!(fields[11..13], [id.as_str(), ""], "{r}");
                assert_eq!(fields[14], "0.00", "{r}");
                assert_eq!((fields[13], fields[15]), (fields[9], fields[9]), "{r}");
                fields[..11].join(",")
            })
            .collect();
        assert_eq!(
            trimmed,
            rows_of(&simulated, programme),
            "{programme}: preview = simulate"
        );
        s.ok(&f2, &["settle", "approve", &id]);
        s.ok(&f1, &["settle", "post", &id]);
        runs.push(id);
    }
    let balance = s.ok(
        &ent_d,
        &["balance", "--beneficiary", "ent-d", "--year", "2025"],
    );
    assert!(
        balance.contains("hz-municipal-2025: cap 8000000.00 CNY, entitled 8000000.00 CNY, settled 8000000.00 CNY, pending 0.00 CNY, remaining 0.00 CNY"),
        "{balance}"
    );
    let err = s.fails(
        &ent_d,
        &["balance", "--beneficiary", "ent-a", "--year", "2025"],
    );
    assert!(
        err.contains("cannot read"),
        "a beneficiary sees only its own balance: {err}"
    );

    // April: dc-b voids ent-b's paid March record and reports a late March record for ent-c.
    s.ok(
        &dc_b,
        &[
            "usage",
            "void",
            "--provider",
            "dc-b",
            "--record-id",
            "r2",
            "--reason",
            "billed in error",
        ],
    );
    let late = s.file("late.csv", &format!("{HEADER}dc-b,r9,ent-c,b-oth,2025-03-20T00:00:00+08:00,2025-03-21T00:00:00+08:00,100,2000.00\n"));
    s.ok(&dc_b, &["usage", "import", "--file", &late]);
    let pending = s.ok(
        &auditor,
        &["balance", "--beneficiary", "ent-c", "--year", "2025"],
    );
    assert!(
        pending.contains(
            "hz-municipal-2025: cap 8000000.00 CNY, entitled 150300.00 CNY, settled 150000.00 CNY, pending 300.00 CNY"
        ),
        "{pending}"
    );
    let april = run_id(&s.ok(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "hz-municipal-2025",
            "--period",
            "2025-04",
        ],
    ));
    let export = s.db.dir.join("april.csv");
    s.ok(
        &f1,
        &[
            "settle",
            "export",
            &april,
            "--out",
            export.to_str().unwrap(),
        ],
    );
    let exported = std::fs::read_to_string(&export).unwrap();
    assert_eq!(
        exported.lines().skip(1).collect::<Vec<_>>(),
        [
            format!(
                "hz-municipal-2025,2025-04,ent-b,dc-b,compute,other,,0.00,0.00,-200000.00,,{april},2025-03,0.00,200000.00,-200000.00,\"claw-back: the 2025-03 entitlement fell from 200,000.00 to 0.00 after voids or late records\""
            ),
            format!(
                "hz-municipal-2025,2025-04,ent-c,dc-b,compute,other,,1002000.00,0.15,300.00,,{april},2025-03,150300.00,150000.00,300.00,\"late records: the 2025-03 entitlement rose from 150,000.00 to 150,300.00\""
            ),
        ],
        "adjustment lines: a claw-back and a late record, both naming March"
    );
    s.ok(&f2, &["settle", "approve", &april]);
    s.ok(&f2, &["settle", "cancel", &april]);
    let err = s.fails(&f1, &["settle", "post", &april]);
    assert!(err.contains("cancelled"), "{err}");
    let april = run_id(&s.ok(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "hz-municipal-2025",
            "--period",
            "2025-04",
        ],
    ));
    s.ok(&f2, &["settle", "approve", &april]);
    s.ok(&f2, &["settle", "post", &april]);
    assert!(
        s.ok(&auditor, &["settle", "rederive", &april])
            .contains("every line matches")
    );
    assert!(
        s.ok(&auditor, &["settle", "rederive", &runs[0]])
            .contains("every line matches")
    );

    // The ledger: dc-b was owed 350,000.00 for March, less 200,000.00 clawed back, plus 300.00.
    let owed = s.ok(&auditor, &["balance", "--payee", "dc-b"]);
    assert!(
        owed.contains(
            "hz-municipal-2025: settled 150300.00 CNY, paid out 0.00 CNY, outstanding 150300.00 CNY"
        ),
        "{owed}"
    );
    let paid = s.ok(
        &f1,
        &[
            "ledger",
            "record-payment",
            "--payee",
            "dc-b",
            "--amount",
            "150000.00",
            "--reference",
            "HZ-PAY-1",
        ],
    );
    assert!(paid.contains("still owed 300.00"), "{paid}");
    let owed = s.ok(&auditor, &["balance", "--payee", "dc-b"]);
    assert!(
        owed.contains(
            "hz-municipal-2025: settled 150300.00 CNY, paid out 150000.00 CNY, outstanding 300.00 CNY"
        ),
        "{owed}"
    );
    assert!(
        s.ok(
            &f1,
            &[
                "ledger",
                "record-payment",
                "--payee",
                "dc-b",
                "--amount",
                "150000.00",
                "--reference",
                "HZ-PAY-1"
            ]
        )
        .contains("already recorded")
    );
    let err = s.fails(
        &f1,
        &[
            "ledger",
            "record-payment",
            "--payee",
            "dc-b",
            "--amount",
            "500.00",
            "--reference",
            "HZ-PAY-2",
        ],
    );
    assert!(err.contains("exceeds"), "{err}");
    let trial = s.ok(&auditor, &["ledger", "trial-balance"]);
    assert!(trial.contains("balanced"), "{trial}");
    let journal = s.db.dir.join("journal.csv");
    s.ok(
        &auditor,
        &["ledger", "export", "--out", journal.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&journal).unwrap();
    let (mut debit, mut credit) = (0i64, 0i64);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.rsplitn(3, ',').collect();
        let cents = |t: &str| -> i64 { t.replace('.', "").parse().unwrap() };
        credit += cents(f[0]);
        debit += cents(f[1]);
    }
    assert_eq!(debit, credit, "the exported journal balances");
    // Ledger balances equal the sum of posted statements: municipal expense = January
    // 7,900,000.00 + March 600,000.00 + April (−200,000.00 + 300.00), split half and half.
    for funder in ["city", "district"] {
        let line = trial
            .lines()
            .find(|l| l.starts_with(&format!("expense:hz-municipal-2025:{funder} ")))
            .expect("expense line");
        assert!(line.trim_end().ends_with(" 4150150.00"), "{line}");
    }
    let national = trial
        .lines()
        .find(|l| l.starts_with("expense:national-intelligence-2025 "))
        .expect("national expense");
    assert!(national.trim_end().ends_with(" 550000.00"), "{national}");

    // settle explain: ent-d's March line, cut by the cap that January's run brought near; the
    // beneficiary itself may read it, not another's.
    let explained = s.ok(
        &ent_d,
        &["settle", "explain", &runs[0], "--beneficiary", "ent-d"],
    );
    for expected in [
        "ratio 30%: hz-municipal-2025's own rate for compute/domestic (R4)".to_owned(),
        "demand ¥300,000.00 = ¥1,000,000.00 × 30%, rounded half up once (R6)".to_owned(),
        format!(
            "demand ¥300,000.00, cut to ¥100,000.00 by the beneficiary cap: the 2025 cap of ¥8,000,000.00 for ent-d was reached with run {} (¥7,900,000.00 counted before 2025-03: earlier months ¥7,900,000.00; ¥100,000.00 left, shared by 1 line(s) wanting ¥300,000.00)",
            runs[0]
        ),
        "r5 a-dom 2025-03-01T00:00:00+08:00 – 2025-03-11T00:00:00+08:00 quantity 50000 amount 1000000.00 CNY".to_owned(),
    ] {
        assert!(explained.contains(&expected), "{expected}\n{explained}");
    }
    let err = s.fails(
        &ent_d,
        &["settle", "explain", &runs[0], "--beneficiary", "ent-a"],
    );
    assert!(err.contains("cannot read"), "{err}");
    // As JSON: April's claw-back of ent-b, and the void behind it.
    let json = s.ok(
        &auditor,
        &[
            "settle",
            "explain",
            &april,
            "--beneficiary",
            "ent-b",
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let line = &v["lines"][0];
    assert_eq!(
        line["ratio_explanation"]["ratio_percent"].as_str(),
        Some("0%"),
        "a line whose records are all void has no ratio: {json}"
    );
    assert_eq!(
        (
            line["original_period"].as_str(),
            line["adjustment"].as_bool(),
            line["entitlement_fen"].as_i64(),
            line["settled_before_fen"].as_i64(),
            line["change_fen"].as_i64(),
        ),
        (
            Some("2025-03"),
            Some(true),
            Some(0),
            Some(20_000_000),
            Some(-20_000_000)
        ),
        "{json}"
    );
    let record = &line["records"][0];
    assert_eq!(
        (
            record["record_id"].as_str(),
            record["void_reason"].as_str(),
            record["counted"].as_bool()
        ),
        (Some("r2"), Some("billed in error"), Some(false)),
        "{json}"
    );
    // Paid out: once ent-b's line was clawed back, dc-b's 150,000.00 covers ent-c's line.
    let balance = s.ok(
        &auditor,
        &["balance", "--beneficiary", "ent-c", "--year", "2025"],
    );
    assert!(
        balance.contains("paid out 150000.00 CNY: to ent-c itself 0.00 CNY, to providers on its behalf 150000.00 CNY (to provider dc-b 150000.00 of 150300.00 CNY settled)"),
        "{balance}"
    );
    // The list counts each run's lines, adjustments and total as the run itself does.
    let list = s.ok(&auditor, &["settle", "list"]);
    let headers: Vec<&str> = list.lines().filter(|l| l.starts_with("run ")).collect();
    assert!(
        headers.iter().any(|h| !h.contains(" 0 adjustment(s)")),
        "a run with adjustments: {list}"
    );
    for header in headers {
        let id = run_id(header);
        let shown = s.ok(&auditor, &["settle", "show", &id]);
        assert_eq!(Some(header), shown.lines().next(), "run {id}");
    }
}

#[test]
fn worked_example_end_to_end_on_sqlite() {
    worked_example_end_to_end(sqlite_db().unwrap());
}

#[test]
fn worked_example_end_to_end_on_postgres() {
    if let Some(db) = pg_db() {
        worked_example_end_to_end(db);
    }
}

/// The metrics endpoint's text at `addr`.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    c.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    c.read_to_string(&mut body).unwrap();
    body
}

fn pool_exhausted_across_beneficiaries(db: Db) {
    let metrics = format!("127.0.0.1:{}", support::console::free_port());
    let s = Server::start_with(db, &["--metrics-addr", &metrics]);
    let admin = s.token(&["--role", "admin"]);
    let f1 = s.token(&["--role", "finance"]);
    let f2 = s.token(&["--role", "finance"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let registry = s.file("pooled.toml", POOLED_REGISTRY);
    s.ok(&admin, &["registry", "import", "--file", &registry]);
    let t = "2025-05-01T00:00:00+08:00,2025-05-02T00:00:00+08:00";
    let may = s.file("may.csv", &format!("{HEADER}dc-a,m1,e1,gpu,{t},1,600.00\ndc-a,m2,e2,gpu,{t},1,900.00\ndc-a,m3,e3,gpu,{t},1,1000.01\n"));
    s.ok(&dc_a, &["usage", "import", "--file", &may]);
    let id = run_id(&s.ok(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "pooled-2025",
            "--period",
            "2025-05",
        ],
    ));
    let export = s.db.dir.join("may-run.csv");
    s.ok(
        &f1,
        &["settle", "export", &id, "--out", export.to_str().unwrap()],
    );
    // Demand 300.00 + 450.00 + 500.01 (half-up of 500.005) = 1250.01 over a pool of 1000.00:
    // shared pro rata by largest remainder, summing to the pool exactly.
    assert_eq!(
        std::fs::read_to_string(&export)
            .unwrap()
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        [
            format!(
                "pooled-2025,2025-05,e1,dc-a,compute,domestic,,600.00,0.50,240.00,pool,{id},,240.00,0.00,240.00,\"cut by the pool of 1,000.00\""
            ),
            format!(
                "pooled-2025,2025-05,e2,dc-a,compute,domestic,,900.00,0.50,360.00,pool,{id},,360.00,0.00,360.00,\"cut by the pool of 1,000.00\""
            ),
            format!(
                "pooled-2025,2025-05,e3,dc-a,compute,domestic,,1000.01,0.50,400.00,pool,{id},,400.00,0.00,400.00,\"cut by the pool of 1,000.00\""
            ),
        ]
    );
    s.ok(&f2, &["settle", "approve", &id]);
    s.ok(&f2, &["settle", "post", &id]);
    // The programme's posted gauge is the run's total: the pool.
    let scraped = scrape(&metrics);
    assert!(
        scraped.contains("suanli_programme_posted_fen{programme=\"pooled-2025\"} 100000\n"),
        "{scraped}"
    );
    // June: the pool is spent; new usage earns nothing and the balance shows it.
    let june = s.file(
        "june.csv",
        &format!(
            "{HEADER}dc-a,j1,e1,gpu,2025-06-01T00:00:00+08:00,2025-06-02T00:00:00+08:00,1,100.00\n"
        ),
    );
    s.ok(&dc_a, &["usage", "import", "--file", &june]);
    let out = s.ok(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "pooled-2025",
            "--period",
            "2025-06",
        ],
    );
    assert!(
        out.contains("e1 dc-a compute/domestic base 100.00 ratio 0.50 → 0.00 cut by pool"),
        "{out}"
    );
    let balance = s.ok(&f1, &["balance", "--beneficiary", "e1", "--year", "2025"]);
    assert!(
        balance.contains(
            "pooled-2025: cap none, entitled 240.00 CNY, settled 240.00 CNY, pending 0.00 CNY"
        ),
        "{balance}"
    );
    let trial = s.ok(&f1, &["ledger", "trial-balance"]);
    // The programme's expense is exactly its pool: debit 1000.00, credit 0.00, balance 1000.00.
    let expense: Vec<&str> = trial
        .lines()
        .find(|l| l.starts_with("expense:pooled-2025 "))
        .expect("the programme's expense account")
        .split_whitespace()
        .collect();
    assert_eq!(
        expense,
        ["expense:pooled-2025", "1000.00", "0.00", "1000.00"],
        "{trial}"
    );
    assert!(trial.contains("balanced"), "{trial}");
}

#[test]
fn pool_exhausted_across_beneficiaries_on_sqlite() {
    pool_exhausted_across_beneficiaries(sqlite_db().unwrap());
}

#[test]
fn pool_exhausted_across_beneficiaries_on_postgres() {
    if let Some(db) = pg_db() {
        pool_exhausted_across_beneficiaries(db);
    }
}

/// A balance served from the server's cache follows a cancelled run: while May's run is open,
/// May keeps the registry version that run froze (ratio 0.50); once it is cancelled, May uses
/// the current version (0.40), though no accrual, run count or registry version changed.
#[test]
fn balance_follows_a_cancelled_run() {
    let s = Server::start(sqlite_db().unwrap());
    let admin = s.token(&["--role", "admin"]);
    let f1 = s.token(&["--role", "finance"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let v1 = s.file("v1.toml", POOLED_REGISTRY);
    s.ok(&admin, &["registry", "import", "--file", &v1]);
    let may = s.file(
        "may.csv",
        &format!(
            "{HEADER}dc-a,m1,e1,gpu,2025-05-01T00:00:00+08:00,2025-05-02T00:00:00+08:00,1,100.00\n"
        ),
    );
    s.ok(&dc_a, &["usage", "import", "--file", &may]);
    let pending = |expected: &str| {
        let balance = s.ok(&f1, &["balance", "--beneficiary", "e1", "--year", "2025"]);
        assert!(
            balance.contains(&format!("settled 0.00 CNY, pending {expected} CNY")),
            "pending {expected}: {balance}"
        );
    };
    pending("50.00");
    let id = run_id(&s.ok(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "pooled-2025",
            "--period",
            "2025-05",
        ],
    ));
    let v2 = s.file(
        "v2.toml",
        &POOLED_REGISTRY.replace(r#"ratio = "0.50""#, r#"ratio = "0.40""#),
    );
    s.ok(&admin, &["registry", "import", "--file", &v2]);
    pending("50.00");
    s.ok(&f1, &["settle", "cancel", &id]);
    pending("40.00");
    // The canceller is recorded as such, never as an approver without an approval time.
    let shown = s.ok(&f1, &["settle", "show", &id]);
    assert!(
        shown.contains("cancelled by finance") && !shown.contains("approved by"),
        "{shown}"
    );
}

fn claw_back_after_the_payee_was_paid_in_full(db: Db) {
    // Proves R9's receivable: a May record voided after May was posted and paid in full is
    // clawed back in June, and the payee then owes the programme (a negative outstanding
    // balance), which a payment cannot "settle" and the ledger still balances.
    let s = Server::start(db);
    let admin = s.token(&["--role", "admin"]);
    let f1 = s.token(&["--role", "finance"]);
    let f2 = s.token(&["--role", "finance"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let registry = s.file("pooled.toml", POOLED_REGISTRY);
    s.ok(&admin, &["registry", "import", "--file", &registry]);
    let t = "2025-05-01T00:00:00+08:00,2025-05-02T00:00:00+08:00";
    let may = s.file(
        "may.csv",
        &format!("{HEADER}dc-a,m1,e1,gpu,{t},1,600.00\ndc-a,m2,e1,gpu,{t},1,100.00\n"),
    );
    s.ok(&dc_a, &["usage", "import", "--file", &may]);
    let create = |period: &str| {
        run_id(&s.ok(
            &f1,
            &[
                "settle",
                "create",
                "--programme",
                "pooled-2025",
                "--period",
                period,
            ],
        ))
    };
    let may_run = create("2025-05");
    s.ok(&f2, &["settle", "approve", &may_run]);
    s.ok(&f2, &["settle", "post", &may_run]);
    let paid = s.ok(
        &f1,
        &[
            "ledger",
            "record-payment",
            "--payee",
            "e1",
            "--amount",
            "350.00",
            "--reference",
            "MAY-1",
        ],
    );
    assert!(paid.contains("still owed 0.00"), "{paid}");
    s.ok(
        &dc_a,
        &[
            "usage",
            "void",
            "--provider",
            "dc-a",
            "--record-id",
            "m1",
            "--reason",
            "billed in error",
        ],
    );
    // Before June's run: more was settled than is now entitled, shown as a negative pending.
    let balance = s.ok(&f1, &["balance", "--beneficiary", "e1", "--year", "2025"]);
    assert!(
        balance.contains(
            "pooled-2025: cap none, entitled 50.00 CNY, settled 350.00 CNY, pending -300.00 CNY (owed back)"
        ),
        "{balance}"
    );
    let june_run = create("2025-06");
    let shown = s.ok(&f1, &["settle", "show", &june_run]);
    assert!(
        shown.contains("-300.00"),
        "June claws back May's 300.00: {shown}"
    );
    s.ok(&f2, &["settle", "approve", &june_run]);
    s.ok(&f2, &["settle", "post", &june_run]);
    let owed = s.ok(&f1, &["balance", "--payee", "e1"]);
    assert!(
        owed.contains(
            "pooled-2025: settled 50.00 CNY, paid out 350.00 CNY, outstanding -300.00 CNY"
        ),
        "the payee owes the claw-back: {owed}"
    );
    // Of the 350.00 paid, the 50.00 still settled is paid out; the other 300.00 is the payee's
    // to give back, attributed to no line.
    let balance = s.ok(&f1, &["balance", "--beneficiary", "e1", "--year", "2025"]);
    assert!(
        balance.contains("pending 0.00 CNY")
            && balance.contains(
                "paid out 50.00 CNY: to e1 itself 50.00 CNY, to providers on its behalf 0.00 CNY (to e1 itself 50.00 of 50.00 CNY settled)"
            ),
        "{balance}"
    );
    let err = s.fails(
        &f1,
        &[
            "ledger",
            "record-payment",
            "--payee",
            "e1",
            "--amount",
            "1.00",
            "--reference",
            "JUN-1",
        ],
    );
    assert!(err.contains("nothing is owed"), "{err}");
    let trial = s.ok(&f1, &["ledger", "trial-balance"]);
    let payable = trial
        .lines()
        .find(|l| l.starts_with("payable:pooled-2025:e1 "))
        .expect("the payee's payable");
    // Debits (a claw-back 300.00, payments 350.00) exceed credits (posted 350.00) by 300.00.
    assert!(
        payable.contains("650.00") && payable.contains("350.00"),
        "{payable}"
    );
    assert!(trial.contains("balanced"), "{trial}");
    assert!(
        s.ok(&f1, &["settle", "rederive", &june_run])
            .contains("every line matches")
    );
}

#[test]
fn claw_back_after_the_payee_was_paid_in_full_on_sqlite() {
    claw_back_after_the_payee_was_paid_in_full(sqlite_db().unwrap());
}

#[test]
fn claw_back_after_the_payee_was_paid_in_full_on_postgres() {
    if let Some(db) = pg_db() {
        claw_back_after_the_payee_was_paid_in_full(db);
    }
}

/// Beneficiaries of the large run: enough lines that a run's reply passes the 64 KiB message
/// limit its server is started with (about 70 bytes a line).
const LARGE_RUN_BENEFICIARIES: u64 = 1_500;

/// A run whose lines do not fit in one message under the server's limit works through every CLI
/// settlement command: create, cancel, show, export, approve and post print or write every
/// line, in order, with exact amounts and totals (the lines come page by page).
fn a_run_larger_than_a_message(db: Db) {
    let s = Server::start_with_env(db, &[], &[("SUANLI_LIMITS_MESSAGE_BYTES_MAX", "65536")]);
    let admin = s.token(&["--role", "admin"]);
    let f1 = s.token(&["--role", "finance"]);
    let f2 = s.token(&["--role", "finance"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let ids: Vec<String> = (0..LARGE_RUN_BENEFICIARIES)
        .map(|i| format!("ent-{i:05}"))
        .collect();
    let registry = wide_registry("wide-2025", "beneficiary_cap = \"300.00\"\n", &ids);
    let mut usage = String::from(HEADER);
    // Per beneficiary, in line order (beneficiary id order): base, subsidy, cut.
    let mut expected: Vec<(String, i64, i64, bool)> = Vec::new();
    let mut rng = support::Rng(0x5eed_1a26e);
    for (i, id) in (0..).zip(ids) {
        // 0.01 to 1,000.00 CNY: half of it rounds half up, and the cap of 300.00 cuts some.
        let base = 1 + rng.below(100_000) as i64;
        usage.push_str(&may_record(i, &id, base));
        let demand = (base + 1) / 2;
        expected.push((id, base, demand.min(30_000), demand > 30_000));
    }
    let total: i64 = expected.iter().map(|e| e.2).sum();
    let fen = |f: i64| format!("{}.{:02}", f / 100, f % 100);
    let registry = s.file("wide.toml", &registry);
    s.ok(&admin, &["registry", "import", "--file", &registry]);
    let usage = s.file("wide.csv", &usage);
    s.ok(
        &dc_a,
        &["usage", "import", "--file", &usage, "--batch-size", "200"],
    );
    let printed_lines = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with("  ent-"))
            .map(str::to_owned)
            .collect()
    };
    let expected_lines: Vec<String> = expected
        .iter()
        .map(|(id, base, amount, cut)| {
            format!(
                "  {id} dc-a compute/domestic base {} ratio 0.50 → {}{}",
                fen(*base),
                fen(*amount),
                if *cut { " cut by beneficiary_cap" } else { "" }
            )
        })
        .collect();
    let header = |id: &str, status: &str| {
        format!(
            "run {id} wide-2025 2025-05 {status}: {LARGE_RUN_BENEFICIARIES} line(s), 0 adjustment(s), total {} CNY;",
            fen(total)
        )
    };
    let create = [
        "settle",
        "create",
        "--programme",
        "wide-2025",
        "--period",
        "2025-05",
    ];

    // A first run is cancelled: its reply lists every line too.
    let out = s.ok(&f1, &create);
    let cancelled = run_id(&out);
    assert!(out.starts_with(&header(&cancelled, "open")), "{out}");
    assert_eq!(printed_lines(&out), expected_lines, "create");
    let out = s.ok(&f1, &["settle", "cancel", &cancelled]);
    assert!(out.starts_with(&header(&cancelled, "cancelled")), "{out}");
    assert_eq!(printed_lines(&out), expected_lines, "cancel");

    let out = s.ok(&f1, &create);
    let id = run_id(&out);
    assert!(out.starts_with(&header(&id, "open")), "{out}");
    assert_eq!(printed_lines(&out), expected_lines, "create");
    let out = s.ok(&f1, &["settle", "show", &id]);
    assert!(out.starts_with(&header(&id, "open")), "{out}");
    assert_eq!(printed_lines(&out), expected_lines, "show");

    // The export holds every line with its reason, and its subsidies add up to the total.
    let export = s.db.dir.join("wide-run.csv");
    let out = s.ok(
        &f1,
        &["settle", "export", &id, "--out", export.to_str().unwrap()],
    );
    assert!(
        out.contains(&format!(
            "run {id}: {LARGE_RUN_BENEFICIARIES} line(s) written"
        )),
        "{out}"
    );
    assert!(
        !s.db.dir.join(".wide-run.csv.partial").exists(),
        "the export is renamed into place once whole"
    );
    let csv = std::fs::read_to_string(&export).unwrap();
    let rows = rows_of(&csv, "wide-2025");
    let expected_rows: Vec<String> = expected
        .iter()
        .map(|(ent, base, amount, cut)| {
            let a = fen(*amount);
            let demand = fen((base + 1) / 2);
            if *cut {
                format!(
                    "wide-2025,2025-05,{ent},dc-a,compute,domestic,,{},0.50,{a},beneficiary_cap,{id},,{a},0.00,{a},cut by the beneficiary cap of 300.00",
                    fen(*base)
                )
            } else {
                assert_eq!(a, demand);
                format!(
                    "wide-2025,2025-05,{ent},dc-a,compute,domestic,,{},0.50,{a},,{id},,{a},0.00,{a},",
                    fen(*base)
                )
            }
        })
        .collect();
    assert_eq!(rows, expected_rows, "export");

    // Approve and post by another finance user: both replies list every line.
    let out = s.ok(&f2, &["settle", "approve", &id]);
    assert!(out.starts_with(&header(&id, "approved")), "{out}");
    assert_eq!(printed_lines(&out), expected_lines, "approve");
    let out = s.ok(&f2, &["settle", "post", &id]);
    assert!(out.starts_with(&header(&id, "posted")), "{out}");
    assert_eq!(printed_lines(&out), expected_lines, "post");
    // The list of runs says the same of both runs.
    let out = s.ok(&f1, &["settle", "list", "--programme", "wide-2025"]);
    assert!(out.contains(&header(&cancelled, "cancelled")), "{out}");
    assert!(out.contains(&header(&id, "posted")), "{out}");
}

#[test]
fn a_run_larger_than_a_message_on_sqlite() {
    a_run_larger_than_a_message(sqlite_db().unwrap());
}

#[test]
fn a_run_larger_than_a_message_on_postgres() {
    if let Some(db) = pg_db() {
        a_run_larger_than_a_message(db);
    }
}

/// Beneficiaries of the large ledger, with long ids: enough that its run's journal (about 60
/// bytes an entry) and its trial balance (about 75 bytes an account) each pass the 64 KiB
/// message limit its server is started with, and the journal spans several pages of the store.
const LARGE_LEDGER_BENEFICIARIES: u64 = 2_500;

/// A month whose journal and trial balance do not fit in one message under the server's limit:
/// `ledger export` writes every entry of every journal, in order, and `ledger trial-balance`
/// prints every account, with exact amounts and totals (both come page by page).
fn a_ledger_larger_than_a_message(db: Db) {
    let s = Server::start_with_env(db, &[], &[("SUANLI_LIMITS_MESSAGE_BYTES_MAX", "65536")]);
    let admin = s.token(&["--role", "admin"]);
    let f1 = s.token(&["--role", "finance"]);
    let f2 = s.token(&["--role", "finance"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let ids: Vec<String> = (0..LARGE_LEDGER_BENEFICIARIES)
        .map(|i| format!("enterprise-of-the-large-ledger-{i:05}"))
        .collect();
    let registry = wide_registry("ledger-2025", "", &ids);
    let mut usage = String::from(HEADER);
    // Per beneficiary, in id order: what the run credits its payable.
    let mut owed: Vec<(String, i64)> = Vec::new();
    let mut rng = support::Rng(0x1ed9_e125);
    for (i, id) in (0..).zip(ids) {
        let base = 1 + rng.below(100_000) as i64;
        usage.push_str(&may_record(i, &id, base));
        owed.push((id, (base + 1) / 2));
    }
    let total: i64 = owed.iter().map(|o| o.1).sum();
    let fen = |f: i64| {
        let sign = if f < 0 { "-" } else { "" };
        format!("{sign}{}.{:02}", f.abs() / 100, f.abs() % 100)
    };
    let registry = s.file("ledger.toml", &registry);
    s.ok(&admin, &["registry", "import", "--file", &registry]);
    let usage = s.file("ledger.csv", &usage);
    s.ok(
        &dc_a,
        &["usage", "import", "--file", &usage, "--batch-size", "500"],
    );
    let out = s.ok(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "ledger-2025",
            "--period",
            "2025-05",
        ],
    );
    let id = run_id(&out);
    s.ok(&f2, &["settle", "approve", &id]);
    s.ok(&f2, &["settle", "post", &id]);
    // Two payments: small journals after the large one.
    let paid = [
        (owed[7].0.clone(), 1i64),
        (owed[1_234].0.clone(), owed[1_234].1),
    ];
    for (n, (payee, amount)) in paid.iter().enumerate() {
        s.ok(
            &f1,
            &[
                "ledger",
                "record-payment",
                "--payee",
                payee,
                "--amount",
                &fen(*amount),
                "--reference",
                &format!("bank-{n}"),
            ],
        );
    }

    // The export: every entry, journal by journal, entry by entry (id, kind, account, debit,
    // credit; the other columns are the journal's, repeated).
    let mut expected: Vec<String> = vec![format!("run,expense:ledger-2025,{},0.00", fen(total))];
    for (payee, amount) in &owed {
        expected.push(format!(
            "run,payable:ledger-2025:{payee},0.00,{}",
            fen(*amount)
        ));
    }
    for (payee, amount) in &paid {
        expected.push(format!(
            "payment,payable:ledger-2025:{payee},{},0.00",
            fen(*amount)
        ));
        expected.push(format!(
            "payment,paid:ledger-2025:{payee},0.00,{}",
            fen(*amount)
        ));
    }
    let export = s.db.dir.join("ledger-export.csv");
    let out = s.ok(
        &f1,
        &["ledger", "export", "--out", export.to_str().unwrap()],
    );
    assert!(
        out.contains(&format!("3 journal(s), {} entries written", expected.len())),
        "{out}"
    );
    assert!(
        !s.db.dir.join(".ledger-export.csv.partial").exists(),
        "the export is renamed into place once whole"
    );
    let mut reader = csv::Reader::from_path(&export).unwrap();
    let mut journal_ids = Vec::new();
    let rows: Vec<String> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            journal_ids.push(r[0].parse::<u64>().unwrap());
            format!("{},{},{},{}", &r[1], &r[6], &r[7], &r[8])
        })
        .collect();
    assert_eq!(rows, expected, "export");
    assert!(journal_ids.is_sorted(), "journals in order");

    // The trial balance: every account once (in the store's order), and its totals.
    let mut accounts: Vec<String> = vec![format!(
        "expense:ledger-2025 {} 0.00 {}",
        fen(total),
        fen(total)
    )];
    for (payee, amount) in &owed {
        let debit = paid.iter().find(|p| p.0 == *payee).map_or(0, |p| p.1);
        accounts.push(format!(
            "payable:ledger-2025:{payee} {} {} {}",
            fen(debit),
            fen(*amount),
            fen(debit - amount)
        ));
    }
    for (payee, amount) in &paid {
        accounts.push(format!(
            "paid:ledger-2025:{payee} 0.00 {} {}",
            fen(*amount),
            fen(-amount)
        ));
    }
    accounts.sort();
    let paid_total: i64 = paid.iter().map(|p| p.1).sum();
    let out = s.ok(&f1, &["ledger", "trial-balance"]);
    let mut printed: Vec<String> = out
        .lines()
        .skip(1)
        .filter(|l| l.contains(':'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    printed.sort();
    assert_eq!(printed, accounts, "trial balance");
    let tail: Vec<&str> = out.lines().rev().take(2).collect();
    assert_eq!(
        tail[1].split_whitespace().collect::<Vec<_>>(),
        ["total", &fen(total + paid_total), &fen(total + paid_total)],
        "{out}"
    );
    assert_eq!(tail[0], "balanced");

    // Read by a pipe that closes early, it ends quietly.
    let mut child = support::bin()
        .args(["ledger", "trial-balance"])
        .env("SUANLI_SERVER", s.addr())
        .env("SUANLI_TOKEN", &f1)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(o.status.code(), Some(0), "{stderr}");
}

#[test]
fn a_ledger_larger_than_a_message_on_sqlite() {
    a_ledger_larger_than_a_message(sqlite_db().unwrap());
}

#[test]
fn a_ledger_larger_than_a_message_on_postgres() {
    if let Some(db) = pg_db() {
        a_ledger_larger_than_a_message(db);
    }
}
