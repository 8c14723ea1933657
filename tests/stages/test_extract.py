"""Extract stage on real engines: PostgreSQL on loopback and DuckDB files, with content checks.

Every SQL result is compared with an independent pandas reference of the contract (DESIGN.md
section 2) and between the two engines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from searchrec import warehouse
from searchrec.artifacts import events, folder, snapshot
from searchrec.errors import SearchrecError
from searchrec.stages import extract

DDL = Path(__file__).resolve().parents[2] / "sql" / "ddl.sql"
TS = "datetime64[us]"


# --- data -------------------------------------------------------------------------------------------


def frames(queries: list[tuple], orders: list[tuple]) -> tuple[pd.DataFrame, pd.DataFrame]:
    q = pd.DataFrame(queries, columns=["user_id", "query_ts", "query_text"]).astype(
        {"user_id": "int64", "query_ts": TS, "query_text": "object"}
    )
    o = pd.DataFrame(orders, columns=["user_id", "order_ts", "nm_id"]).astype(
        {"user_id": "int64", "order_ts": TS, "nm_id": "int64"}
    )
    return q, o


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def crafted() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Edge cases of the training/inference contract, window 2026-03-10 .. 2026-03-12, look-back 30 days."""
    buy = ts("2026-03-11 12:00")
    queries = [(1, buy - pd.Timedelta(hours=h), f"q{h:02d}") for h in range(1, 14)]  # 13 before: 10 kept
    queries += [
        (1, buy, "at the order time"),  # not strictly before
        (1, buy + pd.Timedelta(seconds=1), "after"),
        (2, ts("2026-02-09 12:00"), "exactly 30 days before"),  # order_ts - 30 days: kept
        (2, ts("2026-02-09 11:59:59.999999"), "just over 30 days before"),
        (2, ts("2026-03-01"), None),
        (2, ts("2026-03-02"), ""),
        (2, ts("2026-03-03"), "🛒 кроссовки nike 👟"),
        (2, ts("2026-03-04"), "https://shop.example/catalog/123456789/detail.aspx"),
        (4, ts("2026-03-05"), "x" * 5000),
        (5, ts("2026-03-09 10:00"), "tie a"),  # same timestamp: md5 decides on both engines
        (5, ts("2026-03-09 10:00"), "tie b"),
        (5, ts("2026-03-09 10:00"), "tie c"),
        (6, ts("2026-03-12 23:59:59.999999"), "last microsecond of the window"),
        (6, ts("2026-03-13 00:00"), "after the window"),
        (6, ts("2026-03-09 23:59:59.999999"), "before the window"),
    ]
    orders = [
        (1, buy, 101),
        (2, ts("2026-03-11 12:00"), 102),
        (3, ts("2026-03-10 00:00"), 103),  # first instant of the window; no queries at all
        (4, ts("2026-03-12 23:59:59.999999"), 104),  # last instant of the window
        (4, ts("2026-03-13 00:00"), 105),  # day after: out
        (4, ts("2026-03-09 23:59:59.999999"), 106),  # day before: out
        (5, ts("2026-03-10 09:00"), 107),
        (5, ts("2026-03-10 09:00"), 107),  # identical purchase row: counted once
    ]
    return frames(queries, orders)


def random_data(seed: int = 0, users: int = 60, n_queries: int = 3000, n_orders: int = 400):
    rng = np.random.default_rng(seed)
    base = np.datetime64("2026-02-01T00:00:00", "us")
    span_us = 60 * 86_400 * 1_000_000
    vocab = np.array(
        ["телефон", "iphone 15", "", "платье", "12345678", "кроссовки", "чехол", "🧸", "сумка"], object
    )
    q_ts = base + rng.integers(0, span_us, n_queries).astype("timedelta64[us]")
    # coarse timestamps give ties on query_ts
    q_ts = q_ts.astype("datetime64[h]").astype("datetime64[us]")
    text = vocab[rng.integers(0, len(vocab), n_queries)] + " " + rng.integers(0, 40, n_queries).astype(str)
    text[rng.random(n_queries) < 0.05] = None
    q = pd.DataFrame(
        {"user_id": rng.integers(1, users + 1, n_queries), "query_ts": q_ts, "query_text": text}
    ).astype({"query_ts": TS})
    o = pd.DataFrame(
        {
            "user_id": rng.integers(1, users + 6, n_orders),  # a few buyers never searched
            "order_ts": base + rng.integers(0, span_us, n_orders).astype("timedelta64[us]"),
            "nm_id": rng.integers(1, 50, n_orders),
        }
    ).astype({"order_ts": TS})
    return q, o


