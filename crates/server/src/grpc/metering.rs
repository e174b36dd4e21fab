//! The metering service: ingest (unary and streamed), void, usage statistics. Proto ↔ domain
//! mapping of usage records lives here; record validation is the domain's `validate`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use futures::stream::FuturesOrdered;
use futures::{Stream, StreamExt};
use suanli_app::metrics::METRICS;
use suanli_domain::money::Fen;
use suanli_domain::usage::{Period, RejectCode, Rejection, from_typed, validate};
use suanli_proto::v1 as pb;
use suanli_store::ingest_stats::Rejected;
use suanli_store::{Candidate, Decision, Principal, VoidResult};
use tonic::{Request, Response, Status, Streaming};

use super::{CurrentRegistry, Shared, timestamp_of_text, writer_status};

/// The default and the CLI's ceiling of records in one batch (unary or one stream message); the
/// server's limit is `limits.batch_records_max`.
pub const BATCH_RECORDS_MAX: usize = 10_000;
/// Batches of one stream being validated or committed at once; acknowledgements keep order.
pub const STREAM_BATCHES_IN_FLIGHT_MAX: usize = 8;
/// Most characters of a void reason.
pub const VOID_REASON_CHARS_MAX: usize = 1_000;
/// Most bytes of a batch id: an id the client chooses to match replies, echoed back.
pub const BATCH_ID_BYTES_MAX: usize = 128;
/// Latest accepted time: year 2200, far inside the nanosecond range used at rest.
const TIME_SECONDS_MAX: i64 = 7_258_118_400;

fn reason_of(code: RejectCode) -> pb::RejectReason {
    use pb::RejectReason as R;
    match code {
        RejectCode::MissingField => R::MissingField,
        RejectCode::InvalidField => R::InvalidField,
        RejectCode::UnknownProvider => R::UnknownProvider,
        RejectCode::UnknownBeneficiary => R::UnknownBeneficiary,
        RejectCode::UnknownSku => R::UnknownSku,
        RejectCode::SkuNotOfProvider => R::SkuNotOfProvider,
        RejectCode::EndNotAfterStart => R::EndNotAfterStart,
        RejectCode::NegativeAmount => R::NegativeAmount,
        RejectCode::AmountPrecision => R::AmountPrecision,
        RejectCode::NegativeQuantity => R::NegativeQuantity,
        RejectCode::AboveListPrice => R::AboveListPrice,
        RejectCode::OverCapacity => R::OverCapacity,
        RejectCode::AmountOutOfRange => R::AmountOutOfRange,
        RejectCode::QuantityOutOfRange => R::QuantityOutOfRange,
        // A conflict is an outcome of its own, never a rejection reason on the wire.
        RejectCode::Conflict => R::Unspecified,
    }
}

fn time_of(t: Option<&prost_types::Timestamp>) -> Option<DateTime<FixedOffset>> {
    let t = t?;
    if !(0..=TIME_SECONDS_MAX).contains(&t.seconds) || !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    DateTime::<Utc>::from_timestamp(t.seconds, t.nanos as u32).map(|t| t.fixed_offset())
}

