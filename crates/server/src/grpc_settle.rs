//! gRPC adapters for settlement runs, the ledger and balances: authorisation by role, proto ↔
//! use-case mapping, and the one place `SettleError` becomes a gRPC status.

use std::sync::Arc;

use suanli_domain::money::Fen;
use suanli_proto::v1 as pb;
use suanli_store::Principal;
use suanli_store::ledger::{RunLineRow, RunRow};
use tonic::{Request, Response, Status};

use crate::grpc::Shared;
use suanli_app::audit::Actor;
use suanli_app::metrics::METRICS;
use suanli_app::settlement::{self as settle, RunView, SettleError};

fn status_of(e: SettleError) -> Status {
    match e {
        SettleError::NotFound(m) => Status::not_found(m),
        SettleError::InvalidArgument(m) => Status::invalid_argument(m),
        SettleError::FailedPrecondition(m) => Status::failed_precondition(m),
        SettleError::PermissionDenied(m) => Status::permission_denied(m),
        SettleError::AlreadyExists(m) => Status::already_exists(m),
        SettleError::Store(e) => Status::internal(format!("store: {e}")),
    }
}

/// Who is calling: the principal and the audit actor (role and subject, or role and the first
/// 12 hex digits of the token hash, so two finance users are told apart).
struct Caller {
    principal: Principal,
    actor: Actor,
}

async fn caller<T>(shared: &Shared, request: &Request<T>) -> Result<Caller, Status> {
    let principal = shared.auth.principal(request.extensions()).await?;
    let actor = crate::auth::actor_of_request(&principal, request.extensions(), request.metadata());
    Ok(Caller { principal, actor })
}

fn require(caller: &Caller, allowed: &[&str], what: &str) -> Result<(), Status> {
    if allowed.contains(&caller.principal.role()) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "{what} needs one of the roles {}; this token is {}",
            allowed.join(", "),
            caller.principal.role()
        )))
    }
}

const FINANCE: &[&str] = &["finance"];
const READERS: &[&str] = &["finance", "auditor", "admin"];

async fn on_store<R: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&mut dyn suanli_store::Store) -> Result<R, SettleError> + Send + 'static,
) -> Result<R, Status> {
    shared
        .writer
        .call(f)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?
        .map_err(status_of)
}

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

/// Sets the pool and posted-total gauges of every programme of the current registry; the posted
/// total is read from the store (the sum of its posted runs' lines).
pub async fn refresh_programme_gauges(shared: &Shared) {
    let Some(current) = shared.registry.read().expect("registry lock").clone() else {
        return;
    };
    for p in &current.registry.programmes {
        METRICS
            .programme_pool_fen
            .with_label_values(&[p.id.as_str()])
            .set(p.pool.map_or(0, |f| f.0));
    }
    let ids: Vec<String> = current
        .registry
        .programmes
        .iter()
        .map(|p| p.id.clone())
        .collect();
    let totals = shared
        .writer
        .call(move |s| -> Result<Vec<(String, i64)>, SettleError> {
            let mut totals = Vec::new();
            for id in ids {
                let mut total = 0i64;
                for run in settle::list_runs(s, Some(id.as_str()))? {
                    if run.status == "posted" {
                        let view = settle::show_run(s, run.run_id)?;
                        total = total.saturating_add(view.lines.iter().map(|l| l.amount_fen).sum());
                    }
                }
                totals.push((id, total));
            }
            Ok(totals)
        })
        .await;
    match totals {
        Ok(Ok(totals)) => {
            for (id, total) in totals {
                METRICS
                    .programme_posted_fen
                    .with_label_values(&[id.as_str()])
                    .set(total);
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot compute programme totals for metrics"),
        Err(e) => tracing::warn!(error = %e, "cannot compute programme totals for metrics"),
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
        on_store(&self.shared, move |s| settle::show_run(s, id))
            .await
            .map(run_response)
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "listing settlement runs")?;
        let programme = request.into_inner().programme;
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

pub struct LedgerService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl pb::ledger_service_server::LedgerService for LedgerService {
    async fn record_payment(
        &self,
        request: Request<pb::RecordPaymentRequest>,
    ) -> Result<Response<pb::RecordPaymentResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, FINANCE, "recording a payment")?;
        let r = request.into_inner();
        let (journal_id, duplicate, outstanding) = on_store(&self.shared, move |s| {
            let programme = Some(r.programme.trim()).filter(|p| !p.is_empty());
            settle::record_payment(
                s,
                programme,
                r.payee.trim(),
                Fen(r.amount_fen),
                r.reference.trim(),
                &c.actor,
            )
        })
        .await?;
        Ok(Response::new(pb::RecordPaymentResponse {
            journal_id: journal_id as u64,
            duplicate,
            outstanding_fen: outstanding.0,
        }))
    }

    async fn list_journals(
        &self,
        request: Request<pb::ListJournalsRequest>,
    ) -> Result<Response<pb::ListJournalsResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "reading the journal")?;
        let r = request.into_inner();
        let all = on_store(&self.shared, settle::journals).await?;
        let journals = all
            .into_iter()
            .filter(|j| r.kind.is_empty() || j.kind == r.kind)
            .filter(|j| {
                r.account_prefix.is_empty()
                    || j.entries
                        .iter()
                        .any(|e| e.account.starts_with(&r.account_prefix))
            })
            .map(|j| pb::Journal {
                journal_id: j.journal_id as u64,
                kind: j.kind,
                reference: j.reference,
                memo: j.memo,
                created_by: j.created_by,
                created_at: j.created_at,
                entries: j
                    .entries
                    .into_iter()
                    .map(|e| pb::JournalEntry {
                        account: e.account,
                        debit_fen: e.debit_fen,
                        credit_fen: e.credit_fen,
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::ListJournalsResponse { journals }))
    }

    async fn trial_balance(
        &self,
        request: Request<pb::TrialBalanceRequest>,
    ) -> Result<Response<pb::TrialBalanceResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "reading the trial balance")?;
        let totals = on_store(&self.shared, settle::trial_balance).await?;
        let total_debit_fen = totals.iter().map(|t| t.1).sum();
        let total_credit_fen = totals.iter().map(|t| t.2).sum();
        Ok(Response::new(pb::TrialBalanceResponse {
            accounts: totals
                .into_iter()
                .map(|(account, debit_fen, credit_fen)| pb::AccountBalance {
                    account,
                    debit_fen,
                    credit_fen,
                    balance_fen: debit_fen - credit_fen,
                })
                .collect(),
            total_debit_fen,
            total_credit_fen,
            balanced: total_debit_fen == total_credit_fen,
        }))
    }
}

