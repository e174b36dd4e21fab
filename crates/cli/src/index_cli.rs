//! `suanli index`: the optional indexes of usage records (no server needed), built and dropped
//! straight on the database.

use anyhow::Context;
use suanli_store::record_indexes::{self, RecordIndex};

/// An optional index of usage records, as the command line names it.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Which {
    /// An enterprise's records (the enterprise's own list, and finance's filter by enterprise).
    Enterprise,
    /// A month's records (the filter by month, an empty month at once).
    Month,
}

impl From<Which> for RecordIndex {
    fn from(w: Which) -> RecordIndex {
        match w {
            Which::Enterprise => RecordIndex::Enterprise,
            Which::Month => RecordIndex::Month,
        }
    }
}

fn what(index: RecordIndex) -> String {
    format!(
        "the index of usage records by {} ({})",
        index.word(),
        index.name()
    )
}

pub fn list(database_url: &str) -> anyhow::Result<()> {
    let present = record_indexes::present(database_url)
        .with_context(|| format!("cannot read the indexes of {database_url}"))?;
    for index in RecordIndex::ALL {
        outln!(
            "{:<12} {:<30} {}",
            index.word(),
            index.name(),
            if present.contains(&index) {
                "present"
            } else {
                "absent"
            }
        );
    }
    Ok(())
}

pub fn create(database_url: &str, which: Which) -> anyhow::Result<()> {
    let index = RecordIndex::from(which);
    let started = std::time::Instant::now();
    // The build is one statement: say what is happening before it, as it can take minutes.
    eprintln!(
        "building {}: about a minute per 10,000,000 records…",
        what(index)
    );
    let built = record_indexes::create(database_url, index)
        .with_context(|| format!("cannot build {}", what(index)))?;
    if built {
        outln!(
            "built {} in {:.1} s; ingest now writes it for every record",
            what(index),
            started.elapsed().as_secs_f64()
        );
    } else {
        outln!("{} is already there", what(index));
    }
    Ok(())
}

pub fn remove(database_url: &str, which: Which) -> anyhow::Result<()> {
    let index = RecordIndex::from(which);
    let dropped = record_indexes::remove(database_url, index)
        .with_context(|| format!("cannot drop {}", what(index)))?;
    if dropped {
        outln!("dropped {}", what(index));
    } else {
        outln!("{} is not there", what(index));
    }
    Ok(())
}
