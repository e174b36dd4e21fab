//! Balances while usage streams in: N beneficiaries × 3 providers, ingest through the server's
//! writer (group commit) at half the maximum rate measured first, and 200 balance look-ups a
//! second from 8 clients beside the writer as the gRPC balance service makes them, for a
//! set time; then the same ingest without look-ups, for comparison; the console's enterprise
//! page and finance overview once a second beside them; and the same again under a pool that
//! binds (every line of the programme moves at each change). On SQLite and PostgreSQL. The
//! first look-up and the console's first pages, which build what is kept after a start or a
//! registry load, are timed on their own before the phases.
//!
//! `cargo bench -p suanli-app --bench balances_live`, with
//! `SUANLI_BENCH_BENEFICIARIES` (default 100,000), `SUANLI_BENCH_SECS` (each measured phase,
//! default 60), `SUANLI_BENCH_BACKENDS` (default `sqlite,postgres`) and PostgreSQL from
//! `SUANLI_TEST_POSTGRES_URL` (default postgres://postgres@127.0.0.1:5432/test).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use suanli_app::balances::{BalanceReader, Balances};
use suanli_app::ingest::Writer;
use suanli_domain::money::Fen;
use suanli_domain::registry::{Category, ChipOrigin, Class};
use suanli_domain::usage::{Period, UsageRecord};
use suanli_store::{Candidate, RegistryNames};

const PROVIDERS: usize = 3;
const BATCH: usize = 1_000;
const STREAMS: usize = 4;
const LOOKUP_CLIENTS: usize = 8;
const LOOKUPS_PER_SECOND: u64 = 200;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let n = env("SUANLI_BENCH_BENEFICIARIES", 100_000) as usize;
    let secs = env("SUANLI_BENCH_SECS", 60);
    let backends =
        std::env::var("SUANLI_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for backend in backends.split(',') {
        let db = match backend {
            "sqlite" => suanli_testkit::sqlite("bench_balances"),
            "postgres" => suanli_testkit::postgres("bench_balances")
                .ok_or_else(|| anyhow::anyhow!("the PostgreSQL run needs PostgreSQL"))?,
            other => anyhow::bail!("SUANLI_BENCH_BACKENDS: unknown backend {other:?}"),
        };
        println!("== {backend}: {n} beneficiaries × {PROVIDERS} providers, {secs} s per phase");
        runtime.block_on(run(&db.url, n, Duration::from_secs(secs)))?;
    }
    Ok(())
}

/// The bench registry: one municipal programme with a pool and a beneficiary cap.
fn registry_text(n: usize, pool: &str) -> String {
    let mut text = format!(
        "[[programme]]\nid = \"city\"\nfunder = \"municipal\"\nyear = 2025\npool = \"{pool}\"\nbeneficiary_cap = \"8000000.00\"\n\
         beneficiary_kinds = [\"enterprise\"]\npayee = \"provider\"\nrates = [ {{ category = \"compute\", chip_origin = \"domestic\", ratio = \"0.30\" }} ]\n"
    );
    for p in 1..=PROVIDERS {
        let _ = writeln!(
            text,
            "[[provider]]\nid = \"p{p}\"\n[[sku]]\nid = \"s{p}\"\nprovider = \"p{p}\"\ncategory = \"compute\"\nchip_origin = \"domestic\"\nunit = \"gpu_hour\""
        );
    }
    for b in 1..=n {
        let _ = writeln!(
            text,
            "[[beneficiary]]\nid = \"b{b}\"\nkind = \"enterprise\"\n[[grant]]\nbeneficiary = \"b{b}\"\nprogramme = \"city\""
        );
    }
    text
}

async fn load_registry(writer: &Writer, text: String) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let (registry, _) = suanli_domain::Registry::from_toml("bench.toml", &text)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let registry = Arc::new(registry);
    // As `suanli serve` does when it loads a version: settlement and balances reuse the parse.
    suanli_app::registry::remember_registry(&registry.content_hash, registry.clone());
    writer
        .call(move |s| {
            s.registry_insert(
                &registry.content_hash,
                &text,
                &RegistryNames::of(&registry),
                chrono::Utc::now(),
            )
        })
        .await??;
    Ok(started.elapsed())
}

