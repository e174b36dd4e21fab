//! The totals kept beside the ledger and the runs, on both backends: a database kept before
//! they existed gets them when the store opens — the running totals per account from the
//! entries (in byte order of the account names), each run's lines counted and summed — and
//! journals added afterwards keep them.

use suanli_store::ledger::{self as rows, EntryRow, RunTotals};

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
    (2, 1, 'paid:city:杭宇智能', 0, 250);
INSERT INTO settlement_runs (run_id, programme, period, status, registry_version, content_hash, posted_basis, created_by, created_at) VALUES
    (1, 'city', '2025-02', 'posted', 1, 'h', '', 'finance', '2025-02-01T00:00:00.000Z'),
    (2, 'city', '2025-03', 'cancelled', 1, 'h', '1', 'finance', '2025-03-01T00:00:00.000Z');
INSERT INTO run_lines (run_id, seq, original_period, beneficiary, provider, category, chip_origin, registered_model, base_fen, ratio, entitlement_fen, posted_before_fen, amount_fen, cut_by, payee) VALUES
    (1, 0, '2025-02', '杭宇智能', 'dc', 'compute', 'domestic', '', 2000, '0.3', 600, 0, 600, '', '杭宇智能'),
    (1, 1, '2025-02', 'Beta', 'dc', 'compute', 'domestic', '', 1000, '0.3', 300, 0, 300, '', 'Beta'),
    (1, 2, '2025-01', 'alpha', 'dc', 'compute', 'domestic', '', 500, '0.2', 100, 0, 100, '', 'alpha');";

/// The running totals agree with the entries, account by account and in all, and add up to
/// (accounts, entries, Σ debits, Σ credits).
fn running_totals_are(
    tx: &mut dyn suanli_store::sql::Sql,
    want: (i64, i64, i64, i64),
) -> Result<(), suanli_store::StoreError> {
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
        want
    );
    Ok(())
}

fn check(url: &str) {
    let mut store = suanli_store::open(url).expect("the totals migrations run");
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
            let runs = rows::run_totals(tx)?;
            assert_eq!(
                (runs.get(&1).copied(), runs.get(&2).copied(), runs.len()),
                (
                    Some(RunTotals {
                        lines: 3,
                        total_fen: 1000,
                        adjustment_lines: 1
                    }),
                    Some(RunTotals::default()),
                    2
                ),
                "each run counted and summed from its lines; a run without lines too"
            );
            running_totals_are(tx, (5, 6, 1250, 1250))?;
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
            running_totals_are(tx, (6, 9, 1350, 1350))?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn an_earlier_database_gets_its_totals_on_sqlite() {
    let db = suanli_testkit::sqlite("totals_migration");
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
fn an_earlier_database_gets_its_totals_on_postgres() {
    let Some(db) = suanli_testkit::postgres("totals_migration") else {
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
