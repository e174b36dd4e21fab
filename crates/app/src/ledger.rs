//! The ledger's use cases (docs/rules.md R10): a payee's position, recording a payment against
//! its payable (at once, or above `ledger.payment_confirm_above_fen` by two persons: recorded,
//! then confirmed or withdrawn), the journal export and the trial balance.

use std::collections::BTreeMap;

use suanli_domain::ledger::{Account, Entry, Journal};
use suanli_domain::money::Fen;
use suanli_store::ledger::{self as rows, EntryRow};
use suanli_store::payments::{self, NewPayment, PaymentRow};
use suanli_store::sql::{Sql, Value};
use suanli_store::{Store, StoreError};

use crate::audit::Actor;
use crate::settlement::{Result, SettleError, Transact, entry_rows, in_tx, now, settlement_tx};

/// A payee's position per programme, derived from the journal's payable and paid accounts, in
/// the words of docs/rules.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayeePosition {
    pub programme: String,
    /// 已结算: credited to the payee's payable by posted runs (net of claw-backs), with
    /// opening balances.
    pub settled: Fen,
    /// 已拨付: moved to paid by payments recorded, with opening balances.
    pub paid_out: Fen,
    /// settled − paid out; negative is a receivable from the payee.
    pub outstanding: Fen,
}

pub fn payee(store: &mut dyn Store, payee: &str) -> Result<Vec<PayeePosition>> {
    in_tx(store, |tx| payee_positions(tx, payee))
}

fn payee_positions(tx: &mut dyn Sql, payee: &str) -> Result<Vec<PayeePosition>> {
    // The payee's own accounts only (`payable:P:payee`, `paid:P:payee` for every programme P
    // that has runs or opening balances), found by the account index, never a scan of the whole journal.
    let mut accounts: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for r in tx.query(
        "SELECT programme FROM settlement_runs UNION SELECT programme FROM opening_imports WHERE status = 'confirmed' ORDER BY programme",
        &[],
    )? {
        let programme = r[0].text()?;
        accounts.insert(
            format!("payable:{programme}:{payee}"),
            (programme.clone(), true),
        );
        accounts.insert(format!("paid:{programme}:{payee}"), (programme, false));
    }
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=accounts.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT e.account, j.kind, CAST(SUM(e.credit_fen) AS BIGINT), CAST(SUM(e.debit_fen) AS BIGINT) \
         FROM journal_entries e JOIN journals j ON j.journal_id = e.journal_id \
         WHERE e.account IN ({}) GROUP BY e.account, j.kind",
        placeholders.join(", ")
    );
    let params: Vec<Value> = accounts.keys().map(|a| a.as_str().into()).collect();
    let mut by_programme: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in tx.query(&sql, &params)? {
        let account = r[0].text()?;
        let kind = r[1].text()?;
        let net = r[2].int()? - r[3].int()?;
        let Some((programme, payable)) = accounts.get(&account) else {
            continue;
        };
        let slot = by_programme.entry(programme.clone()).or_default();
        // A payable grows by run journals (payments move it to paid); paid by payments.
        // Opening balances were due and paid before Suanli: they count as posted and paid.
        match (payable, kind.as_str()) {
            (true, "run") => slot.0 += net,
            (false, "opening") => {
                slot.0 += net;
                slot.1 += net;
            }
            (false, _) => slot.1 += net,
            _ => {}
        }
    }
    Ok(by_programme
        .into_iter()
        .map(|(programme, (settled, paid_out))| PayeePosition {
            programme,
            settled: Fen(settled),
            paid_out: Fen(paid_out),
            outstanding: Fen(settled - paid_out),
        })
        .collect())
}

/// Most payments [`list_payments`] returns, newest first: payments awaiting confirmation are
/// few, and the journal holds every booked payment.
pub const PAYMENTS_LISTED_MAX: i64 = 10_000;

/// What recording a payment did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Booked: its journal moved the amount from the payee's payable to paid. `outstanding` is
    /// what the programme still owes the payee after it. `payment` is the payment's row when it
    /// was confirmed by a second person (a repeated record of such a payment).
    Booked {
        journal_id: i64,
        duplicate: bool,
        outstanding: Fen,
        payment: Option<PaymentRow>,
    },
    /// Above `ledger.payment_confirm_above_fen`: stored awaiting confirmation by another
    /// finance user; nothing is booked and `outstanding` is unchanged.
    Awaiting {
        payment: PaymentRow,
        duplicate: bool,
        outstanding: Fen,
    },
}