def make_duckdb(path: Path, q: pd.DataFrame, o: pd.DataFrame, *, tables: tuple[str, ...] = ("q", "o")) -> str:
    conn = duckdb.connect(str(path))
    if "q" in tables:
        conn.execute(DDL.read_text().split(";")[0])
        conn.register("q_df", q)
        conn.execute("INSERT INTO search_queries SELECT user_id, query_ts, query_text FROM q_df")
    if "o" in tables:
        conn.execute(DDL.read_text().split(";")[1])
        conn.register("o_df", o)
        conn.execute("INSERT INTO orders SELECT user_id, order_ts, nm_id FROM o_df")
    conn.close()
    return f"duckdb:///{path}"


def _md5(text: object) -> str:
    return (
        ""
        if text is None or text is pd.NA or (isinstance(text, float))
        else hashlib.md5(str(text).encode()).hexdigest()
    )


def reference_train(q, o, start: str, end: str, lookback_days: int = 30, history: int = 10) -> pd.DataFrame:
    lo, hi = pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(days=1)
    p = o[(o.order_ts >= lo) & (o.order_ts < hi)].drop_duplicates()
    m = p.merge(q, on="user_id", how="left")
    keep = (m.query_ts < m.order_ts) & (m.query_ts >= m.order_ts - pd.Timedelta(days=lookback_days))
    m = m[keep].copy()
    m["h"] = m.query_text.map(_md5)
    m = m.sort_values(["query_ts", "h"], ascending=False)
    m = m.groupby(["user_id", "order_ts", "nm_id"], sort=False).head(history).drop(columns="h")
    bare = p.merge(m[["user_id", "order_ts", "nm_id"]].drop_duplicates(), how="left", indicator=True)
    bare = bare[bare._merge == "left_only"].drop(columns="_merge")
    bare = bare.assign(query_ts=pd.NaT, query_text=None).astype({"query_ts": TS})
    return sort_train(pd.concat([m, bare], ignore_index=True))


def reference_infer(q, start: str, end: str, history: int = 10, users=None) -> pd.DataFrame:
    lo, hi = pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(days=1)
    m = q[(q.query_ts >= lo) & (q.query_ts < hi)].copy()
    if users is not None:
        m = m[m.user_id.isin(users)]
    m["h"] = m.query_text.map(_md5)
    m = m.sort_values(["query_ts", "h"], ascending=False).groupby("user_id", sort=False).head(history)
    return sort_infer(m.drop(columns="h"))


def sort_train(df: pd.DataFrame) -> pd.DataFrame:
    df = df.astype(
        {"user_id": "int64", "nm_id": "int64", "order_ts": TS, "query_ts": TS, "query_text": "object"}
    )
    df["query_text"] = df.query_text.where(df.query_text.notna(), None)
    cols = ["user_id", "order_ts", "nm_id", "query_ts", "query_text"]
    return df[cols].sort_values(cols, na_position="first").reset_index(drop=True)


def sort_infer(df: pd.DataFrame) -> pd.DataFrame:
    df = df.astype({"user_id": "int64", "query_ts": TS, "query_text": "object"})
    df["query_text"] = df.query_text.where(df.query_text.notna(), None)
    cols = ["user_id", "query_ts", "query_text"]
    return df[cols].sort_values(cols, na_position="first").reset_index(drop=True)


def read_dir(path: Path, schema: pa.Schema) -> pa.Table:
    files = sorted(path.glob(events.PART_GLOB))
    assert files, f"no {events.PART_GLOB} in {path}"
    for f in files:
        assert pq.read_schema(f).equals(schema), f"{f.name}: {pq.read_schema(f)}"
    return pa.concat_tables(pq.read_table(f) for f in files)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=None, timestamp_as_object=False)


@pytest.fixture
def warehouses(tmp_path: Path, pg_dsn: str, pg_load):
    """Both engines loaded with the same data; returns (data, [uri_pg, uri_duckdb])."""

    def load(q: pd.DataFrame, o: pd.DataFrame) -> list[str]:
        pg_load(q, "search_queries")
        pg_load(o, "orders")
        return [pg_dsn, make_duckdb(tmp_path / "warehouse.duckdb", q, o)]

    return load


# --- training events --------------------------------------------------------------------------------


