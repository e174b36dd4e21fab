//! Capacity per SKU and clock hour (R3): a record's quantity is spread over the clock hours it
//! overlaps, pro rata to the time it spends in each, so the sum of all records' shares of an
//! hour can be compared with the SKU's `capacity` (units per hour).

use chrono::{DateTime, FixedOffset};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::usage::UsageRecord;

/// Clock hours are counted from the Unix epoch. Asia/Shanghai is a whole number of hours from
/// UTC, so these are also Shanghai's clock hours.
pub const HOUR_SECONDS: i64 = 3600;

/// The longest record whose quantity is spread hour by hour: a leap year. A longer record is
/// implausible for metered usage and would make one record touch too many hour rows.
pub const RECORD_HOURS_MAX: i64 = 24 * 366;

/// Decimal places of an hour's share. The last hour takes the remainder, so the shares of one
/// record always sum to its quantity exactly.
pub const SHARE_DECIMALS: u32 = 12;

/// The hour index (hours since the Unix epoch) holding an instant.
pub fn hour_of(at: DateTime<FixedOffset>) -> i64 {
    at.timestamp().div_euclid(HOUR_SECONDS)
}

/// `(hour, share)` for every clock hour the record overlaps, in order. `None` when the record
/// is not after its start or spans more than [`RECORD_HOURS_MAX`] hours.
pub fn hour_shares(record: &UsageRecord) -> Option<Vec<(i64, Decimal)>> {
    hour_shares_between(
        record.start.timestamp_nanos_opt()?,
        record.end.timestamp_nanos_opt()?,
        record.quantity,
    )
}

/// [`hour_shares`] of a quantity between two instants given as Unix nanoseconds.
pub fn hour_shares_between(
    start_ns: i64,
    end_ns: i64,
    quantity: Decimal,
) -> Option<Vec<(i64, Decimal)>> {
    let mut shares = Vec::new();
    hour_shares_into(start_ns, end_ns, quantity, &mut shares).then_some(shares)
}

/// [`hour_shares_between`] into a buffer the caller reuses (cleared first), so the ingest path
/// allocates nothing per record; `false` where that gives `None`.
pub fn hour_shares_into(
    start_ns: i64,
    end_ns: i64,
    quantity: Decimal,
    shares: &mut Vec<(i64, Decimal)>,
) -> bool {
    shares.clear();
    let filled = fill_hour_shares(start_ns, end_ns, quantity, shares).is_some();
    if !filled {
        shares.clear();
    }
    filled
}

fn fill_hour_shares(
    start_ns: i64,
    end_ns: i64,
    quantity: Decimal,
    shares: &mut Vec<(i64, Decimal)>,
) -> Option<()> {
    if end_ns <= start_ns {
        return None;
    }
    let hour_ns = i128::from(HOUR_SECONDS) * 1_000_000_000;
    let first = i128::from(start_ns).div_euclid(hour_ns);
    let last = (i128::from(end_ns) - 1).div_euclid(hour_ns);
    if last - first + 1 > i128::from(RECORD_HOURS_MAX) {
        return None;
    }
    if first == last {
        // The common case: the whole quantity in one hour, no division.
        shares.push((i64::try_from(first).ok()?, quantity));
        return Some(());
    }
    let duration = Decimal::from(end_ns - start_ns);
    shares.reserve(usize::try_from(last - first + 1).ok()?);
    let mut given = Decimal::ZERO;
    for hour in first..=last {
        let hour_i64 = i64::try_from(hour).ok()?;
        if hour == last {
            shares.push((hour_i64, quantity - given));
            break;
        }
        let from = i128::from(start_ns).max(hour * hour_ns);
        let to = i128::from(end_ns).min((hour + 1) * hour_ns);
        let overlap = Decimal::from(i64::try_from(to - from).ok()?);
        let share = (quantity.checked_mul(overlap)? / duration)
            .round_dp_with_strategy(SHARE_DECIMALS, RoundingStrategy::MidpointAwayFromZero);
        given += share;
        shares.push((hour_i64, share));
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Fen;

    fn record(start: &str, end: &str, quantity: &str) -> UsageRecord {
        UsageRecord {
            provider: "p".into(),
            record_id: "r".into(),
            beneficiary: "b".into(),
            sku: "s".into(),
            start: DateTime::parse_from_rfc3339(start).unwrap(),
            end: DateTime::parse_from_rfc3339(end).unwrap(),
            quantity: quantity.parse().unwrap(),
            amount: Fen(0),
        }
    }

    // Shares are pro rata to the time in each hour and sum to the quantity exactly.
    #[test]
    fn shares_are_pro_rata_and_sum_exactly() {
        let cases = [
            (
                "2025-03-01T00:00:00Z",
                "2025-03-01T01:00:00Z",
                "8",
                vec!["8"],
            ),
            (
                "2025-03-01T00:30:00Z",
                "2025-03-01T01:30:00Z",
                "8",
                vec!["4", "4"],
            ),
            (
                "2025-03-01T00:00:00Z",
                "2025-03-01T03:00:00Z",
                "10",
                vec!["3.333333333333", "3.333333333333", "3.333333333334"],
            ),
            (
                "2025-03-01T08:15:00+08:00",
                "2025-03-01T08:30:00+08:00",
                "1",
                vec!["1"],
            ),
        ];
        for (start, end, q, expected) in cases {
            let shares = hour_shares(&record(start, end, q)).expect("in range");
            let got: Vec<String> = shares
                .iter()
                .map(|(_, s)| s.normalize().to_string())
                .collect();
            assert_eq!(got, expected, "{start}..{end} q={q}");
            let sum: Decimal = shares.iter().map(|(_, s)| *s).sum();
            assert_eq!(sum, q.parse::<Decimal>().unwrap());
        }
    }

    // Records that are empty or longer than a year get no shares.
    #[test]
    fn out_of_range_records_have_no_shares() {
        assert!(
            hour_shares(&record("2025-03-01T01:00:00Z", "2025-03-01T01:00:00Z", "1")).is_none()
        );
        assert!(
            hour_shares(&record("2024-01-01T00:00:00Z", "2025-03-01T00:00:00Z", "1")).is_none()
        );
    }

    // The buffer form gives what the allocating form gives, whatever the buffer held before.
    #[test]
    fn shares_into_a_reused_buffer_match() {
        let mut buf = vec![(7, Decimal::ONE); 5];
        let ns = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap()
        };
        let spans = [
            ("2025-03-01T00:30:00Z", "2025-03-01T01:30:00Z"),
            ("2025-03-01T00:00:00Z", "2025-03-01T03:00:00Z"),
            ("2025-03-01T05:10:00Z", "2025-03-01T05:20:00Z"),
            ("2025-03-01T05:10:00Z", "2025-03-01T05:10:00Z"),
            ("2024-01-01T00:00:00Z", "2025-03-01T00:00:00Z"),
        ];
        for (start, end) in spans {
            let q: Decimal = "10".parse().unwrap();
            let fresh = hour_shares_between(ns(start), ns(end), q);
            let filled = hour_shares_into(ns(start), ns(end), q, &mut buf);
            assert_eq!(filled, fresh.is_some(), "{start}..{end}");
            assert_eq!(buf, fresh.unwrap_or_default(), "{start}..{end}");
        }
    }
}
