//! Settlement on PostgreSQL from two connections at once: the same approved run posted
//! concurrently through two independent stores is posted exactly once (one journal, the other
//! call sees it posted and changes nothing), because settlement writes take the advisory lock
//! before reading the run. Skipped when PostgreSQL is unreachable unless
//! SUANLI_REQUIRE_POSTGRES=1.

mod support;

use support::*;

const HEADER: &str = "provider,record_id,beneficiary,sku,start,end,quantity,amount\n";

// Two connections posting the same approved run at the same moment post it once: one call
// posts, the other returns it unchanged, and the ledger holds one journal for it.
#[test]
fn concurrent_posts_from_two_connections_post_once() {
    let Some((base, admin)) = postgres() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("suanli-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut scratch = Scratch {
        admin,
        base,
        names: Vec::new(),
        dir: dir.clone(),
    };
    let url = scratch.database("db");
    let s = Server::start(&url);
    let admin_token = token(&url, &["--role", "admin"]);
    let f1 = token(&url, &["--role", "finance"]);
    let f2 = token(&url, &["--role", "finance"]);
    let auditor = token(&url, &["--role", "auditor"]);
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
    let rows: String = usage.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let f = dir.join("march.csv");
    std::fs::write(&f, format!("{HEADER}{rows}")).unwrap();
    s.ok(
        &admin_token,
        &["usage", "import", "--file", f.to_str().unwrap()],
    );
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
    let run: i64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    s.ok(&f2, &["settle", "approve", &run.to_string()]);
    drop(s);

    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let posts: Vec<_> = (0..2)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut store = suanli_store::open(&url).expect("store opens");
                barrier.wait();
                let actor = suanli_app::audit::Actor {
                    actor: "finance:test".into(),
                    user: None,
                    role: "finance".into(),
                    request_id: suanli_app::audit::new_request_id(),
                };
                suanli_app::settlement::post_run(store.as_mut(), run, &actor)
                    .map(|v| v.unchanged)
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut outcomes: Vec<Result<bool, String>> =
        posts.into_iter().map(|t| t.join().unwrap()).collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        vec![Ok(false), Ok(true)],
        "one call posts, the other finds the run posted"
    );
    let mut check = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let journals: i64 = check
        .query_one(
            "SELECT count(*) FROM journals WHERE reference = $1",
            &[&format!("run:{run}")],
        )
        .unwrap()
        .get(0);
    assert_eq!(journals, 1, "one journal for the run");
    let s = Server::start(&url);
    let trial = s.ok(&auditor, &["ledger", "trial-balance"]);
    assert!(trial.contains("balanced"), "{trial}");
}
