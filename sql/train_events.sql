-- Training events: every purchase in the inclusive date window [start_date, end_date] with the user's
-- queries strictly before the purchase and at most lookback_days older, the history_length most
-- recent ones per purchase. Long format (schemas.TRAIN_EVENTS): one row per (purchase, query); a
-- purchase with no query in the look-back keeps one row with NULL query_ts / query_text.
-- Identical purchase rows (same user, timestamp and item) count once.
--
-- Parameters (named, bound by the driver): start_date, end_date (YYYY-MM-DD text), lookback_days,
-- history_length (integers). Dialect: PostgreSQL 9.4 (Greenplum 6) and DuckDB, same text.
-- Ties on query_ts are broken by md5(query_text), which orders identically on both engines
-- whatever the database collation.
WITH purchases AS (
    SELECT DISTINCT o.user_id, o.order_ts, o.nm_id
    FROM orders o
    WHERE o.order_ts >= CAST(:start_date AS DATE)
      AND o.order_ts < CAST(:end_date AS DATE) + 1
),
window_queries AS (
    SELECT q.user_id, q.query_ts, q.query_text
    FROM search_queries q
    WHERE q.query_ts >= CAST(:start_date AS DATE) - :lookback_days
      AND q.query_ts < CAST(:end_date AS DATE) + 1
),
ranked AS (
    SELECT
        p.user_id,
        p.order_ts,
        p.nm_id,
        wq.query_ts,
        wq.query_text,
        ROW_NUMBER() OVER (
            PARTITION BY p.user_id, p.order_ts, p.nm_id
            ORDER BY wq.query_ts DESC NULLS LAST, md5(wq.query_text) DESC NULLS LAST
        ) AS recency
    FROM purchases p
    LEFT JOIN window_queries wq
        ON wq.user_id = p.user_id
       AND wq.query_ts < p.order_ts
       AND wq.query_ts >= p.order_ts - :lookback_days * INTERVAL '1 day'
)
SELECT user_id, order_ts, nm_id, query_ts, query_text
FROM ranked
WHERE recency <= :history_length
