//! Tamper evidence for posted money. The audit entry of a run's post and of a payment commits,
//! in its digest, a digest of every row that carries the money — the run's lines and the
//! journal's entries — read back inside the transaction that wrote them. `suanli audit verify`
//! reads the same rows again and recomputes each digest, so an edit of posted money made
//! directly in the database (even a balanced one, which the trial balance cannot see) is found
//! and named, and so is a run or payment journal that no audit entry accounts for.
//!
//! Entries written before digests covered the rows ("unsealed") are still checked for what they
//! committed then (the run's line count and total; a payment's programme, payee and amount) and
//! are counted separately, so an operator knows how much of the history is covered fully.

use std::collections::{BTreeMap, BTreeSet};

use suanli_domain::audit::{Entry, digest};
use suanli_store::ledger::{self as rows, JournalRow, RunLineRow, RunRow};
use suanli_store::opening::{self as openings, OpeningImportRow, OpeningLineRow};
use suanli_store::payments::{self, PaymentRow};
use suanli_store::sql::Sql;

/// Marks the parts of a digest that cover the rows, after the fields an unsealed entry had.
const SEALED: &str = "sealed:v1";

/// What a run action's audit digest covers, without the rows: the run's fields and its lines'
/// count and total. Run creation, approval and cancellation use it as it is.
pub(crate) fn run_parts(run: &RunRow, lines: &[RunLineRow]) -> Vec<String> {
    let total_fen: i128 = lines.iter().map(|l| i128::from(l.amount_fen)).sum();
    vec![
        run.run_id.to_string(),
        run.programme.clone(),
        run.period.clone(),
        run.status.clone(),
        run.registry_version.to_string(),
        run.content_hash.clone(),
        run.posted_basis.clone(),
        lines.len().to_string(),
        total_fen.to_string(),
        run.journal_id.map_or_else(String::new, |j| j.to_string()),
    ]
}

