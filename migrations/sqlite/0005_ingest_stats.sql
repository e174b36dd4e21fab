-- Ingest statistics for the provider's console view, written in the same transaction as the
-- ingest group they count. `day` is the Asia/Shanghai calendar day the group committed
-- (YYYY-MM-DD); `outcome` is accepted, duplicate, conflict or rejected; `reason` a reject code
-- (e.g. unknown_sku, over_capacity). Examples are capped per (provider, reason) by the writer.
-- Append-only: never edit a merged migration.

CREATE TABLE ingest_daily (
    provider TEXT NOT NULL,
    day TEXT NOT NULL,
    outcome TEXT NOT NULL,
    records BIGINT NOT NULL,
    PRIMARY KEY (provider, day, outcome)
);

CREATE TABLE ingest_rejects (
    provider TEXT NOT NULL,
    reason TEXT NOT NULL,
    records BIGINT NOT NULL,
    last_at TEXT NOT NULL,
    PRIMARY KEY (provider, reason)
);

CREATE TABLE ingest_reject_examples (
    provider TEXT NOT NULL,
    reason TEXT NOT NULL,
    record_id TEXT NOT NULL,
    message TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (provider, reason, record_id)
);
