//! Power loss and storage faults: `suanli serve` runs on SQLite under an LD_PRELOAD shim
//! (`support/powercut.c`) that keeps, for every file of the database, the image a disk would
//! hold after a power cut: the content as of the file's last fsync, and only if its directory
//! entry was synced. A power cut is a SIGKILL followed by replacing every file with that image,
//! so every write not yet synced is lost, which a SIGKILL alone never does (the operating system
//! keeps the page cache). After seeded cuts while a client ingests with retries, the database
//! must hold every record the client saw acknowledged, exactly once, with its content, and
//! accruals equal to a recount. The same shim fails writes (ENOSPC, EIO) and syncs (EIO) on
//! demand: a batch is never acknowledged for records that were not stored, nothing acknowledged
//! is lost, and the server either serves on or stops with a non-zero exit. PostgreSQL's disk
//! cannot be cut here; its test proves `suanli serve` refuses a database whose commits return
//! before they are flushed.
//!
//! `SUANLI_POWERCUT_SEED` sets the seed (printed; default 11), `SUANLI_POWERCUT_CUTS` the number
//! of cuts (default 8), `SUANLI_POWERCUT_SYNC_DELAY_US` the time every sync takes (default
//! 2,000 µs). The shim is compiled with `cc`; without a C compiler the tests skip, unless
//! `SUANLI_REQUIRE_POWERCUT=1`.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use suanli_proto::v1 as pb;
use suanli_proto::v1::metering_service_client::MeteringServiceClient;
use support::{Rng, bin, env_u64};

/// 2025-01-01T00:00:00+08:00.
const JANUARY_START: i64 = 1_735_660_800;
const BATCH_RECORDS: usize = 50;
const CLIENT_WORKERS: usize = 4;
const CLIENT_PAUSE_MS: u64 = 20;

const REGISTRY: &str = r#"
[[programme]]
id = "power-2025"
funder = "municipal"
year = 2025
beneficiary_kinds = ["enterprise"]
payee = "provider"
funding = [ { funder = "city", share = "1" } ]
rates = [ { category = "compute", chip_origin = "domestic", ratio = "0.30" } ]
[[provider]]
id = "dc-a"
[[sku]]
id = "a-dom"
provider = "dc-a"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
[[beneficiary]]
id = "e0"
kind = "enterprise"
[[beneficiary]]
id = "e1"
kind = "enterprise"
[[grant]]
beneficiary = "e0"
programme = "power-2025"
[[grant]]
beneficiary = "e1"
programme = "power-2025"
"#;

/// The records of batch `index`: a pure function of the seed and the index, so a retry sends
/// exactly the same content.
fn batch(seed: u64, index: u64) -> Vec<pb::UsageRecord> {
    let mut rng = Rng(seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    (0..BATCH_RECORDS)
        .map(|k| {
            let start = JANUARY_START + rng.below(24 * 30) as i64 * 3600;
            pb::UsageRecord {
                provider: "dc-a".into(),
                record_id: format!("s{seed}-b{index}-r{k}"),
                beneficiary: format!("e{}", rng.below(2)),
                sku: "a-dom".into(),
                start: Some(prost_types::Timestamp {
                    seconds: start,
                    nanos: 0,
                }),
                end: Some(prost_types::Timestamp {
                    seconds: start + 3600,
                    nanos: 0,
                }),
                quantity: "1".into(),
                amount_fen: 1 + rng.below(99_999) as i64,
            }
        })
        .collect()
}

/// The shim, compiled once per test process; `None` (skip) when there is no C compiler and
/// `SUANLI_REQUIRE_POWERCUT` is not 1.
fn shim() -> Option<&'static Path> {
    static SHIM: OnceLock<Option<PathBuf>> = OnceLock::new();
    SHIM.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/powercut.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("libpowercut-{}.so", std::process::id()));
        let required = std::env::var("SUANLI_REQUIRE_POWERCUT").is_ok_and(|v| v == "1");
        let built = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&out)
            .arg(&source)
            .arg("-ldl")
            .output();
        match built {
            Ok(o) if o.status.success() => Some(out),
            Ok(o) => panic!(
                "the power-cut shim does not compile: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) if !required => {
                eprintln!("skipping the power-loss test: no C compiler (cc: {e})");
                None
            }
            Err(e) => panic!("SUANLI_REQUIRE_POWERCUT=1 but cc cannot run: {e}"),
        }
    })
    .as_deref()
}