/// The digest of every field of every line, in the order the store returns them.
fn lines_digest(lines: &[RunLineRow]) -> String {
    let mut parts: Vec<String> = Vec::with_capacity(lines.len() * 12);
    for l in lines {
        parts.extend([
            l.original_period.clone(),
            l.key.beneficiary.clone(),
            l.key.provider.clone(),
            l.key.category.clone(),
            l.key.chip_origin.clone(),
            l.key.registered_model.clone(),
            l.base_fen.to_string(),
            l.ratio.clone(),
            l.entitlement_fen.to_string(),
            l.posted_before_fen.to_string(),
            l.amount_fen.to_string(),
            l.cut_by.clone(),
            l.payee.clone(),
        ]);
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    digest(&parts)
}

/// The digest of a journal's head and every entry (none: a run that posted nothing).
fn journal_digest(journal: Option<&JournalRow>) -> String {
    let Some(j) = journal else {
        return digest(&["no journal"]);
    };
    let mut parts = vec![
        j.journal_id.to_string(),
        j.kind.clone(),
        j.reference.clone(),
        j.memo.clone(),
        j.created_by.clone(),
        j.created_at.clone(),
    ];
    for e in &j.entries {
        parts.extend([
            e.account.clone(),
            e.debit_fen.to_string(),
            e.credit_fen.to_string(),
        ]);
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    digest(&parts)
}

/// The parts of a posted run's audit digest: the run's fields, then the digests of its lines
/// and of its journal.
pub(crate) fn posted_run_parts(
    run: &RunRow,
    lines: &[RunLineRow],
    journal: Option<&JournalRow>,
) -> Vec<String> {
    let mut parts = run_parts(run, lines);
    parts.extend([
        SEALED.to_owned(),
        lines_digest(lines),
        journal_digest(journal),
    ]);
    parts
}

/// The parts of a payment's audit digest: the journal id and reference, then the digest of the
/// whole journal (its entries name the programme, the payee and the amount).
pub(crate) fn payment_parts(journal: &JournalRow) -> Vec<String> {
    vec![
        journal.journal_id.to_string(),
        journal.reference.clone(),
        SEALED.to_owned(),
        journal_digest(Some(journal)),
    ]
}

/// The parts of the audit digest of a payment awaiting confirmation as recorded or withdrawn:
/// what the payment says and who recorded (and withdrew) it.
pub(crate) fn payment_record_parts(p: &PaymentRow) -> Vec<String> {
    vec![
        p.payment_id.to_string(),
        p.programme.clone(),
        p.payee.clone(),
        p.amount_fen.to_string(),
        p.reference.clone(),
        p.status.clone(),
        p.recorded_by.clone(),
        p.recorded_by_user_id
            .map_or_else(String::new, |u| u.to_string()),
        p.withdrawn_by.clone().unwrap_or_default(),
    ]
}

/// The parts of a payment confirmation's audit digest: the payment, both persons (four eyes)
/// and the journal that booked it. `audit verify` recomputes them from the payment's row, so
/// an edit of who recorded or confirmed a payment is found.
pub(crate) fn payment_confirm_parts(p: &PaymentRow) -> Vec<String> {
    let id = |u: Option<i64>| u.map_or_else(String::new, |u| u.to_string());
    vec![
        p.payment_id.to_string(),
        p.programme.clone(),
        p.payee.clone(),
        p.amount_fen.to_string(),
        p.reference.clone(),
        p.recorded_by.clone(),
        id(p.recorded_by_user_id),
        p.confirmed_by.clone().unwrap_or_default(),
        id(p.confirmed_by_user_id),
        p.confirmed_at.clone().unwrap_or_default(),
        id(p.journal_id),
    ]
}

/// The parts of an opening import's audit digest: its fields and the digest of every row; on
/// confirmation (`journal` given) also who confirmed it, when, and the digest of its journal
/// (none: every amount was zero).
pub(crate) fn opening_parts(
    import: &OpeningImportRow,
    lines: &[OpeningLineRow],
    journal: Option<Option<&JournalRow>>,
) -> Vec<String> {
    let mut rows_parts: Vec<String> = Vec::with_capacity(lines.len() * 4);
    for l in lines {
        rows_parts.extend([
            l.beneficiary.clone(),
            l.provider.clone(),
            l.payee.clone(),
            l.amount_fen.to_string(),
        ]);
    }
    let total: i128 = lines.iter().map(|l| i128::from(l.amount_fen)).sum();
    let mut parts = vec![
        import.import_id.to_string(),
        import.programme.clone(),
        import.content_hash.clone(),
        import.created_by.clone(),
        lines.len().to_string(),
        total.to_string(),
        digest_of(&rows_parts),
    ];
    if let Some(journal) = journal {
        parts.extend([
            SEALED.to_owned(),
            import.status.clone(),
            import.confirmed_by.clone().unwrap_or_default(),
            import.confirmed_at.clone().unwrap_or_default(),
            journal_digest(journal),
        ]);
    }
    parts
}

/// What an unsealed payment entry committed: id, reference, programme, payee, amount — read
/// back from the journal's memo ("payment to PAYEE by PROGRAMME") and its payable entry.
fn unsealed_payment_parts(journal: &JournalRow) -> Option<Vec<String>> {
    let (payee_and_by, programme) = journal.memo.rsplit_once(" by ")?;
    let payee = payee_and_by.strip_prefix("payment to ")?;
    let payable = format!("payable:{programme}:{payee}");
    let amount = journal
        .entries
        .iter()
        .find(|e| e.account == payable)
        .map(|e| e.debit_fen)?;
    Some(vec![
        journal.journal_id.to_string(),
        journal.reference.clone(),
        programme.to_owned(),
        payee.to_owned(),
        amount.to_string(),
    ])
}

fn digest_of(parts: &[String]) -> String {
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    digest(&parts)
}

/// What [`verify`] found intact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sealed {
    /// Posted runs whose lines and journal match their audit entry.
    pub runs: usize,
    /// Payments whose journal matches its audit entry.
    pub payments: usize,
    /// Entries written before digests covered the rows, matching what they committed then.
    pub unsealed: usize,
    /// Confirmed opening balances whose rows and journal match their audit entry.
    pub openings: usize,
    /// Payments confirmed by a second person whose row matches its confirmation's entry.
    pub confirmed_payments: usize,
}

/// Where posted money and its audit entries disagree.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealBroken {
    #[error("seq {seq} ({action} {subject}): {what}")]
    Differs {
        seq: i64,
        action: String,
        subject: String,
        what: String,
    },
    #[error("{0}")]
    Unaccounted(String),
}

impl SealBroken {
    /// The audit entry at fault, if one is.
    pub fn seq(&self) -> Option<i64> {
        match self {
            SealBroken::Differs { seq, .. } => Some(*seq),
            SealBroken::Unaccounted(_) => None,
        }
    }
}

