//! The README's commands, run as a reader would run them, so the docs fail CI before they fail
//! a user.
//!
//! Every ```sh block of README.md is run with `bash` under `set -euo pipefail`, in a fresh temp
//! directory holding a copy of `examples/`, and must exit 0. A block is left out only when the
//! line before it is `<!-- readme-test: skip (why) -->`: the two commands (`cargo run --release
//! -- serve` serves until stopped; `cargo test --workspace` would run this test inside itself).
//!
//! What the test changes, and only this:
//! - `suanli` is this test's own build: its directory comes first on PATH, a line
//!   `cargo build --release` becomes a no-op and `./target/release/suanli` becomes `suanli`;
//! - `suanli serve` binds free ports (SUANLI_ADDR, SUANLI_HTTP_ADDR) and the clients reach it
//!   through SUANLI_SERVER; the database is the default, `./suanli-data/` in the temp directory;
//! - after a `suanli serve &` line the script waits until the port accepts connections (the
//!   README's `sleep 1` may be too short on a loaded CI machine), and a trap kills the
//!   background server when the block ends.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::root;

/// A ```sh block of the README: the line it starts on, its text, and whether it is skipped.
struct Block {
    line: usize,
    text: String,
    skipped: bool,
}

const SKIP_MARKER: &str = "<!-- readme-test: skip";

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    let mut previous = "";
    for (i, line) in readme.lines().enumerate() {
        match &mut open {
            None if line.trim_end() == "```sh" => {
                open = Some(Block {
                    line: i + 1,
                    text: String::new(),
                    skipped: previous.trim_start().starts_with(SKIP_MARKER),
                });
            }
            None => {}
            Some(_) if line.trim_end() == "```" => out.extend(open.take()),
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    assert!(open.is_none(), "README.md has an unclosed ```sh block");
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The block as the test runs it (see the module comment for every change).
fn script(block: &str, grpc_port: u16) -> String {
    let mut out = String::from(
        "set -euo pipefail\n\
         trap 'status=$?; kill $(jobs -p) 2>/dev/null || true; wait || true; exit $status' EXIT\n",
    );
    for line in block.lines() {
        if line.trim() == "cargo build --release" {
            out.push_str(": # cargo build --release: the test's own build is on PATH\n");
            continue;
        }
        out.push_str(&line.replace("./target/release/suanli", "suanli"));
        out.push('\n');
        if line.trim_start().starts_with("suanli serve") && line.contains('&') {
            out.push_str(&format!(
                "for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/{grpc_port}) 2>/dev/null && break; sleep 0.1; done\n"
            ));
        }
    }
    out
}

/// Runs one block in a fresh directory; returns the directory and the block's stdout.
fn run(index: usize, block: &Block) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("suanli-readme-{}-{index}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&root().join("examples"), &dir.join("examples"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_suanli")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let grpc_port = free_port();
    let output = Command::new("bash")
        .arg("-c")
        .arg(script(&block.text, grpc_port))
        .current_dir(&dir)
        .env("PATH", path)
        .env("SUANLI_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("SUANLI_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("SUANLI_SERVER", format!("127.0.0.1:{grpc_port}"))
        .env_remove("SUANLI_TOKEN")
        .env_remove("SUANLI_CONFIG")
        .env_remove("SUANLI_DATABASE_URL")
        .env_remove("SUANLI_METRICS_ADDR")
        .env_remove("SUANLI_HEALTH_ADDR")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "README.md block at line {} exits 0, got {}:\n{}\nstdout:\n{stdout}\nstderr:\n{}",
        block.line,
        output.status,
        block.text,
        String::from_utf8_lossy(&output.stderr)
    );
    (dir, stdout)
}

// Every ```sh block of the README a reader is meant to run exits 0, and the quickstarts give
// what the README says they give.
#[test]
fn readme_commands_run() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let all = blocks(&readme);
    let skipped: Vec<&str> = all
        .iter()
        .filter(|b| b.skipped)
        .map(|b| b.text.trim())
        .collect();
    assert_eq!(
        skipped,
        ["cargo run --release -- serve", "cargo test --workspace"],
        "only the two commands are skipped"
    );
    let mut checked = Vec::new();
    for (i, block) in all.iter().enumerate().filter(|(_, b)| !b.skipped) {
        let (dir, stdout) = run(i, block);
        if block.text.contains("suanli simulate") {
            let got = std::fs::read_to_string(dir.join("statement.csv")).unwrap();
            let want =
                std::fs::read_to_string(root().join("examples/worked/statement.csv")).unwrap();
            assert_eq!(
                got, want,
                "the offline statement equals the worked example's"
            );
            checked.push("simulate");
        }
        if block.text.contains("suanli balance --beneficiary ent-a") {
            assert!(
                stdout.contains("beneficiary ent-a in 2025"),
                "the balance is ent-a's: {stdout}"
            );
            assert!(
                stdout.contains("hz-municipal-2025"),
                "the posted programme is listed: {stdout}"
            );
            assert!(stdout.contains("run 1 "), "a run was created: {stdout}");
            checked.push("service");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    checked.sort_unstable();
    assert_eq!(checked, ["service", "simulate"], "both quickstarts ran");
}
