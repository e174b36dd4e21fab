//! The audit log in storage, written once for both backends over [`Sql`]. Chaining and
//! verification are the domain's (`suanli_domain::audit`); these functions append and read rows
//! inside the caller's transaction, so an entry commits or rolls back with its action.

use suanli_domain::audit::{self, Entry, NewEntry};

use crate::Result;
use crate::sql::{Sql, Value};

const COLUMNS: &str =
    "seq, previous_hash, actor, role, action, subject, at, request_id, digest, hash";

fn entry_of(r: &[Value]) -> Result<Entry> {
    Ok(Entry {
        seq: r[0].int()?,
        previous_hash: r[1].text()?,
        actor: r[2].text()?,
        role: r[3].text()?,
        action: r[4].text()?,
        subject: r[5].text()?,
        at: r[6].text()?,
        request_id: r[7].text()?,
        digest: r[8].text()?,
        hash: r[9].text()?,
    })
}

/// Chains `new` after the newest entry and inserts it. Concurrent appenders (servers on one
/// PostgreSQL database, `suanli token create`) wait for each other on the audit lock; the
/// primary key on seq would still refuse a second entry with the same seq rather than fork the
/// chain.
pub fn append(tx: &mut dyn Sql, new: NewEntry) -> Result<Entry> {
    tx.lock_audit()?;
    let last = tx
        .query(
            &format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1"),
            &[],
        )?
        .first()
        .map(|r| entry_of(r))
        .transpose()?;
    let e = audit::chain(last.as_ref(), new);
    tx.exec(
        &format!(
            "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ),
        &[
            e.seq.into(),
            e.previous_hash.as_str().into(),
            e.actor.as_str().into(),
            e.role.as_str().into(),
            e.action.as_str().into(),
            e.subject.as_str().into(),
            e.at.as_str().into(),
            e.request_id.as_str().into(),
            e.digest.as_str().into(),
            e.hash.as_str().into(),
        ],
    )?;
    Ok(e)
}

/// Every entry, in seq order.
pub fn entries(tx: &mut dyn Sql) -> Result<Vec<Entry>> {
    tx.query(
        &format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq"),
        &[],
    )?
    .iter()
    .map(|r| entry_of(r))
    .collect()
}

/// The actor of the first entry of `action` on `subject` (`run.create` of `run:7`), if any.
pub fn first_actor(tx: &mut dyn Sql, action: &str, subject: &str) -> Result<Option<String>> {
    tx.query(
        "SELECT actor FROM audit_log WHERE action = $1 AND subject = $2 ORDER BY seq LIMIT 1",
        &[action.into(), subject.into()],
    )?
    .first()
    .map(|r| r[0].text())
    .transpose()
}
