//! What posted runs settled and what payments paid out of it, as the balance figures use them
//! (docs/rules.md, "The words for money"): posted amounts per programme, beneficiary and
//! month; settled per (beneficiary, programme, payee); each payee's payable of a programme,
//! slice by slice, to attribute its payments first in, first out.
//!
//! Kept from one look-up to the next and brought up to date by what changed: a posted run is
//! never changed and a programme's runs are posted in run id order, so each posted run's lines
//! are read once, by the run's key, and added; payments are journals, which are only ever
//! added, so only the journals after the last one read are summed. At city scale (800,000
//! lines a month) reading every posted line again after each post or payment took seconds
//! that grew with every month.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use suanli_domain::ledger::{Account, Payable};
use suanli_domain::money::Fen;
use suanli_domain::usage::Period;
use suanli_store::ledger::{self as rows, PostedLineRow};
use suanli_store::sql::Sql;

use crate::balances::PaidOut;
use crate::maintained::Names;
use crate::settlement::Result;

/// One programme's postings: per beneficiary (all periods), and per original period.
pub(crate) type ProgrammePosted = (HashMap<String, Fen>, BTreeMap<Period, Fen>);

/// Posted run lines summed, for the finance overview and the enterprise page.
#[derive(Clone, Default)]
pub(crate) struct Posted {
    /// Per programme: what runs posted per beneficiary (all periods), and per original period.
    pub(crate) by_programme: HashMap<String, ProgrammePosted>,
    /// Per beneficiary: per programme, per original period.
    pub(crate) by_beneficiary: HashMap<String, BTreeMap<String, BTreeMap<Period, Fen>>>,
}

/// A line as its payee's payable knows it: original period, beneficiary, provider, category,
/// chip origin and registered model, each by its number in [`Names`].
type LineId = [u32; 6];

/// A programme and a payee, by their numbers in [`Names`].
type GroupKey = (u32, u32);

/// A payee's payable of one programme, what payments paid it, and their attribution per
/// beneficiary while neither changes.
struct Group {
    payable: Payable<LineId, u32>,
    paid: Fen,
    attributed: Option<FxHashMap<u32, Fen>>,
}

impl Group {
    fn attributed(&mut self) -> &FxHashMap<u32, Fen> {
        let (payable, paid) = (&self.payable, self.paid);
        self.attributed.get_or_insert_with(|| {
            payable
                .attribute(paid)
                .paid_out
                .into_iter()
                .collect::<FxHashMap<u32, Fen>>()
        })
    }
}

/// A confirmed opening balance's part: settled and paid out at once.
type OpeningPart = (String, Fen);

/// See the module's documentation.
#[derive(Default)]
pub(crate) struct PostedBook {
    names: Names,
    /// The posted runs added, and per programme (by number) the newest of them.
    added: FxHashSet<i64>,
    newest: FxHashMap<u32, i64>,
    posted: Arc<Posted>,
    /// Per (programme, payee), by number: its payable, from the lines with an amount.
    groups: FxHashMap<GroupKey, Group>,
    /// Per beneficiary (by number): what posted runs settled per (programme, payee).
    settled: FxHashMap<u32, Vec<(GroupKey, Fen)>>,
    /// Per `paid:` account: what payments moved to it, through journal `journals`.
    payments: FxHashMap<String, i64>,
    /// The group each `paid:` account belongs to.
    accounts: FxHashMap<String, GroupKey>,
    /// The last journal read (its id).
    journals: i64,
    /// Confirmed opening balances per (beneficiary, programme), per payee; read for
    /// `openings` confirmed imports.
    opening: HashMap<(String, String), Vec<OpeningPart>>,
    /// Per programme, the opening balances it paid out.
    opening_paid: HashMap<String, Fen>,
    openings: Option<i64>,
    /// How many times posted runs' lines were read (tests see where the work was done).
    runs_read: u64,
}