/// A database directory on the modelled disk: `data/` holds the files `suanli` works on,
/// `durable/` what the shim says would survive a power cut, `fault` the shim's control file.
struct Disk {
    root: PathBuf,
    shim: &'static Path,
}

impl Disk {
    fn new(label: &str) -> Option<Disk> {
        let shim = shim()?;
        let root = suanli_testkit::scratch_dir(label);
        for sub in ["data", "durable/data", "durable/linked"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        Some(Disk { root, shim })
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn durable(&self) -> PathBuf {
        self.root.join("durable")
    }

    fn url(&self) -> String {
        format!("sqlite://{}/suanli.db", self.data().display())
    }

    fn fault(&self) -> PathBuf {
        self.root.join("fault")
    }

    fn tripped(&self) -> PathBuf {
        self.root.join("fault.tripped")
    }

    /// Present while the server has failed in a way that forbids it to acknowledge anything.
    fn refusing(&self) -> PathBuf {
        self.root.join("refusing")
    }

    /// `suanli` on the modelled disk.
    fn command(&self) -> Command {
        let mut c = bin();
        c.env("LD_PRELOAD", self.shim)
            .env("POWERCUT_DIR", self.data())
            .env("POWERCUT_SHADOW", self.durable())
            .env("POWERCUT_CONTROL", self.fault())
            .env(
                "POWERCUT_SYNC_DELAY_US",
                env_u64("SUANLI_POWERCUT_SYNC_DELAY_US", 2_000).to_string(),
            );
        c
    }

    /// With every process on the disk stopped: puts back what would survive the loss of power
    /// and returns how many files lost writes that were never synced.
    fn power_cut(&self) -> usize {
        let (data, durable) = (self.data(), self.durable());
        let linked: BTreeSet<String> = names(&durable.join("linked"));
        let mut lost = 0;
        for name in names(&data) {
            let image = durable.join("data").join(&name);
            let now = std::fs::read(data.join(&name)).unwrap();
            let kept = if linked.contains(&name) {
                std::fs::read(&image).unwrap_or_default()
            } else {
                Vec::new()
            };
            // The shared-memory index is never synced by design; SQLite rebuilds it.
            if now != kept && !name.ends_with("-shm") {
                lost += 1;
            }
            std::fs::remove_file(data.join(&name)).unwrap();
        }
        for name in names(&durable.join("data")) {
            if !linked.contains(&name) {
                std::fs::remove_file(durable.join("data").join(&name)).unwrap();
            }
        }
        for name in &linked {
            let image = durable.join("data").join(name);
            let content = std::fs::read(&image).unwrap_or_default();
            std::fs::write(data.join(name), content).unwrap();
        }
        lost
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        // Kept after a failure, for the server's log and the files as the cut left them.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// The server under test: restarted on the same address and disk after every cut.
struct Serve {
    child: Option<Child>,
    addr: String,
    log: PathBuf,
}

impl Serve {
    fn start(disk: &Disk) -> Serve {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = Serve {
            child: None,
            addr: format!("127.0.0.1:{port}"),
            log: disk.root.join("serve.log"),
        };
        s.restart(disk);
        s
    }

    fn restart(&mut self, disk: &Disk) {
        assert!(self.child.is_none(), "one server at a time");
        let log = std::fs::File::create(&self.log).unwrap();
        let mut child = disk
            .command()
            .args([
                "serve",
                "--addr",
                &self.addr,
                "--database-url",
                &disk.url(),
                "--http-addr",
                "off",
            ])
            .env("SUANLI_LIMITS_TOKEN_REQUESTS_PER_MINUTE", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("serve starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&self.addr).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("suanli serve exited at start: {status}: {}", self.stderr());
            }
            assert!(Instant::now() < deadline, "server listens within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown hook runs.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("a running server");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap the killed server");
    }

    /// The exit status if the server ends within `limit`, else None (it is still running).
    fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("a running server");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the client saw.
#[derive(Default)]
struct Seen {
    /// (provider, record_id) → amount_fen of every acknowledged record.
    records: HashMap<(String, String), i64>,
    acknowledged_batches: u64,
    failed_attempts: u64,
    /// Attempts that started after a fault hit the server (`Disk::refusing` existed) and failed.
    refused_after_fault: u64,
    unacknowledged: HashSet<u64>,
    violations: Vec<String>,
}

/// `CLIENT_WORKERS` tasks send unary `Ingest` batches; a batch without an acknowledgement goes
/// back to the queue and is sent again, identical, until acknowledged. New batches stop when
/// `stop` is set; the client returns once every batch it started is acknowledged. An attempt
/// that starts while `refusing` exists (a fault hit the server) must not be acknowledged by that
/// server: the harness removes the file only once that server has ended, and waits before it
/// starts the next one.
fn run_client(
    addr: String,
    token: String,
    seed: u64,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    refusing: PathBuf,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(20))
                .connect_lazy();
            let next = Arc::new(AtomicU64::new(0));
            let retry: Arc<Mutex<Vec<u64>>> = Arc::default();
            let in_flight = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for _ in 0..CLIENT_WORKERS {
                let (channel, token, stop, seen, next, retry, in_flight, refusing) = (
                    channel.clone(),
                    token.clone(),
                    stop.clone(),
                    seen.clone(),
                    next.clone(),
                    retry.clone(),
                    in_flight.clone(),
                    refusing.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut client = MeteringServiceClient::new(channel);
                    loop {
                        let queued = retry.lock().unwrap().pop();
                        let index = match queued {
                            Some(i) => i,
                            None if !stop.load(Ordering::SeqCst) => {
                                next.fetch_add(1, Ordering::SeqCst)
                            }
                            None if in_flight.load(Ordering::SeqCst) == 0 => break,
                            None => {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                continue;
                            }
                        };
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        let records = batch(seed, index);
                        let mut request = tonic::Request::new(pb::IngestRequest {
                            batch_id: index.to_string(),
                            records: records.clone(),
                        });
                        request.metadata_mut().insert(
                            "authorization",
                            format!("Bearer {token}").parse().unwrap(),
                        );
                        let after_fault = refusing.exists();
                        match client.ingest(request).await {
                            Ok(response) => {
                                let ack = response.into_inner();
                                let mut seen = seen.lock().unwrap();
                                if after_fault {
                                    seen.violations.push(format!(
                                        "batch {index} was acknowledged by a server after its storage failed"
                                    ));
                                }
                                let retried = seen.unacknowledged.remove(&index);
                                seen.acknowledged_batches += 1;
                                if ack.outcomes.len() != records.len() {
                                    seen.violations.push(format!(
                                        "batch {index}: {} outcomes for {} records",
                                        ack.outcomes.len(),
                                        records.len()
                                    ));
                                }
                                for (r, &outcome) in records.iter().zip(&ack.outcomes) {
                                    let ok = outcome == pb::Outcome::Accepted as i32
                                        || (outcome == pb::Outcome::Duplicate as i32 && retried);
                                    if !ok {
                                        seen.violations.push(format!(
                                            "record {}/{} of batch {index} (retried: {retried}): outcome {outcome}",
                                            r.provider, r.record_id
                                        ));
                                    }
                                    let key = (r.provider.clone(), r.record_id.clone());
                                    if seen.records.insert(key, r.amount_fen).is_some() {
                                        seen.violations.push(format!(
                                            "record {}/{} acknowledged twice",
                                            r.provider, r.record_id
                                        ));
                                    }
                                }
                            }
                            Err(_) => {
                                {
                                    let mut seen = seen.lock().unwrap();
                                    seen.failed_attempts += 1;
                                    seen.refused_after_fault += u64::from(after_fault);
                                    seen.unacknowledged.insert(index);
                                }
                                retry.lock().unwrap().push(index);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(CLIENT_PAUSE_MS)).await;
                    }
                }));
            }
            for t in tasks {
                t.await.expect("client task");
            }
        });
    })
}

