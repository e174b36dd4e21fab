//! The ledger service: record payments (and confirm or withdraw those that need a second
//! person), list journals, the trial balance, opening balances.

use std::sync::Arc;

use suanli_app::ledger::{AccountPages, JournalPages, PaymentView, Recorded};
use suanli_app::opening::{OpeningRow, OpeningView};
use suanli_domain::money::Fen;
use suanli_proto::v1 as pb;
use suanli_store::ledger::{JournalPart, LedgerTotals};
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
        let r = journals_request(request.into_inner())?;
        let bytes_max = super::reply_bytes_max(&self.shared);
        // Read page by page, beside the writer (a large ledger holds up no ingest), and given up
        // once past one message: never more than that in memory.
        let journals = self
            .shared
            .balances
            .read_alone(move |s| {
                let mut pages = JournalPages::open(s, &r.kind, &r.account_prefix)?;
                let mut journals: Vec<pb::Journal> = Vec::new();
                let mut bytes = 0;
                loop {
                    let page = pages.next_page(s, ROWS_PER_READ)?;
                    if page.is_empty() {
                        return Ok(Some(journals));
                    }
                    for part in page {
                        let part = journal_proto(part);
                        bytes += prost::encoding::message::encoded_len(1, &part);
                        if bytes > bytes_max {
                            return Ok(None);
                        }
                        match journals.last_mut() {
                            // The rest of a journal cut at the end of the page before.
                            Some(j) if part.first_entry > 0 && j.journal_id == part.journal_id => {
                                j.entries.extend(part.entries);
                            }
                            _ => journals.push(part),
                        }
                    }
                }
            })
            .await
            .map_err(super::status_of)?;
        let journals = journals.ok_or_else(|| {
            Status::resource_exhausted(format!(
                "the journals pass one message of {bytes_max} bytes; read them with ListJournalPages"
            ))
        })?;
        Ok(Response::new(pb::ListJournalsResponse { journals }))
    }

    type ListJournalPagesStream = super::PageStream<pb::JournalPage>;

    async fn list_journal_pages(
        &self,
        request: Request<pb::ListJournalsRequest>,
    ) -> Result<Response<Self::ListJournalPagesStream>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "reading the journal")?;
        let r = journals_request(request.into_inner())?;
        let bytes_max = super::reply_bytes_max(&self.shared) - super::STREAM_MESSAGE_SLACK;
        let stream = super::page_stream(&self.shared, "the journals", move |s, send| {
            let mut pages = JournalPages::open(s, &r.kind, &r.account_prefix)?;
            let extent = extent_of(pages.through(), pages.totals());
            if !send(pb::JournalPage {
                extent: Some(extent),
                journals: Vec::new(),
            }) {
                return Ok(());
            }
            loop {
                let page = pages.next_page(s, ROWS_PER_READ)?;
                if page.is_empty() {
                    return Ok(());
                }
                for message in journal_messages(page, bytes_max) {
                    if !send(message) {
                        return Ok(());
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn trial_balance(
        &self,
        request: Request<pb::TrialBalanceRequest>,
    ) -> Result<Response<pb::TrialBalanceResponse>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "reading the trial balance")?;
        let bytes_max = super::reply_bytes_max(&self.shared);
        // Read page by page, beside the writer, and given up once past one message.
        let read = self
            .shared
            .balances
            .read_alone(move |s| {
                let mut pages = AccountPages::open(s)?;
                let mut accounts = Vec::new();
                let mut bytes = 0;
                loop {
                    let page = pages.next_page(s, ROWS_PER_READ)?;
                    if page.is_empty() {
                        return Ok(Some((pages.totals(), accounts)));
                    }
                    for account in page {
                        let account = account_proto(account);
                        bytes += prost::encoding::message::encoded_len(1, &account);
                        if bytes > bytes_max {
                            return Ok(None);
                        }
                        accounts.push(account);
                    }
                }
            })
            .await
            .map_err(super::status_of)?;
        let (totals, accounts) = read.ok_or_else(|| {
            Status::resource_exhausted(format!(
                "the trial balance passes one message of {bytes_max} bytes; read it with ListTrialBalance"
            ))
        })?;
        Ok(Response::new(pb::TrialBalanceResponse {
            accounts,
            total_debit_fen: totals.debit_fen,
            total_credit_fen: totals.credit_fen,
            balanced: totals.debit_fen == totals.credit_fen,
        }))
    }

    type ListTrialBalanceStream = super::PageStream<pb::TrialBalancePage>;

    async fn list_trial_balance(
        &self,
        request: Request<pb::TrialBalanceRequest>,
    ) -> Result<Response<Self::ListTrialBalanceStream>, Status> {
        let c = caller(&self.shared, &request).await?;
        require(&c, READERS, "reading the trial balance")?;
        let bytes_max = super::reply_bytes_max(&self.shared) - super::STREAM_MESSAGE_SLACK;
        let stream = super::page_stream(&self.shared, "the trial balance", move |s, send| {
            let mut pages = AccountPages::open(s)?;
            let mut message = pb::TrialBalancePage {
                extent: Some(extent_of(pages.through(), pages.totals())),
                accounts: Vec::new(),
            };
            let mut bytes = 0;
            loop {
                let page = pages.next_page(s, ROWS_PER_READ)?;
                let last = page.is_empty();
                for account in page.into_iter().map(account_proto) {
                    let size = prost::encoding::message::encoded_len(2, &account);
                    if !message.accounts.is_empty() && bytes + size > bytes_max {
                        if !send(std::mem::take(&mut message)) {
                            return Ok(());
                        }
                        bytes = 0;
                    }
                    bytes += size;
                    message.accounts.push(account);
                }
                if last {
                    // The last message; the first even when there are no accounts (its extent).
                    if message.extent.is_some() || !message.accounts.is_empty() {
                        send(message);
                    }
                    return Ok(());
                }
            }
        });
        Ok(Response::new(stream))
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

/// Journals and accounts read from the store at a time (entries for journals): a page's
/// messages stay few whatever the ledger's size.
const ROWS_PER_READ: usize = 1_000;

/// A journal listing's request with its filters checked and trimmed.
fn journals_request(mut r: pb::ListJournalsRequest) -> Result<pb::ListJournalsRequest, Status> {
    super::bounded("kind", &r.kind, super::ID_BYTES_MAX)?;
    super::bounded("account_prefix", &r.account_prefix, super::ID_BYTES_MAX)?;
    r.kind = r.kind.trim().to_owned();
    r.account_prefix = r.account_prefix.trim().to_owned();
    Ok(r)
}

fn extent_of(through: i64, t: LedgerTotals) -> pb::LedgerExtent {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    pb::LedgerExtent {
        through_journal_id: count(through),
        journals: count(t.journals),
        entries: count(t.entries),
        accounts: count(t.accounts),
        total_debit_fen: t.debit_fen,
        total_credit_fen: t.credit_fen,
    }
}

fn journal_proto(part: JournalPart) -> pb::Journal {
    let j = part.journal;
    pb::Journal {
        journal_id: j.journal_id as u64,
        kind: j.kind,
        reference: j.reference,
        memo: j.memo,
        created_by: j.created_by,
        created_at: j.created_at,
        first_entry: part.first_entry as u64,
        entries: j
            .entries
            .into_iter()
            .map(|e| pb::JournalEntry {
                account: e.account,
                debit_fen: e.debit_fen,
                credit_fen: e.credit_fen,
            })
            .collect(),
    }
}

fn account_proto((account, debit_fen, credit_fen): (String, i64, i64)) -> pb::AccountBalance {
    pb::AccountBalance {
        account,
        debit_fen,
        credit_fen,
        balance_fen: debit_fen - credit_fen,
    }
}

/// Splits the journals of a page into messages of at most `bytes_max` bytes each: a journal
/// that does not fit continues in the next message, its header repeated with `first_entry`
/// where it continues (a single entry larger than that still goes, alone).
fn journal_messages(parts: Vec<JournalPart>, bytes_max: usize) -> Vec<pb::JournalPage> {
    use prost::Message;
    // A journal's tag and length within its message take at most this many bytes.
    const FRAMING: usize = 6;
    let mut out = Vec::new();
    let mut message = pb::JournalPage::default();
    let mut bytes = 0;
    for part in parts {
        let mut journal = journal_proto(part);
        let entries = std::mem::take(&mut journal.entries);
        let mut body = journal.encoded_len();
        for entry in entries {
            let size = prost::encoding::message::encoded_len(7, &entry);
            if bytes + FRAMING + body + size > bytes_max
                && (bytes > 0 || !journal.entries.is_empty())
            {
                let continues_at = journal.first_entry + journal.entries.len() as u64;
                if !journal.entries.is_empty() {
                    let mut head = journal.clone();
                    head.entries = std::mem::take(&mut journal.entries);
                    message.journals.push(head);
                }
                out.push(std::mem::take(&mut message));
                journal.first_entry = continues_at;
                bytes = 0;
                body = journal.encoded_len();
            }
            body += size;
            journal.entries.push(entry);
        }
        if bytes > 0 && bytes + FRAMING + body > bytes_max {
            out.push(std::mem::take(&mut message));
            bytes = 0;
        }
        bytes += FRAMING + body;
        message.journals.push(journal);
    }
    if !message.journals.is_empty() {
        out.push(message);
    }
    out
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
