//! Clients that misbehave with a valid credential, against an in-process `suanli serve` on
//! SQLite and on PostgreSQL: a stream that keeps sending after its token was revoked or expired,
//! one token opening more streams than its share while another provider keeps ingesting, and a
//! stream left idle. Each case checks the gRPC status the client sees and what was stored.

mod support;

use std::time::{Duration, Instant};

use suanli_proto::v1 as pb;
use suanli_proto::v1::metering_service_client::MeteringServiceClient;
use suanli_proto::v1::registry_service_client::RegistryServiceClient;
use suanli_server::config::Limits;
use suanli_server::metrics::LIMITED;
use suanli_server::serve::{Running, ServeConfig};
use suanli_store::Principal;
use suanli_store::tokens::{self, TokenRow};
use suanli_testkit::TestDb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};

const REGISTRY: &str = r#"
[[programme]]
id = "nat"
funder = "national"
year = 2025
beneficiary_kinds = ["enterprise"]
payee = "beneficiary"
rates = [ { category = "compute", ratio = "0.30" } ]
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
[[sku]]
id = "b-gpu"
provider = "dc-b"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
[[beneficiary]]
id = "ent-a"
kind = "enterprise"
"#;

/// Stores a token for `principal`, expiring at `expires_at` if given; returns the token.
fn token(
    url: &str,
    principal: Principal,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    let token = suanli_server::auth::new_token();
    let row = TokenRow {
        token_hash: suanli_server::auth::hash_token(&token),
        principal,
        created_at: chrono::Utc::now().to_rfc3339(),
        expires_at: expires_at.map(|t| t.to_rfc3339()),
        revoked_at: None,
        user: None,
        user_disabled_at: None,
        label: String::new(),
    };
    // On a thread of its own: the PostgreSQL client blocks, which a runtime's thread may not.
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut store = suanli_store::open(url).expect("store opens");
            store
                .transaction(&mut |tx| tokens::insert(tx, &row))
                .expect("token stored");
        });
    });
    token
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts a server on `db` with `limits` and loads the registry with an admin token, returned.
async fn start(db: &TestDb, limits: Limits) -> (Running, String) {
    let admin = token(&db.url, Principal::Admin, None);
    let running = suanli_server::serve::start(ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url.clone(),
        http_addr: None,
        limits,
        ..ServeConfig::default()
    })
    .await
    .expect("server starts");
    RegistryServiceClient::new(channel(&running).await)
        .load_registry(bearer(
            pb::LoadRegistryRequest {
                file_name: "registry.toml".into(),
                toml_text: REGISTRY.into(),
            },
            &admin,
        ))
        .await
        .expect("registry loads");
    (running, admin)
}

async fn channel(running: &Running) -> Channel {
    Endpoint::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .expect("connects")
}

fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn batch(provider: &str, id: &str) -> pb::IngestRequest {
    let t = |s: &str| {
        let t = chrono::DateTime::parse_from_rfc3339(s).unwrap();
        Some(prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        })
    };
    pb::IngestRequest {
        batch_id: id.into(),
        records: vec![pb::UsageRecord {
            provider: provider.into(),
            record_id: id.into(),
            beneficiary: "ent-a".into(),
            sku: if provider == "dc-a" { "a-gpu" } else { "b-gpu" }.into(),
            start: t("2025-03-01T00:00:00+08:00"),
            end: t("2025-03-01T01:00:00+08:00"),
            quantity: "1".into(),
            amount_fen: 1000,
        }],
    }
}

/// An open `IngestStream`: the sending side and the acknowledgements.
#[derive(Debug)]
struct OpenStream {
    send: mpsc::Sender<pb::IngestRequest>,
    acks: Streaming<pb::IngestResponse>,
}

async fn open_stream(channel: Channel, token: &str) -> Result<OpenStream, Status> {
    let (send, receive) = mpsc::channel(4);
    let acks = MeteringServiceClient::new(channel)
        .ingest_stream(bearer(ReceiverStream::new(receive), token))
        .await?
        .into_inner();
    Ok(OpenStream { send, acks })
}

impl OpenStream {
    /// Sends one batch and returns what the server answers next: an acknowledgement, an error,
    /// or the end of the stream (`Ok(None)`).
    async fn exchange(
        &mut self,
        batch: pb::IngestRequest,
    ) -> Result<Option<pb::IngestResponse>, Status> {
        // A send fails only when the server has already ended the stream; its status follows.
        let _ = self.send.send(batch).await;
        tokio::time::timeout(Duration::from_secs(10), self.acks.message())
            .await
            .expect("the server answers within 10 s")
    }
}

