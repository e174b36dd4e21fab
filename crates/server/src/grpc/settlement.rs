//! The settlement service: create, approve, post, cancel, list, re-derive and explain runs.

use std::sync::Arc;

use suanli_app::explain::{Explanation, LineExplanation, RecordsPage};
use suanli_app::metrics::METRICS;
use suanli_app::settlement::{self as settle, RunView};
use suanli_proto::v1 as pb;
use suanli_store::Principal;
use suanli_store::ledger::{RunLineRow, RunRow, RunTotals};
use tonic::{Request, Response, Status};

use super::{FINANCE, READERS, Shared, caller, on_store, refresh_programme_gauges, require};

fn status_code(status: &str) -> i32 {
    (match status {
        "open" => pb::RunStatus::Open,
        "approved" => pb::RunStatus::Approved,
        "posted" => pb::RunStatus::Posted,
        "cancelled" => pb::RunStatus::Cancelled,
        _ => pb::RunStatus::Unspecified,
    }) as i32
}

pub fn run_proto(run: &RunRow, lines: Option<&[RunLineRow]>) -> pb::Run {
    let totals = lines.map_or_else(RunTotals::default, |ls| RunTotals {
        lines: ls.len() as i64,
        total_fen: ls.iter().map(|l| l.amount_fen).sum(),
        adjustment_lines: ls
            .iter()
            .filter(|l| l.original_period != run.period)
            .count() as i64,
    });
    run_proto_with(run, totals)
}

fn run_proto_with(run: &RunRow, totals: RunTotals) -> pb::Run {
    pb::Run {
        run_id: run.run_id as u64,
        programme: run.programme.clone(),
        period: run.period.clone(),
        status: status_code(&run.status),
        registry_version: run.registry_version as u64,
        content_hash: run.content_hash.clone(),
        created_by: run.created_by.clone(),
        created_at: run.created_at.clone(),
        approved_by: run.approved_by.clone().unwrap_or_default(),
        approved_at: run.approved_at.clone().unwrap_or_default(),
        posted_at: run.posted_at.clone().unwrap_or_default(),
        cancelled_at: run.cancelled_at.clone().unwrap_or_default(),
        cancelled_by: run.cancelled_by.clone().unwrap_or_default(),
        journal_id: run.journal_id.unwrap_or(0) as u64,
        total_fen: totals.total_fen,
        lines: u32::try_from(totals.lines).unwrap_or(u32::MAX),
        adjustment_lines: u32::try_from(totals.adjustment_lines).unwrap_or(u32::MAX),
    }
}

fn line_proto(l: &RunLineRow) -> pb::RunLine {
    pb::RunLine {
        original_period: l.original_period.clone(),
        beneficiary: l.key.beneficiary.clone(),
        provider: l.key.provider.clone(),
        category: l.key.category.clone(),
        chip_origin: l.key.chip_origin.clone(),
        registered_model: l.key.registered_model.clone(),
        base_fen: l.base_fen,
        ratio: l.ratio.clone(),
        entitlement_fen: l.entitlement_fen,
        posted_before_fen: l.posted_before_fen,
        amount_fen: l.amount_fen,
        cut_by: l.cut_by.clone(),
        payee: l.payee.clone(),
        reason: String::new(),
    }
}

/// Counts a run action that changed the run; a posted run also counts its lines by what cut them
/// and refreshes its programme's posted total.
fn observe(action: &str, view: &RunView) {
    if view.unchanged {
        return;
    }
    METRICS.settlement_runs.with_label_values(&[action]).inc();
    if action == "posted" {
        for l in &view.lines {
            let cut_by = if l.cut_by.is_empty() {
                "none"
            } else {
                l.cut_by.as_str()
            };
            METRICS
                .settlement_lines
                .with_label_values(&[view.run.programme.as_str(), cut_by])
                .inc();
        }
    }
}

/// Lines of a run read from the store at a time for ListRunLines: the default and the most.
const PAGE_LINES_DEFAULT: usize = 1_000;
const PAGE_LINES_MAX: usize = 10_000;

