//! gRPC ingest end to end against an in-process `suanli serve` on an ephemeral port, on SQLite
//! and on PostgreSQL (a unique database per test, dropped afterwards; skipped when PostgreSQL is
//! unreachable unless SUANLI_REQUIRE_POSTGRES=1).

use std::collections::HashMap;

use suanli_proto::v1 as pb;
use suanli_proto::v1::metering_service_client::MeteringServiceClient;
use suanli_proto::v1::registry_service_client::RegistryServiceClient;
use suanli_server::serve::{Running, ServeConfig};
use suanli_store::Principal;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const REGISTRY: &str = r#"
[[programme]]
id = "nat"
name = "national"
funder = "national"
year = 2025
beneficiary_kinds = ["enterprise"]
payee = "beneficiary"
rates = [ { category = "compute", ratio = "0.30" }, { category = "model", ratio = "0.30" } ]
[[provider]]
id = "dc-a"
name = "A"
[[provider]]
id = "dc-b"
name = "B"
[[sku]]
id = "a-gpu"
provider = "dc-a"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
list_price = "20.00"
capacity = "10"
[[sku]]
id = "a-mod"
provider = "dc-a"
category = "model"
registered_model = false
unit = "call"
[[sku]]
id = "b-tok"
provider = "dc-b"
category = "model"
registered_model = true
unit = "token_million"
[[beneficiary]]
id = "ent-a"
name = "A"
kind = "enterprise"
[[beneficiary]]
id = "ent-b"
name = "B"
kind = "enterprise"
"#;

/// A fresh database and the tokens created in it before the server starts.
struct Db {
    url: String,
    tokens: HashMap<&'static str, String>,
    cleanup: Option<Box<dyn FnOnce()>>,
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(f) = self.cleanup.take() {
            f();
        }
    }
}

fn with_tokens(url: String, cleanup: Box<dyn FnOnce()>) -> Db {
    let mut store = suanli_store::open(&url).expect("store opens");
    let mut tokens = HashMap::new();
    for (name, principal) in [
        ("admin", Principal::Admin),
        ("finance", Principal::Finance),
        ("finance2", Principal::Finance),
        ("auditor", Principal::Auditor),
        ("dc-a", Principal::Provider("dc-a".into())),
        ("dc-b", Principal::Provider("dc-b".into())),
        ("ent-a", Principal::Beneficiary("ent-a".into())),
    ] {
        // Each token is a person's (user `name`), so the two finance tokens are two persons.
        let token = suanli_server::auth::new_token();
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let user = suanli_store::users::NewUser {
            login: name.to_owned(),
            name: format!("{name} person"),
            principal: principal.clone(),
            email: None,
            password_hash: None,
            service: false,
            created_at: at.clone(),
        };
        let mut row = suanli_store::tokens::TokenRow {
            token_hash: suanli_server::auth::hash_token(&token),
            principal,
            created_at: at,
            expires_at: None,
            revoked_at: None,
            user: None,
            user_disabled_at: None,
            label: String::new(),
        };
        store
            .transaction(&mut |tx| {
                let user_id = suanli_store::users::insert(tx, &user)?;
                row.user = suanli_store::users::by_id(tx, user_id)?.map(|u| u.user_ref());
                suanli_store::tokens::insert(tx, &row)
            })
            .expect("user and token stored");
        tokens.insert(name, token);
    }
    Db {
        url,
        tokens,
        cleanup: Some(cleanup),
    }
}

fn sqlite_db() -> Option<Db> {
    let db = suanli_testkit::sqlite("grpc");
    Some(with_tokens(db.url.clone(), Box::new(move || drop(db))))
}

fn pg_db() -> Option<Db> {
    let db = suanli_testkit::postgres("grpc")?;
    Some(with_tokens(db.url.clone(), Box::new(move || drop(db))))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn start(url: &str) -> Running {
    suanli_server::serve::start(ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        database_url: url.to_owned(),
        http_addr: None,
        ..ServeConfig::default()
    })
    .await
    .expect("server starts")
}

type Auth = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send + Sync>;

fn bearer(token: &str) -> Auth {
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    Box::new(move |mut r: Request<()>| {
        r.metadata_mut().insert("authorization", value.clone());
        Ok(r)
    })
}

async fn channel(running: &Running) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .expect("connects")
}

async fn metering(
    running: &Running,
    token: &str,
) -> MeteringServiceClient<InterceptedService<Channel, Auth>> {
    MeteringServiceClient::with_interceptor(channel(running).await, bearer(token))
}

async fn load_registry(running: &Running, token: &str) -> pb::LoadRegistryResponse {
    load_registry_text(running, token, REGISTRY).await
}

async fn load_registry_text(
    running: &Running,
    token: &str,
    text: &str,
) -> pb::LoadRegistryResponse {
    let mut client = RegistryServiceClient::with_interceptor(channel(running).await, bearer(token));
    client
        .load_registry(pb::LoadRegistryRequest {
            file_name: "test.toml".into(),
            toml_text: text.into(),
        })
        .await
        .expect("registry loads")
        .into_inner()
}

/// A month of one March record for each of `beneficiaries` (granted "nat" in [`REGISTRY`]),
/// loaded and ingested under the default limits (the registry may pass the small one); then
/// the server restarted with `message_bytes_max`.
async fn wide_month(
    db: &Db,
    running: Running,
    beneficiaries: &[String],
    message_bytes_max: usize,
) -> Running {
    let mut registry = REGISTRY.to_owned();
    for b in beneficiaries {
        registry.push_str(&format!(
            "[[beneficiary]]\nid = \"{b}\"\nkind = \"enterprise\"\n[[grant]]\nbeneficiary = \"{b}\"\nprogramme = \"nat\"\n"
        ));
    }
    load_registry_text(&running, &db.tokens["admin"], &registry).await;
    let mut client = metering(&running, &db.tokens["dc-a"]).await;
    let records: Vec<pb::UsageRecord> = (0..)
        .zip(beneficiaries)
        .map(|(i, b)| {
            rec(
                "dc-a",
                &format!("w{i}"),
                b,
                "a-mod",
                "2025-03-01T00:00:00+08:00",
                "2025-03-01T01:00:00+08:00",
                "1",
                100 + i,
            )
        })
        .collect();
    for (n, batch) in records.chunks(500).enumerate() {
        let r = client
            .ingest(pb::IngestRequest {
                batch_id: n.to_string(),
                records: batch.to_vec(),
            })
            .await
            .expect("batch ingests")
            .into_inner();
        assert!(
            outcomes(&r).iter().all(|o| *o == pb::Outcome::Accepted),
            "{:?}",
            r.problems
        );
    }
    running.stop().await.unwrap();
    suanli_server::serve::start(ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url.clone(),
        http_addr: None,
        limits: suanli_server::config::Limits {
            message_bytes_max,
            ..Default::default()
        },
        ..ServeConfig::default()
    })
    .await
    .expect("server starts")
}