/// Maps one wire record to a candidate: typed parsing, provider isolation, then the domain's
/// `validate` against the current registry version.
fn prepare(
    principal: &Principal,
    current: &CurrentRegistry,
    r: &pb::UsageRecord,
) -> Result<Candidate, (pb::RejectReason, &'static str, String)> {
    // A time that is given but out of range is invalid, not missing.
    let time = |t: Option<&prost_types::Timestamp>, field: &'static str| {
        match t {
        None => Ok(None),
        Some(ts) => time_of(Some(ts)).map(Some).ok_or_else(|| {
            (
                pb::RejectReason::InvalidField,
                field,
                format!(
                    "record {:?}: {field} ({} s, {} ns since 1970) is outside the accepted range 1970-01-01 to 2200-01-01 UTC",
                    r.record_id, ts.seconds, ts.nanos
                ),
            )
        }),
    }
    };
    let record = from_typed(
        &r.provider,
        &r.record_id,
        &r.beneficiary,
        &r.sku,
        time(r.start.as_ref(), "start")?,
        time(r.end.as_ref(), "end")?,
        &r.quantity,
        Fen(r.amount_fen),
    )
    .map_err(rejection)?;
    if let Principal::Provider(own) = principal
        && *own != record.provider
    {
        return Err((
            pb::RejectReason::ProviderMismatch,
            "provider",
            format!(
                "record {:?} names provider {:?} but the token is provider {own:?}'s",
                record.record_id, record.provider
            ),
        ));
    }
    let class = validate(&current.registry, &record).map_err(rejection)?;
    let capacity = current.registry.sku(&record.sku).and_then(|s| s.capacity);
    Ok(Candidate {
        period: Period::of_instant(record.end),
        class,
        capacity,
        registry_version: current.version,
        record,
    })
}

/// A stable code of a reject reason for the ingest statistics: `unknown_sku`, ….
pub fn reason_code(reason: pb::RejectReason) -> String {
    reason
        .as_str_name()
        .trim_start_matches("REJECT_REASON_")
        .to_ascii_lowercase()
}