/// A running scenario: the disk, the server, its admin token and the client.
struct Run {
    disk: Disk,
    server: Serve,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    client: Option<std::thread::JoinHandle<()>>,
}

impl Run {
    fn start(disk: Disk, seed: u64) -> Run {
        let o = disk
            .command()
            .args(["token", "create", "--role", "admin", "--database-url"])
            .arg(disk.url())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let admin = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        let server = Serve::start(&disk);
        let registry = disk.root.join("registry.toml");
        std::fs::write(&registry, REGISTRY).unwrap();
        let o = bin()
            .args(["registry", "import", "--file"])
            .arg(&registry)
            .env("SUANLI_SERVER", &server.addr)
            .env("SUANLI_TOKEN", &admin)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let client = run_client(
            server.addr.clone(),
            admin,
            seed,
            stop.clone(),
            seen.clone(),
            disk.refusing(),
        );
        Run {
            disk,
            server,
            stop,
            seen,
            client: Some(client),
        }
    }

    /// SIGKILL, then every unsynced write is lost; returns how many files lost some.
    fn cut(&mut self) -> usize {
        self.server.kill();
        self.disk.power_cut()
    }

    /// Stops new batches, lets the client have every batch it sent acknowledged, cuts the power
    /// a last time and proves the database holds exactly what was acknowledged.
    fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        self.client
            .take()
            .unwrap()
            .join()
            .expect("the client acknowledges every batch");
        self.cut();
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        assert!(
            seen.unacknowledged.is_empty(),
            "every batch is acknowledged in the end"
        );
        assert!(
            seen.violations.is_empty(),
            "client-side violations: {:?}",
            &seen.violations[..seen.violations.len().min(5)]
        );
        verify(&self.disk.url(), &seen);
        seen
    }
}

