-- Accrual deltas of ingest groups not yet folded into `accruals`: one row per group, the
-- deltas packed by interned ids (crates/store/src/common.rs, `encode_accrual_deltas`). Readers
-- add them to `accruals`; the writer folds them in and deletes them every ~1 s.
CREATE TABLE accrual_pending (
    seq    INTEGER PRIMARY KEY,
    deltas BLOB    NOT NULL
);