/// A record refused by validation, as counted in the ingest statistics: under the provider
/// token's id (a provider's console shows its own rejects), else under the record's provider.
fn rejected_of(
    principal: &Principal,
    r: &pb::UsageRecord,
    reason: pb::RejectReason,
    field: &str,
    message: &str,
) -> Rejected {
    let provider = match principal {
        Principal::Provider(own) => own.clone(),
        _ => r.provider.clone(),
    };
    Rejected {
        provider,
        record_id: r.record_id.clone(),
        reason: reason_code(reason),
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

fn rejection(r: Rejection) -> (pb::RejectReason, &'static str, String) {
    (reason_of(r.code), r.field, r.message)
}

fn may_ingest(principal: &Principal) -> Result<(), Status> {
    match principal {
        Principal::Provider(_) | Principal::Admin => Ok(()),
        other => Err(Status::permission_denied(format!(
            "role {} may not post usage records",
            other.role()
        ))),
    }
}

impl Shared {
    /// One batch: every record gets an outcome; only an oversized batch or a storage failure
    /// fails the call.
    pub async fn ingest_batch(
        &self,
        principal: &Principal,
        request: pb::IngestRequest,
    ) -> Result<pb::IngestResponse, Status> {
        let started = Instant::now();
        if request.batch_id.len() > BATCH_ID_BYTES_MAX {
            return Err(Status::invalid_argument(format!(
                "batch_id of {} bytes is longer than {BATCH_ID_BYTES_MAX} bytes",
                request.batch_id.len()
            )));
        }
        let n = request.records.len();
        if n > self.batch_records_max {
            crate::limits::count(crate::metrics::LIMIT_BATCH_RECORDS);
            return Err(Status::invalid_argument(format!(
                "batch {:?} has {n} records; at most {}",
                request.batch_id, self.batch_records_max
            )));
        }
        let mut outcomes = vec![pb::Outcome::Unspecified as i32; n];
        let mut problems = Vec::new();
        let Some(current) = self.current() else {
            for (i, o) in outcomes.iter_mut().enumerate() {
                *o = pb::Outcome::Rejected as i32;
                problems.push(pb::RecordProblem {
                    index: i as u32,
                    outcome: pb::Outcome::Rejected as i32,
                    reason: pb::RejectReason::NoRegistry as i32,
                    field: String::new(),
                    message: format!(
                        "record {:?}: no registry has been loaded; load one with suanli registry import",
                        request.records[i].record_id.chars().take(128).collect::<String>()
                    ),
                });
            }
            METRICS
                .records
                .with_label_values(&["rejected"])
                .inc_by(n as u64);
            return Ok(pb::IngestResponse {
                batch_id: request.batch_id,
                outcomes,
                problems,
                registry_version: 0,
            });
        };
        let mut candidates = Vec::with_capacity(n);
        let mut positions = Vec::with_capacity(n);
        let mut rejected = Vec::new();
        for (i, r) in request.records.iter().enumerate() {
            match prepare(principal, &current, r) {
                Ok(c) => {
                    candidates.push(c);
                    positions.push(i);
                }
                Err((reason, field, message)) => {
                    rejected.push(rejected_of(principal, r, reason, field, &message));
                    outcomes[i] = pb::Outcome::Rejected as i32;
                    problems.push(pb::RecordProblem {
                        index: i as u32,
                        outcome: pb::Outcome::Rejected as i32,
                        reason: reason as i32,
                        field: field.to_owned(),
                        message,
                    });
                }
            }
        }
        let ingested = self
            .writer
            .ingest(candidates, rejected)
            .await
            .map_err(writer_status)?;
        for ((decision, i), candidate) in ingested
            .decisions
            .into_iter()
            .zip(positions)
            .zip(&ingested.candidates)
        {
            let record_id = &candidate.record.record_id;
            let (outcome, problem) = match decision {
                Decision::Accepted => (pb::Outcome::Accepted, None),
                Decision::Duplicate => (
                    pb::Outcome::Duplicate,
                    Some((
                        pb::RejectReason::Unspecified,
                        "record_id",
                        format!("record {record_id:?} is already stored with the same content"),
                    )),
                ),
                Decision::Conflict => (
                    pb::Outcome::Conflict,
                    Some((
                        pb::RejectReason::Unspecified,
                        "record_id",
                        format!(
                            "record {record_id:?} is already stored with different content; the stored record stands"
                        ),
                    )),
                ),
                Decision::OverCapacity(message) => (
                    pb::Outcome::Rejected,
                    Some((pb::RejectReason::OverCapacity, "quantity", message)),
                ),
                Decision::OverProviderMonth(message) => (
                    pb::Outcome::Rejected,
                    Some((pb::RejectReason::AmountOutOfRange, "amount", message)),
                ),
            };
            outcomes[i] = outcome as i32;
            if let Some((reason, field, message)) = problem {
                problems.push(pb::RecordProblem {
                    index: i as u32,
                    outcome: outcome as i32,
                    reason: reason as i32,
                    field: field.to_owned(),
                    message,
                });
            }
        }
        problems.sort_by_key(|p| p.index);
        count_outcomes(&outcomes);
        METRICS
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(pb::IngestResponse {
            batch_id: request.batch_id,
            outcomes,
            problems,
            registry_version: current.version,
        })
    }
}

fn count_outcomes(outcomes: &[i32]) {
    let mut counts = [0u64; 5];
    for &o in outcomes {
        counts[usize::try_from(o).unwrap_or(0).min(4)] += 1;
    }
    for (i, label) in [
        (1, "accepted"),
        (2, "duplicate"),
        (3, "conflict"),
        (4, "rejected"),
    ] {
        if counts[i] > 0 {
            METRICS
                .records
                .with_label_values(&[label])
                .inc_by(counts[i]);
        }
    }
}

type BatchFuture = Pin<Box<dyn Future<Output = Result<pb::IngestResponse, Status>> + Send>>;

/// The acknowledgements of one `IngestStream`. Each batch is authorised again with the same rule
/// as a unary call (the cached principal is re-read after `limits.token_recheck_secs`), so a
/// token revoked or expired after the stream opened stops ingesting within that time. Up to
/// [`STREAM_BATCHES_IN_FLIGHT_MAX`] batches are validated or committed at once and acknowledged
/// in order. The stream ends after its first error (UNAUTHENTICATED for a refused token), and
/// with DEADLINE_EXCEEDED when its client sends nothing for `limits.stream_idle_secs` while no
/// batch of it is in progress, which returns its concurrency and per-credential slots.
struct Acks {
    shared: Arc<Shared>,
    /// The stream's request extensions: the credential each batch is authorised with.
    extensions: tonic::Extensions,
    /// The client's batches; `None` once its side has ended or the stream has failed.
    batches: Option<Streaming<pb::IngestRequest>>,
    in_flight: FuturesOrdered<BatchFuture>,
    idle_for: Duration,
    /// Fires `idle_for` after the last message or acknowledgement; polled only while nothing is
    /// in flight, so a batch waiting on a busy writer never counts as idleness.
    idle: Pin<Box<tokio::time::Sleep>>,
    ended: bool,
}

impl Acks {
    fn batch(&self, batch: pb::IngestRequest) -> BatchFuture {
        let shared = self.shared.clone();
        let extensions = self.extensions.clone();
        Box::pin(async move {
            let principal = shared.auth.principal(&extensions).await?;
            may_ingest(&principal)?;
            shared.ingest_batch(&principal, batch).await
        })
    }

    fn not_idle(&mut self) {
        let until = tokio::time::Instant::now() + self.idle_for;
        self.idle.as_mut().reset(until);
    }

    fn end(&mut self) {
        self.ended = true;
        self.batches = None;
        self.in_flight = FuturesOrdered::new();
    }
}

impl Stream for Acks {
    type Item = Result<pb::IngestResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        while this.in_flight.len() < STREAM_BATCHES_IN_FLIGHT_MAX {
            let Some(batches) = this.batches.as_mut() else {
                break;
            };
            match batches.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(batch))) => {
                    let future = this.batch(batch);
                    this.in_flight.push_back(future);
                    this.not_idle();
                }
                Poll::Ready(Some(Err(status))) => {
                    // Acknowledged after the batches before it, then the stream ends.
                    let status = crate::limits::map_too_large(status);
                    this.in_flight
                        .push_back(Box::pin(std::future::ready(Err(status))));
                    this.batches = None;
                }
                Poll::Ready(None) => this.batches = None,
                Poll::Pending => break,
            }
        }
        match this.in_flight.poll_next_unpin(cx) {
            Poll::Ready(Some(ack)) => {
                if ack.is_err() {
                    this.end();
                } else {
                    this.not_idle();
                }
                return Poll::Ready(Some(ack));
            }
            Poll::Ready(None) if this.batches.is_none() => {
                this.end();
                return Poll::Ready(None);
            }
            Poll::Ready(None) => {}
            Poll::Pending => return Poll::Pending,
        }
        // Nothing in flight: waiting on the client.
        if this.idle.as_mut().poll(cx).is_ready() {
            this.end();
            crate::limits::count(crate::metrics::LIMIT_STREAM_IDLE);
            return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                "stream idle: no message for {} s (limits.stream_idle_secs); the server ended it",
                this.idle_for.as_secs()
            )))));
        }
        Poll::Pending
    }
}

