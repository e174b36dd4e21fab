//! A `suanli serve` child process on a fresh database, driven by the real CLI: the harness of
//! the settlement and audit end-to-end tests.

use std::process::Output;

pub use suanli_testkit::TestDb as Db;

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

/// A registry of one district programme `programme` of 2025 (compute at 50 %, paid to the
/// beneficiary, with `more` of its lines, such as a cap), provider dc-a with its SKU gpu, and
/// `beneficiaries`, each granted the programme: for runs of many lines.
pub fn wide_registry(programme: &str, more: &str, beneficiaries: &[String]) -> String {
    let mut registry = format!(
        r#"
[[programme]]
id = "{programme}"
funder = "district"
year = 2025
{more}beneficiary_kinds = ["enterprise"]
payee = "beneficiary"
rates = [ {{ category = "compute", ratio = "0.50" }} ]
[[provider]]
id = "dc-a"
[[sku]]
id = "gpu"
provider = "dc-a"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
"#
    );
    for id in beneficiaries {
        registry.push_str(&format!(
            "[[beneficiary]]\nid = \"{id}\"\nkind = \"enterprise\"\n[[grant]]\nbeneficiary = \"{id}\"\nprogramme = \"{programme}\"\n"
        ));
    }
    registry
}

/// A usage line (after [`HEADER`]): record `r{i}` of dc-a's gpu for `beneficiary` on 1 May 2025,
/// of `fen`.
pub fn may_record(i: u64, beneficiary: &str, fen: i64) -> String {
    format!(
        "dc-a,r{i},{beneficiary},gpu,2025-05-01T00:00:00+08:00,2025-05-02T00:00:00+08:00,1,{}.{:02}\n",
        fen / 100,
        fen % 100
    )
}

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

/// A server child process (`super::Server`) on its own database.
pub struct Server {
    /// Declared first: the process is killed before the database is dropped.
    pub process: super::Server,
    pub db: Db,
}

impl Server {
    pub fn start(db: Db) -> Server {
        Server::start_with(db, &[])
    }

    pub fn start_with(db: Db, extra: &[&str]) -> Server {
        Server::start_with_env(db, extra, &[])
    }

    /// As [`Server::start_with`], with environment variables (settings without a flag).
    pub fn start_with_env(db: Db, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server {
            process: super::Server::start_with_env(&db.url, extra, env),
            db,
        }
    }

    pub fn addr(&self) -> &str {
        &self.process.addr
    }

    /// A token of a new person with the role of `args` (see [`super::token`]).
    pub fn token(&self, args: &[&str]) -> String {
        self.person(args).1
    }

    /// The login of a new person with the role of `args` and a token of theirs.
    pub fn person(&self, args: &[&str]) -> (String, String) {
        let (login, token) = super::person(&self.db.url, args);
        let token = token
            .split_whitespace()
            .find(|w| w.starts_with("sl_"))
            .expect("a token is printed")
            .to_owned();
        (login, token)
    }

    pub fn run(&self, token: &str, args: &[&str]) -> Output {
        self.process.run(token, args)
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn ok(&self, token: &str, args: &[&str]) -> String {
        self.process.ok(token, args)
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
