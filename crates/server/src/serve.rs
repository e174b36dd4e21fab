//! `suanli serve`: opens the store, restores the current registry version and serves gRPC
//! (metering, registry, settlement, ledger, balance, grpc.health.v1, server reflection), over
//! TLS when configured, behind the limits layer, and the web console (`server.http_addr`, over
//! HTTPS with the same certificate when TLS is configured), until shut down. Shutdown stops accepting
//! calls, lets in-flight batches commit and be acknowledged, then closes the store.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use suanli_proto::v1 as pb;
use suanli_proto::v1::metering_service_server::MeteringServiceServer;
use suanli_proto::v1::registry_service_server::RegistryServiceServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

use anyhow::Context;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::auth::{Authenticator, Interceptor};
use crate::config::TlsConfig;
use crate::grpc::{CurrentRegistry, MeteringService, RegistryService, Shared};
use crate::limits::{LimitLayer, RateLimiter};
use suanli_app::ingest::Writer;

/// The default largest message, and what the CLI clients accept: a full batch of 10,000 records
/// with long ids fits. The server's limit is `limits.message_bytes_max`.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The services reported by grpc.health.v1; "" is the server as a whole.
const HEALTH_SERVICES: [&str; 6] = [
    "suanli.v1.MeteringService",
    "suanli.v1.RegistryService",
    "suanli.v1.SettlementService",
    "suanli.v1.LedgerService",
    "suanli.v1.BalanceService",
    "",
];

/// How often a server on PostgreSQL catches up with the other servers on the same database:
/// a registry version they loaded (records are validated against it from then on) and the
/// stored keys and capacity they changed (ingest also catches up before every transaction).
/// Also how often a SQLite server folds pending accrual deltas that ingest has not folded for a
/// second (`Store::fold_accruals`; on PostgreSQL the store's fold thread folds every second and
/// this reports its failures): after ingest goes quiet, the `accruals` table alone is current
/// again within about two seconds.
pub const REPLICA_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The resolved configuration (see `config.rs`).
pub use crate::config::Config as ServeConfig;

/// Reads the PEM files named by the configuration; a failure names the key.
fn tls_config(tls: &TlsConfig) -> anyhow::Result<ServerTlsConfig> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("{key}: cannot read {}", path.display()))
    };
    let identity = Identity::from_pem(
        read("tls.cert_path", &tls.cert_path)?,
        read("tls.key_path", &tls.key_path)?,
    );
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca_path {
        config = config
            .client_ca_root(Certificate::from_pem(read("tls.client_ca_path", ca)?))
            .client_auth_optional(!tls.client_cert_required);
    }
    Ok(config)
}

/// A server started by [`start`]; [`Running::stop`] shuts it down gracefully.
pub struct Running {
    pub addr: SocketAddr,
    /// The console's bound address, when `server.http_addr` is set.
    pub http_addr: Option<SocketAddr>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
    /// The services' state, held weakly (a strong handle would keep the writer alive), so a
    /// test can stop the writer from inside.
    #[cfg(test)]
    shared: std::sync::Weak<crate::grpc::Shared>,
}

impl Running {
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await?
    }

    /// Waits until the server ends on its own (it does not, unless it fails).
    pub async fn wait(self) -> anyhow::Result<()> {
        let Running { shutdown, task, .. } = self;
        let result = task.await?;
        drop(shutdown);
        result
    }
}

/// Reads what ingest decides with from every stored record ([`suanli_store::Store::prepare_ingest`]).
async fn prepare_ingest(writer: &Writer) -> anyhow::Result<()> {
    writer
        .call(|s| s.prepare_ingest())
        .await?
        .context("reading the stored usage records for ingest")
}

