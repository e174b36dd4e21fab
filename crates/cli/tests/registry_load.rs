//! Registry loads end to end through the real binary on both backends: a registry larger than
//! the gRPC message limit loads through `suanli registry import`, a patch adds a beneficiary who
//! can then be ingested for, a load whose client deadline passes is either not committed or
//! installed, and ingest keeps answering while a large registry loads.

mod support;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use suanli_proto::v1 as pb;
use suanli_proto::v1::metering_service_client::MeteringServiceClient;
use suanli_proto::v1::registry_service_client::RegistryServiceClient;
use suanli_testkit::TestDb as Db;
use support::cli::{HEADER, Server, pg_db, sqlite_db};
use tonic::transport::Channel;

/// A registry of `n` beneficiaries with every optional field (as `examples/hangzhou-2025.toml`
/// writes them): two programmes with pools, caps, funding shares and rates, a stacking rule,
/// four providers with priced, capacity-checked SKUs, and a grant per beneficiary and
/// programme, every tenth with its own cap. `tag` makes the text (and its hash) distinct.
fn city_registry(n: usize, tag: &str) -> String {
    let mut t = String::from(
        r#"# A generated city registry.
[[programme]]
id = "city-2025"
name = "市级算力券 2025"
funder = "municipal"
year = 2025
pool = "250000000.00"
beneficiary_cap = "8000000.00"
provider_cap = "90000000.00"
beneficiary_kinds = ["enterprise", "university", "research_institute"]
payee = "provider"
funding = [ { funder = "city", share = "0.5" }, { funder = "district", share = "0.5" } ]
rates = [
  { category = "compute", chip_origin = "domestic", ratio = "0.30" },
  { category = "compute", chip_origin = "other", ratio = "0.20" },
  { category = "model", registered_model = true, ratio = "0.30" },
]

[[programme]]
id = "national-2025"
name = "国家智能券 2025"
funder = "national"
year = 2025
beneficiary_kinds = ["enterprise", "university", "research_institute"]
payee = "beneficiary"
rates = [ { category = "compute", ratio = "0.10" }, { category = "model", ratio = "0.30" } ]

[[stacking]]
primary = "national-2025"
top_up = "city-2025"
ceilings = [ { category = "compute", ratio = "0.45" }, { category = "model", ratio = "0.45" } ]
"#,
    );
    for p in 0..4 {
        writeln!(
            t,
            "\n[[provider]]\nid = \"p{p}\"\nname = \"智算中心 {p}\"\n\n[[sku]]\nid = \"p{p}-gpu\"\nprovider = \"p{p}\"\ncategory = \"compute\"\nchip_origin = \"domestic\"\nchip_model = \"Ascend 910B\"\nunit = \"gpu_hour\"\nlist_price = \"18.00\"\ncapacity = \"100000\"\n\n[[sku]]\nid = \"p{p}-api\"\nprovider = \"p{p}\"\ncategory = \"model\"\nregistered_model = true\nunit = \"token_million\"\nlist_price = \"8.00\""
        )
        .unwrap();
    }
    const KINDS: [&str; 3] = ["enterprise", "university", "research_institute"];
    for b in 0..n {
        writeln!(
            t,
            "\n[[beneficiary]]\nid = \"b{b}\"\nname = \"杭州{b}号智能科技有限公司{tag}\"\nkind = \"{}\"\ndistrict = \"district-{}\"",
            KINDS[b % 3],
            b % 13
        )
        .unwrap();
    }
    for b in 0..n {
        let cap = if b % 10 == 0 {
            "cap = \"20000000.00\"\n"
        } else {
            ""
        };
        writeln!(
            t,
            "\n[[grant]]\nbeneficiary = \"b{b}\"\nprogramme = \"city-2025\"\n{cap}\n[[grant]]\nbeneficiary = \"b{b}\"\nprogramme = \"national-2025\""
        )
        .unwrap();
    }
    t
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connects")
}

fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// The newest stored version and its hash, read from the database itself.
fn stored_head(url: &str) -> Option<(u64, String)> {
    const SQL: &str =
        "SELECT version, content_hash FROM registry_versions ORDER BY version DESC LIMIT 1";
    if let Some(path) = url.strip_prefix("sqlite://") {
        let c = rusqlite::Connection::open(path).unwrap();
        let mut stmt = c.prepare(SQL).unwrap();
        let mut rows = stmt.query([]).unwrap();
        rows.next()
            .unwrap()
            .map(|r| (r.get::<_, i64>(0).unwrap() as u64, r.get(1).unwrap()))
    } else {
        let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
        c.query_opt(SQL, &[])
            .unwrap()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
    }
}

/// A usage CSV line for beneficiary `b` on provider p0's GPU.
fn usage_line(id: &str, beneficiary: &str) -> String {
    format!(
        "p0,{id},{beneficiary},p0-gpu,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,1,10.00\n"
    )
}

