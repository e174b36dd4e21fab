-- Voided usage records, for the records list's "void: yes" filter: a partial index holds only
-- the records that are void, so ingest (which stores records not void) never writes it, and
-- a void adds one entry. Without it that filter read every record of the provider, or of the
-- whole table, to find the few that are void.
-- Append-only: never edit a merged migration.

CREATE INDEX usage_records_voided ON usage_records (provider_id, record_id)
    WHERE voided_at IS NOT NULL;

-- Statistics, so the planner knows how few records are void: without them (autovacuum off, or
-- not yet run on a table that grew) it guessed that nearly every record is, and walked the
-- key for "void: yes" over the whole table. Autovacuum keeps them current where it runs.
ANALYZE usage_records;
