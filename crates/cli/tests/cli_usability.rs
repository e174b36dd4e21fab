//! The CLI as people type it: connection flags in any position, and messages that say what
//! went wrong and what to do, without gRPC's boilerplate or terminal colours.

mod support;

use support::bin;
use support::cli::{HEADER, POOLED_REGISTRY, Server, sqlite_db};

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

// `--token` and `--server` work after the subcommand, between the command and the subcommand,
// and before the command, against a real server.
#[test]
fn connection_flags_work_in_any_position() {
    let s = Server::start(sqlite_db().expect("sqlite"));
    let admin = s.token(&["--role", "admin"]);
    let f1 = s.token(&["--role", "finance"]);
    let registry = s.file("registry.toml", POOLED_REGISTRY);
    let o = bin()
        .args(["registry", "import", "--file", &registry])
        .args(["--server", s.addr(), "--token", &admin])
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    // A March record, so that March has something to settle.
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let march = s.file(
        "march.csv",
        &format!(
            "{HEADER}dc-a,m1,e1,gpu,2025-03-01T00:00:00+08:00,2025-03-02T00:00:00+08:00,1,10.00\n"
        ),
    );
    s.ok(&dc_a, &["usage", "import", "--file", &march]);
    let create = [
        "create",
        "--programme",
        "pooled-2025",
        "--period",
        "2025-03",
    ];
    let forms: [Vec<&str>; 3] = [
        [
            &["settle"][..],
            &create,
            &["--token", &f1, "--server", s.addr()],
        ]
        .concat(),
        [
            &["settle", "--token", &f1][..],
            &create,
            &["--server", s.addr()],
        ]
        .concat(),
        [
            &["--token", &f1, "--server", s.addr(), "settle"][..],
            &create,
        ]
        .concat(),
    ];
    for (i, args) in forms.iter().enumerate() {
        let o = bin().args(args).output().unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {out}{err}");
        let run = (i + 1).to_string();
        assert!(out.starts_with(&format!("run {run} ")), "{args:?}: {out}");
        // One open run per programme and period: cancel it before the next form.
        let o = bin()
            .args([
                "settle",
                "cancel",
                &run,
                "--token",
                &f1,
                "--server",
                s.addr(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "cancel {run}: {:?}", text(&o));
    }
    let o = bin()
        .args(["balance", "--beneficiary", "e1", "--year", "2025"])
        .args(["--token", &f1, "--server", s.addr()])
        .output()
        .unwrap();
    assert!(o.status.success(), "balance: {:?}", text(&o));
}

// A refused call prints the server's message after a short code word, without gRPC's generic
// sentence for the code.
#[test]
fn grpc_errors_show_the_servers_message_only() {
    let s = Server::start(sqlite_db().expect("sqlite"));
    let admin = s.token(&["--role", "admin"]);
    let dc = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let registry = s.file("registry.toml", POOLED_REGISTRY);
    s.ok(&admin, &["registry", "import", "--file", &registry]);
    let err = s.fails(&dc, &["settle", "list"]);
    assert!(err.starts_with("error: permission denied: "), "{err}");
    assert!(!err.contains("The caller does not have"), "{err}");
    let err = s.fails(&admin, &["settle", "show", "99"]);
    assert!(err.starts_with("error: not found: "), "{err}");
    assert!(err.contains("99"), "the message names the run: {err}");
    assert!(!err.contains("Some requested entity"), "{err}");
    let err = s.fails("sl_0000", &["settle", "list"]);
    assert!(err.starts_with("error: unauthenticated: "), "{err}");
}

// A refused connection names the server tried and how to point the CLI elsewhere; a missing
// token says how to give one, before any connection is tried.
#[test]
fn connection_and_token_problems_say_what_to_do() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = bin()
        .args(["settle", "list", "--token", "sl_x"])
        .args(["--server", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains(&format!("http://127.0.0.1:{port}")), "{err}");
    assert!(
        err.contains("--server") && err.contains("SUANLI_SERVER"),
        "{err}"
    );
    assert!(err.to_lowercase().contains("refused"), "the cause: {err}");

    let o = bin()
        .args(["settle", "list", "--server", "not a [server"])
        .args(["--token", "sl_x"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("--server \"not a [server\""),
        "{err}"
    );

    for args in [
        &["settle", "list"][..],
        &["balance", "--beneficiary", "e1", "--year", "2025"],
        &["usage", "import", "--file", "x.csv"],
        &["registry", "import", "--file", "x.toml"],
        &["ledger", "trial-balance"],
    ] {
        let o = bin()
            .args(args)
            .args(["--server", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap();
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            err.contains("no token: pass --token TOKEN or set SUANLI_TOKEN"),
            "{args:?}: {err}"
        );
    }
}

// `token create` speaks English ("an admin token"), and nothing the CLI or the server prints
// into a pipe carries terminal colour codes.
#[test]
fn plain_text_into_pipes() {
    let db = sqlite_db().expect("sqlite");
    for (role, article) in [("admin", "an"), ("auditor", "an"), ("finance", "a")] {
        let o = bin()
            .args(["token", "create", "--role", role, "--database-url", &db.url])
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        assert!(
            err.starts_with(&format!("created {article} {role} token")),
            "{err}"
        );
        assert!(out.starts_with("sl_"), "{out}");
    }
    let s = Server::start(db);
    // The server's own log, piped: started, then stopped by SIGTERM.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = bin()
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--http-addr",
            "off",
        ])
        .args(["--database-url", &format!("{}-log", s.db.url)])
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve listens");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let (out, err) = text(&o);
    assert!(err.contains("INFO"), "the log was captured: {err}");
    assert!(
        !format!("{out}{err}").contains('\u{1b}'),
        "no escape codes: {err}"
    );
    // clap's usage errors, piped.
    let o = bin().args(["settle", "nope"]).output().unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("nope"), "{err}");
    assert!(!err.contains('\u{1b}'), "no escape codes: {err}");
}

// Times in messages are Asia/Shanghai (+08:00), as users write them: a token's expiry, when a
// record was voided, when a token was already revoked.
#[test]
fn times_in_messages_are_shanghai_times() {
    let s = Server::start(sqlite_db().expect("sqlite"));
    let admin = s.token(&["--role", "admin"]);
    let registry = s.file("registry.toml", POOLED_REGISTRY);
    s.ok(&admin, &["registry", "import", "--file", &registry]);
    let shanghai =
        |line: &str| line.contains("+08:00") && !line.contains('Z') && !line.contains("+00:00");
    let o = bin()
        .args([
            "token",
            "create",
            "--role",
            "auditor",
            "--expires-in-days",
            "3",
        ])
        .args(["--database-url", &s.db.url])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    let said = format!("{out}{err}");
    let expiring = said
        .lines()
        .find(|l| l.contains("expiring at"))
        .unwrap_or_else(|| panic!("the expiry is shown: {said}"));
    assert!(shanghai(expiring), "{expiring}");
    let token = out.trim().lines().last().unwrap().to_owned();
    for _ in 0..2 {
        bin()
            .args([
                "token",
                "revoke",
                "--token",
                &token,
                "--database-url",
                &s.db.url,
            ])
            .output()
            .unwrap();
    }
    let o = bin()
        .args([
            "token",
            "revoke",
            "--token",
            &token,
            "--database-url",
            &s.db.url,
        ])
        .output()
        .unwrap();
    let (out, _) = text(&o);
    assert!(
        out.contains("already revoked at") && shanghai(&out),
        "{out}"
    );

    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let may = s.file(
        "may.csv",
        &format!(
            "{HEADER}dc-a,m1,e1,gpu,2025-05-01T00:00:00+08:00,2025-05-02T00:00:00+08:00,1,10.00\n"
        ),
    );
    s.ok(&dc_a, &["usage", "import", "--file", &may]);
    let void = [
        "usage",
        "void",
        "--provider",
        "dc-a",
        "--record-id",
        "m1",
        "--reason",
        "billed twice",
    ];
    let first = s.ok(&dc_a, &void);
    assert!(first.contains("voided at") && shanghai(&first), "{first}");
    let again = s.ok(&dc_a, &void);
    assert!(
        again.contains("was already void at") && shanghai(&again),
        "{again}"
    );
}
