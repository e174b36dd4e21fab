//! Named users end to end through the real binary on both backends: `suanli user` commands,
//! tokens that belong to a user, four eyes between persons (one user's two tokens cannot approve
//! its own run; another user can), a disabled user's token refused within the recheck time, and
//! persons named in `settle show` and the audit export.

mod support;

use std::process::Output;
use support::bin;
use support::cli::{Db, HEADER, POOLED_REGISTRY, Server, pg_db, run_id, sqlite_db};

/// `suanli ARGS --database-url URL` on the database directly.
fn direct(db: &Db, args: &[&str]) -> Output {
    bin()
        .args(args)
        .args(["--database-url", &db.url])
        .output()
        .unwrap()
}

fn direct_ok(db: &Db, args: &[&str]) -> String {
    let o = direct(db, args);
    assert!(
        o.status.success(),
        "{args:?} succeeds: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn direct_fails(db: &Db, args: &[&str]) -> String {
    let o = direct(db, args);
    assert!(!o.status.success(), "{args:?} fails");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn token_of(db: &Db, login: &str) -> String {
    direct_ok(db, &["token", "create", "--user", login, "--label", "test"])
        .trim()
        .to_owned()
}

fn persons_act(db: Db) {
    let s = Server::start_with(db, &["--token-recheck-secs", "1"]);
    let db = &s.db;
    let out = direct_ok(
        db,
        &[
            "user",
            "create",
            "--login",
            "finance1",
            "--name",
            "财务一号",
            "--role",
            "finance",
            "--email",
            "f1@example.cn",
        ],
    );
    assert!(out.contains("created user 财务一号 (finance1)"), "{out}");
    direct_ok(
        db,
        &[
            "user",
            "create",
            "--login",
            "finance2",
            "--name",
            "财务二号",
            "--role",
            "finance",
        ],
    );
    direct_ok(
        db,
        &[
            "user",
            "create",
            "--service",
            "--login",
            "dc-a-ingest",
            "--role",
            "provider",
            "--provider",
            "dc-a",
            "--name",
            "dc-a ingest",
        ],
    );
    let err = direct_fails(
        db,
        &[
            "user", "create", "--login", "finance1", "--name", "again", "--role", "finance",
        ],
    );
    assert!(err.contains("login \"finance1\" is taken"), "{err}");
    let err = direct_fails(
        db,
        &[
            "user",
            "create",
            "--login",
            "Bad Login",
            "--name",
            "x",
            "--role",
            "finance",
        ],
    );
    assert!(err.contains("login \"Bad Login\""), "{err}");
    let err = direct_fails(
        db,
        &[
            "user", "create", "--login", "x1", "--name", "x", "--role", "provider",
        ],
    );
    assert!(err.contains("--provider ID is required"), "{err}");

    let admin = s.token(&["--role", "admin"]);
    // Compatibility: a token by role belongs to the role's generated service account.
    let legacy = direct_ok(
        db,
        &[
            "token",
            "create",
            "--role",
            "provider",
            "--provider",
            "dc-a",
        ],
    );
    let dc_a = token_of(db, "dc-a-ingest");
    let f1a = token_of(db, "finance1");
    let f1b = token_of(db, "finance1");
    let f2 = token_of(db, "finance2");
    let tokens = direct_ok(db, &["token", "list", "--user", "finance1"]);
    assert_eq!(
        tokens.lines().count(),
        3,
        "a header and finance1's two tokens: {tokens}"
    );
    assert!(
        tokens
            .lines()
            .skip(1)
            .all(|l| l.contains("\t财务一号 (finance1)\tfinance\t\ttest\t")
                && l.ends_with("\tactive")),
        "{tokens}"
    );
    let all = direct_ok(db, &["token", "list"]);
    assert!(
        all.contains("\tprovider dc-a service account (svc-provider-dc-a)\tprovider\tdc-a\t\t"),
        "{all}"
    );
    let list = direct_ok(db, &["user", "list"]);
    for want in [
        "\tfinance1\t财务一号\tfinance\t\tperson\tnone\tactive\t",
        "\tdc-a-ingest\tdc-a ingest\tprovider\tdc-a\tservice\tnone\tactive\t",
        "\tsvc-provider-dc-a\tprovider dc-a service account\tprovider\tdc-a\tservice\t",
    ] {
        assert!(list.contains(want), "{want:?} in {list}");
    }

    s.ok(
        &admin,
        &[
            "registry",
            "import",
            "--file",
            &s.file("r.toml", POOLED_REGISTRY),
        ],
    );
    let usage = s.file(
        "u.csv",
        &format!(
            "{HEADER}dc-a,m1,e1,gpu,2025-03-01T00:00:00+08:00,2025-03-01T10:00:00+08:00,10,100.00\n"
        ),
    );
    s.ok(legacy.trim(), &["usage", "import", "--file", &usage]);
    let run = run_id(&s.ok(
        &f1a,
        &[
            "settle",
            "create",
            "--programme",
            "pooled-2025",
            "--period",
            "2025-03",
        ],
    ));
    // One person, two tokens: still the creator.
    let err = s.fails(&f1b, &["settle", "approve", &run]);
    assert!(
        err.contains("four eyes") && err.contains("财务一号 (finance1)"),
        "{err}"
    );
    s.ok(&f2, &["settle", "approve", &run]);
    s.ok(&f1b, &["settle", "post", &run]);
    let show = s.ok(&f2, &["settle", "show", &run]);
    assert!(
        show.contains("  created by 财务一号 (finance1) at "),
        "{show}"
    );
    assert!(
        show.contains("  approved by 财务二号 (finance2) at "),
        "{show}"
    );

    // A disabled user's tokens stop working within the recheck time (1 s); enabling restores them.
    s.ok(&dc_a, &["usage", "import", "--file", &usage]);
    let out = direct_ok(db, &["user", "disable", "dc-a-ingest"]);
    assert!(out.contains("disabled dc-a ingest (dc-a-ingest)"), "{out}");
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let err = s.fails(&dc_a, &["usage", "import", "--file", &usage]);
    assert!(err.contains("user is disabled"), "{err}");
    let err = direct_fails(db, &["token", "create", "--user", "dc-a-ingest"]);
    assert!(err.contains("disabled"), "{err}");
    direct_ok(db, &["user", "enable", "dc-a-ingest"]);
    std::thread::sleep(std::time::Duration::from_millis(1300));
    s.ok(&dc_a, &["usage", "import", "--file", &usage]);

    // A changed role reaches the user's tokens: finance2, now an auditor, cannot create runs.
    direct_ok(db, &["user", "set-role", "finance2", "--role", "auditor"]);
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let err = s.fails(
        &f2,
        &[
            "settle",
            "create",
            "--programme",
            "pooled-2025",
            "--period",
            "2025-03",
        ],
    );
    assert!(err.contains("this token is auditor"), "{err}");

    // Passwords: the policy is checked; a service account has none; a reset prints a new one.
    let o = bin()
        .args([
            "user",
            "reset-password",
            "finance1",
            "--password-stdin",
            "--database-url",
            &db.url,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"short\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least 12"));
    let err = direct_fails(db, &["user", "reset-password", "dc-a-ingest"]);
    assert!(err.contains("service account"), "{err}");
    let password = direct_ok(db, &["user", "reset-password", "finance1"]);
    assert_eq!(password.trim().chars().count(), 20, "{password}");

    // The audit log names the users by id and name, and still verifies.
    let out = direct_ok(db, &["audit", "verify"]);
    assert!(out.contains("intact"), "{out}");
    let path = db.dir.join("audit.json");
    direct_ok(
        db,
        &[
            "audit",
            "export",
            "--out",
            path.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let entries: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let entry = |action: &str| {
        entries
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("an entry {action}"))
            .clone()
    };
    let approve = entry("run.approve");
    let actor = approve["actor"].as_str().unwrap();
    assert!(
        actor.starts_with("user:") && actor.ends_with(" 财务二号 (finance2)"),
        "{actor}"
    );
    assert!(
        entry("run.create")["actor"]
            .as_str()
            .unwrap()
            .ends_with(" 财务一号 (finance1)")
    );
    assert!(
        entry("user.create")["actor"]
            .as_str()
            .unwrap()
            .starts_with("operator:")
    );
    for action in [
        "user.disable",
        "user.enable",
        "user.set_role",
        "user.reset_password",
    ] {
        assert_eq!(entry(action)["role"], "operator", "{action}");
    }
}

#[test]
fn persons_act_sqlite() {
    persons_act(sqlite_db().unwrap());
}

#[test]
fn persons_act_postgres() {
    if let Some(db) = pg_db() {
        persons_act(db);
    }
}
