//! The ledger service: record payments (and confirm or withdraw those that need a second
//! person), list journals, the trial balance, opening balances.

use std::sync::Arc;

use suanli_app::ledger::{PaymentView, Recorded};
use suanli_app::opening::{OpeningRow, OpeningView};
use suanli_domain::money::Fen;
use suanli_proto::v1 as pb;
use suanli_store::payments::PaymentRow;
use tonic::{Request, Response, Status};

use super::{FINANCE, READERS, Shared, caller, on_store, require};

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
        for (field, value) in [
            ("payee", &r.payee),
            ("reference", &r.reference),
            ("programme", &r.programme),
        ] {
            super::bounded(field, value, super::ID_BYTES_MAX)?;
        }
        let confirm_above = self.shared.payment_confirm_above;
        let recorded = on_store(&self.shared, move |s| {
            let programme = Some(r.programme.trim()).filter(|p| !p.is_empty());
            suanli_app::ledger::record_payment(
                s,
                programme,
                r.payee.trim(),
                Fen(r.amount_fen),
                r.reference.trim(),
                &c.actor,
                confirm_above,
            )
        })
        .await?;
        Ok(Response::new(match recorded {
            Recorded::Booked {
                journal_id,
                duplicate,
                outstanding,
                payment,
            } => pb::RecordPaymentResponse {
                journal_id: journal_id as u64,
                duplicate,
                outstanding_fen: outstanding.0,
                awaiting_confirmation: false,
                payment: payment.map(payment_of),
            },
            Recorded::Awaiting {
                payment,
                duplicate,
                outstanding,
            } => pb::RecordPaymentResponse {
                journal_id: 0,
                duplicate,
                outstanding_fen: outstanding.0,
                awaiting_confirmation: true,
                payment: Some(payment_of(payment)),
            },
        }))
    }

    async fn confirm_payment(
        &self,
        request: Request<pb::PaymentActionRequest>,
    ) -> Result<Response<pb::PaymentResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, FINANCE, "confirming a payment")?;
        let payment_id = payment_id_of(request.into_inner().payment_id)?;
        let view = on_store(&self.shared, move |s| {
            suanli_app::ledger::confirm_payment(s, payment_id, &c.actor)
        })
        .await?;
        Ok(Response::new(payment_response(view)))
    }

    async fn withdraw_payment(
        &self,
        request: Request<pb::PaymentActionRequest>,
    ) -> Result<Response<pb::PaymentResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, FINANCE, "withdrawing a payment")?;
        let payment_id = payment_id_of(request.into_inner().payment_id)?;
        let view = on_store(&self.shared, move |s| {
            suanli_app::ledger::withdraw_payment(s, payment_id, &c.actor)
        })
        .await?;
        Ok(Response::new(payment_response(view)))
    }

    async fn list_payments(
        &self,
        request: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "reading payments")?;
        let awaiting = request.into_inner().awaiting;
        let rows = on_store(&self.shared, move |s| {
            suanli_app::ledger::list_payments(s, awaiting)
        })
        .await?;
        Ok(Response::new(pb::ListPaymentsResponse {
            payments: rows.into_iter().map(payment_of).collect(),
        }))
    }

    async fn list_journals(
        &self,
        request: Request<pb::ListJournalsRequest>,
    ) -> Result<Response<pb::ListJournalsResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "reading the journal")?;
        let r = request.into_inner();
        super::bounded("kind", &r.kind, super::ID_BYTES_MAX)?;
        super::bounded("account_prefix", &r.account_prefix, super::ID_BYTES_MAX)?;
        let all = on_store(&self.shared, suanli_app::ledger::journals).await?;
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
        let totals = on_store(&self.shared, suanli_app::ledger::trial_balance).await?;
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

    async fn import_opening(
        &self,
        request: Request<pb::ImportOpeningRequest>,
    ) -> Result<Response<pb::OpeningResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, FINANCE, "importing opening balances")?;
        let r = request.into_inner();
        super::bounded("programme", &r.programme, super::ID_BYTES_MAX)?;
        for row in &r.rows {
            super::bounded("beneficiary", &row.beneficiary, super::ID_BYTES_MAX)?;
            super::bounded("provider", &row.provider, super::ID_BYTES_MAX)?;
        }
        let rows: Vec<OpeningRow> = r
            .rows
            .into_iter()
            .map(|row| OpeningRow {
                beneficiary: row.beneficiary.trim().to_owned(),
                provider: row.provider.trim().to_owned(),
                amount: Fen(row.amount_fen),
                line: row.line,
            })
            .collect();
        let view = on_store(&self.shared, move |s| {
            suanli_app::opening::import_opening(s, r.programme.trim(), &rows, &c.actor)
        })
        .await?;
        Ok(Response::new(opening_response(view)))
    }

    async fn confirm_opening(
        &self,
        request: Request<pb::ConfirmOpeningRequest>,
    ) -> Result<Response<pb::OpeningResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, FINANCE, "confirming opening balances")?;
        let import_id = request.into_inner().import_id as i64;
        let view = on_store(&self.shared, move |s| {
            suanli_app::opening::confirm_opening(s, import_id, &c.actor)
        })
        .await?;
        Ok(Response::new(opening_response(view)))
    }

    async fn list_openings(
        &self,
        request: Request<pb::ListOpeningsRequest>,
    ) -> Result<Response<pb::ListOpeningsResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "reading opening balances")?;
        let programme = request.into_inner().programme;
        super::bounded("programme", &programme, super::ID_BYTES_MAX)?;
        let views = on_store(&self.shared, move |s| {
            let programme = Some(programme.trim()).filter(|p| !p.is_empty());
            suanli_app::opening::list_openings(s, programme)
        })
        .await?;
        Ok(Response::new(pb::ListOpeningsResponse {
            imports: views.into_iter().map(opening_import).collect(),
        }))
    }
}

