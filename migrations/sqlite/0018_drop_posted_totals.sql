-- What posted runs settled per (beneficiary, programme) is kept by the balance figures
-- themselves, which add each posted run's lines once (and need them per payee and month as
-- well); the table kept beside them, and written in every post's transaction, is dropped.
-- Append-only: never edit a merged migration.

DROP TABLE posted_totals;
