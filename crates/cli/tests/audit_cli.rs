//! The audit log end to end through the real binary on both backends: real actions append a
//! hash chain that `suanli audit verify` accepts; an edited or deleted row in the database is
//! detected and named by its seq; `suanli audit export` writes CSV and JSON. Revoked and
//! expired tokens are refused with UNAUTHENTICATED and change nothing.

mod support;

use std::process::Output;
use support::bin;
use support::cli::{Db, HEADER, POOLED_REGISTRY, Server, pg_db, run_id, sqlite_db};

/// Runs `suanli audit …` on the database directly (no server).
fn audit(db: &Db, args: &[&str]) -> Output {
    bin()
        .arg("audit")
        .args(args)
        .args(["--database-url", &db.url])
        .output()
        .unwrap()
}

fn verify_fails_at(db: &Db, seq: i64) {
    let o = audit(db, &["verify"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "verify fails on tamper: {err}");
    assert!(
        err.contains(&format!("broken at seq {seq}:")),
        "verify names seq {seq}: {err}"
    );
}

fn verify_passes(db: &Db) -> String {
    let o = audit(db, &["verify"]);
    assert!(
        o.status.success(),
        "verify passes: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
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

fn chain_detects_edits_and_deletions(db: Db) {
    let s = Server::start(db);
    let admin = s.token(&["--role", "admin"]);
    let f1 = s.token(&["--role", "finance"]);
    let f2 = s.token(&["--role", "finance"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let registry = s.file("registry.toml", POOLED_REGISTRY);
    s.ok(&admin, &["registry", "import", "--file", &registry]);
    let t = "2025-05-01T00:00:00+08:00,2025-05-02T00:00:00+08:00";
    let may = s.file(
        "may.csv",
        &format!("{HEADER}dc-a,m1,e1,gpu,{t},1,600.00\ndc-a,m2,e1,gpu,{t},1,900.00\n"),
    );
    s.ok(&dc_a, &["usage", "import", "--file", &may]);
    s.ok(
        &dc_a,
        &[
            "usage",
            "void",
            "--provider",
            "dc-a",
            "--record-id",
            "m2",
            "--reason",
            "billed twice",
        ],
    );
    let create = ["settle", "create", "--programme", "pooled-2025", "--period"];
    let may_run = run_id(&s.ok(&f1, &[&create[..], &["2025-05"]].concat()));
    s.ok(&f2, &["settle", "approve", &may_run]);
    s.ok(&f2, &["settle", "post", &may_run]);
    s.ok(
        &f1,
        &[
            "ledger",
            "record-payment",
            "--payee",
            "e1",
            "--amount",
            "100.00",
            "--reference",
            "PAY-1",
        ],
    );
    // June has a record, so its run has a line (a month with nothing to settle is refused).
    let june = s.file(
        "june.csv",
        &format!(
            "{HEADER}dc-a,j1,e1,gpu,2025-06-01T00:00:00+08:00,2025-06-02T00:00:00+08:00,1,10.00\n"
        ),
    );
    s.ok(&dc_a, &["usage", "import", "--file", &june]);
    let june_run = run_id(&s.ok(&f1, &[&create[..], &["2025-06"]].concat()));
    s.ok(&f1, &["settle", "cancel", &june_run]);
    let db = &s.db;

    let out = verify_passes(db);
    // Each token is a person's: a user.create before each token.create.
    assert!(out.contains("intact: 16 entries"), "{out}");
    let json_path = db.dir.join("audit.json");
    let o = audit(
        db,
        &[
            "export",
            "--out",
            json_path.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let entries: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let actions: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "user.create",
            "token.create",
            "user.create",
            "token.create",
            "user.create",
            "token.create",
            "user.create",
            "token.create",
            "registry.load",
            "record.void",
            "run.create",
            "run.approve",
            "run.post",
            "payment",
            "run.create",
            "run.cancel",
        ]
    );
    let void = &entries[9];
    let actor = void["actor"].as_str().unwrap();
    assert!(
        actor.starts_with("user:") && actor.contains(" provider ") && actor.ends_with(")"),
        "the void names the provider's user: {actor}"
    );
    assert_eq!(void["subject"], "record:dc-a/m2");
    assert!(void["request_id"].as_str().unwrap().starts_with("req_"));
    let approve = &entries[11];
    assert_eq!(approve["role"], "finance");
    let actor = approve["actor"].as_str().unwrap();
    assert!(
        actor.starts_with("user:") && actor.contains("(finance"),
        "{actor}"
    );
    let csv_path = db.dir.join("audit.csv");
    let o = audit(db, &["export", "--out", csv_path.to_str().unwrap()]);
    assert!(o.status.success());
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert!(
        csv.starts_with("seq,previous_hash,actor,role,action,subject,at,request_id,digest,hash\n")
    );
    assert_eq!(csv.lines().count(), 17, "a header and 16 entries");

    // An edited field breaks that entry's hash.
    tamper(
        db,
        "UPDATE audit_log SET actor = 'finance:someone-else' WHERE seq = 12",
    );
    verify_fails_at(db, 12);
    let original = approve["actor"].as_str().unwrap();
    tamper(
        db,
        &format!("UPDATE audit_log SET actor = '{original}' WHERE seq = 12"),
    );
    verify_passes(db);
    // An edited hash no longer matches its entry's fields.
    tamper(
        db,
        // Always a different first digit (a fixed 'f' left one hash in 16 unchanged).
        "UPDATE audit_log SET hash = CASE WHEN substr(hash, 1, 1) = '0' THEN '1' ELSE '0' END || substr(hash, 2) WHERE seq = 10",
    );
    verify_fails_at(db, 10);
    let hash = entries[9]["hash"].as_str().unwrap();
    tamper(
        db,
        &format!("UPDATE audit_log SET hash = '{hash}' WHERE seq = 10"),
    );
    verify_passes(db);
    // A deleted entry is named by its seq.
    tamper(db, "DELETE FROM audit_log WHERE seq = 3");
    verify_fails_at(db, 3);
}

#[test]
fn chain_detects_edits_and_deletions_on_sqlite() {
    chain_detects_edits_and_deletions(sqlite_db().unwrap());
}

#[test]
fn chain_detects_edits_and_deletions_on_postgres() {
    if let Some(db) = pg_db() {
        chain_detects_edits_and_deletions(db);
    }
}

/// Runs `suanli audit verify` and returns its stderr, asserting that it failed.
fn verify_fails(db: &Db) -> String {
    let o = audit(db, &["verify"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "verify fails on an edit of posted money: {err}"
    );
    err
}

fn posted_money_edits_are_found(db: Db) {
    let s = Server::start(db);
    let admin = s.token(&["--role", "admin"]);
    let f1 = s.token(&["--role", "finance"]);
    let f2 = s.token(&["--role", "finance"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let registry = s.file("registry.toml", POOLED_REGISTRY);
    s.ok(&admin, &["registry", "import", "--file", &registry]);
    let t = "2025-05-01T00:00:00+08:00,2025-05-02T00:00:00+08:00";
    let may = s.file("may.csv", &format!("{HEADER}dc-a,m1,e1,gpu,{t},1,600.00\n"));
    s.ok(&dc_a, &["usage", "import", "--file", &may]);
    let run = run_id(&s.ok(
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
    s.ok(&f2, &["settle", "approve", &run]);
    s.ok(&f2, &["settle", "post", &run]);
    let pay = [
        "ledger",
        "record-payment",
        "--payee",
        "e1",
        "--amount",
        "100.00",
        "--reference",
        "PAY-1",
    ];
    s.ok(&f1, &pay);
    let db = &s.db;
    // seq: 4 users and their tokens, registry.load, run.create, run.approve, run.post (12),
    // payment (13).
    let out = verify_passes(db);
    assert!(
        out.contains("posted money matches its audit entries: 1 posted run(s), 1 payment(s)"),
        "{out}"
    );

    // A balanced edit of the run's journal: the trial balance still balances, verify does not.
    tamper(
        db,
        "UPDATE journal_entries SET debit_fen = debit_fen + 50000 WHERE journal_id = 1 AND account LIKE 'expense:%'",
    );
    tamper(
        db,
        "UPDATE journal_entries SET credit_fen = credit_fen + 50000 WHERE journal_id = 1 AND account LIKE 'payable:%'",
    );
    let balance = s.ok(&f1, &["ledger", "trial-balance"]);
    assert!(
        balance.contains("balanced"),
        "the forgery balances: {balance}"
    );
    let err = verify_fails(db);
    assert!(
        err.contains("at seq 12") && err.contains("run:") && err.contains("journal 1"),
        "verify names the post and its journal: {err}"
    );
    tamper(
        db,
        "UPDATE journal_entries SET debit_fen = debit_fen - 50000 WHERE journal_id = 1 AND account LIKE 'expense:%'",
    );
    tamper(
        db,
        "UPDATE journal_entries SET credit_fen = credit_fen - 50000 WHERE journal_id = 1 AND account LIKE 'payable:%'",
    );
    verify_passes(db);
    s.ok(&f1, &["settle", "rederive", &run]);

    // The running totals the trial balance reads, edited alone: the entries still match their
    // audit entries, the totals no longer match the entries.
    tamper(
        db,
        "UPDATE account_totals SET debit_fen = debit_fen + 7 WHERE account LIKE 'expense:%'",
    );
    let err = verify_fails(db);
    assert!(
        err.contains("running totals of account expense:")
            && err.contains("differ from its entries"),
        "verify names the account and both sums: {err}"
    );
    tamper(
        db,
        "UPDATE account_totals SET debit_fen = debit_fen - 7 WHERE account LIKE 'expense:%'",
    );
    verify_passes(db);

    // A posted run line.
    tamper(
        db,
        "UPDATE run_lines SET amount_fen = amount_fen + 1 WHERE seq = 0 OR seq = 1",
    );
    assert!(verify_fails(db).contains("at seq 12"));
    let rederived = s.fails(&f1, &["settle", "rederive", &run]);
    assert!(
        rederived.contains("does not match its re-derivation: recomputed")
            && rederived.contains("amount_fen: 30000")
            && rederived.contains("amount_fen: 30001"),
        "rederive names the recomputed and the stored line: {rederived}"
    );
    tamper(
        db,
        "UPDATE run_lines SET amount_fen = amount_fen - 1 WHERE seq = 0 OR seq = 1",
    );
    verify_passes(db);

    // A payment, both sides at once.
    tamper(
        db,
        "UPDATE journal_entries SET debit_fen = 90000 WHERE journal_id = 2 AND debit_fen > 0",
    );
    tamper(
        db,
        "UPDATE journal_entries SET credit_fen = 90000 WHERE journal_id = 2 AND credit_fen > 0",
    );
    let err = verify_fails(db);
    assert!(
        err.contains("at seq 13") && err.contains("payment journal 2"),
        "verify names the payment: {err}"
    );
    tamper(
        db,
        "UPDATE journal_entries SET debit_fen = 10000 WHERE journal_id = 2 AND debit_fen > 0",
    );
    tamper(
        db,
        "UPDATE journal_entries SET credit_fen = 10000 WHERE journal_id = 2 AND credit_fen > 0",
    );
    verify_passes(db);

    // One side of a journal: the trial balance no longer balances, and says so.
    tamper(
        db,
        "UPDATE journal_entries SET debit_fen = debit_fen + 1 WHERE journal_id = 1 AND account LIKE 'expense:%'",
    );
    let err = s.fails(&f1, &["ledger", "trial-balance"]);
    assert!(err.contains("does not balance"), "{err}");
    tamper(
        db,
        "UPDATE journal_entries SET debit_fen = debit_fen - 1 WHERE journal_id = 1 AND account LIKE 'expense:%'",
    );
    verify_passes(db);

    // A journal no audit entry accounts for.
    tamper(
        db,
        "INSERT INTO journals (journal_id, kind, reference, memo, created_by, created_at) VALUES (3, 'payment', 'FORGED', 'payment to e1 by pooled-2025', 'finance:x', '2025-06-01T00:00:00.000Z')",
    );
    let err = verify_fails(db);
    assert!(
        err.contains("journal 3") && err.contains("no audit entry"),
        "verify names the unaccounted journal: {err}"
    );
}

#[test]
fn posted_money_edits_are_found_on_sqlite() {
    posted_money_edits_are_found(sqlite_db().unwrap());
}

#[test]
fn posted_money_edits_are_found_on_postgres() {
    if let Some(db) = pg_db() {
        posted_money_edits_are_found(db);
    }
}

/// sha256 hex of a token, as the server stores it.
fn hash_of(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn revoked_and_expired_tokens_are_refused(db: Db) {
    // Every request re-reads its token, so a revocation applies to the very next request.
    let s = Server::start_with(db, &["--token-recheck-secs", "0"]);
    let admin = s.token(&["--role", "admin"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let lasting = s.token(&[
        "--role",
        "provider",
        "--provider",
        "dc-a",
        "--expires-in-days",
        "30",
    ]);
    let registry = s.file("registry.toml", POOLED_REGISTRY);
    s.ok(&admin, &["registry", "import", "--file", &registry]);
    let t = "2025-05-01T00:00:00+08:00,2025-05-02T00:00:00+08:00";
    let first = s.file(
        "first.csv",
        &format!("{HEADER}dc-a,m1,e1,gpu,{t},1,600.00\n"),
    );
    let second = s.file(
        "second.csv",
        &format!("{HEADER}dc-a,m2,e1,gpu,{t},1,900.00\n"),
    );
    s.ok(&dc_a, &["usage", "import", "--file", &first]);
    s.ok(&lasting, &["usage", "import", "--file", &first]);

    let prefix = &hash_of(&dc_a)[..10];
    let o = bin()
        .args([
            "token",
            "revoke",
            "--hash-prefix",
            prefix,
            "--database-url",
            &s.db.url,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("revoked the provider dc-a token"));
    let o = s.run(&dc_a, &["usage", "import", "--file", &second]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a revoked token is refused");
    assert!(
        err.contains("error: unauthenticated: "),
        "UNAUTHENTICATED: {err}"
    );
    assert!(err.contains("token revoked"), "{err}");

    // Expire the other provider token by moving its expiry into the past.
    tamper(
        &s.db,
        &format!(
            "UPDATE tokens SET expires_at = '2000-01-01T00:00:00.000Z' WHERE token_hash = '{}'",
            hash_of(&lasting)
        ),
    );
    let o = s.run(&lasting, &["usage", "import", "--file", &second]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "an expired token is refused");
    assert!(err.contains("token expired"), "{err}");

    // State unchanged: record m2 was never stored.
    let o = s.run(
        &admin,
        &[
            "usage",
            "void",
            "--provider",
            "dc-a",
            "--record-id",
            "m2",
            "--reason",
            "check",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no record"), "{err}");
    // The revocation is in the audit log, and the log verifies.
    let json_path = s.db.dir.join("audit.json");
    let o = audit(
        &s.db,
        &[
            "export",
            "--out",
            json_path.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert!(o.status.success());
    let text = std::fs::read_to_string(&json_path).unwrap();
    assert!(text.contains("\"token.revoke\""), "{text}");
    verify_passes(&s.db);
}

#[test]
fn revoked_and_expired_tokens_are_refused_on_sqlite() {
    revoked_and_expired_tokens_are_refused(sqlite_db().unwrap());
}

#[test]
fn revoked_and_expired_tokens_are_refused_on_postgres() {
    if let Some(db) = pg_db() {
        revoked_and_expired_tokens_are_refused(db);
    }
}
