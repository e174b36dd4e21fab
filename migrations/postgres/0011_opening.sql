-- Opening balances: what a programme paid before it used Suanli, imported by one finance user
-- and confirmed by another. A confirmed import counts as prior payments in every run of its
-- programme-year and has a journal of kind 'opening'. Append-only: never edit a merged
-- migration.

CREATE TABLE opening_imports (
    import_id        BIGSERIAL PRIMARY KEY,
    programme        TEXT    NOT NULL,
    -- The digest of the import's rows in canonical order: the same content imports once.
    content_hash     TEXT    NOT NULL,
    status           TEXT    NOT NULL,   -- pending | confirmed | superseded
    registry_version BIGINT  NOT NULL,
    created_by       TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    confirmed_by     TEXT,
    confirmed_at     TEXT,
    journal_id       BIGINT
);
-- At most one confirmed import per programme.
CREATE UNIQUE INDEX opening_imports_one_confirmed ON opening_imports (programme)
    WHERE status = 'confirmed';

-- One row per (beneficiary, provider) of an import; provider is empty when unknown.
CREATE TABLE opening_lines (
    import_id   BIGINT  NOT NULL,
    seq         BIGINT  NOT NULL,
    beneficiary TEXT    NOT NULL,
    provider    TEXT    NOT NULL,
    payee       TEXT    NOT NULL,
    amount_fen  BIGINT  NOT NULL CHECK (amount_fen >= 0),
    PRIMARY KEY (import_id, seq)
);
