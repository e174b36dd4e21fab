//! The use cases' Prometheus metrics: ingest outcomes and latency, the writer's group commits
//! and flushes, settlement runs and programme gauges. The server adds its own (limits) to the same
//! [`Metrics::registry`] and serves them.

use std::sync::LazyLock;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    /// Records by outcome: accepted, duplicate, conflict, rejected.
    pub records: IntCounterVec,
    /// From receiving a batch to having its acknowledgement ready.
    pub batch_seconds: Histogram,
    /// One group-commit transaction: decisions, inserts and the commit (durable at once on
    /// PostgreSQL; flushed beside the writer on SQLite, see `flush_seconds`).
    pub commit_seconds: Histogram,
    /// Records per group-commit transaction.
    pub group_records: Histogram,
    /// One flush of SQLite's write-ahead log to disk, beside the writer (several group commits
    /// at a time); their batches are acknowledged after it.
    pub flush_seconds: Histogram,
    /// Jobs waiting for the writer.
    pub writer_queue_jobs: IntGauge,
    /// Settlement run actions that changed a run: created, approved, posted, cancelled.
    pub settlement_runs: IntCounterVec,
    /// Lines of posted runs by programme and what cut them (none, beneficiary_cap, provider_cap,
    /// pool): how often caps and pools bind.
    pub settlement_lines: IntCounterVec,
    /// A programme's annual pool in fen (0: no pool), from the current registry version.
    pub programme_pool_fen: IntGaugeVec,
    /// Fen posted so far by a programme's runs (all periods), recomputed at start and on post.
    pub programme_posted_fen: IntGaugeVec,
    /// Balance look-ups (and the console's balance pages) that had to read every accrual
    /// through the writer: the first after start, and any after the change log lost track.
    pub balance_complete_reads: IntCounter,
}

fn buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.000_25, 2.0, 16).expect("valid buckets")
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let records = IntCounterVec::new(
        Opts::new("suanli_ingest_records_total", "usage records by outcome"),
        &["outcome"],
    )
    .expect("metric");
    let batch_seconds = Histogram::with_opts(
        HistogramOpts::new(
            "suanli_ingest_batch_seconds",
            "batch latency from receipt to acknowledgement",
        )
        .buckets(buckets()),
    )
    .expect("metric");
    let commit_seconds = Histogram::with_opts(
        HistogramOpts::new(
            "suanli_store_commit_seconds",
            "group-commit transaction latency",
        )
        .buckets(buckets()),
    )
    .expect("metric");
    let flush_seconds = Histogram::with_opts(
        HistogramOpts::new(
            "suanli_store_flush_seconds",
            "write-ahead log flush (fsync) latency, SQLite",
        )
        .buckets(buckets()),
    )
    .expect("metric");
    let group_records = Histogram::with_opts(
        HistogramOpts::new(
            "suanli_store_group_records",
            "records per group-commit transaction",
        )
        .buckets(prometheus::exponential_buckets(1.0, 2.0, 17).expect("valid buckets")),
    )
    .expect("metric");
    let writer_queue_jobs = IntGauge::new(
        "suanli_writer_queue_jobs",
        "jobs waiting for the store writer",
    )
    .expect("metric");
    let settlement_runs = IntCounterVec::new(
        Opts::new(
            "suanli_settlement_runs_total",
            "settlement run actions that changed a run",
        ),
        &["action"],
    )
    .expect("metric");
    let settlement_lines = IntCounterVec::new(
        Opts::new(
            "suanli_settlement_lines_total",
            "lines of posted settlement runs by programme and binding limit",
        ),
        &["programme", "cut_by"],
    )
    .expect("metric");
    let programme_pool_fen = IntGaugeVec::new(
        Opts::new(
            "suanli_programme_pool_fen",
            "a programme's annual pool in fen (0: none)",
        ),
        &["programme"],
    )
    .expect("metric");
    let programme_posted_fen = IntGaugeVec::new(
        Opts::new(
            "suanli_programme_posted_fen",
            "fen posted by a programme's settlement runs",
        ),
        &["programme"],
    )
    .expect("metric");
    let balance_complete_reads = IntCounter::new(
        "suanli_balance_complete_reads_total",
        "balance look-ups that read every accrual through the store writer",
    )
    .expect("metric");
    for c in [
        Box::new(records.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(balance_complete_reads.clone()),
        Box::new(batch_seconds.clone()),
        Box::new(commit_seconds.clone()),
        Box::new(group_records.clone()),
        Box::new(flush_seconds.clone()),
        Box::new(writer_queue_jobs.clone()),
        Box::new(settlement_runs.clone()),
        Box::new(settlement_lines.clone()),
        Box::new(programme_pool_fen.clone()),
        Box::new(programme_posted_fen.clone()),
    ] {
        registry.register(c).expect("unique metric");
    }
    Metrics {
        registry,
        records,
        batch_seconds,
        commit_seconds,
        group_records,
        flush_seconds,
        writer_queue_jobs,
        settlement_runs,
        settlement_lines,
        programme_pool_fen,
        programme_posted_fen,
        balance_complete_reads,
    }
});