fn larger_than_the_message_limit_and_patched(db: Db) {
    let config = db.dir.join("limits.toml");
    std::fs::write(&config, "[limits]\nmessage_bytes_max = 65536\n").unwrap();
    let s = Server::start_with(db, &["--config", config.to_str().unwrap()]);
    let admin = s.token(&["--role", "admin"]);
    let finance = s.token(&["--role", "finance"]);
    let p0 = s.token(&["--role", "provider", "--provider", "p0"]);
    // About 480 KB: more than seven times the server's 64 KiB message limit.
    let text = city_registry(2_000, "");
    assert!(text.len() > 7 * 65_536, "{} bytes", text.len());
    let file = s.file("city.toml", &text);
    let out = s.ok(&admin, &["registry", "import", "--file", &file]);
    assert!(
        out.contains("registry version 1 loaded") && out.contains("2000 beneficiary(ies)"),
        "{out}"
    );
    let again = s.ok(&admin, &["registry", "import", "--file", &file]);
    assert!(again.contains("registry version 1 unchanged"), "{again}");

    // Nobody can be ingested for before the patch: "b-new" is not registered.
    let usage = s.file(
        "usage.csv",
        &format!("{HEADER}{}", usage_line("r-before", "b-new")),
    );
    let before = s.run(&p0, &["usage", "import", "--file", &usage]);
    let before_out = String::from_utf8_lossy(&before.stdout).into_owned()
        + &String::from_utf8_lossy(&before.stderr);
    assert!(before_out.contains("rejected 1"), "{before_out}");

    let patch = s.file(
        "patch.toml",
        "[[beneficiary]]\nid = \"b-new\"\nname = \"新企业\"\nkind = \"enterprise\"\n\n[[grant]]\nbeneficiary = \"b-new\"\nprogramme = \"city-2025\"\n\n[[beneficiary]]\nid = \"b1\"\nname = \"改名\"\nkind = \"university\"\n",
    );
    let out = s.ok(&finance, &["registry", "patch", "--file", &patch]);
    assert!(
        out.contains(
            "patch onto version 1: beneficiaries 1 added, 1 changed; grants 1 added, 0 changed"
        ),
        "{out}"
    );
    assert!(
        out.contains("registry version 2 loaded") && out.contains("2001 beneficiary(ies)"),
        "{out}"
    );
    let usage = s.file(
        "usage2.csv",
        &format!("{HEADER}{}", usage_line("r-after", "b-new")),
    );
    let after = s.run(&p0, &["usage", "import", "--file", &usage]);
    let after = String::from_utf8_lossy(&after.stdout);
    assert!(after.contains("accepted 1,"), "{after}");

    // A patch that breaks the registry is refused, naming the entry, and stores nothing.
    let bad = s.file(
        "bad.toml",
        "[[grant]]\nbeneficiary = \"nobody\"\nprogramme = \"city-2025\"\n",
    );
    let err = s.fails(&admin, &["registry", "patch", "--file", &bad]);
    assert!(err.contains("nobody"), "{err}");
    let provider_patch = s.file("provider.toml", "[[provider]]\nid = \"p9\"\n");
    let err = s.fails(&admin, &["registry", "patch", "--file", &provider_patch]);
    assert!(
        err.contains("provider") && err.contains("only [[beneficiary]] and [[grant]]"),
        "{err}"
    );
    assert_eq!(stored_head(&s.db.url).unwrap().0, 2);

    // The patch is audited as registry.patch of the version it made.
    let audit = s.db.dir.join("audit.csv");
    let o = support::bin()
        .args(["audit", "export", "--database-url", &s.db.url, "--out"])
        .arg(&audit)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let audit = std::fs::read_to_string(&audit).unwrap();
    let patched = audit
        .lines()
        .find(|l| l.contains("registry.patch"))
        .unwrap_or_else(|| panic!("a registry.patch entry: {audit}"));
    assert!(patched.contains(",registry:v2,"), "{patched}");
}

// A registry over seven times the message limit loads through the CLI; a patch adds a
// beneficiary who can then be ingested for, and is audited.
#[test]
fn a_registry_larger_than_the_message_limit_loads_and_a_patch_adds_a_beneficiary() {
    larger_than_the_message_limit_and_patched(sqlite_db().unwrap());
    if let Some(db) = pg_db() {
        larger_than_the_message_limit_and_patched(db);
    }
}

/// The registry with beneficiary ids of its own (`k3b17`), so each load interns new names, as a
/// city's registry with new beneficiaries does.
fn fresh_names(text: String, k: u32) -> String {
    text.replace("id = \"b", &format!("id = \"k{k}b"))
        .replace("beneficiary = \"b", &format!("beneficiary = \"k{k}b"))
}

