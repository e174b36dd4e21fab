//! A black-box load generator for `suanli serve`: builds a registry of P providers and B
//! beneficiaries, loads it, drives N records through `IngestStream` over C streams in batches
//! of S, prints records/s and batch-ack latency percentiles, and checks that the server holds
//! exactly the acknowledged records. Depends on the proto crate only.
//!
//! Soak mode (`--duration SECS`): batches are generated while sending, paced by `--rate`, until
//! the duration has passed; every `--sample-secs` the server's RSS (`/proc/PID/status` of
//! `--server-pid`) and the interval's batch-ack latency percentiles are written to
//! `--samples-csv`. Paced streams are spread evenly over the interval between two batches of a
//! stream unless `--lockstep` (all streams at the same instants: bursts).

mod baseline;
mod registry_load;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use suanli_proto::v1 as pb;
use suanli_proto::v1::metering_service_client::MeteringServiceClient;
use suanli_proto::v1::registry_service_client::RegistryServiceClient;
use tonic::Request;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser, Clone)]
#[command(name = "loadtest", about = "Load generator for suanli serve")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:50051", env = "SUANLI_SERVER")]
    server: String,
    /// An admin token (loads the registry and posts for every provider).
    #[arg(long, env = "SUANLI_TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long, default_value_t = 8)]
    providers: usize,
    #[arg(long, default_value_t = 100)]
    beneficiaries: usize,
    /// Records to send in total.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Concurrent IngestStream calls, each on its own connection.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Batches in flight per stream. 8: a server that flushes one group to disk while it writes
    /// the next needs two groups' worth of batches in flight to stay busy.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Pace sending to this many records/s in total (0: as fast as acknowledged).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// With `--rate`: every stream sends at the same instants, so the server gets bursts of
    /// `--streams` batches at once (a worst case). By default the streams' schedules are
    /// spread evenly over the interval between two batches of a stream, as independent
    /// providers' would be.
    #[arg(long)]
    lockstep: bool,
    /// Prefix of record ids; a fresh one per run unless given.
    #[arg(long)]
    run_id: Option<String>,
    /// Soak: send for this many seconds (generating batches as they go) instead of `--records`.
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Soak: seconds between samples of RSS and latency.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Soak: the `suanli serve` process whose RSS is sampled.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Soak: where the samples go (CSV).
    #[arg(long, default_value = "soak.csv")]
    samples_csv: std::path::PathBuf,
    /// After a `--records` run, run a soak at half the rate it measured, for this many seconds
    /// (samples to `--samples-csv`), and print its latency: "p99 at half of the maximum rate"
    /// measured in one command, so both halves see the same machine.
    #[arg(long, default_value_t = 0)]
    half_rate_secs: u64,
    /// After the run, bulk-load the same rows into an unindexed table of a scratch database
    /// (`sqlite://PATH` or `postgres://…`, the server's backend) and print Suanli's throughput
    /// as a share of that (see `baseline.rs`).
    #[arg(long)]
    baseline: Option<String>,
    /// Instead of ingest: load a registry of this many beneficiaries with every optional field
    /// (after the small one) while Ingest calls of 100 records go on, and print both timings.
    #[arg(long, default_value_t = 0)]
    registry_load: usize,
    /// With `--registry-load`: milliseconds between two Ingest calls of the probe.
    #[arg(long, default_value_t = 100)]
    probe_ms: u64,
    /// With `--registry-load`: also write the generated registry to this file (for timing
    /// `suanli registry import` on it).
    #[arg(long)]
    registry_file: Option<std::path::PathBuf>,
}

/// A small deterministic generator (SplitMix64), so a run is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn registry_toml(providers: usize, beneficiaries: usize) -> String {
    let mut t = String::from(
        "[[programme]]\nid = \"load-national\"\nname = \"load\"\nfunder = \"national\"\nyear = 2025\n\
         beneficiary_kinds = [\"enterprise\"]\npayee = \"beneficiary\"\nrates = [ { category = \"compute\", ratio = \"0.30\" } ]\n",
    );
    for p in 0..providers {
        t += &format!(
            "[[provider]]\nid = \"lp{p}\"\nname = \"lp{p}\"\n[[sku]]\nid = \"lp{p}-gpu\"\nprovider = \"lp{p}\"\ncategory = \"compute\"\nchip_origin = \"domestic\"\nunit = \"gpu_hour\"\nlist_price = \"20.00\"\ncapacity = \"100000000\"\n"
        );
    }
    for b in 0..beneficiaries {
        t += &format!(
            "[[beneficiary]]\nid = \"lb{b}\"\nname = \"lb{b}\"\nkind = \"enterprise\"\n[[grant]]\nbeneficiary = \"lb{b}\"\nprogramme = \"load-national\"\n"
        );
    }
    t
}

