-- Source tables of the warehouse contract (DESIGN.md section 2).
-- Runs unchanged on Greenplum 6 / PostgreSQL >= 9.4 and on DuckDB.
CREATE TABLE IF NOT EXISTS search_queries (
    user_id    BIGINT    NOT NULL,
    query_ts   TIMESTAMP NOT NULL,
    query_text TEXT
);

CREATE TABLE IF NOT EXISTS orders (
    user_id  BIGINT    NOT NULL,
    order_ts TIMESTAMP NOT NULL,
    nm_id    BIGINT    NOT NULL
);
