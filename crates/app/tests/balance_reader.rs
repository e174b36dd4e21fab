//! Balance look-ups beside the writer, as the server makes them (`Balances::beside`): they
//! never wait in the writer's queue, and each reflects every batch acknowledged before it
//! began, this server's and (PostgreSQL) another server's. On SQLite and PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use suanli_app::balances::Balances;
use suanli_app::ingest::Writer;
use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_domain::usage::{Period, UsageRecord, validate};
use suanli_store::{Candidate, RegistryNames};

const REGISTRY: &str = r#"
[[programme]]
id = "city"
funder = "municipal"
year = 2025
beneficiary_kinds = ["enterprise"]
payee = "beneficiary"
rates = [ { category = "compute", chip_origin = "domestic", ratio = "0.30" } ]
[[provider]]
id = "p1"
[[sku]]
id = "d1"
provider = "p1"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
[[beneficiary]]
id = "b1"
kind = "enterprise"
[[grant]]
beneficiary = "b1"
programme = "city"
"#;

fn registry() -> Registry {
    Registry::from_toml("reader.toml", REGISTRY)
        .expect("registry is valid")
        .0
}

/// One record of `fen` for b1 in March 2025.
fn record(registry: &Registry, id: u32, fen: i64) -> Candidate {
    let start = chrono::DateTime::parse_from_rfc3339(&format!(
        "2025-03-{:02}T{:02}:00:00+08:00",
        id % 28 + 1,
        id % 24
    ))
    .expect("time");
    let record = UsageRecord {
        provider: "p1".into(),
        record_id: format!("r{id}"),
        beneficiary: "b1".into(),
        sku: "d1".into(),
        start,
        end: start + chrono::Duration::minutes(30),
        quantity: "1".parse().expect("decimal"),
        amount: Fen(fen),
    };
    let class = validate(registry, &record).expect("record is valid");
    Candidate {
        period: Period::of_instant(record.end),
        class,
        capacity: None,
        registry_version: 1,
        record,
    }
}

async fn started(url: &str) -> (Writer, Registry) {
    let (writer, _thread) = Writer::spawn(url).expect("writer starts");
    let registry = registry();
    let (hash, names) = (registry.content_hash.clone(), RegistryNames::of(&registry));
    writer
        .call(move |s| s.registry_insert(&hash, REGISTRY, &names, chrono::Utc::now()))
        .await
        .expect("writer")
        .expect("registry stored");
    (writer, registry)
}

/// b1's pending balance (entitled, nothing posted) read beside the writer.
async fn pending(reader: &Balances) -> Fen {
    let balances = tokio::time::timeout(
        Duration::from_secs(60),
        reader.call(|r| r.balance("b1", 2025)),
    )
    .await
    .expect("a look-up beside the writer finishes while the writer is busy")
    .expect("the balance thread runs")
    .expect("balance");
    assert_eq!(balances.len(), 1, "{balances:?}");
    balances[0].pending
}

/// A job that holds the thread running it: it says when it has begun (`entered`) and returns
/// when `release` sends (or after two minutes).
fn holder() -> (
    impl FnOnce() + Send + 'static,
    tokio::sync::oneshot::Receiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
    let hold = move || {
        let _ = entered_tx.send(());
        let _ = held.recv_timeout(Duration::from_secs(120));
    };
    (hold, entered, release)
}

/// 30 % of a line's `fen`, rounded half up (docs/rules.md R6).
fn subsidy(fen: i64) -> i64 {
    (fen * 30 + 50) / 100
}