fn authorize<T>(message: T, token: &str) -> anyhow::Result<Request<T>> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(r)
}

async fn connect(server: &str) -> anyhow::Result<Channel> {
    let url = if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    };
    Endpoint::from_shared(url.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

const HOUR: i64 = 3600;
/// 2025-01-01T00:00:00+08:00.
const YEAR_START: i64 = 1_735_660_800;

fn batch(
    args: &Args,
    run: &str,
    stream: usize,
    index: usize,
    rng: &mut Rng,
) -> (pb::IngestRequest, i64) {
    let mut records = Vec::with_capacity(args.batch);
    let mut amount = 0i64;
    for k in 0..args.batch {
        let p = (rng.next() % args.providers as u64) as usize;
        let b = (rng.next() % args.beneficiaries as u64) as usize;
        let start = YEAR_START + (rng.next() % 720) as i64 * HOUR;
        let fen = 100 + (rng.next() % 1900) as i64;
        amount += fen;
        records.push(pb::UsageRecord {
            provider: format!("lp{p}"),
            record_id: format!("{run}-{stream}-{index}-{k}"),
            beneficiary: format!("lb{b}"),
            sku: format!("lp{p}-gpu"),
            start: Some(prost_types::Timestamp {
                seconds: start,
                nanos: 0,
            }),
            end: Some(prost_types::Timestamp {
                seconds: start + HOUR,
                nanos: 0,
            }),
            quantity: "1".into(),
            amount_fen: fen,
        });
    }
    (
        pb::IngestRequest {
            batch_id: index.to_string(),
            records,
        },
        amount,
    )
}

#[derive(Default)]
struct StreamResult {
    latencies: Vec<Duration>,
    accepted: u64,
    accepted_fen: i64,
    other: u64,
}

/// The batches one stream sends: prepared before the clock starts, or generated while sending
/// until a deadline (soak).
enum Batches {
    Prepared(Vec<(pb::IngestRequest, i64)>),
    Until {
        deadline: Instant,
        run: String,
        rng: Rng,
    },
}

impl Batches {
    fn next(
        &mut self,
        args: &Args,
        stream: usize,
        index: usize,
    ) -> Option<(pb::IngestRequest, i64)> {
        match self {
            Batches::Prepared(v) => {
                // Each batch is taken once, in order: moved out, an empty default left behind.
                v.get_mut(index).map(std::mem::take)
            }
            Batches::Until { deadline, run, rng } => {
                (Instant::now() < *deadline).then(|| batch(args, run, stream, index, rng))
            }
        }
    }
}

/// Latencies of the current sampling interval (soak), shared by all streams.
type Interval = std::sync::Arc<std::sync::Mutex<Vec<Duration>>>;

async fn drive(
    args: Args,
    stream: usize,
    mut batches: Batches,
    interval: Interval,
) -> anyhow::Result<StreamResult> {
    let mut client = MeteringServiceClient::new(connect(&args.server).await?)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::IngestRequest>(args.window);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(args.window));
    // Batch index → (sent at, its amount): at most `window` entries.
    let sent_at = std::sync::Arc::new(std::sync::Mutex::new(
        HashMap::<usize, (Instant, i64)>::new(),
    ));
    let sender = {
        let permits = permits.clone();
        let sent_at = sent_at.clone();
        let per_stream_rate = args.rate / args.streams.max(1) as u64;
        let batch_records = args.batch as u64;
        let args = args.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut sent = 0usize;
            // This stream's place in the interval between two of its batches, in batches
            // of the whole run (a stream sends every `streams` of them).
            let phase = if args.lockstep {
                0
            } else {
                batch_records * 1_000_000 * stream as u64 / args.streams.max(1) as u64
            };
            while let Some((request, amount)) = batches.next(&args, stream, sent) {
                if let Some(offset) =
                    (sent as u64 * batch_records * 1_000_000 + phase).checked_div(per_stream_rate)
                {
                    tokio::time::sleep_until((started + Duration::from_micros(offset)).into())
                        .await;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                permit.forget();
                sent_at
                    .lock()
                    .expect("lock")
                    .insert(sent, (Instant::now(), amount));
                if tx.send(request).await.is_err() {
                    break;
                }
                sent += 1;
            }
            // Dropping `tx` ends the request stream; the server then ends the acknowledgements.
            sent
        })
    };
    let mut acks = client
        .ingest_stream(authorize(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            &args.token,
        )?)
        .await?
        .into_inner();
    let mut result = StreamResult::default();
    while let Some(ack) = acks.message().await? {
        let index: usize = ack.batch_id.parse()?;
        let (sent, amount) = sent_at
            .lock()
            .expect("lock")
            .remove(&index)
            .context("ack for a batch never sent")?;
        let latency = sent.elapsed();
        result.latencies.push(latency);
        if args.duration > 0 {
            interval.lock().expect("lock").push(latency);
        }
        permits.add_permits(1);
        let accepted = ack
            .outcomes
            .iter()
            .filter(|&&o| o == pb::Outcome::Accepted as i32)
            .count() as u64;
        if accepted == ack.outcomes.len() as u64 {
            result.accepted_fen += amount;
        } else {
            bail!(
                "batch {index} of stream {stream}: {} of {} accepted; first problem: {:?}",
                accepted,
                ack.outcomes.len(),
                ack.problems.first()
            );
        }
        result.accepted += accepted;
        result.other += ack.outcomes.len() as u64 - accepted;
    }
    let batches = sender.await?;
    if result.latencies.len() != batches {
        bail!(
            "stream {stream}: {} of {batches} batches acknowledged",
            result.latencies.len()
        );
    }
    Ok(result)
}

