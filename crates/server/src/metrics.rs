//! Prometheus metrics and the plain HTTP endpoint that serves them on `--metrics-addr`.

use std::net::SocketAddr;
use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub struct Metrics {
    pub registry: Registry,
    /// Records by outcome: accepted, duplicate, conflict, rejected.
    pub records: IntCounterVec,
    /// From receiving a batch to having its acknowledgement ready.
    pub batch_seconds: Histogram,
    /// One group-commit transaction: decisions, inserts and the durable commit.
    pub commit_seconds: Histogram,
    /// Records per group-commit transaction.
    pub group_records: Histogram,
    /// Jobs waiting for the writer.
    pub writer_queue_jobs: IntGauge,
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
    for c in [
        Box::new(records.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(batch_seconds.clone()),
        Box::new(commit_seconds.clone()),
        Box::new(group_records.clone()),
        Box::new(writer_queue_jobs.clone()),
    ] {
        registry.register(c).expect("unique metric");
    }
    Metrics {
        registry,
        records,
        batch_seconds,
        commit_seconds,
        group_records,
        writer_queue_jobs,
    }
});

pub fn render() -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&METRICS.registry.gather(), &mut buf)
        .expect("text encoding");
    String::from_utf8(buf).unwrap_or_default()
}

/// Answers every HTTP request on `addr` with the metrics text; enough for a Prometheus scrape.
pub async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics listening");
    loop {
        let (mut socket, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut request = [0u8; 4096];
            // One read is enough for a GET; the request itself is not interpreted.
            let _ = socket.read(&mut request).await;
            let body = render();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
        });
    }
}