async fn stored_records(running: &Running, admin: &str) -> u64 {
    MeteringServiceClient::new(channel(running).await)
        .get_usage_stats(bearer(pb::GetUsageStatsRequest::default(), admin))
        .await
        .expect("stats")
        .into_inner()
        .records
}

fn limited(limit: &str) -> u64 {
    LIMITED.with_label_values(&[limit]).get()
}

// A stream opened before its token was revoked (`suanli token revoke`) gets UNAUTHENTICATED on
// the first batch sent after limits.token_recheck_secs, the stream ends, and that batch is not
// stored; a stream whose token expires meanwhile is refused the same way at once.
fn revoked_and_expired_tokens_end_their_streams(db: TestDb) {
    runtime().block_on(async {
        let (running, admin) = start(
            &db,
            Limits {
                token_recheck_secs: 1,
                ..Limits::default()
            },
        )
        .await;
        let dc_a = token(&db.url, Principal::Provider("dc-a".into()), None);
        let mut stream = open_stream(channel(&running).await, &dc_a)
            .await
            .expect("the stream opens");
        let ack = stream
            .exchange(batch("dc-a", "before-revoke"))
            .await
            .expect("the first batch is acknowledged")
            .expect("an acknowledgement");
        assert_eq!(ack.outcomes, vec![pb::Outcome::Accepted as i32]);

        let revoked = support::bin()
            .args([
                "token",
                "revoke",
                "--database-url",
                &db.url,
                "--token",
                &dc_a,
            ])
            .output()
            .unwrap();
        assert!(
            revoked.status.success(),
            "token revoke: {}",
            String::from_utf8_lossy(&revoked.stderr)
        );
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let refused = stream
            .exchange(batch("dc-a", "after-revoke"))
            .await
            .expect_err("a batch after the recheck time is refused");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        assert!(refused.message().contains("revoked"), "{refused:?}");
        let after = stream.exchange(batch("dc-a", "after-end")).await;
        assert!(matches!(after, Ok(None)), "the stream has ended: {after:?}");
        assert_eq!(
            stored_records(&running, &admin).await,
            1,
            "only the batch sent before the revocation is stored"
        );

        // Expiry is carried by the cached principal: no recheck is needed to refuse it.
        let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(1_500);
        let short = token(
            &db.url,
            Principal::Provider("dc-a".into()),
            Some(expires_at),
        );
        let mut stream = open_stream(channel(&running).await, &short)
            .await
            .expect("the stream opens before the token expires");
        let ack = stream
            .exchange(batch("dc-a", "before-expiry"))
            .await
            .expect("acknowledged")
            .expect("an acknowledgement");
        assert_eq!(ack.outcomes, vec![pb::Outcome::Accepted as i32]);
        let wait = (expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        tokio::time::sleep(wait + Duration::from_millis(200)).await;
        let refused = stream
            .exchange(batch("dc-a", "after-expiry"))
            .await
            .expect_err("a batch after the expiry is refused");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        assert!(refused.message().contains("expired"), "{refused:?}");
        assert_eq!(stored_records(&running, &admin).await, 2);
        running.stop().await.expect("stops");
    });
}

#[test]
fn revoked_and_expired_tokens_end_their_streams_sqlite() {
    revoked_and_expired_tokens_end_their_streams(suanli_testkit::sqlite("hostile"));
}

#[test]
fn revoked_and_expired_tokens_end_their_streams_postgres() {
    if let Some(db) = suanli_testkit::postgres("hostile") {
        revoked_and_expired_tokens_end_their_streams(db);
    }
}

const STREAMS_MAX: usize = 4;

// One provider token opening far more streams than limits.credential_streams_max (and than the
// server's whole concurrency limit) gets RESOURCE_EXHAUSTED naming the limit for the extra ones,
// counted as credential_streams, while another provider's unary Ingest calls each succeed
// within a second; its open streams still ingest.
fn one_token_cannot_take_every_slot(db: TestDb) {
    runtime().block_on(async {
        let (running, admin) = start(
            &db,
            Limits {
                concurrent_requests_max: 16,
                credential_streams_max: STREAMS_MAX,
                credential_calls_max: 4,
                ..Limits::default()
            },
        )
        .await;
        let flood = token(&db.url, Principal::Provider("dc-a".into()), None);
        let dc_b = token(&db.url, Principal::Provider("dc-b".into()), None);
        let flood_channel = channel(&running).await;
        let before = limited("credential_streams");
        let mut open = Vec::new();
        let mut refused = Vec::new();
        for _ in 0..40 {
            match open_stream(flood_channel.clone(), &flood).await {
                Ok(s) => open.push(s),
                Err(status) => refused.push(status),
            }
        }
        assert_eq!(open.len(), STREAMS_MAX, "{refused:?}");
        assert_eq!(refused.len(), 40 - STREAMS_MAX);
        for status in &refused {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert!(
                status
                    .message()
                    .contains(&format!("limits.credential_streams_max = {STREAMS_MAX}")),
                "the refusal names the limit and its value: {status:?}"
            );
        }
        assert!(limited("credential_streams") >= before + (40 - STREAMS_MAX) as u64);

        // The flood goes on beside another provider's calls.
        let keep_flooding = {
            let flood = flood.clone();
            tokio::spawn(async move {
                let mut held = Vec::new();
                loop {
                    if let Ok(s) = open_stream(flood_channel.clone(), &flood).await {
                        held.push(s);
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut b = MeteringServiceClient::new(channel(&running).await);
        for i in 0..20 {
            let started = Instant::now();
            let r = b
                .ingest(bearer(batch("dc-b", &format!("b-{i}")), &dc_b))
                .await
                .expect("another provider's call succeeds while one token floods")
                .into_inner();
            let took = started.elapsed();
            assert_eq!(r.outcomes, vec![pb::Outcome::Accepted as i32]);
            assert!(took < Duration::from_secs(1), "call {i} took {took:?}");
        }
        keep_flooding.abort();
        let _ = keep_flooding.await;
        for (i, s) in open.iter_mut().enumerate() {
            let ack = s
                .exchange(batch("dc-a", &format!("a-{i}")))
                .await
                .expect("an admitted stream ingests")
                .expect("an acknowledgement");
            assert_eq!(ack.outcomes, vec![pb::Outcome::Accepted as i32]);
        }
        assert_eq!(
            stored_records(&running, &admin).await,
            20 + STREAMS_MAX as u64
        );
        drop(open);
        running.stop().await.expect("stops");
    });
}

#[test]
fn one_token_cannot_take_every_slot_sqlite() {
    one_token_cannot_take_every_slot(suanli_testkit::sqlite("hostile"));
}

#[test]
fn one_token_cannot_take_every_slot_postgres() {
    if let Some(db) = suanli_testkit::postgres("hostile") {
        one_token_cannot_take_every_slot(db);
    }
}

// A stream that sends nothing for limits.stream_idle_secs is ended by the server with
// DEADLINE_EXCEEDED naming the setting, counted as stream_idle, and its slot returns (with one
// stream allowed per credential, the token opens a new one); a stream sending more often than
// that is left open.
fn idle_streams_are_ended(db: TestDb) {
    runtime().block_on(async {
        let (running, admin) = start(
            &db,
            Limits {
                stream_idle_secs: 1,
                credential_streams_max: 1,
                ..Limits::default()
            },
        )
        .await;
        let dc_a = token(&db.url, Principal::Provider("dc-a".into()), None);
        let mut busy = open_stream(channel(&running).await, &dc_a)
            .await
            .expect("opens");
        for i in 0..4 {
            let ack = busy
                .exchange(batch("dc-a", &format!("busy-{i}")))
                .await
                .expect("a stream sending every 0.5 s stays open")
                .expect("an acknowledgement");
            assert_eq!(ack.outcomes, vec![pb::Outcome::Accepted as i32]);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let second = open_stream(channel(&running).await, &dc_a)
            .await
            .expect_err("the credential's one stream slot is taken");
        assert_eq!(second.code(), Code::ResourceExhausted, "{second:?}");

        let before = limited("stream_idle");
        let started = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(10), busy.acks.message())
            .await
            .expect("the server ends the idle stream")
            .expect_err("with a status");
        assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
        assert!(
            ended.message().contains("limits.stream_idle_secs"),
            "{ended:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "ended about 1 s after the last acknowledgement, not {:?}",
            started.elapsed()
        );
        // At least: the other backend's run of this test shares the process-wide counter.
        assert!(limited("stream_idle") > before, "the idle end is counted");

        // The slot is returned as the stream ends; allow the server a moment to drop it.
        let mut reopened = None;
        for _ in 0..50 {
            match open_stream(channel(&running).await, &dc_a).await {
                Ok(s) => {
                    reopened = Some(s);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let mut reopened = reopened.expect("the idle stream's slot was returned");
        let ack = reopened
            .exchange(batch("dc-a", "reopened"))
            .await
            .expect("ingests")
            .expect("an acknowledgement");
        assert_eq!(ack.outcomes, vec![pb::Outcome::Accepted as i32]);
        assert_eq!(stored_records(&running, &admin).await, 5);
        drop(reopened);
        running.stop().await.expect("stops");
    });
}

#[test]
fn idle_streams_are_ended_sqlite() {
    idle_streams_are_ended(suanli_testkit::sqlite("hostile"));
}

#[test]
fn idle_streams_are_ended_postgres() {
    if let Some(db) = suanli_testkit::postgres("hostile") {
        idle_streams_are_ended(db);
    }
}

/// A CA, a server certificate for localhost and a client certificate with CN `dc-a`, as PEM
/// files in `dir`; returns the paths of the server certificate, its key and the CA (the client
/// files are `client.crt` and `client.key`).
fn pki(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, &ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client.distinguished_name.push(DnType::CommonName, "dc-a");
    let client = client.signed_by(&client_key, &issuer).unwrap();
    write("client.crt", &client.pem());
    write("client.key", &client_key.serialize_pem());
    [
        write("server.crt", &server.pem()),
        write("server.key", &server_key.serialize_pem()),
        write("ca.crt", &ca_pem),
    ]
}

// A client certificate is a credential of its own: the streams opened with it count under its
// CN, the one beyond limits.credential_streams_max is refused, and a bearer token of the same
// provider still opens one. SQLite only: the limit is in the transport, before the store.
#[test]
fn a_client_certificate_has_its_own_stream_limit() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let db = suanli_testkit::sqlite("hostile");
    let [cert_path, key_path, ca_path] = pki(&db.dir);
    let dc_a_token = token(&db.url, Principal::Provider("dc-a".into()), None);
    runtime().block_on(async {
        let running = suanli_server::serve::start(ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            database_url: db.url.clone(),
            http_addr: None,
            tls: Some(suanli_server::config::TlsConfig {
                cert_path,
                key_path,
                client_ca_path: Some(ca_path.clone()),
                client_cert_required: false,
            }),
            limits: Limits {
                credential_streams_max: 2,
                ..Limits::default()
            },
            ..ServeConfig::default()
        })
        .await
        .expect("server starts");
        let read = |name: &str| std::fs::read_to_string(db.dir.join(name)).unwrap();
        let tls = |client: bool| {
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read("ca.crt")))
                .domain_name("localhost");
            if client {
                tls = tls.identity(Identity::from_pem(read("client.crt"), read("client.key")));
            }
            tls
        };
        let connect = |client: bool| {
            let tls = tls(client);
            let addr = running.addr;
            async move {
                Endpoint::from_shared(format!("https://127.0.0.1:{}", addr.port()))
                    .unwrap()
                    .tls_config(tls)
                    .unwrap()
                    .connect()
                    .await
                    .expect("TLS connects")
            }
        };
        let with_cert = connect(true).await;
        let open = |channel: Channel| async move {
            let (send, receive) = mpsc::channel::<pb::IngestRequest>(1);
            let opened = MeteringServiceClient::new(channel)
                .ingest_stream(ReceiverStream::new(receive))
                .await
                .map(|r| r.into_inner());
            (send, opened)
        };
        let first = open(with_cert.clone()).await;
        let second = open(with_cert.clone()).await;
        assert!(first.1.is_ok() && second.1.is_ok(), "two streams open");
        let (_, third) = open(with_cert.clone()).await;
        let refused = third.expect_err("a third stream with the certificate is refused");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused
                .message()
                .contains("limits.credential_streams_max = 2"),
            "{refused:?}"
        );
        let by_token = open_stream(connect(false).await, &dc_a_token).await;
        assert!(
            by_token.is_ok(),
            "the provider's token is another credential: {by_token:?}"
        );
        drop((first, second, by_token));
        running.stop().await.expect("stops");
    });
}
