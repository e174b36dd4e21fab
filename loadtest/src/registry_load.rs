//! `--registry-load N`: times loading a city registry of N beneficiaries with every optional
//! field through `LoadRegistryStream` (as `suanli registry import` sends it: 60-KiB chunks),
//! while one provider's 100-record `Ingest` calls go on every `--probe-ms`, and prints the load's
//! time and the latency of the Ingest calls made during it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use suanli_proto::v1 as pb;
use suanli_proto::v1::metering_service_client::MeteringServiceClient;
use suanli_proto::v1::registry_service_client::RegistryServiceClient;
use tonic::transport::Channel;

use crate::{HOUR, YEAR_START, authorize};

/// The chunk size of `suanli registry import`.
const CHUNK_BYTES: usize = 60 * 1024;

/// The registry of the load: `registry_toml`'s providers and SKUs (priced, capacity-checked,
/// chip model) and programme, a second programme with a pool, caps and funding shares, a
/// stacking rule, and `n` beneficiaries (name, kind, district) with a grant in each programme,
/// every tenth with its own cap. Beneficiaries `lb0…` include the probe's.
pub fn city_registry(providers: usize, n: usize, tag: &str) -> String {
    let mut t = String::from(
        "[[programme]]\nid = \"load-national\"\nname = \"load\"\nfunder = \"national\"\nyear = 2025\n\
         beneficiary_kinds = [\"enterprise\", \"university\", \"research_institute\"]\npayee = \"beneficiary\"\n\
         rates = [ { category = \"compute\", ratio = \"0.30\" } ]\n\n\
         [[programme]]\nid = \"load-city\"\nname = \"市级算力券\"\nfunder = \"municipal\"\nyear = 2025\npool = \"250000000.00\"\n\
         beneficiary_cap = \"8000000.00\"\nprovider_cap = \"90000000.00\"\n\
         beneficiary_kinds = [\"enterprise\", \"university\", \"research_institute\"]\npayee = \"provider\"\n\
         funding = [ { funder = \"city\", share = \"0.5\" }, { funder = \"district\", share = \"0.5\" } ]\n\
         rates = [ { category = \"compute\", chip_origin = \"domestic\", ratio = \"0.30\" }, { category = \"compute\", chip_origin = \"other\", ratio = \"0.20\" } ]\n\n\
         [[stacking]]\nprimary = \"load-national\"\ntop_up = \"load-city\"\nceilings = [ { category = \"compute\", ratio = \"0.45\" } ]\n",
    );
    for p in 0..providers {
        let _ = write!(
            t,
            "\n[[provider]]\nid = \"lp{p}\"\nname = \"智算中心 {p}\"\n\n[[sku]]\nid = \"lp{p}-gpu\"\nprovider = \"lp{p}\"\ncategory = \"compute\"\nchip_origin = \"domestic\"\nchip_model = \"Ascend 910B\"\nunit = \"gpu_hour\"\nlist_price = \"20.00\"\ncapacity = \"100000000\"\n"
        );
    }
    const KINDS: [&str; 3] = ["enterprise", "university", "research_institute"];
    for b in 0..n {
        let _ = write!(
            t,
            "\n[[beneficiary]]\nid = \"lb{b}\"\nname = \"杭州{b}号智能科技有限公司{tag}\"\nkind = \"{}\"\ndistrict = \"district-{}\"\n",
            KINDS[b % 3],
            b % 13
        );
    }
    for b in 0..n {
        let cap = if b % 10 == 0 {
            "cap = \"20000000.00\"\n"
        } else {
            ""
        };
        let _ = write!(
            t,
            "\n[[grant]]\nbeneficiary = \"lb{b}\"\nprogramme = \"load-national\"\n\n[[grant]]\nbeneficiary = \"lb{b}\"\nprogramme = \"load-city\"\n{cap}"
        );
    }
    t
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

pub async fn run(
    channel: Channel,
    token: &str,
    providers: usize,
    beneficiaries: usize,
    probe_ms: u64,
    file: Option<&std::path::Path>,
    run: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let text = city_registry(providers, beneficiaries, run);
    println!(
        "registry of {beneficiaries} beneficiaries: {} bytes, generated in {:.2?}",
        text.len(),
        started.elapsed()
    );
    if let Some(file) = file {
        std::fs::write(file, &text)?;
        println!("written to {}", file.display());
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let (stop, token, run) = (stop.clone(), token.to_owned(), run.to_owned());
        let mut metering = MeteringServiceClient::new(channel.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut index = 0i64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let records = (0..100)
                    .map(|k| pb::UsageRecord {
                        provider: "lp0".into(),
                        record_id: format!("{run}-probe-{index}-{k}"),
                        beneficiary: format!("lb{}", k % 100),
                        sku: "lp0-gpu".into(),
                        start: Some(prost_types::Timestamp {
                            seconds: YEAR_START + (index % 720) * HOUR,
                            nanos: 0,
                        }),
                        end: Some(prost_types::Timestamp {
                            seconds: YEAR_START + (index % 720) * HOUR + 60,
                            nanos: 0,
                        }),
                        quantity: "1".into(),
                        amount_fen: 100,
                    })
                    .collect();
                let sent = Instant::now();
                let result = metering
                    .ingest(authorize(
                        pb::IngestRequest {
                            batch_id: index.to_string(),
                            records,
                        },
                        &token,
                    )?)
                    .await;
                latencies.push(sent.elapsed());
                if let Err(status) = result {
                    anyhow::bail!("Ingest failed during the load: {status}");
                }
                index += 1;
                tokio::time::sleep(Duration::from_millis(probe_ms)).await;
            }
            Ok(latencies)
        })
    };
    // Let the probe's first calls happen before the load.
    tokio::time::sleep(Duration::from_millis(3 * probe_ms)).await;
    let total_bytes = text.len() as u64;
    let mut chunks: Vec<pb::RegistryChunk> = text
        .as_bytes()
        .chunks(CHUNK_BYTES)
        .map(|c| pb::RegistryChunk {
            text: c.to_vec(),
            ..Default::default()
        })
        .collect();
    chunks[0].file_name = "city.toml".into();
    chunks[0].total_bytes = total_bytes;
    drop(text);
    let mut registry = RegistryServiceClient::new(channel);
    let started = Instant::now();
    let loaded = registry
        .load_registry_stream(authorize(tokio_stream::iter(chunks), token)?)
        .await?
        .into_inner();
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut latencies = probe.await??;
    let current = loaded.current.unwrap_or_default();
    println!(
        "registry version {} ({} beneficiaries) loaded through LoadRegistryStream in {:.2?}",
        current.version, current.beneficiaries, took
    );
    latencies.sort();
    println!(
        "Ingest of 100 records every {probe_ms} ms meanwhile: {} calls, p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        latencies.len(),
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies.last().copied().unwrap_or_default()
    );
    Ok(())
}
