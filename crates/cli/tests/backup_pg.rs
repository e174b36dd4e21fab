//! Backup and restore on PostgreSQL through the real binary: the worked example (the worked example of docs/rules.md)
//! is imported, settled and posted, the database is dumped with `pg_dump` and restored into a
//! new database with `pg_restore`, and a server on the copy reports the same trial balance, the
//! same runs and the same stored records (a resend is all duplicates). Skipped when PostgreSQL
//! is unreachable unless SUANLI_REQUIRE_POSTGRES=1.

use std::process::Command;

mod support;

use support::*;

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