/// Binds, opens the store and starts serving; returns once the server listens.
pub async fn start(config: ServeConfig) -> anyhow::Result<Running> {
    let serve_lock = sqlite_serve_lock(&config.database_url)?;
    let url = config.database_url.clone();
    let (writer, writer_thread) =
        tokio::task::spawn_blocking(move || Writer::spawn(&url)).await??;
    let writer_stopped = writer.stop_signal();
    // Set by housekeeping when the store can no longer keep its totals (the fold has stopped).
    let (fold_stopped_tx, fold_stopped) = oneshot::channel::<String>();
    let current = writer.call(suanli_app::registry::current_row).await??;
    let current = match current {
        Some(row) => Some(Arc::new(CurrentRegistry::from_row(row)?)),
        None => None,
    };
    if let Some(c) = &current {
        tracing::info!(version = c.version, hash = %c.content_hash, "registry version restored");
    } else {
        tracing::warn!(
            "no registry loaded yet; records are rejected until one is (suanli registry import)"
        );
    }
    // What ingest decides with is read from every stored record before the server listens, so
    // that the first batch does not wait for it. On SQLite that read is the writer thread's
    // alone, and the balance thread prepares its figures beside it on another core (at
    // 10,000,000 records they were ready 2 s after the server listened instead of 11 s, the
    // start no longer). On PostgreSQL the database server does half the read: preparing the
    // figures beside it delayed listening, and so ingest, by 7-12 s on 2 cores, so there the
    // figures are prepared after.
    let sqlite = config.database_url.starts_with("sqlite://");
    if !sqlite {
        prepare_ingest(&writer).await?;
    }
    let balances = suanli_app::balances::Balances::beside(&writer, &config.database_url).await?;
    if sqlite {
        prepare_ingest(&writer).await?;
    }
    let shared = Arc::new(Shared {
        auth: Authenticator::new(
            writer.clone(),
            std::time::Duration::from_secs(config.limits.token_recheck_secs),
        ),
        writer,
        registry: RwLock::new(current),
        batch_records_max: config.limits.batch_records_max,
        stream_idle: std::time::Duration::from_secs(config.limits.stream_idle_secs),
        registry_bytes_max: config.limits.registry_bytes_max,
        message_bytes_max: config.limits.message_bytes_max,
        balances,
        payment_confirm_above: config
            .payment_confirm_above_fen
            .map(suanli_domain::money::Fen),
    });
    crate::grpc::refresh_programme_gauges(&shared).await;
    #[cfg(test)]
    let test_shared = Arc::downgrade(&shared);
    tokio::spawn(housekeeping(
        Arc::downgrade(&shared),
        REPLICA_SYNC_INTERVAL,
        !config.database_url.starts_with("sqlite://"),
        fold_stopped_tx,
    ));
    let limits = &config.limits;
    let interceptor = Interceptor::new(Arc::new(RateLimiter::new(
        limits.token_requests_per_minute,
        limits.token_request_burst,
    )));
    let message_bytes_max = limits.message_bytes_max;

    let listener = TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    if let Some(metrics_addr) = config.metrics_addr {
        let metrics_listener = tokio::spawn(crate::metrics::serve(metrics_addr));
        tokio::spawn(async move {
            if let Ok(Err(e)) = metrics_listener.await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    for name in HEALTH_SERVICES {
        health_reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    if let Some(health_addr) = config.health_addr {
        // Plain text on purpose: the kubelet's gRPC probe cannot speak TLS. It serves nothing
        // but the health status.
        let listener = TcpListener::bind(health_addr)
            .await
            .with_context(|| format!("server.health_addr: cannot bind {health_addr}"))?;
        let health = health_service.clone();
        tracing::info!(%health_addr, "health listening");
        tokio::spawn(async move {
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(no_delay(listener))
                .await
            {
                tracing::error!(error = %e, "health endpoint failed");
            }
        });
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(suanli_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(suanli_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let metering = InterceptedService::new(
        MeteringServiceServer::new(MeteringService {
            shared: shared.clone(),
        })
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(message_bytes_max),
        interceptor.clone(),
    );
    let settlement = InterceptedService::new(
        pb::settlement_service_server::SettlementServiceServer::new(
            crate::grpc::SettlementService {
                shared: shared.clone(),
            },
        )
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(message_bytes_max),
        interceptor.clone(),
    );
    let ledger = InterceptedService::new(
        pb::ledger_service_server::LedgerServiceServer::new(crate::grpc::LedgerService {
            shared: shared.clone(),
        })
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(message_bytes_max),
        interceptor.clone(),
    );
    let balance = InterceptedService::new(
        pb::balance_service_server::BalanceServiceServer::new(crate::grpc::BalanceService {
            shared: shared.clone(),
        })
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(message_bytes_max),
        interceptor.clone(),
    );
    // The web console: bound now so a taken port fails the start, served until shutdown.
    let (console_stop, console_stop_rx) = oneshot::channel::<()>();
    let console = match config.http_addr {
        Some(http_addr) => {
            let listener = TcpListener::bind(http_addr)
                .await
                .with_context(|| format!("server.http_addr: cannot bind {http_addr}"))?;
            let http_addr = listener.local_addr()?;
            let settings = crate::console::ConsoleSettings {
                trust_proxy_tls: config.trust_proxy_tls,
                require_totp_for: config.require_totp_for.clone(),
                tls: match &config.tls {
                    Some(tls) => Some(crate::console::https::server_config(tls)?),
                    None => None,
                },
                sso: match &config.oidc {
                    Some(oidc) => Some(
                        crate::console::Sso::new(oidc.clone())
                            .context("auth.oidc: cannot set up the HTTP client")?,
                    ),
                    None => None,
                },
            };
            tracing::info!(
                %http_addr,
                https = settings.tls.is_some(),
                sso = settings.sso.is_some(),
                "console listening"
            );
            let shared = shared.clone();
            Some((
                http_addr,
                tokio::spawn(async move {
                    crate::console::serve(listener, shared, settings, async move {
                        let _ = console_stop_rx.await;
                    })
                    .await
                }),
            ))
        }
        None => None,
    };
    let http_addr = console.as_ref().map(|(a, _)| *a);
    let registry = InterceptedService::new(
        RegistryServiceServer::new(RegistryService { shared })
            .max_decoding_message_size(message_bytes_max),
        interceptor,
    );
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder.tls_config(tls_config(tls)?)?;
    }
    let router = builder
        .layer(
            LimitLayer::new(
                limits.concurrent_requests_max,
                std::time::Duration::from_millis(limits.request_deadline_ms),
            )
            .per_credential(limits.credential_streams_max, limits.credential_calls_max),
        )
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(metering)
        .add_service(registry)
        .add_service(settlement)
        .add_service(ledger)
        .add_service(balance);
    let tls = config.tls.is_some();

    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tracing::info!(%addr, tls, "suanli serving gRPC");
        let (fatal_tx, mut fatal) = oneshot::channel::<String>();
        let serving = router.serve_with_incoming_shutdown(no_delay(listener), async move {
            let stopped = tokio::select! {
                _ = shutdown_rx => None,
                () = writer_stopped.wait() => Some("the store writer has stopped".to_owned()),
                Ok(e) = fold_stopped => Some(e),
            };
            // Readiness probes see NOT_SERVING while in-flight batches finish.
            for name in HEALTH_SERVICES {
                health_reporter
                    .set_service_status(name, tonic_health::ServingStatus::NotServing)
                    .await;
            }
            match stopped {
                Some(reason) => {
                    tracing::error!(reason = %reason, "shutting down: the store cannot go on");
                    let _ = fatal_tx.send(reason);
                }
                None => tracing::info!("shutting down: finishing in-flight batches"),
            }
            let _ = console_stop.send(());
        });
        tokio::pin!(serving);
        let served = tokio::select! {
            served = &mut serving => served,
            Ok(reason) = &mut fatal => {
                // Open streams would hold a graceful shutdown forever, and nothing they send
                // can be stored: give in-flight calls a moment, then exit for a restart.
                let _ = tokio::time::timeout(FATAL_GRACE, &mut serving).await;
                anyhow::bail!("{reason}; exiting so that the server is restarted");
            }
        };
        if let Ok(reason) = fatal.try_recv() {
            anyhow::bail!("{reason}; exiting so that the server is restarted");
        }
        // The console holds writer handles too: wait for it before closing the store.
        if let Some((_, console)) = console {
            match console.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "console failed"),
                Err(e) => tracing::error!(error = %e, "console task failed"),
            }
        }
        // The services (and their writer handles) are dropped now; the writer finishes what is
        // queued and closes the store.
        tokio::task::spawn_blocking(move || writer_thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the store writer panicked"))?;
        drop(serve_lock);
        tracing::info!("store closed");
        served.map_err(anyhow::Error::from)
    });
    Ok(Running {
        addr,
        http_addr,
        shutdown,
        task,
        #[cfg(test)]
        shared: test_shared,
    })
}

/// A SQLite database is served by one `suanli serve` at a time: the writer's in-memory indexes
/// (stored keys, capacity used) are trusted without asking the database. An exclusive lock on
/// `<database>.serve-lock`, held until the store is closed, makes a second server on the same
/// file fail at start instead of double-counting. (CLI commands that open the file directly,
/// such as `token create`, do not touch those indexes and need no lock.)
fn sqlite_serve_lock(url: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Some(path) = url.strip_prefix("sqlite://") else {
        return Ok(None);
    };
    if path.is_empty() || path.starts_with(":memory:") {
        return Ok(None);
    }
    let lock_path = format!("{path}.serve-lock");
    if let Some(dir) = std::path::Path::new(&lock_path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("database.url: cannot create {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("database.url: cannot open the lock file {lock_path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "database.url: {path} is already served by another suanli serve (it holds {lock_path}); \
             a SQLite database has one server — use PostgreSQL for several"
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("database.url: cannot lock {lock_path}"))
        }
    }
}

/// Every `every` while the server's services exist (held weakly, so a stopped server is not
/// kept alive): folds the pending accrual deltas of a quiet server (SQLite; on PostgreSQL it
/// reports the store's fold thread's failures) and, if `follow_others`
/// (PostgreSQL), follows the other servers on the database. Ends when the writer is gone.
async fn housekeeping(
    shared: std::sync::Weak<crate::grpc::Shared>,
    every: std::time::Duration,
    follow_others: bool,
    fold_stopped: oneshot::Sender<String>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match fold_quiet_accruals(&shared).await {
            Ok(()) => {}
            Err(Housekeeping::WriterGone) => return,
            Err(Housekeeping::FoldStopped(e)) => {
                let _ = fold_stopped.send(e);
                return;
            }
        }
        if follow_others && follow_other_servers(&shared).await.is_err() {
            return;
        }
    }
}

/// Why housekeeping ends.
enum Housekeeping {
    WriterGone,
    FoldStopped(String),
}

/// Folds the pending accrual deltas if ingest has not for a second.
async fn fold_quiet_accruals(shared: &crate::grpc::Shared) -> Result<(), Housekeeping> {
    match shared.writer.call(suanli_app::usage::fold_accruals).await {
        Ok(Ok(true)) => tracing::debug!("pending accrual deltas folded"),
        Ok(Ok(false)) => {}
        Ok(Err(e @ suanli_store::StoreError::FoldStopped(_))) => {
            return Err(Housekeeping::FoldStopped(e.to_string()));
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "folding pending accrual deltas failed; readers still add them")
        }
        Err(_) => return Err(Housekeeping::WriterGone),
    }
    Ok(())
}

/// The store's writer thread has stopped.
struct WriterGone;

/// Catches the store up with the other servers on the database and installs a registry
/// version one of them loaded. `Err`: the writer is gone.
async fn follow_other_servers(shared: &Arc<crate::grpc::Shared>) -> Result<(), WriterGone> {
    let have = shared.current().map_or(0, |c| c.version);
    let newer = shared
        .writer
        .call(move |store| suanli_app::registry::newer_than(store, have))
        .await;
    match newer {
        // Parsed on a blocking thread: a city's registry takes a second, which would stall
        // the calls this runtime thread serves.
        Ok(Ok(Some(row))) => {
            match tokio::task::spawn_blocking(move || CurrentRegistry::from_row(row))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|parsed| parsed)
            {
                Ok(current) => {
                    tracing::info!(version = current.version, hash = %current.content_hash, "registry version loaded by another server installed");
                    shared.install_registry(Arc::new(current));
                    crate::grpc::refresh_programme_gauges(shared).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot install the registry version another server loaded")
                }
            }
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "catching up with the other servers failed; retrying")
        }
        Err(_) => return Err(WriterGone),
    }
    Ok(())
}

