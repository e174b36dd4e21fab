-- Ingest speed on PostgreSQL.
-- record_id compares byte by byte (COLLATE "C"), as SQLite's BINARY does: the primary key is
-- checked for every stored record, and a locale-aware comparison (strcoll, even for C.UTF-8 on
-- PostgreSQL 15) cost several percent of the server's time per record. Equality is unchanged
-- (every collation here is deterministic); only ORDER BY record_id becomes byte order, which is
-- Unicode code point order for UTF-8, as SQLite orders them.
-- On a database with many records this rewrites usage_records and its key once, at start.
-- ingest_log.keys holds 64-bit hashes, which do not compress: store them without trying.
-- Append-only: never edit a merged migration.

ALTER TABLE usage_records ALTER COLUMN record_id TYPE TEXT COLLATE "C";
ALTER TABLE ingest_log ALTER COLUMN keys SET STORAGE EXTERNAL;
