-- An ingest group's pending accrual deltas (about 48 bytes per accrual key, tens of KB a group)
-- are TOASTed. With the default pglz compression the insert cost about 1.2 ms of the backend's
-- time per group (pg_stat_statements, BENCHMARKS.md stop 13); lz4 costs about a tenth of it and
-- still halves the bytes. A server built without lz4 stores them uncompressed instead (about as
-- fast; the rows live only until the next fold, about a second).
DO $$
BEGIN
    ALTER TABLE accrual_pending ALTER COLUMN deltas SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    ALTER TABLE accrual_pending ALTER COLUMN deltas SET STORAGE EXTERNAL;
END $$;
