//! Opening balances end to end through the real binary on both backends: what a programme paid
//! before it used Suanli is imported by one finance user and confirmed by another, posted as a
//! journal of kind `opening`, and counted by every later run exactly as `simulate --prior`
//! counts prior payments (the worked example of docs/rules.md, to the fen); importing the same
//! file twice changes nothing, a file after a posted run is refused, and `audit verify` covers
//! the opening journal.

mod support;

use suanli_testkit::TestDb as Db;
use support::cli::{HEADER, POOLED_REGISTRY, Server, pg_db, run_id, sqlite_db};
use support::{bin, root};

/// The import id printed by `ledger import-opening` ("opening import N …").
fn import_id(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("opening import "))
        .unwrap_or_else(|| panic!("an import line: {stdout}"));
    line.split_whitespace()
        .nth(2)
        .expect("import id")
        .to_owned()
}

/// The first eleven columns (simulate's statement columns) of one programme's rows.
fn statement_rows(csv: &str, programme: &str) -> Vec<String> {
    csv.lines()
        .skip(1)
        .filter(|l| l.starts_with(&format!("{programme},")))
        .map(|l| l.split(',').take(11).collect::<Vec<_>>().join(","))
        .collect()
}

/// Runs one SQL statement against the test database, as an intruder with database access would.
fn tamper(db: &Db, sql: &str) {
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).unwrap();
        assert_eq!(conn.execute(sql, []).unwrap(), 1, "{sql} changes one row");
    } else {
        let mut client = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
        assert_eq!(
            client.execute(sql, &[]).unwrap(),
            1,
            "{sql} changes one row"
        );
    }
}

fn audit_verify(db: &Db) -> std::process::Output {
    bin()
        .args(["audit", "verify", "--database-url", &db.url])
        .output()
        .unwrap()
}

