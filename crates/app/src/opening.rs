//! Opening balances: what a programme paid before it used Suanli, so that a programme starting
//! mid-year counts its caps, provider caps and pools from what it really paid, not from zero.
//! One finance user imports the rows (programme, beneficiary, provider, amount — the columns of
//! `simulate --prior`), another confirms them (four eyes, as a run's approval). Confirming
//! writes a journal of kind `opening` and, from then on, the engine counts the rows as prior
//! payments in every run of the programme-year, exactly as `simulate --prior` does (R7, R8).
//!
//! Opening balances come before the programme's first run: an import is refused once a run of
//! the programme is posted, and a confirmation once any run of it is open, approved or posted,
//! so no run was ever computed without them. Importing the same content again changes nothing.

use std::collections::BTreeMap;

use suanli_domain::audit::digest;
use suanli_domain::ledger::opening_journal;
use suanli_domain::money::Fen;
use suanli_domain::registry::Payee;
use suanli_domain::settlement::Prior;
use suanli_store::Store;
use suanli_store::ledger::{self as runs};
use suanli_store::opening::{self as rows, OpeningImportRow, OpeningLineRow};
use suanli_store::sql::Sql;

use crate::audit::Actor;
use crate::registry::current_registry;
use crate::settlement::{Result, SettleError, entry_rows, in_tx, now, settlement_tx};

/// Most rows one import may carry; a programme has at most one row per beneficiary and
/// provider, and a city's largest registry has about 100,000 beneficiaries.
pub const OPENING_ROWS_MAX: usize = 200_000;

/// One row of an opening-balance file as the client read it. `line` is the row's line in the
/// file (0 when unknown), for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpeningRow {
    pub beneficiary: String,
    pub provider: String,
    pub amount: Fen,
    pub line: u64,
}

/// An import with its rows, after an action.
#[derive(Clone, Debug)]
pub struct OpeningView {
    pub import: OpeningImportRow,
    pub lines: Vec<OpeningLineRow>,
    /// True when the call changed nothing (the same content imported or confirmed again).
    pub unchanged: bool,
    /// The pending import this one replaced, if any.
    pub superseded: Option<i64>,
}

impl OpeningView {
    pub fn total(&self) -> Fen {
        self.lines.iter().map(|l| Fen(l.amount_fen)).sum()
    }
}

fn at_row(r: &OpeningRow) -> String {
    if r.line == 0 {
        format!("row of {}", r.beneficiary)
    } else {
        format!("line {}", r.line)
    }
}

