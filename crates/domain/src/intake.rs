//! Intake of a file of usage records for an offline settlement (`suanli simulate`): period
//! filter, duplicate and conflict detection, validation, and the line bases (R6).
//! Pure: the caller reads the file and hands over the rows.

use std::collections::{BTreeMap, HashMap};

use crate::money::Fen;
use crate::registry::{Class, Registry};
use crate::settlement::LineKey;
use crate::usage::{PROVIDER_MONTH_FEN_MAX, Period, RejectCode, Rejection, UsageRecord, validate};

/// One data row of a usage file: its line number and its parse outcome. `provider` and
/// `record_id` are the raw texts, kept to name the row in the rejects file.
#[derive(Clone, Debug)]
pub struct Row {
    pub line: u64,
    pub provider: String,
    pub record_id: String,
    /// The row's end time when it parses, so out-of-period rows can be ignored even when
    /// another field is bad.
    pub end_period: Option<Period>,
    pub parsed: Result<UsageRecord, Rejection>,
}

/// A rejected row, as written to the rejects file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedRow {
    pub line: u64,
    pub provider: String,
    pub record_id: String,
    pub rejection: Rejection,
}

/// What an intake decided about every row.
#[derive(Clone, Debug, Default)]
pub struct Intake {
    pub read: u64,
    /// Rows whose end falls outside the period: ignored, not rejected.
    pub ignored: u64,
    /// Accepted unique records with their classification from the SKU.
    pub accepted: Vec<(UsageRecord, Class)>,
    /// Rejected rows, by line number.
    pub rejected: Vec<RejectedRow>,
    /// Rows identical to an earlier row of the same (provider, record_id): counted once.
    pub duplicates: u64,
}

impl Intake {
    /// Σ amount per settlement line (R6).
    pub fn bases(&self) -> BTreeMap<LineKey, Fen> {
        let mut bases: BTreeMap<LineKey, Fen> = BTreeMap::new();
        for (record, class) in &self.accepted {
            let key = LineKey {
                beneficiary: record.beneficiary.clone(),
                provider: record.provider.clone(),
                class: *class,
            };
            let base = bases.entry(key).or_default();
            *base = base.plus(record.amount);
        }
        bases
    }
}

/// The amounts of each provider's accepted records in the period, held to
/// [`PROVIDER_MONTH_FEN_MAX`] as the server holds them: records are admitted in (provider,
/// record id) order, and one that would pass the bound is `amount_out_of_range`.
#[derive(Default)]
struct ProviderMonth {
    totals: HashMap<String, i64>,
}

impl ProviderMonth {
    fn admit(&mut self, record: &UsageRecord, period: Period) -> Result<(), Rejection> {
        let total = self.totals.entry(record.provider.clone()).or_default();
        // Both are at most 10^15 and 10^13 (validated): the sum cannot overflow.
        let after = *total + record.amount.0;
        if after > PROVIDER_MONTH_FEN_MAX {
            return Err(Rejection {
                code: RejectCode::AmountOutOfRange,
                field: "amount",
                message: format!(
                    "amount {} of record {:?} would bring provider {:?}'s records of {period} to {}, above the largest total of one provider in a month, {}",
                    record.amount,
                    record.record_id,
                    record.provider,
                    Fen(after),
                    Fen(PROVIDER_MONTH_FEN_MAX)
                ),
            });
        }
        *total = after;
        Ok(())
    }
}

/// Decides every row of a usage file for `period`. The outcome does not depend on row order:
/// rows of one (provider, record_id) with different content are all rejected as conflicts,
/// since no order-free rule could pick one of them.
pub fn intake(registry: &Registry, period: Period, rows: Vec<Row>) -> Intake {
    let mut out = Intake {
        read: rows.len() as u64,
        ..Intake::default()
    };
    let mut groups: HashMap<(String, String), Vec<(u64, UsageRecord)>> = HashMap::new();
    for row in rows {
        if row.end_period.is_some_and(|p| p != period) {
            out.ignored += 1;
            continue;
        }
        match row.parsed {
            Err(rejection) => out.rejected.push(RejectedRow {
                line: row.line,
                provider: row.provider,
                record_id: row.record_id,
                rejection,
            }),
            Ok(record) => groups
                .entry((record.provider.clone(), record.record_id.clone()))
                .or_default()
                .push((row.line, record)),
        }
    }
    let mut provider_month = ProviderMonth::default();
    let mut groups: Vec<_> = groups.into_values().collect();
    groups
        .iter_mut()
        .for_each(|g| g.sort_by_key(|(line, _)| *line));
    groups.sort_by(|a, b| {
        (&a[0].1.provider, &a[0].1.record_id).cmp(&(&b[0].1.provider, &b[0].1.record_id))
    });
    for group in groups {
        let (first_line, first) = &group[0];
        if group.iter().any(|(_, r)| !r.same_content(first)) {
            let lines: Vec<String> = group.iter().map(|(l, _)| l.to_string()).collect();
            for (line, record) in &group {
                out.rejected.push(RejectedRow {
                    line: *line,
                    provider: record.provider.clone(),
                    record_id: record.record_id.clone(),
                    rejection: Rejection {
                        code: RejectCode::Conflict,
                        field: "record_id",
                        message: format!(
                            "record_id {} of provider {} appears with different content on lines {}",
                            record.record_id,
                            record.provider,
                            lines.join(", ")
                        ),
                    },
                });
            }
            continue;
        }
        out.duplicates += group.len() as u64 - 1;
        match validate(registry, first).and_then(|class| {
            provider_month.admit(first, period)?;
            Ok(class)
        }) {
            Ok(class) => out.accepted.push((first.clone(), class)),
            Err(rejection) => out.rejected.push(RejectedRow {
                line: *first_line,
                provider: first.provider.clone(),
                record_id: first.record_id.clone(),
                rejection,
            }),
        }
    }
    out.rejected.sort_by_key(|r| r.line);
    out
}
