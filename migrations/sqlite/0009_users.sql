-- Named users: every token belongs to one, and actors are people rather than token hashes.
-- A service account (`service` = 1) is a user for machine clients: it never has a password.
-- Existing tokens are attached to one generated service account per (role, subject), named
-- `svc-<role>` or `svc-<role>-<subject>`, the same names `suanli token create --role` uses.
-- A token's label says what it is for ("ERP export"); '' for tokens without one.
-- Append-only: never edit a merged migration.

CREATE TABLE users (
    user_id       INTEGER PRIMARY KEY,
    login         TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL,   -- provider | beneficiary | finance | auditor | admin
    subject       TEXT    NOT NULL,   -- provider or beneficiary id for those roles, else ''
    email         TEXT,
    password_hash TEXT,               -- Argon2id PHC string; NULL: cannot sign in by password
    totp_secret   TEXT,
    service       INTEGER NOT NULL DEFAULT 0,
    disabled_at   TEXT,
    created_at    TEXT    NOT NULL
);

ALTER TABLE tokens ADD COLUMN user_id INTEGER REFERENCES users (user_id);
ALTER TABLE tokens ADD COLUMN label TEXT NOT NULL DEFAULT '';

INSERT INTO users (login, name, role, subject, service, created_at)
SELECT 'svc-' || role || CASE WHEN subject = '' THEN '' ELSE '-' || subject END,
       role || CASE WHEN subject = '' THEN '' ELSE ' ' || subject END || ' service account',
       role, subject, 1, MIN(created_at)
FROM tokens GROUP BY role, subject;

UPDATE tokens SET user_id = (
    SELECT u.user_id FROM users u
    WHERE u.login = 'svc-' || tokens.role
                    || CASE WHEN tokens.subject = '' THEN '' ELSE '-' || tokens.subject END
);

CREATE INDEX tokens_by_user ON tokens (user_id);
