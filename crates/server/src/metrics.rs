//! The server's own metrics (calls refused by a limit) beside the use cases' (in
//! `suanli_app::metrics`, one registry), and the plain HTTP endpoint that serves them all on
//! `--metrics-addr`.

use std::net::SocketAddr;
use std::sync::LazyLock;

use prometheus::{Encoder, IntCounterVec, Opts, TextEncoder};
use suanli_app::metrics::METRICS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The `limit` label of [`LIMITED`]: which limit refused a call.
pub const LIMIT_MESSAGE_BYTES: &str = "message_bytes";
pub const LIMIT_BATCH_RECORDS: &str = "batch_records";
pub const LIMIT_RATE: &str = "rate";
pub const LIMIT_CONCURRENCY: &str = "concurrency";
pub const LIMIT_DEADLINE: &str = "deadline";
pub const LIMIT_CREDENTIAL_STREAMS: &str = "credential_streams";
pub const LIMIT_CREDENTIAL_CALLS: &str = "credential_calls";
pub const LIMIT_STREAM_IDLE: &str = "stream_idle";

/// Calls refused by a limit: message_bytes, batch_records, rate, concurrency, deadline,
/// credential_streams, credential_calls, and streams ended by the server when idle
/// (stream_idle).
pub static LIMITED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let limited = IntCounterVec::new(
        Opts::new(
            "suanli_limited_requests_total",
            "calls refused by a limit, by limit",
        ),
        &["limit"],
    )
    .expect("metric");
    for limit in [
        LIMIT_MESSAGE_BYTES,
        LIMIT_BATCH_RECORDS,
        LIMIT_RATE,
        LIMIT_CONCURRENCY,
        LIMIT_DEADLINE,
        LIMIT_CREDENTIAL_STREAMS,
        LIMIT_CREDENTIAL_CALLS,
        LIMIT_STREAM_IDLE,
    ] {
        // Present at zero from the start, so dashboards and alerts see the series.
        limited.with_label_values(&[limit]);
    }
    METRICS
        .registry
        .register(Box::new(limited.clone()))
        .expect("unique metric");
    limited
});

/// The `reason` label of [`SIGNIN_FAILURES`]: why a console password sign-in failed. A wrong
/// password and an unknown login share one reason, as they share one message.
pub const SIGNIN_WRONG: &str = "wrong_login_or_password";
pub const SIGNIN_LOCKED: &str = "locked_out";
pub const SIGNIN_DISABLED: &str = "disabled";
pub const SIGNIN_INSECURE: &str = "insecure_transport";
pub const SIGNIN_WRONG_CODE: &str = "wrong_code";

/// Failed console password sign-ins, by reason.
pub static SIGNIN_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let failures = IntCounterVec::new(
        Opts::new(
            "suanli_console_signin_failures_total",
            "failed console password sign-ins, by reason",
        ),
        &["reason"],
    )
    .expect("metric");
    for reason in [
        SIGNIN_WRONG,
        SIGNIN_LOCKED,
        SIGNIN_DISABLED,
        SIGNIN_INSECURE,
        SIGNIN_WRONG_CODE,
    ] {
        failures.with_label_values(&[reason]);
    }
    METRICS
        .registry
        .register(Box::new(failures.clone()))
        .expect("unique metric");
    failures
});

/// The `reason` label of [`SSO_REFUSALS`]: why a console single sign-on was refused.
pub const SSO_STATE: &str = "state";
pub const SSO_PROVIDER: &str = "provider_error";
pub const SSO_NO_CLAIM: &str = "no_claim";
pub const SSO_UNKNOWN_USER: &str = "unknown_user";
pub const SSO_DISABLED: &str = "disabled";

/// Refused console single sign-ons (OpenID Connect), by reason: no live flow of the browser
/// (`state`), the provider's error or a failed token check (`provider_error`), the claim
/// missing or its email unverified (`no_claim`), no enabled person with that claim
/// (`unknown_user`), a disabled person (`disabled`).
pub static SSO_REFUSALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let refusals = IntCounterVec::new(
        Opts::new(
            "suanli_console_sso_refusals_total",
            "refused console single sign-ons, by reason",
        ),
        &["reason"],
    )
    .expect("metric");
    for reason in [
        SSO_STATE,
        SSO_PROVIDER,
        SSO_NO_CLAIM,
        SSO_UNKNOWN_USER,
        SSO_DISABLED,
    ] {
        refusals.with_label_values(&[reason]);
    }
    METRICS
        .registry
        .register(Box::new(refusals.clone()))
        .expect("unique metric");
    refusals
});

pub fn render() -> String {
    LazyLock::force(&LIMITED);
    LazyLock::force(&SIGNIN_FAILURES);
    LazyLock::force(&SSO_REFUSALS);
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