/// Recomputes the digest of every `run.post`, `payment`, `payment.confirm` and `opening.confirm`
/// entry of `entries` from the rows in the database, and checks that every posted run, confirmed
/// opening import, confirmed payment and journal is accounted for by one.
/// Runs inside the caller's (read) transaction.
pub fn verify(tx: &mut dyn Sql, entries: &[Entry]) -> Result<Sealed, SealBroken> {
    let store = |e: suanli_store::StoreError| SealBroken::Unaccounted(format!("store: {e}"));
    let journals: BTreeMap<i64, JournalRow> = rows::journals(tx, None)
        .map_err(store)?
        .into_iter()
        .map(|j| (j.journal_id, j))
        .collect();
    let mut sealed = Sealed::default();
    let mut covered_journals = BTreeSet::new();
    let mut covered_runs = BTreeSet::new();
    let mut covered_openings = BTreeSet::new();
    let mut covered_payments = BTreeSet::new();
    for e in entries {
        let differs = |what: String| SealBroken::Differs {
            seq: e.seq,
            action: e.action.clone(),
            subject: e.subject.clone(),
            what,
        };
        match e.action.as_str() {
            "run.post" => {
                let run_id: i64 = e
                    .subject
                    .strip_prefix("run:")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| differs("the subject names no run".into()))?;
                let run = rows::run(tx, run_id)
                    .map_err(store)?
                    .ok_or_else(|| differs(format!("run {run_id} is missing")))?;
                let lines = rows::run_lines(tx, run_id).map_err(store)?;
                let journal = match run.journal_id {
                    Some(id) => Some(journals.get(&id).ok_or_else(|| {
                        differs(format!("run {run_id}'s journal {id} is missing"))
                    })?),
                    None => None,
                };
                let recorded = |parts: Vec<String>| digest_of(&parts) == e.digest;
                if recorded(posted_run_parts(&run, &lines, journal)) {
                    sealed.runs += 1;
                } else if recorded(run_parts(&run, &lines)) {
                    sealed.unsealed += 1;
                } else {
                    return Err(differs(format!(
                        "run {run_id}'s lines or its journal{} differ from what was posted",
                        run.journal_id.map_or_else(String::new, |j| format!(" {j}"))
                    )));
                }
                covered_runs.insert(run_id);
                covered_journals.extend(run.journal_id);
            }
            "payment" => {
                let id: i64 = e
                    .subject
                    .strip_prefix("journal:")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| differs("the subject names no journal".into()))?;
                let journal = journals
                    .get(&id)
                    .ok_or_else(|| differs(format!("payment journal {id} is missing")))?;
                if digest_of(&payment_parts(journal)) == e.digest {
                    sealed.payments += 1;
                } else if unsealed_payment_parts(journal)
                    .is_some_and(|parts| digest_of(&parts) == e.digest)
                {
                    sealed.unsealed += 1;
                } else {
                    return Err(differs(format!(
                        "payment journal {id} differs from what was recorded"
                    )));
                }
                covered_journals.insert(id);
            }
            "opening.confirm" => {
                let id: i64 = e
                    .subject
                    .strip_prefix("opening:")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| differs("the subject names no opening import".into()))?;
                let import = openings::import(tx, id)
                    .map_err(store)?
                    .ok_or_else(|| differs(format!("opening import {id} is missing")))?;
                let lines = openings::lines(tx, id).map_err(store)?;
                let journal = match import.journal_id {
                    Some(j) => Some(journals.get(&j).ok_or_else(|| {
                        differs(format!("opening import {id}'s journal {j} is missing"))
                    })?),
                    None => None,
                };
                if digest_of(&opening_parts(&import, &lines, Some(journal))) != e.digest {
                    return Err(differs(format!(
                        "opening import {id}'s rows or its journal differ from what was confirmed"
                    )));
                }
                sealed.openings += 1;
                covered_openings.insert(id);
                covered_journals.extend(import.journal_id);
            }
            "payment.confirm" => {
                let id: i64 = e
                    .subject
                    .strip_prefix("payment:")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| differs("the subject names no payment".into()))?;
                let payment = payments::get(tx, id)
                    .map_err(store)?
                    .ok_or_else(|| differs(format!("payment {id} is missing")))?;
                if digest_of(&payment_confirm_parts(&payment)) != e.digest {
                    return Err(differs(format!(
                        "payment {id} differs from what was confirmed (amount, payee, reference, recorder, confirmer or journal)"
                    )));
                }
                sealed.confirmed_payments += 1;
                covered_payments.insert(id);
            }
            _ => {}
        }
    }
    for p in payments::confirmed(tx).map_err(store)? {
        if !covered_payments.contains(&p.payment_id) {
            return Err(SealBroken::Unaccounted(format!(
                "payment {} is confirmed but no audit entry records its confirmation",
                p.payment_id
            )));
        }
    }
    for import in openings::imports(tx).map_err(store)? {
        if import.status == "confirmed" && !covered_openings.contains(&import.import_id) {
            return Err(SealBroken::Unaccounted(format!(
                "opening import {} is confirmed but no audit entry records its confirmation",
                import.import_id
            )));
        }
    }
    for run in rows::runs(tx, None).map_err(store)? {
        if run.status == "posted" && !covered_runs.contains(&run.run_id) {
            return Err(SealBroken::Unaccounted(format!(
                "run {} is posted but no audit entry records its post",
                run.run_id
            )));
        }
    }
    for (id, j) in &journals {
        if !covered_journals.contains(id) {
            return Err(SealBroken::Unaccounted(format!(
                "journal {id} ({} {}) is in the ledger but no audit entry records it",
                j.kind, j.reference
            )));
        }
    }
    // The running totals the trial balance reads must be the sums of the entries verified
    // above: an edit of the totals alone would misstate every account page and total.
    if let Some((account, kept, summed)) = rows::account_totals_drift(tx)
        .map_err(store)?
        .into_iter()
        .next()
    {
        let show = |v: [i64; 3]| {
            format!(
                "debits {}, credits {}, {} entries",
                suanli_domain::money::Fen(v[0]),
                suanli_domain::money::Fen(v[1]),
                v[2]
            )
        };
        return Err(SealBroken::Unaccounted(format!(
            "the trial balance's running totals of account {account} ({}) differ from its entries ({})",
            show(kept),
            show(summed)
        )));
    }
    Ok(sealed)
}
