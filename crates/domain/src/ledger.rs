//! The ledger model (R10): balanced double-entry journals in integer fen. A [`Journal`] can only
//! be built balanced; posting a statement debits the programme-year's expense (split by funder
//! shares where configured) and credits a payable to each payee.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;

use crate::money::{Fen, apportion};
use crate::registry::{Payee, Programme};
use crate::settlement::StatementLine;

/// A ledger account. The text form (`Display`) is what storage and exports use.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// Subsidy expense of a programme-year, per funder (`None` when no funding split is set).
    Expense {
        programme: String,
        funder: Option<String>,
    },
    /// What a programme owes a payee (provider or beneficiary). A debit balance is a receivable.
    Payable { programme: String, payee: String },
    /// Money paid out to a payee.
    Paid { programme: String, payee: String },
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Expense {
                programme,
                funder: None,
            } => write!(f, "expense:{programme}"),
            Account::Expense {
                programme,
                funder: Some(funder),
            } => write!(f, "expense:{programme}:{funder}"),
            Account::Payable { programme, payee } => write!(f, "payable:{programme}:{payee}"),
            Account::Paid { programme, payee } => write!(f, "paid:{programme}:{payee}"),
        }
    }
}

/// One side of one account in a journal. Exactly one of debit and credit is non-zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub account: Account,
    pub debit: Fen,
    pub credit: Fen,
}

impl Entry {
    /// A signed amount as an entry: positive is a debit, negative a credit.
    pub fn signed(account: Account, amount: Fen) -> Entry {
        if amount.0 >= 0 {
            Entry {
                account,
                debit: amount,
                credit: Fen::ZERO,
            }
        } else {
            Entry {
                account,
                debit: Fen::ZERO,
                credit: Fen(-amount.0),
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("journal does not balance: debits {debits}, credits {credits}")]
    Unbalanced { debits: Fen, credits: Fen },
    #[error("journal entry on {0} has a negative side or both sides set")]
    BadEntry(String),
    #[error("journal has no entries")]
    Empty,
}

/// A balanced set of entries. Construction is the only place balance is checked; a value of this
/// type is balanced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Journal {
    entries: Vec<Entry>,
}

impl Journal {
    pub fn new(entries: Vec<Entry>) -> Result<Journal, JournalError> {
        if entries.is_empty() {
            return Err(JournalError::Empty);
        }
        for e in &entries {
            if e.debit.0 < 0 || e.credit.0 < 0 || (e.debit.0 != 0 && e.credit.0 != 0) {
                return Err(JournalError::BadEntry(e.account.to_string()));
            }
        }
        let debits: Fen = entries.iter().map(|e| e.debit).sum();
        let credits: Fen = entries.iter().map(|e| e.credit).sum();
        if debits != credits {
            return Err(JournalError::Unbalanced { debits, credits });
        }
        Ok(Journal { entries })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The reversal: every debit becomes a credit. Corrections are made this way, never by edits.
    pub fn reversal(&self) -> Journal {
        Journal {
            entries: self
                .entries
                .iter()
                .map(|e| Entry {
                    account: e.account.clone(),
                    debit: e.credit,
                    credit: e.debit,
                })
                .collect(),
        }
    }
}

/// The payee of a line under a programme's payee model.
pub fn payee_of<'l>(programme: &Programme, line: &'l StatementLine) -> &'l str {
    match programme.payee {
        Payee::Provider => &line.key.provider,
        Payee::Beneficiary => &line.key.beneficiary,
    }
}

/// The journal that posts a programme's statement lines: expense debited (split by funder
/// shares by largest remainder), a payable credited per payee. Negative lines (claw-backs) flip
/// sides. Returns `None` when every line is zero: there is nothing to post.
pub fn posting_journal(programme: &Programme, lines: &[StatementLine]) -> Option<Journal> {
    let mut by_payee: BTreeMap<&str, i64> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.programme == programme.id) {
        *by_payee.entry(payee_of(programme, line)).or_default() += line.subsidy.0;
    }
    expense_against(programme, &by_payee, |payee| Account::Payable {
        programme: programme.id.clone(),
        payee: payee.to_owned(),
    })
}

/// Opening balances: what a programme paid each payee before it used Suanli. The money has
/// left the treasury already, so the journal debits the programme-year's expense (split by
/// funder shares as a run's would be) and credits each payee's paid account directly: no
/// payable was ever outstanding in Suanli. Returns `None` when every amount is zero.
pub fn opening_journal(programme: &Programme, paid: &BTreeMap<&str, i64>) -> Option<Journal> {
    expense_against(programme, paid, |payee| Account::Paid {
        programme: programme.id.clone(),
        payee: payee.to_owned(),
    })
}

