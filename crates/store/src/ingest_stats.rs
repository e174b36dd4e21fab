//! Ingest statistics for the provider's console view: records received per (provider,
//! Asia/Shanghai day, outcome), rejects per (provider, reason) and a few example rejects per
//! reason. Written once for both backends through [`Sql`], inside the ingest group's own
//! transaction, so the counts are exactly the committed outcomes. The group is aggregated in
//! memory first: one upsert per (provider, day, outcome) and per (provider, reason) per commit.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};

use crate::sql::Sql;
use crate::{Candidate, Decision, Result};

/// Most example rejects kept per (provider, reason).
pub const EXAMPLES_PER_REASON_MAX: i64 = 5;
/// Longest example message and record id kept, in characters.
pub const EXAMPLE_CHARS_MAX: usize = 300;
/// Counts per `ingest_daily` upsert statement (4 parameters each, far below both backends'
/// limits).
const DAILY_ROWS_MAX: usize = 256;
/// Longest provider name counted (a rejected record may name anything).
pub const PROVIDER_CHARS_MAX: usize = 200;

/// A record refused before it reached the store (by validation), to be counted with its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Whose statistics it counts in: the provider token's id, or the record's provider field.
    pub provider: String,
    pub record_id: String,
    /// A stable reject code, e.g. `unknown_sku`.
    pub reason: String,
    /// The record's field it is about (`sku`, `quantity`, …), or empty.
    pub field: String,
    pub message: String,
}

/// The Asia/Shanghai calendar day (UTC+8, no daylight saving) of an instant.
pub fn shanghai_day(at: DateTime<Utc>) -> String {
    let offset = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    at.with_timezone(&offset).format("%Y-%m-%d").to_string()
}

/// At most `max` characters of `text`, with control characters escaped (`\u{0}`): a rejected
/// record's id or provider may hold a NUL, which PostgreSQL text cannot store, and the
/// statistics must be written the same on both backends.
fn clip(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One example reject of a (provider, reason): the record, the field it is about (`sku`,
/// `quantity`, …; empty when unknown, as for examples kept before fields were) and the engine's
/// message in English.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub record_id: String,
    pub field: String,
    pub message: String,
}

/// Longest field name kept (the engine's are short; anything longer is not one of them).
const FIELD_CHARS_MAX: usize = 40;

/// Counts a committed group: one outcome per candidate, plus the records rejected before it.
pub(crate) fn write(
    tx: &mut dyn Sql,
    candidates: &[&Candidate],
    decisions: &[Decision],
    rejected: &[Rejected],
    at: DateTime<Utc>,
) -> Result<()> {
    let day = shanghai_day(at);
    let at_text = crate::common::now_text(at);
    let mut daily: BTreeMap<(&str, &'static str), i64> = BTreeMap::new();
    let mut reasons: BTreeMap<(String, String), (i64, Vec<Example>)> = BTreeMap::new();
    let mut reject = |provider: &str, reason: &str, record_id: &str, field: &str, message: &str| {
        let slot = reasons
            .entry((clip(provider, PROVIDER_CHARS_MAX), reason.to_owned()))
            .or_default();
        slot.0 += 1;
        if (slot.1.len() as i64) < EXAMPLES_PER_REASON_MAX {
            slot.1.push(Example {
                record_id: clip(record_id, EXAMPLE_CHARS_MAX),
                field: clip(field, FIELD_CHARS_MAX),
                message: clip(message, EXAMPLE_CHARS_MAX),
            });
        }
    };
    for (c, d) in candidates.iter().zip(decisions) {
        let outcome = match d {
            Decision::Accepted => "accepted",
            Decision::Duplicate => "duplicate",
            Decision::Conflict => "conflict",
            Decision::OverCapacity(message) => {
                reject(
                    &c.record.provider,
                    "over_capacity",
                    &c.record.record_id,
                    // The capacity a record's quantity would pass (R3).
                    "quantity",
                    message,
                );
                "rejected"
            }
            Decision::OverProviderMonth(message) => {
                reject(
                    &c.record.provider,
                    "amount_out_of_range",
                    &c.record.record_id,
                    // The bound of a provider's month its amount would pass.
                    "amount",
                    message,
                );
                "rejected"
            }
        };
        *daily
            .entry((c.record.provider.as_str(), outcome))
            .or_default() += 1;
    }
    for r in rejected {
        reject(&r.provider, &r.reason, &r.record_id, &r.field, &r.message);
    }
    let rejected_clipped: Vec<String> = rejected
        .iter()
        .map(|r| clip(&r.provider, PROVIDER_CHARS_MAX))
        .collect();
    for p in &rejected_clipped {
        *daily.entry((p.as_str(), "rejected")).or_default() += 1;
    }
    // One multi-row upsert per up to DAILY_ROWS_MAX counts (a group usually has one per
    // provider) instead of one statement each: on PostgreSQL every statement is a round trip.
    let daily: Vec<_> = daily.into_iter().collect();
    for chunk in daily.chunks(DAILY_ROWS_MAX) {
        let mut sql =
            String::from("INSERT INTO ingest_daily (provider, day, outcome, records) VALUES ");
        let mut params = Vec::with_capacity(chunk.len() * 4);
        for (i, ((provider, outcome), n)) in chunk.iter().enumerate() {
            let k = i * 4;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${}, ${}, ${})", k + 1, k + 2, k + 3, k + 4));
            params.extend([
                (*provider).into(),
                day.as_str().into(),
                (*outcome).into(),
                (*n).into(),
            ]);
        }
        sql.push_str(
            " ON CONFLICT (provider, day, outcome) DO UPDATE SET records = ingest_daily.records + excluded.records",
        );
        tx.exec(&sql, &params)?;
    }
    for ((provider, reason), (n, examples)) in reasons {
        tx.exec(
            "INSERT INTO ingest_rejects (provider, reason, records, last_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (provider, reason) DO UPDATE SET records = ingest_rejects.records + excluded.records, last_at = excluded.last_at",
            &[
                provider.as_str().into(),
                reason.as_str().into(),
                n.into(),
                at_text.as_str().into(),
            ],
        )?;
        let kept = tx.query(
            "SELECT COUNT(*) FROM ingest_reject_examples WHERE provider = $1 AND reason = $2",
            &[provider.as_str().into(), reason.as_str().into()],
        )?;
        let kept = kept.first().map_or(Ok(0), |r| r[0].int())?;
        let room = usize::try_from(EXAMPLES_PER_REASON_MAX - kept).unwrap_or(0);
        for e in examples.into_iter().take(room) {
            tx.exec(
                "INSERT INTO ingest_reject_examples (provider, reason, record_id, field, message, at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (provider, reason, record_id) DO NOTHING",
                &[
                    provider.as_str().into(),
                    reason.as_str().into(),
                    e.record_id.into(),
                    e.field.into(),
                    e.message.into(),
                    at_text.as_str().into(),
                ],
            )?;
        }
    }
    Ok(())
}

/// Records received on one day with one outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyRow {
    pub day: String,
    pub outcome: String,
    pub records: i64,
}

