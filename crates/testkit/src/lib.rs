//! Fresh databases for integration tests, one per test, removed when dropped: a SQLite file in
//! a temp directory, or a uniquely named PostgreSQL database on the local server. PostgreSQL
//! tests skip when it is unreachable, unless `SUANLI_REQUIRE_POSTGRES=1` (CI), then they fail.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database for one test and a scratch directory; both go away on drop.
pub struct TestDb {
    pub url: String,
    pub dir: PathBuf,
    pg: Option<(postgres::Client, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((mut admin, name)) = self.pg.take() {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique(label: &str) -> String {
    format!(
        "suanli_{label}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// An empty scratch directory, unique to this process and call.
pub fn scratch_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(label));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// A SQLite database file that does not exist yet (the store creates it).
pub fn sqlite(label: &str) -> TestDb {
    let dir = scratch_dir(label);
    TestDb {
        url: format!("sqlite://{}/suanli.db", dir.display()),
        dir,
        pg: None,
    }
}

/// A new PostgreSQL database, or `None` when PostgreSQL is unreachable and not required.
pub fn postgres(label: &str) -> Option<TestDb> {
    let base = std::env::var("SUANLI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let required = std::env::var("SUANLI_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    let mut admin = match postgres::Client::connect(&base, postgres::NoTls) {
        Ok(c) => c,
        Err(e) if !required => {
            eprintln!("skipping the PostgreSQL run: {e}");
            return None;
        }
        Err(e) => {
            panic!("PostgreSQL required (SUANLI_REQUIRE_POSTGRES=1) but unreachable at {base}: {e}")
        }
    };
    let name = unique(label);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .expect("drop a stale test database");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create the test database");
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("SUANLI_TEST_POSTGRES_URL names a database");
    Some(TestDb {
        url: format!("{prefix}/{name}"),
        dir: scratch_dir(label),
        pg: Some((admin, name)),
    })
}