/// With the server stopped, on the database alone: the stored records are exactly the records
/// the client saw acknowledged, each once with the amount sent, and the accruals equal a recount
/// of the raw records.
fn verify(url: &str, seen: &Seen) {
    let path = url.strip_prefix("sqlite://").unwrap();
    let db = rusqlite::Connection::open(path).unwrap();
    let mut stored: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut stmt = db
        .prepare(
            "SELECT p.name, u.record_id, u.amount_fen FROM usage_records u \
             JOIN names p ON p.id = u.provider_id AND p.kind = 'provider'",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    for row in rows {
        let (provider, record_id, amount): (String, String, i64) = row.unwrap();
        let key = (provider, record_id);
        assert!(
            seen.records.contains_key(&key),
            "record {}/{} is stored but was never acknowledged",
            key.0,
            key.1
        );
        assert_eq!(seen.records[&key], amount, "record {key:?}: stored amount");
        assert!(
            stored.insert(key.clone(), amount).is_none(),
            "record {key:?} stored twice"
        );
    }
    let lost: Vec<_> = seen
        .records
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .take(5)
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert_eq!(stored.len(), seen.records.len());

    let mut recount: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    let mut stmt = db
        .prepare(
            "SELECT b.name, CAST(u.period AS TEXT), SUM(u.amount_fen), COUNT(*) FROM usage_records u \
             JOIN names b ON b.id = u.beneficiary_id AND b.kind = 'beneficiary' \
             WHERE u.voided_at IS NULL GROUP BY b.name, u.period",
        )
        .unwrap();
    for row in stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        })
        .unwrap()
    {
        let (beneficiary, period, fen, count) = row.unwrap();
        let period = format!("{}-{}", &period[..4], &period[4..]);
        recount.insert((beneficiary, period), (fen, count));
    }
    let accruals: BTreeMap<(String, String), (i64, i64)> = suanli_store::open(url)
        .expect("the store opens")
        .accruals()
        .expect("accruals")
        .into_iter()
        .map(|a| ((a.beneficiary, a.period), (a.amount_fen, a.records)))
        .collect();
    assert!(!recount.is_empty(), "records were stored");
    assert_eq!(accruals, recount, "accruals = recount of the raw records");
}

