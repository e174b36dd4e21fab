-- When a user last signed in to the console (password or API token), shown to admins on the
-- console's user list; NULL until the first sign-in after this migration.
-- Append-only: never edit a merged migration.

ALTER TABLE users ADD COLUMN last_signin_at TEXT;
