//! TLS and the protective limits against an in-process `suanli serve` on SQLite: certificates
//! are generated in the test with rcgen (a CA, a server certificate for localhost/127.0.0.1, a
//! client certificate whose CN is a provider id), and each limit's gRPC status and counter.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use suanli_proto::v1 as pb;
use suanli_proto::v1::metering_service_client::MeteringServiceClient;
use suanli_proto::v1::registry_service_client::RegistryServiceClient;
use suanli_server::config::{Limits, TlsConfig};
use suanli_server::metrics::LIMITED;
use suanli_server::serve::{Running, ServeConfig};
use suanli_store::Principal;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request};

const REGISTRY: &str = r#"
[[programme]]
id = "nat"
name = "national"
funder = "national"
year = 2025
beneficiary_kinds = ["enterprise"]
payee = "beneficiary"
rates = [ { category = "compute", ratio = "0.30" } ]
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
[[beneficiary]]
id = "ent-a"
name = "A"
kind = "enterprise"
"#;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A temp directory with a SQLite database, an admin token and PEM files; removed on drop.
struct Fixture {
    dir: PathBuf,
    url: String,
    admin: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!(
        "suanli-tls-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/suanli.db", dir.display());
    let mut store = suanli_store::open(&url).expect("store opens");
    let admin = suanli_server::auth::new_token();
    store
        .token_insert(
            &suanli_server::auth::hash_token(&admin),
            &Principal::Admin,
            chrono::Utc::now(),
        )
        .expect("token stored");
    Fixture { dir, url, admin }
}

/// PEM text of a certificate and its key.
struct Pem {
    cert: String,
    key: String,
}

/// A CA, a server certificate signed by it, and a function issuing client certificates.
struct Pki {
    ca: String,
    server: Pem,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (params, key, cert.pem())
}

impl Pki {
    fn new() -> Pki {
        let (ca_params, ca_key, ca) = ca("suanli test CA");
        let server_key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let issuer = Issuer::new(ca_params.clone(), &ca_key);
        let server = params.signed_by(&server_key, &issuer).unwrap();
        Pki {
            ca,
            server: Pem {
                cert: server.pem(),
                key: server_key.serialize_pem(),
            },
            ca_params,
            ca_key,
        }
    }