fn opening_import(view: OpeningView) -> pb::OpeningImport {
    let total_fen = view.total().0;
    let i = view.import;
    pb::OpeningImport {
        import_id: i.import_id as u64,
        programme: i.programme,
        status: i.status,
        content_hash: i.content_hash,
        created_by: i.created_by,
        created_at: i.created_at,
        confirmed_by: i.confirmed_by.unwrap_or_default(),
        confirmed_at: i.confirmed_at.unwrap_or_default(),
        journal_id: i.journal_id.unwrap_or(0) as u64,
        total_fen,
        lines: view
            .lines
            .into_iter()
            .map(|l| pb::OpeningLine {
                beneficiary: l.beneficiary,
                provider: l.provider,
                payee: l.payee,
                amount_fen: l.amount_fen,
            })
            .collect(),
    }
}

fn opening_response(view: OpeningView) -> pb::OpeningResponse {
    let unchanged = view.unchanged;
    let superseded = view.superseded.unwrap_or(0) as u64;
    pb::OpeningResponse {
        import: Some(opening_import(view)),
        unchanged,
        superseded,
    }
}

/// A payment id from a request: 0 is no payment.
fn payment_id_of(id: u64) -> Result<i64, Status> {
    i64::try_from(id)
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| Status::invalid_argument(format!("payment_id {id} names no payment")))
}

fn payment_of(p: PaymentRow) -> pb::Payment {
    pb::Payment {
        payment_id: p.payment_id as u64,
        programme: p.programme,
        payee: p.payee,
        amount_fen: p.amount_fen,
        reference: p.reference,
        status: p.status,
        recorded_by: p.recorded_by,
        recorded_at: p.recorded_at,
        confirmed_by: p.confirmed_by.unwrap_or_default(),
        confirmed_at: p.confirmed_at.unwrap_or_default(),
        withdrawn_by: p.withdrawn_by.unwrap_or_default(),
        withdrawn_at: p.withdrawn_at.unwrap_or_default(),
        journal_id: p.journal_id.unwrap_or(0) as u64,
    }
}

fn payment_response(view: PaymentView) -> pb::PaymentResponse {
    pb::PaymentResponse {
        outstanding_fen: view.outstanding.0,
        unchanged: view.unchanged,
        payment: Some(payment_of(view.payment)),
    }
}