def test_training_events_follow_the_contract_on_both_engines(warehouses, tmp_path):
    q, o = crafted()
    for uri in warehouses(q, o):
        out = tmp_path / f"train-{uri.split(':')[0]}"
        stats = extract.extract_training_events(uri, "2026-03-10", "2026-03-12", out, chunk_rows=4)
        got = sort_train(to_pandas(read_dir(out, events.TRAIN_EVENTS)))
        pd.testing.assert_frame_equal(got, reference_train(q, o, "2026-03-10", "2026-03-12"))

        hist = {k: g.query_text.tolist() for k, g in got.groupby("nm_id")}
        # user 1: 13 queries 1..13 hours before; the 10 most recent, nothing at/after the order time
        assert sorted(hist[101]) == [f"q{h:02d}" for h in range(1, 11)]
        # user 2: look-back is inclusive at exactly 30 days; NULL, '' and emoji texts survive
        assert set(hist[102]) == {
            "exactly 30 days before",
            None,
            "",
            "🛒 кроссовки nike 👟",
            "https://shop.example/catalog/123456789/detail.aspx",
        }
        # user 3: no queries -> one row with NULLs; window includes its first instant
        row = got[got.nm_id == 103]
        assert len(row) == 1 and pd.isna(row.query_ts.iloc[0]) and row.query_text.iloc[0] is None
        # window includes the last microsecond of end_date, excludes the days around it
        assert 104 in hist and 105 not in hist and 106 not in hist
        assert hist[104] == ["x" * 5000]
        # duplicate purchase rows count once
        assert len(got[got.nm_id == 107]) == 3
        assert stats.rows == len(got) and stats.users == 5 and stats.files == sorted(stats.files)
        assert len(stats.files) == -(-stats.rows // 4)


def test_training_events_identical_on_postgres_and_duckdb(warehouses, tmp_path):
    q, o = random_data()
    results = []
    for i, uri in enumerate(warehouses(q, o)):
        out = tmp_path / f"e{i}"
        extract.extract_training_events(
            uri, "2026-02-20", "2026-03-05", out, lookback_days=7, history_length=4, chunk_rows=97
        )
        results.append(sort_train(to_pandas(read_dir(out, events.TRAIN_EVENTS))))
    pd.testing.assert_frame_equal(results[0], results[1])
    ref = reference_train(q, o, "2026-02-20", "2026-03-05", lookback_days=7, history=4)
    pd.testing.assert_frame_equal(results[0], ref)
    assert len(ref) > 400 and ref.query_ts.isna().any()  # the data exercises both kinds of rows
    assert ref.groupby(["user_id", "order_ts", "nm_id"]).size().max() == 4


# --- inference events / orders ---------------------------------------------------------------------


def test_inference_events_last_queries_per_user_on_both_engines(warehouses, tmp_path):
    q, o = random_data(seed=1)
    uris = warehouses(q, o)
    outs = []
    for i, uri in enumerate(uris):
        out = tmp_path / f"i{i}"
        stats = extract.extract_inference_events(
            uri, "2026-03-01", "2026-03-07", out, history_length=3, chunk_rows=50
        )
        outs.append(sort_infer(to_pandas(read_dir(out, events.INFER_EVENTS))))
        assert stats.users == outs[-1].user_id.nunique()
    pd.testing.assert_frame_equal(outs[0], outs[1])
    pd.testing.assert_frame_equal(outs[0], reference_infer(q, "2026-03-01", "2026-03-07", history=3))
    assert outs[0].groupby("user_id").size().max() == 3


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_inference_events_only_for_listed_users(warehouses, tmp_path, fmt):
    q, o = random_data(seed=2)
    listed = [3, 5, 5, 7, 999_999]  # duplicate and unknown ids are fine
    users_path = tmp_path / f"users.{fmt}"
    frame = pd.DataFrame({"user_id": listed, "segment": "a"})
    frame.to_parquet(users_path) if fmt == "parquet" else frame.to_csv(users_path, index=False)
    for i, uri in enumerate(warehouses(q, o)):
        out = tmp_path / f"u{i}"
        stats = extract.extract_inference_events(uri, "2026-02-01", "2026-03-31", out, users_path=users_path)
        got = sort_infer(to_pandas(read_dir(out, events.INFER_EVENTS)))
        assert set(got.user_id) == {3, 5, 7}
        pd.testing.assert_frame_equal(got, reference_infer(q, "2026-02-01", "2026-03-31", users={3, 5, 7}))
        assert stats.as_metadata()["listed_users"] == 4 and stats.users == 3


def test_orders_window_is_inclusive(warehouses, tmp_path):
    q, o = crafted()
    for i, uri in enumerate(warehouses(q, o)):
        stats = extract.extract_orders(uri, "2026-03-10", "2026-03-12", tmp_path / f"o{i}")
        got = to_pandas(read_dir(tmp_path / f"o{i}", events.ORDERS))
        assert sorted(got.nm_id) == [101, 102, 103, 104, 107, 107]  # raw rows, duplicates kept
        assert stats.rows == 6 and stats.users == 5
        empty = extract.extract_orders(uri, "2030-01-01", "2030-01-02", tmp_path / f"none{i}")
        assert empty.rows == 0 and read_dir(tmp_path / f"none{i}", events.ORDERS).num_rows == 0
        with pytest.raises(SearchrecError, match="no purchases between 2030-01-01 and 2030-01-02"):
            extract.extract_orders(uri, "2030-01-01", "2030-01-02", tmp_path / "x", allow_empty=False)


# --- streaming --------------------------------------------------------------------------------------


def test_streaming_writes_bounded_chunks(warehouses, tmp_path):
    q, o = random_data(seed=3, n_orders=300)
    for i, uri in enumerate(warehouses(q, o)):
        out = tmp_path / f"s{i}"
        stats = extract.extract_training_events(uri, "2026-02-01", "2026-03-31", out, chunk_rows=64)
        files = sorted(out.glob(events.PART_GLOB))
        sizes = [pq.ParquetFile(f).metadata.num_rows for f in files]
        assert [f.name for f in files] == [f"part-{n:05d}.parquet" for n in range(len(files))]
        assert len(files) >= stats.rows // 64 >= 5 and max(sizes) <= 64 and sum(sizes) == stats.rows
        assert stats.bytes == sum(f.stat().st_size for f in files)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left


def test_rerun_replaces_the_output_folder(warehouses, tmp_path):
    q, o = crafted()
    uri = warehouses(q, o)[1]
    out = tmp_path / "events"
    extract.extract_training_events(uri, "2026-03-10", "2026-03-12", out, chunk_rows=2)
    first = len(list(out.glob("*.parquet")))
    extract.extract_training_events(uri, "2026-03-10", "2026-03-12", out, chunk_rows=100)
    assert first > 1 and [p.name for p in out.iterdir()] == [folder.COMPLETE_MARKER, "part-00000.parquet"]


def test_connection_lost_mid_stream_leaves_previous_output(warehouses, tmp_path, monkeypatch, _pg_admin):
    q, o = random_data(seed=4)
    pg = warehouses(q, o)[0]
    out = tmp_path / "events"
    extract.extract_training_events(pg, "2026-02-01", "2026-03-31", out, chunk_rows=10)
    assert folder.is_complete(out)
    original = warehouse._pg_batches

    def killed_before_the_copy(conn, *args):
        admin = psycopg2.connect(_pg_admin)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (conn.get_backend_pid(),))
        admin.close()
        yield from original(conn, *args)

    monkeypatch.setattr(warehouse, "_pg_batches", killed_before_the_copy)
    with pytest.raises(
        SearchrecError, match=r"connection lost during sql/train_events.sql after 0 rows"
    ) as err:
        extract.extract_training_events(pg, "2026-02-01", "2026-03-31", out, chunk_rows=10)
    assert "\n" not in str(err.value)
    # the failed rerun leaves nothing a reader could take for a result (no directory is renamed, so the
    # earlier output was cleared first, as on a retried KFP task) and nothing beside the folder
    assert list(out.iterdir()) == []
    with pytest.raises(SearchrecError, match="is not a searchrec artifact"):
        events.read(out, events.TRAIN_EVENTS, "training events")
    assert [p.name for p in tmp_path.iterdir()] == ["events", "warehouse.duckdb"]


