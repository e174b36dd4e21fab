//! Backup and restore on PostgreSQL through the real binary: the worked example (POLICY.md §4)
//! is imported, settled and posted, the database is dumped with `pg_dump` and restored into a
//! new database with `pg_restore`, and a server on the copy reports the same trial balance, the
//! same runs and the same stored records (a resend is all duplicates). Skipped when PostgreSQL
//! is unreachable unless SUANLI_REQUIRE_POSTGRES=1.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_suanli"));
    c.current_dir(root())
        .env_remove("SUANLI_TOKEN")
        .env_remove("SUANLI_SERVER")
        .env_remove("SUANLI_CONFIG");
    c
}

/// The PostgreSQL test server: its base URL and an admin connection, or None to skip.
fn postgres() -> Option<(String, postgres::Client)> {
    let base = std::env::var("SUANLI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let required = std::env::var("SUANLI_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    match postgres::Client::connect(&base, postgres::NoTls) {
        Ok(c) => Some((base, c)),
        Err(e) if !required => {
            eprintln!("skipping the PostgreSQL backup test: {e}");
            None
        }
        Err(e) => {
            panic!("PostgreSQL required (SUANLI_REQUIRE_POSTGRES=1) but unreachable at {base}: {e}")
        }
    }
}

/// Databases created by the test, dropped on drop, with a temp directory.
struct Scratch {
    admin: postgres::Client,
    base: String,
    names: Vec<String>,
    dir: PathBuf,
}

impl Scratch {
    fn database(&mut self, suffix: &str) -> String {
        let name = format!("suanli_backup_{}_{suffix}", std::process::id());
        self.admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        self.admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        self.names.push(name.clone());
        let (prefix, _) = self.base.rsplit_once('/').unwrap();
        format!("{prefix}/{name}")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = self
                .admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `suanli serve` child process, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(url: &str) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut child = bin()
            .args(["serve", "--addr", &addr, "--database-url", url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "suanli serve exited early"
            );
            assert!(Instant::now() < deadline, "server listens within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, addr }
    }

    fn run(&self, token: &str, args: &[&str]) -> Output {
        bin()
            .args(args)
            .env("SUANLI_SERVER", &self.addr)
            .env("SUANLI_TOKEN", token)
            .output()
            .unwrap()
    }

    fn ok(&self, token: &str, args: &[&str]) -> String {
        let o = self.run(token, args);
        assert!(
            o.status.success(),
            "{args:?} succeeds: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

fn token(url: &str, args: &[&str]) -> String {
    let o = bin()
        .args(["token", "create", "--database-url", url])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Runs a PostgreSQL client tool that must succeed.
fn tool(program: &str, args: &[&str]) {
    let o = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (is the PostgreSQL client installed?): {e}"));
    assert!(
        o.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

const HEADER: &str = "provider,record_id,beneficiary,sku,start,end,quantity,amount\n";

// pg_dump → pg_restore into a new database reproduces the trial balance, the runs and the
// stored records of the worked example after runs were posted.
#[test]
fn pg_dump_restore_reproduces_the_trial_balance() {
    let Some((base, admin)) = postgres() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("suanli-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut scratch = Scratch {
        admin,
        base,
        names: Vec::new(),
        dir: dir.clone(),
    };
    let original = scratch.database("original");

    // Migrate before creating tokens: the first start creates the schema.
    let s = Server::start(&original);
    let admin_token = token(&original, &["--role", "admin"]);
    let f1 = token(&original, &["--role", "finance"]);
    let f2 = token(&original, &["--role", "finance"]);
    let auditor = token(&original, &["--role", "auditor"]);
    s.ok(
        &admin_token,
        &[
            "registry",
            "import",
            "--file",
            "examples/worked/registry.toml",
        ],
    );
    let usage = std::fs::read_to_string(root().join("examples/worked/usage.csv")).unwrap();
    let mut files = Vec::new();
    for provider in ["dc-a", "dc-b"] {
        let provider_token = token(&original, &["--role", "provider", "--provider", provider]);
        let mine: String = usage
            .lines()
            .filter(|l| l.starts_with(&format!("{provider},")))
            .map(|l| format!("{l}\n"))
            .collect();
        let f = dir.join(format!("march-{provider}.csv"));
        std::fs::write(&f, format!("{HEADER}{mine}")).unwrap();
        s.ok(
            &provider_token,
            &["usage", "import", "--file", f.to_str().unwrap()],
        );
        files.push((provider_token, f));
    }
    for programme in ["hz-municipal-2025", "national-intelligence-2025"] {
        let out = s.ok(
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
        let run = out.split_whitespace().nth(1).expect("run id").to_owned();
        s.ok(&f2, &["settle", "approve", &run]);
        s.ok(&f1, &["settle", "post", &run]);
    }
    let trial_before = s.ok(&auditor, &["ledger", "trial-balance"]);
    assert!(trial_before.contains("balanced"), "{trial_before}");
    let runs_before = s.ok(&auditor, &["settle", "list"]);
    assert!(runs_before.contains("posted"), "{runs_before}");

    // The backup: a custom-format dump taken while the server runs (a consistent snapshot).
    let dump = dir.join("suanli.dump");
    tool(
        "pg_dump",
        &[
            "--format=custom",
            "--no-owner",
            "--file",
            dump.to_str().unwrap(),
            &original,
        ],
    );
    drop(s);

    // The restore: into a new, empty database, then a server on it.
    let restored = scratch.database("restored");
    tool(
        "pg_restore",
        &[
            "--no-owner",
            "--exit-on-error",
            "--dbname",
            &restored,
            dump.to_str().unwrap(),
        ],
    );
    let s = Server::start(&restored);
    // Tokens are data too: the auditor's token from before the backup still works.
    let trial_after = s.ok(&auditor, &["ledger", "trial-balance"]);
    assert_eq!(
        trial_after, trial_before,
        "the restored database has the same trial balance"
    );
    assert_eq!(s.ok(&auditor, &["settle", "list"]), runs_before);
    for (provider_token, f) in &files {
        let out = s.ok(
            provider_token,
            &["usage", "import", "--file", f.to_str().unwrap()],
        );
        assert!(
            out.contains("accepted 0") && !out.contains("duplicate 0"),
            "every record is already stored in the copy: {out}"
        );
    }
    // A new run after the restore continues the run sequence, and posting it changes nothing
    // (everything is already posted).
    let out = s.ok(
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
    assert!(
        !runs_before.contains(&format!("run {} ", out.split_whitespace().nth(1).unwrap())),
        "the restored sequence does not reuse a run id: {out}"
    );
}
