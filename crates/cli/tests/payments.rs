//! Payments above `ledger.payment_confirm_above_fen` end to end through the real binary and
//! gRPC on both backends: one finance user records a payment (it awaits confirmation, nothing
//! is booked), the recorder cannot confirm it — not with a second token either — another
//! finance user confirms it and the payable moves; a payment at or below the amount is booked
//! at once; one awaiting confirmation can be withdrawn; the roles are the ledger's; and
//! `audit verify` accounts for the confirmed payment.

mod support;

use suanli_testkit::TestDb as Db;
use support::bin;
use support::cli::{Server, pg_db, run_id, sqlite_db};

/// Payments of more than 100,000.00 CNY need a second person.
const ABOVE_FEN: &str = "10000000";

/// The payment id in "recorded payment N of …".
fn payment_id(stdout: &str) -> String {
    let rest = stdout
        .split("payment ")
        .nth(1)
        .unwrap_or_else(|| panic!("a payment id in {stdout}"));
    rest.split_whitespace()
        .next()
        .expect("payment id")
        .to_owned()
}

/// The token printed by `suanli token create`.
fn token_of(printed: &str) -> String {
    printed
        .split_whitespace()
        .find(|w| w.starts_with("sl_"))
        .expect("a token is printed")
        .to_owned()
}

