//! Money: integer fen (0.01 CNY) with checked arithmetic, exact parsing and the one rounding
//! rule of docs/rules.md R1 (half-up, 四舍五入), plus largest-remainder sharing.

use std::fmt;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

/// An amount of CNY in fen. The smallest unit maps to 1; there is no fractional fen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fen(pub i64);

/// Why a text is not an amount of money.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0:?} is not a decimal number")]
    NotDecimal(String),
    #[error("{0} has more than 2 decimals (finer than a fen)")]
    TooPrecise(String),
    #[error("{0} is negative")]
    Negative(String),
    #[error("{0} is too large")]
    TooLarge(String),
}

impl Fen {
    pub const ZERO: Fen = Fen(0);

    /// Parses CNY written as a decimal with at most 2 significant decimals ("18.00", "7", "0.5").
    /// A value finer than a fen ("1.005") and a negative value are errors; "1.500" is 150 fen.
    pub fn parse_cny(text: &str) -> Result<Fen, MoneyError> {
        let trimmed = text.trim();
        let value =
            parse_decimal(trimmed).ok_or_else(|| MoneyError::NotDecimal(text.to_owned()))?;
        if value.is_sign_negative() && !value.is_zero() {
            return Err(MoneyError::Negative(trimmed.to_owned()));
        }
        Fen::from_cny_exact(value).ok_or_else(|| {
            if value.normalize().scale() > 2 {
                MoneyError::TooPrecise(trimmed.to_owned())
            } else {
                MoneyError::TooLarge(trimmed.to_owned())
            }
        })
    }

    /// The exact fen of a CNY decimal, or `None` when it is finer than a fen or out of range.
    pub fn from_cny_exact(value: Decimal) -> Option<Fen> {
        let fen = value.checked_mul(Decimal::ONE_HUNDRED)?.normalize();
        if fen.scale() > 0 {
            return None;
        }
        fen.to_i64().map(Fen)
    }

    /// R1/R6: base × ratio rounded half-up (四舍五入) to the fen. This is the only place where
    /// money is rounded; it is called once per settlement line.
    pub fn times_ratio_half_up(self, ratio: Decimal) -> Fen {
        let exact = Decimal::from(self.0)
            .checked_mul(ratio)
            .expect("fen × ratio stays within Decimal range");
        let rounded = exact.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
        Fen(rounded.to_i64().expect("rounded subsidy fits in i64 fen"))
    }

    pub fn to_cny(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).map(Fen)
    }

    pub fn checked_sub(self, other: Fen) -> Option<Fen> {
        self.0.checked_sub(other.0).map(Fen)
    }

    /// Sum that panics on overflow: i64 fen is 92 trillion CNY, so overflow is a programmer error.
    pub fn plus(self, other: Fen) -> Fen {
        self.checked_add(other).expect("fen sum overflow")
    }

    pub fn minus(self, other: Fen) -> Fen {
        self.checked_sub(other).expect("fen difference overflow")
    }

    pub fn max(self, other: Fen) -> Fen {
        if self >= other { self } else { other }
    }

    pub fn min(self, other: Fen) -> Fen {
        if self <= other { self } else { other }
    }
}

impl fmt::Display for Fen {
    /// CNY with exactly 2 decimals, e.g. `1234.50`, `-0.05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        // `pad` honours width and alignment, so tables can right-align amounts.
        f.pad(&format!("{sign}{}.{:02}", abs / 100, abs % 100))
    }
}

impl std::iter::Sum for Fen {
    fn sum<I: Iterator<Item = Fen>>(iter: I) -> Fen {
        iter.fold(Fen::ZERO, Fen::plus)
    }
}

/// Parses a plain decimal ("12", "-3.5", "0.125"); no exponent, no thousands separators.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let t = text.trim();
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+')
    {
        return None;
    }
    // Exact: a number with more digits than a Decimal holds is refused, never rounded.
    Decimal::from_str_exact(t).ok()
}

/// Formats a ratio as a plain decimal with at least 2 decimals ("0.15", "0.2" → "0.20", "0.125").
pub fn format_ratio(ratio: Decimal) -> String {
    let n = ratio.normalize();
    if n.scale() < 2 {
        format!("{:.2}", n)
    } else {
        n.to_string()
    }
}

