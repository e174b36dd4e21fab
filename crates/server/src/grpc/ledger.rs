//! The ledger service: record payments, list journals, the trial balance, opening balances.

use std::sync::Arc;

use suanli_app::opening::{OpeningRow, OpeningView};
use suanli_domain::money::Fen;
use suanli_proto::v1 as pb;
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
        let (journal_id, duplicate, outstanding) = on_store(&self.shared, move |s| {
            let programme = Some(r.programme.trim()).filter(|p| !p.is_empty());
            suanli_app::ledger::record_payment(
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