fn ts(text: &str) -> Option<prost_types::Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(text).expect("time");
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

#[allow(
    clippy::too_many_arguments,
    reason = "one argument per field of a record"
)]
fn rec(
    provider: &str,
    id: &str,
    beneficiary: &str,
    sku: &str,
    start: &str,
    end: &str,
    quantity: &str,
    fen: i64,
) -> pb::UsageRecord {
    pb::UsageRecord {
        provider: provider.into(),
        record_id: id.into(),
        beneficiary: beneficiary.into(),
        sku: sku.into(),
        start: ts(start),
        end: ts(end),
        quantity: quantity.into(),
        amount_fen: fen,
    }
}

fn gpu(id: &str, quantity: &str, fen: i64) -> pb::UsageRecord {
    rec(
        "dc-a",
        id,
        "ent-a",
        "a-gpu",
        "2025-03-01T00:00:00+08:00",
        "2025-03-01T01:00:00+08:00",
        quantity,
        fen,
    )
}

fn outcomes(r: &pb::IngestResponse) -> Vec<pb::Outcome> {
    r.outcomes
        .iter()
        .map(|&o| pb::Outcome::try_from(o).expect("known outcome"))
        .collect()
}

/// After the server stopped: the running accruals equal a recount from the raw records.
fn assert_accruals_recount(url: &str) -> Vec<suanli_store::AccrualRow> {
    let mut store = suanli_store::open(url).expect("reopens");
    let accruals = store.accruals().expect("accruals");
    assert_eq!(
        accruals,
        store.recount_accruals().expect("recount"),
        "accrual totals equal a recount from raw records"
    );
    accruals
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[test] fn $name() { if let Some(db) = super::sqlite_db() { super::$name(db) } } )*
        }
        mod on_postgres {
            $( #[test] fn $name() { if let Some(db) = super::pg_db() { super::$name(db) } } )*
        }
    };
}

on_both_backends!(
    idempotent_resend,
    conflict,
    every_rejection_reason,
    provider_isolation,
    concurrent_streams_with_retries,
    restart_keeps_everything,
    a_quiet_server_folds_pending_accruals,
    a_run_larger_than_a_message_in_pages,
    a_ledger_larger_than_a_message_in_pages
);

// A run whose lines pass the server's message limit: its RunResponse carries the header and
// totals without lines (lines_omitted), and ListRunLines sends every line in order, in
// messages within the limit, from any position, with bad requests refused by name.
fn a_run_larger_than_a_message_in_pages(db: Db) {
    const BENEFICIARIES: usize = 1_500;
    const MESSAGE_BYTES_MAX: usize = 64 * 1024;
    let rt = runtime();
    rt.block_on(async {
        // The registry (over 64 KiB) and the usage go in under the default limit; the server is
        // then restarted with the small one.
        let wide: Vec<String> = (0..BENEFICIARIES).map(|i| format!("wide-{i:05}")).collect();
        let running = wide_month(&db, start(&db.url).await, &wide, MESSAGE_BYTES_MAX).await;
        let mut finance = pb::settlement_service_client::SettlementServiceClient::with_interceptor(
            channel(&running).await,
            bearer(&db.tokens["finance"]),
        );
        let created = finance
            .create_run(pb::CreateRunRequest {
                programme: "nat".into(),
                period: "2025-03".into(),
            })
            .await
            .expect("a run too large for one message is created")
            .into_inner();
        let run = created.run.expect("the run's header");
        assert!(created.lines_omitted && created.lines.is_empty());
        assert_eq!(run.lines as usize, BENEFICIARIES);
        // 30% of each record, rounded half up once (R6).
        let expected: Vec<(String, i64)> = (0..BENEFICIARIES)
            .map(|i| (format!("wide-{i:05}"), ((100 + i as i64) * 3 + 5) / 10))
            .collect();
        assert_eq!(run.total_fen, expected.iter().map(|e| e.1).sum::<i64>());
        let shown = finance
            .get_run(pb::GetRunRequest { run_id: run.run_id })
            .await
            .expect("GetRun")
            .into_inner();
        assert!(shown.lines_omitted && shown.lines.is_empty());
        assert_eq!(shown.run.as_ref().map(|r| r.total_fen), Some(run.total_fen));

        let finance_token = db.tokens["finance"].clone();
        let read = |from_line: u64, page_lines: u32| {
            run_lines(&running, &finance_token, run.run_id, from_line, page_lines)
        };
        let messages = read(0, 0).await.expect("every line");
        assert!(messages.len() > 1, "the lines come in several messages");
        let mut next = 0;
        for m in &messages {
            use prost::Message;
            assert!(m.encoded_len() <= MESSAGE_BYTES_MAX, "{}", m.encoded_len());
            assert_eq!(m.first_line, next, "pages follow each other");
            next += m.lines.len() as u64;
        }
        let lines: Vec<pb::RunLine> = messages.into_iter().flat_map(|m| m.lines).collect();
        let got: Vec<(String, i64)> = lines
            .iter()
            .map(|l| (l.beneficiary.clone(), l.amount_fen))
            .collect();
        assert_eq!(got, expected);

        // From a position on, in small pages: the same lines as the tail.
        let tail = read(1_400, 40).await.expect("the tail");
        assert_eq!(
            tail.iter().map(|m| m.first_line).collect::<Vec<_>>(),
            [1_400, 1_440, 1_480]
        );
        let tail: Vec<pb::RunLine> = tail.into_iter().flat_map(|m| m.lines).collect();
        assert_eq!(tail, lines[1_400..]);
        assert!(read(5_000, 0).await.expect("past the end").is_empty());

        let refused = read(0, 10_001).await.expect_err("too large a page");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(refused.message(), "page_lines is 10001; at most 10000");
        let refused = run_lines(&running, &finance_token, run.run_id + 1, 0, 0)
            .await
            .expect_err("no such run");
        assert_eq!(refused.code(), Code::NotFound);
        assert_eq!(
            refused.message(),
            format!("run {} does not exist", run.run_id + 1)
        );
        let mut provider = pb::settlement_service_client::SettlementServiceClient::with_interceptor(
            channel(&running).await,
            bearer(&db.tokens["dc-a"]),
        );
        let refused = provider
            .list_run_lines(pb::ListRunLinesRequest {
                run_id: run.run_id,
                page_lines: 0,
                from_line: 0,
            })
            .await
            .expect_err("a provider reads no run");
        assert_eq!(refused.code(), Code::PermissionDenied);
        running.stop().await.unwrap();
    });
}