fn two_persons_book_large_payments(db: Db) {
    let s = Server {
        process: support::Server::start_with_env(
            &db.url,
            &[],
            &[("SUANLI_LEDGER_PAYMENT_CONFIRM_ABOVE_FEN", ABOVE_FEN)],
        ),
        db,
    };
    let admin = s.token(&["--role", "admin"]);
    let (f1_login, f1) = s.person(&["--role", "finance"]);
    // The recorder's second token: four eyes is between persons, not tokens.
    let f1_other = token_of(&support::token_create(&s.db.url, &["--user", &f1_login]));
    let (f2_login, f2) = s.person(&["--role", "finance"]);
    let auditor = s.token(&["--role", "auditor"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    s.ok(
        &admin,
        &[
            "registry",
            "import",
            "--file",
            "examples/worked/registry.toml",
        ],
    );
    let usage = std::fs::read_to_string(support::root().join("examples/worked/usage.csv"))
        .expect("the worked example's usage");
    let mut lines = usage.lines();
    let mut csv = format!("{}\n", lines.next().expect("a header"));
    for l in lines.filter(|l| l.starts_with("dc-a,")) {
        csv.push_str(l);
        csv.push('\n');
    }
    let file = s.file("dc-a.csv", &csv);
    s.ok(&dc_a, &["usage", "import", "--file", &file]);
    let created = s.ok(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "hz-municipal-2025",
            "--period",
            "2025-03",
        ],
    );
    let run = run_id(&created);
    s.ok(&f2, &["settle", "approve", &run]);
    s.ok(&f2, &["settle", "post", &run]);
    let position = |want: &str| {
        let owed = s.ok(&auditor, &["balance", "--payee", "dc-a"]);
        assert!(owed.contains(want), "{want} in {owed}");
    };
    position("settled 450000.00 CNY, paid out 0.00 CNY, outstanding 450000.00 CNY");

    // Above the amount: recorded by finance 1, awaiting confirmation, nothing booked.
    let pay = [
        "ledger",
        "record-payment",
        "--payee",
        "dc-a",
        "--amount",
        "200000.00",
        "--reference",
        "BANK-1",
    ];
    let recorded = s.ok(&f1, &pay);
    assert!(
        recorded.contains("recorded payment") && recorded.contains("awaits confirmation"),
        "{recorded}"
    );
    let id = payment_id(&recorded);
    assert!(
        recorded.contains(&format!("suanli ledger confirm-payment {id}")),
        "{recorded}"
    );
    position("paid out 0.00 CNY, outstanding 450000.00 CNY");
    let again = s.ok(&f1, &pay);
    assert!(
        again.contains(&format!("already recorded: payment {id} ")),
        "a retry is the same payment: {again}"
    );
    let awaiting = s.ok(&auditor, &["ledger", "payments", "--awaiting"]);
    assert!(
        awaiting.contains(&format!(
            "payment {id} awaiting: 200000.00 CNY to dc-a by hz-municipal-2025, reference BANK-1"
        )),
        "{awaiting}"
    );
    assert!(
        awaiting.contains(&format!(
            "recorded by {} ({f1_login})",
            f1_login.replace("finance", "finance ")
        )),
        "the recorder as name (login): {awaiting}"
    );

    // Finance 1 cannot confirm it, with either token; a provider may neither confirm nor list.
    for token in [&f1, &f1_other] {
        let err = s.fails(token, &["ledger", "confirm-payment", &id]);
        assert!(
            err.contains("four eyes") && err.contains(&f1_login),
            "{err}"
        );
    }
    let err = s.fails(&dc_a, &["ledger", "confirm-payment", &id]);
    assert!(err.contains("needs one of the roles finance"), "{err}");
    let err = s.fails(&dc_a, &["ledger", "payments"]);
    assert!(err.contains("needs one of the roles"), "{err}");
    let err = s.fails(&auditor, &["ledger", "withdraw-payment", &id]);
    assert!(err.contains("needs one of the roles finance"), "{err}");
    position("paid out 0.00 CNY, outstanding 450000.00 CNY");

    // Finance 2 confirms: the journal is written and the payable moves.
    let confirmed = s.ok(&f2, &["ledger", "confirm-payment", &id]);
    assert!(
        confirmed.contains(&format!("payment {id} confirmed"))
            && confirmed.contains(&format!("({f2_login}) at"))
            && confirmed.contains("still owed 250000.00 CNY"),
        "{confirmed}"
    );
    position("paid out 200000.00 CNY, outstanding 250000.00 CNY");
    let twice = s.ok(&f2, &["ledger", "confirm-payment", &id]);
    assert!(twice.contains("unchanged"), "{twice}");
    position("paid out 200000.00 CNY, outstanding 250000.00 CNY");

    // At the amount: booked at once, as without the setting.
    let small = s.ok(
        &f1,
        &[
            "ledger",
            "record-payment",
            "--payee",
            "dc-a",
            "--amount",
            "100000.00",
            "--reference",
            "BANK-2",
        ],
    );
    assert!(
        small.contains("recorded payment of 100000.00 CNY to dc-a (journal")
            && small.contains("still owed 150000.00 CNY"),
        "{small}"
    );
    position("paid out 300000.00 CNY, outstanding 150000.00 CNY");

    // Withdrawn before confirmation: nothing booked, listed as withdrawn.
    let third = s.ok(
        &f1,
        &[
            "ledger",
            "record-payment",
            "--payee",
            "dc-a",
            "--amount",
            "150000.00",
            "--reference",
            "BANK-3",
        ],
    );
    let third_id = payment_id(&third);
    let withdrawn = s.ok(&f2, &["ledger", "withdraw-payment", &third_id]);
    assert!(
        withdrawn.contains(&format!("payment {third_id} withdrawn")),
        "{withdrawn}"
    );
    let err = s.fails(&f2, &["ledger", "confirm-payment", &third_id]);
    assert!(err.contains("withdrawn"), "{err}");
    position("paid out 300000.00 CNY, outstanding 150000.00 CNY");
    let all = s.ok(&auditor, &["ledger", "payments"]);
    assert!(
        all.contains(&format!("payment {id} confirmed"))
            && all.contains(&format!("payment {third_id} withdrawn")),
        "{all}"
    );
    assert!(
        s.ok(&auditor, &["ledger", "payments", "--awaiting"])
            .contains("no payments await confirmation")
    );

    let verify = bin()
        .args(["audit", "verify", "--database-url", &s.db.url])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        out.contains("2 payment(s), 1 of them confirmed by a second person"),
        "{out}"
    );
}

// On SQLite.
#[test]
fn two_persons_book_large_payments_on_sqlite() {
    two_persons_book_large_payments(sqlite_db().expect("a SQLite database"));
}

// On PostgreSQL.
#[test]
fn two_persons_book_large_payments_on_postgres() {
    if let Some(db) = pg_db() {
        two_persons_book_large_payments(db);
    }
}