/// `ledger import-opening`: validates the rows against the current registry, sums them per
/// (beneficiary, provider), and stores them as a pending import awaiting a second finance user.
pub fn import_opening(
    store: &mut dyn Store,
    programme_id: &str,
    input: &[OpeningRow],
    who: &Actor,
) -> Result<OpeningView> {
    let (version, registry) = current_registry(store)?;
    let programme = registry.programme(programme_id).ok_or_else(|| {
        SettleError::NotFound(format!(
            "programme {programme_id:?} is not in the current registry"
        ))
    })?;
    if input.is_empty() {
        return Err(SettleError::InvalidArgument(format!(
            "the opening balances of {programme_id} have no rows"
        )));
    }
    if input.len() > OPENING_ROWS_MAX {
        return Err(SettleError::InvalidArgument(format!(
            "{} opening rows; at most {OPENING_ROWS_MAX} per import",
            input.len()
        )));
    }
    let mut summed: BTreeMap<(String, String), Fen> = BTreeMap::new();
    for r in input {
        let at = at_row(r);
        if registry.beneficiary(&r.beneficiary).is_none() {
            return Err(SettleError::InvalidArgument(format!(
                "{at}: beneficiary: unknown beneficiary {:?}",
                r.beneficiary
            )));
        }
        if !r.provider.is_empty() && registry.provider(&r.provider).is_none() {
            return Err(SettleError::InvalidArgument(format!(
                "{at}: provider: unknown provider {:?}",
                r.provider
            )));
        }
        // The journal credits the payee that was paid; a programme paying providers must say
        // which provider received the money.
        if programme.payee == Payee::Provider && r.provider.is_empty() {
            return Err(SettleError::InvalidArgument(format!(
                "{at}: provider: empty, but {programme_id} pays providers; name the provider that was paid"
            )));
        }
        if r.amount.0 < 0 {
            return Err(SettleError::InvalidArgument(format!(
                "{at}: amount: {} is negative; an opening balance is money paid",
                r.amount
            )));
        }
        let slot = summed
            .entry((r.beneficiary.clone(), r.provider.clone()))
            .or_default();
        *slot = Fen(slot.0.checked_add(r.amount.0).ok_or_else(|| {
            SettleError::InvalidArgument(format!("{at}: amount: the sum overflows"))
        })?);
    }
    let lines: Vec<OpeningLineRow> = summed
        .into_iter()
        .map(|((beneficiary, provider), amount)| OpeningLineRow {
            payee: match programme.payee {
                Payee::Provider => provider.clone(),
                Payee::Beneficiary => beneficiary.clone(),
            },
            beneficiary,
            provider,
            amount_fen: amount.0,
        })
        .collect();
    let content_hash = content_hash(programme_id, &lines);
    settlement_tx(store, |tx| {
        let live = rows::live_imports(tx, programme_id)?;
        if let Some(same) = live.iter().find(|i| i.content_hash == content_hash) {
            return Ok(OpeningView {
                lines: rows::lines(tx, same.import_id)?,
                import: same.clone(),
                unchanged: true,
                superseded: None,
            });
        }
        if let Some(run) = runs::runs(tx, Some(programme_id))?
            .into_iter()
            .find(|r| r.status == "posted")
        {
            return Err(SettleError::FailedPrecondition(format!(
                "run {} ({programme_id} {}) is already posted; opening balances must come before a programme's first posted run",
                run.run_id, run.period
            )));
        }
        if let Some(confirmed) = live.iter().find(|i| i.status == "confirmed") {
            return Err(SettleError::FailedPrecondition(format!(
                "the opening balances of {programme_id} were confirmed in import {} by {}; confirmed money paid is not replaced",
                confirmed.import_id,
                confirmed.confirmed_by.as_deref().unwrap_or("?")
            )));
        }
        // A pending import not yet confirmed is replaced by the new file: the second finance
        // user confirms the latest content only.
        let superseded = live
            .iter()
            .find(|i| i.status == "pending")
            .map(|i| i.import_id);
        if let Some(old) = superseded {
            rows::supersede(tx, old)?;
        }
        let new = OpeningImportRow {
            programme: programme_id.to_owned(),
            content_hash: content_hash.clone(),
            status: "pending".into(),
            registry_version: version,
            created_by: who.actor.clone(),
            created_at: now(),
            ..OpeningImportRow::default()
        };
        let import_id = rows::insert_import(tx, &new, &lines)?;
        let import = rows::import(tx, import_id)?.expect("the import just inserted");
        let lines = rows::lines(tx, import_id)?;
        let mut parts = crate::seal::opening_parts(&import, &lines, None);
        parts.push(superseded.map_or_else(String::new, |s| format!("supersedes:{s}")));
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        who.record(
            tx,
            "opening.import",
            &format!("opening:{import_id}"),
            &parts,
        )?;
        Ok(OpeningView {
            import,
            lines,
            unchanged: false,
            superseded,
        })
    })
}

