-- The tamper-evident audit log: one row per state-changing action, hash-chained
-- (crates/domain/src/audit.rs). Rows are only ever appended.
-- Append-only: never edit a merged migration.

CREATE TABLE audit_log (
    seq           BIGINT  PRIMARY KEY,
    previous_hash TEXT NOT NULL,
    actor         TEXT NOT NULL,
    role          TEXT NOT NULL,
    action        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    at            TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    digest        TEXT NOT NULL,
    hash          TEXT NOT NULL
);
