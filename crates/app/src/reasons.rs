//! Plain-language reasons for run lines, so that a run's export reconciles line by line without
//! the database: why an adjustment line moves money for an earlier month (R9), and which cap or
//! pool cut a line (R7, R8) with the limit's amount from the registry version the line's month
//! used.

use std::collections::HashMap;

use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_store::ledger::{self as rows, RunLineRow, RunRow};
use suanli_store::sql::Sql;

use crate::registry::load_registry;
use crate::settlement::Result;

/// CNY with thousands separators, as people read amounts: `8,000,000.00`, `-1,234.56`.
pub fn grouped(amount: Fen) -> String {
    let text = amount.to_string();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let mut out = String::with_capacity(text.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if fraction.is_empty() {
        format!("{sign}{out}")
    } else {
        format!("{sign}{out}.{fraction}")
    }
}

/// The reason of one line of `run`, given the registry its month used (None if unknown):
/// empty for an own-period line that nothing cut.
pub fn line_reason(registry: Option<&Registry>, run: &RunRow, l: &RunLineRow) -> String {
    let mut parts = Vec::new();
    if l.original_period != run.period {
        let (before, now) = (
            grouped(Fen(l.posted_before_fen)),
            grouped(Fen(l.entitlement_fen)),
        );
        let period = &l.original_period;
        if l.amount_fen < 0 {
            parts.push(format!(
                "claw-back: the {period} entitlement fell from {before} to {now} after voids or late records"
            ));
        } else if l.amount_fen > 0 {
            parts.push(format!(
                "late records: the {period} entitlement rose from {before} to {now}"
            ));
        }
    }
    let programme = registry.and_then(|r| r.programme(&run.programme));
    let limit =
        |amount: Option<Fen>| amount.map_or_else(String::new, |a| format!(" of {}", grouped(a)));
    match l.cut_by.as_str() {
        "beneficiary_cap" => parts.push(format!(
            "cut by the beneficiary cap{}",
            limit(
                registry
                    .zip(programme)
                    .and_then(|(r, p)| r.beneficiary_cap(p, &l.key.beneficiary))
            )
        )),
        "provider_cap" => parts.push(format!(
            "cut by the provider cap{}",
            limit(programme.and_then(|p| p.provider_cap))
        )),
        "pool" => parts.push(format!(
            "cut by the pool{}",
            limit(programme.and_then(|p| p.pool))
        )),
        _ => {}
    }
    parts.join("; ")
}

/// The reasons of `lines` of `run`, in order, each with the registry version its month used.
pub fn run_reasons(tx: &mut dyn Sql, run: &RunRow, lines: &[RunLineRow]) -> Result<Vec<String>> {
    let versions: HashMap<String, i64> = rows::run_periods(tx, run.run_id)?.into_iter().collect();
    let mut registries = HashMap::new();
    let mut out = Vec::with_capacity(lines.len());
    for l in lines {
        let version = versions
            .get(&l.original_period)
            .copied()
            .unwrap_or(run.registry_version);
        // A version that no longer loads explains less, but never hides the line.
        let registry = load_registry(tx, version, &mut registries)
            .ok()
            .map(|()| registries[&version].clone());
        out.push(line_reason(registry.as_deref(), run, l));
    }
    Ok(out)
}

/// The reasons of a stored run's lines, in a transaction of their own.
pub fn reasons_of_run(
    store: &mut dyn suanli_store::Store,
    run: &RunRow,
    lines: &[RunLineRow],
) -> Result<Vec<String>> {
    crate::settlement::in_tx(store, |tx| run_reasons(tx, run, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_grouped_by_thousands() {
        // Proves the reason's amounts read as people write them.
        assert_eq!(grouped(Fen(800_000_000)), "8,000,000.00");
        assert_eq!(grouped(Fen(-12_345_678)), "-123,456.78");
        assert_eq!(grouped(Fen(99_999)), "999.99");
        assert_eq!(grouped(Fen(100_000)), "1,000.00");
    }
}
