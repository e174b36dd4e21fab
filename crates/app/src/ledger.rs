//! The ledger's use cases (docs/rules.md R10): a payee's position, recording a payment against
//! its payable, the journal export and the trial balance.

use std::collections::BTreeMap;

use suanli_domain::ledger::{Account, Entry, Journal};
use suanli_domain::money::Fen;
use suanli_store::ledger::{self as rows};
use suanli_store::sql::{Sql, Value};
use suanli_store::{Store, StoreError};

use crate::audit::Actor;
use crate::settlement::{Result, SettleError, entry_rows, in_tx, now, settlement_tx};

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

/// `ledger record-payment`: moves `amount` of a payee's payable to paid. Idempotent by
/// reference: the same reference with the same content is a duplicate; with other content, an
/// error.
pub fn record_payment(
    store: &mut dyn Store,
    programme: Option<&str>,
    payee: &str,
    amount: Fen,
    reference: &str,
    who: &Actor,
) -> Result<(i64, bool, Fen)> {
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
    settlement_tx(store, |tx| {
        let positions = payee_positions(tx, payee)?;
        let programme = match programme {
            Some(p) if !p.is_empty() => p.to_owned(),
            _ => {
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
        let journal = Journal::new(vec![
            Entry::signed(
                Account::Payable {
                    programme: programme.clone(),
                    payee: payee.to_owned(),
                },
                amount,
            ),
            Entry::signed(
                Account::Paid {
                    programme: programme.clone(),
                    payee: payee.to_owned(),
                },
                Fen(-amount.0),
            ),
        ])
        .expect("a two-sided payment balances");
        let entries = entry_rows(&journal);
        if let Some(existing) = rows::journal_by_reference(tx, "payment", reference)? {
            if existing.entries == entries {
                let outstanding = positions
                    .iter()
                    .find(|p| p.programme == programme)
                    .map_or(Fen::ZERO, |p| p.outstanding);
                return Ok((existing.journal_id, true, outstanding));
            }
            return Err(SettleError::AlreadyExists(format!(
                "payment reference {reference:?} was already used for a different payment (journal {})",
                existing.journal_id
            )));
        }
        let outstanding = positions
            .iter()
            .find(|p| p.programme == programme)
            .map_or(Fen::ZERO, |p| p.outstanding);
        if amount > outstanding {
            return Err(SettleError::FailedPrecondition(format!(
                "payment {amount} to {payee} exceeds the {outstanding} owed by {programme}"
            )));
        }
        let id = rows::insert_journal(
            tx,
            "payment",
            reference,
            &format!("payment to {payee} by {programme}"),
            &who.actor,
            &now(),
            &entries,
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
        Ok((id, false, outstanding.minus(amount)))
    })
}

pub fn journals(store: &mut dyn Store) -> Result<Vec<rows::JournalRow>> {
    in_tx(store, |tx| Ok(rows::journals(tx, None)?))
}

pub fn trial_balance(store: &mut dyn Store) -> Result<Vec<(String, i64, i64)>> {
    in_tx(store, |tx| Ok(rows::account_totals(tx)?))
}