/// How long a server whose store stopped waits for in-flight calls before it exits.
const FATAL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves until `signal` completes, then shuts down gracefully; or until the server fails on
/// its own (its store writer or fold stopped), which is an error, so the process exits
/// non-zero and an orchestrator restarts it.
pub async fn run(config: ServeConfig, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
    let Running {
        shutdown, mut task, ..
    } = start(config).await?;
    tokio::select! {
        () = signal => {
            let _ = shutdown.send(());
            task.await?
        }
        result = &mut task => {
            drop(shutdown);
            result?
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The accepted connections of `listener`, with Nagle's algorithm off (`TCP_NODELAY`).
/// tonic sets it only on listeners it binds itself. Left on, an acknowledgement written while
/// the previous one was still unacknowledged by the client's TCP stack waited for the client's
/// delayed ACK (40 ms on Linux): batch-ack latency at 80,000 records/s had a p99 of 51 ms on
/// SQLite and 60 ms on PostgreSQL, most of it that wait (BENCHMARKS.md).
fn no_delay(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::{Running, ServeConfig, start};

    /// Health as the server's gRPC health service answers it for the server as a whole.
    async fn health(addr: std::net::SocketAddr) -> Result<i32, tonic::Status> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| tonic::Status::internal(e.to_string()))?
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        client
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status)
    }

    // Proves a server whose store writer stops (here: a call that panics on the writer thread)
    // reports NOT_SERVING and then ends with an error, so `suanli serve` exits non-zero and an
    // orchestrator restarts it, instead of answering UNAVAILABLE forever while healthy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_writer_turns_health_not_serving_and_ends_the_server_with_an_error() {
        let db = suanli_testkit::sqlite("writer-stop");
        // The probes' listener: it keeps answering while the gRPC listener drains and closes.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let running: Running = start(ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            database_url: db.url.clone(),
            http_addr: None,
            health_addr: Some(addr),
            ..ServeConfig::default()
        })
        .await
        .expect("server starts");
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        assert_eq!(health(addr).await.expect("health answers"), serving);
        let writer = running.shared.upgrade().expect("shared").writer.clone();
        let _ = writer
            .call(|_store| -> () { panic!("injected: the writer stops") })
            .await;
        drop(writer);
        // NOT_SERVING within a few seconds.
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let status = health(addr).await;
            let done = status.as_ref().map_or(true, |s| *s != serving);
            seen.push(status.map_err(|e| e.code()));
            if done || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
        assert!(
            seen.last() == Some(&Ok(not_serving)),
            "health after the writer stopped: {seen:?}"
        );
        let ended = tokio::time::timeout(std::time::Duration::from_secs(15), running.wait())
            .await
            .expect("the server ends on its own");
        let err = ended.expect_err("a server whose writer stopped ends with an error");
        assert!(
            format!("{err:#}").contains("writer"),
            "the error names the writer: {err:#}"
        );
    }

    #[tokio::test]
    async fn accepted_grpc_connections_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = super::no_delay(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.expect("a connection").unwrap();
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is off");
    }
}
