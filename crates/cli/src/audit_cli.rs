//! `suanli audit verify` and `suanli audit export`: read the audit log straight from the
//! database (no server needed) and check or write it.

use std::path::Path;

use anyhow::{Context, bail};
use suanli_domain::audit::{self, Entry};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

fn read(database_url: &str) -> anyhow::Result<Vec<Entry>> {
    let mut store =
        suanli_store::open(database_url).with_context(|| format!("cannot open {database_url}"))?;
    let mut entries = Vec::new();
    store.transaction(&mut |tx| {
        entries = suanli_store::audit::entries(tx)?;
        Ok(())
    })?;
    Ok(entries)
}

/// Checks the chain, then that posted money matches what its audit entries committed
/// (`suanli_app::seal`): both read in one transaction, so they judge the same state.
pub fn verify(database_url: &str) -> anyhow::Result<()> {
    let mut store =
        suanli_store::open(database_url).with_context(|| format!("cannot open {database_url}"))?;
    let mut outcome = None;
    store.transaction(&mut |tx| {
        let entries = suanli_store::audit::entries(tx)?;
        let chain = audit::verify(&entries);
        let sealed = chain
            .is_ok()
            .then(|| suanli_app::seal::verify(tx, &entries));
        outcome = Some((chain, sealed));
        Ok(())
    })?;
    let (chain, sealed) = outcome.expect("the read transaction ran");
    let chain = match chain {
        Ok(v) => v,
        Err(broken) => bail!("audit log broken at seq {}: {broken}", broken.seq()),
    };
    match sealed.expect("checked after an intact chain") {
        Ok(s) => {
            outln!(
                "audit log intact: {} entries, head hash {}",
                chain.entries,
                chain.head_hash
            );
            outln!(
                "posted money matches its audit entries: {} posted run(s), {} payment(s){}{}{}",
                s.runs,
                s.payments,
                if s.confirmed_payments > 0 {
                    format!(
                        ", {} of them confirmed by a second person",
                        s.confirmed_payments
                    )
                } else {
                    String::new()
                },
                if s.openings > 0 {
                    format!(", {} opening balance import(s)", s.openings)
                } else {
                    String::new()
                },
                if s.unsealed > 0 {
                    format!(
                        "; {} older entr(ies) cover totals only, not every row",
                        s.unsealed
                    )
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Err(broken) => match broken.seq() {
            Some(seq) => {
                bail!("posted money was changed after it was audited, at seq {seq}: {broken}")
            }
            None => bail!("posted money is not accounted for by the audit log: {broken}"),
        },
    }
}

const COLUMNS: [&str; 10] = [
    "seq",
    "previous_hash",
    "actor",
    "role",
    "action",
    "subject",
    "at",
    "request_id",
    "digest",
    "hash",
];

fn fields(e: &Entry) -> [String; 10] {
    [
        e.seq.to_string(),
        e.previous_hash.clone(),
        e.actor.clone(),
        e.role.clone(),
        e.action.clone(),
        e.subject.clone(),
        e.at.clone(),
        e.request_id.clone(),
        e.digest.clone(),
        e.hash.clone(),
    ]
}

/// Writes the entries as they are stored, tampered or not: an export is evidence, and
/// `verify` is the judgement.
pub fn export(database_url: &str, out: &Path, format: Format) -> anyhow::Result<()> {
    let entries = read(database_url)?;
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_path(out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            w.write_record(COLUMNS)?;
            for e in &entries {
                w.write_record(fields(e))?;
            }
            w.flush()?;
        }
        Format::Json => {
            let rows: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| {
                    let mut row = serde_json::Map::new();
                    for (k, v) in COLUMNS.iter().zip(fields(e)) {
                        row.insert(
                            (*k).to_owned(),
                            if *k == "seq" {
                                serde_json::Value::from(e.seq)
                            } else {
                                serde_json::Value::from(v)
                            },
                        );
                    }
                    serde_json::Value::Object(row)
                })
                .collect();
            let text = serde_json::to_string_pretty(&rows)?;
            std::fs::write(out, text + "\n")
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
    }
    eprintln!(
        "{} audit entries written to {}",
        entries.len(),
        out.display()
    );
    Ok(())
}