    /// A client certificate with subject CN `cn`, signed by this CA.
    fn client(&self, cn: &str) -> Pem {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let issuer = Issuer::new(self.ca_params.clone(), &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn start(config: ServeConfig) -> Running {
    suanli_server::serve::start(config)
        .await
        .expect("server starts")
}

fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

async fn tls_channel(running: &Running, pki: &Pki, client: Option<&Pem>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if let Some(c) = client {
        tls = tls.identity(Identity::from_pem(&c.cert, &c.key));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{}", running.addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connects")
}

async fn plain_channel(running: &Running) -> Channel {
    Endpoint::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .expect("connects")
}

fn gpu(provider: &str, id: &str) -> pb::UsageRecord {
    let t = |s: &str| {
        let t = chrono::DateTime::parse_from_rfc3339(s).unwrap();
        Some(prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        })
    };
    pb::UsageRecord {
        provider: provider.into(),
        record_id: id.into(),
        beneficiary: "ent-a".into(),
        sku: "a-gpu".into(),
        start: t("2025-03-01T00:00:00+08:00"),
        end: t("2025-03-01T01:00:00+08:00"),
        quantity: "1".into(),
        amount_fen: 1000,
    }
}

fn batch(records: Vec<pb::UsageRecord>) -> pb::IngestRequest {
    pb::IngestRequest {
        batch_id: "b".into(),
        records,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tls_config(f: &Fixture, pki: &Pki) -> ServeConfig {
    ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        health_addr: Some(format!("127.0.0.1:{}", free_port()).parse().unwrap()),
        database_url: f.url.clone(),
        http_addr: None,
        tls: Some(TlsConfig {
            cert_path: write(&f.dir, "server.crt", &pki.server.cert),
            key_path: write(&f.dir, "server.key", &pki.server.key),
            client_ca_path: Some(write(&f.dir, "ca.crt", &pki.ca)),
            client_cert_required: false,
        }),
        ..ServeConfig::default()
    }
}

// Over TLS a bearer token works; a client certificate with CN dc-a acts as provider dc-a (its
// own records accepted, another provider's refused); a certificate from another CA and a
// plain-text connection are refused; the plain-text health listener answers SERVING.
#[test]
fn tls_with_tokens_and_client_certificates() {
    let f = fixture();
    let pki = Pki::new();
    runtime().block_on(async {
        let config = tls_config(&f, &pki);
        let running_health = config.health_addr;
        let running = start(config).await;

        let mut registry = RegistryServiceClient::new(tls_channel(&running, &pki, None).await);
        let loaded = registry
            .load_registry(bearer(
                pb::LoadRegistryRequest {
                    file_name: "test.toml".into(),
                    toml_text: REGISTRY.into(),
                },
                &f.admin,
            ))
            .await
            .expect("a bearer token works over TLS")
            .into_inner();
        assert!(loaded.created);
        let err = registry
            .get_registry(pb::GetRegistryRequest {})
            .await
            .expect_err("no token and no client certificate");
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

        let dc_a = pki.client("dc-a");
        let mut metering =
            MeteringServiceClient::new(tls_channel(&running, &pki, Some(&dc_a)).await);
        let r = metering
            .ingest(batch(vec![gpu("dc-a", "r1"), gpu("dc-b", "r2")]))
            .await
            .expect("the client certificate authenticates")
            .into_inner();
        assert_eq!(
            r.outcomes,
            vec![pb::Outcome::Accepted as i32, pb::Outcome::Rejected as i32]
        );
        assert_eq!(
            r.problems[0].reason,
            pb::RejectReason::ProviderMismatch as i32,
            "the certificate maps to provider dc-a only: {:?}",
            r.problems
        );
        let stats = metering
            .get_usage_stats(pb::GetUsageStatsRequest {
                provider: String::new(),
            })
            .await
            .expect("a provider reads its own totals")
            .into_inner();
        assert_eq!(stats.records, 1);
        let err = metering
            .get_usage_stats(pb::GetUsageStatsRequest {
                provider: "dc-b".into(),
            })
            .await
            .expect_err("provider dc-a may not read dc-b");
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

        // A certificate with a valid-looking CN from an untrusted CA fails the handshake.
        let (rogue_params, rogue_key, rogue_ca) = ca("rogue CA");
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "dc-a");
        let rogue = params
            .signed_by(&key, &Issuer::new(rogue_params, &rogue_key))
            .unwrap();
        let _ = rogue_ca;
        let rogue = Pem {
            cert: rogue.pem(),
            key: key.serialize_pem(),
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki.ca))
            .domain_name("localhost")
            .identity(Identity::from_pem(&rogue.cert, &rogue.key));
        let refused =
            match Endpoint::from_shared(format!("https://127.0.0.1:{}", running.addr.port()))
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
            {
                Err(_) => true,
                Ok(channel) => MeteringServiceClient::new(channel)
                    .ingest(batch(vec![gpu("dc-a", "r9")]))
                    .await
                    .is_err(),
            };
        assert!(refused, "a client certificate from another CA is refused");

        // Plain text to a TLS listener fails.
        let plain = Endpoint::from_shared(format!("http://{}", running.addr))
            .unwrap()
            .connect()
            .await;
        if let Ok(channel) = plain {
            let err = RegistryServiceClient::new(channel)
                .get_registry(bearer(pb::GetRegistryRequest {}, &f.admin))
                .await
                .expect_err("plain text is refused by a TLS server");
            // The TLS listener drops an HTTP/2 preface sent in plain text: the call fails in the
            // transport (broken pipe or closed connection, whichever the client notices first),
            // never as an answer of a service.
            let transport = std::error::Error::source(&err)
                .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some());
            assert!(
                transport,
                "a transport failure, not a service's status: {err:?}"
            );
        }
        // The probe listener: plain text, grpc.health.v1 only.
        let health_addr = running_health.expect("a health address");
        let channel = Endpoint::from_shared(format!("http://{health_addr}"))
            .unwrap()
            .connect()
            .await
            .expect("the health listener is plain text");
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        for service in ["", "suanli.v1.MeteringService"] {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("health answers")
                .into_inner()
                .status;
            assert_eq!(
                status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            );
        }
        let err = RegistryServiceClient::new(channel)
            .get_registry(bearer(pb::GetRegistryRequest {}, &f.admin))
            .await
            .expect_err("the health listener serves nothing else");
        assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
        running.stop().await.expect("stops");
    });
}