/// A run's response: its header and totals always, its lines only when the whole response fits
/// in `bytes_max` (else none, with `lines_omitted`; ListRunLines sends them). `reasons`,
/// when given, fill the lines' `reason` in order.
fn run_response(
    view: RunView,
    reasons: Option<Vec<String>>,
    bytes_max: usize,
) -> Response<pb::RunResponse> {
    use prost::Message;
    let mut response = pb::RunResponse {
        run: Some(run_proto(&view.run, Some(&view.lines))),
        lines: Vec::new(),
        unchanged: view.unchanged,
        lines_omitted: !view.lines.is_empty(),
    };
    // Counted as if omitted (the flag's two bytes), so the lines' bytes are an upper bound.
    let mut bytes = response.encoded_len();
    let mut reasons = reasons.map(Vec::into_iter);
    let mut lines = Vec::new();
    for l in &view.lines {
        let mut line = line_proto(l);
        if let Some(reason) = reasons.as_mut().and_then(Iterator::next) {
            line.reason = reason;
        }
        bytes += prost::encoding::message::encoded_len(2, &line);
        if bytes > bytes_max {
            return Response::new(response);
        }
        lines.push(line);
    }
    response.lines = lines;
    response.lines_omitted = false;
    Response::new(response)
}

/// Whether the lines of `view` may fit in one RunResponse: a lower bound of their size without
/// reasons, so a run far too large for one message costs no reasons.
fn lines_may_fit(view: &RunView, bytes_max: usize) -> bool {
    let mut bytes = 0;
    for l in &view.lines {
        bytes += prost::encoding::message::encoded_len(2, &line_proto(l));
        if bytes > bytes_max {
            return false;
        }
    }
    true
}

/// Splits `lines`, the first at position `first_line`, into messages of at most `bytes_max`
/// bytes each (a single line larger than that still goes, alone).
fn line_messages(
    first_line: u64,
    lines: Vec<pb::RunLine>,
    bytes_max: usize,
) -> Vec<pb::RunLinesPage> {
    use prost::Message;
    let mut out = Vec::new();
    let mut page = pb::RunLinesPage {
        first_line,
        lines: Vec::new(),
    };
    let mut bytes = page.encoded_len();
    for line in lines {
        let size = prost::encoding::message::encoded_len(2, &line);
        if !page.lines.is_empty() && bytes + size > bytes_max {
            let next = page.first_line + page.lines.len() as u64;
            out.push(std::mem::replace(
                &mut page,
                pb::RunLinesPage {
                    first_line: next,
                    lines: Vec::new(),
                },
            ));
            bytes = page.encoded_len();
        }
        bytes += size;
        page.lines.push(line);
    }
    if !page.lines.is_empty() {
        out.push(page);
    }
    out
}

fn run_id(id: u64) -> Result<i64, Status> {
    i64::try_from(id)
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| Status::invalid_argument("run_id must be a positive run number"))
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn explained_line(l: LineExplanation) -> pb::LineExplanation {
    let mut line = line_proto(&l.line);
    line.reason = l.reason;
    let r = l.ratio;
    let (stacked_with, stacked_with_name, stacked_with_ratio, primary) = r
        .stacked_with
        .map_or_else(Default::default, |(id, name, ratio, primary)| {
            (id, name, suanli_domain::money::format_ratio(ratio), primary)
        });
    pb::LineExplanation {
        line: Some(line),
        seq: u32::try_from(l.seq).unwrap_or(u32::MAX),
        adjustment: l.adjustment,
        ratio: Some(pb::RatioExplanation {
            class: r.class,
            ratio: suanli_domain::money::format_ratio(r.ratio),
            ratio_percent: suanli_app::reasons::percent(r.ratio),
            own_ratio: r
                .own
                .map(suanli_domain::money::format_ratio)
                .unwrap_or_default(),
            stacked_with,
            stacked_with_name,
            stacked_with_ratio,
            primary,
            ceiling: r
                .ceiling
                .map(suanli_domain::money::format_ratio)
                .unwrap_or_default(),
            chosen_because: match r.chosen_because {
                suanli_domain::settlement::ChosenBecause::Only => "only",
                suanli_domain::settlement::ChosenBecause::HigherRatio => "higher_ratio",
                suanli_domain::settlement::ChosenBecause::StackedOnTie => "stacked_on_tie",
                suanli_domain::settlement::ChosenBecause::FunderOnTie => "funder_on_tie",
                suanli_domain::settlement::ChosenBecause::IdOnTie => "id_on_tie",
            }
            .to_owned(),
            runner_up: r
                .runner_up
                .as_ref()
                .map(|(p, _)| p.join(","))
                .unwrap_or_default(),
            runner_up_ratio: r
                .runner_up
                .map(|(_, t)| suanli_domain::money::format_ratio(t))
                .unwrap_or_default(),
            text: r.text,
        }),
        demand_fen: l.demand.0,
        cuts: l
            .cuts
            .into_iter()
            .map(|c| pb::Cut {
                stage: c.stage.as_str().to_owned(),
                subject: c.subject,
                subject_name: c.subject_name,
                limit_fen: c.limit.0,
                prior_fen: c.prior.0,
                prior_opening_fen: c.prior_opening.0,
                left_fen: c.left.0,
                wanted_fen: c.wanted.0,
                lines: u32::try_from(c.lines).unwrap_or(u32::MAX),
                before_fen: c.before.0,
                after_fen: c.after.0,
                text: c.text,
            })
            .collect(),
        base_now_fen: l.base_now.0,
        records_now: l.records_now,
        records: l
            .records
            .into_iter()
            .map(|r| pb::LineRecord {
                record_id: r.record_id,
                sku: r.sku,
                start: Some(timestamp(r.start)),
                end: Some(timestamp(r.end)),
                quantity: r.quantity,
                amount_fen: r.amount.0,
                voided_at: r.voided_at.unwrap_or_default(),
                void_reason: r.void_reason.unwrap_or_default(),
                counted: r.counted,
            })
            .collect(),
        next_records_page_token: l.next_records_page_token.unwrap_or_default(),
        text: l.text,
    }
}