/// Shares `available` among `weights` in proportion to them by the largest-remainder method at
/// fen precision (R7, R8). Ties in remainder go to the earlier index, so callers pass weights in
/// line key order. Requires `0 <= available <= sum(weights)`; the parts sum to `available`
/// exactly and no part exceeds its weight.
pub fn share_largest_remainder(weights: &[Fen], available: Fen) -> Vec<Fen> {
    let total: i128 = weights.iter().map(|w| i128::from(w.0)).sum();
    assert!(
        available.0 >= 0 && i128::from(available.0) <= total,
        "available {available} must lie in [0, {total}]"
    );
    let raw: Vec<i128> = weights.iter().map(|w| i128::from(w.0)).collect();
    apportion(&raw, i128::from(available.0))
        .into_iter()
        .map(|p| Fen(i64::try_from(p).expect("part ≤ available fits i64")))
        .collect()
}

/// Largest-remainder apportionment of a non-negative `amount` by non-negative `weights`: parts
/// proportional to the weights, summing to `amount` exactly; equal remainders favour the
/// earlier index. All-zero weights get all-zero parts (and `amount` must then be zero).
pub fn apportion(weights: &[i128], amount: i128) -> Vec<i128> {
    assert!(
        weights.iter().all(|w| *w >= 0),
        "weights are never negative"
    );
    assert!(amount >= 0, "apportioned amount is never negative");
    let total: i128 = weights.iter().sum();
    if total == 0 {
        assert_eq!(amount, 0, "nothing to weigh an amount by");
        return vec![0; weights.len()];
    }
    let mut parts: Vec<i128> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(i128, usize)> = Vec::with_capacity(weights.len());
    // Products and total within 64 bits (amounts in fen nearly always are) divide in one
    // machine instruction; otherwise in 128 bits.
    let narrow = u64::try_from(total).ok();
    for (index, w) in weights.iter().enumerate() {
        let product = w.checked_mul(amount).expect("apportion product fits i128");
        let (part, remainder) = match (narrow, u64::try_from(product)) {
            (Some(total), Ok(product)) => {
                (i128::from(product / total), i128::from(product % total))
            }
            _ => (product / total, product % total),
        };
        parts.push(part);
        remainders.push((remainder, index));
    }
    let left = amount - parts.iter().sum::<i128>();
    let left = usize::try_from(left).expect("fewer units left than lines");
    assert!(
        left <= weights.len(),
        "largest remainder hands out every unit"
    );
    if left > 0 {
        // The `left` largest remainders, equal ones in index order: the first `left` of the
        // order (remainder descending, index ascending), found by selection, not a full sort.
        let order = |a: &(i128, usize), b: &(i128, usize)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
        if left < remainders.len() {
            remainders.select_nth_unstable_by(left - 1, order);
        }
        for &(_, index) in &remainders[..left] {
            parts[index] += 1;
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_or_refused() {
        // Proves a quantity with more digits than a Decimal holds is refused, not rounded to 0.
        assert_eq!(parse_decimal("0.5"), Some(Decimal::new(5, 1)));
        assert_eq!(
            parse_decimal(&format!("0.{}1", "0".repeat(27))),
            Some(Decimal::new(1, 28))
        );
        assert_eq!(parse_decimal(&format!("0.{}1", "0".repeat(29))), None);
        assert_eq!(parse_decimal("79228162514264337593543950336"), None);
    }

    #[test]
    fn parses_and_rejects_money() {
        // Proves the money parser keeps fen exact and names each kind of bad input.
        assert_eq!(Fen::parse_cny("18.00"), Ok(Fen(1800)));
        assert_eq!(Fen::parse_cny("7"), Ok(Fen(700)));
        assert_eq!(Fen::parse_cny("1.500"), Ok(Fen(150)));
        assert_eq!(Fen::parse_cny("0.05"), Ok(Fen(5)));
        assert!(matches!(
            Fen::parse_cny("1.005"),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(matches!(
            Fen::parse_cny("-1.00"),
            Err(MoneyError::Negative(_))
        ));
        assert!(matches!(
            Fen::parse_cny("abc"),
            Err(MoneyError::NotDecimal(_))
        ));
        assert!(matches!(
            Fen::parse_cny("1e5"),
            Err(MoneyError::NotDecimal(_))
        ));
        assert!(matches!(
            Fen::parse_cny("99999999999999999999999"),
            Err(MoneyError::TooLarge(_))
        ));
    }

    #[test]
    fn rounds_half_up_not_bankers() {
        // Proves 四舍五入: 0.5 fen rounds away from zero where banker's rounding would go to even.
        assert_eq!(Fen(5).times_ratio_half_up(Decimal::new(5, 1)), Fen(3)); // 2.5 → 3
        assert_eq!(Fen(25).times_ratio_half_up(Decimal::new(1, 1)), Fen(3)); // 2.5 → 3
        assert_eq!(Fen(15).times_ratio_half_up(Decimal::new(1, 1)), Fen(2)); // 1.5 → 2
        assert_eq!(Fen(14).times_ratio_half_up(Decimal::new(1, 1)), Fen(1)); // 1.4 → 1
    }

    #[test]
    fn displays_two_decimals() {
        // Proves statement formatting: exactly two decimals, sign kept.
        assert_eq!(Fen(0).to_string(), "0.00");
        assert_eq!(Fen(123456).to_string(), "1234.56");
        assert_eq!(Fen(-5).to_string(), "-0.05");
        assert_eq!(format_ratio(Decimal::new(15, 2)), "0.15");
        assert_eq!(format_ratio(Decimal::new(2, 1)), "0.20");
        assert_eq!(format_ratio(Decimal::new(125, 3)), "0.125");
        assert_eq!(format_ratio(Decimal::ONE), "1.00");
    }

    /// The rule as written (every remainder sorted, stable), to check `apportion` against.
    fn apportion_by_sorting(weights: &[i128], amount: i128) -> Vec<i128> {
        let total: i128 = weights.iter().sum();
        if total == 0 {
            return vec![0; weights.len()];
        }
        let mut parts: Vec<i128> = weights.iter().map(|w| w * amount / total).collect();
        let mut remainders: Vec<(i128, usize)> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (w * amount % total, i))
            .collect();
        let mut left = amount - parts.iter().sum::<i128>();
        remainders.sort_by_key(|r| std::cmp::Reverse(r.0));
        for (_, i) in remainders {
            if left == 0 {
                break;
            }
            parts[i] += 1;
            left -= 1;
        }
        parts
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Proves the selection gives the parts of the sorted rule, ties included (weights
        /// drawn from few values so that remainders often tie), in 64 and in 128 bits.
        #[test]
        fn apportion_equals_the_sorted_rule(
            weights in proptest::collection::vec(
                proptest::prop_oneof![0i128..4, 0i128..1_000_000, 1i128 << 40..1i128 << 41],
                1..40,
            ),
            share in 0u32..=1000,
        ) {
            let total: i128 = weights.iter().sum();
            let amount = total * i128::from(share) / 1000;
            proptest::prop_assert_eq!(
                apportion(&weights, amount),
                apportion_by_sorting(&weights, amount)
            );
        }
    }

    #[test]
    fn largest_remainder_sums_and_breaks_ties_by_order() {
        // Proves sharing sums exactly and gives tied remainders to the earlier line.
        assert_eq!(
            share_largest_remainder(&[Fen(1), Fen(1), Fen(1)], Fen(2)),
            vec![Fen(1), Fen(1), Fen(0)]
        );
        assert_eq!(
            share_largest_remainder(&[Fen(300), Fen(100)], Fen(200)),
            vec![Fen(150), Fen(50)]
        );
        assert_eq!(
            share_largest_remainder(&[Fen(0), Fen(0)], Fen(0)),
            vec![Fen(0), Fen(0)]
        );
        let parts = share_largest_remainder(&[Fen(333), Fen(667), Fen(1)], Fen(500));
        assert_eq!(parts.iter().copied().sum::<Fen>(), Fen(500));
    }
}
