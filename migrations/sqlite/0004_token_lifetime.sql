-- Tokens can expire and be revoked: NULL means never expires / not revoked. Times are
-- RFC 3339 UTC with milliseconds, like every other `_at` column.
-- Append-only: never edit a merged migration.

ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER TABLE tokens ADD COLUMN revoked_at TEXT;