async fn look_ups_follow_every_acknowledged_batch(url: &str) {
    let (writer, registry) = started(url).await;
    writer
        .ingest(vec![record(&registry, 0, 100_000)], Vec::new())
        .await
        .expect("ingest");
    let reader = Balances::beside(&writer, url).await.expect("reader");
    let mut total = 100_000;
    assert_eq!(pending(&reader).await, Fen(subsidy(total)), "first look-up");
    // Each batch acknowledged is in the very next look-up, to the fen (one line: the ratio
    // applies to the line's sum, R6).
    for i in 1..=20u32 {
        let fen = 12_345 + i64::from(i) * 777;
        writer
            .ingest(vec![record(&registry, i, fen)], Vec::new())
            .await
            .expect("ingest");
        total += fen;
        assert_eq!(
            pending(&reader).await,
            Fen(subsidy(total)),
            "after batch {i}"
        );
    }
    // Look-ups queued behind another job are answered as one batch, which reads the state and
    // the log once when it begins: each still sees every batch acknowledged before it began.
    for i in 21..=25u32 {
        let fen = 23_456 + i64::from(i) * 131;
        writer
            .ingest(vec![record(&registry, i, fen)], Vec::new())
            .await
            .expect("ingest");
        total += fen;
        let (hold, entered, release) = holder();
        let blocker = {
            let reader = reader.clone();
            tokio::spawn(async move { reader.call(move |_| hold()).await })
        };
        entered.await.expect("the balance thread runs the blocker");
        let queued: Vec<_> = (0..8)
            .map(|_| {
                let reader = reader.clone();
                tokio::spawn(async move { pending(&reader).await })
            })
            .collect();
        // The look-ups are queued behind the blocker before it is released.
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(()).expect("release the balance thread");
        blocker.await.expect("blocker").expect("balance thread");
        for q in queued {
            assert_eq!(
                q.await.expect("look-up"),
                Fen(subsidy(total)),
                "a queued look-up after batch {i}"
            );
        }
    }
    let expected = subsidy(total);
    // A look-up does not wait for the writer: with the writer held by a long job, a batch
    // acknowledged before it is still read.
    let (hold, entered, release) = holder();
    let busy = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.call(move |_| hold()).await })
    };
    entered.await.expect("the writer runs the long job");
    assert_eq!(
        pending(&reader).await,
        Fen(expected),
        "read while the writer is busy"
    );
    release.send(()).expect("release the writer");
    busy.await.expect("job").expect("writer");
}

