//! Settlement on PostgreSQL from two connections at once: the same approved run posted
//! concurrently through two independent stores is posted exactly once (one journal, the other
//! call sees it posted and changes nothing), because settlement writes take the advisory lock
//! before reading the run. Skipped when PostgreSQL is unreachable unless
//! SUANLI_REQUIRE_POSTGRES=1.

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
            eprintln!("skipping the PostgreSQL settlement lock test: {e}");
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
        let name = format!("suanli_lock_{}_{suffix}", std::process::id());
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

const HEADER: &str = "provider,record_id,beneficiary,sku,start,end,quantity,amount\n";

// Two connections posting the same approved run at the same moment post it once: one call
// posts, the other returns it unchanged, and the ledger holds one journal for it.
#[test]
fn concurrent_posts_from_two_connections_post_once() {
    let Some((base, admin)) = postgres() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("suanli-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut scratch = Scratch {
        admin,
        base,
        names: Vec::new(),
        dir: dir.clone(),
    };
    let url = scratch.database("db");
    let s = Server::start(&url);
    let admin_token = token(&url, &["--role", "admin"]);
    let f1 = token(&url, &["--role", "finance"]);
    let f2 = token(&url, &["--role", "finance"]);
    let auditor = token(&url, &["--role", "auditor"]);
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
    let rows: String = usage.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let f = dir.join("march.csv");
    std::fs::write(&f, format!("{HEADER}{rows}")).unwrap();
    s.ok(
        &admin_token,
        &["usage", "import", "--file", f.to_str().unwrap()],
    );
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
    let run: i64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    s.ok(&f2, &["settle", "approve", &run.to_string()]);
    drop(s);

    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let posts: Vec<_> = (0..2)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut store = suanli_store::open(&url).expect("store opens");
                barrier.wait();
                let actor = suanli::audit::Actor {
                    actor: "finance:test".into(),
                    role: "finance".into(),
                    request_id: suanli::audit::new_request_id(),
                };
                suanli::settle::post_run(store.as_mut(), run, &actor)
                    .map(|v| v.unchanged)
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut outcomes: Vec<Result<bool, String>> =
        posts.into_iter().map(|t| t.join().unwrap()).collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        vec![Ok(false), Ok(true)],
        "one call posts, the other finds the run posted"
    );
    let mut check = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let journals: i64 = check
        .query_one(
            "SELECT count(*) FROM journals WHERE reference = $1",
            &[&format!("run:{run}")],
        )
        .unwrap()
        .get(0);
    assert_eq!(journals, 1, "one journal for the run");
    let s = Server::start(&url);
    let trial = s.ok(&auditor, &["ledger", "trial-balance"]);
    assert!(trial.contains("balanced"), "{trial}");
}
