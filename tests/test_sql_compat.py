"""The SQL in sql/ runs on Greenplum 6 (PostgreSQL 9.4) and DuckDB, unchanged.

How this is checked (no Greenplum here):
1. A denylist scan of every file (comments and string literals stripped) for constructs that are
   newer than PostgreSQL 9.4 or DuckDB-only; the scanner itself is tested on one sample per rule,
   so a rule that silently stopped matching would fail.
2. Every file is run, through the same placeholder translation as production, on the real
   PostgreSQL server and on DuckDB over the same rows, and the results must be identical.
3. Placeholders: named only (``:name``), the same set that the extract stage binds, no positional
   ``%s`` / ``?`` / ``$1`` and no ``::`` casts (CAST() reads the same everywhere).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import psycopg2
import pytest

from searchrec import warehouse

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
QUERIES = sorted(p.stem for p in SQL_DIR.glob("*.sql") if p.stem != "ddl")

# construct -> why it is refused (the PostgreSQL version that introduced it, or the DuckDB-only feature)
DENYLIST: dict[str, str] = {
    r"\bMERGE\s+INTO\b": "MERGE (PostgreSQL 15)",
    r"\bON\s+CONFLICT\b": "INSERT ... ON CONFLICT (9.5)",
    r"\bGROUPING\s+SETS\b|\bCUBE\s*\(|\bROLLUP\s*\(": "GROUPING SETS / CUBE / ROLLUP (9.5)",
    r"\bTABLESAMPLE\b": "TABLESAMPLE (9.5)",
    r"\bSKIP\s+LOCKED\b": "SKIP LOCKED (9.5)",
    r"\bGROUPS\s+(BETWEEN|UNBOUNDED|CURRENT|\d)": "GROUPS window frames (11)",
    r"\bEXCLUDE\s+(CURRENT\s+ROW|GROUP|TIES|NO\s+OTHERS)\b": "frame EXCLUDE (11)",
    r"\bRANGE\s+BETWEEN\s+(?!UNBOUNDED|CURRENT)": "RANGE frames with an offset (11)",
    r"\bGENERATED\s+(ALWAYS|BY\s+DEFAULT)\b": "generated / identity columns (10, 12)",
    r"\bCREATE\s+(OR\s+REPLACE\s+)?PROCEDURE\b|\bCALL\s+\w": "procedures (11)",
    r"\bjsonb?_path_\w+|@\?|@@\s*'\$": "SQL/JSON path (12)",
    r"\bJSON_TABLE\b|\bJSON_(QUERY|VALUE|EXISTS)\s*\(": "SQL/JSON functions (16, 17)",
    r"\bAS\s+(NOT\s+)?MATERIALIZED\b": "CTE MATERIALIZED hints (12)",
    r"\bWITH\s+TIES\b": "FETCH ... WITH TIES (13)",
    r"\bFETCH\s+(FIRST|NEXT)\b": "FETCH FIRST (PostgreSQL 8.4 has it, Greenplum 6 only partly): use LIMIT",
    r"\b(INDEX|SCHEMA|SEQUENCE|COLUMN)\s+(CONCURRENTLY\s+)?IF\s+NOT\s+EXISTS\b": "CREATE INDEX / SCHEMA / SEQUENCE, ADD COLUMN ... IF NOT EXISTS (9.5)",
    r"\bINCLUDE\s*\(": "covering indexes (11)",
    r"\b(array_position|array_positions|num_nulls|num_nonnulls|gen_random_uuid|jsonb_set|jsonb_insert)\s*\(": "functions newer than 9.4",
    r"\b(websearch_to_tsquery|string_to_table|date_bin|trim_array|unistr|any_value|range_agg)\s*\(": "functions newer than 9.4",
    r"\bIS\s+(NOT\s+)?JSON\b|\bUNIQUE\s+NULLS\b": "PostgreSQL 15/16 syntax",
    r"\bQUALIFY\b": "QUALIFY (DuckDB only)",
    r"\bSELECT\s+\*\s+(EXCLUDE|REPLACE)\b": "star EXCLUDE / REPLACE (DuckDB only)",
    r"\bUSING\s+SAMPLE\b": "USING SAMPLE (DuckDB only)",
    r"\bCREATE\s+OR\s+REPLACE\s+TABLE\b": "CREATE OR REPLACE TABLE (DuckDB only)",
    r"\b(list_\w+|struct_pack|arg_max|arg_min|epoch_ms|strftime|regexp_matches|len)\s*\(": "DuckDB-only functions",
    r"(?<!\w)//(?!\w)|\*\*": "DuckDB-only operators",
    r"\bLATERAL\b.*\bUNNEST\b.*\bWITH\s+ORDINALITY\b": "kept simple for Greenplum's planner",
    r"::": "'::' casts collide with ':name' placeholders; use CAST()",
    r"%s|\?|\$\d": "positional placeholders; use :name",
}
DENYLIST_SAMPLES = {
    r"\bMERGE\s+INTO\b": "MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
    r"\bON\s+CONFLICT\b": "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
    r"\bGROUPING\s+SETS\b|\bCUBE\s*\(|\bROLLUP\s*\(": "SELECT a FROM t GROUP BY ROLLUP (a)",
    r"\bTABLESAMPLE\b": "SELECT * FROM t TABLESAMPLE SYSTEM (1)",
    r"\bSKIP\s+LOCKED\b": "SELECT * FROM t FOR UPDATE SKIP LOCKED",
    r"\bGROUPS\s+(BETWEEN|UNBOUNDED|CURRENT|\d)": "sum(a) OVER (ORDER BY a GROUPS BETWEEN 1 PRECEDING AND CURRENT ROW)",
    r"\bEXCLUDE\s+(CURRENT\s+ROW|GROUP|TIES|NO\s+OTHERS)\b": "sum(a) OVER (ROWS UNBOUNDED PRECEDING EXCLUDE CURRENT ROW)",
    r"\bRANGE\s+BETWEEN\s+(?!UNBOUNDED|CURRENT)": "sum(a) OVER (ORDER BY ts RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW)",
    r"\bGENERATED\s+(ALWAYS|BY\s+DEFAULT)\b": "CREATE TABLE t (a int GENERATED ALWAYS AS (1) STORED)",
    r"\bCREATE\s+(OR\s+REPLACE\s+)?PROCEDURE\b|\bCALL\s+\w": "CALL refresh()",
    r"\bjsonb?_path_\w+|@\?|@@\s*'\$": "SELECT jsonb_path_query(j, '$.a') FROM t",
    r"\bJSON_TABLE\b|\bJSON_(QUERY|VALUE|EXISTS)\s*\(": "SELECT JSON_VALUE(j, '$.a') FROM t",
    r"\bAS\s+(NOT\s+)?MATERIALIZED\b": "WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x",
    r"\bWITH\s+TIES\b": "SELECT * FROM t ORDER BY a FETCH FIRST 1 ROWS WITH TIES",
    r"\bFETCH\s+(FIRST|NEXT)\b": "SELECT * FROM t ORDER BY a FETCH FIRST 10 ROWS ONLY",
    r"\b(INDEX|SCHEMA|SEQUENCE|COLUMN)\s+(CONCURRENTLY\s+)?IF\s+NOT\s+EXISTS\b": "CREATE INDEX IF NOT EXISTS i ON t (a)",
    r"\bINCLUDE\s*\(": "CREATE INDEX i ON t (a) INCLUDE (b)",
    r"\b(array_position|array_positions|num_nulls|num_nonnulls|gen_random_uuid|jsonb_set|jsonb_insert)\s*\(": "SELECT num_nulls(a, b) FROM t",
    r"\b(websearch_to_tsquery|string_to_table|date_bin|trim_array|unistr|any_value|range_agg)\s*\(": "SELECT any_value(a) FROM t",
    r"\bIS\s+(NOT\s+)?JSON\b|\bUNIQUE\s+NULLS\b": "SELECT a IS JSON FROM t",
    r"\bQUALIFY\b": "SELECT * FROM t QUALIFY row_number() OVER () = 1",
    r"\bSELECT\s+\*\s+(EXCLUDE|REPLACE)\b": "SELECT * EXCLUDE (a) FROM t",
    r"\bUSING\s+SAMPLE\b": "SELECT * FROM t USING SAMPLE 10%",
    r"\bCREATE\s+OR\s+REPLACE\s+TABLE\b": "CREATE OR REPLACE TABLE t AS SELECT 1",
    r"\b(list_\w+|struct_pack|arg_max|arg_min|epoch_ms|strftime|regexp_matches|len)\s*\(": "SELECT arg_max(a, b) FROM t",
    r"(?<!\w)//(?!\w)|\*\*": "SELECT a // 2 FROM t",
    r"\bLATERAL\b.*\bUNNEST\b.*\bWITH\s+ORDINALITY\b": "SELECT * FROM t, LATERAL UNNEST(a) WITH ORDINALITY",
    r"::": "SELECT a::date FROM t",
    r"%s|\?|\$\d": "SELECT * FROM t WHERE a = %s",
}
_STRIP = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.S)


def code_of(sql: str) -> str:
    """SQL without comments and string literals, on one line (what the denylist looks at)."""
    return " ".join(_STRIP.sub(" ", sql).split())


def violations(sql: str) -> list[str]:
    code = code_of(sql)
    return [why for pattern, why in DENYLIST.items() if re.search(pattern, code, re.I)]


def test_every_denylist_rule_catches_its_sample():
    assert set(DENYLIST_SAMPLES) == set(DENYLIST)
    for pattern, sample in DENYLIST_SAMPLES.items():
        assert DENYLIST[pattern] in violations(sample), sample


@pytest.mark.parametrize("name", [*QUERIES, "ddl"])
def test_no_construct_newer_than_postgres_9_4(name):
    assert violations((SQL_DIR / f"{name}.sql").read_text()) == []


def test_the_queries_exist_and_bind_named_parameters():
    expected = {
        "train_events": {"start_date", "end_date", "lookback_days", "history_length"},
        "infer_events": {"start_date", "end_date", "history_length", "all_users"},
        "orders": {"start_date", "end_date"},
        "window_purchases": {"start_date", "end_date"},  # `searchrec run`'s probes before a run
        "window_queries": {"start_date", "end_date"},
    }
    assert QUERIES == sorted(expected)
    for name in QUERIES:
        sql = warehouse.load_sql(name)  # as installed (package data), the same file
        assert sql == (SQL_DIR / f"{name}.sql").read_text()
        assert set(warehouse.sql_parameters(sql)) == expected[name]
        pg, dd = warehouse.render_sql(sql, "postgresql"), warehouse.render_sql(sql, "duckdb")
        for param in expected[name]:
            assert f"%({param})s" in pg and f"${param}" in dd and f":{param}" not in code_of(pg)


def test_render_leaves_literals_and_comments_alone():
    sql = "SELECT ':x', a FROM t -- :y 100%\nWHERE b = :z AND c LIKE 'a%'"
    assert warehouse.sql_parameters(sql) == ["z"]
    assert (
        warehouse.render_sql(sql, "postgresql")
        == "SELECT ':x', a FROM t -- :y 100%%\nWHERE b = %(z)s AND c LIKE 'a%%'"
    )
    assert (
        warehouse.render_sql(sql, "duckdb")
        == "SELECT ':x', a FROM t -- :y 100%\nWHERE b = $z AND c LIKE 'a%'"
    )


ROWS_Q = pd.DataFrame(
    {
        "user_id": [1, 1, 1, 2, 2, 3],
        "query_ts": pd.to_datetime(
            [
                "2026-01-01 09:00",
                "2026-01-02 09:00",
                "2026-01-02 09:00",
                "2026-01-03 00:00",
                "2026-01-04 00:00",
                "2026-01-05 00:00",
            ]
        ).astype("datetime64[us]"),
        "query_text": ["a", "b", None, "", "Ü 100% 'quoted'", "c"],
    }
)
ROWS_O = pd.DataFrame(
    {
        "user_id": [1, 2, 4],
        "order_ts": pd.to_datetime(["2026-01-03 00:00", "2026-01-04 00:00", "2026-01-04 12:00"]).astype(
            "datetime64[us]"
        ),
        "nm_id": [10, 20, 40],
    }
)
PARAMS = {
    "train_events": {
        "start_date": "2026-01-03",
        "end_date": "2026-01-04",
        "lookback_days": 30,
        "history_length": 2,
    },
    "infer_events": {
        "start_date": "2026-01-01",
        "end_date": "2026-01-04",
        "history_length": 2,
        "all_users": True,
    },
    "orders": {"start_date": "2026-01-03", "end_date": "2026-01-04"},
    "window_purchases": {"start_date": "2026-01-04", "end_date": "2026-01-04"},
    "window_queries": {"start_date": "2026-01-06", "end_date": "2026-01-09"},
}


def _norm(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=repr)


def test_every_file_runs_on_postgres_and_duckdb_with_the_same_result(pg_dsn, pg_load, tmp_path):
    pg_load(ROWS_Q, "search_queries")
    pg_load(ROWS_O, "orders", create=False)
    dd = duckdb.connect(str(tmp_path / "w.duckdb"))
    dd.execute((SQL_DIR / "ddl.sql").read_text())
    dd.execute("INSERT INTO search_queries SELECT * FROM ROWS_Q")
    dd.execute("INSERT INTO orders SELECT * FROM ROWS_O")
    dd.execute("CREATE TABLE searchrec_users (user_id BIGINT)")
    pg = psycopg2.connect(pg_dsn)
    with pg.cursor() as cur:
        cur.execute("CREATE TEMP TABLE searchrec_users (user_id BIGINT)")
    results = {}
    for name in QUERIES:
        sql = warehouse.load_sql(name)
        with pg.cursor() as cur:
            cur.execute(warehouse.render_sql(sql, "postgresql"), PARAMS[name])
            got_pg = _norm(cur.fetchall())
        got_dd = _norm(dd.execute(warehouse.render_sql(sql, "duckdb"), PARAMS[name]).fetchall())
        assert got_pg == got_dd, name
        results[name] = got_pg
    pg.close()
    dd.close()
    assert [r[2] for r in results["orders"]] == [10, 20, 40]
    # train: user 1's two most recent queries before 2026-01-03 (a tie at 09:00 on the 2nd), user 4 bare
    train = {(r[0], r[2]): r for r in results["train_events"]}
    assert len(results["train_events"]) == 4 and train[(4, 40)][3:] == (None, None)
    assert sorted(r[4] or "" for r in results["train_events"] if r[0] == 1) == ["", "b"]
    assert {r[0] for r in results["infer_events"]} == {1, 2}
    assert results["window_purchases"] == [(1,)] and results["window_queries"] == []
