//! The running totals per account on both backends: a ledger kept before they existed gets
//! them from its entries when the store opens, in byte order of the account names, and journals
//! appended afterwards add to them.

use suanli_store::ledger::{self as rows, EntryRow};

/// The migrations of `backend` numbered below `before`, in order, read from the repository.
fn migrations_before(backend: &str, before: u32) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(backend);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the migrations folder")
        .map(|e| e.expect("a migration").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.get(..4))
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n < before)
        })
        .collect();
    files.sort();
    assert_eq!(
        files.len() as u32,
        before - 1,
        "migrations 1 to {}",
        before - 1
    );
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("a migration reads"))
        .collect()
}

/// Two journals as an earlier version stored them.
const OLD_LEDGER: &str =
    "INSERT INTO journals (journal_id, kind, reference, memo, created_by, created_at) VALUES
    (1, 'run', 'run:1', 'run 1', 'finance', '2025-02-01T00:00:00.000Z'),
    (2, 'payment', 'bank-1', 'paid', 'finance', '2025-02-02T00:00:00.000Z');
INSERT INTO journal_entries (journal_id, seq, account, debit_fen, credit_fen) VALUES
    (1, 0, 'expense:city', 1000, 0),
    (1, 1, 'payable:city:杭宇智能', 0, 600),
    (1, 2, 'payable:city:Beta', 0, 300),
    (1, 3, 'payable:city:alpha', 0, 100),
    (2, 0, 'payable:city:杭宇智能', 250, 0),
    (2, 1, 'paid:city:杭宇智能', 0, 250);";

fn check(url: &str) {
    let mut store = suanli_store::open(url).expect("the account totals migration runs");
    store
        .transaction(&mut |tx| {
            let t = |a: &str, d: i64, c: i64| (a.to_owned(), d, c);
            assert_eq!(
                rows::account_totals_window(tx, "", 0, 100)?,
                [
                    t("expense:city", 1000, 0),
                    t("paid:city:杭宇智能", 0, 250),
                    t("payable:city:Beta", 0, 300),
                    t("payable:city:alpha", 0, 100),
                    t("payable:city:杭宇智能", 250, 600),
                ],
                "filled from the entries, in byte order"
            );
            assert_eq!(rows::account_totals_drift(tx)?, Vec::new());
            let totals = rows::running_totals(tx)?;
            assert_eq!(rows::trial_balance_totals(tx, i64::MAX)?, totals);
            assert_eq!(
                (
                    totals.accounts,
                    totals.entries,
                    totals.debit_fen,
                    totals.credit_fen
                ),
                (5, 6, 1250, 1250)
            );
            assert_eq!(rows::accounts_count(tx, "payable:city:")?, 3);
            let entry = |account: &str, debit_fen: i64, credit_fen: i64| EntryRow {
                account: account.to_owned(),
                debit_fen,
                credit_fen,
            };
            rows::insert_journal(
                tx,
                "payment",
                "bank-2",
                "paid",
                "finance",
                "2025-02-03T00:00:00.000Z",
                &[
                    entry("payable:city:alpha", 40, 0),
                    entry("payable:city:alpha", 60, 0),
                    entry("paid:city:alpha", 0, 100),
                ],
            )?;
            assert_eq!(
                rows::account_totals_window(tx, "payable:city:a", 0, 10)?,
                [t("payable:city:alpha", 100, 100)]
            );
            assert_eq!(rows::account_totals_drift(tx)?, Vec::new());
            let totals = rows::running_totals(tx)?;
            assert_eq!(rows::trial_balance_totals(tx, i64::MAX)?, totals);
            assert_eq!(
                (
                    totals.accounts,
                    totals.entries,
                    totals.debit_fen,
                    totals.credit_fen
                ),
                (6, 9, 1350, 1350)
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn an_earlier_ledger_gets_running_totals_on_sqlite() {
    let db = suanli_testkit::sqlite("account_totals_migration");
    let path = db.url.strip_prefix("sqlite://").unwrap();
    {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            .unwrap();
        for (i, sql) in migrations_before("sqlite", 14).iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, '2025-01-01T00:00:00Z')",
                [i as i64 + 1],
            )
            .unwrap();
        }
        conn.execute_batch(OLD_LEDGER).unwrap();
    }
    check(&db.url);
}

#[test]
fn an_earlier_ledger_gets_running_totals_on_postgres() {
    let Some(db) = suanli_testkit::postgres("account_totals_migration") else {
        return;
    };
    {
        let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
        c.batch_execute(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .unwrap();
        for (i, sql) in migrations_before("postgres", 17).iter().enumerate() {
            c.batch_execute(sql).unwrap();
            c.execute(
                "INSERT INTO schema_migrations VALUES ($1, '2025-01-01T00:00:00Z')",
                &[&(i as i64 + 1)],
            )
            .unwrap();
        }
        c.batch_execute(OLD_LEDGER).unwrap();
        // The journals were given their ids: the next one takes the id after them.
        c.batch_execute("SELECT setval(pg_get_serial_sequence('journals', 'journal_id'), 2)")
            .unwrap();
    }
    check(&db.url);
}
