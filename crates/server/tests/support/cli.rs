//! A `suanli serve` child process on a fresh database, driven by the real CLI: the harness of
//! the settlement and audit end-to-end tests.

use std::net::TcpListener;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

pub use suanli_testkit::TestDb as Db;

use super::bin;

pub const HEADER: &str = "provider,record_id,beneficiary,sku,start,end,quantity,amount\n";

/// One district programme with a pool of 1,000.00 CNY, one provider and three beneficiaries.
pub const POOLED_REGISTRY: &str = r#"
[[programme]]
id = "pooled-2025"
funder = "district"
year = 2025
pool = "1000.00"
beneficiary_kinds = ["enterprise"]
payee = "beneficiary"
rates = [ { category = "compute", ratio = "0.50" } ]
[[provider]]
id = "dc-a"
[[sku]]
id = "gpu"
provider = "dc-a"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
[[beneficiary]]
id = "e1"
kind = "enterprise"
[[beneficiary]]
id = "e2"
kind = "enterprise"
[[beneficiary]]
id = "e3"
kind = "enterprise"
[[grant]]
beneficiary = "e1"
programme = "pooled-2025"
[[grant]]
beneficiary = "e2"
programme = "pooled-2025"
[[grant]]
beneficiary = "e3"
programme = "pooled-2025"
"#;

pub fn sqlite_db() -> Option<Db> {
    Some(suanli_testkit::sqlite("cli"))
}

pub fn pg_db() -> Option<Db> {
    suanli_testkit::postgres("cli")
}

/// The run id printed by `suanli settle create`.
pub fn run_id(stdout: &str) -> String {
    stdout.split_whitespace().nth(1).expect("run id").to_owned()
}

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub db: Db,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn start(db: Db) -> Server {
        Server::start_with(db, &[])
    }

    pub fn start_with(db: Db, extra: &[&str]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        // Migrate before serving so tokens can be created against the schema.
        let child = bin()
            .args(["serve", "--addr", &addr, "--database-url", &db.url])
            // No console unless a test asks for one: 8080 would collide between tests.
            .args(if extra.contains(&"--http-addr") {
                &[][..]
            } else {
                &["--http-addr", "off"][..]
            })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "server listens within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, addr, db }
    }

    pub fn token(&self, args: &[&str]) -> String {
        let o = bin()
            .args(["token", "create", "--database-url", &self.db.url])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let out = String::from_utf8_lossy(&o.stdout);
        out.split_whitespace()
            .find(|w| w.starts_with("sl_"))
            .expect("a token is printed")
            .to_owned()
    }

    pub fn run(&self, token: &str, args: &[&str]) -> Output {
        bin()
            .args(args)
            .env("SUANLI_SERVER", &self.addr)
            .env("SUANLI_TOKEN", token)
            .output()
            .unwrap()
    }

    /// Runs a CLI command that must succeed; returns its stdout.
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

    /// Runs a CLI command that must fail; returns its stderr.
    pub fn fails(&self, token: &str, args: &[&str]) -> String {
        let o = self.run(token, args);
        assert!(!o.status.success(), "{args:?} fails");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub fn file(&self, name: &str, text: &str) -> String {
        let p = self.db.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}
