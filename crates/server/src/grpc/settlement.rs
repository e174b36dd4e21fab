//! The settlement service: create, approve, post, cancel, list and re-derive runs.

use std::sync::Arc;

use suanli_app::metrics::METRICS;
use suanli_app::settlement::{self as settle, RunView};
use suanli_proto::v1 as pb;
use suanli_store::ledger::{RunLineRow, RunRow};
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
        total_fen: lines.map_or(0, |ls| ls.iter().map(|l| l.amount_fen).sum()),
        lines: lines.map_or(0, |ls| ls.len() as u32),
        adjustment_lines: lines.map_or(0, |ls| {
            ls.iter()
                .filter(|l| l.original_period != run.period)
                .count() as u32
        }),
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

fn run_response(view: RunView) -> Response<pb::RunResponse> {
    Response::new(pb::RunResponse {
        run: Some(run_proto(&view.run, Some(&view.lines))),
        lines: view.lines.iter().map(line_proto).collect(),
        unchanged: view.unchanged,
    })
}

fn run_id(id: u64) -> Result<i64, Status> {
    i64::try_from(id)
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| Status::invalid_argument("run_id must be a positive run number"))
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
        on_store(&self.shared, move |s| {
            settle::create_run(s, r.programme.trim(), r.period.trim(), &c.actor)
        })
        .await
        .inspect(|v| observe("created", v))
        .map(run_response)
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::RunResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "reading a settlement run")?;
        let id = run_id(request.into_inner().run_id)?;
        let (view, reasons) = on_store(&self.shared, move |s| {
            let view = settle::show_run(s, id)?;
            let reasons = suanli_app::reasons::reasons_of_run(s, &view.run, &view.lines)?;
            Ok((view, reasons))
        })
        .await?;
        let mut response = run_response(view);
        for (line, reason) in response.get_mut().lines.iter_mut().zip(reasons) {
            line.reason = reason;
        }
        Ok(response)
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
            let runs = settle::list_runs(s, Some(programme.as_str()).filter(|p| !p.is_empty()))?;
            runs.into_iter()
                .map(|r| settle::show_run(s, r.run_id).map(|v| run_proto(&v.run, Some(&v.lines))))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        Ok(Response::new(pb::ListRunsResponse { runs }))
    }

    async fn approve_run(
        &self,
        request: Request<pb::RunActionRequest>,
    ) -> Result<Response<pb::RunResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, FINANCE, "approving a settlement run")?;
        let id = run_id(request.into_inner().run_id)?;
        on_store(&self.shared, move |s| settle::approve_run(s, id, &c.actor))
            .await
            .inspect(|v| observe("approved", v))
            .map(run_response)
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
        Ok(run_response(view))
    }

    async fn cancel_run(
        &self,
        request: Request<pb::RunActionRequest>,
    ) -> Result<Response<pb::RunResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, FINANCE, "cancelling a settlement run")?;
        let id = run_id(request.into_inner().run_id)?;
        on_store(&self.shared, move |s| settle::cancel_run(s, id, &c.actor))
            .await
            .inspect(|v| observe("cancelled", v))
            .map(run_response)
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
}