fn explanation_proto(e: Explanation) -> pb::ExplainRunResponse {
    pb::ExplainRunResponse {
        run: Some(run_proto(&e.run, None)),
        programme_name: e.programme_name,
        beneficiary: e.beneficiary,
        beneficiary_name: e.beneficiary_name,
        lines: e.lines.into_iter().map(explained_line).collect(),
    }
}

pub struct SettlementService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl pb::settlement_service_server::SettlementService for SettlementService {
    async fn create_run(
        &self,
        request: Request<pb::CreateRunRequest>,
    ) -> Result<Response<pb::RunResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, FINANCE, "creating a settlement run")?;
        let r = request.into_inner();
        super::bounded("programme", &r.programme, super::ID_BYTES_MAX)?;
        super::bounded("period", &r.period, super::ID_BYTES_MAX)?;
        if r.programme.trim().is_empty() {
            return Err(Status::invalid_argument("programme is empty"));
        }
        let bytes_max = super::reply_bytes_max(&self.shared);
        on_store(&self.shared, move |s| {
            settle::create_run(s, r.programme.trim(), r.period.trim(), &c.actor)
        })
        .await
        .inspect(|v| observe("created", v))
        .map(|v| run_response(v, None, bytes_max))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::RunResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "reading a settlement run")?;
        let id = run_id(request.into_inner().run_id)?;
        let bytes_max = super::reply_bytes_max(&self.shared);
        let (view, reasons) = on_store(&self.shared, move |s| {
            let view = settle::show_run(s, id)?;
            // A run too large for one message sends no lines, so their reasons are not worked out.
            let reasons = if lines_may_fit(&view, bytes_max) {
                Some(suanli_app::reasons::reasons_of_run(
                    s,
                    &view.run,
                    &view.lines,
                )?)
            } else {
                None
            };
            Ok((view, reasons))
        })
        .await?;
        Ok(run_response(view, reasons, bytes_max))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "listing settlement runs")?;
        let programme = request.into_inner().programme;
        super::bounded("programme", &programme, super::ID_BYTES_MAX)?;
        let runs = on_store(&self.shared, move |s| {
            settle::runs_with_line_totals(s, Some(programme.as_str()).filter(|p| !p.is_empty()))
        })
        .await?
        .iter()
        .map(|(run, totals)| run_proto_with(run, *totals))
        .collect();
        Ok(Response::new(pb::ListRunsResponse { runs }))
    }

    async fn approve_run(
        &self,
        request: Request<pb::RunActionRequest>,
    ) -> Result<Response<pb::RunResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, FINANCE, "approving a settlement run")?;
        let id = run_id(request.into_inner().run_id)?;
        let bytes_max = super::reply_bytes_max(&self.shared);
        on_store(&self.shared, move |s| settle::approve_run(s, id, &c.actor))
            .await
            .inspect(|v| observe("approved", v))
            .map(|v| run_response(v, None, bytes_max))
    }

    async fn post_run(
        &self,
        request: Request<pb::RunActionRequest>,
    ) -> Result<Response<pb::RunResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, FINANCE, "posting a settlement run")?;
        let id = run_id(request.into_inner().run_id)?;
        let view = on_store(&self.shared, move |s| settle::post_run(s, id, &c.actor)).await?;
        observe("posted", &view);
        if !view.unchanged {
            refresh_programme_gauges(&self.shared).await;
        }
        Ok(run_response(
            view,
            None,
            super::reply_bytes_max(&self.shared),
        ))
    }

    async fn cancel_run(
        &self,
        request: Request<pb::RunActionRequest>,
    ) -> Result<Response<pb::RunResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, FINANCE, "cancelling a settlement run")?;
        let id = run_id(request.into_inner().run_id)?;
        let bytes_max = super::reply_bytes_max(&self.shared);
        on_store(&self.shared, move |s| settle::cancel_run(s, id, &c.actor))
            .await
            .inspect(|v| observe("cancelled", v))
            .map(|v| run_response(v, None, bytes_max))
    }

    async fn rederive_run(
        &self,
        request: Request<pb::RunActionRequest>,
    ) -> Result<Response<pb::RederiveResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "re-deriving a settlement run")?;
        let id = run_id(request.into_inner().run_id)?;
        let (run, difference) =
            on_store(&self.shared, move |s| settle::rederive_run(s, id)).await?;
        Ok(Response::new(pb::RederiveResponse {
            run: Some(run_proto(&run, None)),
            matches: difference.is_none(),
            difference: difference.unwrap_or_default(),
        }))
    }

    async fn explain_run(
        &self,
        request: Request<pb::ExplainRunRequest>,
    ) -> Result<Response<pb::ExplainRunResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        let r = request.into_inner();
        let id = run_id(r.run_id)?;
        super::bounded("beneficiary", &r.beneficiary, super::ID_BYTES_MAX)?;
        super::bounded("provider", &r.provider, super::ID_BYTES_MAX)?;
        // A token is two ids and a period, hex-encoded.
        super::bounded(
            "records_page_token",
            &r.records_page_token,
            8 * super::ID_BYTES_MAX,
        )?;
        let beneficiary = r.beneficiary.trim().to_owned();
        if beneficiary.is_empty() {
            return Err(Status::invalid_argument("beneficiary is empty"));
        }
        match &c.principal {
            Principal::Beneficiary(own) if *own == beneficiary => {}
            Principal::Beneficiary(own) => {
                return Err(Status::permission_denied(format!(
                    "beneficiary token of {own:?} cannot read {beneficiary:?}'s lines"
                )));
            }
            _ => require(&c, READERS, "explaining a settlement run")?,
        }
        let provider = Some(r.provider.trim().to_owned()).filter(|p| !p.is_empty());
        let page = RecordsPage {
            size: r.records_page_size as usize,
            token: Some(r.records_page_token).filter(|t| !t.trim().is_empty()),
            ..RecordsPage::default()
        };
        // Beside the writer, on a connection of its own: an explanation recomputes the run's
        // programme-year, which must hold up neither ingest nor balance look-ups.
        let explanation = self
            .shared
            .balances
            .read_alone(move |s| settle::explain(s, id, &beneficiary, provider.as_deref(), &page))
            .await
            .map_err(super::status_of)?;
        Ok(Response::new(explanation_proto(explanation)))
    }

    type ListRunLinesStream = LinePageStream;

    async fn list_run_lines(
        &self,
        request: Request<pb::ListRunLinesRequest>,
    ) -> Result<Response<LinePageStream>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "reading a settlement run's lines")?;
        let r = request.into_inner();
        let id = run_id(r.run_id)?;
        let page_lines = match r.page_lines as usize {
            0 => PAGE_LINES_DEFAULT,
            n if n > PAGE_LINES_MAX => {
                return Err(Status::invalid_argument(format!(
                    "page_lines is {n}; at most {PAGE_LINES_MAX}"
                )));
            }
            n => n,
        };
        let from = i64::try_from(r.from_line)
            .map_err(|_| Status::invalid_argument("from_line is beyond any run's lines"))?;
        let bytes_max = super::reply_bytes_max(&self.shared) - super::STREAM_MESSAGE_SLACK;
        let stream = super::page_stream(&self.shared, "a run's lines", move |s, send| {
            let mut pages = settle::LinePages::open(s, id, from)?;
            loop {
                let first_line = pages.position() as u64;
                let page = pages.next_page(s, page_lines)?;
                if page.is_empty() {
                    return Ok(());
                }
                let lines = page
                    .into_iter()
                    .map(|(l, reason)| pb::RunLine {
                        reason,
                        ..line_proto(&l)
                    })
                    .collect();
                for message in line_messages(first_line, lines, bytes_max) {
                    if !send(message) {
                        return Ok(());
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }
}

type LinePageStream = super::PageStream<pb::RunLinesPage>;
