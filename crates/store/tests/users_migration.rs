//! The users migration on both backends: tokens stored before users existed are attached to one
//! generated service account per (role, subject), named as `suanli token create --role` names
//! them, and tokens inserted without a user afterwards join the same accounts.

use suanli_store::users::{self, UserRow};
use suanli_store::{Principal, tokens};

const SQLITE_BEFORE: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_ingest.sql"),
    include_str!("../../../migrations/sqlite/0002_settlement.sql"),
    include_str!("../../../migrations/sqlite/0003_audit.sql"),
    include_str!("../../../migrations/sqlite/0004_token_lifetime.sql"),
    include_str!("../../../migrations/sqlite/0005_ingest_stats.sql"),
    include_str!("../../../migrations/sqlite/0006_accrual_pending.sql"),
    include_str!("../../../migrations/sqlite/0007_cancelled_by.sql"),
    include_str!("../../../migrations/sqlite/0008_opening.sql"),
];

const POSTGRES_BEFORE: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_ingest.sql"),
    include_str!("../../../migrations/postgres/0002_settlement.sql"),
    include_str!("../../../migrations/postgres/0003_audit.sql"),
    include_str!("../../../migrations/postgres/0004_token_lifetime.sql"),
    include_str!("../../../migrations/postgres/0005_ingest_stats.sql"),
    include_str!("../../../migrations/postgres/0006_ingest_log.sql"),
    include_str!("../../../migrations/postgres/0007_ingest_collation.sql"),
    include_str!("../../../migrations/postgres/0008_accrual_pending.sql"),
    include_str!("../../../migrations/postgres/0009_accrual_pending_lz4.sql"),
    include_str!("../../../migrations/postgres/0010_cancelled_by.sql"),
    include_str!("../../../migrations/postgres/0011_opening.sql"),
];

/// Tokens as an earlier version stored them: two finance, one provider, one admin.
const OLD_TOKENS: &str = "INSERT INTO tokens (token_hash, role, subject, created_at) VALUES
    ('f1', 'finance', '', '2025-01-01T00:00:00.000Z'),
    ('f2', 'finance', '', '2025-01-02T00:00:00.000Z'),
    ('p1', 'provider', 'dc-a', '2025-01-03T00:00:00.000Z'),
    ('a1', 'admin', '', '2025-01-04T00:00:00.000Z');";

fn check(url: &str) {
    let mut store = suanli_store::open(url).expect("the users migration runs");
    let mut all: Vec<UserRow> = Vec::new();
    let mut owners = Vec::new();
    store
        .token_insert(
            "p2",
            &Principal::Provider("dc-a".into()),
            chrono::Utc::now(),
        )
        .unwrap();
    store
        .transaction(&mut |tx| {
            all = users::list(tx)?;
            owners = ["f1", "f2", "p1", "a1", "p2"]
                .iter()
                .map(|h| {
                    tokens::lookup(tx, h).map(|t| {
                        let t = t.expect("the token is kept");
                        t.user.expect("the token has a user").login
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(())
        })
        .unwrap();
    let logins: Vec<(&str, &str, bool, &str)> = all
        .iter()
        .map(|u| {
            (
                u.login.as_str(),
                u.name.as_str(),
                u.service,
                u.created_at.as_str(),
            )
        })
        .collect();
    assert_eq!(
        logins,
        [
            (
                "svc-admin",
                "admin service account",
                true,
                "2025-01-04T00:00:00.000Z"
            ),
            (
                "svc-finance",
                "finance service account",
                true,
                "2025-01-01T00:00:00.000Z"
            ),
            (
                "svc-provider-dc-a",
                "provider dc-a service account",
                true,
                "2025-01-03T00:00:00.000Z"
            ),
        ]
    );
    assert_eq!(
        owners,
        [
            "svc-finance",
            "svc-finance",
            "svc-provider-dc-a",
            "svc-admin",
            "svc-provider-dc-a"
        ]
    );
}

#[test]
fn earlier_tokens_get_service_accounts_on_sqlite() {
    let db = suanli_testkit::sqlite("users_migration");
    let path = db.url.strip_prefix("sqlite://").unwrap();
    {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            .unwrap();
        for (i, sql) in SQLITE_BEFORE.iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, '2025-01-01T00:00:00Z')",
                [i as i64 + 1],
            )
            .unwrap();
        }
        conn.execute_batch(OLD_TOKENS).unwrap();
    }
    check(&db.url);
}

#[test]
fn earlier_tokens_get_service_accounts_on_postgres() {
    let Some(db) = suanli_testkit::postgres("users_migration") else {
        return;
    };
    {
        let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
        c.batch_execute(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .unwrap();
        for (i, sql) in POSTGRES_BEFORE.iter().enumerate() {
            c.batch_execute(sql).unwrap();
            c.execute(
                "INSERT INTO schema_migrations VALUES ($1, '2025-01-01T00:00:00Z')",
                &[&(i as i64 + 1)],
            )
            .unwrap();
        }
        c.batch_execute(OLD_TOKENS).unwrap();
    }
    check(&db.url);
}
