-- Payments above `ledger.payment_confirm_above_fen` take two persons: one finance user records
-- the payment (status 'awaiting': no journal, the payable unchanged), another confirms it,
-- which writes the payment journal in the same transaction, or either withdraws it. Payments at
-- or below the amount are booked at once and have no row here: their journal is the record.
-- The user ids are the persons four eyes compares; NULL for an actor without a user.
-- Append-only: never edit a merged migration.

CREATE TABLE payments (
    payment_id           BIGSERIAL PRIMARY KEY,
    programme            TEXT    NOT NULL,
    payee                TEXT    NOT NULL,
    amount_fen           BIGINT  NOT NULL CHECK (amount_fen > 0),
    -- The bank or treasury reference: what makes recording a payment idempotent.
    reference            TEXT    NOT NULL,
    status               TEXT    NOT NULL,   -- awaiting | confirmed | withdrawn
    recorded_by          TEXT    NOT NULL,
    recorded_by_user_id  BIGINT,
    recorded_at          TEXT    NOT NULL,
    confirmed_by         TEXT,
    confirmed_by_user_id BIGINT,
    confirmed_at         TEXT,
    withdrawn_by         TEXT,
    withdrawn_at         TEXT,
    -- The payment journal written on confirmation.
    journal_id           BIGINT
);
-- A reference names one payment that is awaiting or confirmed; a withdrawn payment frees it.
CREATE UNIQUE INDEX payments_live_reference ON payments (reference)
    WHERE status IN ('awaiting', 'confirmed');
CREATE INDEX payments_by_status ON payments (status, payment_id);