// Seeded power cuts while a client ingests lose nothing that was acknowledged, store nothing
// twice and leave the accruals equal to a recount; the cuts really do drop unsynced writes.
#[test]
fn power_cuts_under_ingest_lose_nothing_acknowledged_on_sqlite() {
    let Some(disk) = Disk::new("power-cut") else {
        return;
    };
    let seed = env_u64("SUANLI_POWERCUT_SEED", 11);
    let cuts = env_u64("SUANLI_POWERCUT_CUTS", 8);
    println!("power loss on sqlite: seed {seed} (SUANLI_POWERCUT_SEED), {cuts} cuts");
    let started = Instant::now();
    let mut rng = Rng(seed);
    let mut run = Run::start(disk, seed);
    let mut cuts_losing_writes = 0;
    for _ in 0..cuts {
        std::thread::sleep(Duration::from_millis(300 + rng.below(1_200)));
        cuts_losing_writes += usize::from(run.cut() > 0);
        run.server.restart(&run.disk);
    }
    let seen = run.finish();
    println!(
        "sqlite: {cuts} power cuts ({cuts_losing_writes} dropped unsynced writes) in {:.1?}; {} batches acknowledged ({} records), {} failed attempts retried",
        started.elapsed(),
        seen.acknowledged_batches,
        seen.records.len(),
        seen.failed_attempts,
    );
    assert!(
        cuts_losing_writes > 0,
        "no cut dropped an unsynced write: the test would not see a missing fsync"
    );
}