/// A small deterministic generator (no float, no shared state).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % below
    }
}

static RECORD_IDS: AtomicU64 = AtomicU64::new(0);

/// A batch of records of random (beneficiary, provider) pairs in March or April 2025. The
/// records are built as validation would leave them (the bench measures the writer and the
/// look-ups, not validation).
fn batch(
    n: usize,
    rng: &mut Lcg,
    pairs: Option<&mut dyn Iterator<Item = (usize, usize)>>,
) -> Vec<Candidate> {
    let class = Class {
        category: Category::Compute,
        chip_origin: Some(ChipOrigin::Domestic),
        registered_model: None,
    };
    let mut pairs = pairs;
    let mut out = Vec::with_capacity(BATCH);
    for _ in 0..BATCH {
        let (b, p) = match pairs.as_mut() {
            Some(it) => match it.next() {
                Some(pair) => pair,
                None => break,
            },
            None => (rng.next(n) + 1, rng.next(PROVIDERS) + 1),
        };
        let id = RECORD_IDS.fetch_add(1, Ordering::Relaxed);
        let month = 3 + (id % 2) as u32;
        let start = chrono::DateTime::parse_from_rfc3339(&format!(
            "2025-{month:02}-{:02}T{:02}:00:00+08:00",
            id % 28 + 1,
            id % 24
        ))
        .expect("time");
        let record = UsageRecord {
            provider: format!("p{p}"),
            record_id: format!("r{id}"),
            beneficiary: format!("b{b}"),
            sku: format!("s{p}"),
            start,
            end: start + chrono::Duration::minutes(30),
            quantity: rust_decimal::Decimal::ONE,
            amount: Fen(10_000 + rng.next(90_000) as i64),
        };
        out.push(Candidate {
            period: Period::of_instant(record.end),
            class,
            capacity: None,
            registry_version: 1,
            record,
        });
    }
    out
}

fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * per_mille / 1000).min(sorted.len() - 1)]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "{name}: p50 {:.2?}, p99 {:.2?}, p99.9 {:.2?}, max {:.2?} ({} samples)",
        percentile(&samples, 500),
        percentile(&samples, 990),
        percentile(&samples, 999),
        samples.last().copied().unwrap_or_default(),
        samples.len()
    )
}

/// Sends batches over `STREAMS` streams, paced to `rate` records/s (0: as fast as the writer
/// takes them), until `stop`; returns the records acknowledged and the batch-ack latencies.
async fn ingest(
    writer: &Writer,
    n: usize,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> (u64, Vec<Duration>) {
    let mut tasks = Vec::new();
    for s in 0..STREAMS {
        let writer = writer.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(s as u64 + 1);
            let mut acked = 0u64;
            let mut latencies = Vec::new();
            let every = (rate > 0)
                .then(|| Duration::from_nanos(1_000_000_000 * (BATCH * STREAMS) as u64 / rate));
            let started = tokio::time::Instant::now()
                + every.map_or(Duration::ZERO, |e| e * s as u32 / STREAMS as u32);
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if let Some(every) = every {
                    tokio::time::sleep_until(started + every * k).await;
                    k += 1;
                }
                let candidates = batch(n, &mut rng, None);
                let t = Instant::now();
                let done = writer.ingest(candidates, Vec::new()).await.expect("ingest");
                latencies.push(t.elapsed());
                acked += done.decisions.len() as u64;
            }
            (acked, latencies)
        }));
    }
    let mut acked = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (a, l) = t.await.expect("ingest task");
        acked += a;
        latencies.extend(l);
    }
    (acked, latencies)
}

/// Runs `f` on the balance thread as the server does (`Shared::balances`). Returns the result
/// and the time `f` took there, without waiting for the look-ups queued before it.
async fn on_reader<R: Send + 'static>(
    reader: &Balances,
    f: impl FnOnce(&mut BalanceReader) -> R + Send + 'static,
) -> (R, Duration) {
    on_reader_as(reader, false, f).await
}

/// As [`on_reader`] for what reads every beneficiary's figures, as the console's finance
/// overview does (`Balances::call_whole`): the thread catches up beside the look-ups first.
async fn on_reader_whole<R: Send + 'static>(
    reader: &Balances,
    f: impl FnOnce(&mut BalanceReader) -> R + Send + 'static,
) -> (R, Duration) {
    on_reader_as(reader, true, f).await
}

