-- Each run's lines counted and summed once, when the run is created (its lines never change
-- after): the runs lists read these instead of summing a run's lines (800,000 for a city of
-- 100,000 enterprises) for every run shown. Filled from the runs already kept.
-- Append-only: never edit a merged migration.

CREATE TABLE run_totals (
    run_id           BIGINT PRIMARY KEY,
    lines            BIGINT NOT NULL,
    amount_fen       BIGINT NOT NULL,
    adjustment_lines BIGINT NOT NULL   -- lines of an earlier month than the run's
);

INSERT INTO run_totals (run_id, lines, amount_fen, adjustment_lines)
SELECT r.run_id, COUNT(l.run_id), CAST(COALESCE(SUM(l.amount_fen), 0) AS BIGINT),
       CAST(COALESCE(SUM(CASE WHEN l.original_period <> r.period THEN 1 ELSE 0 END), 0) AS BIGINT)
FROM settlement_runs r LEFT JOIN run_lines l ON l.run_id = r.run_id
GROUP BY r.run_id;
