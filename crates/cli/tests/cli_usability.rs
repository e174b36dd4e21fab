//! The CLI as people type it: connection flags in any position, and messages that say what
//! went wrong and what to do, without gRPC's boilerplate or terminal colours.

mod support;

use support::bin;
use support::cli::{POOLED_REGISTRY, Server, sqlite_db};

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
    let create = ["create", "--programme", "pooled-2025", "--period", "2025-03"];
    let forms: [Vec<&str>; 3] = [
        [&["settle"][..], &create, &["--token", &f1, "--server", s.addr()]].concat(),
        [&["settle", "--token", &f1][..], &create, &["--server", s.addr()]].concat(),
        [&["--token", &f1, "--server", s.addr(), "settle"][..], &create].concat(),
    ];
    for (i, args) in forms.iter().enumerate() {
        let o = bin().args(args).output().unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {out}{err}");
        let run = (i + 1).to_string();
        assert!(out.starts_with(&format!("run {run} ")), "{args:?}: {out}");
        // One open run per programme and period: cancel it before the next form.
        let o = bin()
            .args(["settle", "cancel", &run, "--token", &f1, "--server", s.addr()])
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
