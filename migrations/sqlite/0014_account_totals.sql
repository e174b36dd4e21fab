-- Running totals of the ledger per account: Σ debits, Σ credits and the number of entries of
-- each account with entries, kept in the transaction that appends a journal. The trial balance
-- and the ledger page read them instead of summing every entry; a listing of the ledger as it
-- stood at an earlier journal still sums the entries. Filled from the entries already kept.
-- Append-only: never edit a merged migration.

CREATE TABLE account_totals (
    account    TEXT    NOT NULL PRIMARY KEY,
    debit_fen  INTEGER NOT NULL,
    credit_fen INTEGER NOT NULL,
    entries    INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO account_totals (account, debit_fen, credit_fen, entries)
SELECT account, SUM(debit_fen), SUM(credit_fen), COUNT(*) FROM journal_entries GROUP BY account;
