-- The console's lists: a beneficiary's usage records in (provider, record id) order without
-- reading every record, and the audit log filtered by action without reading every entry.
-- Append-only: never edit a merged migration.

CREATE INDEX usage_records_by_beneficiary ON usage_records (beneficiary_id, provider_id, record_id);
CREATE INDEX audit_log_by_action ON audit_log (action, seq);