/// The programme-year's expense (split by funder shares, largest remainder) against one
/// account per payee (`credit` names it). Negative amounts flip sides.
fn expense_against(
    programme: &Programme,
    by_payee: &BTreeMap<&str, i64>,
    credit: impl Fn(&str) -> Account,
) -> Option<Journal> {
    let total: i64 = by_payee.values().sum();
    let mut entries = Vec::new();
    for (payee, amount) in by_payee {
        if *amount != 0 {
            entries.push(Entry::signed(credit(payee), Fen(-amount)));
        }
    }
    if entries.is_empty() {
        return None;
    }
    if programme.funding.is_empty() {
        entries.insert(
            0,
            Entry::signed(
                Account::Expense {
                    programme: programme.id.clone(),
                    funder: None,
                },
                Fen(total),
            ),
        );
    } else {
        // Shares are exact decimals; bring them to one scale and apportion by their mantissas.
        let scale = programme
            .funding
            .iter()
            .map(|f| f.share.scale())
            .max()
            .unwrap_or(0);
        let weights: Vec<i128> = programme
            .funding
            .iter()
            .map(|f| {
                let mut share = f.share;
                share.rescale(scale);
                share.mantissa()
            })
            .collect();
        let parts = apportion(&weights, i128::from(total).abs());
        for (share, part) in programme.funding.iter().zip(parts).rev() {
            let part = i64::try_from(part).expect("part ≤ total fits i64");
            let signed = if total < 0 { Fen(-part) } else { Fen(part) };
            if signed.0 != 0 {
                entries.insert(
                    0,
                    Entry::signed(
                        Account::Expense {
                            programme: programme.id.clone(),
                            funder: Some(share.funder.clone()),
                        },
                        signed,
                    ),
                );
            }
        }
    }
    Some(Journal::new(entries).expect("posting journal balances by construction"))
}

/// What a payee's payments of one programme paid out on whose behalf (docs/rules.md, "Paid
/// out"): per beneficiary, and what exceeds every amount still settled (a receivable from the
/// payee after claw-backs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution<B = String> {
    pub paid_out: BTreeMap<B, Fen>,
    pub unattributed: Fen,
}

/// Attributes a payee's payments of one programme to the beneficiaries its payable was settled
/// for, first in, first out. Payments are recorded per payee and programme, so the journal
/// alone cannot say whose lines a payment to a provider was for; this is the one rule Suanli
/// applies, exactly and from posted data only.
///
/// `lines` are the payee's posted run lines of the programme in posting order, each as (the
/// line it settles: original period and key, its beneficiary, the amount); see [`Payable`].
/// `paid` is what payments to the payee recorded in total; it covers the slices from the
/// oldest. Every slice is at least zero, so what each beneficiary is attributed lies between
/// zero and what is settled for it with this payee, and the attributions sum to
/// min(paid, Σ amounts) exactly.
pub fn attribute_payments<K: Hash + Eq>(
    lines: impl IntoIterator<Item = (K, String, Fen)>,
    paid: Fen,
) -> Attribution {
    let mut payable = Payable::default();
    for (line, beneficiary, amount) in lines {
        payable.push(line, beneficiary, amount);
    }
    payable.attribute(paid)
}

/// A payee's payable of one programme as its posted lines leave it, slice by slice, kept so
/// that the lines of a run posted later are added to it rather than every line read again.
///
/// A positive amount adds a slice at the end of the payable; a negative one (a claw-back)
/// withdraws the most recent slices of the same line first (then of the same beneficiary, then
/// any, should a payee model have changed between runs). Lines are `K` (original period and
/// key, or a number standing for them) and beneficiaries `B`.
#[derive(Clone, Debug)]
pub struct Payable<K, B> {
    slices: Vec<Slice<B>>,
    /// Per line, its newest slice; each slice names the line's one before it.
    newest: HashMap<K, u32>,
}

/// A positive amount settled for a beneficiary, less what claw-backs withdrew from it.
#[derive(Clone, Debug)]
struct Slice<B> {
    beneficiary: B,
    amount: i64,
    /// The same line's slice before this one ([`NO_SLICE`] for its first).
    older: u32,
}

const NO_SLICE: u32 = u32::MAX;