impl Recorded {
    /// True when the reference and content were recorded before (nothing changed).
    pub fn duplicate(&self) -> bool {
        match self {
            Recorded::Booked { duplicate, .. } | Recorded::Awaiting { duplicate, .. } => *duplicate,
        }
    }
}

/// A payment that needs a second person, after an action on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentView {
    pub payment: PaymentRow,
    /// True when the call changed nothing (confirming a confirmed payment, withdrawing a
    /// withdrawn one).
    pub unchanged: bool,
    /// What the programme owes the payee now.
    pub outstanding: Fen,
}

/// The two entries of a payment: the payable debited, paid credited.
fn payment_entries(programme: &str, payee: &str, amount: Fen) -> Vec<EntryRow> {
    let journal = Journal::new(vec![
        Entry::signed(
            Account::Payable {
                programme: programme.to_owned(),
                payee: payee.to_owned(),
            },
            amount,
        ),
        Entry::signed(
            Account::Paid {
                programme: programme.to_owned(),
                payee: payee.to_owned(),
            },
            Fen(-amount.0),
        ),
    ])
    .expect("a two-sided payment balances");
    entry_rows(&journal)
}

/// Writes a payment's journal and its sealed `payment` audit entry by `who`; returns the
/// journal's id. The caller has checked the amount against what is owed.
fn book_payment(
    tx: &mut dyn Sql,
    programme: &str,
    payee: &str,
    amount: Fen,
    reference: &str,
    who: &Actor,
) -> Result<i64> {
    let id = rows::insert_journal(
        tx,
        "payment",
        reference,
        &format!("payment to {payee} by {programme}"),
        &who.actor,
        &now(),
        &payment_entries(programme, payee, amount),
    )?;
    // The payment's digest covers its journal as stored, read back in this transaction
    // (crate::seal), so an edit of the payment is found by `audit verify`.
    let journal = rows::journals(tx, Some(id))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            SettleError::Store(StoreError::Corrupt(format!("journal {id} was not stored")))
        })?;
    let parts = crate::seal::payment_parts(&journal);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    who.record(tx, "payment", &format!("journal:{id}"), &parts)?;
    Ok(id)
}

fn owed_by(positions: &[PayeePosition], programme: &str) -> Fen {
    positions
        .iter()
        .find(|p| p.programme == programme)
        .map_or(Fen::ZERO, |p| p.outstanding)
}

