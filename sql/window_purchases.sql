-- Does the inclusive date window [start_date, end_date] hold at least one purchase? Asked by
-- `searchrec run` before a training run starts; stops at the first row (cheap on any table size).
-- Parameters: start_date, end_date (YYYY-MM-DD text). Dialect: PostgreSQL 9.4 (Greenplum 6) and DuckDB.
SELECT 1
FROM orders o
WHERE o.order_ts >= CAST(:start_date AS DATE)
  AND o.order_ts < CAST(:end_date AS DATE) + 1
LIMIT 1