/// A job that reads every beneficiary's figures (a finance overview, `call_whole`) queued
/// before look-ups goes after them: the look-ups do not wait behind its catch-up. It still
/// sees every batch acknowledged before it began, and so do they.
async fn whole_jobs_go_after_the_look_ups_queued_with_them(url: &str) {
    let (writer, registry) = started(url).await;
    writer
        .ingest(vec![record(&registry, 0, 100_000)], Vec::new())
        .await
        .expect("ingest");
    let reader = Balances::beside(&writer, url).await.expect("reader");
    let mut total = 100_000;
    assert_eq!(pending(&reader).await, Fen(subsidy(total)), "first look-up");
    let order = Arc::new(Mutex::new(Vec::<&'static str>::new()));
    for round in 1..=3u32 {
        // Keys wait: batches the thread has not caught up on.
        for i in 0..5u32 {
            let fen = 10_000 + i64::from(round * 10 + i);
            writer
                .ingest(vec![record(&registry, round * 10 + i, fen)], Vec::new())
                .await
                .expect("ingest");
            total += fen;
        }
        order.lock().unwrap().clear();
        let (hold, entered, release) = holder();
        let blocker = {
            let reader = reader.clone();
            tokio::spawn(async move { reader.call(move |_| hold()).await })
        };
        entered.await.expect("the balance thread runs the blocker");
        let whole = {
            let (reader, order) = (reader.clone(), order.clone());
            tokio::spawn(async move {
                reader
                    .call_whole(move |r| {
                        let overview = r.programme_overview(2025);
                        order.lock().unwrap().push("whole");
                        overview
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let look_ups: Vec<_> = (0..4)
            .map(|_| {
                let (reader, order) = (reader.clone(), order.clone());
                tokio::spawn(async move {
                    reader
                        .call(move |r| {
                            let b = r.balance("b1", 2025);
                            order.lock().unwrap().push("look-up");
                            b
                        })
                        .await
                })
            })
            .collect();
        // Everything is queued behind the blocker before it is released.
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(()).expect("release the balance thread");
        blocker.await.expect("blocker").expect("balance thread");
        for l in look_ups {
            let b = l.await.expect("look-up").expect("thread").expect("balance");
            assert_eq!(b[0].pending, Fen(subsidy(total)), "round {round}");
        }
        let overview = whole
            .await
            .expect("whole job")
            .expect("thread")
            .expect("overview");
        assert_eq!(overview.len(), 1, "{overview:?}");
        assert_eq!(overview[0].entitled, Fen(subsidy(total)), "round {round}");
        assert_eq!(
            *order.lock().unwrap(),
            ["look-up", "look-up", "look-up", "look-up", "whole"],
            "round {round}: the look-ups went first"
        );
    }
}

#[test]
fn whole_jobs_go_after_the_look_ups_queued_with_them_on_sqlite() {
    let db = suanli_testkit::sqlite("balance_reader_whole");
    on_runtime(whole_jobs_go_after_the_look_ups_queued_with_them(&db.url));
}

#[test]
fn whole_jobs_go_after_the_look_ups_queued_with_them_on_postgres() {
    let Some(db) = suanli_testkit::postgres("balance_reader_whole") else {
        return;
    };
    on_runtime(whole_jobs_go_after_the_look_ups_queued_with_them(&db.url));
}

/// Runs `test` on a runtime of its own: the test database is made and dropped outside it
/// (the PostgreSQL client blocks).
fn on_runtime(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(test);
}

// SQLite: every acknowledged batch is in the next look-up, and look-ups do not wait for the
// writer.
#[test]
fn look_ups_follow_every_acknowledged_batch_on_sqlite() {
    let db = suanli_testkit::sqlite("balance_reader");
    on_runtime(look_ups_follow_every_acknowledged_batch(&db.url));
}

// PostgreSQL: the same.
#[test]
fn look_ups_follow_every_acknowledged_batch_on_postgres() {
    let Some(db) = suanli_testkit::postgres("balance_reader") else {
        return;
    };
    on_runtime(look_ups_follow_every_acknowledged_batch(&db.url));
}

// PostgreSQL with two servers on one database: a batch the other server acknowledged is in
// this server's next look-up (its change log never saw it, so the look-up reads everything).
#[test]
fn another_servers_batch_is_in_the_next_look_up_on_postgres() {
    let Some(db) = suanli_testkit::postgres("balance_reader_replica") else {
        return;
    };
    on_runtime(another_servers_batch_is_in_the_next_look_up(&db.url));
}

async fn another_servers_batch_is_in_the_next_look_up(url: &str) {
    let (writer, registry) = started(url).await;
    writer
        .ingest(vec![record(&registry, 0, 100_000)], Vec::new())
        .await
        .expect("ingest");
    let reader = Balances::beside(&writer, url).await.expect("reader");
    assert_eq!(pending(&reader).await, Fen(subsidy(100_000)));
    let (other, _thread) = Writer::spawn(url).expect("second server");
    other
        .ingest(vec![record(&registry, 1, 50_000)], Vec::new())
        .await
        .expect("the other server ingests");
    assert_eq!(
        pending(&reader).await,
        Fen(subsidy(100_000 + 50_000)),
        "the other server's batch"
    );
    // And this server's own batches after it are followed again.
    writer
        .ingest(vec![record(&registry, 2, 30_000)], Vec::new())
        .await
        .expect("ingest");
    assert_eq!(
        pending(&reader).await,
        Fen(subsidy(100_000 + 50_000 + 30_000))
    );
}

/// While this server ingests without pause (group after group, as under sustained load), every
/// look-up is served from the writer's change log: only the first reads every accrual through
/// the writer. And the figures stay exact: the look-up after the last acknowledgement has all.
async fn look_ups_keep_to_the_log_under_sustained_ingest(url: &str) {
    let (writer, registry) = started(url).await;
    writer
        .ingest(vec![record(&registry, 0, 100_000)], Vec::new())
        .await
        .expect("ingest");
    let reader = Balances::beside(&writer, url).await.expect("reader");
    assert_eq!(
        pending(&reader).await,
        Fen(subsidy(100_000)),
        "first look-up"
    );
    const BATCHES: u32 = 300;
    const PER_BATCH: u32 = 20;
    let streaming = {
        let (writer, registry) = (writer.clone(), crate::registry());
        tokio::spawn(async move {
            let mut total = 0i64;
            for b in 0..BATCHES {
                let batch: Vec<Candidate> = (0..PER_BATCH)
                    .map(|i| {
                        let id = 1 + b * PER_BATCH + i;
                        let fen = 1_000 + i64::from(id % 97);
                        total += fen;
                        record(&registry, id, fen)
                    })
                    .collect();
                writer.ingest(batch, Vec::new()).await.expect("ingest");
            }
            total
        })
    };
    let mut look_ups = 0u32;
    while !streaming.is_finished() {
        let seen = pending(&reader).await;
        assert!(
            seen >= Fen(subsidy(100_000)),
            "a look-up lost what was read before"
        );
        look_ups += 1;
    }
    let total = 100_000 + streaming.await.expect("ingest task");
    assert_eq!(
        pending(&reader).await,
        Fen(subsidy(total)),
        "after the last batch"
    );
    let complete = reader
        .call(|r| r.complete_reads())
        .await
        .expect("the balance thread runs");
    assert!(
        look_ups > 10,
        "only {look_ups} look-ups ran while ingest streamed"
    );
    assert_eq!(
        complete, 1,
        "{complete} complete reads over {look_ups} look-ups during sustained ingest: only the first look-up reads every accrual"
    );
}

#[test]
fn look_ups_keep_to_the_log_under_sustained_ingest_on_sqlite() {
    let db = suanli_testkit::sqlite("balance_reader_sustained");
    on_runtime(look_ups_keep_to_the_log_under_sustained_ingest(&db.url));
}

#[test]
fn look_ups_keep_to_the_log_under_sustained_ingest_on_postgres() {
    let Some(db) = suanli_testkit::postgres("balance_reader_sustained") else {
        return;
    };
    on_runtime(look_ups_keep_to_the_log_under_sustained_ingest(&db.url));
}
