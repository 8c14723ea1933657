-- Purchases with order_ts in the inclusive date window [start_date, end_date] (schemas.ORDERS).
--
-- Parameters: start_date, end_date (YYYY-MM-DD text).
-- Dialect: PostgreSQL 9.4 (Greenplum 6) and DuckDB, same text.
SELECT o.user_id, o.order_ts, o.nm_id
FROM orders o
WHERE o.order_ts >= CAST(:start_date AS DATE)
  AND o.order_ts < CAST(:end_date AS DATE) + 1
