//! Limits that protect the service: a per-credential token bucket (used by the authentication
//! interceptor), and a tower layer around every gRPC service for the concurrency limit, the
//! per-credential limits on open streams and calls in flight, the request deadline and the
//! status of an oversized message. Each refusal is counted in
//! `suanli_limited_requests_total{limit}`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;

use crate::auth::Credential;
use crate::metrics::{
    LIMIT_CONCURRENCY, LIMIT_CREDENTIAL_CALLS, LIMIT_CREDENTIAL_STREAMS, LIMIT_DEADLINE,
    LIMIT_MESSAGE_BYTES, LIMITED,
};

pub fn count(limit: &str) {
    LIMITED.with_label_values(&[limit]).inc();
}

/// Most credentials tracked at once; beyond it, buckets that have refilled are forgotten (a
/// full bucket is the same as no bucket), so unknown tokens cannot grow the map without bound.
const BUCKETS_MAX: usize = 100_000;
/// One token in the bucket's fixed-point unit: per-minute rates refill in whole micro-tokens
/// per microsecond step without floats.
const UNIT: u128 = 1_000_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens × UNIT.
    level: u128,
    at: Instant,
}

/// Token buckets keyed by credential: `burst` tokens, refilled at `per_minute` a minute.
pub struct RateLimiter {
    per_minute: u64,
    burst: u64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_minute == 0` admits everything.
    pub fn new(per_minute: u64, burst: u64) -> RateLimiter {
        RateLimiter {
            per_minute,
            burst: burst.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> u128 {
        let elapsed_us = now.saturating_duration_since(b.at).as_micros();
        // per_minute tokens per 60e6 µs = per_minute / 60 micro-tokens per µs.
        let added = elapsed_us.saturating_mul(u128::from(self.per_minute)) / 60;
        b.level
            .saturating_add(added)
            .min(u128::from(self.burst) * UNIT)
    }

    /// Takes one token for `key` at `now`; false when the bucket is empty.
    pub fn admit(&self, key: &str, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= BUCKETS_MAX && !buckets.contains_key(key) {
            let full = u128::from(self.burst) * UNIT;
            buckets.retain(|_, b| self.refilled(*b, now) < full);
        }
        let full = Bucket {
            level: u128::from(self.burst) * UNIT,
            at: now,
        };
        let bucket = buckets.entry(key.to_owned()).or_insert(full);
        let level = self.refilled(*bucket, now);
        if level < UNIT {
            *bucket = Bucket { level, at: now };
            return false;
        }
        *bucket = Bucket {
            level: level - UNIT,
            at: now,
        };
        true
    }
}

/// Registry loads: a city's registry (hundreds of megabytes at most, `limits.registry_bytes_max`)
/// is received, parsed and stored within one call, which can take longer than the deadline of
/// an ordinary call on a busy server. They get [`REGISTRY_LOAD_DEADLINE`] unless
/// `limits.request_deadline_ms` is longer; a shorter client `grpc-timeout` still wins, and a
/// load cut after its text arrived still commits and is installed.
pub const REGISTRY_LOAD_METHODS: &[&str] = &[
    "/suanli.v1.RegistryService/LoadRegistry",
    "/suanli.v1.RegistryService/LoadRegistryStream",
    "/suanli.v1.RegistryService/PatchRegistry",
];

/// The server's deadline of a registry load: 10 minutes.
pub const REGISTRY_LOAD_DEADLINE: Duration = Duration::from_secs(600);

/// The gRPC methods whose calls are streams: they count against `limits.credential_streams_max`
/// for as long as they are open, every other call against `limits.credential_calls_max`.
/// A unit test checks the list against the streaming methods of the proto files.
pub const STREAMING_METHODS: &[&str] = &[
    "/suanli.v1.LedgerService/ListJournalPages",
    "/suanli.v1.LedgerService/ListTrialBalance",
    "/suanli.v1.MeteringService/IngestStream",
    "/suanli.v1.RegistryService/LoadRegistryStream",
    "/suanli.v1.RegistryService/PatchRegistry",
    "/suanli.v1.SettlementService/ListRunLines",
];

/// What one credential has open.
#[derive(Debug, Default)]
struct Open {
    streams: usize,
    calls: usize,
}

/// Open streams and unary calls in flight per credential, so that one credential cannot take
/// every slot of the server-wide concurrency limit. The map holds only credentials with
/// something open (an entry goes when its last slot is returned), so it is bounded by the
/// calls in progress.
pub struct CredentialSlots {
    streams_max: usize,
    calls_max: usize,
    open: Arc<Mutex<HashMap<String, Open>>>,
}

/// A stream or call counted against its credential until dropped.
pub struct Slot {
    open: Arc<Mutex<HashMap<String, Open>>>,
    key: String,
    stream: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("credential slots lock");
        if let Some(o) = open.get_mut(&self.key) {
            if self.stream {
                o.streams -= 1;
            } else {
                o.calls -= 1;
            }
            if o.streams == 0 && o.calls == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl CredentialSlots {
    pub fn new(streams_max: usize, calls_max: usize) -> CredentialSlots {
        CredentialSlots {
            streams_max,
            calls_max,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Takes a stream slot (`stream`) or a call slot for the credential `key`; refused with
    /// RESOURCE_EXHAUSTED naming the limit and its value when the credential has them all.
    pub fn take(&self, key: &str, stream: bool) -> Result<Slot, Status> {
        let mut open = self.open.lock().expect("credential slots lock");
        let o = open.entry(key.to_owned()).or_default();
        let (used, max, setting, what, label) = if stream {
            let used = &mut o.streams;
            (
                used,
                self.streams_max,
                "limits.credential_streams_max",
                "streams open",
                LIMIT_CREDENTIAL_STREAMS,
            )
        } else {
            let used = &mut o.calls;
            (
                used,
                self.calls_max,
                "limits.credential_calls_max",
                "calls in flight",
                LIMIT_CREDENTIAL_CALLS,
            )
        };
        if *used >= max {
            // Only a limit of 0 refuses a credential with nothing open; keep no entry for it.
            if o.streams == 0 && o.calls == 0 {
                open.remove(key);
            }
            drop(open);
            count(label);
            return Err(Status::resource_exhausted(format!(
                "credential limit: this credential already has {max} {what} \
                 ({setting} = {max}); end one or retry with backoff"
            )));
        }
        *used += 1;
        Ok(Slot {
            open: self.open.clone(),
            key: key.to_owned(),
            stream,
        })
    }
}

/// The credential key of an HTTP request, identified as the interceptor does (a bearer token's
/// hash, or a verified client certificate's CN); `None` when it has none, and the interceptor
/// then refuses it.
fn credential_key<B>(request: &http::Request<B>) -> Option<String> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs);
    Credential::identify(
        request
            .headers()
            .get("authorization")
            .map(http::HeaderValue::as_bytes),
        certs.as_deref().map(Vec::as_slice),
    )
    .ok()
    .map(|c| c.key())
}

/// Health checks and reflection are never refused: a busy server must not be restarted by its
/// liveness probe.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

/// The client's `grpc-timeout` header (gRPC over HTTP/2: an integer and a unit H M S m u n).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Whether a status is tonic's refusal of an oversized message (it uses OUT_OF_RANGE; gRPC
/// specifies RESOURCE_EXHAUSTED for a message above the configured limit).
pub fn message_too_large(status: &Status) -> bool {
    status.code() == tonic::Code::OutOfRange && status.message().contains("length too large")
}

/// Maps tonic's oversized-message status to RESOURCE_EXHAUSTED and counts it.
pub fn map_too_large(status: Status) -> Status {
    if message_too_large(&status) {
        count(LIMIT_MESSAGE_BYTES);
        Status::resource_exhausted(format!("message too large: {}", status.message()))
    } else {
        map_malformed(status)
    }
}

/// A message prost could not decode (invalid UTF-8 in a string field, a truncated field) is the
/// client's fault: INVALID_ARGUMENT, not tonic's INTERNAL.
fn map_malformed(status: Status) -> Status {
    if status.code() == tonic::Code::Internal
        && status
            .message()
            .starts_with("failed to decode Protobuf message")
    {
        Status::invalid_argument(format!("malformed request: {}", status.message()))
    } else {
        status
    }
}

/// The same for a trailers-only HTTP response (a unary call refused before its handler ran).
fn rewrite_too_large(response: http::Response<Body>) -> http::Response<Body> {
    let headers = response.headers();
    if headers.get("grpc-status").and_then(|v| v.to_str().ok()) != Some("11") {
        return response;
    }
    match Status::from_header_map(headers) {
        Some(status) if message_too_large(&status) => map_too_large(status).into_http(),
        _ => response,
    }
}

/// A unary request that prost could not decode (invalid UTF-8 in a string field, a truncated
/// field) is the client's fault, but tonic answers it INTERNAL before any handler runs: mapped
/// to INVALID_ARGUMENT here, keeping prost's message, which names the message and the field.
fn rewrite_malformed(response: http::Response<Body>) -> http::Response<Body> {
    let headers = response.headers();
    if headers.get("grpc-status").and_then(|v| v.to_str().ok()) != Some("13") {
        return response;
    }
    match Status::from_header_map(headers) {
        Some(status) if status.code() == tonic::Code::Internal => {
            let mapped = map_malformed(status);
            if mapped.code() == tonic::Code::InvalidArgument {
                mapped.into_http()
            } else {
                response
            }
        }
        _ => response,
    }
}

/// The layer added to the server builder.
#[derive(Clone)]
pub struct LimitLayer {
    permits: Arc<Semaphore>,
    slots: Arc<CredentialSlots>,
    deadline: Duration,
}

impl LimitLayer {
    /// Without [`LimitLayer::per_credential`], a credential may take every slot.
    pub fn new(concurrent_requests_max: usize, deadline: Duration) -> LimitLayer {
        LimitLayer {
            permits: Arc::new(Semaphore::new(concurrent_requests_max)),
            slots: Arc::new(CredentialSlots::new(
                concurrent_requests_max,
                concurrent_requests_max,
            )),
            deadline,
        }
    }

    /// Limits each credential to `streams_max` open streams and `calls_max` unary calls in
    /// flight.
    pub fn per_credential(self, streams_max: usize, calls_max: usize) -> LimitLayer {
        LimitLayer {
            slots: Arc::new(CredentialSlots::new(streams_max, calls_max)),
            ..self
        }
    }
}

impl<S> tower::Layer<S> for LimitLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            permits: self.permits.clone(),
            slots: self.slots.clone(),
            deadline: self.deadline,
        }
    }
}

#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    permits: Arc<Semaphore>,
    slots: Arc<CredentialSlots>,
    deadline: Duration,
}

/// A response body that keeps its call's concurrency permit and its credential's slot until the
/// body ends, so an open stream counts against the limits for as long as it is open.
struct Permitted {
    inner: Body,
    _permit: OwnedSemaphorePermit,
    _slot: Option<Slot>,
}

impl http_body::Body for Permitted {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Limited<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone is not ready; call the instance that was polled ready and keep the clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path();
        if exempt(path) {
            return Box::pin(inner.call(request));
        }
        // The credential's own limit is checked first, so a credential over it is told so
        // (and counted) rather than seeing the server-wide refusal its calls cause.
        let slot = match credential_key(&request) {
            Some(key) => match self.slots.take(&key, STREAMING_METHODS.contains(&path)) {
                Ok(slot) => Some(slot),
                Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
            },
            None => None,
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            count(LIMIT_CONCURRENCY);
            let status = Status::resource_exhausted(
                "too many calls in progress on this server; retry with backoff",
            );
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let server_deadline = if REGISTRY_LOAD_METHODS.contains(&path) {
            self.deadline.max(REGISTRY_LOAD_DEADLINE)
        } else {
            self.deadline
        };
        let deadline = grpc_timeout(request.headers())
            .map_or(server_deadline, |client| client.min(server_deadline));
        Box::pin(async move {
            match tokio::time::timeout(deadline, inner.call(request)).await {
                Err(_) => {
                    count(LIMIT_DEADLINE);
                    Ok(Status::deadline_exceeded(format!(
                        "the call did not finish within {} ms",
                        deadline.as_millis()
                    ))
                    .into_http())
                }
                Ok(Ok(response)) => {
                    Ok(rewrite_malformed(rewrite_too_large(response)).map(|body| {
                        Body::new(Permitted {
                            inner: body,
                            _permit: permit,
                            _slot: slot,
                        })
                    }))
                }
                Ok(Err(e)) => Err(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;
    use tower::{Layer, Service};

    // A bucket admits its burst at once, refuses the next call, and refills at the configured rate.
    #[test]
    fn token_bucket_burst_and_refill() {
        let limiter = RateLimiter::new(60, 2);
        let t0 = Instant::now();
        assert!(limiter.admit("a", t0));
        assert!(limiter.admit("a", t0));
        assert!(!limiter.admit("a", t0), "the burst is spent");
        assert!(limiter.admit("b", t0), "buckets are per credential");
        assert!(
            !limiter.admit("a", t0 + Duration::from_millis(999)),
            "60/min refills one token a second"
        );
        assert!(limiter.admit("a", t0 + Duration::from_millis(1000)));
        assert!(!limiter.admit("a", t0 + Duration::from_millis(1000)));
        assert!(limiter.admit("a", t0 + Duration::from_secs(3600)));
        assert!(limiter.admit("a", t0 + Duration::from_secs(3600)));
        assert!(
            !limiter.admit("a", t0 + Duration::from_secs(3600)),
            "refill stops at the burst"
        );
        let off = RateLimiter::new(0, 1);
        assert!((0..1000).all(|_| off.admit("a", t0)), "0 turns it off");
    }

    // grpc-timeout headers parse in every unit, and nonsense is ignored.
    #[test]
    fn grpc_timeout_units() {
        let parse = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse("x"), None);
        assert_eq!(parse("S"), None);
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    fn status_of(response: &http::Response<Body>) -> tonic::Code {
        Status::from_header_map(response.headers()).map_or(tonic::Code::Ok, |s| s.code())
    }

    /// A service whose calls never finish, like a handler stuck behind a busy writer; `/Fast`
    /// answers at once with an empty body, `/Open` and `/IngestStream` with a body that stays
    /// open (a stream).
    #[derive(Clone)]
    struct Stuck;

    /// A response body that never ends.
    struct Open;

    type Bytes = <Body as http_body::Body>::Data;

    impl http_body::Body for Open {
        type Data = Bytes;
        type Error = Status;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
            Poll::Pending
        }
    }

    impl Service<http::Request<()>> for Stuck {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, r: http::Request<()>) -> Self::Future {
            let path = r.uri().path().to_owned();
            Box::pin(async move {
                if path.ends_with("/Fast") {
                    Ok(http::Response::new(Body::empty()))
                } else if path.ends_with("/Open") || path.ends_with("/IngestStream") {
                    Ok(http::Response::new(Body::new(Open)))
                } else if path.ends_with("/TooLarge") {
                    Ok(Status::out_of_range(
                        "Error, decoded message length too large: found 9 bytes, the limit is: 8 bytes",
                    )
                    .into_http())
                } else {
                    std::future::pending().await
                }
            })
        }
    }

    // A call that outlives the deadline gets DEADLINE_EXCEEDED; a client's shorter grpc-timeout wins.
    #[tokio::test(start_paused = true)]
    async fn deadline_exceeded() {
        let mut svc = LimitLayer::new(4, Duration::from_secs(30)).layer(Stuck);
        let before = LIMITED.with_label_values(&[LIMIT_DEADLINE]).get();
        let response = svc.call(request("/suanli.v1.X/Slow")).await.unwrap();
        assert_eq!(status_of(&response), tonic::Code::DeadlineExceeded);
        let mut r = request("/suanli.v1.X/Slow");
        r.headers_mut()
            .insert("grpc-timeout", "5m".parse().unwrap());
        let response = svc.call(r).await.unwrap();
        assert_eq!(status_of(&response), tonic::Code::DeadlineExceeded);
        let message = Status::from_header_map(response.headers()).unwrap();
        assert!(message.message().contains("within 5 ms"), "{message:?}");
        assert!(LIMITED.with_label_values(&[LIMIT_DEADLINE]).get() >= before + 2);
    }

    // A registry load gets 10 minutes, not the ordinary 30 s: a large city's registry takes
    // longer than an ordinary call on a busy server (the client's shorter grpc-timeout still wins).
    #[tokio::test(start_paused = true)]
    async fn registry_loads_get_their_own_deadline() {
        let mut svc = LimitLayer::new(4, Duration::from_secs(30)).layer(Stuck);
        let started = tokio::time::Instant::now();
        let response = svc
            .call(request("/suanli.v1.RegistryService/LoadRegistryStream"))
            .await
            .unwrap();
        assert_eq!(status_of(&response), tonic::Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), REGISTRY_LOAD_DEADLINE);
        let message = Status::from_header_map(response.headers()).unwrap();
        assert!(
            message.message().contains("within 600000 ms"),
            "{message:?}"
        );
        let mut r = request("/suanli.v1.RegistryService/PatchRegistry");
        r.headers_mut()
            .insert("grpc-timeout", "2S".parse().unwrap());
        let started = tokio::time::Instant::now();
        let response = svc.call(r).await.unwrap();
        assert_eq!(status_of(&response), tonic::Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    // Calls beyond the concurrency limit get RESOURCE_EXHAUSTED at once while an open stream holds
    // the only slot; health checks are exempt; the slot returns when the stream's body is dropped.
    #[tokio::test(start_paused = true)]
    async fn concurrency_limit() {
        let mut svc = LimitLayer::new(1, Duration::from_secs(3600)).layer(Stuck);
        let held = svc.call(request("/suanli.v1.X/Open")).await.unwrap();
        assert_eq!(status_of(&held), tonic::Code::Ok);
        let before = LIMITED.with_label_values(&[LIMIT_CONCURRENCY]).get();
        let refused = svc.call(request("/suanli.v1.X/Fast")).await.unwrap();
        assert_eq!(status_of(&refused), tonic::Code::ResourceExhausted);
        assert!(LIMITED.with_label_values(&[LIMIT_CONCURRENCY]).get() > before);
        let health = svc
            .call(request("/grpc.health.v1.Health/Fast"))
            .await
            .unwrap();
        assert_eq!(status_of(&health), tonic::Code::Ok, "health is exempt");
        drop(held);
        let again = svc.call(request("/suanli.v1.X/Fast")).await.unwrap();
        assert_eq!(status_of(&again), tonic::Code::Ok, "the permit came back");
    }

    // tonic's OUT_OF_RANGE for an oversized message becomes RESOURCE_EXHAUSTED and is counted.
    #[tokio::test]
    async fn oversized_message_status() {
        let mut svc = LimitLayer::new(4, Duration::from_secs(30)).layer(Stuck);
        let before = LIMITED.with_label_values(&[LIMIT_MESSAGE_BYTES]).get();
        let response = svc.call(request("/suanli.v1.X/TooLarge")).await.unwrap();
        assert_eq!(status_of(&response), tonic::Code::ResourceExhausted);
        assert!(LIMITED.with_label_values(&[LIMIT_MESSAGE_BYTES]).get() > before);
    }

    fn with_token(path: &str, token: &str) -> http::Request<()> {
        http::Request::builder()
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
    }

    fn refusal(response: &http::Response<Body>) -> Status {
        Status::from_header_map(response.headers()).expect("a refusal status")
    }

    // One credential gets at most its streams and its calls; the next of each is refused with
    // RESOURCE_EXHAUSTED naming the setting and its value and counted, while another credential
    // (a token or a call without one, left to the interceptor) is still served; an ended stream
    // returns its slot.
    #[tokio::test(start_paused = true)]
    async fn per_credential_streams_and_calls() {
        const STREAM: &str = "/suanli.v1.MeteringService/IngestStream";
        let mut svc = LimitLayer::new(100, Duration::from_secs(3600))
            .per_credential(2, 3)
            .layer(Stuck);
        let mut streams = Vec::new();
        for _ in 0..2 {
            let open = svc.call(with_token(STREAM, "flood")).await.unwrap();
            assert_eq!(status_of(&open), tonic::Code::Ok);
            streams.push(open);
        }
        let before = LIMITED.with_label_values(&[LIMIT_CREDENTIAL_STREAMS]).get();
        let refused = refusal(&svc.call(with_token(STREAM, "flood")).await.unwrap());
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{refused:?}"
        );
        assert!(
            refused
                .message()
                .contains("limits.credential_streams_max = 2"),
            "{refused:?}"
        );
        assert!(LIMITED.with_label_values(&[LIMIT_CREDENTIAL_STREAMS]).get() > before);

        // Unary calls have slots of their own: the stream flood leaves them free. The calls
        // below never finish; their futures hold the slots while they exist.
        let stuck: Vec<_> = (0..3)
            .map(|_| svc.call(with_token("/suanli.v1.X/Slow", "flood")))
            .collect();
        let before = LIMITED.with_label_values(&[LIMIT_CREDENTIAL_CALLS]).get();
        let refused = refusal(
            &svc.call(with_token("/suanli.v1.X/Fast", "flood"))
                .await
                .unwrap(),
        );
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{refused:?}"
        );
        assert!(
            refused
                .message()
                .contains("limits.credential_calls_max = 3"),
            "{refused:?}"
        );
        assert!(LIMITED.with_label_values(&[LIMIT_CREDENTIAL_CALLS]).get() > before);

        let other = svc
            .call(with_token("/suanli.v1.X/Fast", "other"))
            .await
            .unwrap();
        assert_eq!(
            status_of(&other),
            tonic::Code::Ok,
            "another credential is served"
        );
        let other = svc.call(with_token(STREAM, "other")).await.unwrap();
        assert_eq!(status_of(&other), tonic::Code::Ok);
        let anonymous = svc.call(request("/suanli.v1.X/Fast")).await.unwrap();
        assert_eq!(status_of(&anonymous), tonic::Code::Ok);

        drop(stuck);
        let again = svc
            .call(with_token("/suanli.v1.X/Fast", "flood"))
            .await
            .unwrap();
        assert_eq!(status_of(&again), tonic::Code::Ok, "call slots came back");
        streams.pop();
        let again = svc.call(with_token(STREAM, "flood")).await.unwrap();
        assert_eq!(
            status_of(&again),
            tonic::Code::Ok,
            "a stream slot came back"
        );
    }

    // Slots are per credential key, return on drop, and leave no entry behind once a
    // credential has nothing open.
    #[test]
    fn credential_slots_return_and_forget() {
        let none = CredentialSlots::new(0, 0);
        assert!(none.take("a", true).is_err() && none.take("a", false).is_err());
        assert!(
            none.open.lock().unwrap().is_empty(),
            "a refusal keeps nothing"
        );
        let slots = CredentialSlots::new(1, 1);
        let a_stream = slots.take("a", true).expect("first stream");
        assert!(slots.take("a", true).is_err(), "one stream each");
        let a_call = slots.take("a", false).expect("calls are counted apart");
        assert!(slots.take("a", false).is_err());
        let b = slots.take("b", true).expect("per credential");
        drop(a_stream);
        assert!(slots.take("a", true).is_ok(), "returned on drop");
        drop((a_call, b));
        assert!(
            slots.open.lock().unwrap().is_empty(),
            "nothing open, nothing kept"
        );
    }

    // The list of streaming methods is exactly the proto files' client- or server-streaming
    // methods, so a new stream cannot slip past limits.credential_streams_max.
    #[test]
    fn streaming_methods_match_the_protos() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(suanli_proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut streaming = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    if method.client_streaming() || method.server_streaming() {
                        streaming.push(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        streaming.sort();
        let mut listed: Vec<String> = STREAMING_METHODS.iter().map(|m| (*m).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, streaming);
    }
}