// A ledger whose run journal and trial balance pass the server's message limit: the unary
// ListJournals and TrialBalance refuse it by name, and ListJournalPages and ListTrialBalance
// send all of it in messages within the limit (the journal split across them), with its
// extent, and the journal filters apply.
fn a_ledger_larger_than_a_message_in_pages(db: Db) {
    const BENEFICIARIES: usize = 2_500;
    const MESSAGE_BYTES_MAX: usize = 64 * 1024;
    let rt = runtime();
    rt.block_on(async {
        let id = |i: usize| format!("beneficiary-with-a-long-id-{i:05}");
        let ids: Vec<String> = (0..BENEFICIARIES).map(id).collect();
        let running = wide_month(&db, start(&db.url).await, &ids, MESSAGE_BYTES_MAX).await;
        let settlement = |token: &str| {
            let token = db.tokens[token].clone();
            let running = &running;
            async move {
                pb::settlement_service_client::SettlementServiceClient::with_interceptor(
                    channel(running).await,
                    bearer(&token),
                )
            }
        };
        let run = settlement("finance")
            .await
            .create_run(pb::CreateRunRequest {
                programme: "nat".into(),
                period: "2025-03".into(),
            })
            .await
            .expect("run created")
            .into_inner()
            .run
            .unwrap();
        let action = pb::RunActionRequest { run_id: run.run_id };
        let mut finance2 = settlement("finance2").await;
        finance2.approve_run(action).await.expect("approved");
        let posted = finance2.post_run(action).await.expect("posted").into_inner();
        let journal_id = posted.run.unwrap().journal_id;

        // The journal: the expense, then each payee's payable, in payee order; 30% of each
        // record, rounded half up once (R6).
        let owed: Vec<i64> = (0..BENEFICIARIES)
            .map(|i| ((100 + i as i64) * 3 + 5) / 10)
            .collect();
        let total: i64 = owed.iter().sum();
        let mut expected = vec![("expense:nat".to_owned(), total, 0)];
        expected.extend((0..BENEFICIARIES).map(|i| (format!("payable:nat:{}", id(i)), 0, owed[i])));

        let mut ledger = pb::ledger_service_client::LedgerServiceClient::with_interceptor(
            channel(&running).await,
            bearer(&db.tokens["auditor"]),
        );
        let refused = ledger
            .list_journals(pb::ListJournalsRequest::default())
            .await
            .expect_err("the journals pass one message");
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            format!("the journals pass one message of {MESSAGE_BYTES_MAX} bytes; read them with ListJournalPages")
        );
        let refused = ledger
            .trial_balance(pb::TrialBalanceRequest {})
            .await
            .expect_err("the trial balance passes one message");
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            format!("the trial balance passes one message of {MESSAGE_BYTES_MAX} bytes; read it with ListTrialBalance")
        );

        let journal_pages = |kind: &str, account_prefix: &str| {
            let request = pb::ListJournalsRequest {
                kind: kind.into(),
                account_prefix: account_prefix.into(),
            };
            let (running, token) = (&running, db.tokens["auditor"].clone());
            async move {
                let mut ledger = pb::ledger_service_client::LedgerServiceClient::with_interceptor(
                    channel(running).await,
                    bearer(&token),
                );
                let mut stream = ledger
                    .list_journal_pages(request)
                    .await
                    .expect("ListJournalPages")
                    .into_inner();
                let mut messages = Vec::new();
                while let Some(m) = stream.message().await.expect("a message") {
                    use prost::Message;
                    assert!(m.encoded_len() <= MESSAGE_BYTES_MAX, "{}", m.encoded_len());
                    messages.push(m);
                }
                messages
            }
        };
        let messages = journal_pages("", "").await;
        assert!(messages.len() > 2, "the journal comes in several messages");
        let extent = messages[0].extent.expect("the extent comes first");
        assert_eq!(
            extent,
            pb::LedgerExtent {
                through_journal_id: journal_id,
                journals: 1,
                entries: expected.len() as u64,
                accounts: 0,
                total_debit_fen: total,
                total_credit_fen: total,
            }
        );
        let mut got = Vec::new();
        for j in messages.iter().flat_map(|m| &m.journals) {
            assert_eq!(j.journal_id, journal_id);
            assert_eq!(j.kind, "run");
            assert_eq!(j.first_entry, got.len() as u64, "the journal continues where it stopped");
            got.extend(j.entries.iter().map(|e| (e.account.clone(), e.debit_fen, e.credit_fen)));
        }
        assert_eq!(got, expected);

        // Filtered: by an account of the journal (all of it), by another kind or account (none).
        let one = journal_pages("run", &format!("payable:nat:{}", id(BENEFICIARIES - 1))).await;
        assert_eq!(one[0].extent, Some(extent));
        let entries: usize = one.iter().flat_map(|m| &m.journals).map(|j| j.entries.len()).sum();
        assert_eq!(entries, expected.len());
        for (kind, prefix) in [("payment", ""), ("", "paid:"), ("", "payable:nat:nobody")] {
            let none = journal_pages(kind, prefix).await;
            assert_eq!(none.len(), 1, "{kind} {prefix}: the extent alone");
            assert_eq!(
                none[0].extent,
                Some(pb::LedgerExtent {
                    through_journal_id: journal_id,
                    ..Default::default()
                }),
                "{kind} {prefix}"
            );
        }

        // The trial balance: every account once, in order, and its totals.
        let mut stream = ledger
            .list_trial_balance(pb::TrialBalanceRequest {})
            .await
            .expect("ListTrialBalance")
            .into_inner();
        let mut messages = Vec::new();
        while let Some(m) = stream.message().await.expect("a message") {
            use prost::Message;
            assert!(m.encoded_len() <= MESSAGE_BYTES_MAX, "{}", m.encoded_len());
            messages.push(m);
        }
        assert!(messages.len() > 1, "the accounts come in several messages");
        assert_eq!(
            messages[0].extent,
            Some(pb::LedgerExtent {
                through_journal_id: journal_id,
                journals: 0,
                entries: expected.len() as u64,
                accounts: expected.len() as u64,
                total_debit_fen: total,
                total_credit_fen: total,
            })
        );
        assert!(messages[1..].iter().all(|m| m.extent.is_none()));
        let accounts: Vec<(String, i64, i64, i64)> = messages
            .iter()
            .flat_map(|m| &m.accounts)
            .map(|a| (a.account.clone(), a.debit_fen, a.credit_fen, a.balance_fen))
            .collect();
        let mut expected_accounts: Vec<(String, i64, i64, i64)> = expected
            .iter()
            .map(|(a, d, c)| (a.clone(), *d, *c, d - c))
            .collect();
        expected_accounts.sort();
        let mut sorted = accounts.clone();
        sorted.sort();
        assert_eq!(sorted, expected_accounts);
        running.stop().await.unwrap();
    });
}

