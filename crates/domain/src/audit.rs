//! The tamper-evident audit log's rules: how an entry's hash is computed, how entries are
//! chained, and how a chain read back is verified. Pure: the store appends and reads rows, this
//! module decides what a row must hold and whether a sequence of rows is intact.
//!
//! Every entry holds the previous entry's hash; its own hash is sha256 over a canonical
//! encoding of (seq, previous hash, actor, role, action, subject, at, request id, digest). An
//! edited field changes the entry's hash, a deleted entry leaves a gap and a broken link, so
//! either is found by [`verify`]. Removing the newest entries leaves a shorter, valid chain:
//! keep the head hash that `suanli audit verify` prints somewhere else to detect that.

use sha2::{Digest, Sha256};

/// The previous hash of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an action appends, before it is chained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    /// Who acted: role and subject, or role and token-hash prefix (as in `created_by`).
    pub actor: String,
    pub role: String,
    /// What was done, e.g. `run.post`, `token.create`.
    pub action: String,
    /// What it was done to, e.g. `run:3`, `record:dc-a/r1`.
    pub subject: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub request_id: String,
    /// sha256 hex of what changed, from [`digest`].
    pub digest: String,
}

/// One entry of the chain, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub previous_hash: String,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub subject: String,
    pub at: String,
    pub request_id: String,
    pub digest: String,
    pub hash: String,
}

/// Appends each part as its byte length, `:`, the bytes and `;`, so no two different lists of
/// parts encode the same way (a separator inside a field cannot shift the boundaries).
fn canonical(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(part.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(part.as_bytes());
        out.push(b';');
    }
    out
}

/// The sha256 hex of a canonical encoding of `parts`: the digest of what an action changed.
pub fn digest(parts: &[&str]) -> String {
    hex::encode(Sha256::digest(canonical(parts)))
}

/// An entry's hash from its fields.
#[allow(
    clippy::too_many_arguments,
    reason = "the hashed fields, named one by one so none is forgotten"
)]
pub fn entry_hash(
    seq: i64,
    previous_hash: &str,
    actor: &str,
    role: &str,
    action: &str,
    subject: &str,
    at: &str,
    request_id: &str,
    digest: &str,
) -> String {
    let seq = seq.to_string();
    let parts = [
        "suanli-audit-v1",
        seq.as_str(),
        previous_hash,
        actor,
        role,
        action,
        subject,
        at,
        request_id,
        digest,
    ];
    hex::encode(Sha256::digest(canonical(&parts)))
}

impl Entry {
    /// The hash this entry's fields call for.
    pub fn expected_hash(&self) -> String {
        entry_hash(
            self.seq,
            &self.previous_hash,
            &self.actor,
            &self.role,
            &self.action,
            &self.subject,
            &self.at,
            &self.request_id,
            &self.digest,
        )
    }
}

/// Chains `new` after `last` (the newest stored entry, or none for an empty log).
pub fn chain(last: Option<&Entry>, new: NewEntry) -> Entry {
    let (seq, previous_hash) = match last {
        Some(e) => (e.seq + 1, e.hash.clone()),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let mut entry = Entry {
        seq,
        previous_hash,
        actor: new.actor,
        role: new.role,
        action: new.action,
        subject: new.subject,
        at: new.at,
        request_id: new.request_id,
        digest: new.digest,
        hash: String::new(),
    };
    entry.hash = entry.expected_hash();
    entry
}

/// Where and why a chain is broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("seq {seq}: missing (the next entry is seq {found}); the entry was deleted")]
    Gap { seq: i64, found: i64 },
    #[error("seq {seq}: its fields do not match its hash; the entry was edited")]
    Hash { seq: i64 },
    #[error(
        "seq {seq}: its previous hash does not match entry {previous}; an entry was edited or deleted"
    )]
    Link { seq: i64, previous: i64 },
}

impl Broken {
    /// The first seq found broken.
    pub fn seq(&self) -> i64 {
        match self {
            Broken::Gap { seq, .. } | Broken::Hash { seq } | Broken::Link { seq, .. } => *seq,
        }
    }
}

/// What a verified chain holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub entries: usize,
    /// The newest entry's hash (the genesis hash for an empty log).
    pub head_hash: String,
}

/// Verifies entries in seq order: seqs run 1, 2, …; each hash matches its fields; each previous
/// hash is the hash of the entry before. Returns the first break.
pub fn verify(entries: &[Entry]) -> Result<Verified, Broken> {
    let mut previous_hash = GENESIS_HASH;
    for (i, e) in entries.iter().enumerate() {
        let expected = i as i64 + 1;
        if e.seq != expected {
            return Err(Broken::Gap {
                seq: expected,
                found: e.seq,
            });
        }
        if e.hash != e.expected_hash() {
            return Err(Broken::Hash { seq: e.seq });
        }
        if e.previous_hash != previous_hash {
            return Err(Broken::Link {
                seq: e.seq,
                previous: e.seq - 1,
            });
        }
        previous_hash = &e.hash;
    }
    Ok(Verified {
        entries: entries.len(),
        head_hash: previous_hash.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(action: &str) -> NewEntry {
        NewEntry {
            actor: "finance:0123456789ab".into(),
            role: "finance".into(),
            action: action.into(),
            subject: "run:1".into(),
            at: "2025-04-01T00:00:00.000Z".into(),
            request_id: "req-1".into(),
            digest: digest(&["run", "1"]),
        }
    }

    fn log(n: usize) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let e = chain(out.last(), new(&format!("action{i}")));
            out.push(e);
        }
        out
    }

    // Proves an intact chain verifies and reports its head hash.
    #[test]
    fn intact_chain_verifies() {
        let entries = log(4);
        let v = verify(&entries).expect("intact");
        assert_eq!(v.entries, 4);
        assert_eq!(v.head_hash, entries[3].hash);
        assert_eq!(verify(&[]).unwrap().head_hash, GENESIS_HASH);
    }

    // Proves an edit of any field, a deletion and a reordering each name the first broken seq.
    #[test]
    fn edits_and_deletions_name_the_seq() {
        let mut edited = log(4);
        edited[2].actor = "finance:someone-else".into();
        assert_eq!(verify(&edited), Err(Broken::Hash { seq: 3 }));

        let mut rehashed = log(4);
        rehashed[1].digest = digest(&["forged"]);
        rehashed[1].hash = rehashed[1].expected_hash();
        assert_eq!(
            verify(&rehashed),
            Err(Broken::Link {
                seq: 3,
                previous: 2
            })
        );

        let mut deleted = log(4);
        deleted.remove(1);
        assert_eq!(verify(&deleted), Err(Broken::Gap { seq: 2, found: 3 }));
    }

    // Proves the encoding is unambiguous: moving a boundary between fields changes the hash.
    #[test]
    fn field_boundaries_are_part_of_the_hash() {
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
        assert_ne!(digest(&["a;1:b"]), digest(&["a", "b"]));
    }
}