/// Milliseconds with one decimal, without floating point.
fn millis(d: Duration) -> String {
    let us = d.as_micros();
    format!("{}.{}", us / 1000, us % 1000 / 100)
}

/// Resident set size of a process in KiB (`VmRSS` in `/proc/PID/status`).
fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Soak sampling: every `sample_secs`, one CSV row with the server's RSS and the interval's
/// acknowledged batches and latency percentiles; also echoed to stderr.
async fn sample(
    args: Args,
    mut out: std::fs::File,
    interval: Interval,
    started: Instant,
) -> anyhow::Result<()> {
    use std::io::Write;
    let header = "elapsed_s,rss_kib,batches,records_per_s,p50_ms,p99_ms,max_ms";
    writeln!(out, "{header}")?;
    eprintln!("{header}");
    let mut tick = tokio::time::interval(Duration::from_secs(args.sample_secs.max(1)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let mut latencies = std::mem::take(&mut *interval.lock().expect("lock"));
        latencies.sort();
        let row = format!(
            "{},{},{},{},{},{},{}",
            started.elapsed().as_secs(),
            args.server_pid.and_then(rss_kib).unwrap_or(0),
            latencies.len(),
            latencies.len() as u64 * args.batch as u64 / args.sample_secs.max(1),
            millis(percentile(&latencies, 500)),
            millis(percentile(&latencies, 990)),
            millis(latencies.last().copied().unwrap_or_default()),
        );
        writeln!(out, "{row}")?;
        out.flush()?;
        eprintln!("{row}");
    }
}

fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() * per_mille).div_ceil(1000)).clamp(1, sorted.len()) - 1]
}