/// `ledger record-payment`: moves `amount` of a payee's payable to paid. Idempotent by
/// reference: the same reference with the same content is the same payment; with other
/// content, an error. With `confirm_above` (`ledger.payment_confirm_above_fen`), a payment of
/// more than it is only stored, awaiting another finance user's [`confirm_payment`]; nothing is
/// booked until then. The amount may not exceed what is owed less the payments already
/// awaiting confirmation.
pub fn record_payment(
    store: &mut dyn Store,
    programme: Option<&str>,
    payee: &str,
    amount: Fen,
    reference: &str,
    who: &Actor,
    confirm_above: Option<Fen>,
) -> Result<Recorded> {
    if amount.0 <= 0 {
        return Err(SettleError::InvalidArgument(format!(
            "amount {amount} must be positive"
        )));
    }
    if reference.trim().is_empty() {
        return Err(SettleError::InvalidArgument(
            "reference is empty; it makes a payment idempotent".into(),
        ));
    }
    let programme = programme.filter(|p| !p.is_empty());
    settlement_tx(store, |tx| {
        let positions = payee_positions(tx, payee)?;
        // The reference again: the same payment if the content is the same (a retry).
        if let Some(existing) = payments::live_by_reference(tx, reference)? {
            let same = existing.payee == payee
                && existing.amount_fen == amount.0
                && programme.is_none_or(|p| p == existing.programme);
            if !same {
                return Err(SettleError::AlreadyExists(format!(
                    "payment reference {reference:?} was already used for a different payment (payment {}: {} to {} by {})",
                    existing.payment_id,
                    Fen(existing.amount_fen),
                    existing.payee,
                    existing.programme
                )));
            }
            let outstanding = owed_by(&positions, &existing.programme);
            return Ok(match existing.journal_id {
                Some(journal_id) => Recorded::Booked {
                    journal_id,
                    duplicate: true,
                    outstanding,
                    payment: Some(existing),
                },
                None => Recorded::Awaiting {
                    payment: existing,
                    duplicate: true,
                    outstanding,
                },
            });
        }
        if let Some(existing) = rows::journal_by_reference(tx, "payment", reference)? {
            let candidates: Vec<&str> = match programme {
                Some(p) => vec![p],
                None => positions.iter().map(|p| p.programme.as_str()).collect(),
            };
            if let Some(p) = candidates
                .iter()
                .find(|p| payment_entries(p, payee, amount) == existing.entries)
            {
                return Ok(Recorded::Booked {
                    journal_id: existing.journal_id,
                    duplicate: true,
                    outstanding: owed_by(&positions, p),
                    payment: None,
                });
            }
            return Err(SettleError::AlreadyExists(format!(
                "payment reference {reference:?} was already used for a different payment (journal {})",
                existing.journal_id
            )));
        }
        let programme = match programme {
            Some(p) => p.to_owned(),
            None => {
                let owed: Vec<&PayeePosition> =
                    positions.iter().filter(|p| p.outstanding.0 > 0).collect();
                match owed.as_slice() {
                    [one] => one.programme.clone(),
                    [] => {
                        return Err(SettleError::FailedPrecondition(format!(
                            "nothing is owed to payee {payee:?}"
                        )));
                    }
                    _ => {
                        return Err(SettleError::InvalidArgument(format!(
                            "payee {payee:?} is owed by several programmes; name one with --programme"
                        )));
                    }
                }
            }
        };
        let outstanding = owed_by(&positions, &programme);
        // Payments awaiting confirmation hold their amounts: together with this one they may
        // not exceed what is owed.
        let awaiting = payments::awaiting_for(tx, &programme, payee)?;
        let held: i128 = awaiting.iter().map(|p| i128::from(p.amount_fen)).sum();
        if i128::from(amount.0) > i128::from(outstanding.0) - held {
            let mut message = format!(
                "payment {amount} to {payee} exceeds the {outstanding} owed by {programme}"
            );
            if !awaiting.is_empty() {
                let ids: Vec<String> = awaiting.iter().map(|p| p.payment_id.to_string()).collect();
                message.push_str(&format!(
                    " less {} awaiting confirmation (payment {})",
                    Fen(i64::try_from(held).unwrap_or(i64::MAX)),
                    ids.join(", ")
                ));
            }
            return Err(SettleError::FailedPrecondition(message));
        }
        if confirm_above.is_some_and(|limit| amount > limit) {
            let payment_id = payments::insert(
                tx,
                &NewPayment {
                    programme: programme.clone(),
                    payee: payee.to_owned(),
                    amount_fen: amount.0,
                    reference: reference.to_owned(),
                    recorded_by: who.actor.clone(),
                    recorded_by_user_id: who.user_id(),
                    recorded_at: now(),
                },
            )?;
            let payment = stored_payment(tx, payment_id)?;
            let parts = crate::seal::payment_record_parts(&payment);
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            who.record(
                tx,
                "payment.record",
                &format!("payment:{payment_id}"),
                &parts,
            )?;
            return Ok(Recorded::Awaiting {
                payment,
                duplicate: false,
                outstanding,
            });
        }
        let journal_id = book_payment(tx, &programme, payee, amount, reference, who)?;
        Ok(Recorded::Booked {
            journal_id,
            duplicate: false,
            outstanding: outstanding.minus(amount),
            payment: None,
        })
    })
}

fn stored_payment(tx: &mut dyn Sql, payment_id: i64) -> Result<PaymentRow> {
    payments::get(tx, payment_id)?.ok_or_else(|| {
        SettleError::Store(StoreError::Corrupt(format!(
            "payment {payment_id} vanished in its own transaction"
        )))
    })
}