#[derive(Clone)]
pub struct MeteringService {
    pub shared: Arc<Shared>,
}

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::IngestResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::metering_service_server::MeteringService for MeteringService {
    async fn ingest(
        &self,
        request: Request<pb::IngestRequest>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let principal = self.shared.auth.principal(request.extensions()).await?;
        may_ingest(&principal)?;
        self.shared
            .ingest_batch(&principal, request.into_inner())
            .await
            .map(Response::new)
    }

    type IngestStreamStream = AckStream;

    async fn ingest_stream(
        &self,
        request: Request<Streaming<pb::IngestRequest>>,
    ) -> Result<Response<AckStream>, Status> {
        let principal = self.shared.auth.principal(request.extensions()).await?;
        may_ingest(&principal)?;
        let extensions = request.extensions().clone();
        let idle = self.shared.stream_idle;
        Ok(Response::new(Box::pin(Acks {
            shared: self.shared.clone(),
            extensions,
            batches: Some(request.into_inner()),
            in_flight: FuturesOrdered::new(),
            idle_for: idle,
            idle: Box::pin(tokio::time::sleep(idle)),
            ended: false,
        })))
    }

    async fn void_usage(
        &self,
        request: Request<pb::VoidUsageRequest>,
    ) -> Result<Response<pb::VoidUsageResponse>, Status> {
        let identity = self.shared.auth.identity(request.extensions()).await?;
        let who =
            crate::auth::actor_of_request(&identity, request.extensions(), request.metadata());
        let principal = identity.principal;
        let r = request.into_inner();
        match &principal {
            Principal::Admin => {}
            Principal::Provider(own) if *own == r.provider => {}
            Principal::Provider(own) => {
                return Err(Status::permission_denied(format!(
                    "provider {own:?} may not void records of provider {:?}",
                    r.provider
                )));
            }
            other => {
                return Err(Status::permission_denied(format!(
                    "role {} may not void usage records",
                    other.role()
                )));
            }
        }
        super::bounded("provider", &r.provider, super::ID_BYTES_MAX)?;
        super::bounded("record_id", &r.record_id, super::ID_BYTES_MAX)?;
        if r.record_id.trim().is_empty() {
            return Err(Status::invalid_argument("record_id is empty"));
        }
        if r.reason.trim().is_empty() || r.reason.chars().count() > VOID_REASON_CHARS_MAX {
            return Err(Status::invalid_argument(format!(
                "reason must be 1 to {VOID_REASON_CHARS_MAX} characters"
            )));
        }
        let (provider, record_id) = (r.provider.clone(), r.record_id.clone());
        let result = self
            .shared
            .writer
            .call(move |store| {
                suanli_app::usage::void(store, &r.provider, &r.record_id, r.reason.trim(), &who)
            })
            .await
            .map_err(writer_status)?
            .map_err(|e| Status::unavailable(format!("storage failed: {e}")))?;
        match result {
            VoidResult::NotFound => Err(Status::not_found(format!(
                "provider {provider:?} has no record {record_id:?}"
            ))),
            VoidResult::Voided { at } => Ok(Response::new(pb::VoidUsageResponse {
                voided: true,
                voided_at: timestamp_of_text(&at),
            })),
            VoidResult::AlreadyVoided { at } => Ok(Response::new(pb::VoidUsageResponse {
                voided: false,
                voided_at: timestamp_of_text(&at),
            })),
        }
    }

    async fn get_usage_stats(
        &self,
        request: Request<pb::GetUsageStatsRequest>,
    ) -> Result<Response<pb::GetUsageStatsResponse>, Status> {
        let principal = self.shared.auth.principal(request.extensions()).await?;
        let wanted = request.into_inner().provider;
        super::bounded("provider", &wanted, super::ID_BYTES_MAX)?;
        let provider = match &principal {
            Principal::Admin | Principal::Finance | Principal::Auditor => {
                (!wanted.is_empty()).then_some(wanted)
            }
            Principal::Provider(own) if wanted.is_empty() || wanted == *own => Some(own.clone()),
            Principal::Provider(own) => {
                return Err(Status::permission_denied(format!(
                    "provider {own:?} may not read provider {wanted:?}'s totals"
                )));
            }
            Principal::Beneficiary(_) => {
                return Err(Status::permission_denied(
                    "role beneficiary may not read usage totals",
                ));
            }
        };
        let stats = self
            .shared
            .writer
            .call(move |store| suanli_app::usage::stats(store, provider.as_deref()))
            .await
            .map_err(writer_status)?
            .map_err(|e| Status::unavailable(format!("storage failed: {e}")))?;
        Ok(Response::new(pb::GetUsageStatsResponse {
            records: stats.records,
            voided_records: stats.voided_records,
            amount_fen: stats.amount_fen,
        }))
    }
}
