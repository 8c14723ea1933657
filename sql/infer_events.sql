-- Inference events: the history_length most recent queries of each user with query_ts in the
-- inclusive date window [start_date, end_date] (schemas.INFER_EVENTS, long format).
--
-- User filter: the caller always provides a relation searchrec_users(user_id BIGINT) with distinct
-- ids (a TEMP table filled by COPY on PostgreSQL, a registered Arrow table on DuckDB; empty when
-- there is no list) and all_users: TRUE keeps every user, FALSE only the listed ones.
--
-- Parameters: start_date, end_date (YYYY-MM-DD text), history_length (integer), all_users (boolean).
-- Dialect: PostgreSQL 9.4 (Greenplum 6) and DuckDB, same text.
WITH window_queries AS (
    SELECT q.user_id, q.query_ts, q.query_text
    FROM search_queries q
    LEFT JOIN searchrec_users u ON u.user_id = q.user_id
    WHERE q.query_ts >= CAST(:start_date AS DATE)
      AND q.query_ts < CAST(:end_date AS DATE) + 1
      AND (:all_users OR u.user_id IS NOT NULL)
),
ranked AS (
    SELECT
        wq.user_id,
        wq.query_ts,
        wq.query_text,
        ROW_NUMBER() OVER (
            PARTITION BY wq.user_id
            ORDER BY wq.query_ts DESC, md5(wq.query_text) DESC NULLS LAST
        ) AS recency
    FROM window_queries wq
)
SELECT user_id, query_ts, query_text
FROM ranked
WHERE recency <= :history_length
