//! The ledger model (R10): balanced double-entry journals in integer fen. A [`Journal`] can only
//! be built balanced; posting a statement debits the programme-year's expense (split by funder
//! shares where configured) and credits a payable to each payee.

use std::collections::BTreeMap;
use std::fmt;

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
pub struct Attribution {
    pub paid_out: BTreeMap<String, Fen>,
    pub unattributed: Fen,
}

/// Attributes a payee's payments of one programme to the beneficiaries its payable was settled
/// for, first in, first out. Payments are recorded per payee and programme, so the journal
/// alone cannot say whose lines a payment to a provider was for; this is the one rule Suanli
/// applies, exactly and from posted data only.
///
/// `lines` are the payee's posted run lines of the programme in posting order, each as (the
/// line it settles: original period and key, its beneficiary, the amount). A positive amount
/// adds a slice at the end of the payable; a negative one (a claw-back) withdraws the most
/// recent slices of the same line first (then of the same beneficiary, then any, should a
/// payee model have changed between runs). `paid` is what payments to the payee recorded in
/// total; it covers the slices from the oldest. Every slice is at least zero, so what each
/// beneficiary is attributed lies between zero and what is settled for it with this payee, and
/// the attributions sum to min(paid, Σ amounts) exactly.
pub fn attribute_payments<K: Ord + Clone>(
    lines: impl IntoIterator<Item = (K, String, Fen)>,
    paid: Fen,
) -> Attribution {
    struct Slice<K> {
        line: K,
        beneficiary: String,
        amount: i64,
    }
    let mut slices: Vec<Slice<K>> = Vec::new();
    // Per line, the indices of its slices still above zero, oldest first.
    let mut of_line: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (line, beneficiary, amount) in lines {
        if amount.0 > 0 {
            of_line.entry(line.clone()).or_default().push(slices.len());
            slices.push(Slice {
                line,
                beneficiary,
                amount: amount.0,
            });
            continue;
        }
        let mut owed = -i128::from(amount.0);
        // The line's own slices, newest first.
        if let Some(stack) = of_line.get_mut(&line) {
            while owed > 0 {
                let Some(&i) = stack.last() else { break };
                let take = owed.min(i128::from(slices[i].amount));
                slices[i].amount -= i64::try_from(take).expect("at most a slice");
                owed -= take;
                if slices[i].amount == 0 {
                    stack.pop();
                }
            }
        }
        // Then the beneficiary's, then anyone's, newest first.
        for same_beneficiary in [true, false] {
            for i in (0..slices.len()).rev() {
                if owed == 0 {
                    break;
                }
                if slices[i].amount == 0
                    || (same_beneficiary && slices[i].beneficiary != beneficiary)
                {
                    continue;
                }
                let take = owed.min(i128::from(slices[i].amount));
                slices[i].amount -= i64::try_from(take).expect("at most a slice");
                owed -= take;
                if slices[i].amount == 0
                    && let Some(stack) = of_line.get_mut(&slices[i].line)
                {
                    stack.retain(|&j| j != i);
                }
            }
        }
    }
    let mut left = paid.max(Fen::ZERO).0;
    let mut out = Attribution::default();
    for slice in &slices {
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
