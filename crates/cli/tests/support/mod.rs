//! Support for the tests that drive the real `suanli` binary against PostgreSQL: scratch
//! databases, a server child process, tokens. Each test binary uses part of it.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod browser;
pub mod cli;
pub mod console;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_suanli"));
    c.current_dir(root())
        .env_remove("SUANLI_TOKEN")
        .env_remove("SUANLI_SERVER")
        .env_remove("SUANLI_CONFIG");
    c
}

/// The PostgreSQL test server: its base URL and an admin connection, or None to skip.
pub fn postgres() -> Option<(String, postgres::Client)> {
    let base = std::env::var("SUANLI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let required = std::env::var("SUANLI_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    match postgres::Client::connect(&base, postgres::NoTls) {
        Ok(c) => Some((base, c)),
        Err(e) if !required => {
            eprintln!("skipping the PostgreSQL test: {e}");
            None
        }
        Err(e) => {
            panic!("PostgreSQL required (SUANLI_REQUIRE_POSTGRES=1) but unreachable at {base}: {e}")
        }
    }
}

/// Databases created by the test, dropped on drop, with a temp directory.
pub struct Scratch {
    pub admin: postgres::Client,
    pub base: String,
    pub names: Vec<String>,
    pub dir: PathBuf,
}

impl Scratch {
    pub fn database(&mut self, suffix: &str) -> String {
        let name = format!("suanli_it_{}_{suffix}", std::process::id());
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
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn start(url: &str) -> Server {
        Server::start_with(url, &[])
    }

    /// `extra` flags follow the defaults. No console unless `extra` asks for one: 8080 would
    /// collide between tests running in parallel.
    pub fn start_with(url: &str, extra: &[&str]) -> Server {
        Server::start_with_env(url, extra, &[])
    }

    /// As [`Server::start_with`], with environment variables (settings without a flag).
    pub fn start_with_env(url: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut child = bin()
            .args(["serve", "--addr", &addr, "--database-url", url])
            .args(if extra.contains(&"--http-addr") {
                &[][..]
            } else {
                &["--http-addr", "off"][..]
            })
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        // The console's listener is bound after gRPC's: wait for both, or a test's first page
        // can be refused.
        let console = extra
            .iter()
            .position(|a| *a == "--http-addr")
            .and_then(|i| extra.get(i + 1))
            .filter(|a| **a != "off");
        let deadline = Instant::now() + Duration::from_secs(60);
        for listening in std::iter::once(addr.as_str()).chain(console.copied()) {
            while std::net::TcpStream::connect(listening).is_err() {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "suanli serve exited early"
                );
                assert!(Instant::now() < deadline, "server listens within 60 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Server { child, addr }
    }

    pub fn run(&self, token: &str, args: &[&str]) -> Output {
        bin()
            .args(args)
            .env("SUANLI_SERVER", &self.addr)
            .env("SUANLI_TOKEN", token)
            .output()
            .unwrap()
    }

    pub fn ok(&self, token: &str, args: &[&str]) -> String {
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

/// A token for a new person: `args` are `token create --role …` arguments; the role and
/// subject go to a new user (`finance3`, "finance 3") and the token is created with `--user`,
/// so two tokens from two calls belong to two persons, as four eyes requires.
pub fn token(url: &str, args: &[&str]) -> String {
    person(url, args).1
}

/// The login of a new person with the role of `args` (see [`token`]) and a token of theirs.
pub fn person(url: &str, args: &[&str]) -> (String, String) {
    static USERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    let Some(at) = args.iter().position(|a| *a == "--role") else {
        return (String::new(), token_create(url, args));
    };
    let role = args[at + 1];
    let n = USERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let login = format!("{role}{n}");
    let name = format!("{role} {n}");
    // `--expires-in-days N` belongs to the token, the rest to the user.
    let (mut user_args, mut rest) = (Vec::new(), vec!["--user", login.as_str()]);
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--expires-in-days" {
            rest.extend(&args[i..(i + 2).min(args.len())]);
            i += 2;
        } else {
            user_args.push(args[i]);
            i += 1;
        }
    }
    let o = bin()
        .args([
            "user",
            "create",
            "--database-url",
            url,
            "--login",
            &login,
            "--name",
            &name,
        ])
        .args(&user_args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "user create: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let token = token_create(url, &rest);
    (login, token)
}

/// Sets `login`'s console password.
pub fn set_password(url: &str, login: &str, password: &str) {
    use std::io::Write;
    let mut c = bin()
        .args([
            "user",
            "reset-password",
            login,
            "--password-stdin",
            "--database-url",
            url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `suanli token create` with `args` as given; the token printed.
pub fn token_create(url: &str, args: &[&str]) -> String {
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

/// SplitMix64: small, seeded, reproducible (the crash and power-loss harnesses).
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A number from the environment, or `default`; anything else there is a mistake worth a panic.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}