pub struct BalanceService {
    pub shared: Arc<Shared>,
    pub pending: Arc<std::sync::Mutex<settle::PendingCache>>,
}

#[tonic::async_trait]
impl pb::balance_service_server::BalanceService for BalanceService {
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        let r = request.into_inner();
        let beneficiary = r.beneficiary.trim().to_owned();
        match &c.principal {
            Principal::Beneficiary(own) if *own == beneficiary => {}
            Principal::Beneficiary(own) => {
                return Err(Status::permission_denied(format!(
                    "beneficiary token of {own:?} cannot read {beneficiary:?}'s balance"
                )));
            }
            _ => require(&c, READERS, "reading another party's balance")?,
        }
        let year = r.year;
        let who = beneficiary.clone();
        let cache = self.pending.clone();
        let rows = on_store(&self.shared, move |s| {
            let mut cache = cache.lock().expect("pending cache lock");
            settle::balance(s, &mut cache, &who, year)
        })
        .await?;
        Ok(Response::new(pb::GetBalanceResponse {
            beneficiary,
            programmes: rows
                .into_iter()
                .map(|b| pb::ProgrammeBalance {
                    programme: b.programme,
                    year: b.year,
                    capped: b.cap.is_some(),
                    cap_fen: b.cap.map_or(0, |c| c.0),
                    paid_fen: b.paid.0,
                    pending_fen: b.pending.0,
                    remaining_fen: b.remaining.0,
                })
                .collect(),
        }))
    }

    async fn get_payee(
        &self,
        request: Request<pb::GetPayeeRequest>,
    ) -> Result<Response<pb::GetPayeeResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        let payee = request.into_inner().payee.trim().to_owned();
        match &c.principal {
            Principal::Provider(own) | Principal::Beneficiary(own) if *own == payee => {}
            Principal::Provider(own) | Principal::Beneficiary(own) => {
                return Err(Status::permission_denied(format!(
                    "token of {own:?} cannot read what {payee:?} is owed"
                )));
            }
            _ => require(&c, READERS, "reading another party's payables")?,
        }
        let who = payee.clone();
        let rows = on_store(&self.shared, move |s| settle::payee(s, &who)).await?;
        Ok(Response::new(pb::GetPayeeResponse {
            payee,
            programmes: rows
                .into_iter()
                .map(|p| pb::PayeeBalance {
                    programme: p.programme,
                    posted_fen: p.posted.0,
                    paid_fen: p.paid.0,
                    outstanding_fen: p.outstanding.0,
                })
                .collect(),
        }))
    }
}
