//! The adversarial input catalogue: one table-driven test per entry point — gRPC
//! ingest, CSV import, registry TOML, CLI arguments — against a real `suanli serve` child
//! process. Every case gets a named error (a reason code, a gRPC status, or a message naming
//! the field, key or argument), and the database is unchanged after it: the snapshot below
//! (records, accruals, registry version, runs, journals, tokens, audit log) is compared before
//! and after each case. The console forms have their own catalogue (`console_http.rs`).
//!
//! SQLite only: validation is the same code on both backends (the PostgreSQL tests in
//! `ingest_grpc.rs` cover the storage side).

mod support;

use std::time::Duration;

use suanli_proto::v1 as pb;
use suanli_proto::v1::metering_service_client::MeteringServiceClient;
use support::cli::{HEADER, Server, sqlite_db};
use tonic::Code;
use tonic::transport::Channel;

const REGISTRY: &str = r#"
[[programme]]
id = "nat-2025"
funder = "national"
year = 2025
beneficiary_kinds = ["enterprise"]
payee = "beneficiary"
rates = [ { category = "compute", ratio = "0.30" }, { category = "model", ratio = "0.30" } ]
[[provider]]
id = "dc-a"
[[provider]]
id = "dc-b"
[[sku]]
id = "a-gpu"
provider = "dc-a"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
list_price = "20.00"
capacity = "10"
[[sku]]
id = "b-tok"
provider = "dc-b"
category = "model"
registered_model = true
unit = "token_million"
[[beneficiary]]
id = "ent-a"
kind = "enterprise"
[[grant]]
beneficiary = "ent-a"
programme = "nat-2025"
"#;

/// Everything a rejected input must leave as it was.
fn snapshot(url: &str) -> String {
    let mut store = suanli_store::open(url).expect("store opens");
    let stats = store.stats(None).expect("stats");
    let accruals = store.accruals().expect("accruals");
    let version = store
        .registry_current()
        .expect("registry")
        .map(|r| (r.version, r.content_hash));
    let mut counts = Vec::new();
    store
        .transaction(&mut |tx| {
            counts.clear();
            for q in [
                "SELECT COUNT(*) FROM settlement_runs",
                "SELECT COUNT(*) FROM journals",
                "SELECT COUNT(*) FROM journal_entries",
                "SELECT COUNT(*) FROM tokens",
                "SELECT COUNT(revoked_at) FROM tokens",
                "SELECT COUNT(*) FROM audit_log",
            ] {
                counts.push(tx.query(q, &[])?[0][0].int()?);
            }
            Ok(())
        })
        .expect("counts");
    format!(
        "records {} void {} fen {}; accruals {accruals:?}; registry {version:?}; counts {counts:?}",
        stats.records, stats.voided_records, stats.amount_fen
    )
}

/// A server with the registry loaded, one stored record (`stored-1`), and tokens by name.
struct Setup {
    server: Server,
    tokens: std::collections::HashMap<&'static str, String>,
}

