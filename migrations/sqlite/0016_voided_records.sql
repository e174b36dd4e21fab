-- Voided usage records, for the records list's "void: yes" filter: a partial index holds only
-- the records that are void, so ingest (which stores records not void) never writes it, and
-- a void adds one entry. Without it that filter read every record of the provider, or of the
-- whole table, to find the few that are void.
-- Append-only: never edit a merged migration.

CREATE INDEX usage_records_voided ON usage_records (provider_id, record_id)
    WHERE voided_at IS NOT NULL;

-- SQLite keeps no statistics unless asked: without them its planner preferred the key for a
-- provider's void records, walking all of the provider's records. One row of sqlite_stat1
-- tells it the index is small (it holds only void records); `ANALYZE usage_records_voided`
-- creates the table (reading just this index) and the row replaces what it wrote, and
-- `ANALYZE sqlite_schema` makes this connection read the statistics again.
ANALYZE usage_records_voided;
DELETE FROM sqlite_stat1 WHERE idx = 'usage_records_voided';
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('usage_records', 'usage_records_voided', '1 1 1');
ANALYZE sqlite_schema;
