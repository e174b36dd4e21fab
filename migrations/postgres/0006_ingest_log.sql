-- Several `suanli serve` replicas on one PostgreSQL database (deploy/SCALING.md).
-- Each replica keeps two derived indexes in memory for the ingest hot path: the hashes of every
-- stored record key and the capacity used per (SKU, clock hour). Every ingest or void
-- transaction appends here what it changed in them, under the `suanli.ingest` advisory lock, so
-- the next transaction of any other replica applies it first and decides against the same
-- state. Entries are contiguous in `seq` (assigned under the lock); old ones are pruned, and a
-- replica that finds a gap rebuilds its indexes from `usage_records`.
-- Append-only: never edit a merged migration.

CREATE TABLE ingest_log (
    seq BIGINT PRIMARY KEY,
    writer TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- 8-byte little-endian hashes of the inserted record keys (common::key_hash).
    keys BYTEA NOT NULL,
    -- (sku id i64 LE, hour i64 LE, quantity delta as rust_decimal's 16 bytes) per changed hour.
    capacity BYTEA NOT NULL
);