fn setup() -> Setup {
    let server = Server::start(sqlite_db().expect("sqlite"));
    let mut tokens = std::collections::HashMap::new();
    tokens.insert("admin", server.token(&["--role", "admin"]));
    tokens.insert("finance", server.token(&["--role", "finance"]));
    tokens.insert("auditor", server.token(&["--role", "auditor"]));
    tokens.insert(
        "dc-a",
        server.token(&["--role", "provider", "--provider", "dc-a"]),
    );
    tokens.insert(
        "ent-a",
        server.token(&["--role", "beneficiary", "--beneficiary", "ent-a"]),
    );
    let revoked = server.token(&["--role", "provider", "--provider", "dc-a"]);
    let o = support::bin()
        .args([
            "token",
            "revoke",
            "--database-url",
            &server.db.url,
            "--token",
            &revoked,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tokens.insert("revoked", revoked);
    let file = server.file("registry.toml", REGISTRY);
    server.ok(&tokens["admin"], &["registry", "import", "--file", &file]);
    let usage = server.file(
        "stored.csv",
        &format!(
            "{HEADER}dc-a,stored-1,ent-a,a-gpu,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,2,30.00\n"
        ),
    );
    let out = server.ok(&tokens["dc-a"], &["usage", "import", "--file", &usage]);
    assert!(out.contains("accepted 1"), "{out}");
    Setup { server, tokens }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn channel(addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("connects")
}

fn ts(text: &str) -> Option<prost_types::Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(text).expect("time");
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

/// A good record of dc-a, which each case spoils in one way.
fn good(id: &str) -> pb::UsageRecord {
    pb::UsageRecord {
        provider: "dc-a".into(),
        record_id: id.into(),
        beneficiary: "ent-a".into(),
        sku: "a-gpu".into(),
        start: ts("2025-03-02T00:00:00+08:00"),
        end: ts("2025-03-02T01:00:00+08:00"),
        quantity: "1".into(),
        amount_fen: 1000,
    }
}

/// The same wire message with `bytes` where the proto has `string`, to send invalid UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawRecord {
    #[prost(bytes = "vec", tag = "1")]
    provider: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    record_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    beneficiary: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    sku: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawIngestRequest {
    #[prost(bytes = "vec", tag = "1")]
    batch_id: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    records: Vec<RawRecord>,
}

/// What a gRPC ingest case must come back with.
#[derive(Debug)]
enum Expect {
    /// The record alone is rejected with this reason, naming this field.
    Rejected(pb::RejectReason, &'static str),
    /// The record is answered with this outcome (duplicate, conflict) and nothing changes.
    Outcome(pb::Outcome),
    /// The whole call fails with this status.
    Status(Code),
}

/// gRPC ingest: every malformed, hostile or unauthorised request.
#[test]
fn grpc_ingest_catalogue() {
    let s = setup();
    let url = s.server.db.url.clone();
    use pb::RejectReason as R;
    let with = |f: &dyn Fn(&mut pb::UsageRecord)| {
        let mut r = good("case");
        f(&mut r);
        vec![r]
    };
    let far = |text: &str| ts(text);
    type Case = (&'static str, &'static str, Vec<pb::UsageRecord>, Expect);
    let cases: Vec<Case> = vec![
        // Wrong types: a quantity that is not a number; an amount cannot be mistyped on the
        // wire (int64), so the CSV catalogue covers it.
        (
            "quantity not a number",
            "dc-a",
            with(&|r| r.quantity = "twelve".into()),
            Expect::Rejected(R::InvalidField, "quantity"),
        ),
        (
            "quantity with exponent",
            "dc-a",
            with(&|r| r.quantity = "1e3".into()),
            Expect::Rejected(R::InvalidField, "quantity"),
        ),
        // Missing fields.
        (
            "missing provider",
            "admin",
            with(&|r| r.provider.clear()),
            Expect::Rejected(R::MissingField, "provider"),
        ),
        (
            "missing record id",
            "dc-a",
            with(&|r| r.record_id.clear()),
            Expect::Rejected(R::MissingField, "record_id"),
        ),
        (
            "missing beneficiary",
            "dc-a",
            with(&|r| r.beneficiary.clear()),
            Expect::Rejected(R::MissingField, "beneficiary"),
        ),
        (
            "missing sku",
            "dc-a",
            with(&|r| r.sku.clear()),
            Expect::Rejected(R::MissingField, "sku"),
        ),
        (
            "missing start",
            "dc-a",
            with(&|r| r.start = None),
            Expect::Rejected(R::MissingField, "start"),
        ),
        (
            "missing end",
            "dc-a",
            with(&|r| r.end = None),
            Expect::Rejected(R::MissingField, "end"),
        ),
        (
            "missing quantity",
            "dc-a",
            with(&|r| r.quantity.clear()),
            Expect::Rejected(R::MissingField, "quantity"),
        ),
        // Negative and huge numbers.
        (
            "negative amount",
            "dc-a",
            with(&|r| r.amount_fen = -1),
            Expect::Rejected(R::NegativeAmount, "amount"),
        ),
        (
            "negative quantity",
            "dc-a",
            with(&|r| r.quantity = "-0.5".into()),
            Expect::Rejected(R::NegativeQuantity, "quantity"),
        ),
        (
            "huge amount",
            "dc-a",
            with(&|r| r.amount_fen = i64::MAX),
            Expect::Rejected(R::AmountOutOfRange, "amount"),
        ),
        (
            "amount one fen above the bound",
            "dc-a",
            with(&|r| r.amount_fen = suanli_domain::usage::AMOUNT_FEN_MAX + 1),
            Expect::Rejected(R::AmountOutOfRange, "amount"),
        ),
        (
            "quantity above the bound",
            "dc-a",
            with(&|r| r.quantity = "1000000000000.01".into()),
            Expect::Rejected(R::QuantityOutOfRange, "quantity"),
        ),
        (
            "record id with a NUL byte",
            "dc-a",
            with(&|r| r.record_id = "nul\0id".into()),
            Expect::Rejected(R::InvalidField, "record_id"),
        ),
        (
            "beneficiary with a line feed",
            "dc-a",
            with(&|r| r.beneficiary = "ent-a\nent-b".into()),
            Expect::Rejected(R::InvalidField, "beneficiary"),
        ),
        (
            "huge quantity",
            "dc-a",
            with(&|r| r.quantity = "79228162514264337593543950336".into()),
            Expect::Rejected(R::InvalidField, "quantity"),
        ),
        (
            "quantity over capacity",
            "dc-a",
            with(&|r| r.quantity = "10.5".into()),
            Expect::Rejected(R::OverCapacity, "quantity"),
        ),
        // Too many decimals: a quantity beyond what an exact decimal holds.
        (
            "quantity with 30 decimals",
            "dc-a",
            with(&|r| r.quantity = format!("0.{}1", "0".repeat(29))),
            Expect::Rejected(R::InvalidField, "quantity"),
        ),
        // Times far in the past or future, and end before start.
        (
            "start before 1970",
            "dc-a",
            with(&|r| r.start = far("1900-01-01T00:00:00Z")),
            Expect::Rejected(R::InvalidField, "start"),
        ),
        (
            "end after 2200",
            "dc-a",
            with(&|r| r.end = far("2300-01-01T00:00:00Z")),
            Expect::Rejected(R::InvalidField, "end"),
        ),
        (
            "nanos out of range",
            "dc-a",
            with(&|r| {
                r.end = Some(prost_types::Timestamp {
                    seconds: 1_740_000_000,
                    nanos: -1,
                })
            }),
            Expect::Rejected(R::InvalidField, "end"),
        ),
        (
            "end before start",
            "dc-a",
            with(&|r| std::mem::swap(&mut r.start, &mut r.end)),
            Expect::Rejected(R::EndNotAfterStart, "end"),
        ),
        (
            "end equals start",
            "dc-a",
            with(&|r| r.end = r.start),
            Expect::Rejected(R::EndNotAfterStart, "end"),
        ),
        // Unknown ids, and ids of another provider.
        (
            "unknown provider",
            "admin",
            with(&|r| r.provider = "dc-x".into()),
            Expect::Rejected(R::UnknownProvider, "provider"),
        ),
        (
            "unknown beneficiary",
            "dc-a",
            with(&|r| r.beneficiary = "ent-x".into()),
            Expect::Rejected(R::UnknownBeneficiary, "beneficiary"),
        ),
        (
            "unknown sku",
            "dc-a",
            with(&|r| r.sku = "x-gpu".into()),
            Expect::Rejected(R::UnknownSku, "sku"),
        ),
        (
            "another provider's record",
            "dc-a",
            with(&|r| {
                r.provider = "dc-b".into();
                r.sku = "b-tok".into()
            }),
            Expect::Rejected(R::ProviderMismatch, "provider"),
        ),
        (
            "another provider's sku",
            "dc-a",
            with(&|r| r.sku = "b-tok".into()),
            Expect::Rejected(R::SkuNotOfProvider, "sku"),
        ),
        // Oversized strings and batches.
        (
            "record id of 129 bytes",
            "dc-a",
            with(&|r| r.record_id = "x".repeat(129)),
            Expect::Rejected(R::InvalidField, "record_id"),
        ),
        (
            "beneficiary of 1 MB",
            "dc-a",
            with(&|r| r.beneficiary = "e".repeat(1 << 20)),
            Expect::Rejected(R::InvalidField, "beneficiary"),
        ),
        (
            "batch of 10,001 records",
            "dc-a",
            vec![good("big"); 10_001],
            Expect::Status(Code::InvalidArgument),
        ),
        (
            "message of 20 MB",
            "dc-a",
            vec![pb::UsageRecord {
                record_id: "m".repeat(20 << 20),
                ..good("m")
            }],
            Expect::Status(Code::ResourceExhausted),
        ),
        // Duplicate and conflicting ids.
        (
            "stored record resent",
            "dc-a",
            vec![pb::UsageRecord {
                start: ts("2025-03-01T00:00:00+08:00"),
                end: ts("2025-03-01T01:00:00+08:00"),
                quantity: "2".into(),
                amount_fen: 3000,
                ..good("stored-1")
            }],
            Expect::Outcome(pb::Outcome::Duplicate),
        ),
        (
            "stored id, other content",
            "dc-a",
            vec![pb::UsageRecord {
                start: ts("2025-03-01T00:00:00+08:00"),
                end: ts("2025-03-01T01:00:00+08:00"),
                quantity: "2".into(),
                amount_fen: 3001,
                ..good("stored-1")
            }],
            Expect::Outcome(pb::Outcome::Conflict),
        ),
        // Credentials.
        (
            "revoked token",
            "revoked",
            with(&|_| {}),
            Expect::Status(Code::Unauthenticated),
        ),
        (
            "no token",
            "",
            with(&|_| {}),
            Expect::Status(Code::Unauthenticated),
        ),
        (
            "made-up token",
            "sl_not_a_token",
            with(&|_| {}),
            Expect::Status(Code::Unauthenticated),
        ),
        (
            "finance token",
            "finance",
            with(&|_| {}),
            Expect::Status(Code::PermissionDenied),
        ),
        (
            "beneficiary token",
            "ent-a",
            with(&|_| {}),
            Expect::Status(Code::PermissionDenied),
        ),
        (
            "auditor token",
            "auditor",
            with(&|_| {}),
            Expect::Status(Code::PermissionDenied),
        ),
    ];
    runtime().block_on(async {
        let channel = channel(s.server.addr()).await;
        for (name, who, records, expect) in cases {
            let before = snapshot(&url);
            let token = match who {
                "" => String::new(),
                "sl_not_a_token" => who.to_owned(),
                w => s.tokens[w].clone(),
            };
            let mut client =
                MeteringServiceClient::new(channel.clone()).max_encoding_message_size(64 << 20);
            let mut request = tonic::Request::new(pb::IngestRequest {
                batch_id: name.into(),
                records,
            });
            if !token.is_empty() {
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
            }
            let result = client.ingest(request).await;
            match (&expect, result) {
                (Expect::Status(code), Err(status)) => {
                    assert_eq!(status.code(), *code, "{name}: {}", status.message());
                    assert!(!status.message().is_empty(), "{name}: the status says why");
                }
                (Expect::Rejected(reason, field), Ok(r)) => {
                    let r = r.into_inner();
                    assert_eq!(r.outcomes, vec![pb::Outcome::Rejected as i32], "{name}");
                    let p = &r.problems[0];
                    assert_eq!(
                        (
                            pb::RejectReason::try_from(p.reason).unwrap(),
                            p.field.as_str()
                        ),
                        (*reason, *field),
                        "{name}: {}",
                        p.message
                    );
                    assert!(p.message.len() < 2_000, "{name}: the message is bounded");
                    assert!(
                        p.message.contains("record ") && p.message.contains(p.field.as_str()),
                        "{name}: the message names the record and the field: {}",
                        p.message
                    );
                }
                (Expect::Outcome(outcome), Ok(r)) => {
                    assert_eq!(r.into_inner().outcomes, vec![*outcome as i32], "{name}");
                }
                (expect, got) => panic!("{name}: expected {expect:?}, got {got:?}"),
            }
            assert_eq!(snapshot(&url), before, "{name}: state unchanged");
        }

        // Invalid UTF-8 in a string field fails the call as malformed, and stores nothing.
        let before = snapshot(&url);
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let mut request = tonic::Request::new(RawIngestRequest {
            batch_id: b"raw".to_vec(),
            records: vec![RawRecord {
                provider: b"dc-a".to_vec(),
                record_id: vec![b'r', 0xff, 0xfe],
                beneficiary: b"ent-a".to_vec(),
                sku: b"a-gpu".to_vec(),
            }],
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", s.tokens["dc-a"]).parse().unwrap(),
        );
        let codec = tonic_prost::ProstCodec::<RawIngestRequest, pb::IngestResponse>::default();
        let status = grpc
            .unary(
                request,
                http::uri::PathAndQuery::from_static("/suanli.v1.MeteringService/Ingest"),
                codec,
            )
            .await
            .expect_err("invalid UTF-8 fails the call");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("UTF-8"), "{status:?}");
        assert_eq!(snapshot(&url), before, "invalid UTF-8: state unchanged");

        // The same message on an IngestStream: the stream ends with INVALID_ARGUMENT too.
        grpc.ready().await.unwrap();
        let raw = RawIngestRequest {
            batch_id: b"raw-stream".to_vec(),
            records: vec![RawRecord {
                provider: b"dc-a".to_vec(),
                record_id: vec![b'r', 0xff, 0xfe],
                beneficiary: b"ent-a".to_vec(),
                sku: b"a-gpu".to_vec(),
            }],
        };
        let mut request = tonic::Request::new(tokio_stream::iter(vec![raw]));
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", s.tokens["dc-a"]).parse().unwrap(),
        );
        let codec = tonic_prost::ProstCodec::<RawIngestRequest, pb::IngestResponse>::default();
        let outcome = grpc
            .streaming(
                request,
                http::uri::PathAndQuery::from_static("/suanli.v1.MeteringService/IngestStream"),
                codec,
            )
            .await;
        let status = match outcome {
            Err(status) => status,
            Ok(response) => response
                .into_inner()
                .message()
                .await
                .expect_err("invalid UTF-8 fails the stream"),
        };
        assert_eq!(status.code(), Code::InvalidArgument, "stream: {status:?}");
        assert_eq!(
            snapshot(&url),
            before,
            "invalid UTF-8 on a stream: state unchanged"
        );
    });
}

/// CSV import (`suanli usage import`): every bad row is named in the rejects file with its
/// reason and line, and nothing of it is stored; a file that cannot be read at all fails.
#[test]
fn csv_import_catalogue() {
    let s = setup();
    let url = s.server.db.url.clone();
    let t = |start: &str, end: &str| format!("{start},{end}");
    let hour = t("2025-03-02T00:00:00+08:00", "2025-03-02T01:00:00+08:00");
    // (name, row after the header, reason, field named in the message)
    let rows: Vec<(&str, String, &str, &str)> = vec![
        (
            "quantity not a number",
            format!("dc-a,c1,ent-a,a-gpu,{hour},lots,1.00"),
            "invalid_field",
            "quantity",
        ),
        (
            "amount not a number",
            format!("dc-a,c2,ent-a,a-gpu,{hour},1,ten"),
            "invalid_field",
            "amount",
        ),
        (
            "time not a time",
            "dc-a,c3,ent-a,a-gpu,yesterday,2025-03-02T01:00:00+08:00,1,1.00".into(),
            "invalid_field",
            "start",
        ),
        (
            "missing record id",
            format!("dc-a,,ent-a,a-gpu,{hour},1,1.00"),
            "missing_field",
            "record_id",
        ),
        (
            "missing amount",
            format!("dc-a,c4,ent-a,a-gpu,{hour},1,"),
            "missing_field",
            "amount",
        ),
        (
            "too few fields",
            "dc-a,c5,ent-a".into(),
            "invalid_field",
            "row",
        ),
        (
            "negative amount",
            format!("dc-a,c6,ent-a,a-gpu,{hour},1,-1.00"),
            "negative_amount",
            "amount",
        ),
        (
            "negative quantity",
            format!("dc-a,c7,ent-a,a-gpu,{hour},-1,1.00"),
            "negative_quantity",
            "quantity",
        ),
        (
            "huge amount",
            format!("dc-a,c8,ent-a,a-gpu,{hour},1,99999999999999999999.00"),
            "invalid_field",
            "amount",
        ),
        (
            "amount above list price",
            format!("dc-a,c9,ent-a,a-gpu,{hour},1,20.02"),
            "above_list_price",
            "amount",
        ),
        (
            "amount with 3 decimals",
            format!("dc-a,c10,ent-a,a-gpu,{hour},1,1.005"),
            "amount_precision",
            "amount",
        ),
        (
            "start in 1900",
            format!(
                "dc-a,c11,ent-a,a-gpu,{},1,1.00",
                t("1900-01-01T00:00:00+08:00", "1900-01-01T01:00:00+08:00")
            ),
            "invalid_field",
            "start",
        ),
        (
            "end in 2300",
            format!(
                "dc-a,c12,ent-a,a-gpu,{},1,1.00",
                t("2025-03-02T00:00:00+08:00", "2300-01-01T00:00:00+08:00")
            ),
            "invalid_field",
            "end",
        ),
        (
            "end before start",
            format!(
                "dc-a,c13,ent-a,a-gpu,{},1,1.00",
                t("2025-03-02T01:00:00+08:00", "2025-03-02T00:00:00+08:00")
            ),
            "end_not_after_start",
            "end",
        ),
        (
            "unknown beneficiary",
            format!("dc-a,c14,ent-x,a-gpu,{hour},1,1.00"),
            "unknown_beneficiary",
            "beneficiary",
        ),
        (
            "unknown sku",
            format!("dc-a,c15,ent-a,x-gpu,{hour},1,1.00"),
            "unknown_sku",
            "sku",
        ),
        (
            "another provider's record",
            format!("dc-b,c16,ent-a,b-tok,{hour},1,1.00"),
            "provider_mismatch",
            "provider",
        ),
        (
            "another provider's sku",
            format!("dc-a,c17,ent-a,b-tok,{hour},1,1.00"),
            "sku_not_of_provider",
            "sku",
        ),
        (
            "record id of 200 bytes",
            format!("dc-a,{},ent-a,a-gpu,{hour},1,1.00", "c".repeat(200)),
            "invalid_field",
            "record_id",
        ),
        (
            "over capacity",
            format!("dc-a,c18,ent-a,a-gpu,{hour},11,1.00"),
            "over_capacity",
            "quantity",
        ),
        (
            "stored id, other content",
            format!("dc-a,stored-1,ent-a,a-gpu,{hour},1,1.00"),
            "conflict",
            "stored-1",
        ),
    ];
    for (name, row, reason, field) in rows {
        let before = snapshot(&url);
        let file = s.server.file("case.csv", &format!("{HEADER}{row}\n"));
        let rejects = s.server.db.dir.join("case.rejects.csv");
        let o = s.server.run(
            &s.tokens["dc-a"],
            &[
                "usage",
                "import",
                "--file",
                &file,
                "--rejects",
                rejects.to_str().unwrap(),
            ],
        );
        let want = if reason == "conflict" { 4 } else { 3 };
        assert_eq!(o.status.code(), Some(want), "{name}: the exit code");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("accepted 0"), "{name}: {out}");
        let text = std::fs::read_to_string(&rejects).unwrap();
        let line = text
            .lines()
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: a reject: {text}"));
        let fields: Vec<&str> = line.splitn(5, ',').collect();
        assert_eq!((fields[2], fields[3]), ("2", reason), "{name}: {line}");
        assert!(
            fields[4].contains(field),
            "{name}: the message names {field}: {line}"
        );
        assert_eq!(snapshot(&url), before, "{name}: state unchanged");
    }

    // Invalid UTF-8 and a file that is not this CSV at all.
    let before = snapshot(&url);
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"dc-a,bad\xff\xfe,ent-a,a-gpu,2025-03-02T00:00:00+08:00,2025-03-02T01:00:00+08:00,1,1.00\n");
    let path = s.server.db.dir.join("utf8.csv");
    std::fs::write(&path, bytes).unwrap();
    // Bytes valid neither as UTF-8 nor as GB18030 (0xFF starts no sequence): the whole file is
    // refused before anything is sent, naming the line.
    let err = s.server.fails(
        &s.tokens["dc-a"],
        &["usage", "import", "--file", path.to_str().unwrap()],
    );
    assert!(
        err.contains("utf8.csv: line 2: not valid GB18030 nor UTF-8"),
        "{err}"
    );
    assert_eq!(snapshot(&url), before, "invalid UTF-8: state unchanged");

    // Duplicate and conflicting ids inside one file: one copy is stored, the conflict named.
    let file = s.server.file(
        "dups.csv",
        &format!(
            "{HEADER}dc-a,d1,ent-a,a-gpu,{hour},1,1.00\ndc-a,d1,ent-a,a-gpu,{hour},1,1.00\ndc-a,d1,ent-a,a-gpu,{hour},1,2.00\n"
        ),
    );
    let rejects = s.server.db.dir.join("dups.rejects.csv");
    let o = s.server.run(
        &s.tokens["dc-a"],
        &[
            "usage",
            "import",
            "--file",
            &file,
            "--rejects",
            rejects.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(4), "a conflict exits 4");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("accepted 1, duplicate 1, conflict 1, rejected 0"),
        "{out}"
    );

    let before = snapshot(&url);
    for (name, text, message) in [
        (
            "missing column",
            "provider,record_id,beneficiary,sku,start,end,quantity\n".to_owned(),
            "amount",
        ),
        ("empty file", String::new(), "header"),
    ] {
        let file = s.server.file("bad.csv", &text);
        let err = s
            .server
            .fails(&s.tokens["dc-a"], &["usage", "import", "--file", &file]);
        assert!(err.contains(message), "{name}: {err}");
    }
    let err = s
        .server
        .fails(&s.tokens["revoked"], &["usage", "import", "--file", &file]);
    assert!(
        err.to_lowercase().contains("unauthenticated") || err.contains("revoked"),
        "{err}"
    );
    let err = s
        .server
        .fails(&s.tokens["finance"], &["usage", "import", "--file", &file]);
    assert!(err.to_lowercase().contains("permission"), "{err}");
    assert_eq!(snapshot(&url), before, "refused files: state unchanged");
}

/// Registry TOML (`suanli registry import`): every bad registry is refused with the key path
/// and the reason, and the current version stays.
#[test]
fn registry_toml_catalogue() {
    let s = setup();
    let url = s.server.db.url.clone();
    let swap = |from: &str, to: &str| {
        assert!(REGISTRY.contains(from), "{from}");
        REGISTRY.replacen(from, to, 1)
    };
    // (name, registry text, text the error must contain)
    let cases: Vec<(&str, String, &str)> = vec![
        ("not TOML", "[[programme]\nid = ".into(), "registry.toml"),
        (
            "ratio as a float",
            swap(r#"ratio = "0.30""#, "ratio = 0.30"),
            "ratio",
        ),
        (
            "year as a string",
            swap("year = 2025", r#"year = "2025""#),
            "year",
        ),
        ("programme without id", swap(r#"id = "nat-2025""#, ""), "id"),
        (
            "negative cap",
            swap("year = 2025", "year = 2025\nbeneficiary_cap = \"-1.00\""),
            "beneficiary_cap",
        ),
        (
            "huge pool",
            swap(
                "year = 2025",
                "year = 2025\npool = \"99999999999999999999.00\"",
            ),
            "pool",
        ),
        (
            "cap with 3 decimals",
            swap("year = 2025", "year = 2025\nbeneficiary_cap = \"1.005\""),
            "beneficiary_cap",
        ),
        (
            "ratio above 1",
            swap(r#"ratio = "0.30""#, r#"ratio = "1.30""#),
            "ratio",
        ),
        (
            "year far in the past",
            swap("year = 2025", "year = 1066"),
            "year",
        ),
        (
            "grant of an unknown beneficiary",
            swap(r#"beneficiary = "ent-a""#, r#"beneficiary = "ent-x""#),
            "ent-x",
        ),
        (
            "sku of an unknown provider",
            swap(r#"provider = "dc-b""#, r#"provider = "dc-x""#),
            "dc-x",
        ),
        (
            "duplicate provider id",
            swap(r#"id = "dc-b""#, r#"id = "dc-a""#),
            "dc-a",
        ),
        (
            "negative capacity",
            swap(r#"capacity = "10""#, r#"capacity = "-10""#),
            "capacity",
        ),
        (
            "id of 10,000 bytes",
            swap(
                r#"id = "ent-a""#,
                &format!("id = \"{}\"", "e".repeat(10_000)),
            ),
            "id",
        ),
    ];
    for (name, text, needle) in cases {
        let before = snapshot(&url);
        let file = s.server.file("registry.toml", &text);
        let err = s
            .server
            .fails(&s.tokens["admin"], &["registry", "import", "--file", &file]);
        assert!(
            err.contains(needle),
            "{name}: the error names {needle:?}: {err}"
        );
        assert_eq!(snapshot(&url), before, "{name}: state unchanged");
    }
    let before = snapshot(&url);
    let path = s.server.db.dir.join("utf8.toml");
    let mut bytes = REGISTRY.as_bytes().to_vec();
    bytes.extend_from_slice(b"\n# \xff\xfe\n");
    std::fs::write(&path, bytes).unwrap();
    let err = s.server.fails(
        &s.tokens["admin"],
        &["registry", "import", "--file", path.to_str().unwrap()],
    );
    assert!(err.contains("UTF-8"), "invalid UTF-8: {err}");
    let file = s
        .server
        .file("good.toml", &REGISTRY.replace("nat-2025", "nat-2025b"));
    for (who, needle) in [
        ("revoked", "revoked"),
        ("dc-a", "ermission"),
        ("ent-a", "ermission"),
        ("auditor", "ermission"),
    ] {
        let err = s
            .server
            .fails(&s.tokens[who], &["registry", "import", "--file", &file]);
        assert!(err.contains(needle), "{who}: {err}");
    }
    assert_eq!(snapshot(&url), before, "refused loads: state unchanged");
}

/// CLI arguments: malformed, missing, out of range, unknown ids, the wrong role.
#[test]
fn cli_arguments_catalogue() {
    let s = setup();
    let url = s.server.db.url.clone();
    let db = url.as_str();
    let long_reason = "r".repeat(2_000);
    // (name, token, arguments, text the error must contain)
    let cases: Vec<(&str, &str, Vec<&str>, &str)> = vec![
        (
            "unknown command",
            "finance",
            vec!["settle", "frobnicate"],
            "frobnicate",
        ),
        (
            "period not a month",
            "finance",
            vec![
                "settle",
                "create",
                "--programme",
                "nat-2025",
                "--period",
                "2025-13",
            ],
            "2025-13",
        ),
        (
            "period in words",
            "finance",
            vec![
                "settle",
                "create",
                "--programme",
                "nat-2025",
                "--period",
                "March",
            ],
            "March",
        ),
        (
            "unknown programme",
            "finance",
            vec![
                "settle",
                "create",
                "--programme",
                "nope",
                "--period",
                "2025-03",
            ],
            "nope",
        ),
        (
            "missing period",
            "finance",
            vec!["settle", "create", "--programme", "nat-2025"],
            "--period",
        ),
        (
            "run id not a number",
            "finance",
            vec!["settle", "show", "abc"],
            "abc",
        ),
        (
            "run id too large",
            "finance",
            vec!["settle", "show", "99999999999999999999999"],
            "99999999999999999999999",
        ),
        (
            "unknown run",
            "finance",
            vec!["settle", "approve", "424242"],
            "424242",
        ),
        (
            "payment amount negative",
            "finance",
            vec![
                "ledger",
                "record-payment",
                "--payee",
                "ent-a",
                "--amount",
                "-5.00",
                "--reference",
                "p1",
            ],
            "amount",
        ),
        (
            "payment amount 3 decimals",
            "finance",
            vec![
                "ledger",
                "record-payment",
                "--payee",
                "ent-a",
                "--amount",
                "5.001",
                "--reference",
                "p1",
            ],
            "amount",
        ),
        (
            "payment amount not a number",
            "finance",
            vec![
                "ledger",
                "record-payment",
                "--payee",
                "ent-a",
                "--amount",
                "five",
                "--reference",
                "p1",
            ],
            "amount",
        ),
        (
            "payment amount huge",
            "finance",
            vec![
                "ledger",
                "record-payment",
                "--payee",
                "ent-a",
                "--amount",
                "99999999999999999999.00",
                "--reference",
                "p1",
            ],
            "amount",
        ),
        (
            "payment nothing owed",
            "finance",
            vec![
                "ledger",
                "record-payment",
                "--payee",
                "ent-a",
                "--amount",
                "5.00",
                "--reference",
                "p1",
            ],
            "ent-a",
        ),
        (
            "balance year not a number",
            "ent-a",
            vec!["balance", "--beneficiary", "ent-a", "--year", "twenty"],
            "twenty",
        ),
        (
            "balance of another beneficiary",
            "ent-a",
            vec!["balance", "--beneficiary", "ent-b", "--year", "2025"],
            "ent-b",
        ),
        (
            "explain of an unknown run",
            "finance",
            vec!["settle", "explain", "999", "--beneficiary", "ent-a"],
            "run 999 does not exist",
        ),
        (
            "explain of too many records a page",
            "finance",
            vec![
                "settle",
                "explain",
                "999",
                "--beneficiary",
                "ent-a",
                "--records",
                "501",
            ],
            "records_page_size",
        ),
        (
            "explain of a made-up records page",
            "finance",
            vec![
                "settle",
                "explain",
                "999",
                "--beneficiary",
                "ent-a",
                "--records-page",
                "zz",
            ],
            "records_page_token",
        ),
        (
            "explain of another beneficiary's lines",
            "ent-a",
            vec!["settle", "explain", "1", "--beneficiary", "ent-b"],
            "ent-b",
        ),
        (
            "explain in an unknown format",
            "finance",
            vec![
                "settle",
                "explain",
                "1",
                "--beneficiary",
                "ent-a",
                "--format",
                "xml",
            ],
            "xml",
        ),
        (
            "void of another provider",
            "dc-a",
            vec![
                "usage",
                "void",
                "--provider",
                "dc-b",
                "--record-id",
                "stored-1",
                "--reason",
                "x",
            ],
            "dc-b",
        ),
        (
            "void of an unknown record",
            "dc-a",
            vec![
                "usage",
                "void",
                "--provider",
                "dc-a",
                "--record-id",
                "nope",
                "--reason",
                "x",
            ],
            "nope",
        ),
        (
            "void reason of 2,000 characters",
            "dc-a",
            vec![
                "usage",
                "void",
                "--provider",
                "dc-a",
                "--record-id",
                "stored-1",
                "--reason",
                &long_reason,
            ],
            "reason",
        ),
        (
            "settle with a provider token",
            "dc-a",
            vec![
                "settle",
                "create",
                "--programme",
                "nat-2025",
                "--period",
                "2025-03",
            ],
            "ermission",
        ),
        (
            "settle with a revoked token",
            "revoked",
            vec!["settle", "list"],
            "revoked",
        ),
        (
            "batch size zero",
            "dc-a",
            vec!["usage", "import", "--file", "x.csv", "--batch-size", "0"],
            "--batch-size",
        ),
        (
            "server address malformed",
            "dc-a",
            vec!["settle", "list", "--server", "http://[::1"],
            "server",
        ),
        (
            "token role unknown",
            "",
            vec!["token", "create", "--database-url", db, "--role", "king"],
            "king",
        ),
        (
            "provider token without provider",
            "",
            vec![
                "token",
                "create",
                "--database-url",
                db,
                "--role",
                "provider",
            ],
            "--provider",
        ),
        (
            "token lifetime out of range",
            "",
            vec![
                "token",
                "create",
                "--database-url",
                db,
                "--role",
                "auditor",
                "--expires-in-days",
                "100000",
            ],
            "--expires-in-days",
        ),
        (
            "database url of no kind",
            "",
            vec![
                "token",
                "create",
                "--database-url",
                "mysql://x",
                "--role",
                "auditor",
            ],
            "mysql://x",
        ),
    ];
    for (name, who, args, needle) in cases {
        let before = snapshot(&url);
        let token = if who.is_empty() {
            ""
        } else {
            s.tokens[who].as_str()
        };
        let err = s.server.fails(token, &args);
        assert!(
            err.contains(needle),
            "{name}: the error names {needle:?}: {err}"
        );
        assert_eq!(snapshot(&url), before, "{name}: state unchanged");
    }
}

/// The store's view of an accrual read: the rows, or the error that names what overflowed.
fn accruals_of(url: &str) -> Result<Vec<suanli_store::AccrualRow>, String> {
    let mut store = suanli_store::open(url).expect("store opens");
    store.accruals().map_err(|e| e.to_string())
}

/// Ingests `records` with `token` and returns the outcomes with their problems.
fn ingest(
    addr: &str,
    token: &str,
    batch_id: &str,
    records: Vec<pb::UsageRecord>,
) -> Result<pb::IngestResponse, tonic::Status> {
    runtime().block_on(async {
        let mut client = MeteringServiceClient::new(channel(addr).await);
        let mut request = tonic::Request::new(pb::IngestRequest {
            batch_id: batch_id.into(),
            records,
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        client
            .ingest(request)
            .await
            .map(tonic::Response::into_inner)
    })
}

/// A record of dc-b's SKU without a list price, so only the amount's bound limits it.
fn unpriced(id: &str, amount_fen: i64) -> pb::UsageRecord {
    pb::UsageRecord {
        provider: "dc-b".into(),
        sku: "b-tok".into(),
        amount_fen,
        ..good(id)
    }
}

// Proves, on both backends, that amounts that would overflow a monthly total are rejected
// alone with their own reason while the valid records beside them are stored; that a
// provider's records of a month are held to their bound, record by record; that ids with
// a NUL byte are rejected alone (PostgreSQL text cannot hold NUL) instead of failing their
// batch; that an overlong batch id fails the call as invalid; and that a server restarted on
// rows an older version accepted with huge amounts comes up and answers, naming the overflow
// to readers instead of panicking.
#[test]
fn hostile_amounts_and_bytes_on_both_backends() {
    for db in [sqlite_db(), support::cli::pg_db()].into_iter().flatten() {
        let mut server = Server::start(db);
        let admin = server.token(&["--role", "admin"]);
        let dc_b = server.token(&["--role", "provider", "--provider", "dc-b"]);
        let file = server.file("registry.toml", REGISTRY);
        server.ok(&admin, &["registry", "import", "--file", &file]);
        let url = server.db.url.clone();
        use pb::RejectReason as R;

        // One batch: i64::MAX and 1 fen for one beneficiary and month, a NUL in an id, and
        // two good records.
        let r = ingest(
            server.addr(),
            &dc_b,
            "overflow-in-one-batch",
            vec![
                unpriced("max", i64::MAX),
                unpriced("one", 1),
                unpriced("nul\0", 5),
                unpriced("bound", suanli_domain::usage::AMOUNT_FEN_MAX),
            ],
        )
        .unwrap_or_else(|s| panic!("{}: {s:?}", url));
        let rejected = pb::Outcome::Rejected as i32;
        let accepted = pb::Outcome::Accepted as i32;
        assert_eq!(
            r.outcomes,
            vec![rejected, accepted, rejected, accepted],
            "{url}: {r:?}"
        );
        let reasons: Vec<(R, &str)> = r
            .problems
            .iter()
            .map(|p| (R::try_from(p.reason).unwrap(), p.field.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (R::AmountOutOfRange, "amount"),
                (R::InvalidField, "record_id")
            ],
            "{url}: {:?}",
            r.problems
        );
        assert!(
            r.problems[0].message.contains("\"max\""),
            "{:?}",
            r.problems[0]
        );
        // The same as two batches: the second still answers (the writer and the fold live).
        let r = ingest(
            server.addr(),
            &dc_b,
            "second",
            vec![unpriced("max-2", i64::MAX)],
        )
        .unwrap();
        assert_eq!(r.outcomes, vec![rejected], "{url}");
        std::thread::sleep(Duration::from_millis(1_500));
        let r = ingest(server.addr(), &dc_b, "third", vec![unpriced("after", 7)]).unwrap();
        assert_eq!(r.outcomes, vec![accepted], "{url}");
        let total: i64 = accruals_of(&url)
            .expect("accruals")
            .iter()
            .map(|a| a.amount_fen)
            .sum();
        assert_eq!(total, suanli_domain::usage::AMOUNT_FEN_MAX + 1 + 7, "{url}");

        // dc-b's March holds 10^13 + 8 fen: 98 more records at the bound of one record fit
        // its month's bound of 10^15, the 99th is refused alone, naming provider and month.
        let bound = suanli_domain::usage::AMOUNT_FEN_MAX;
        let fill: Vec<pb::UsageRecord> = (0..99)
            .map(|i| unpriced(&format!("fill-{i:02}"), bound))
            .collect();
        let r = ingest(server.addr(), &dc_b, "fill", fill).unwrap();
        let mut want = vec![accepted; 98];
        want.push(rejected);
        assert_eq!(r.outcomes, want, "{url}");
        assert_eq!(r.problems.len(), 1, "{url}: {:?}", r.problems);
        let p = &r.problems[0];
        assert_eq!(
            (R::try_from(p.reason).unwrap(), p.field.as_str(), p.index),
            (R::AmountOutOfRange, "amount", 98),
            "{url}: {p:?}"
        );
        assert!(
            p.message.contains("\"dc-b\"") && p.message.contains("2025-03"),
            "{url}: {p:?}"
        );
        let total: i64 = accruals_of(&url)
            .expect("accruals")
            .iter()
            .map(|a| a.amount_fen)
            .sum();
        assert_eq!(total, 99 * bound + 8, "{url}");

        // A batch id beyond its limit fails the call as invalid, naming the field.
        let status = ingest(
            server.addr(),
            &dc_b,
            &"b".repeat(129),
            vec![unpriced("long-batch", 1)],
        )
        .expect_err("an overlong batch id fails the call");
        assert_eq!(status.code(), Code::InvalidArgument, "{url}: {status:?}");
        assert!(status.message().contains("batch_id"), "{status:?}");

        // Rows an older version could have accepted: two records of i64::MAX and 1 fen of one
        // accrual, and their pending deltas, written by SQL behind the server's back.
        drop(server.process);
        let mut store = suanli_store::open(&url).expect("store opens");
        let postgres = url.starts_with("postgres");
        store
            .transaction(&mut |tx| {
                let seed = &tx.query(
                    "SELECT provider_id, beneficiary_id, class_code, period FROM usage_records WHERE record_id = 'after'",
                    &[],
                )?[0];
                let ids: Vec<i64> = seed.iter().map(|v| v.int()).collect::<Result<_, _>>()?;
                for (id, amount) in [("old-max", i64::MAX), ("old-one", 1)] {
                    tx.query(
                        &format!(
                            "INSERT INTO usage_records (provider_id, record_id, beneficiary_id, sku_id, start_ns, end_ns, quantity, amount_fen, period, class_code, registry_version) \
                             SELECT provider_id, '{id}', beneficiary_id, sku_id, start_ns, end_ns, quantity, {amount}, period, class_code, registry_version FROM usage_records WHERE record_id = 'after'"
                        ),
                        &[],
                    )?;
                    let mut hex = String::new();
                    for v in [ids[1], ids[0], ids[2], ids[3], amount, 1] {
                        for b in v.to_le_bytes() {
                            hex.push_str(&format!("{b:02x}"));
                        }
                    }
                    let value = if postgres { format!("decode('{hex}', 'hex')") } else { format!("X'{hex}'") };
                    tx.query(&format!("INSERT INTO accrual_pending (deltas) VALUES ({value})"), &[])?;
                }
                Ok(())
            })
            .expect("older rows written");
        drop(store);
        server.process = support::Server::start(&url);
        // It comes up and answers, and keeps answering after its fold ran: dc-b's March is
        // past its bound now, its April is not.
        std::thread::sleep(Duration::from_millis(2_500));
        let april = pb::UsageRecord {
            start: ts("2025-04-02T00:00:00+08:00"),
            end: ts("2025-04-02T01:00:00+08:00"),
            ..unpriced("restarted-april", 3)
        };
        let r = ingest(
            server.addr(),
            &dc_b,
            "after-restart",
            vec![unpriced("restarted", 3), april],
        )
        .unwrap_or_else(|s| panic!("{url}: the restarted server answers: {s:?}"));
        assert_eq!(r.outcomes, vec![rejected, accepted], "{url}");
        let err = accruals_of(&url).expect_err("a total beyond 64 bits is an error");
        assert!(
            err.contains("overflow") && err.contains("\"ent-a\""),
            "{url}: the error names the accrual: {err}"
        );
    }
}

// Every text field of a request is bounded: an id or reference over 128 bytes, or holding a
// control character, is INVALID_ARGUMENT naming the field, and changes nothing.
#[test]
fn request_text_fields_are_bounded() {
    use suanli_proto::v1::balance_service_client::BalanceServiceClient;
    use suanli_proto::v1::ledger_service_client::LedgerServiceClient;
    use suanli_proto::v1::settlement_service_client::SettlementServiceClient;

    let s = setup();
    let before = snapshot(&s.server.db.url);
    let long = "x".repeat(129);
    let bell = "ent-a\u{7}".to_owned();
    let authorized = |token: &str| {
        let token = token.to_owned();
        move |mut r: tonic::Request<()>| -> Result<tonic::Request<()>, tonic::Status> {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            Ok(r)
        }
    };
    runtime().block_on(async {
        let ch = channel(s.server.addr()).await;
        let finance = authorized(&s.tokens["finance"]);
        let mut ledger = LedgerServiceClient::with_interceptor(ch.clone(), finance.clone());
        let err = ledger
            .record_payment(pb::RecordPaymentRequest {
                payee: "ent-a".into(),
                amount_fen: 100,
                reference: long.clone(),
                programme: String::new(),
            })
            .await
            .expect_err("a 129-byte reference is refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message()
                .contains("reference is 129 bytes; at most 128"),
            "{err:?}"
        );
        let mut settlement = SettlementServiceClient::with_interceptor(ch.clone(), finance.clone());
        let err = settlement
            .create_run(pb::CreateRunRequest {
                programme: "hz\u{0}".into(),
                period: "2025-03".into(),
            })
            .await
            .expect_err("a NUL in the programme is refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message()
                .contains("programme holds a control character"),
            "{err:?}"
        );
        let mut balance = BalanceServiceClient::with_interceptor(ch.clone(), finance);
        let err = balance
            .get_balance(pb::GetBalanceRequest {
                beneficiary: bell.clone(),
                year: 2025,
            })
            .await
            .expect_err("a control character in the beneficiary is refused");
        assert!(
            err.message()
                .contains("beneficiary holds a control character"),
            "{err:?}"
        );
        let mut metering =
            MeteringServiceClient::with_interceptor(ch, authorized(&s.tokens["dc-a"]));
        let err = metering
            .void_usage(pb::VoidUsageRequest {
                provider: "dc-a".into(),
                record_id: long.clone(),
                reason: "too long an id".into(),
            })
            .await
            .expect_err("a 129-byte record id is refused");
        assert!(err.message().contains("record_id is 129 bytes"), "{err:?}");
    });
    assert_eq!(snapshot(&s.server.db.url), before, "nothing changed");
}
