-- Running totals of the ledger per account: Σ debits, Σ credits and the number of entries of
-- each account with entries, kept in the transaction that appends a journal. The trial balance
-- and the ledger page read them instead of summing every entry; a listing of the ledger as it
-- stood at an earlier journal still sums the entries. Filled from the entries already kept.
-- Account names compare byte by byte (COLLATE "C"), as SQLite's BINARY does, in both tables:
-- the trial balance is in the same order on both backends whatever the database's locale, and
-- an account prefix is a range of the key. On a large ledger this rewrites the entries'
-- account index once, at start.
-- Append-only: never edit a merged migration.

ALTER TABLE journal_entries ALTER COLUMN account TYPE TEXT COLLATE "C";

CREATE TABLE account_totals (
    account    TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    debit_fen  BIGINT NOT NULL,
    credit_fen BIGINT NOT NULL,
    entries    BIGINT NOT NULL
);

INSERT INTO account_totals (account, debit_fen, credit_fen, entries)
SELECT account, CAST(SUM(debit_fen) AS BIGINT), CAST(SUM(credit_fen) AS BIGINT), COUNT(*)
FROM journal_entries GROUP BY account;