fn worked_example_with_opening_balances(db: Db) {
    let s = Server::start(db);
    let admin = s.token(&["--role", "admin"]);
    // The importer holds two tokens: four eyes is between persons, not tokens.
    let o = bin()
        .args([
            "user",
            "create",
            "--login",
            "importer",
            "--name",
            "导入人",
            "--role",
            "finance",
        ])
        .args(["--database-url", &s.db.url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f1 = support::token_create(&s.db.url, &["--user", "importer"]);
    let f1_other = support::token_create(&s.db.url, &["--user", "importer"]);
    let f2 = s.token(&["--role", "finance"]);
    let auditor = s.token(&["--role", "auditor"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let dc_b = s.token(&["--role", "provider", "--provider", "dc-b"]);
    s.ok(
        &admin,
        &[
            "registry",
            "import",
            "--file",
            "examples/worked/registry.toml",
        ],
    );

    // ent-d's 7,900,000.00 paid before Suanli, the worked example's prior payments file.
    let prior = root().join("examples/worked/prior.csv");
    let prior = prior.to_str().unwrap();
    let import = [
        "ledger",
        "import-opening",
        "--programme",
        "hz-municipal-2025",
        "--file",
        prior,
    ];
    let out = s.ok(&f1, &import);
    let id = import_id(&out);
    assert!(
        out.contains("hz-municipal-2025 pending: 1 row(s), total 7900000.00 CNY"),
        "{out}"
    );
    assert!(
        out.contains("ent-d dc-a paid to dc-a: 7900000.00 CNY"),
        "{out}"
    );
    let again = s.ok(&f1, &import);
    assert!(
        again.contains(&format!(
            "unchanged: the same opening balances are already import {id} (pending)"
        )),
        "importing the same file twice changes nothing: {again}"
    );
    let err = s.fails(&f1, &["ledger", "confirm-opening", &id]);
    assert!(
        err.contains("four eyes"),
        "the importer cannot confirm: {err}"
    );
    let err = s.fails(&f1_other, &["ledger", "confirm-opening", &id]);
    assert!(
        err.contains("four eyes") && err.contains("导入人 (importer)"),
        "nor with another token of the same user: {err}"
    );
    let err = s.fails(&auditor, &["ledger", "confirm-opening", &id]);
    assert!(
        err.contains("permission"),
        "an auditor cannot confirm: {err}"
    );
    let confirmed = s.ok(&f2, &["ledger", "confirm-opening", &id]);
    assert!(confirmed.contains("confirmed"), "{confirmed}");
    assert!(
        confirmed.contains("+08:00"),
        "times in Asia/Shanghai: {confirmed}"
    );
    assert!(
        s.ok(&f2, &["ledger", "confirm-opening", &id])
            .contains("unchanged"),
        "confirming twice changes nothing"
    );
    // Before any usage, the balance already counts what was settled and paid out before.
    let balance = s.ok(
        &auditor,
        &["balance", "--beneficiary", "ent-d", "--year", "2025"],
    );
    assert!(
        balance.contains("hz-municipal-2025: cap 8000000.00 CNY, entitled 7900000.00 CNY, settled 7900000.00 CNY, pending 0.00 CNY, remaining 100000.00 CNY"),
        "{balance}"
    );

    // March: the worked example's usage. The run equals `simulate --prior` to the fen.
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
    let sim_out = s.db.dir.join("sim.csv");
    let o = bin()
        .args(["simulate", "--registry", "examples/worked/registry.toml"])
        .args(["--usage", "examples/worked/usage.csv", "--prior", prior])
        .args(["--period", "2025-03", "--out", sim_out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let simulated = std::fs::read_to_string(&sim_out).unwrap();
    let run = run_id(&s.ok(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "hz-municipal-2025",
            "--period",
            "2025-03",
        ],
    ));
    let export = s.db.dir.join("march.csv");
    s.ok(
        &auditor,
        &["settle", "export", &run, "--out", export.to_str().unwrap()],
    );
    let exported = std::fs::read_to_string(&export).unwrap();
    let rows = statement_rows(&exported, "hz-municipal-2025");
    assert_eq!(
        rows,
        statement_rows(&simulated, "hz-municipal-2025"),
        "run = simulate --prior"
    );
    assert!(
        rows.contains(
            &"hz-municipal-2025,2025-03,ent-d,dc-a,compute,domestic,,1000000.00,0.30,100000.00,beneficiary_cap"
                .to_owned()
        ),
        "the opening balance leaves 100,000.00 of ent-d's cap: {rows:?}"
    );
    assert!(
        exported.contains(&format!(
            ",{run},,100000.00,0.00,100000.00,\"cut by the beneficiary cap of 8,000,000.00\"\n"
        )),
        "the export says which cap cut the line: {exported}"
    );
    s.ok(&f2, &["settle", "approve", &run]);
    s.ok(&f2, &["settle", "post", &run]);
    assert!(
        s.ok(&auditor, &["settle", "rederive", &run])
            .contains("every line matches")
    );

    let balance = s.ok(
        &auditor,
        &["balance", "--beneficiary", "ent-d", "--year", "2025"],
    );
    assert!(
        balance.contains("hz-municipal-2025: cap 8000000.00 CNY, entitled 8000000.00 CNY, settled 8000000.00 CNY, pending 0.00 CNY, remaining 0.00 CNY"),
        "{balance}"
    );
    // dc-a was paid 7,900,000.00 before Suanli and is owed March's lines on ent-a and ent-d.
    let payee = s.ok(&auditor, &["balance", "--payee", "dc-a"]);
    assert!(
        payee.contains("hz-municipal-2025: settled 8150000.00 CNY, paid out 7900000.00 CNY, outstanding 250000.00 CNY"),
        "{payee}"
    );
    let trial = s.ok(&auditor, &["ledger", "trial-balance"]);
    assert!(trial.contains("balanced"), "{trial}");
    let paid: Vec<&str> = trial
        .lines()
        .find(|l| l.starts_with("paid:hz-municipal-2025:dc-a "))
        .expect("the opening journal credits dc-a's paid account")
        .split_whitespace()
        .collect();
    assert_eq!(
        paid,
        [
            "paid:hz-municipal-2025:dc-a",
            "0.00",
            "7900000.00",
            "-7900000.00"
        ],
        "{trial}"
    );
    let journal = s.db.dir.join("journal.csv");
    s.ok(
        &auditor,
        &["ledger", "export", "--out", journal.to_str().unwrap()],
    );
    let journal = std::fs::read_to_string(&journal).unwrap();
    assert!(
        journal.contains(&format!(",opening,opening:{id},")),
        "a journal of kind opening: {journal}"
    );

    // The same file again changes nothing; another file now contradicts a posted run.
    assert!(s.ok(&f1, &import).contains("unchanged"));
    let changed = s.file(
        "opening-2.csv",
        "programme,beneficiary,provider,amount\nhz-municipal-2025,ent-d,dc-a,7000000.00\n",
    );
    let err = s.fails(
        &f1,
        &[
            "ledger",
            "import-opening",
            "--programme",
            "hz-municipal-2025",
            "--file",
            &changed,
        ],
    );
    assert!(
        err.contains(&format!(
            "run {run} (hz-municipal-2025 2025-03) is already posted"
        )),
        "{err}"
    );

    // `audit verify` accounts for the opening journal, and finds an edit of its rows.
    let o = audit_verify(&s.db);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("1 opening balance import(s)"), "{out}");
    tamper(
        &s.db,
        "UPDATE opening_lines SET amount_fen = amount_fen - 100 WHERE beneficiary = 'ent-d'",
    );
    let o = audit_verify(&s.db);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "an edited opening row is found");
    assert!(
        err.contains(&format!("opening import {id}'s rows or its journal differ")),
        "{err}"
    );
}

#[test]
fn worked_example_with_opening_balances_on_sqlite() {
    worked_example_with_opening_balances(sqlite_db().unwrap());
}

#[test]
fn worked_example_with_opening_balances_on_postgres() {
    if let Some(db) = pg_db() {
        worked_example_with_opening_balances(db);
    }
}

fn opening_counts_against_the_pool(db: Db) {
    // A district pool of 1,000.00 of which 900.00 was paid before Suanli: May's 300.00 of
    // demand gets the 100.00 left. Confirming waits for the programme's open run to go, and a
    // month with nothing to settle is refused instead of leaving an empty open run.
    let s = Server::start(db);
    let admin = s.token(&["--role", "admin"]);
    let f1 = s.token(&["--role", "finance"]);
    let f2 = s.token(&["--role", "finance"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let registry = s.file("pooled.toml", POOLED_REGISTRY);
    s.ok(&admin, &["registry", "import", "--file", &registry]);

    let err = s.fails(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "pooled-2025",
            "--period",
            "2025-04",
        ],
    );
    assert!(
        err.contains("nothing to settle for pooled-2025 in 2025-04: no usage and no adjustments"),
        "{err}"
    );
    assert!(
        s.ok(&f1, &["settle", "list"])
            .contains("no settlement runs"),
        "a refused empty run leaves nothing behind"
    );

    let bad = s.file(
        "bad.csv",
        "programme,beneficiary,provider,amount\npooled-2025,e1,,900.00\npooled-2025,nobody,,1.00\n",
    );
    let err = s.fails(
        &f1,
        &[
            "ledger",
            "import-opening",
            "--programme",
            "pooled-2025",
            "--file",
            &bad,
        ],
    );
    assert!(
        err.contains("line 3: beneficiary: unknown beneficiary \"nobody\""),
        "{err}"
    );
    let other = s.file(
        "other.csv",
        "programme,beneficiary,provider,amount\nhz-municipal-2025,e1,,900.00\n",
    );
    let err = s.fails(
        &f1,
        &[
            "ledger",
            "import-opening",
            "--programme",
            "pooled-2025",
            "--file",
            &other,
        ],
    );
    assert!(err.contains("line 2: programme"), "{err}");

    // Beneficiaries are paid here, so the provider may be unknown (empty).
    let opening = s.file(
        "opening.csv",
        "programme,beneficiary,provider,amount\npooled-2025,e1,,500.00\npooled-2025,e1,,400.00\n",
    );
    let id = import_id(&s.ok(
        &f1,
        &[
            "ledger",
            "import-opening",
            "--programme",
            "pooled-2025",
            "--file",
            &opening,
        ],
    ));
    let t = "2025-05-01T00:00:00+08:00,2025-05-02T00:00:00+08:00";
    let may = s.file("may.csv", &format!("{HEADER}dc-a,m1,e2,gpu,{t},1,600.00\n"));
    s.ok(&dc_a, &["usage", "import", "--file", &may]);
    let open = run_id(&s.ok(
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
    let err = s.fails(&f2, &["ledger", "confirm-opening", &id]);
    assert!(
        err.contains(&format!("run {open} (pooled-2025 2025-05) is open")),
        "{err}"
    );
    s.ok(&f1, &["settle", "cancel", &open]);
    let shown = s.ok(&f1, &["settle", "show", &open]);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("  cancelled by finance ")
                && l.contains("(finance")
                && l.ends_with("+08:00")),
        "run times in Asia/Shanghai: {shown}"
    );
    s.ok(&f2, &["ledger", "confirm-opening", &id]);
    let out = s.ok(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "pooled-2025",
            "--period",
            "2025-05",
        ],
    );
    assert!(
        out.contains("e2 dc-a compute/domestic base 600.00 ratio 0.50 → 100.00 cut by pool"),
        "the pool counts the 900.00 paid before: {out}"
    );
    let balance = s.ok(&f1, &["balance", "--beneficiary", "e1", "--year", "2025"]);
    assert!(
        balance.contains(
            "pooled-2025: cap none, entitled 900.00 CNY, settled 900.00 CNY, pending 0.00 CNY"
        ),
        "{balance}"
    );
    let payee = s.ok(&f1, &["balance", "--payee", "e1"]);
    assert!(
        payee
            .contains("pooled-2025: settled 900.00 CNY, paid out 900.00 CNY, outstanding 0.00 CNY"),
        "{payee}"
    );
}

#[test]
fn opening_counts_against_the_pool_on_sqlite() {
    opening_counts_against_the_pool(sqlite_db().unwrap());
}

#[test]
fn opening_counts_against_the_pool_on_postgres() {
    if let Some(db) = pg_db() {
        opening_counts_against_the_pool(db);
    }
}