async fn on_reader_as<R: Send + 'static>(
    reader: &Balances,
    whole: bool,
    f: impl FnOnce(&mut BalanceReader) -> R + Send + 'static,
) -> (R, Duration) {
    reader
        .call_as(whole, move |r| {
            let t = Instant::now();
            let result = f(r);
            (result, t.elapsed())
        })
        .await
        .expect("the balance thread runs")
}

/// Balance look-ups from `LOOKUP_CLIENTS` clients at `LOOKUPS_PER_SECOND` in all, as the gRPC
/// balance service makes them (beside the writer, one shared reader), until `stop`.
async fn lookups(reader: Balances, n: usize, stop: Arc<AtomicBool>) -> Vec<(Duration, Duration)> {
    let mut tasks = Vec::new();
    for c in 0..LOOKUP_CLIENTS {
        let reader = reader.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let every =
                Duration::from_nanos(1_000_000_000 * LOOKUP_CLIENTS as u64 / LOOKUPS_PER_SECOND);
            let start = tokio::time::Instant::now() + every * c as u32 / LOOKUP_CLIENTS as u32;
            let mut rng = Lcg(1000 + c as u64);
            let mut out = Vec::new();
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(start + every * k).await;
                k += 1;
                let b = format!("b{}", rng.next(n) + 1);
                let t = Instant::now();
                let (result, held) = on_reader(&reader, move |r| r.balance(&b, 2025)).await;
                result.expect("balance");
                out.push((t.elapsed(), held));
            }
            out
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await.expect("look-up task"));
    }
    out
}

/// The console's pages once a second each, on the same reader: the enterprise page (balance
/// and postings by month) and the finance overview.
async fn console(
    reader: Balances,
    n: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut enterprise = Vec::new();
    let mut overview = Vec::new();
    let mut rng = Lcg(77);
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let b = format!("b{}", rng.next(n) + 1);
        let t = Instant::now();
        on_reader(&reader, move |r| {
            r.balance(&b, 2025)?;
            r.monthly_settled(&b, 2025)
        })
        .await
        .0
        .expect("enterprise page");
        enterprise.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        on_reader_whole(&reader, |r| r.programme_overview(2025))
            .await
            .0
            .expect("overview");
        overview.push(t.elapsed());
    }
    (enterprise, overview)
}

/// Ingest at `rate` for `secs`, with or without look-ups and console pages beside it.
async fn phase(
    name: &str,
    writer: &Writer,
    reader: &Balances,
    n: usize,
    rate: u64,
    secs: Duration,
    with_lookups: bool,
) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let complete_before = suanli_app::metrics::METRICS.balance_complete_reads.get();
    let started = Instant::now();
    let ingest_task = {
        let writer = writer.clone();
        let stop = stop.clone();
        tokio::spawn(async move { ingest(&writer, n, rate, stop).await })
    };
    let lookup_task = with_lookups.then(|| {
        let stop = stop.clone();
        let reader = reader.clone();
        tokio::spawn(async move { lookups(reader, n, stop).await })
    });
    let console_task = with_lookups.then(|| {
        let stop = stop.clone();
        let reader = reader.clone();
        tokio::spawn(async move { console(reader, n, stop).await })
    });
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, latencies) = ingest_task.await.expect("ingest");
    let elapsed = started.elapsed();
    // Integer arithmetic, as everywhere in the project (no float near a measured count).
    let per_second = u64::try_from(u128::from(acked) * 1_000_000 / elapsed.as_micros().max(1))
        .unwrap_or(u64::MAX);
    println!(
        "{name}: ingest {acked} records in {elapsed:.1?} = {per_second} records/s; {}",
        summary("batch ack", latencies)
    );
    if let Some(t) = lookup_task {
        let samples = t.await.expect("look-ups");
        println!(
            "{name}: {}",
            summary("balance look-up", samples.iter().map(|s| s.0).collect())
        );
        // The look-up's own work, without waiting for the look-ups queued before it.
        println!(
            "{name}: {}",
            summary(
                "  of which the look-up's own work",
                samples.iter().map(|s| s.1).collect()
            )
        );
    }
    if let Some(t) = console_task {
        let (enterprise, overview) = t.await.expect("console");
        for (page, samples) in [
            ("console enterprise page", enterprise),
            ("console finance overview", overview),
        ] {
            // Whether the slowest is the phase's first request (which takes in what the
            // phase before left waiting) or one of the rest.
            let slowest = samples
                .iter()
                .enumerate()
                .max_by_key(|(_, d)| **d)
                .map(|(i, d)| format!("; slowest {d:.2?}, request {} of {}", i + 1, samples.len()))
                .unwrap_or_default();
            println!("{name}: {}{slowest}", summary(page, samples));
        }
    }
    // A look-up that could not be served from the writer's change log read every accrual
    // through the writer.
    println!(
        "{name}: complete reads through the writer: {}",
        suanli_app::metrics::METRICS.balance_complete_reads.get() - complete_before
    );
    per_second
}

