//! `suanli usage import` reports its outcome in the exit code (0 all stored, 3 a row rejected,
//! 4 a row conflicted) and writes a rejects file only when there are rejects: by default in
//! the current directory, named after the input file; `--rejects PATH` chooses.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::bin;
use support::cli::{HEADER, POOLED_REGISTRY, Server, sqlite_db};

const HOUR: &str = "2025-03-02T00:00:00+08:00,2025-03-02T01:00:00+08:00";

/// Runs `usage import` from `cwd` with the given token.
fn import(s: &Server, cwd: &Path, token: &str, args: &[&str]) -> Output {
    bin()
        .current_dir(cwd)
        .args(["usage", "import", "--server", s.addr(), "--token", token])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fresh directory inside the server's temp directory.
fn dir(s: &Server, name: &str) -> PathBuf {
    let d = s.db.dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// Every outcome maps to its exit code, and the rejects file exists exactly when there are
// rejects, where the user asked or in the current directory.
#[test]
fn exit_codes_and_the_rejects_file() {
    let s = Server::start(sqlite_db().expect("sqlite"));
    let admin = s.token(&["--role", "admin"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let input = dir(&s, "input");
    let cwd = dir(&s, "work");
    let write = |name: &str, rows: &str| {
        let p = input.join(name);
        std::fs::write(&p, format!("{HEADER}{rows}")).unwrap();
        p.display().to_string()
    };

    // Before any registry: every row is rejected as no_registry.
    let early = write("early.csv", &format!("dc-a,r0,e1,gpu,{HOUR},1,1.00\n"));
    let o = import(&s, &cwd, &dc_a, &["--file", &early]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    let rejects = std::fs::read_to_string(cwd.join("early.csv.rejects.csv")).unwrap();
    assert!(rejects.contains("dc-a,r0,2,no_registry,"), "{rejects}");
    assert!(
        !input.join("early.csv.rejects.csv").exists(),
        "nothing beside the input"
    );

    let registry = s.file("registry.toml", POOLED_REGISTRY);
    s.ok(&admin, &["registry", "import", "--file", &registry]);

    // All accepted: exit 0, no rejects file, no mention of one.
    let good = write("good.csv", &format!("dc-a,r1,e1,gpu,{HOUR},1,1.00\n"));
    let o = import(&s, &cwd, &dc_a, &["--file", &good]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("accepted 1, duplicate 0, conflict 0, rejected 0"));
    assert!(!stdout(&o).contains("rejects"), "{}", stdout(&o));
    assert!(
        !cwd.join("good.csv.rejects.csv").exists(),
        "no rejects, no file"
    );
    // Sent again: duplicates only, still 0.
    let o = import(&s, &cwd, &dc_a, &["--file", &good]);
    assert_eq!(o.status.code(), Some(0), "duplicates are not a failure");
    assert!(stdout(&o).contains("duplicate 1"), "{}", stdout(&o));

    // Every row rejected (another provider's record, an unknown SKU): exit 3, --rejects wins.
    let bad = write(
        "bad.csv",
        &format!("dc-b,r2,e1,gpu,{HOUR},1,1.00\ndc-a,r3,e1,nope,{HOUR},1,1.00\n"),
    );
    let chosen = s.db.dir.join("chosen.csv");
    let o = import(
        &s,
        &cwd,
        &dc_a,
        &["--file", &bad, "--rejects", chosen.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("rejects in {}", chosen.display())),
        "{}",
        stdout(&o)
    );
    let text = std::fs::read_to_string(&chosen).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "provider,record_id,line,reason,message");
    assert!(
        lines[1].starts_with("dc-b,r2,2,provider_mismatch,"),
        "{text}"
    );
    assert!(lines[2].starts_with("dc-a,r3,3,unknown_sku,"), "{text}");
    assert!(
        !cwd.join("bad.csv.rejects.csv").exists(),
        "only where --rejects says"
    );

    // A conflict exits 4, also when another row is rejected in the same file.
    let conflict = write("conflict.csv", &format!("dc-a,r1,e1,gpu,{HOUR},1,2.00\n"));
    let o = import(&s, &cwd, &dc_a, &["--file", &conflict]);
    assert_eq!(o.status.code(), Some(4), "{}", stdout(&o));
    let both = write(
        "both.csv",
        &format!("dc-a,r1,e1,gpu,{HOUR},1,3.00\ndc-a,r4,e1,nope,{HOUR},1,1.00\n"),
    );
    let o = import(&s, &cwd, &dc_a, &["--file", &both]);
    assert_eq!(o.status.code(), Some(4), "conflict wins over rejected");
    let text = std::fs::read_to_string(cwd.join("both.csv.rejects.csv")).unwrap();
    assert!(text.contains("dc-a,r1,2,conflict,") && text.contains("dc-a,r4,3,unknown_sku,"));

    // A file that cannot be read fails with 1 and writes nothing.
    let o = import(&s, &cwd, &dc_a, &["--file", "missing.csv"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!cwd.join("missing.csv.rejects.csv").exists());
}

// `usage import` reads a GBK file (a record id in Chinese) like its UTF-8 twin.
#[test]
fn a_gbk_file_imports_like_its_utf8_twin() {
    let s = Server::start(sqlite_db().expect("sqlite"));
    let admin = s.token(&["--role", "admin"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let registry = s.file("registry.toml", POOLED_REGISTRY);
    s.ok(&admin, &["registry", "import", "--file", &registry]);
    let cwd = dir(&s, "work");
    let text = format!("{HEADER}dc-a,三月-1,e1,gpu,{HOUR},1,1.00\r\n");
    let (gbk, _, _) = encoding_rs::GBK.encode(&text);
    std::fs::write(cwd.join("gbk.csv"), &gbk).unwrap();
    let o = import(&s, &cwd, &dc_a, &["--file", "gbk.csv"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("read gbk.csv as GB18030"));
    assert!(stdout(&o).contains("accepted 1"), "{}", stdout(&o));
    // The UTF-8 twin is the same record: a duplicate, not a conflict.
    std::fs::write(cwd.join("utf8.csv"), &text).unwrap();
    let o = import(&s, &cwd, &dc_a, &["--file", "utf8.csv"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("accepted 0, duplicate 1, conflict 0"),
        "{}",
        stdout(&o)
    );
}