/// Rejects of one reason, with up to [`EXAMPLES_PER_REASON_MAX`] examples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonRow {
    pub reason: String,
    pub records: i64,
    pub last_at: String,
    pub examples: Vec<Example>,
}

/// A provider's daily counts from `since_day` (YYYY-MM-DD) on, by day then outcome.
pub fn daily(tx: &mut dyn Sql, provider: &str, since_day: &str) -> Result<Vec<DailyRow>> {
    tx.query(
        "SELECT day, outcome, records FROM ingest_daily WHERE provider = $1 AND day >= $2 ORDER BY day, outcome",
        &[provider.into(), since_day.into()],
    )?
    .into_iter()
    .map(|r| {
        Ok(DailyRow {
            day: r[0].text()?,
            outcome: r[1].text()?,
            records: r[2].int()?,
        })
    })
    .collect()
}

/// A provider's rejects by reason, most frequent first, with their examples.
pub fn reasons(tx: &mut dyn Sql, provider: &str) -> Result<Vec<ReasonRow>> {
    let rows = tx.query(
        "SELECT reason, records, last_at FROM ingest_rejects WHERE provider = $1 ORDER BY records DESC, reason",
        &[provider.into()],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let reason = r[0].text()?;
        let examples = tx
            .query(
                "SELECT record_id, field, message FROM ingest_reject_examples WHERE provider = $1 AND reason = $2 ORDER BY at, record_id",
                &[provider.into(), reason.as_str().into()],
            )?
            .into_iter()
            .map(|e| {
                Ok(Example {
                    record_id: e[0].text()?,
                    field: e[1].text()?,
                    message: e[2].text()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(ReasonRow {
            reason,
            records: r[1].int()?,
            last_at: r[2].text()?,
            examples,
        });
    }
    Ok(out)
}
