-- Accrual deltas of ingest groups not yet folded into `accruals`: one row per group, the
-- deltas packed by interned ids (crates/store/src/common.rs, `encode_accrual_deltas`). Readers
-- add them to `accruals` in one snapshot; a writer folds them in and deletes them every ~1 s,
-- holding the ingest lock.
CREATE TABLE accrual_pending (
    seq    BIGSERIAL PRIMARY KEY,
    deltas BYTEA     NOT NULL
);
