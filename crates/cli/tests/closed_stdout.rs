//! A reader that stops early (`suanli … | head`) closes the CLI's standard output: the command
//! then ends quietly with status 0, never with a panic.

mod support;

use std::process::{Command, Output, Stdio};

use support::cli::{HEADER, Server, may_record, run_id, sqlite_db, wide_registry};
use support::{bin, root};

/// Runs `command` with its standard output a pipe whose reading end is closed at once.
fn with_stdout_closed(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("suanli runs");
    drop(child.stdout.take());
    child.wait_with_output().expect("suanli ends")
}

/// The command ended quietly, as if its reader had taken everything.
fn assert_quiet(what: &str, o: &Output) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{what}: {stderr}");
    assert_eq!(o.status.code(), Some(0), "{what}: {stderr}");
}

#[test]
fn offline_commands_end_quietly_on_a_closed_stdout() {
    let mut check = bin();
    check.args(["check", "--registry", "examples/worked/registry.toml"]);
    assert_quiet("check", &with_stdout_closed(check));

    let dir = std::env::temp_dir().join(format!("suanli-closed-stdout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("statement.csv");
    let mut simulate = bin();
    simulate.current_dir(root()).args([
        "simulate",
        "--registry",
        "examples/worked/registry.toml",
        "--usage",
        "examples/worked/usage.csv",
        "--period",
        "2025-03",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_quiet("simulate", &with_stdout_closed(simulate));
    // The statement was written before the summary was printed.
    assert!(out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Beneficiaries of the run: its listing (about 70 bytes a line) is larger than a pipe holds.
const BENEFICIARIES: u64 = 2_000;

#[test]
fn a_long_listing_ends_quietly_on_a_closed_stdout() {
    let s = Server::start(sqlite_db().unwrap());
    let admin = s.token(&["--role", "admin"]);
    let finance = s.token(&["--role", "finance"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let ids: Vec<String> = (0..BENEFICIARIES).map(|i| format!("ent-{i:05}")).collect();
    let registry = wide_registry("wide-2025", "", &ids);
    let mut usage = String::from(HEADER);
    for (i, id) in (0..).zip(&ids) {
        usage.push_str(&may_record(i, id, 1_000));
    }
    let registry = s.file("wide.toml", &registry);
    s.ok(&admin, &["registry", "import", "--file", &registry]);
    let usage = s.file("wide.csv", &usage);
    s.ok(&dc_a, &["usage", "import", "--file", &usage]);
    let out = s.ok(
        &finance,
        &[
            "settle",
            "create",
            "--programme",
            "wide-2025",
            "--period",
            "2025-05",
        ],
    );
    let id = run_id(&out);

    let mut show = bin();
    show.args(["settle", "show", &id])
        .env("SUANLI_SERVER", s.addr())
        .env("SUANLI_TOKEN", &finance);
    assert_quiet("settle show", &with_stdout_closed(show));
}