/// `ledger confirm-payment`: a finance user other than the recorder — another person, compared
/// by user id whatever tokens or sessions either holds — confirms a payment awaiting
/// confirmation. In one transaction it checks the amount against what is owed now and writes
/// the payment's journal exactly as a payment booked at once. Confirming a confirmed payment
/// changes nothing.
pub fn confirm_payment(store: &mut dyn Store, payment_id: i64, who: &Actor) -> Result<PaymentView> {
    settlement_tx(store, |tx| {
        let payment = payments::get(tx, payment_id)?
            .ok_or_else(|| SettleError::NotFound(format!("payment {payment_id} does not exist")))?;
        let outstanding = |tx: &mut dyn Sql, p: &PaymentRow| -> Result<Fen> {
            Ok(owed_by(&payee_positions(tx, &p.payee)?, &p.programme))
        };
        match payment.status.as_str() {
            "confirmed" => {
                return Ok(PaymentView {
                    outstanding: outstanding(tx, &payment)?,
                    payment,
                    unchanged: true,
                });
            }
            "awaiting" => {}
            other => {
                return Err(SettleError::FailedPrecondition(format!(
                    "payment {payment_id} is {other} (by {}); only a payment awaiting confirmation can be confirmed",
                    payment.withdrawn_by.as_deref().unwrap_or("?")
                )));
            }
        }
        // Four eyes between persons: another user, whatever tokens either used.
        if who.same_person_as(&payment.recorded_by, payment.recorded_by_user_id) {
            return Err(SettleError::PermissionDenied(format!(
                "payment {payment_id} was recorded by {}; another finance user must confirm it (four eyes)",
                payment.recorded_by
            )));
        }
        let amount = Fen(payment.amount_fen);
        let owed = outstanding(tx, &payment)?;
        if amount > owed {
            return Err(SettleError::FailedPrecondition(format!(
                "payment {payment_id} of {amount} to {} exceeds the {owed} now owed by {}; withdraw it",
                payment.payee, payment.programme
            )));
        }
        if let Some(j) = rows::journal_by_reference(tx, "payment", &payment.reference)? {
            return Err(SettleError::FailedPrecondition(format!(
                "payment reference {:?} of payment {payment_id} is already booked in journal {}; withdraw it",
                payment.reference, j.journal_id
            )));
        }
        let journal_id = book_payment(
            tx,
            &payment.programme,
            &payment.payee,
            amount,
            &payment.reference,
            who,
        )?;
        if !payments::confirm(
            tx,
            payment_id,
            &who.actor,
            who.user_id(),
            &now(),
            journal_id,
        )? {
            return Err(SettleError::FailedPrecondition(format!(
                "payment {payment_id} changed while confirming"
            )));
        }
        let payment = stored_payment(tx, payment_id)?;
        let parts = crate::seal::payment_confirm_parts(&payment);
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        who.record(
            tx,
            "payment.confirm",
            &format!("payment:{payment_id}"),
            &parts,
        )?;
        Ok(PaymentView {
            payment,
            unchanged: false,
            outstanding: owed.minus(amount),
        })
    })
}

/// `ledger withdraw-payment`: a payment awaiting confirmation is withdrawn (by its recorder or
/// another finance user); nothing was booked, and its reference is free again. Withdrawing a
/// withdrawn payment changes nothing; a confirmed payment is booked and stays.
pub fn withdraw_payment(
    store: &mut dyn Store,
    payment_id: i64,
    who: &Actor,
) -> Result<PaymentView> {
    settlement_tx(store, |tx| {
        let payment = payments::get(tx, payment_id)?
            .ok_or_else(|| SettleError::NotFound(format!("payment {payment_id} does not exist")))?;
        let outstanding = owed_by(&payee_positions(tx, &payment.payee)?, &payment.programme);
        match payment.status.as_str() {
            "withdrawn" => {
                return Ok(PaymentView {
                    payment,
                    unchanged: true,
                    outstanding,
                });
            }
            "awaiting" => {}
            other => {
                return Err(SettleError::FailedPrecondition(format!(
                    "payment {payment_id} is {other} in journal {}; a booked payment is not withdrawn",
                    payment
                        .journal_id
                        .map_or_else(|| "?".to_owned(), |j| j.to_string())
                )));
            }
        }
        if !payments::withdraw(tx, payment_id, &who.actor, &now())? {
            return Err(SettleError::FailedPrecondition(format!(
                "payment {payment_id} changed while withdrawing"
            )));
        }
        let payment = stored_payment(tx, payment_id)?;
        let parts = crate::seal::payment_record_parts(&payment);
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        who.record(
            tx,
            "payment.withdraw",
            &format!("payment:{payment_id}"),
            &parts,
        )?;
        Ok(PaymentView {
            payment,
            unchanged: false,
            outstanding,
        })
    })
}

