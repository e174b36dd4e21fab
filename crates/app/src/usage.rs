//! Usage records after ingest: voiding one (audited in the void's own transaction) and the
//! totals a provider or finance reads.

use chrono::Utc;
use suanli_store::{Stats, Store, VoidResult};

use crate::audit::Actor;

/// Voids `provider`'s record `record_id` for `reason` (already trimmed and bounded by the
/// caller); voiding twice changes nothing.
pub fn void(
    store: &mut dyn Store,
    provider: &str,
    record_id: &str,
    reason: &str,
    who: &Actor,
) -> suanli_store::Result<VoidResult> {
    let subject = format!("record:{provider}/{record_id}");
    store.void_audited(provider, record_id, reason, Utc::now(), &mut |tx, at| {
        let changed = [provider, record_id, reason, at];
        who.record(tx, "record.void", &subject, &changed)
    })
}

/// Record, void and amount totals, of one provider or of all.
pub fn stats(store: &mut dyn Store, provider: Option<&str>) -> suanli_store::Result<Stats> {
    store.stats(provider)
}

/// Folds the pending accrual deltas into the accrual totals (a quiet server's housekeeping);
/// `true` when there was something to fold.
pub fn fold_accruals(store: &mut dyn Store) -> suanli_store::Result<bool> {
    store.fold_accruals()
}