impl<K, B> Default for Payable<K, B> {
    fn default() -> Self {
        Payable {
            slices: Vec::new(),
            newest: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq, B: Eq> Payable<K, B> {
    /// Adds the next posted line of the payable, in posting order.
    pub fn push(&mut self, line: K, beneficiary: B, amount: Fen) {
        if amount.0 > 0 {
            let index = u32::try_from(self.slices.len()).expect("fewer than 2^32 slices");
            assert!(index != NO_SLICE, "fewer than 2^32 - 1 slices");
            let older = self.newest.insert(line, index).unwrap_or(NO_SLICE);
            self.slices.push(Slice {
                beneficiary,
                amount: amount.0,
                older,
            });
            return;
        }
        let mut owed = -i128::from(amount.0);
        // The line's own slices, newest first (those withdrawn already give nothing).
        let mut at = self.newest.get(&line).copied().unwrap_or(NO_SLICE);
        while owed > 0 && at != NO_SLICE {
            let slice = &mut self.slices[at as usize];
            let take = owed.min(i128::from(slice.amount));
            slice.amount -= i64::try_from(take).expect("at most a slice");
            owed -= take;
            at = slice.older;
        }
        // Then the beneficiary's, then anyone's, newest first.
        for same_beneficiary in [true, false] {
            for slice in self.slices.iter_mut().rev() {
                if owed == 0 {
                    break;
                }
                if slice.amount == 0 || (same_beneficiary && slice.beneficiary != beneficiary) {
                    continue;
                }
                let take = owed.min(i128::from(slice.amount));
                slice.amount -= i64::try_from(take).expect("at most a slice");
                owed -= take;
            }
        }
    }

    /// What payments of `paid` in total pay out, covering the slices from the oldest.
    pub fn attribute(&self, paid: Fen) -> Attribution<B>
    where
        B: Ord + Clone,
    {
        let mut left = paid.max(Fen::ZERO).0;
        let mut out = Attribution {
            paid_out: BTreeMap::new(),
            unattributed: Fen::ZERO,
        };
        for slice in &self.slices {
            if left == 0 {
                break;
            }
            let take = left.min(slice.amount);
            if take > 0 {
                let slot = out.paid_out.entry(slice.beneficiary.clone()).or_default();
                *slot = slot.plus(Fen(take));
                left -= take;
            }
        }
        out.unattributed = Fen(left);
        out
    }

    /// The slices kept (each positive line adds one).
    pub fn len(&self) -> usize {
        self.slices.len()
    }

    /// No positive line was added.
    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Category, ChipOrigin, Class, Registry};
    use crate::settlement::LineKey;
    use crate::usage::Period;

    fn line(programme: &str, beneficiary: &str, provider: &str, subsidy: i64) -> StatementLine {
        StatementLine {
            programme: programme.into(),
            period: Period {
                year: 2025,
                month: 3,
            },
            key: LineKey {
                beneficiary: beneficiary.into(),
                provider: provider.into(),
                class: Class {
                    category: Category::Compute,
                    chip_origin: Some(ChipOrigin::Domestic),
                    registered_model: None,
                },
            },
            base: Fen(subsidy * 4),
            ratio: rust_decimal::Decimal::new(25, 2),
            demand: Fen(subsidy),
            subsidy: Fen(subsidy),
            cut_by: None,
        }
    }

    #[test]
    fn unbalanced_journals_cannot_be_built() {
        // Proves a Journal value is balanced: construction refuses anything else.
        let a = Account::Paid {
            programme: "p".into(),
            payee: "x".into(),
        };
        assert!(matches!(
            Journal::new(vec![
                Entry::signed(a.clone(), Fen(5)),
                Entry::signed(a.clone(), Fen(-4))
            ]),
            Err(JournalError::Unbalanced { .. })
        ));
        assert!(matches!(Journal::new(vec![]), Err(JournalError::Empty)));
        assert!(matches!(
            Journal::new(vec![Entry {
                account: a.clone(),
                debit: Fen(1),
                credit: Fen(1)
            }]),
            Err(JournalError::BadEntry(_))
        ));
        let j = Journal::new(vec![
            Entry::signed(a.clone(), Fen(5)),
            Entry::signed(a, Fen(-5)),
        ])
        .unwrap();
        assert_eq!(j.reversal().entries()[0].credit, Fen(5));
    }

    #[test]
    fn posting_splits_expense_by_funder_shares_and_credits_payees() {
        // Proves R10: city/district shares by largest remainder, payables per payee provider,
        // and claw-backs flipping sides.
        let (registry, _) =
            Registry::from_toml("hz", include_str!("../../../examples/hangzhou-2025.toml"))
                .unwrap();
        let municipal = registry.programme("hz-municipal-2025").unwrap();
        let lines = [
            line("hz-municipal-2025", "ent-a", "dc-a", 101),
            line("hz-municipal-2025", "ent-b", "dc-b", 200),
        ];
        let journal = posting_journal(municipal, &lines).unwrap();
        let text: Vec<String> = journal
            .entries()
            .iter()
            .map(|e| format!("{} {} {}", e.account, e.debit, e.credit))
            .collect();
        assert_eq!(
            text,
            [
                "expense:hz-municipal-2025:city 1.51 0.00",
                "expense:hz-municipal-2025:district 1.50 0.00",
                "payable:hz-municipal-2025:dc-a 0.00 1.01",
                "payable:hz-municipal-2025:dc-b 0.00 2.00",
            ]
        );
        let clawback =
            posting_journal(municipal, &[line("hz-municipal-2025", "ent-a", "dc-a", -3)]).unwrap();
        let text: Vec<String> = clawback
            .entries()
            .iter()
            .map(|e| format!("{} {} {}", e.account, e.debit, e.credit))
            .collect();
        assert_eq!(
            text,
            [
                "expense:hz-municipal-2025:city 0.00 0.02",
                "expense:hz-municipal-2025:district 0.00 0.01",
                "payable:hz-municipal-2025:dc-a 0.03 0.00",
            ]
        );
        assert!(
            posting_journal(municipal, &[line("hz-municipal-2025", "ent-a", "dc-a", 0)]).is_none()
        );
        // The national programme pays beneficiaries and has no funder split.
        let national = registry.programme("national-intelligence-2025").unwrap();
        let j = posting_journal(
            national,
            &[line("national-intelligence-2025", "ent-a", "dc-a", 7)],
        )
        .unwrap();
        assert_eq!(
            j.entries()[0].account.to_string(),
            "expense:national-intelligence-2025"
        );
        assert_eq!(
            j.entries()[1].account.to_string(),
            "payable:national-intelligence-2025:ent-a"
        );
    }

    #[test]
    fn opening_balances_debit_expense_and_credit_paid() {
        // Proves the opening journal: money paid before Suanli is expense (split by funder
        // shares like a run's) against each payee's paid account, never a payable.
        let (registry, _) =
            Registry::from_toml("hz", include_str!("../../../examples/hangzhou-2025.toml"))
                .unwrap();
        let municipal = registry.programme("hz-municipal-2025").unwrap();
        let paid = BTreeMap::from([("dc-a", 101), ("dc-b", 0)]);
        let journal = opening_journal(municipal, &paid).unwrap();
        let text: Vec<String> = journal
            .entries()
            .iter()
            .map(|e| format!("{} {} {}", e.account, e.debit, e.credit))
            .collect();
        assert_eq!(
            text,
            [
                "expense:hz-municipal-2025:city 0.51 0.00",
                "expense:hz-municipal-2025:district 0.50 0.00",
                "paid:hz-municipal-2025:dc-a 0.00 1.01",
            ]
        );
        assert!(opening_journal(municipal, &BTreeMap::from([("dc-a", 0)])).is_none());
    }

    #[test]
    fn payments_are_attributed_first_in_first_out_after_claw_backs() {
        // Proves the paid-out rule: payments cover the payee's settled slices from the oldest;
        // a claw-back withdraws its own line's newest slice first, so a beneficiary is never
        // attributed more than is settled for it, and an over-payment is left unattributed.
        let lines = |v: &[(&str, &str, i64)]| -> Vec<(String, String, Fen)> {
            v.iter()
                .map(|(l, b, a)| ((*l).to_owned(), (*b).to_owned(), Fen(*a)))
                .collect()
        };
        let posted = lines(&[("x", "b2", 50), ("y", "b1", 100), ("x", "b2", -30)]);
        let a = attribute_payments(posted.clone(), Fen(120));
        assert_eq!(
            a.paid_out,
            BTreeMap::from([("b1".to_owned(), Fen(100)), ("b2".to_owned(), Fen(20))])
        );
        assert_eq!(a.unattributed, Fen::ZERO);
        // Paid 150 before the claw-back of 30: 30 is owed back by the payee.
        let a = attribute_payments(posted.clone(), Fen(150));
        assert_eq!(a.unattributed, Fen(30));
        assert_eq!(a.paid_out.values().copied().sum::<Fen>(), Fen(120));
        // Paid 60: b2's 20 (its first slice, left after the claw-back), then 40 of b1's 100.
        let a = attribute_payments(posted, Fen(60));
        assert_eq!(
            a.paid_out,
            BTreeMap::from([("b1".to_owned(), Fen(40)), ("b2".to_owned(), Fen(20))])
        );
        // A late record of an earlier line goes to the end: what was paid stays attributed.
        let a = attribute_payments(
            lines(&[("m", "b1", 100), ("a", "b2", 50), ("m", "b1", 20)]),
            Fen(150),
        );
        assert_eq!(
            a.paid_out,
            BTreeMap::from([("b1".to_owned(), Fen(100)), ("b2".to_owned(), Fen(50))])
        );
    }
}