/// The digest of an import's content: the programme and every summed row in key order.
fn content_hash(programme: &str, lines: &[OpeningLineRow]) -> String {
    let mut parts = vec!["opening:v1".to_owned(), programme.to_owned()];
    for l in lines {
        parts.extend([
            l.beneficiary.clone(),
            l.provider.clone(),
            l.amount_fen.to_string(),
        ]);
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    digest(&parts)
}

/// `ledger confirm-opening`: a finance user other than the importer confirms a pending import;
/// its journal (expense against paid, see [`opening_journal`]) is written in the same
/// transaction. Confirming a confirmed import changes nothing.
pub fn confirm_opening(store: &mut dyn Store, import_id: i64, who: &Actor) -> Result<OpeningView> {
    let actor = who.actor.as_str();
    let (_, registry) = current_registry(store)?;
    settlement_tx(store, |tx| {
        let import = rows::import(tx, import_id)?.ok_or_else(|| {
            SettleError::NotFound(format!("opening import {import_id} does not exist"))
        })?;
        let lines = rows::lines(tx, import_id)?;
        if import.status == "confirmed" {
            return Ok(OpeningView {
                import,
                lines,
                unchanged: true,
                superseded: None,
            });
        }
        if import.status != "pending" {
            return Err(SettleError::FailedPrecondition(format!(
                "opening import {import_id} is {}; only a pending import can be confirmed",
                import.status
            )));
        }
        // Four eyes between persons: another user, whatever tokens either used.
        if who.same_person(&import.created_by) {
            return Err(SettleError::PermissionDenied(format!(
                "opening import {import_id} was imported by {}; another finance user must confirm it (four eyes)",
                import.created_by
            )));
        }
        if let Some(run) = runs::runs(tx, Some(&import.programme))?
            .into_iter()
            .find(|r| r.status != "cancelled")
        {
            return Err(SettleError::FailedPrecondition(format!(
                "run {} ({} {}) is {}; opening balances must be confirmed before a programme's first run (cancel an open run first)",
                run.run_id, import.programme, run.period, run.status
            )));
        }
        let programme = registry.programme(&import.programme).ok_or_else(|| {
            SettleError::FailedPrecondition(format!(
                "programme {:?} is no longer in the current registry",
                import.programme
            ))
        })?;
        let mut by_payee: BTreeMap<&str, i64> = BTreeMap::new();
        for l in &lines {
            *by_payee.entry(l.payee.as_str()).or_default() += l.amount_fen;
        }
        let at = now();
        let journal_id = match opening_journal(programme, &by_payee) {
            Some(journal) => Some(suanli_store::ledger::insert_journal(
                tx,
                "opening",
                &format!("opening:{import_id}"),
                &format!(
                    "opening balances of {} (import {import_id})",
                    import.programme
                ),
                actor,
                &at,
                &entry_rows(&journal),
            )?),
            None => None,
        };
        if !rows::confirm(tx, import_id, actor, &at, journal_id)? {
            return Err(SettleError::FailedPrecondition(format!(
                "opening import {import_id} changed while confirming"
            )));
        }
        let import = rows::import(tx, import_id)?.expect("import exists");
        // The confirmation's digest covers the rows and the journal as stored, read back in
        // this transaction (crate::seal), so `audit verify` finds an edit of either.
        let journal = match journal_id {
            Some(id) => suanli_store::ledger::journals(tx, Some(id))?
                .into_iter()
                .next(),
            None => None,
        };
        let parts = crate::seal::opening_parts(&import, &lines, Some(journal.as_ref()));
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        who.record(
            tx,
            "opening.confirm",
            &format!("opening:{import_id}"),
            &parts,
        )?;
        Ok(OpeningView {
            import,
            lines,
            unchanged: false,
            superseded: None,
        })
    })
}

/// Every import (all programmes, or one), with its rows, oldest first.
pub fn list_openings(store: &mut dyn Store, programme: Option<&str>) -> Result<Vec<OpeningView>> {
    in_tx(store, |tx| {
        let mut out = Vec::new();
        for import in rows::imports(tx)? {
            if programme.is_some_and(|p| p != import.programme) {
                continue;
            }
            out.push(OpeningView {
                lines: rows::lines(tx, import.import_id)?,
                import,
                unchanged: false,
                superseded: None,
            });
        }
        Ok(out)
    })
}

/// The confirmed opening balances as prior payments, for the engine. With `confirmed_by`, only
/// those confirmed at or before that time (RFC 3339 UTC, as stored): what a run created then
/// counted.
pub(crate) fn opening_prior(tx: &mut dyn Sql, confirmed_by: Option<&str>) -> Result<Prior> {
    let mut prior = Prior::default();
    for (programme, confirmed_at, l) in rows::confirmed_lines(tx)? {
        if confirmed_by.is_some_and(|t| confirmed_at.as_str() > t) {
            continue;
        }
        prior.add(&programme, &l.beneficiary, &l.provider, Fen(l.amount_fen));
    }
    Ok(prior)
}

/// Confirmed opening balances per (beneficiary, programme): what a balance counts as paid.
pub(crate) fn opening_paid(tx: &mut dyn Sql) -> Result<BTreeMap<(String, String), Fen>> {
    let mut out: BTreeMap<(String, String), Fen> = BTreeMap::new();
    for (programme, _, l) in rows::confirmed_lines(tx)? {
        let slot = out.entry((l.beneficiary, programme)).or_default();
        *slot = slot.plus(Fen(l.amount_fen));
    }
    Ok(out)
}