async fn timed_lookup(reader: &Balances) -> anyhow::Result<Duration> {
    let t = Instant::now();
    on_reader(reader, |r| r.balance("b1", 2025))
        .await
        .0
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(t.elapsed())
}

async fn run(url: &str, n: usize, secs: Duration) -> anyhow::Result<()> {
    let (writer, thread) = Writer::spawn(url)?;
    // A pool this bench never reaches (at PostgreSQL's rates the phases' records ask for
    // more than 1,000,000,000.00 in all), so that only the last phase measures one that binds.
    let parsed = load_registry(&writer, registry_text(n, "100000000000.00")).await?;
    println!("registry loaded in {parsed:.2?}");
    // One record per line first, so every (beneficiary, provider) has a line in March.
    let seeding = Instant::now();
    let mut pairs = (1..=n).flat_map(|b| (1..=PROVIDERS).map(move |p| (b, p)));
    let mut rng = Lcg(9);
    loop {
        let candidates = batch(n, &mut rng, Some(&mut pairs));
        if candidates.is_empty() {
            break;
        }
        writer.ingest(candidates, Vec::new()).await?;
    }
    println!(
        "{} lines seeded in {:.2?}",
        n * PROVIDERS,
        seeding.elapsed()
    );
    let reader = Balances::beside(&writer, url).await?;
    println!(
        "first balance look-up (reads every accrual, builds the year): {:.2?}",
        timed_lookup(&reader).await?
    );
    // The console's first pages build what they keep (each beneficiary's part of the
    // overview, what posted runs settled): once after a start, measured here, not in the phases.
    let t = Instant::now();
    on_reader(&reader, |r| r.programme_overview(2025))
        .await
        .0
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "first finance overview (builds each beneficiary's part): {:.2?}",
        t.elapsed()
    );
    let t = Instant::now();
    on_reader(&reader, |r| r.monthly_settled("b1", 2025))
        .await
        .0
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "first enterprise page (reads what posted runs settled): {:.2?}",
        t.elapsed()
    );
    let max = phase("maximum rate", &writer, &reader, n, 0, secs / 4, false).await;
    let half = max / 2;
    println!("half rate: {half} records/s");
    let without = phase(
        "half rate, no look-ups",
        &writer,
        &reader,
        n,
        half,
        secs,
        false,
    )
    .await;
    let with = phase(
        "half rate with look-ups",
        &writer,
        &reader,
        n,
        half,
        secs,
        true,
    )
    .await;
    println!(
        "ingest with look-ups / without: {} per mille",
        with * 1000 / without.max(1)
    );
    // A pool that binds: every change moves every line of the programme.
    let reload = load_registry(&writer, registry_text(n, "100000.00")).await?;
    println!("registry with a binding pool loaded in {reload:.2?}");
    println!(
        "first balance look-up after the load (rebuilds the year): {:.2?}",
        timed_lookup(&reader).await?
    );
    let t = Instant::now();
    on_reader(&reader, |r| r.programme_overview(2025))
        .await
        .0
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "first finance overview after the load (rebuilds each part): {:.2?}",
        t.elapsed()
    );
    phase(
        "binding pool, half rate with look-ups",
        &writer,
        &reader,
        n,
        half,
        secs,
        true,
    )
    .await;
    // The balance thread holds a writer handle (for complete reads): it goes first, or the
    // writer thread never ends.
    drop(reader);
    drop(writer);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    Ok(())
}