# --- failures ---------------------------------------------------------------------------------------


def test_dead_database_fails_after_retries_with_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(warehouse, "CONNECT_BACKOFF_S", 0.05)
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"postgresql://127.0.0.1:{port}/test"
    out = tmp_path / "events"
    with caplog.at_level(logging.WARNING, logger="searchrec"):
        with pytest.raises(SearchrecError) as err:
            extract.extract_training_events(uri, "2026-03-10", "2026-03-12", out)
    message = str(err.value)
    assert message.startswith(f"warehouse postgresql://127.0.0.1:{port}/test unreachable after 3 attempts: ")
    assert "\n" not in message
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_table_is_named(pg_dsn, pg_load, tmp_path):
    q, o = crafted()
    pg_load(o, "orders")
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE search_queries")
    with pytest.raises(SearchrecError, match=r"has no table search_queries"):
        extract.extract_training_events(pg_dsn, "2026-03-10", "2026-03-12", tmp_path / "a")
    uri = make_duckdb(tmp_path / "only_orders.duckdb", q, o, tables=("o",))
    with pytest.raises(SearchrecError, match=r"has no table search_queries"):
        extract.extract_training_events(uri, "2026-03-10", "2026-03-12", tmp_path / "b")
    with pytest.raises(SearchrecError, match=r"no such DuckDB file"):
        extract.extract_orders(
            f"duckdb:///{tmp_path}/nope.duckdb", "2026-03-10", "2026-03-12", tmp_path / "c"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["only_orders.duckdb"]


def test_empty_window_is_an_error(warehouses, tmp_path):
    q, o = crafted()
    for uri in warehouses(q, o):
        with pytest.raises(
            SearchrecError, match=r"^no purchases between 2030-01-01 and 2030-01-31 in warehouse "
        ):
            extract.extract_training_events(uri, "2030-01-01", "2030-01-31", tmp_path / "t")
        with pytest.raises(
            SearchrecError, match=r"^no queries between 2030-01-01 and 2030-01-31 in warehouse "
        ):
            extract.extract_inference_events(uri, "2030-01-01", "2030-01-31", tmp_path / "i")
    assert not (tmp_path / "t").exists() and not (tmp_path / "i").exists()


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-13-01", "2026-12-31", "start_date '2026-13-01' is not a calendar date YYYY-MM-DD"),
        ("2026-01-01", "yesterday", "end_date 'yesterday' is not a calendar date YYYY-MM-DD"),
        ("2026-02-30", "2026-03-01", "start_date '2026-02-30' is not a calendar date"),
        ("2026/01/01", "2026-03-01", "start_date '2026/01/01' is not a calendar date"),
        ("2026-03-10", "2026-03-01", "start_date 2026-03-10 is after end_date 2026-03-01"),
    ],
)
def test_bad_dates_name_the_parameter(tmp_path, start, end, message):
    uri = f"duckdb:///{tmp_path}/never-opened.duckdb"
    for call in (extract.extract_training_events, extract.extract_inference_events, extract.extract_orders):
        with pytest.raises(SearchrecError, match="^" + message.replace("(", r"\(")):
            call(uri, start, end, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_bad_user_lists(warehouses, tmp_path):
    q, o = crafted()
    uri = warehouses(q, o)[1]
    no_column = tmp_path / "users.csv"
    no_column.write_text("customer\n1\n2\n")
    with pytest.raises(SearchrecError, match=r"users.csv has no user_id column \(columns: customer\)"):
        extract.extract_inference_events(
            uri, "2026-03-01", "2026-03-12", tmp_path / "o", users_path=no_column
        )
    texts = tmp_path / "users.parquet"
    pd.DataFrame({"user_id": ["a", "b"]}).to_parquet(texts)
    with pytest.raises(SearchrecError, match=r"user_id must be integers"):
        extract.extract_inference_events(uri, "2026-03-01", "2026-03-12", tmp_path / "o", users_path=texts)
    with pytest.raises(SearchrecError, match=r"does not exist"):
        extract.extract_inference_events(
            uri, "2026-03-01", "2026-03-12", tmp_path / "o", users_path=tmp_path / "x.csv"
        )
    assert not (tmp_path / "o").exists()


def test_credentials_never_reach_logs_or_metadata(warehouses, tmp_path, monkeypatch, caplog):
    secret = "Pa55-very-secret-value"
    monkeypatch.setenv("PGPASSWORD", secret)  # trust auth ignores it; it must still never be printed
    q, o = crafted()
    pg = warehouses(q, o)[0]
    with caplog.at_level(logging.DEBUG):
        stats = extract.extract_training_events(pg, "2026-03-10", "2026-03-12", tmp_path / "ok")
        monkeypatch.setattr(warehouse, "CONNECT_BACKOFF_S", 0.01)
        with pytest.raises(SearchrecError) as dead:
            extract.extract_orders(
                "postgresql://127.0.0.1:1/test", "2026-03-10", "2026-03-12", tmp_path / "x"
            )
        with pytest.raises(SearchrecError) as inline:
            extract.extract_orders(
                f"postgresql://root:{secret}@127.0.0.1:5432/test", "2026-03-10", "2026-03-12", tmp_path / "y"
            )
    assert "carries a password" in str(inline.value) and "***" in str(inline.value)
    assert caplog.records, "expected log records"
    for text in (caplog.text, str(dead.value), str(inline.value), json.dumps(stats.as_metadata())):
        assert secret not in text
    assert stats.as_metadata()["warehouse"] == warehouse.display_uri(pg)
    assert "rows" in caplog.text and "train_events" in caplog.text


def test_stats_metadata_is_json_ready(warehouses, tmp_path):
    q, o = crafted()
    uri = warehouses(q, o)[1]
    meta = extract.extract_training_events(uri, "2026-03-10", "2026-03-12", tmp_path / "t").as_metadata()
    assert json.loads(json.dumps(meta)) == meta
    assert meta["window"] == "2026-03-10..2026-03-12" and meta["rows"] == 20 and meta["users"] == 5
    assert meta["warehouse"] == f"duckdb:///{tmp_path}/warehouse.duckdb" and meta["bytes"] > 0


# --- embeddings snapshots ---------------------------------------------------------------------------


def write_snapshot(root: Path, day: str, dims=(8,), rows: int = 5, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    part = root / f"dt={day}"
    part.mkdir(parents=True, exist_ok=True)
    for i, dim in enumerate(dims):
        emb = rng.standard_normal((rows, dim)).astype(np.float32)
        table = pa.table(
            {
                "nm_id": pa.array(np.arange(rows) + 1000 * i, pa.int64()),
                "embedding": pa.array(list(emb), pa.list_(pa.float32())),
            }
        )
        pq.write_table(table, part / f"part-{i}.parquet")
    (part / "_SUCCESS").write_text("")


@pytest.fixture
def snapshot_root(tmp_path: Path) -> Path:
    root = tmp_path / "embeddings"
    write_snapshot(root, "2026-09-20", seed=1)
    write_snapshot(root, "2026-10-01", dims=(8, 8), seed=2)
    write_snapshot(root, "2026-10-10", seed=3)
    (root / "README.txt").parent.mkdir(exist_ok=True)
    (root / "README.txt").write_text("not a partition")
    (root / "dt=latest").mkdir()
    return root


def check_snapshot_copy(info: extract.SnapshotInfo, out: Path, source: Path, day: str) -> None:
    assert info.snapshot_date == day and info.dim == 8
    saved = json.loads((out / snapshot.INFO_FILE).read_text())
    assert saved == info.to_json() and saved["uri"].endswith(f"dt={day}")
    src = pa.concat_tables(pq.read_table(p) for p in sorted((source / f"dt={day}").glob("*.parquet")))
    got = pa.concat_tables(pq.read_table(out / f) for f in info.files)
    assert got.equals(src) and info.rows == src.num_rows
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*info.files, snapshot.INFO_FILE, folder.COMPLETE_MARKER]
    )


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("2026-10-03", "2026-10-01"),
        ("2026-10-09", "2026-10-10"),
        ("2026-09-25", "2026-09-20"),
        ("2026-10-24", "2026-10-10"),
    ],
)
def test_snapshot_nearest_pick_local(snapshot_root, tmp_path, wanted, expected):
    out = tmp_path / "snap"
    info = extract.fetch_snapshot(str(snapshot_root), wanted, out)
    check_snapshot_copy(info, out, snapshot_root, expected)
    assert info.as_metadata()["days_off"] == (date.fromisoformat(expected) - date.fromisoformat(wanted)).days