impl PostedBook {
    /// Brings the book up to date in `tx` (one snapshot): the posted runs not added yet, the
    /// payment journals after the last one read, and the opening balances if `openings` (the
    /// count of confirmed imports) changed. A run of a programme posted with a lower id than
    /// one added already (which the posting rules rule out) makes it read everything again.
    /// Each posted run is added whole or not at all, so an error leaves a book that is right
    /// for what it added.
    pub(crate) fn update(&mut self, tx: &mut dyn Sql, openings: i64) -> Result<()> {
        let posted = rows::posted_runs(tx)?;
        let out_of_order = posted.iter().any(|(run, programme)| {
            !self.added.contains(run)
                && self
                    .names
                    .id(programme)
                    .and_then(|p| self.newest.get(&p))
                    .is_some_and(|newest| run < newest)
        });
        let posted_ids: FxHashSet<i64> = posted.iter().map(|(run, _)| *run).collect();
        if out_of_order || self.added.iter().any(|run| !posted_ids.contains(run)) {
            *self = PostedBook {
                opening: std::mem::take(&mut self.opening),
                opening_paid: std::mem::take(&mut self.opening_paid),
                openings: self.openings,
                runs_read: self.runs_read,
                ..PostedBook::default()
            };
        }
        for (run, programme) in &posted {
            if !self.added.contains(run) {
                let started = std::time::Instant::now();
                let lines = rows::lines_of_posted_run(tx, *run)?;
                self.runs_read += 1;
                let (count, read) = (lines.len(), started.elapsed());
                self.add_run(*run, programme, lines);
                tracing::info!(
                    run,
                    lines = count,
                    read_seconds = read.as_secs_f64(),
                    seconds = started.elapsed().as_secs_f64(),
                    "balance figures: a posted run's lines added"
                );
            }
        }
        self.follow_payments(tx)?;
        if self.openings != Some(openings) {
            let mut opening: HashMap<(String, String), Vec<OpeningPart>> = HashMap::new();
            let mut opening_paid: HashMap<String, Fen> = HashMap::new();
            for (programme, _, l) in suanli_store::opening::confirmed_lines(tx)? {
                let amount = Fen(l.amount_fen);
                let slot = opening_paid.entry(programme.clone()).or_default();
                *slot = slot.plus(amount);
                opening
                    .entry((l.beneficiary, programme))
                    .or_default()
                    .push((l.payee, amount));
            }
            self.opening = opening;
            self.opening_paid = opening_paid;
            self.openings = Some(openings);
        }
        Ok(())
    }

    /// Adds a posted run's lines, in line order.
    fn add_run(&mut self, run: i64, programme: &str, lines: Vec<PostedLineRow>) {
        let p = self.names.intern_str(programme);
        let posted = Arc::make_mut(&mut self.posted);
        let (by_beneficiary, by_period) =
            posted.by_programme.entry(programme.to_owned()).or_default();
        for l in lines {
            let amount = Fen(l.amount_fen);
            add_to(by_beneficiary, &l.key.beneficiary, amount);
            let period = Period::parse(&l.original_period);
            if let Some(period) = period {
                let slot = by_period.entry(period).or_default();
                *slot = slot.plus(amount);
                let periods = match posted.by_beneficiary.get_mut(&l.key.beneficiary) {
                    Some(p) => p,
                    None => posted
                        .by_beneficiary
                        .entry(l.key.beneficiary.clone())
                        .or_default(),
                };
                let slot = match periods.get_mut(programme) {
                    Some(p) => p,
                    None => periods.entry(programme.to_owned()).or_default(),
                }
                .entry(period)
                .or_default();
                *slot = slot.plus(amount);
            }
            if amount.0 == 0 {
                continue;
            }
            // What payments are attributed to: the lines with an amount, in posting order; a
            // line is the same line in every run that adjusts it (its original period and key).
            let names = &mut self.names;
            let beneficiary = names.intern_str(&l.key.beneficiary);
            let payee = names.intern_str(&l.payee);
            let line: LineId = [
                names.intern_str(&l.original_period),
                beneficiary,
                names.intern_str(&l.key.provider),
                names.intern_str(&l.key.category),
                names.intern_str(&l.key.chip_origin),
                names.intern_str(&l.key.registered_model),
            ];
            let group = match self.groups.get_mut(&(p, payee)) {
                Some(g) => g,
                None => {
                    let account = Account::Paid {
                        programme: programme.to_owned(),
                        payee: l.payee.clone(),
                    }
                    .to_string();
                    let paid = Fen(self.payments.get(&account).copied().unwrap_or(0));
                    self.accounts.insert(account, (p, payee));
                    self.groups.entry((p, payee)).or_insert(Group {
                        payable: Payable::default(),
                        paid,
                        attributed: None,
                    })
                }
            };
            group.payable.push(line, beneficiary, amount);
            group.attributed = None;
            let settled = self.settled.entry(beneficiary).or_default();
            match settled.iter_mut().find(|(k, _)| *k == (p, payee)) {
                Some((_, s)) => *s = s.plus(amount),
                None => settled.push(((p, payee), amount)),
            }
        }
        self.added.insert(run);
        let newest = self.newest.entry(p).or_insert(run);
        *newest = (*newest).max(run);
    }