/// Every message of a ListRunLines stream, or its refusal.
async fn run_lines(
    running: &Running,
    token: &str,
    run_id: u64,
    from_line: u64,
    page_lines: u32,
) -> Result<Vec<pb::RunLinesPage>, Status> {
    let mut client = pb::settlement_service_client::SettlementServiceClient::with_interceptor(
        channel(running).await,
        bearer(token),
    );
    let mut pages = client
        .list_run_lines(pb::ListRunLinesRequest {
            run_id,
            page_lines,
            from_line,
        })
        .await?
        .into_inner();
    let mut messages = Vec::new();
    while let Some(page) = pages.message().await? {
        messages.push(page);
    }
    Ok(messages)
}

// Ingest appends each group's accrual deltas as a pending row; once ingest goes quiet the
// server folds them (every second: on SQLite the housekeeping task, on PostgreSQL the store's
// fold thread), so the `accruals` table alone is current again.
fn a_quiet_server_folds_pending_accruals(db: Db) {
    fn pending(url: &str) -> i64 {
        let mut store = suanli_store::open(url).expect("opens beside the server");
        let mut n = -1;
        store
            .transaction(&mut |tx| {
                n = tx.query("SELECT COUNT(*) FROM accrual_pending", &[])?[0][0].int()?;
                Ok(())
            })
            .expect("count");
        n
    }
    runtime().block_on(async {
        let running = start(&db.url).await;
        load_registry(&running, &db.tokens["admin"]).await;
        let mut client = metering(&running, &db.tokens["dc-a"]).await;
        let batch = pb::IngestRequest {
            batch_id: "b1".into(),
            records: vec![gpu("r1", "2", 4000), gpu("r2", "3", 6000)],
        };
        let reply = client.ingest(batch).await.unwrap().into_inner();
        assert_eq!(outcomes(&reply), vec![pb::Outcome::Accepted; 2]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // The PostgreSQL client is synchronous: off the runtime's threads.
        let url = db.url.clone();
        let unfolded = move || {
            let url = url.clone();
            tokio::task::spawn_blocking(move || pending(&url))
        };
        while unfolded().await.expect("counted") != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "pending accrual deltas still unfolded after 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        running.stop().await.unwrap();
    });
    let accruals = assert_accruals_recount(&db.url);
    assert_eq!(
        accruals
            .iter()
            .map(|a| (a.amount_fen, a.records))
            .collect::<Vec<_>>(),
        vec![(10_000, 2)]
    );
}

// Resending a batch gives all DUPLICATE and leaves the accrual totals unchanged.
fn idempotent_resend(db: Db) {
    runtime().block_on(async {
        let running = start(&db.url).await;
        load_registry(&running, &db.tokens["admin"]).await;
        let mut client = metering(&running, &db.tokens["dc-a"]).await;
        let batch = pb::IngestRequest {
            batch_id: "b1".into(),
            records: vec![
                gpu("r1", "2", 4000),
                gpu("r2", "3", 6000),
                rec(
                    "dc-a",
                    "r3",
                    "ent-b",
                    "a-mod",
                    "2025-04-01T00:00:00+08:00",
                    "2025-04-01T00:00:01+08:00",
                    "1000",
                    99,
                ),
            ],
        };
        let first = client.ingest(batch.clone()).await.unwrap().into_inner();
        assert_eq!(outcomes(&first), vec![pb::Outcome::Accepted; 3]);
        assert_eq!(first.batch_id, "b1");
        running.stop().await.unwrap();
    });
    let before = assert_accruals_recount(&db.url);
    runtime().block_on(async {
        let running = start(&db.url).await;
        let mut client = metering(&running, &db.tokens["dc-a"]).await;
        let batch = pb::IngestRequest {
            batch_id: "b1-retry".into(),
            records: vec![
                gpu("r1", "2", 4000),
                gpu("r2", "3.000", 6000),
                rec(
                    "dc-a",
                    "r3",
                    "ent-b",
                    "a-mod",
                    "2025-03-31T16:00:00Z",
                    "2025-03-31T16:00:01Z",
                    "1000",
                    99,
                ),
            ],
        };
        let again = client.ingest(batch).await.unwrap().into_inner();
        assert_eq!(
            outcomes(&again),
            vec![pb::Outcome::Duplicate; 3],
            "{:?}",
            again.problems
        );
        let stats = client
            .get_usage_stats(pb::GetUsageStatsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!((stats.records, stats.amount_fen), (3, 10099));
        running.stop().await.unwrap();
    });
    assert_eq!(
        assert_accruals_recount(&db.url),
        before,
        "a resend changes no accrual total"
    );
}

// Same id with different content is CONFLICT, the stored record stands, and the batch's other records are stored.
fn conflict(db: Db) {
    runtime().block_on(async {
        let running = start(&db.url).await;
        load_registry(&running, &db.tokens["admin"]).await;
        let mut client = metering(&running, &db.tokens["dc-a"]).await;
        let r = client
            .ingest(pb::IngestRequest {
                batch_id: "1".into(),
                records: vec![gpu("r1", "1", 2000)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(outcomes(&r), vec![pb::Outcome::Accepted]);
        let r = client
            .ingest(pb::IngestRequest {
                batch_id: "2".into(),
                records: vec![gpu("r1", "1", 1500), gpu("r2", "1", 100)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            outcomes(&r),
            vec![pb::Outcome::Conflict, pb::Outcome::Accepted]
        );
        assert_eq!(r.problems.len(), 1);
        assert_eq!(r.problems[0].index, 0);
        assert!(
            r.problems[0].message.contains("\"r1\""),
            "{}",
            r.problems[0].message
        );
        let stats = client
            .get_usage_stats(pb::GetUsageStatsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stats.amount_fen, 2100, "the stored record stands");
        running.stop().await.unwrap();
    });
    assert_accruals_recount(&db.url);
}

// Every rejection reason reachable over gRPC comes back per record, with the field named, and never fails the batch.
fn every_rejection_reason(db: Db) {
    runtime().block_on(async {
        let running = start(&db.url).await;
        let mut admin = metering(&running, &db.tokens["admin"]).await;
        let early = admin
            .ingest(pb::IngestRequest {
                batch_id: "0".into(),
                records: vec![gpu("r0", "1", 1)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            early.problems[0].reason,
            pb::RejectReason::NoRegistry as i32,
            "before any registry is loaded"
        );
        load_registry(&running, &db.tokens["admin"]).await;
        let s = "2025-03-01T00:00:00+08:00";
        let e = "2025-03-01T01:00:00+08:00";
        let mut no_start = gpu("x-start", "1", 1);
        no_start.start = None;
        use pb::RejectReason as R;
        // (record, expected reason, expected field). AMOUNT_PRECISION cannot occur on the wire
        // (amounts are integer fen); the CSV import test covers it.
        let cases: Vec<(pb::UsageRecord, R, &str)> = vec![
            (gpu("", "1", 1), R::MissingField, "record_id"),
            (no_start, R::MissingField, "start"),
            (gpu("x-qty", "abc", 1), R::InvalidField, "quantity"),
            (gpu(&"x".repeat(200), "1", 1), R::InvalidField, "record_id"),
            (
                rec("dc-x", "x1", "ent-a", "a-gpu", s, e, "1", 1),
                R::UnknownProvider,
                "provider",
            ),
            (
                rec("dc-a", "x2", "ent-x", "a-gpu", s, e, "1", 1),
                R::UnknownBeneficiary,
                "beneficiary",
            ),
            (
                rec("dc-a", "x3", "ent-a", "x-sku", s, e, "1", 1),
                R::UnknownSku,
                "sku",
            ),
            (
                rec("dc-a", "x4", "ent-a", "b-tok", s, e, "1", 1),
                R::SkuNotOfProvider,
                "sku",
            ),
            (
                rec("dc-a", "x5", "ent-a", "a-gpu", e, s, "1", 1),
                R::EndNotAfterStart,
                "end",
            ),
            (gpu("x6", "1", -1), R::NegativeAmount, "amount"),
            (gpu("x7", "-1", 1), R::NegativeQuantity, "quantity"),
            (gpu("x8", "1", 2002), R::AboveListPrice, "amount"),
            (gpu("x9", "11", 1), R::OverCapacity, "quantity"),
        ];
        let mut records: Vec<pb::UsageRecord> = cases.iter().map(|c| c.0.clone()).collect();
        // A good record in the same batch is stored; then one that fills the hour, then one past it.
        records.push(gpu("ok", "1", 2001));
        records.push(gpu("fill", "9", 100));
        records.push(gpu("past", "0.5", 1));
        let r = admin
            .ingest(pb::IngestRequest {
                batch_id: "all".into(),
                records,
            })
            .await
            .unwrap()
            .into_inner();
        let got = outcomes(&r);
        for (i, (record, reason, field)) in cases.iter().enumerate() {
            assert_eq!(
                got[i],
                pb::Outcome::Rejected,
                "case {i} ({:?})",
                record.record_id
            );
            let p = r
                .problems
                .iter()
                .find(|p| p.index as usize == i)
                .expect("a problem per rejected record");
            assert_eq!(
                (p.reason, p.field.as_str()),
                (*reason as i32, *field),
                "case {i}: {}",
                p.message
            );
            assert!(!p.message.is_empty());
        }
        let n = cases.len();
        assert_eq!(
            &got[n..],
            &[
                pb::Outcome::Accepted,
                pb::Outcome::Accepted,
                pb::Outcome::Rejected
            ]
        );
        let past = r
            .problems
            .iter()
            .find(|p| p.index as usize == n + 2)
            .unwrap();
        assert_eq!(
            (past.reason, past.field.as_str()),
            (R::OverCapacity as i32, "quantity"),
            "{}",
            past.message
        );
        // A provider token posting another provider's record.
        let mut a = metering(&running, &db.tokens["dc-a"]).await;
        let r = a
            .ingest(pb::IngestRequest {
                batch_id: "m".into(),
                records: vec![rec("dc-b", "y1", "ent-a", "b-tok", s, e, "1", 1)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.problems[0].reason, R::ProviderMismatch as i32);
        // Only an oversized batch fails the call.
        let big = pb::IngestRequest {
            batch_id: "big".into(),
            records: vec![gpu("z", "0", 0); 10_001],
        };
        assert_eq!(
            a.ingest(big).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        running.stop().await.unwrap();
    });
    assert_accruals_recount(&db.url);
}

// A provider token posts and voids only its own records; other roles and missing tokens are refused.
fn provider_isolation(db: Db) {
    runtime().block_on(async {
        let running = start(&db.url).await;
        load_registry(&running, &db.tokens["admin"]).await;
        let s = "2025-03-01T00:00:00+08:00";
        let e = "2025-03-01T01:00:00+08:00";
        let mut a = metering(&running, &db.tokens["dc-a"]).await;
        let mut b = metering(&running, &db.tokens["dc-b"]).await;
        let r = b
            .ingest(pb::IngestRequest {
                batch_id: "1".into(),
                records: vec![rec("dc-b", "same-id", "ent-a", "b-tok", s, e, "1", 7)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(outcomes(&r), vec![pb::Outcome::Accepted]);
        // The same record id under another provider is another record.
        let r = a
            .ingest(pb::IngestRequest {
                batch_id: "2".into(),
                records: vec![
                    gpu("same-id", "1", 5),
                    rec("dc-b", "b2", "ent-a", "b-tok", s, e, "1", 7),
                ],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            outcomes(&r),
            vec![pb::Outcome::Accepted, pb::Outcome::Rejected]
        );
        let void_b = pb::VoidUsageRequest {
            provider: "dc-b".into(),
            record_id: "same-id".into(),
            reason: "not mine".into(),
        };
        assert_eq!(
            a.void_usage(void_b.clone()).await.unwrap_err().code(),
            Code::PermissionDenied
        );
        assert_eq!(
            a.get_usage_stats(pb::GetUsageStatsRequest {
                provider: "dc-b".into()
            })
            .await
            .unwrap_err()
            .code(),
            Code::PermissionDenied
        );
        assert_eq!(
            a.get_usage_stats(pb::GetUsageStatsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .amount_fen,
            5,
            "own totals only"
        );
        let v = b.void_usage(void_b.clone()).await.unwrap().into_inner();
        assert!(v.voided && v.voided_at.is_some());
        assert!(
            !b.void_usage(void_b).await.unwrap().into_inner().voided,
            "voiding again is a no-op"
        );
        let missing = pb::VoidUsageRequest {
            provider: "dc-b".into(),
            record_id: "nope".into(),
            reason: "x".into(),
        };
        assert_eq!(
            b.void_usage(missing).await.unwrap_err().code(),
            Code::NotFound
        );
        let mut finance = metering(&running, &db.tokens["finance"]).await;
        assert_eq!(
            finance
                .ingest(pb::IngestRequest::default())
                .await
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
        let mut registry_as_provider = RegistryServiceClient::with_interceptor(
            channel(&running).await,
            bearer(&db.tokens["dc-a"]),
        );
        let load = pb::LoadRegistryRequest {
            file_name: "x".into(),
            toml_text: REGISTRY.into(),
        };
        assert_eq!(
            registry_as_provider
                .load_registry(load)
                .await
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
        let mut anonymous = MeteringServiceClient::new(channel(&running).await);
        assert_eq!(
            anonymous
                .ingest(pb::IngestRequest::default())
                .await
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
        let mut forged = metering(&running, "sl_not_a_token").await;
        assert_eq!(
            forged
                .ingest(pb::IngestRequest::default())
                .await
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
        let mut auditor = metering(&running, &db.tokens["auditor"]).await;
        let all = auditor
            .get_usage_stats(pb::GetUsageStatsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!((all.records, all.voided_records, all.amount_fen), (2, 1, 5));
        running.stop().await.unwrap();
    });
    assert_accruals_recount(&db.url);
}

// 8 concurrent streams send overlapping records and retry batches: every record is accepted exactly once, none lost.
fn concurrent_streams_with_retries(db: Db) {
    const KEYS: usize = 1200;
    const STREAMS: usize = 8;
    // The content of key k is a function of k, so any stream's copy is a duplicate, never a conflict.
    let record_of = |k: usize| -> pb::UsageRecord {
        let day = 1 + k % 28;
        let start = format!("2025-05-{day:02}T{:02}:00:00+08:00", k % 24);
        let end = format!("2025-05-{day:02}T{:02}:59:00+08:00", k % 24);
        if k.is_multiple_of(2) {
            rec(
                "dc-a",
                &format!("k{k}"),
                if k.is_multiple_of(4) {
                    "ent-a"
                } else {
                    "ent-b"
                },
                "a-mod",
                &start,
                &end,
                &(k % 7 + 1).to_string(),
                (k * 13 % 1000) as i64,
            )
        } else {
            rec(
                "dc-b",
                &format!("k{k}"),
                "ent-a",
                "b-tok",
                &start,
                &end,
                "0.5",
                (k * 7 % 1000) as i64,
            )
        }
    };
    let total_fen: i64 = (0..KEYS).map(|k| record_of(k).amount_fen).sum();
    runtime().block_on(async {
        let running = start(&db.url).await;
        load_registry(&running, &db.tokens["admin"]).await;
        let mut tasks = Vec::new();
        for s in 0..STREAMS {
            let provider = if s % 2 == 0 { "dc-a" } else { "dc-b" };
            // Each stream sends its provider's keys in a seeded order, in batches of 50, then
            // retries its first three batches; every key is sent by all four streams of its provider.
            let mut keys: Vec<usize> = (0..KEYS)
                .filter(|k| (k % 2 == 0) == (provider == "dc-a"))
                .collect();
            let mut seed = 0x9e37_79b9_u64 + s as u64;
            for i in (1..keys.len()).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                keys.swap(i, (seed % (i as u64 + 1)) as usize);
            }
            let mut batches: Vec<pb::IngestRequest> = keys
                .chunks(50)
                .enumerate()
                .map(|(i, chunk)| pb::IngestRequest {
                    batch_id: format!("{s}-{i}"),
                    records: chunk.iter().map(|&k| record_of(k)).collect(),
                })
                .collect();
            let retries: Vec<pb::IngestRequest> = batches
                .iter()
                .take(3)
                .map(|b| pb::IngestRequest {
                    batch_id: format!("{}-retry", b.batch_id),
                    records: b.records.clone(),
                })
                .collect();
            batches.extend(retries);
            let mut client = metering(&running, &db.tokens[provider]).await;
            tasks.push(tokio::spawn(async move {
                let sent = batches.len();
                let acks = client
                    .ingest_stream(tokio_stream::iter(batches.clone()))
                    .await
                    .unwrap()
                    .into_inner();
                let acks: Vec<pb::IngestResponse> =
                    tokio_stream::StreamExt::collect::<Vec<_>>(acks)
                        .await
                        .into_iter()
                        .map(|a| a.unwrap())
                        .collect();
                assert_eq!(acks.len(), sent, "one acknowledgement per batch");
                let mut seen = Vec::new();
                for (ack, batch) in acks.iter().zip(&batches) {
                    assert_eq!(
                        ack.batch_id, batch.batch_id,
                        "acknowledgements keep batch order"
                    );
                    for (o, r) in outcomes(ack).into_iter().zip(&batch.records) {
                        seen.push((r.record_id.clone(), o));
                    }
                }
                seen
            }));
        }
        let mut accepted: HashMap<String, usize> = HashMap::new();
        for t in tasks {
            for (id, outcome) in t.await.unwrap() {
                match outcome {
                    pb::Outcome::Accepted => *accepted.entry(id).or_default() += 1,
                    pb::Outcome::Duplicate => {}
                    other => panic!("record {id}: unexpected {other:?}"),
                }
            }
        }
        assert_eq!(accepted.len(), KEYS, "every record accepted");
        assert!(
            accepted.values().all(|&n| n == 1),
            "no record accepted twice"
        );
        let mut auditor = metering(&running, &db.tokens["auditor"]).await;
        let stats = auditor
            .get_usage_stats(pb::GetUsageStatsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (stats.records, stats.amount_fen),
            (KEYS as u64, total_fen),
            "none lost, none counted twice"
        );
        running.stop().await.unwrap();
    });
    let accruals = assert_accruals_recount(&db.url);
    assert_eq!(
        accruals.iter().map(|a| a.amount_fen).sum::<i64>(),
        total_fen
    );
    assert_eq!(accruals.iter().map(|a| a.records).sum::<i64>(), KEYS as i64);
}

// A restarted server keeps records, accruals, capacity, tokens and the current registry version.
fn restart_keeps_everything(db: Db) {
    let hash = runtime().block_on(async {
        let running = start(&db.url).await;
        let loaded = load_registry(&running, &db.tokens["admin"]).await;
        assert!(loaded.created);
        assert!(
            !load_registry(&running, &db.tokens["finance"]).await.created,
            "loading the same text again keeps the version"
        );
        let mut a = metering(&running, &db.tokens["dc-a"]).await;
        let r = a
            .ingest(pb::IngestRequest {
                batch_id: "1".into(),
                records: vec![gpu("r1", "10", 100), gpu("r2", "0", 0)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(outcomes(&r), vec![pb::Outcome::Accepted; 2]);
        running.stop().await.unwrap();
        loaded.current.unwrap().content_hash
    });
    let accruals = assert_accruals_recount(&db.url);
    runtime().block_on(async {
        let running = start(&db.url).await;
        let mut registry = RegistryServiceClient::with_interceptor(
            channel(&running).await,
            bearer(&db.tokens["auditor"]),
        );
        let current = registry
            .get_registry(pb::GetRegistryRequest {})
            .await
            .unwrap()
            .into_inner()
            .current
            .expect("restored");
        assert_eq!((current.version, current.content_hash), (1, hash));
        let mut a = metering(&running, &db.tokens["dc-a"]).await;
        let r = a
            .ingest(pb::IngestRequest {
                batch_id: "2".into(),
                records: vec![gpu("r1", "10", 100), gpu("r3", "0.1", 1)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            outcomes(&r),
            vec![pb::Outcome::Duplicate, pb::Outcome::Rejected],
            "the hour is still full after a restart"
        );
        running.stop().await.unwrap();
    });
    assert_eq!(assert_accruals_recount(&db.url), accruals);
}

/// Two `suanli serve` on one PostgreSQL database, both ingesting and settling at the same time
/// (deploy/SCALING.md): every record is stored once whichever server took it, an hour's
/// capacity holds across the servers, a run is created once and posted once, the journal
/// balances and the audit chain is unbroken.
#[test]
fn two_servers_on_one_postgres_database() {
    let Some(db) = pg_db() else { return };
    const HOURS: usize = 40;
    // Records both servers receive, with the same content: stored once, DUPLICATE on the other.
    let shared_record = |h: usize, j: usize| {
        let (day, hour) = (1 + h / 24, h % 24);
        rec(
            "dc-a",
            &format!("s{h}-{j}"),
            "ent-a",
            "a-gpu",
            &format!("2025-03-{day:02}T{hour:02}:00:00+08:00"),
            &format!("2025-03-{day:02}T{hour:02}:59:00+08:00"),
            "3",
            300 + j as i64,
        )
    };
    // One record per server and hour, of 5 GPU-hours each: with the 6 of the shared records,
    // only one of the two fits under the capacity of 10.
    let own_record = |server: &str, h: usize| {
        let (day, hour) = (1 + h / 24, h % 24);
        rec(
            "dc-a",
            &format!("{server}{h}"),
            "ent-a",
            "a-gpu",
            &format!("2025-03-{day:02}T{hour:02}:00:00+08:00"),
            &format!("2025-03-{day:02}T{hour:02}:59:00+08:00"),
            "4",
            400,
        )
    };
    // Records without capacity, different on each server, for volume.
    let tokens_record = |server: &str, i: usize| {
        rec(
            "dc-b",
            &format!("{server}-t{i}"),
            "ent-b",
            "b-tok",
            "2025-03-10T10:00:00+08:00",
            "2025-03-10T10:01:00+08:00",
            "1",
            (i % 97) as i64 + 1,
        )
    };
    runtime().block_on(async {
        let a = start(&db.url).await;
        let b = start(&db.url).await;
        // Both enterprises hold a grant, so the run has lines to post.
        let granted = format!(
            "{REGISTRY}[[grant]]\nbeneficiary = \"ent-a\"\nprogramme = \"nat\"\n[[grant]]\nbeneficiary = \"ent-b\"\nprogramme = \"nat\"\n"
        );
        load_registry_text(&a, &db.tokens["admin"], &granted).await;
        // B installs the version A loaded within its sync interval.
        let mut registry_b =
            RegistryServiceClient::with_interceptor(channel(&b).await, bearer(&db.tokens["auditor"]));
        let mut waited = 0;
        while registry_b
            .get_registry(pb::GetRegistryRequest {})
            .await
            .unwrap()
            .into_inner()
            .current
            .is_none()
        {
            assert!(waited < 100, "server B never saw the registry A loaded");
            waited += 1;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }

        let mut tasks = Vec::new();
        for (name, running) in [("a", &a), ("b", &b)] {
            let mut gpu_client = metering(running, &db.tokens["dc-a"]).await;
            let mut tok_client = metering(running, &db.tokens["dc-b"]).await;
            let server = name.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut seen: Vec<(String, pb::Outcome)> = Vec::new();
                for h in 0..HOURS {
                    // Server A walks the hours forwards, B backwards, so they meet in the middle.
                    let h = if server == "a" { h } else { HOURS - 1 - h };
                    let records = vec![
                        shared_record(h, 0),
                        own_record(&server, h),
                        shared_record(h, 1),
                    ];
                    let r = gpu_client
                        .ingest(pb::IngestRequest {
                            batch_id: format!("{server}-g{h}"),
                            records: records.clone(),
                        })
                        .await
                        .expect("ingest")
                        .into_inner();
                    for (rec, o) in records.iter().zip(outcomes(&r)) {
                        seen.push((rec.record_id.clone(), o));
                    }
                    let records: Vec<_> = (0..50).map(|i| tokens_record(&server, h * 50 + i)).collect();
                    let r = tok_client
                        .ingest(pb::IngestRequest {
                            batch_id: format!("{server}-t{h}"),
                            records: records.clone(),
                        })
                        .await
                        .expect("ingest")
                        .into_inner();
                    for (rec, o) in records.iter().zip(outcomes(&r)) {
                        seen.push((rec.record_id.clone(), o));
                    }
                }
                seen
            }));
        }
        let mut accepted: HashMap<String, usize> = HashMap::new();
        let mut answered: HashMap<String, Vec<pb::Outcome>> = HashMap::new();
        for t in tasks {
            for (id, o) in t.await.unwrap() {
                if o == pb::Outcome::Accepted {
                    *accepted.entry(id.clone()).or_default() += 1;
                }
                answered.entry(id).or_default().push(o);
            }
        }
        assert!(
            accepted.values().all(|&n| n == 1),
            "no record is accepted by both servers"
        );
        for h in 0..HOURS {
            for j in 0..2 {
                let id = format!("s{h}-{j}");
                let o = &answered[&id];
                assert_eq!(o.len(), 2, "{id} was sent to both servers");
                assert!(
                    o.contains(&pb::Outcome::Accepted),
                    "{id} fits in its hour and is accepted by one server: {o:?}"
                );
                assert!(
                    o.contains(&pb::Outcome::Duplicate),
                    "the other server answers DUPLICATE for {id}: {o:?}"
                );
            }
            let own = [format!("a{h}"), format!("b{h}")];
            let taken = own.iter().filter(|id| accepted.contains_key(*id)).count();
            assert!(
                taken <= 1,
                "hour {h}: both servers accepted 4 GPU-hours on top of 6 (capacity 10)"
            );
        }
        for server in ["a", "b"] {
            for i in 0..HOURS * 50 {
                assert_eq!(
                    answered[&format!("{server}-t{i}")],
                    vec![pb::Outcome::Accepted]
                );
            }
        }

        // Both servers count the same stored records: exactly the accepted ones.
        for running in [&a, &b] {
            let mut m = metering(running, &db.tokens["admin"]).await;
            let stats = m
                .get_usage_stats(pb::GetUsageStatsRequest::default())
                .await
                .unwrap()
                .into_inner();
            assert_eq!(stats.records as usize, accepted.len());
        }

        // Settlement on both servers at once: one run is created, one posting happens.
        let settle = |running: &Running, token: &str| {
            let endpoint = format!("http://{}", running.addr);
            let token = token.to_owned();
            async move {
                let channel = tonic::transport::Endpoint::from_shared(endpoint)
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                pb::settlement_service_client::SettlementServiceClient::with_interceptor(
                    channel,
                    bearer(&token),
                )
            }
        };
        let mut fin_a = settle(&a, &db.tokens["finance"]).await;
        let mut fin_a2 = settle(&a, &db.tokens["finance"]).await;
        let mut fin_b = settle(&b, &db.tokens["finance2"]).await;
        let mut fin_b2 = settle(&b, &db.tokens["finance2"]).await;
        let create = |period: &str| pb::CreateRunRequest {
            programme: "nat".into(),
            period: period.into(),
        };
        let (ra, rb) = tokio::join!(fin_a.create_run(create("2025-03")), fin_b.create_run(create("2025-03")));
        let created: Vec<_> = [ra, rb].into_iter().filter_map(Result::ok).collect();
        assert_eq!(created.len(), 1, "one open run per programme and period across servers");
        let run = created[0].get_ref().run.clone().expect("run");
        let approve = pb::RunActionRequest { run_id: run.run_id };
        // Four eyes across servers: whichever finance user created it, the other approves.
        assert!(!run.created_by.is_empty(), "the run names its creator");
        let approved = match fin_b.approve_run(approve).await {
            Ok(r) => r,
            Err(_) => fin_a.approve_run(approve).await.expect("the other finance user approves"),
        };
        assert!(!approved.get_ref().run.as_ref().unwrap().approved_by.is_empty());
        let (pa, pb_) = tokio::join!(fin_a2.post_run(approve), fin_b2.post_run(approve));
        let posts: Vec<_> = [pa, pb_].into_iter().map(|r| r.expect("posting is idempotent").into_inner()).collect();
        assert_eq!(
            posts.iter().filter(|p| !p.unchanged).count(),
            1,
            "exactly one of the two posts writes the journal"
        );

        // The ledger, read through either server: one journal for the run, balanced, and its
        // total is what the accepted records entitle (30% of their fen, per line).
        let mut ledger = pb::ledger_service_client::LedgerServiceClient::with_interceptor(
            channel(&b).await,
            bearer(&db.tokens["auditor"]),
        );
        let journals = ledger
            .list_journals(pb::ListJournalsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .journals;
        assert_eq!(journals.len(), 1, "one journal, whichever server posted");
        assert!(posts[0].run.as_ref().unwrap().total_fen > 0);
        let trial = ledger
            .trial_balance(pb::TrialBalanceRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(trial.balanced);
        let posted = posts.iter().find(|p| !p.unchanged).unwrap().run.clone().unwrap();
        assert_eq!(trial.total_debit_fen, posted.total_fen);
        a.stop().await.unwrap();
        b.stop().await.unwrap();
    });
    // After both stopped: accruals equal a recount, and hold exactly the accepted records.
    let accruals = assert_accruals_recount(&db.url);
    let records: i64 = accruals.iter().map(|r| r.records).sum();
    assert_eq!(records, {
        let mut store = suanli_store::open(&db.url).unwrap();
        store.stats(None).unwrap().records as i64
    });
    let mut store = suanli_store::open(&db.url).unwrap();
    let mut entries = Vec::new();
    store
        .transaction(&mut |tx| {
            entries = suanli_store::audit::entries(tx)?;
            Ok(())
        })
        .unwrap();
    suanli_domain::audit::verify(&entries).expect("the audit chain is unbroken");
}

/// A SQLite file is served by one server: a second one on the same file fails at start, with
/// the reason, and the file can be served again once the first has stopped.
#[test]
fn a_sqlite_database_has_one_server() {
    let db = sqlite_db().expect("sqlite");
    runtime().block_on(async {
        let first = start(&db.url).await;
        let second = suanli_server::serve::start(ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            database_url: db.url.clone(),
            http_addr: None,
            ..ServeConfig::default()
        })
        .await;
        let error = second
            .err()
            .expect("a second server is refused")
            .to_string();
        assert!(
            error.contains("already served by another suanli serve"),
            "{error}"
        );
        first.stop().await.unwrap();
        start(&db.url).await.stop().await.unwrap();
    });
}
