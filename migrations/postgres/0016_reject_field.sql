-- Each example reject names the record's field it is about (`sku`, `quantity`, …), so the
-- console can say what was wrong in the page's language; examples kept before have ''.
-- Append-only: never edit a merged migration.

ALTER TABLE ingest_reject_examples ADD COLUMN field TEXT NOT NULL DEFAULT '';