    /// Sums the payment journals after the last one read into each `paid:` account. Journals
    /// are only added, under the settlement lock, so their ids commit in order: those after
    /// the last id read are exactly the new ones.
    fn follow_payments(&mut self, tx: &mut dyn Sql) -> Result<()> {
        let last = rows::journals_mark(tx)?;
        if last == self.journals {
            return Ok(());
        }
        for (account, amount) in rows::net_credits_of_kind(tx, "payment", self.journals)? {
            if let Some(key) = self.accounts.get(&account)
                && let Some(g) = self.groups.get_mut(key)
            {
                g.paid = g.paid.plus(Fen(amount));
                g.attributed = None;
            }
            *self.payments.entry(account).or_default() += amount;
        }
        self.journals = last;
        Ok(())
    }

    /// How many times a posted run's lines were read.
    pub(crate) fn runs_read(&self) -> u64 {
        self.runs_read
    }

    /// Posted amounts per programme, beneficiary and original period.
    pub(crate) fn posted(&self) -> Arc<Posted> {
        self.posted.clone()
    }

    /// What payments paid out of what was settled for `beneficiary` under `programme`, per
    /// payee (the beneficiary itself first, then providers by id); opening balances are
    /// settled and paid out at once.
    pub(crate) fn paid_out(&mut self, beneficiary: &str, programme: &str) -> Vec<PaidOut> {
        let mut by_payee: BTreeMap<(bool, String), (Fen, Fen)> = BTreeMap::new();
        if let (Some(b), Some(p)) = (self.names.id(beneficiary), self.names.id(programme)) {
            for ((q, payee), settled) in self.settled.get(&b).cloned().unwrap_or_default() {
                if q != p {
                    continue;
                }
                let paid_out = self
                    .groups
                    .get_mut(&(p, payee))
                    .and_then(|g| g.attributed().get(&b).copied())
                    .unwrap_or_default();
                let name = self.names.name(payee);
                let slot = by_payee
                    .entry((name != beneficiary, name.to_owned()))
                    .or_default();
                slot.0 = slot.0.plus(settled);
                slot.1 = slot.1.plus(paid_out);
            }
        }
        for (payee, amount) in self
            .opening
            .get(&(beneficiary.to_owned(), programme.to_owned()))
            .into_iter()
            .flatten()
        {
            let slot = by_payee
                .entry((payee != beneficiary, payee.clone()))
                .or_default();
            slot.0 = slot.0.plus(*amount);
            slot.1 = slot.1.plus(*amount);
        }
        by_payee
            .into_iter()
            .map(|((to_provider, payee), (settled, paid_out))| PaidOut {
                payee,
                to_beneficiary: !to_provider,
                settled,
                paid_out,
            })
            .collect()
    }

    /// What payments (and opening balances) paid out to `programme`'s payees: the credits of
    /// its `paid:` accounts of payees it settled lines for.
    pub(crate) fn paid_out_of_programme(&self, programme: &str) -> Fen {
        let payments = self.names.id(programme).map_or(Fen::ZERO, |p| {
            self.groups
                .iter()
                .filter(|((q, _), _)| *q == p)
                .map(|(_, g)| g.paid)
                .sum()
        });
        payments.plus(
            self.opening_paid
                .get(programme)
                .copied()
                .unwrap_or_default(),
        )
    }
}

fn add_to(map: &mut HashMap<String, Fen>, key: &str, amount: Fen) {
    match map.get_mut(key) {
        Some(slot) => *slot = slot.plus(amount),
        None => {
            map.insert(key.to_owned(), amount);
        }
    }
}
