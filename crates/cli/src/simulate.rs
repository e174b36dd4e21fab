//! `suanli simulate`: a whole period's settlement offline, from files, for what-if runs and
//! for auditors re-deriving a statement by hand.

use std::path::Path;

use anyhow::{Context, bail};
use suanli_domain::intake::intake;
use suanli_domain::settlement::{Prior, STATEMENT_HEADER, settle_period};
use suanli_domain::usage::Period;

use crate::files::{Encoding, load_registry, read_prior, read_usage};

pub fn run(
    registry_path: &Path,
    usage_path: &Path,
    period: &str,
    prior_path: Option<&Path>,
    out: &Path,
    encoding: Option<Encoding>,
) -> anyhow::Result<()> {
    let Some(period) = Period::parse(period) else {
        bail!("--period {period:?} is not YYYY-MM");
    };
    let (_, registry) = load_registry(registry_path)?;
    let prior = match prior_path {
        Some(p) => read_prior(p, &registry, encoding)?,
        None => Prior::default(),
    };
    let rows = read_usage(usage_path, encoding)?;
    let decided = intake(&registry, period, rows);
    let statement = settle_period(&registry, period, &decided.bases(), &prior);

    let mut w =
        csv::Writer::from_path(out).with_context(|| format!("cannot write {}", out.display()))?;
    w.write_record(STATEMENT_HEADER)?;
    for line in &statement.lines {
        w.write_record(line.csv_fields())?;
    }
    w.flush()
        .with_context(|| format!("cannot write {}", out.display()))?;

    let rejects_path = format!("{}.rejects.csv", out.display());
    let mut r = csv::Writer::from_path(&rejects_path)
        .with_context(|| format!("cannot write {rejects_path}"))?;
    r.write_record(["provider", "record_id", "line", "reason"])?;
    for rejected in &decided.rejected {
        r.write_record([
            rejected.provider.as_str(),
            rejected.record_id.as_str(),
            &rejected.line.to_string(),
            &rejected.rejection.to_string(),
        ])?;
    }
    r.flush()
        .with_context(|| format!("cannot write {rejects_path}"))?;

    outln!(
        "period {period} (Asia/Shanghai), registry sha256 {}",
        registry.content_hash
    );
    outln!(
        "records read {}, accepted {}, rejected {}, duplicates {}, outside period {}",
        decided.read,
        decided.accepted.len(),
        decided.rejected.len(),
        decided.duplicates,
        decided.ignored
    );
    let totals = statement.total_by_programme();
    for programme in registry.programmes_of_year(period.year) {
        let total = totals
            .get(programme.id.as_str())
            .copied()
            .unwrap_or_default();
        outln!("subsidy {}: {} CNY", programme.id, total);
    }
    outln!(
        "statement: {} ({} lines)",
        out.display(),
        statement.lines.len()
    );
    if !decided.rejected.is_empty() {
        outln!("rejects: {rejects_path}");
    }
    Ok(())
}