/// Arms a fault and waits until it hits the server; once it has, and `refuse` is set, every
/// attempt that starts is one this server must not acknowledge. The fault is lifted after
/// `hold`; returns the server's exit status if it stops within `stop_within` (None: it serves
/// on).
fn inject(
    run: &mut Run,
    fault: &str,
    refuse: bool,
    hold: Duration,
    stop_within: Duration,
) -> Option<ExitStatus> {
    std::fs::write(run.disk.fault(), fault).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run.disk.tripped().exists() {
        assert!(
            Instant::now() < deadline,
            "the fault {fault:?} hits within 30 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    if refuse {
        std::fs::write(run.disk.refusing(), "").unwrap();
    }
    std::thread::sleep(hold);
    let _ = std::fs::remove_file(run.disk.fault());
    std::fs::remove_file(run.disk.tripped()).unwrap();
    run.server.exited_within(stop_within)
}

/// Restarts the server after it stopped on a fault, on what a power cut leaves: the refusal
/// ends only once the old server has ended, and the pause lets attempts started against it
/// fail first.
fn restart_after_stop(run: &mut Run) {
    std::thread::sleep(Duration::from_millis(1_500));
    let _ = std::fs::remove_file(run.disk.refusing());
    run.disk.power_cut();
    run.server.restart(&run.disk);
}

// A failed flush of the write-ahead log (fdatasync returns EIO once): the batches waiting for it
// are answered with an error, no batch sent afterwards is acknowledged, the server stops with a
// non-zero exit naming the flush, and after a power cut and a restart every acknowledged record
// is stored.
#[test]
fn a_failed_flush_stops_the_server_and_loses_nothing_acknowledged_on_sqlite() {
    let Some(disk) = Disk::new("power-fsync-eio") else {
        return;
    };
    let seed = env_u64("SUANLI_POWERCUT_SEED", 11);
    let mut rng = Rng(seed ^ 0xF5);
    let mut run = Run::start(disk, seed);
    std::thread::sleep(Duration::from_millis(500 + rng.below(1_000)));
    let status = inject(
        &mut run,
        "fdatasync EIO 1 -wal",
        true,
        Duration::ZERO,
        Duration::from_secs(30),
    )
    .expect("the server stops within 30 s of a failed flush");
    assert!(!status.success(), "it exits non-zero: {status}");
    let stderr = run.server.stderr();
    assert!(
        stderr.contains("flushing") && stderr.contains("suanli.db-wal"),
        "the log names the failed flush: {stderr}"
    );
    restart_after_stop(&mut run);
    std::thread::sleep(Duration::from_millis(500));
    let seen = run.finish();
    assert!(
        seen.refused_after_fault > 0,
        "batches sent after the failure were refused"
    );
}

// A failed fsync of the write-ahead log by SQLite itself (a checkpoint, which syncs the log
// before copying it, or a commit): the kernel may have dropped the pages that failed, and a
// later sync that succeeds does not write them again, so the server must acknowledge nothing
// more and stop with a non-zero exit; nothing acknowledged before is lost.
#[test]
fn a_failed_log_sync_by_sqlite_stops_the_server_on_sqlite() {
    let Some(disk) = Disk::new("power-log-fsync-eio") else {
        return;
    };
    let seed = env_u64("SUANLI_POWERCUT_SEED", 11);
    let mut rng = Rng(seed ^ 0x5C);
    let mut run = Run::start(disk, seed);
    std::thread::sleep(Duration::from_millis(500 + rng.below(1_000)));
    let status = inject(
        &mut run,
        "fsync EIO 1 -wal",
        true,
        Duration::ZERO,
        Duration::from_secs(30),
    )
    .expect("the server stops within 30 s of a failed sync of its log");
    assert!(!status.success(), "it exits non-zero: {status}");
    let stderr = run.server.stderr();
    assert!(
        stderr.contains("a sync of the database failed")
            && stderr.contains("nothing more is acknowledged"),
        "the log says why the server stopped: {stderr}"
    );
    restart_after_stop(&mut run);
    std::thread::sleep(Duration::from_millis(500));
    let seen = run.finish();
    assert!(
        seen.refused_after_fault > 0,
        "batches sent after the failure were refused"
    );
}

/// A write fault held for a while: every write to the database's files fails with `errno`,
/// then the disk recovers.
fn write_fault(label: &str, errno: &str) {
    let Some(disk) = Disk::new(label) else {
        return;
    };
    let seed = env_u64("SUANLI_POWERCUT_SEED", 11);
    let mut rng = Rng(seed ^ 0x3F);
    let mut run = Run::start(disk, seed);
    std::thread::sleep(Duration::from_millis(500 + rng.below(1_000)));
    let failed_before = run.seen.lock().unwrap().failed_attempts;
    match inject(
        &mut run,
        &format!("write {errno} 0"),
        false,
        Duration::from_millis(500),
        Duration::from_secs(2),
    ) {
        None => println!("{errno} on write: the server serves on"),
        Some(status) => {
            assert!(!status.success(), "a server that stops exits non-zero");
            println!("{errno} on write: the server stopped ({status})");
            restart_after_stop(&mut run);
        }
    }
    let failed_during = run.seen.lock().unwrap().failed_attempts - failed_before;
    assert!(failed_during > 0, "batches failed while writes failed");
    // The disk works again: batches are acknowledged again.
    let acknowledged = run.seen.lock().unwrap().acknowledged_batches;
    let deadline = Instant::now() + Duration::from_secs(20);
    while run.seen.lock().unwrap().acknowledged_batches < acknowledged + 20 {
        assert!(Instant::now() < deadline, "ingest recovers within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = run.finish();
    println!(
        "{errno} on write: {} batches acknowledged, {failed_during} attempts failed under the fault",
        seen.acknowledged_batches
    );
}

// A full disk: batches under it are answered with an error and none of their records is
// acknowledged; once space is back the server serves on; nothing acknowledged is lost.
#[test]
fn a_full_disk_fails_batches_and_ingest_recovers_on_sqlite() {
    write_fault("power-enospc", "ENOSPC");
}

// EIO on write: the same, whether the server serves on or stops (non-zero) to be restarted.
#[test]
fn write_errors_fail_batches_and_lose_nothing_acknowledged_on_sqlite() {
    write_fault("power-eio", "EIO");
}

// PostgreSQL's commit is durable only with `synchronous_commit` and `fsync` on; the disk under
// PostgreSQL cannot be cut here, so the server must refuse, at start, a database that would
// acknowledge commits before they are on disk (here: `synchronous_commit = off` set on the
// database), naming the setting and the opt-out, and start with the opt-out.
#[test]
fn serve_refuses_a_postgres_database_whose_commits_are_not_flushed() {
    let Some(db) = suanli_testkit::postgres("power_unsynced") else {
        return;
    };
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        ))
        .unwrap();
    drop(admin);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serve = |allow: bool| {
        let mut c = bin();
        c.args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &db.url, "--http-addr", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if allow {
            c.env("SUANLI_ALLOW_UNSYNCED_COMMIT", "1");
        }
        c.spawn().expect("serve starts")
    };
    let mut refused = serve(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            refused.kill().unwrap();
            panic!("serve runs on a database whose commits are not flushed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = refused.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "serve refuses: {stderr}");
    assert!(
        stderr.contains("synchronous_commit = off")
            && stderr.contains("SUANLI_ALLOW_UNSYNCED_COMMIT"),
        "the error names the setting and the opt-out: {stderr}"
    );
    let mut allowed = serve(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            allowed.try_wait().unwrap().is_none(),
            "with the opt-out, serve starts"
        );
        assert!(Instant::now() < deadline, "server listens within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    allowed.kill().unwrap();
    allowed.wait().unwrap();
}
