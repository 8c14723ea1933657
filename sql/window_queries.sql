-- Does the inclusive date window [start_date, end_date] hold at least one search query? Asked by
-- `searchrec run` before a recommendation run starts; stops at the first row.
-- Parameters: start_date, end_date (YYYY-MM-DD text). Dialect: PostgreSQL 9.4 (Greenplum 6) and DuckDB.
SELECT 1
FROM search_queries q
WHERE q.query_ts >= CAST(:start_date AS DATE)
  AND q.query_ts < CAST(:end_date AS DATE) + 1
LIMIT 1
