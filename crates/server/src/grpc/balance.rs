//! The balance service: an enterprise's balances and a payee's position, in the words of
//! docs/rules.md (entitled, settled, paid out, pending, remaining).

use std::sync::Arc;

use suanli_domain::money::Fen;
use suanli_proto::v1 as pb;
use suanli_store::Principal;
use tonic::{Request, Response, Status};

use super::{READERS, Shared, caller, on_store, require};

pub struct BalanceService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl pb::balance_service_server::BalanceService for BalanceService {
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        let r = request.into_inner();
        super::bounded("beneficiary", &r.beneficiary, super::ID_BYTES_MAX)?;
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
        let rows = self
            .shared
            .balances
            .call(move |b| b.balance(&who, year))
            .await
            .and_then(|rows| rows)
            .map_err(super::status_of)?;
        Ok(Response::new(pb::GetBalanceResponse {
            beneficiary,
            programmes: rows
                .into_iter()
                .map(|b| pb::ProgrammeBalance {
                    programme: b.programme.clone(),
                    year: b.year,
                    capped: b.cap.is_some(),
                    cap_fen: b.cap.map_or(0, |c| c.0),
                    paid_fen: b.settled.0,
                    pending_fen: b.pending.max(Fen::ZERO).0,
                    remaining_fen: b.remaining.0,
                    entitled_fen: b.entitled.0,
                    settled_fen: b.settled.0,
                    owed_back_fen: b.owed_back().0,
                    paid_out_to_beneficiary_fen: b.paid_out_to_beneficiary().0,
                    paid_out_to_providers_fen: b.paid_out_to_providers().0,
                    paid_out: b
                        .paid_out
                        .iter()
                        .map(|p| pb::PaidOut {
                            payee: p.payee.clone(),
                            to_beneficiary: p.to_beneficiary,
                            settled_fen: p.settled.0,
                            paid_out_fen: p.paid_out.0,
                        })
                        .collect(),
                })
                .collect(),
        }))
    }

    async fn get_payee(
        &self,
        request: Request<pb::GetPayeeRequest>,
    ) -> Result<Response<pb::GetPayeeResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        let payee = request.into_inner().payee;
        super::bounded("payee", &payee, super::ID_BYTES_MAX)?;
        let payee = payee.trim().to_owned();
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
        let rows = on_store(&self.shared, move |s| suanli_app::ledger::payee(s, &who)).await?;
        Ok(Response::new(pb::GetPayeeResponse {
            payee,
            programmes: rows
                .into_iter()
                .map(|p| pb::PayeeBalance {
                    programme: p.programme,
                    posted_fen: p.settled.0,
                    paid_fen: p.paid_out.0,
                    outstanding_fen: p.outstanding.0,
                    settled_fen: p.settled.0,
                    paid_out_fen: p.paid_out.0,
                })
                .collect(),
        }))
    }
}
