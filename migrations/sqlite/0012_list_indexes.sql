-- The console's lists: the audit log filtered by action without reading every entry.
-- (Usage records get no index beyond their key: a secondary index on the ingest path cut
-- ingest from about 600,000 to 170,000 records/s, so the records list filters by walking the
-- key's order; see BENCHMARKS.md, "Console lists".)
-- Append-only: never edit a merged migration.

CREATE INDEX audit_log_by_action ON audit_log (action, seq);
