-- Settlement runs, their frozen inputs and lines, and the append-only double-entry journal.
-- Append-only: never edit a merged migration.

CREATE TABLE settlement_runs (
    run_id           BIGSERIAL PRIMARY KEY,
    programme        TEXT    NOT NULL,
    period           TEXT    NOT NULL,   -- YYYY-MM
    status           TEXT    NOT NULL,   -- open | approved | posted | cancelled
    registry_version BIGINT  NOT NULL,
    content_hash     TEXT    NOT NULL,
    -- The programme's posted run ids when this run was created; posting checks it is current.
    posted_basis     TEXT    NOT NULL,
    created_by       TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    approved_by      TEXT,
    approved_at      TEXT,
    posted_at        TEXT,
    cancelled_at     TEXT,
    journal_id       BIGINT
);
-- One open (or approved, not yet posted) run per programme and period.
CREATE UNIQUE INDEX settlement_runs_one_open ON settlement_runs (programme, period)
    WHERE status IN ('open', 'approved');

-- The registry version each period of the run was computed with (R9: a period keeps the
-- version its first run used).
CREATE TABLE run_periods (
    run_id           BIGINT  NOT NULL,
    period           TEXT    NOT NULL,
    registry_version BIGINT  NOT NULL,
    PRIMARY KEY (run_id, period)
);

-- The frozen input set: the line bases of every period of the fiscal year to date, as the
-- accruals stood when the run was created.
CREATE TABLE run_inputs (
    run_id           BIGINT  NOT NULL,
    period           TEXT    NOT NULL,
    beneficiary      TEXT    NOT NULL,
    provider         TEXT    NOT NULL,
    category         TEXT    NOT NULL,
    chip_origin      TEXT    NOT NULL,
    registered_model TEXT    NOT NULL,
    base_fen         BIGINT  NOT NULL,
    PRIMARY KEY (run_id, period, beneficiary, provider, category, chip_origin, registered_model)
);

-- What the run posts per (original period, line): entitlement − posted before (R9).
CREATE TABLE run_lines (
    run_id            BIGINT  NOT NULL,
    seq               BIGINT  NOT NULL,
    original_period   TEXT    NOT NULL,
    beneficiary       TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    category          TEXT    NOT NULL,
    chip_origin       TEXT    NOT NULL,
    registered_model  TEXT    NOT NULL,
    base_fen          BIGINT  NOT NULL,
    ratio             TEXT    NOT NULL,
    entitlement_fen   BIGINT  NOT NULL,
    posted_before_fen BIGINT  NOT NULL,
    amount_fen        BIGINT  NOT NULL,
    cut_by            TEXT    NOT NULL,
    payee             TEXT    NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Balances read a beneficiary's or payee's posted lines.
CREATE INDEX run_lines_beneficiary ON run_lines (beneficiary);
CREATE INDEX run_lines_payee ON run_lines (payee);

-- Journals are never edited or deleted; corrections are reversals (R10).
CREATE TABLE journals (
    journal_id BIGSERIAL PRIMARY KEY,
    kind       TEXT    NOT NULL,   -- run | payment
    reference  TEXT    NOT NULL,   -- run:<id> or the payment reference
    memo       TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    UNIQUE (kind, reference)
);

CREATE TABLE journal_entries (
    journal_id BIGINT  NOT NULL,
    seq        BIGINT  NOT NULL,
    account    TEXT    NOT NULL,
    debit_fen  BIGINT  NOT NULL CHECK (debit_fen >= 0),
    credit_fen BIGINT  NOT NULL CHECK (credit_fen >= 0),
    PRIMARY KEY (journal_id, seq)
);
CREATE INDEX journal_entries_account ON journal_entries (account);