/// The payments that needed a second person (only those awaiting confirmation with
/// `awaiting_only`), oldest first, at most [`PAYMENTS_LISTED_MAX`] (the newest).
pub fn list_payments<S: crate::settlement::Transact + ?Sized>(
    store: &mut S,
    awaiting_only: bool,
) -> Result<Vec<PaymentRow>> {
    in_tx(store, |tx| {
        Ok(payments::list(tx, awaiting_only, PAYMENTS_LISTED_MAX)?)
    })
}

pub fn journals(store: &mut dyn Store) -> Result<Vec<rows::JournalRow>> {
    in_tx(store, |tx| Ok(rows::journals(tx, None)?))
}

/// The journals of a listing read page by page, each page in its own transaction, so a ledger
/// of any size is read a few pages at a time: the journals (of a kind, with an account of a
/// prefix) as they stood when the listing was opened, whatever is added meanwhile.
pub struct JournalPages {
    filter: rows::JournalFilter,
    totals: rows::LedgerTotals,
    next: rows::JournalPosition,
}

impl JournalPages {
    /// Opens the listing of the journals of `kind` with an entry on an account that starts with
    /// `account_prefix` (either empty for all), and counts and sums what it holds.
    pub fn open<S: Transact + ?Sized>(
        store: &mut S,
        kind: &str,
        account_prefix: &str,
    ) -> Result<JournalPages> {
        in_tx(store, |tx| {
            let filter = rows::JournalFilter {
                through: rows::journals_mark(tx)?,
                kind: kind.to_owned(),
                account_prefix: account_prefix.to_owned(),
                ..Default::default()
            };
            let totals = rows::journal_totals(tx, &filter)?;
            Ok(JournalPages {
                filter,
                totals,
                next: (0, 0),
            })
        })
    }

    /// The last journal the listing holds (journals are numbered in order).
    pub fn through(&self) -> i64 {
        self.filter.through
    }

    /// How many journals and entries the listing holds, with their debits and credits summed.
    pub fn totals(&self) -> rows::LedgerTotals {
        self.totals
    }

    /// The next journals with at most `entries` entries in all; a journal with more is cut and
    /// continues in the next page. Empty after the last journal.
    pub fn next_page<S: Transact + ?Sized>(
        &mut self,
        store: &mut S,
        entries: usize,
    ) -> Result<Vec<rows::JournalPart>> {
        let count = i64::try_from(entries).unwrap_or(i64::MAX);
        let (page, next) = in_tx(store, |tx| {
            Ok(rows::journals_page(tx, &self.filter, self.next, count)?)
        })?;
        self.next = next;
        Ok(page)
    }
}

/// The trial balance read page by page (accounts in name order), each page in its own
/// transaction: the journals as they stood when it was opened, whatever is added meanwhile.
pub struct AccountPages {
    through: i64,
    totals: rows::LedgerTotals,
    after: Option<String>,
}

impl AccountPages {
    /// Opens the trial balance, and counts its accounts and sums their debits and credits.
    pub fn open<S: Transact + ?Sized>(store: &mut S) -> Result<AccountPages> {
        in_tx(store, |tx| {
            let through = rows::journals_mark(tx)?;
            Ok(AccountPages {
                through,
                totals: rows::trial_balance_totals(tx, through)?,
                after: None,
            })
        })
    }

    /// The last journal the trial balance counts.
    pub fn through(&self) -> i64 {
        self.through
    }

    /// How many accounts and entries it holds, with their debits and credits summed.
    pub fn totals(&self) -> rows::LedgerTotals {
        self.totals
    }

    /// The next at most `count` accounts as (account, Σ debits, Σ credits); empty after the
    /// last.
    pub fn next_page<S: Transact + ?Sized>(
        &mut self,
        store: &mut S,
        count: usize,
    ) -> Result<Vec<(String, i64, i64)>> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let page = in_tx(store, |tx| {
            Ok(rows::account_totals_page(
                tx,
                self.through,
                self.after.as_deref(),
                count,
            )?)
        })?;
        if let Some(last) = page.last() {
            self.after = Some(last.0.clone());
        }
        Ok(page)
    }
}
