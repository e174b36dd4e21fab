-- Who cancelled a run, beside when. Cancelling used to record its actor as approved_by, so a
-- run cancelled before approval showed an approver without an approval time: such runs get
-- their canceller moved to cancelled_by. (A run approved and then cancelled kept its approver;
-- its canceller is in the audit log.) Append-only: never edit a merged migration.

ALTER TABLE settlement_runs ADD COLUMN cancelled_by TEXT;

UPDATE settlement_runs
SET cancelled_by = approved_by, approved_by = NULL
WHERE status = 'cancelled' AND approved_at IS NULL AND approved_by IS NOT NULL;