def test_snapshot_pinned_by_naming_its_partition(snapshot_root, tmp_path):
    """A dt= folder as embeddings_uri is taken as it is (even 40 days away) and recorded as pinned."""
    out = tmp_path / "snap"
    info = extract.fetch_snapshot(str(snapshot_root / "dt=2026-09-20") + "/", "2026-10-30", out)
    check_snapshot_copy(info, out, snapshot_root, "2026-09-20")
    meta = info.as_metadata()
    assert meta["pinned"] is True and meta["days_off"] == -40
    nearest = extract.fetch_snapshot(str(snapshot_root), "2026-10-09", tmp_path / "near")
    assert nearest.as_metadata()["pinned"] is False
    with pytest.raises(SearchrecError, match="dt=2026-02-30 is not a calendar date"):
        extract.fetch_snapshot(str(snapshot_root / "dt=2026-02-30"), "2026-10-30", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_snapshot_tie_prefers_the_earlier_date(tmp_path):
    root = tmp_path / "emb"
    write_snapshot(root, "2026-10-01")
    write_snapshot(root, "2026-10-05")
    assert extract.fetch_snapshot(root, "2026-10-03", tmp_path / "o").snapshot_date == "2026-10-01"


def test_snapshot_none_near_names_the_nearest(snapshot_root, tmp_path):
    with pytest.raises(
        SearchrecError,
        match=r"no embeddings snapshot within 14 days of 2026-11-30 .* the nearest is dt=2026-10-10 \(51 days away\)",
    ):
        extract.fetch_snapshot(snapshot_root, "2026-11-30", tmp_path / "o")
    with pytest.raises(SearchrecError, match=r"no dt=YYYY-MM-DD embeddings snapshots under"):
        extract.fetch_snapshot(snapshot_root / "dt=latest", "2026-11-30", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_snapshot_mixed_dims_name_the_file(tmp_path):
    root = tmp_path / "emb"
    write_snapshot(root, "2026-10-01", dims=(8, 16))
    with pytest.raises(
        SearchrecError, match=r"mixes embedding lengths: .*dt=2026-10-01/part-1.parquet has 16"
    ):
        extract.fetch_snapshot(root, "2026-10-01", tmp_path / "o")
    ragged = root / "dt=2026-10-02"
    ragged.mkdir()
    pq.write_table(
        pa.table(
            {
                "nm_id": pa.array([1, 2], pa.int64()),
                "embedding": pa.array([[1.0, 2.0], [1.0]], pa.list_(pa.float32())),
            }
        ),
        ragged / "bad.parquet",
    )
    with pytest.raises(SearchrecError, match=r"dt=2026-10-02/bad.parquet mixes embedding lengths \[1, 2\]"):
        extract.fetch_snapshot(root, "2026-10-02", tmp_path / "o")
    wrong = root / "dt=2026-10-03"
    wrong.mkdir()
    pq.write_table(pa.table({"nm_id": [1], "embedding": [[1.0, 2.0]]}), wrong / "f64.parquet")  # list<double>
    with pytest.raises(
        SearchrecError,
        match=r"f64.parquet: column embedding is list<\w+: double>, expected list<item: float>",
    ):
        extract.fetch_snapshot(root, "2026-10-03", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def _upload(root: Path, put) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        put(path.relative_to(root).as_posix(), path.read_bytes())


def test_snapshot_from_s3(snapshot_root, tmp_path, s3_endpoint):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="ml-embeddings")
    _upload(
        snapshot_root,
        lambda key, data: s3.put_object(Bucket="ml-embeddings", Key=f"bert4rec/nm/{key}", Body=data),
    )
    out = tmp_path / "snap"
    info = extract.fetch_snapshot("s3://ml-embeddings/bert4rec/nm/", "2026-10-03", out)
    check_snapshot_copy(info, out, snapshot_root, "2026-10-01")
    assert info.uri == "s3://ml-embeddings/bert4rec/nm/dt=2026-10-01"
    with pytest.raises(SearchrecError, match=r"the nearest is dt=2026-10-10"):
        extract.fetch_snapshot("s3://ml-embeddings/bert4rec/nm", "2027-01-01", tmp_path / "x")


def test_snapshot_from_gcs(snapshot_root, tmp_path, gcs_endpoint):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    bucket = gcs.Client(credentials=AnonymousCredentials(), project="test").create_bucket("ml-embeddings")
    _upload(snapshot_root, lambda key, data: bucket.blob(f"nm/{key}").upload_from_string(data))
    out = tmp_path / "snap"
    info = extract.fetch_snapshot("gs://ml-embeddings/nm", "2026-10-09", out)
    check_snapshot_copy(info, out, snapshot_root, "2026-10-10")
    assert info.uri == "gs://ml-embeddings/nm/dt=2026-10-10"


def test_duckdb_uri_paths_relative_and_absolute(tmp_path, monkeypatch):
    q, o = crafted()
    make_duckdb(tmp_path / "w.duckdb", q, o)
    monkeypatch.chdir(tmp_path)
    for uri in ("duckdb:///w.duckdb", f"duckdb:///{tmp_path}/w.duckdb", f"duckdb://{tmp_path}/w.duckdb"):
        assert extract.extract_orders(uri, "2026-03-10", "2026-03-12", tmp_path / "o").rows == 6
    for bad in ("duckdb://", "duckdb:///", "duckdb://host/w.duckdb", "mysql://h/db", "w.duckdb"):
        with pytest.raises(SearchrecError, match="warehouse URI"):
            extract.extract_orders(bad, "2026-03-10", "2026-03-12", tmp_path / "o")


# --- COPY path --------------------------------------------------------------------------------------


def test_copy_stream_keeps_every_text_exactly(pg_load, pg_dsn, tmp_path):
    """COPY ... (FORMAT csv) parsed by pyarrow: quotes, commas, newlines, backslashes, the word NULL,
    '' and NULL each come back as they were stored."""
    texts = ['a,"b"\nc\\d\r', "NULL", "", None, "\\N", '"', "  spaced  ", "ёлка 🎄\tтаб"]
    q = pd.DataFrame(
        {
            "user_id": list(range(1, len(texts) + 1)),
            "query_ts": pd.to_datetime(["2026-03-10 10:00:00.123456"] * len(texts)),
            "query_text": texts,
        }
    ).astype({"query_ts": TS})
    pg_load(q, "search_queries")
    pg_load(
        pd.DataFrame({"user_id": [1], "order_ts": pd.to_datetime(["2026-03-10"]), "nm_id": [1]}),
        "orders",
        create=False,
    )
    extract.extract_inference_events(pg_dsn, "2026-03-10", "2026-03-10", tmp_path / "e", chunk_rows=3)
    got = read_dir(tmp_path / "e", events.INFER_EVENTS).sort_by("user_id")
    assert got.column("query_text").to_pylist() == texts
    assert set(got.column("query_ts").to_pylist()) == {
        pd.Timestamp("2026-03-10 10:00:00.123456").to_pydatetime()
    }


@pytest.mark.parametrize(
    "hostile",
    ["2026-03-10'); DROP TABLE orders; --", "2026-03-10' OR '1'='1", "2026-03-10\\'); DROP TABLE orders; --"],
)
def test_parameters_are_bound_not_pasted(pg_load, pg_dsn, hostile):
    q, o = crafted()
    pg_load(q, "search_queries")
    pg_load(o, "orders", create=False)
    conn = psycopg2.connect(pg_dsn)
    try:
        rendered = warehouse.bind_parameters(conn, "SELECT CAST(%(d)s AS DATE)", {"d": hostile})
        with conn.cursor() as cur, pytest.raises(psycopg2.DataError):
            cur.execute(rendered)  # one quoted literal, not a statement: an invalid date, nothing dropped
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders")
            assert cur.fetchone()[0] == len(o)
    finally:
        conn.close()


def test_source_columns_of_the_wrong_type_are_named(pg_dsn, tmp_path):
    """A query_ts stored as text (or an id as a float) is refused before the query, naming table and column."""
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE search_queries (user_id BIGINT NOT NULL, query_ts TEXT NOT NULL, query_text TEXT);"
            "CREATE TABLE orders (user_id BIGINT NOT NULL, order_ts TIMESTAMP NOT NULL, nm_id DOUBLE PRECISION NOT NULL);"
            "INSERT INTO search_queries VALUES (1, 'yesterday', 'q')"
        )
    with pytest.raises(
        SearchrecError, match=r"column search_queries.query_ts is text, the contract says timestamp"
    ):
        extract.extract_inference_events(pg_dsn, "2026-03-10", "2026-03-12", tmp_path / "a")
    with pytest.raises(
        SearchrecError, match=r"column orders.nm_id is double precision, the contract says integer"
    ):
        extract.extract_orders(pg_dsn, "2026-03-10", "2026-03-12", tmp_path / "b")
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE search_queries (user_id BIGINT, query_ts VARCHAR, query_text VARCHAR)")
    con.execute("CREATE TABLE orders (user_id BIGINT, order_ts TIMESTAMP, nm_id BIGINT)")
    con.close()
    with pytest.raises(
        SearchrecError, match=r"column search_queries.query_ts is varchar, the contract says timestamp"
    ):
        extract.extract_training_events(f"duckdb:///{path}", "2026-03-10", "2026-03-12", tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.duckdb"]


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (
            lambda v: v.__setitem__((3, 1), np.nan),
            r"part-0.parquet has NaN or infinite values in 1 row\(s\), first at row 3",
        ),
        (lambda v: v.__setitem__((slice(None), slice(None)), 0.0), "every vector is zero"),
        (lambda v: v.__setitem__((slice(None), slice(None)), 0.25), "all 8 items have the same vector"),
    ],
)
def test_snapshot_vectors_no_model_can_use_are_refused_at_extract(tmp_path, vectors, message):
    v = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    vectors(v)
    part = tmp_path / "emb" / "dt=2026-10-01"
    part.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {"nm_id": np.arange(8, dtype=np.int64), "embedding": pa.array(list(v), pa.list_(pa.float32()))}
        ),
        part / "part-0.parquet",
    )
    with pytest.raises(SearchrecError, match=message) as error:
        extract.fetch_snapshot(tmp_path / "emb", "2026-10-01", tmp_path / "out")
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()


def test_snapshot_profile_is_recorded_as_metrics(tmp_path):
    v = np.ones((6, 3), np.float32) * np.arange(1, 7, dtype=np.float32)[:, None]
    v[2] = 0.0  # one zero vector: a warning, not a refusal
    part = tmp_path / "emb" / "dt=2026-10-01"
    part.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {"nm_id": np.arange(6, dtype=np.int64), "embedding": pa.array(list(v), pa.list_(pa.float32()))}
        ),
        part / "part-0.parquet",
    )
    info = extract.fetch_snapshot(tmp_path / "emb", "2026-10-02", tmp_path / "out")
    metrics = info.as_metrics()
    norms = np.linalg.norm(v, axis=1)
    assert metrics["zero_vectors"] == 1 and metrics["distinct_ids"] == 6 and metrics["days_off"] == -1
    assert metrics["norm_max"] == pytest.approx(norms.max()) and metrics["norm_mean"] == pytest.approx(
        norms.mean()
    )
    assert metrics["norm_min"] == 0.0 and info.as_metadata()["zero_vectors"] == 1