// The CLI reaches a TLS server with --ca-cert and a bearer token, and with a client certificate
// and no token as a provider.
#[test]
fn cli_over_tls() {
    let f = fixture();
    let pki = Pki::new();
    let ca_path = write(&f.dir, "cli-ca.crt", &pki.ca);
    let registry_path = write(&f.dir, "registry.toml", REGISTRY);
    let dc_a = pki.client("dc-a");
    let cert = write(&f.dir, "dc-a.crt", &dc_a.cert);
    let key = write(&f.dir, "dc-a.key", &dc_a.key);
    let usage = write(
        &f.dir,
        "usage.csv",
        "provider,record_id,beneficiary,sku,start,end,quantity,amount\n\
         dc-a,u1,ent-a,a-gpu,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,1,10.00\n",
    );
    let rt = runtime();
    let running = rt.block_on(start(tls_config(&f, &pki)));
    let server = format!("https://127.0.0.1:{}", running.addr.port());
    let cli = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_suanli"))
            .args(args)
            .args(["--server", &server, "--ca-cert", ca_path.to_str().unwrap()])
            .env_remove("SUANLI_TOKEN")
            .env_remove("SUANLI_SERVER")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = cli(&[
        "registry",
        "import",
        "--file",
        registry_path.to_str().unwrap(),
        "--token",
        &f.admin,
    ]);
    assert!(out.contains("registry version 1 loaded"), "{out}");
    let out = cli(&[
        "usage",
        "import",
        "--file",
        usage.to_str().unwrap(),
        "--client-cert",
        cert.to_str().unwrap(),
        "--client-key",
        key.to_str().unwrap(),
    ]);
    assert!(out.contains("accepted 1"), "{out}");
    rt.block_on(running.stop()).expect("stops");
}

fn limited(limit: &str) -> u64 {
    LIMITED.with_label_values(&[limit]).get()
}

// A batch above limits.batch_records_max gets INVALID_ARGUMENT, a message above
// limits.message_bytes_max RESOURCE_EXHAUSTED (unary and stream), calls beyond the token bucket
// RESOURCE_EXHAUSTED; each is counted in suanli_limited_requests_total.
#[test]
fn limits_return_their_status_and_are_counted() {
    let f = fixture();
    runtime().block_on(async {
        let running = start(ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            database_url: f.url.clone(),
            http_addr: None,
            limits: Limits {
                batch_records_max: 2,
                message_bytes_max: 64 * 1024,
                // Per minute, so the bucket cannot refill between two calls of this test.
                token_requests_per_minute: 1,
                token_request_burst: 5,
                ..Limits::default()
            },
            ..ServeConfig::default()
        })
        .await;
        let mut registry = RegistryServiceClient::new(plain_channel(&running).await);
        registry
            .load_registry(bearer(
                pb::LoadRegistryRequest {
                    file_name: "test.toml".into(),
                    toml_text: REGISTRY.into(),
                },
                &f.admin,
            ))
            .await
            .expect("registry loads");
        let mut metering = MeteringServiceClient::new(plain_channel(&running).await);

        let before = limited("batch_records");
        let err = metering
            .ingest(bearer(
                batch(vec![gpu("dc-a", "1"), gpu("dc-a", "2"), gpu("dc-a", "3")]),
                &f.admin,
            ))
            .await
            .expect_err("three records exceed a limit of two");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("at most 2"), "{err:?}");
        assert_eq!(limited("batch_records"), before + 1);

        let mut big = gpu("dc-a", "big");
        big.record_id = "x".repeat(100 * 1024);
        let before = limited("message_bytes");
        let err = metering
            .ingest(bearer(batch(vec![big.clone()]), &f.admin))
            .await
            .expect_err("a 100 KiB message exceeds 64 KiB");
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert_eq!(limited("message_bytes"), before + 1);
        let stream = tokio_stream::iter(vec![batch(vec![big])]);
        let outcome = match metering.ingest_stream(bearer(stream, &f.admin)).await {
            Err(status) => status,
            Ok(response) => {
                let mut acks = response.into_inner();
                acks.message()
                    .await
                    .expect_err("the oversized stream message fails")
            }
        };
        assert_eq!(outcome.code(), Code::ResourceExhausted, "{outcome:?}");
        assert_eq!(limited("message_bytes"), before + 2);

        // The admin token has used 5 calls (load, 2 ingests, a stream… the burst is 5); the
        // sixth within the same minute is refused.
        let before = limited("rate");
        let mut refused = None;
        for _ in 0..6 {
            if let Err(status) = registry
                .get_registry(bearer(pb::GetRegistryRequest {}, &f.admin))
                .await
            {
                refused = Some(status);
                break;
            }
        }
        let refused = refused.expect("the token bucket runs dry");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(refused.message().contains("rate limit"), "{refused:?}");
        assert_eq!(limited("rate"), before + 1);
        running.stop().await.expect("stops");
    });
}