fn deadline_cut_loads_are_installed_or_absent(db: Db) {
    let s = Server::start(db);
    let admin = s.token(&["--role", "admin"]);
    runtime().block_on(async {
        let mut client = RegistryServiceClient::new(channel(s.addr()).await);
        // An uncut load's duration, to spread the deadlines below over it.
        let started = Instant::now();
        let text = fresh_names(city_registry(20_000, ""), 0);
        client
            .load_registry(bearer(
                pb::LoadRegistryRequest {
                    file_name: "t0.toml".into(),
                    toml_text: text,
                },
                &admin,
            ))
            .await
            .expect("the first load succeeds");
        let whole = started.elapsed();
        let mut cut = 0;
        for k in 1..=6u32 {
            let text = fresh_names(city_registry(20_000, ""), k);
            let mut request = bearer(
                pb::LoadRegistryRequest {
                    file_name: format!("t{k}.toml"),
                    toml_text: text,
                },
                &admin,
            );
            request.set_timeout(whole * k / 6);
            if let Err(status) = client.load_registry(request).await {
                // The client's timer or the server's deadline, whichever fires first.
                assert!(
                    matches!(
                        status.code(),
                        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
                    ),
                    "{status:?}"
                );
                cut += 1;
            }
            // Whatever the deadline did, the stored newest version is the installed one once
            // the load has finished (the check waits for it).
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let installed = client
                    .get_registry(bearer(pb::GetRegistryRequest {}, &admin))
                    .await
                    .unwrap()
                    .into_inner()
                    .current
                    .expect("a version is installed");
                let stored = tokio::task::block_in_place(|| stored_head(&s.db.url))
                    .expect("a version is stored");
                if (installed.version, installed.content_hash.clone()) == stored {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "attempt {k}: version {} is stored but version {} is installed",
                    stored.0,
                    installed.version
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        assert!(
            cut > 0,
            "some load was cut by its deadline (whole load {whole:?})"
        );
    });
}

// A load cut by the client's deadline is either not committed or committed and installed:
// GetRegistry always ends up showing the newest stored version.
#[test]
fn a_load_cut_by_its_deadline_is_installed_or_not_committed() {
    deadline_cut_loads_are_installed_or_absent(sqlite_db().unwrap());
    if let Some(db) = pg_db() {
        deadline_cut_loads_are_installed_or_absent(db);
    }
}

fn ingest_answers_during_a_large_load(db: Db) {
    let s = Server::start(db);
    let admin = s.token(&["--role", "admin"]);
    let p0 = s.token(&["--role", "provider", "--provider", "p0"]);
    let small = s.file("small.toml", &city_registry(10, ""));
    s.ok(&admin, &["registry", "import", "--file", &small]);
    let big = s.file("big.toml", &city_registry(50_000, "-big"));
    let addr = s.addr().to_owned();
    runtime().block_on(async {
        let mut metering = MeteringServiceClient::new(channel(&addr).await);
        let import = {
            let (admin, big) = (admin.clone(), big.clone());
            let process = support::bin()
                .args(["registry", "import", "--file", &big])
                .env("SUANLI_SERVER", &addr)
                .env("SUANLI_TOKEN", &admin)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            tokio::task::spawn_blocking(move || process.wait_with_output().unwrap())
        };
        let mut during = Vec::new();
        let mut batch = 0;
        while !import.is_finished() {
            let records = (0..100)
                .map(|i| pb::UsageRecord {
                    provider: "p0".into(),
                    record_id: format!("during-{batch}-{i}"),
                    beneficiary: format!("b{}", i % 10),
                    sku: "p0-gpu".into(),
                    start: Some(prost_types::Timestamp {
                        seconds: 1_740_758_400 + i64::from(batch) * 3600,
                        nanos: 0,
                    }),
                    end: Some(prost_types::Timestamp {
                        seconds: 1_740_758_400 + i64::from(batch) * 3600 + 60,
                        nanos: 0,
                    }),
                    quantity: "1".into(),
                    amount_fen: 100,
                })
                .collect();
            let started = Instant::now();
            let response = metering
                .ingest(bearer(
                    pb::IngestRequest {
                        batch_id: batch.to_string(),
                        records,
                    },
                    &p0,
                ))
                .await
                .expect("ingest answers during the load");
            during.push(started.elapsed());
            assert_eq!(response.into_inner().outcomes.len(), 100);
            batch += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let output = import.await.unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(out.contains("50000 beneficiary(ies)"), "{out}");
        assert!(!during.is_empty(), "ingest was called during the load");
        let slowest = during.iter().max().unwrap();
        assert!(
            *slowest < Duration::from_secs(5),
            "an Ingest call took {slowest:?} during the load ({} calls)",
            during.len()
        );
    });
}

// Ingest calls of another provider keep answering (well within 5 s) while a 50,000-beneficiary
// registry loads.
#[test]
fn ingest_answers_during_a_large_registry_load() {
    ingest_answers_during_a_large_load(sqlite_db().unwrap());
    if let Some(db) = pg_db() {
        ingest_answers_during_a_large_load(db);
    }
}