/// Sends one run's records (`--records`, or a soak for `--duration`), prints records/s and the
/// latency percentiles, checks the server holds exactly what was acknowledged, and returns the
/// records/s.
async fn measure(
    args: &Args,
    run: &str,
    version: u64,
    metering: &mut MeteringServiceClient<Channel>,
) -> anyhow::Result<u128> {
    let before = metering
        .get_usage_stats(authorize(pb::GetUsageStatsRequest::default(), &args.token)?)
        .await?
        .into_inner();
    let mut streams = Vec::new();
    if args.duration > 0 {
        eprintln!(
            "registry version {version}; sending for {} s at {} records/s in batches of {} over {} streams (window {}), run {run}",
            args.duration, args.rate, args.batch, args.streams, args.window
        );
        let deadline = Instant::now() + Duration::from_secs(args.duration);
        for s in 0..args.streams {
            streams.push(Batches::Until {
                deadline,
                run: run.to_owned(),
                rng: Rng(0x5eed ^ ((s as u64) << 32)),
            });
        }
    } else {
        let batches_total = args.records.div_ceil(args.batch);
        eprintln!(
            "registry version {version}; sending {} records in {batches_total} batches of {} over {} streams (window {}), run {run}",
            batches_total * args.batch,
            args.batch,
            args.streams,
            args.window
        );
        // Batches are built before the clock starts, so generation is not measured.
        for s in 0..args.streams {
            let n = batches_total / args.streams + usize::from(s < batches_total % args.streams);
            let mut rng = Rng(0x5eed ^ ((s as u64) << 32));
            streams.push(Batches::Prepared(
                (0..n).map(|i| batch(args, run, s, i, &mut rng)).collect(),
            ));
        }
    }
    let interval = Interval::default();
    let samples = if args.duration > 0 {
        Some(
            std::fs::File::create(&args.samples_csv)
                .with_context(|| format!("cannot create {}", args.samples_csv.display()))?,
        )
    } else {
        None
    };
    let started = Instant::now();
    let sampler =
        samples.map(|out| tokio::spawn(sample(args.clone(), out, interval.clone(), started)));
    let mut tasks = Vec::new();
    for (s, batches) in streams.into_iter().enumerate() {
        tasks.push(tokio::spawn(drive(
            args.clone(),
            s,
            batches,
            interval.clone(),
        )));
    }
    let mut latencies = Vec::new();
    let (mut accepted, mut accepted_fen, mut other) = (0u64, 0i64, 0u64);
    for t in tasks {
        let r = t.await??;
        latencies.extend(r.latencies);
        accepted += r.accepted;
        accepted_fen += r.accepted_fen;
        other += r.other;
    }
    let elapsed = started.elapsed();
    if let Some(sampler) = sampler {
        // The sampler runs until aborted; finished early means it failed (e.g. a write error).
        if sampler.is_finished() {
            sampler.await??;
        } else {
            sampler.abort();
        }
    }
    latencies.sort();
    let after = metering
        .get_usage_stats(authorize(pb::GetUsageStatsRequest::default(), &args.token)?)
        .await?
        .into_inner();
    let rate = u128::from(accepted) * 1_000_000 / elapsed.as_micros().max(1);
    println!(
        "{accepted} records accepted ({other} other) in {:.2?}: {rate} records/s; batch ack latency p50 {:.1?} p99 {:.1?} p99.9 {:.1?} max {:.1?}",
        elapsed,
        percentile(&latencies, 500),
        percentile(&latencies, 990),
        percentile(&latencies, 999),
        latencies.last().copied().unwrap_or_default()
    );
    let stored = after.records - before.records;
    let stored_fen = after.amount_fen - before.amount_fen;
    if stored != accepted || stored_fen != accepted_fen {
        bail!(
            "server holds {stored} new records worth {stored_fen} fen; acknowledged {accepted} worth {accepted_fen} fen"
        );
    }
    println!("check: server holds exactly the {stored} acknowledged records ({stored_fen} fen)");
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.streams == 0 || args.batch == 0 || args.providers == 0 || args.beneficiaries == 0 {
        bail!("--streams, --batch, --providers and --beneficiaries must be positive");
    }
    if args.duration > 0 && (args.half_rate_secs > 0 || args.baseline.is_some()) {
        bail!("--half-rate-secs and --baseline follow a --records run, not a soak (--duration)");
    }
    let run = args.run_id.clone().unwrap_or_else(|| {
        format!(
            "r{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        )
    });
    let channel = connect(&args.server).await?;
    let mut registry = RegistryServiceClient::new(channel.clone());
    let loaded = registry
        .load_registry(authorize(
            pb::LoadRegistryRequest {
                file_name: "loadtest.toml".into(),
                toml_text: registry_toml(args.providers, args.beneficiaries),
            },
            &args.token,
        )?)
        .await?
        .into_inner();
    let version = loaded.current.map_or(0, |c| c.version);
    if args.registry_load > 0 {
        return registry_load::run(
            channel,
            &args.token,
            args.providers,
            args.registry_load,
            args.probe_ms,
            args.registry_file.as_deref(),
            &run,
        )
        .await;
    }
    let mut metering = MeteringServiceClient::new(channel);
    let rate = measure(&args, &run, version, &mut metering).await?;
    if args.half_rate_secs > 0 {
        let half = Args {
            duration: args.half_rate_secs,
            rate: u64::try_from(rate / 2).unwrap_or(u64::MAX).max(1),
            ..args.clone()
        };
        println!("half rate: {} records/s for {} s", half.rate, half.duration);
        measure(&half, &format!("{run}h"), version, &mut metering).await?;
    }
    if let Some(url) = args.baseline.clone() {
        // The same rows again: the generator is deterministic per stream.
        let batches_total = args.records.div_ceil(args.batch);
        let mut all = Vec::with_capacity(batches_total);
        for s in 0..args.streams {
            let n = batches_total / args.streams + usize::from(s < batches_total % args.streams);
            let mut rng = Rng(0x5eed ^ ((s as u64) << 32));
            all.extend((0..n).map(|i| batch(&args, &run, s, i, &mut rng).0));
        }
        let base = tokio::task::spawn_blocking(move || baseline::run(&url, &all)).await??;
        println!(
            "baseline: bulk load of the same rows into an unindexed table, one transaction per batch: {base} records/s; suanli {rate} records/s = {}% of the baseline",
            rate * 100 / base.max(1)
        );
    }
    Ok(())
}
