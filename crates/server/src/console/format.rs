//! How the console writes money, times and links: CNY from integer fen with thousands
//! separators (integer arithmetic only), instants in Asia/Shanghai, percent-encoded query
//! values. HTML escaping is the templates' (askama escapes every interpolation).

use chrono::{DateTime, FixedOffset};
use suanli_domain::money::Fen;

/// `¥1,234,567.89` from integer fen; negatives as `-¥0.05`. Exact for every `i64`.
pub fn cny(amount: Fen) -> String {
    let abs = amount.0.unsigned_abs();
    let (yuan, fen) = (abs / 100, abs % 100);
    let digits = yuan.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if amount.0 < 0 { "-" } else { "" };
    format!("{sign}¥{grouped}.{fen:02}")
}

/// Asia/Shanghai: UTC+8 all year (China has no daylight saving time).
pub fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// An RFC 3339 instant as `2025-03-31 18:00` in Asia/Shanghai; unreadable text as it is.
pub fn shanghai_time(text: &str) -> String {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t
            .with_timezone(&shanghai())
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        Err(_) => text.to_owned(),
    }
}

/// Percent-encodes a query value (everything but unreserved ASCII).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `part / whole` in tenths of a percent, clamped to 0..=1000, by integer arithmetic.
pub fn per_mille(part: Fen, whole: Fen) -> i64 {
    if whole.0 <= 0 || part.0 <= 0 {
        return 0;
    }
    let p = i128::from(part.0) * 1000 / i128::from(whole.0);
    p.clamp(0, 1000) as i64
}

/// A per-mille value as a CSS percentage with one decimal: 905 → `90.5%`.
pub fn percent(per_mille: i64) -> String {
    format!("{}.{}%", per_mille / 10, per_mille % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The one money formatter: zero, one fen, grouping at every length, negatives, the extremes.
    #[test]
    fn cny_formats_fen_exactly() {
        for (fen, text) in [
            (0, "¥0.00"),
            (1, "¥0.01"),
            (-1, "-¥0.01"),
            (99, "¥0.99"),
            (100, "¥1.00"),
            (99_999, "¥999.99"),
            (100_000, "¥1,000.00"),
            (123_456_789, "¥1,234,567.89"),
            (-123_456_789, "-¥1,234,567.89"),
            (800_000_000, "¥8,000,000.00"),
            (25_000_000_000, "¥250,000,000.00"),
            (i64::MAX, "¥92,233,720,368,547,758.07"),
            (i64::MIN, "-¥92,233,720,368,547,758.08"),
        ] {
            assert_eq!(cny(Fen(fen)), text, "{fen} fen");
        }
    }

    // Times are shown in Asia/Shanghai whatever offset they were written in.
    #[test]
    fn shanghai_time_converts_offsets() {
        assert_eq!(shanghai_time("2025-03-31T16:30:00Z"), "2025-04-01 00:30");
        assert_eq!(
            shanghai_time("2025-03-31T16:30:00.123+08:00"),
            "2025-03-31 16:30"
        );
        assert_eq!(shanghai_time("not a time"), "not a time");
    }

    #[test]
    fn per_mille_is_integer_and_clamped() {
        assert_eq!(per_mille(Fen(1), Fen(3)), 333);
        assert_eq!(per_mille(Fen(9), Fen(10)), 900);
        assert_eq!(per_mille(Fen(20), Fen(10)), 1000);
        assert_eq!(per_mille(Fen(-5), Fen(10)), 0);
        assert_eq!(per_mille(Fen(5), Fen(0)), 0);
        assert_eq!(per_mille(Fen(i64::MAX), Fen(i64::MAX)), 1000);
        assert_eq!(percent(905), "90.5%");
    }

    #[test]
    fn url_encode_keeps_only_unreserved() {
        assert_eq!(url_encode("ent-a_1.x~"), "ent-a_1.x~");
        assert_eq!(url_encode("a&b=c d/企"), "a%26b%3Dc%20d%2F%E4%BC%81");
    }
}
