"""Clean stage (searchrec.stages.clean): each rule on hand-built events, the funnel, the split, garbage, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from searchrec.artifacts import events as event_parts
from searchrec.artifacts import examples as examples_artifact
from searchrec.artifacts import folder, snapshot
from searchrec.errors import SearchrecError
from searchrec.stages import clean as c

Row = tuple[int, str, int, str | None, str | None]  # user_id, order_ts, nm_id, query_ts, query_text


def at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def train_table(rows: list[Row]) -> pa.Table:
    users, orders, items, query_ts, texts = zip(*rows, strict=True) if rows else ([], [], [], [], [])
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "order_ts": pa.array([at(v) for v in orders], pa.timestamp("us")),
            "nm_id": pa.array(items, pa.int64()),
            "query_ts": pa.array([at(v) for v in query_ts], pa.timestamp("us")),
            "query_text": pa.array(texts, pa.string()),
        },
        schema=event_parts.TRAIN_EVENTS,
    )


def infer_table(rows: list[tuple[int, str | None, str | None]]) -> pa.Table:
    users, query_ts, texts = zip(*rows, strict=True)
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "query_ts": pa.array([at(v) for v in query_ts], pa.timestamp("us")),
            "query_text": pa.array(texts, pa.string()),
        },
        schema=event_parts.INFER_EVENTS,
    )


def write_parts(folder: Path, table: pa.Table, parts: int = 2) -> Path:
    step = max(1, -(-table.num_rows // parts))
    event_parts.write(folder, [table.slice(i * step, step) for i in range(parts)])
    return folder


def write_embeddings(folder: Path, ids: list[int]) -> Path:
    table = pa.table(
        {
            "nm_id": pa.array(ids, pa.int64()),
            "embedding": pa.array([[0.5, 0.5]] * len(ids), pa.list_(pa.float32())),
        }
    )
    snapshot.write(folder, table, snapshot.SnapshotInfo("test", "2026-10-01", "2026-10-01", 2, len(ids), []))
    return folder


def examples(events: c.Events) -> list[tuple[int, int, list[str]]]:
    """(user_id, nm_id, history) per purchase, in output order."""
    return [(r["user_id"], r["nm_id"], r["queries"]) for r in c.to_examples(events).to_pylist()]


def ev(rows: list[Row]) -> c.Events:
    return c.events_from_table(train_table(rows))


# --- rules, one by one ---------------------------------------------------------------------------------


def test_events_from_table_groups_rows_into_purchases() -> None:
    events = ev(
        [
            (1, "2026-09-05 12:00", 10, "2026-09-05 11:00", "Б"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 10:00", "А"),
            (2, "2026-09-06 12:00", 20, None, None),
        ]
    )
    assert len(events.purchases) == 2 and len(events.queries) == 3
    assert examples(events) == [(1, 10, ["а", "б"]), (2, 20, [None])]


def test_drop_duplicate_rows() -> None:
    row = (1, "2026-09-05 12:00", 10, "2026-09-05 11:00", "платье")
    again_later = (1, "2026-09-05 12:00", 10, "2026-09-05 11:30", "платье")
    events = c.drop_duplicate_rows(ev([row, row, again_later, row]))
    assert examples(events) == [(1, 10, ["платье", "платье"])]


def test_drop_queries_after_order() -> None:
    events = ev(
        [
            (1, "2026-09-05 12:00", 10, "2026-09-05 11:59", "до"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 12:00", "в тот же момент"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 13:00", "после"),
        ]
    )
    assert examples(c.drop_queries_after_order(events)) == [(1, 10, ["до"])]


def test_drop_items_without_embedding() -> None:
    events = ev(
        [
            (1, "2026-09-05 12:00", 10, "2026-09-05 11:00", "a"),
            (2, "2026-09-05 12:00", 99, "2026-09-05 11:00", "b"),
        ]
    )
    kept = c.drop_items_without_embedding(events, np.array([10, 20]))
    assert examples(kept) == [(1, 10, ["a"])]
    assert kept.queries["pid"].isin(kept.purchases.index).all() and len(kept.queries) == 1


def test_drop_id_search_purchases() -> None:
    events = ev(
        [
            # the item's own id typed: a digit query, an article query, a link to its page
            (1, "2026-09-05 12:00", 123456, "2026-09-05 11:00", "123456"),
            (1, "2026-09-05 12:00", 123456, "2026-09-05 10:00", "платье"),
            (2, "2026-09-05 12:00", 555, "2026-09-05 11:00", "Артикул: 555"),
            (
                3,
                "2026-09-05 12:00",
                42,
                "2026-09-05 11:00",
                "https://www.wildberries.ru/catalog/42/detail.aspx",
            ),
            # another item's id: the purchase stays (the query itself goes later, by the digit rule)
            (4, "2026-09-05 12:00", 43, "2026-09-05 11:00", "123456"),
            (4, "2026-09-05 12:00", 43, "2026-09-05 10:00", "шорты"),
            # the same user buying another item after the id search: only the id-searched purchase goes
            (1, "2026-09-06 12:00", 7, "2026-09-05 11:00", "123456"),
            # the id inside a longer query is not an id search
            (5, "2026-09-05 12:00", 77, "2026-09-05 11:00", "кроссовки 77"),
        ]
    )
    kept = c.drop_id_search_purchases(events)
    assert examples(kept) == [(4, 43, ["шорты", "123456"]), (5, 77, ["кроссовки 77"]), (1, 7, ["123456"])]


def test_drop_link_queries() -> None:
    events = ev(
        [
            (1, "2026-09-05 12:00", 10, "2026-09-05 09:00", "https://ozon.ru/product/1"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 10:00", "www.wb.ru"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 11:00", "смотри wildberries.ru"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 11:30", "размер 1.5"),
        ]
    )
    assert examples(c.drop_link_queries(events)) == [(1, 10, ["размер 1 5"])]


def test_drop_digit_queries() -> None:
    events = ev(
        [
            (1, "2026-09-05 12:00", 10, "2026-09-05 09:00", "12345"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 10:00", " 12 345 "),
            (1, "2026-09-05 12:00", 10, "2026-09-05 10:30", "#7"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 11:00", "iphone 13"),
        ]
    )
    assert examples(c.drop_digit_queries(events)) == [(1, 10, ["iphone 13"])]


def test_drop_article_queries() -> None:
    events = ev(
        [
            (1, "2026-09-05 12:00", 10, "2026-09-05 09:00", "арт 12345678"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 09:30", "артикул: 123456"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 10:00", "art. 1234567"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 10:30", "987654321"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 11:00", "арт деко"),
        ]
    )
    assert examples(c.drop_article_queries(events)) == [(1, 10, ["арт деко"])]


def test_drop_empty_queries() -> None:
    events = ev(
        [
            (1, "2026-09-05 12:00", 10, "2026-09-05 09:00", None),
            (1, "2026-09-05 12:00", 10, "2026-09-05 09:30", ""),
            (1, "2026-09-05 12:00", 10, "2026-09-05 10:00", "   "),
            (1, "2026-09-05 12:00", 10, "2026-09-05 10:30", "😀🔥"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 11:00", "?!"),
            (1, "2026-09-05 12:00", 10, "2026-09-05 11:30", "Ёж"),
            (2, "2026-09-05 12:00", 20, None, None),  # a purchase without any query
        ]
    )
    kept = c.drop_empty_queries(events)
    assert examples(kept) == [(1, 10, ["еж"]), (2, 20, [])]  # the purchase stays until the next rule


def test_drop_examples_without_queries() -> None:
    events = c.drop_empty_queries(
        ev(
            [
                (1, "2026-09-05 12:00", 10, "2026-09-05 11:00", "платье"),
                (2, "2026-09-05 12:00", 20, None, None),
                (3, "2026-09-05 12:00", 30, "2026-09-05 11:00", "🙂"),
            ]
        )
    )
    assert examples(c.drop_examples_without_queries(events)) == [(1, 10, ["платье"])]


def test_cut_history_keeps_last_queries_oldest_first() -> None:
    rows = [(1, "2026-09-05 12:00", 10, f"2026-09-05 0{h}:00", f"q{h}") for h in (7, 1, 3, 2, 6, 4, 5)]
    rows += [(2, "2026-09-05 12:00", 20, "2026-09-05 01:00", "one")]
    events = c.cut_history(ev(rows), 5)
    assert examples(events) == [(1, 10, ["q3", "q4", "q5", "q6", "q7"]), (2, 20, ["one"])]
    assert examples(c.cut_history(ev(rows), 1)) == [(1, 10, ["q7"]), (2, 20, ["one"])]


def test_split_by_time_has_no_overlap() -> None:
    events = ev(
        [
            (1, "2026-09-30 23:59:59.999999", 10, "2026-09-30 10:00", "a"),
            (1, "2026-10-01 00:00", 20, "2026-09-30 10:00", "a"),
            (2, "2026-10-02 00:00", 30, "2026-09-01 10:00", "b"),
        ]
    )
    train, holdout = c.split_by_time(events, pd.Timestamp("2026-10-01"))
    assert examples(train) == [(1, 10, ["a"])]
    assert examples(holdout) == [(1, 20, ["a"]), (2, 30, ["b"])]


def test_select_training_items_min_count_and_top_n() -> None:
    counts = {10: 5, 20: 3, 30: 3, 40: 2, 50: 1}
    rows = [
        (user, f"2026-09-0{user % 9 + 1} 12:00", nm, "2026-09-01 01:00", "q")
        for nm, n in counts.items()
        for user in range(n)
    ]
    events = ev(rows)
    items = c.select_training_items(events, max_items=3, min_item_count=2)
    assert items.to_dict("records") == [
        {"nm_id": 10, "count": 5},
        {"nm_id": 20, "count": 3},
        {"nm_id": 30, "count": 3},
    ]
    items = c.select_training_items(events, max_items=100, min_item_count=3)
    assert items["nm_id"].tolist() == [10, 20, 30]
    kept = c.keep_training_items(events, items)
    assert sorted(kept.purchases["nm_id"].unique().tolist()) == [10, 20, 30] and len(kept.purchases) == 11


def test_drop_short_histories() -> None:
    events = c.events_from_table(
        infer_table(
            [
                (1, "2026-10-08 10:00", "a"),
                (1, "2026-10-08 11:00", "b"),
                (2, "2026-10-08 10:00", "c"),
            ]
        ),
        c.INFER_KEY,
    )
    assert c.to_histories(c.drop_short_histories(events, 2)).to_pylist() == [
        {"user_id": 1, "queries": ["a", "b"]}
    ]


# --- the training stage end to end ----------------------------------------------------------------------

HOLDOUT_START = "2026-10-01"
TRAIN_ROWS: list[Row] = [
    # P1 u1 -> 10: a link and an article query go, a query after the purchase goes
    (1, "2026-09-05 12:00", 10, "2026-09-05 11:00", "Кроссовки Nike!"),
    (1, "2026-09-05 12:00", 10, "2026-09-05 10:00", "арт 777"),
    (1, "2026-09-05 12:00", 10, "2026-09-04 10:00", "https://www.wildberries.ru/catalog/555/detail.aspx"),
    (1, "2026-09-05 12:00", 10, "2026-09-05 13:00", "после покупки"),
    # P2 u2 -> 10: seven queries, cut to the last five
    *[(2, "2026-09-06 12:00", 10, f"2026-09-06 0{i}:00", f"запрос {i}") for i in range(1, 8)],
    # P3 u3 -> 10: found by its id -> dropped
    (3, "2026-09-07 12:00", 10, "2026-09-07 10:00", "10"),
    (3, "2026-09-07 12:00", 10, "2026-09-07 11:00", "куртка"),
    # P4 u3 -> 20: the digit query names another item: only the query goes
    (3, "2026-09-08 12:00", 20, "2026-09-07 10:00", "10"),
    (3, "2026-09-08 12:00", 20, "2026-09-08 11:00", "платье"),
    # P5 u4 -> 20, its row twice
    (4, "2026-09-09 12:00", 20, "2026-09-09 11:00", "юбка 😀"),
    (4, "2026-09-09 12:00", 20, "2026-09-09 11:00", "юбка 😀"),
    # P6 u5 -> 30: one purchase only, below min_item_count in train
    (5, "2026-09-10 12:00", 30, "2026-09-10 11:00", "шорты"),
    # P7 u6 -> 99: no embedding
    (6, "2026-09-11 12:00", 99, "2026-09-11 11:00", "носки"),
    # P8 u7 -> 20: no query at all
    (7, "2026-09-12 12:00", 20, None, None),
    # P9 u8 -> 40: only an emoji
    (8, "2026-09-13 12:00", 40, "2026-09-13 11:00", "😀"),
    # P10, P11 -> 50: count 2, but outside the top max_items=2 (ties broken by nm_id)
    (9, "2026-09-14 12:00", 50, "2026-09-14 11:00", "сумка"),
    (10, "2026-09-15 12:00", 50, "2026-09-15 11:00", "рюкзак"),
    # holdout: H1 u1 -> 30 (not a training item, has an embedding), history reaching before holdout_start
    (1, "2026-10-02 12:00", 30, "2026-09-28 11:00", "шапка"),
    (1, "2026-10-02 12:00", 30, "2026-10-02 09:00", "шарф"),
    # H2 u2 -> 99: no embedding
    (2, "2026-10-03 12:00", 99, "2026-10-03 11:00", "варежки"),
    # H3 u11 -> 20: found by a link to its page
    (11, "2026-10-04 12:00", 20, "2026-10-04 11:00", "https://www.wildberries.ru/catalog/20/detail.aspx"),
    # H4 u1 -> 10
    (1, "2026-10-05 12:00", 10, "2026-10-05 11:00", "кроссовки"),
]
EXPECTED_FUNNEL = [
    # step, rule, split, rows, examples, users, items
    (0, "input", "all", 28, 15, 11, 6),
    (1, "drop_duplicate_rows", "all", 27, 15, 11, 6),
    (2, "drop_queries_after_order", "all", 26, 15, 11, 6),
    (3, "drop_items_without_embedding", "all", 24, 13, 10, 5),
    (4, "drop_id_search_purchases", "all", 21, 11, 9, 5),
    (5, "drop_link_queries", "all", 20, 11, 9, 5),
    (6, "drop_digit_queries", "all", 19, 11, 9, 5),
    (7, "drop_article_queries", "all", 18, 11, 9, 5),
    (8, "drop_empty_queries", "all", 16, 11, 9, 5),
    (9, "drop_examples_without_queries", "all", 16, 9, 7, 4),
    (10, "cut_history", "all", 14, 9, 7, 4),
    (11, "split_holdout", "holdout", 3, 2, 1, 2),
    (12, "split_train", "train", 11, 7, 7, 4),
    (13, "keep_training_items", "train", 8, 4, 4, 2),
]


@pytest.fixture()
def train_inputs(tmp_path: Path) -> tuple[Path, Path]:
    events = write_parts(tmp_path / "events", train_table(TRAIN_ROWS), parts=3)
    embeddings = write_embeddings(tmp_path / "embeddings", [10, 20, 30, 40, 50, 60])
    return events, embeddings


def run_train(inputs: tuple[Path, Path], out: Path, **kwargs: object) -> c.CleanStats:
    params: dict[str, object] = {"holdout_start": HOLDOUT_START, "max_items": 2, "min_item_count": 2}
    params.update(kwargs)
    return c.clean_training_events(inputs[0], inputs[1], out, **params)  # type: ignore[arg-type]


def read_rows(path: Path) -> list[tuple]:
    return [tuple(r.values()) for r in pq.read_table(path).to_pylist()]


def test_clean_training_events_outputs(train_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "clean"
    run_train(train_inputs, out)
    assert sorted(p.name for p in out.iterdir()) == [
        folder.COMPLETE_MARKER,
        "funnel.json",
        "holdout.parquet",
        "items.parquet",
        "train.parquet",
    ]
    assert pq.read_schema(out / "train.parquet").equals(examples_artifact.EXAMPLES)
    assert pq.read_schema(out / "items.parquet").equals(examples_artifact.TRAIN_ITEMS)
    assert read_rows(out / "train.parquet") == [
        (1, at("2026-09-05 12:00"), 10, ["кроссовки nike"]),
        (2, at("2026-09-06 12:00"), 10, ["запрос 3", "запрос 4", "запрос 5", "запрос 6", "запрос 7"]),
        (3, at("2026-09-08 12:00"), 20, ["платье"]),
        (4, at("2026-09-09 12:00"), 20, ["юбка"]),
    ]
    assert read_rows(out / "holdout.parquet") == [
        (1, at("2026-10-02 12:00"), 30, ["шапка", "шарф"]),
        (1, at("2026-10-05 12:00"), 10, ["кроссовки"]),
    ]
    assert read_rows(out / "items.parquet") == [(10, 2), (20, 2)]


def test_clean_training_events_funnel(train_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    stats = run_train(train_inputs, tmp_path / "clean")
    got = [(s.step, s.rule, s.split, s.rows, s.examples, s.users, s.items) for s in stats.funnel]
    assert got == EXPECTED_FUNNEL
    on_disk = json.loads((tmp_path / "clean" / "funnel.json").read_text(encoding="utf-8"))
    assert on_disk == stats.funnel_dicts() and on_disk[6] == {
        "step": 6, "rule": "drop_digit_queries", "split": "all", "rows": 19, "examples": 11, "users": 9, "items": 5
    }  # fmt: skip
    assert stats.outputs == {
        "train_examples": 4,
        "holdout_examples": 2,
        "train_items": 2,
        "holdout_items": 2,
        "holdout_examples_of_training_items": 1,
    }
    metrics = stats.as_metrics()
    assert metrics["funnel_06_drop_digit_queries_rows"] == 19.0
    assert metrics["funnel_13_keep_training_items_items"] == 2.0 and metrics["train_examples"] == 4.0
    assert all(isinstance(v, float) for v in metrics.values())
    metadata = json.loads(json.dumps(stats.as_metadata()))
    assert metadata["kind"] == "train" and metadata["min_item_count"] == 2 and metadata["funnel"] == on_disk
    assert stats.funnel_markdown().splitlines()[2] == "| 00 | input | all | 28 | 15 | 11 | 6 |"


def test_temporal_split_no_leak(train_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "clean"
    run_train(train_inputs, out)
    train = pq.read_table(out / "train.parquet").to_pandas()
    holdout = pq.read_table(out / "holdout.parquet").to_pandas()
    start = pd.Timestamp(HOLDOUT_START)
    assert (train["order_ts"] < start).all() and (holdout["order_ts"] >= start).all()
    key = ["user_id", "order_ts", "nm_id"]
    assert train[key].merge(holdout[key]).empty
    # items and their counts come from the train part only: item 10 is bought in the holdout too
    items = pq.read_table(out / "items.parquet").to_pandas()
    assert dict(zip(items["nm_id"], items["count"], strict=True)) == train["nm_id"].value_counts().to_dict()
    # the holdout keeps an embedded item that is not a training item
    assert 30 in set(holdout["nm_id"]) and 30 not in set(items["nm_id"])


def test_garbage_text_is_cleaned_and_counted(tmp_path: Path) -> None:
    garbage = [
        None,
        "",
        "   \t\n ",
        "😀🎉👍🏽",
        "x" * 10_000,
        "'; DROP TABLE orders; --",
        "Ω≈ç√∫ 中文 العربية עברית",
        "\u200b\u200d\ufeff",
        "<script>alert(1)</script>",
        "%s %d {0} \\x00",
        "\x00\x01\x1f",
    ]
    rows: list[Row] = [
        (1, "2026-09-05 12:00", 10, f"2026-09-05 {i:02d}:00", t) for i, t in enumerate(garbage)
    ]
    rows += [(2, "2026-09-06 12:00", 20, "2026-09-06 01:00", t) for t in ("😀", None, "   ")]  # garbage only
    rows += [(3, "2026-09-07 12:00", 10, "2026-09-07 01:00", "платье")]
    rows += [(4, "2026-09-08 12:00", 20, "2026-09-08 01:00", "юбка")]
    events = write_parts(tmp_path / "events", train_table(rows))
    embeddings = write_embeddings(tmp_path / "emb", [10, 20])
    stats = c.clean_training_events(
        events, embeddings, tmp_path / "out", holdout_start="2026-10-01", min_item_count=1, history_length=10
    )
    histories = {
        r["user_id"]: r["queries"] for r in pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()
    }
    assert histories[1] == [
        "x" * 256,
        "drop table orders",
        "ω ç 中文 العربية עברית",
        "script alert 1 script",
        "s d 0 x00",
    ]
    assert 2 not in histories and histories[3] == ["платье"] and histories[4] == ["юбка"]
    assert stats.step("drop_empty_queries").rows == stats.step("drop_article_queries").rows - 9
    assert stats.step("drop_examples_without_queries").examples == 3


def test_invalid_utf8_in_parquet_is_repaired(tmp_path: Path) -> None:
    good = train_table(
        [
            (1, "2026-09-05 12:00", 10, "2026-09-05 11:00", "ok"),
            (2, "2026-09-05 12:00", 20, "2026-09-05 11:00", "x"),
        ]
    )
    chunks = [b"\xff\xfe\xed\xa0\x80", b"caf\xe9 \xd0\x9f\xd0\xb5"]  # not UTF-8 at all; Latin-1 then "Пе"
    offsets = pa.array([0, len(chunks[0]), len(chunks[0]) + len(chunks[1])], pa.int32()).buffers()[1]
    bad = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"".join(chunks))])
    table = good.set_column(4, "query_text", bad)
    write_parts(tmp_path / "events", table, parts=1)
    write_embeddings(tmp_path / "emb", [10, 20])
    c.clean_training_events(
        tmp_path / "events",
        tmp_path / "emb",
        tmp_path / "out",
        holdout_start="2026-10-01",
        min_item_count=1,
        min_train_items=1,
    )
    assert read_rows(tmp_path / "out" / "train.parquet") == [(2, at("2026-09-05 12:00"), 20, ["caf пе"])]


# --- errors: one line naming the rule, nothing written --------------------------------------------------


def assert_nothing_written(tmp_path: Path, out: Path) -> None:
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


@pytest.mark.parametrize(
    ("kwargs", "embedded", "message"),
    [
        (
            {"min_item_count": 5},
            None,
            r"0 training item\(s\) left after rule 'keep_training_items'.*min_item_count",
        ),
        ({"min_train_items": 3}, None, r"2 training item\(s\) left after rule 'keep_training_items'"),
        ({"min_train_examples": 5}, None, r"4 training example\(s\) left .*min_train_examples"),
        ({"holdout_start": "2026-09-01"}, None, r"after rule 'split_train'.*before holdout_start 2026-09-01"),
        ({}, [1, 2, 3], r"after rule 'drop_items_without_embedding'"),
        ({"holdout_start": "2026-13-45"}, None, r"holdout_start '2026-13-45' is not a date"),
        ({"history_length": 0}, None, r"history_length must be >= 1"),
    ],
)
def test_training_errors(
    train_inputs: tuple[Path, Path], tmp_path: Path, kwargs: dict, embedded: list[int] | None, message: str
) -> None:
    if embedded is not None:
        write_embeddings(train_inputs[1], embedded)
    out = tmp_path / "clean"
    with pytest.raises(SearchrecError, match=message) as error:
        run_train(train_inputs, out, **kwargs)
    assert "\n" not in str(error.value)
    assert_nothing_written(tmp_path, out)


def test_error_when_every_purchase_is_an_id_search(tmp_path: Path) -> None:
    rows: list[Row] = [(1, "2026-09-05 12:00", 123456, "2026-09-05 11:00", "арт 123456")]
    events = write_parts(tmp_path / "events", train_table(rows), parts=1)
    with pytest.raises(SearchrecError, match="after rule 'drop_id_search_purchases'"):
        c.clean_training_events(
            events, write_embeddings(tmp_path / "e", [123456]), tmp_path / "o", holdout_start="2026-10-01"
        )


def test_error_when_no_query_survives(tmp_path: Path) -> None:
    rows: list[Row] = [(1, "2026-09-05 12:00", 10, "2026-09-05 11:00", t) for t in ("www.wb.ru", "42", "🙂")]
    events = write_parts(tmp_path / "events", train_table(rows), parts=1)
    with pytest.raises(SearchrecError, match="after rule 'drop_examples_without_queries'"):
        c.clean_training_events(
            events, write_embeddings(tmp_path / "e", [10]), tmp_path / "o", holdout_start="2026-10-01"
        )


def test_input_errors(tmp_path: Path) -> None:
    emb = write_embeddings(tmp_path / "emb", [10])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SearchrecError, match=r"training events artifact .*empty is not a searchrec artifact"):
        c.clean_training_events(tmp_path / "empty", emb, tmp_path / "o", holdout_start="2026-10-01")
    event_parts.write(tmp_path / "noparts", [])
    with pytest.raises(SearchrecError, match=r"no training events files matching part-\*\.parquet"):
        c.clean_training_events(tmp_path / "noparts", emb, tmp_path / "o", holdout_start="2026-10-01")
    with pytest.raises(SearchrecError, match="does not exist"):
        c.clean_training_events(tmp_path / "missing", emb, tmp_path / "o", holdout_start="2026-10-01")
    write_parts(
        tmp_path / "nocol",
        train_table([(1, "2026-09-05 12:00", 10, None, None)]).drop_columns(["query_text"]),
    )
    with pytest.raises(SearchrecError, match="lacks column\\(s\\) query_text"):
        c.clean_training_events(tmp_path / "nocol", emb, tmp_path / "o", holdout_start="2026-10-01")
    nulls = train_table([(1, "2026-09-05 12:00", 10, None, None)]).set_column(
        2, "nm_id", pa.array([None], pa.int64())
    )
    write_parts(tmp_path / "nulls", nulls, parts=1)
    with pytest.raises(SearchrecError, match="1 NULL nm_id"):
        c.clean_training_events(tmp_path / "nulls", emb, tmp_path / "o", holdout_start="2026-10-01")
    write_parts(tmp_path / "zero", train_table([]), parts=1)
    with pytest.raises(SearchrecError, match="after rule 'input'"):
        c.clean_training_events(tmp_path / "zero", emb, tmp_path / "o", holdout_start="2026-10-01")
    with folder.publishing(tmp_path / "garbled", "events") as garbled:
        (garbled / "part-00000.parquet").write_bytes(b"not parquet")
    with pytest.raises(SearchrecError, match="cannot read training events file"):
        c.clean_training_events(tmp_path / "garbled", emb, tmp_path / "o", holdout_start="2026-10-01")
    with pytest.raises(SearchrecError, match="embeddings snapshot .*empty is not a searchrec artifact"):
        c.clean_training_events(
            tmp_path / "zero", tmp_path / "empty", tmp_path / "o", holdout_start="2026-10-01"
        )
    with folder.publishing(tmp_path / "emb-empty", "embeddings snapshot"):
        pass
    with pytest.raises(SearchrecError, match="holds no .*parquet files"):
        c.clean_training_events(
            tmp_path / "zero", tmp_path / "emb-empty", tmp_path / "o", holdout_start="2026-10-01"
        )
    half = tmp_path / "half"  # as a killed extract leaves its folder
    half.mkdir()
    (half / folder.IN_PROGRESS_MARKER).write_text("events")
    (half / "part-00000.parquet").write_bytes(b"x")
    with pytest.raises(SearchrecError, match="was never finished"):
        c.clean_training_events(tmp_path / "half", emb, tmp_path / "o", holdout_start="2026-10-01")
    assert not (tmp_path / "o").exists()


def test_existing_output_is_replaced_whole(train_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "clean"
    with folder.publishing(out, "examples"):  # an earlier attempt of ours, killed half-way
        (out / "stale.txt").write_text("old run")
    (out / folder.COMPLETE_MARKER).unlink()
    (out / folder.IN_PROGRESS_MARKER).write_text("examples")
    run_train(train_inputs, out)
    assert sorted(p.name for p in out.iterdir()) == [
        folder.COMPLETE_MARKER,
        "funnel.json",
        "holdout.parquet",
        "items.parquet",
        "train.parquet",
    ]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".clean")] == []


# --- inference ---------------------------------------------------------------------------------------------

INFER_ROWS = [
    *[(1, f"2026-10-08 0{i}:00", f"Запрос {i}") for i in range(1, 8)],
    (1, "2026-10-08 07:00", "Запрос 7"),  # a repeated row
    (2, "2026-10-08 01:00", "123456"),
    (2, "2026-10-08 02:00", "арт 1"),
    (2, "2026-10-08 03:00", "https://x.ru/a"),
    (2, "2026-10-08 04:00", "платье"),
    (3, "2026-10-08 01:00", "😀"),
    (3, None, None),
    (4, "2026-10-08 01:00", "b"),
    (4, "2026-10-08 00:30", "a"),
]


def test_clean_inference_events(tmp_path: Path) -> None:
    events = write_parts(tmp_path / "events", infer_table(INFER_ROWS))
    orders = tmp_path / "orders"
    event_parts.write(
        orders,
        [
            pa.table(
                {
                    "user_id": pa.array([1, 1, 1, 3], pa.int64()),
                    "order_ts": pa.array([at("2026-10-08 10:00")] * 4, pa.timestamp("us")),
                    "nm_id": pa.array([20, 10, 10, 30], pa.int64()),
                }
            )
        ],
    )
    stats = c.clean_inference_events(events, tmp_path / "out", orders_dir=orders)
    assert pq.read_table(tmp_path / "out" / "histories.parquet").to_pylist() == [
        {"user_id": 1, "queries": ["запрос 3", "запрос 4", "запрос 5", "запрос 6", "запрос 7"]},
        {"user_id": 2, "queries": ["платье"]},
        {"user_id": 4, "queries": ["a", "b"]},
    ]
    assert read_rows(tmp_path / "out" / "bought.parquet") == [(1, 10), (1, 20)]
    got = [(s.step, s.rule, s.rows, s.examples, s.users) for s in stats.funnel]
    assert got == [
        (0, "input", 16, 4, 4),
        (1, "drop_duplicate_rows", 15, 4, 4),
        (2, "drop_link_queries", 14, 4, 4),
        (3, "drop_digit_queries", 13, 4, 4),
        (4, "drop_article_queries", 12, 4, 4),
        (5, "drop_empty_queries", 10, 4, 4),
        (6, "drop_short_histories", 10, 3, 3),
        (7, "cut_history", 8, 3, 3),
    ]
    assert stats.outputs == {"users": 3, "short_history_users": 1, "bought_pairs": 2}
    assert json.loads((tmp_path / "out" / "funnel.json").read_text())[-1]["rule"] == "cut_history"
    assert stats.as_metrics()["funnel_06_drop_short_histories_users"] == 3.0


def test_inference_min_history(tmp_path: Path) -> None:
    events = write_parts(tmp_path / "events", infer_table(INFER_ROWS))
    stats = c.clean_inference_events(events, tmp_path / "out", min_history=2, history_length=3)
    assert pq.read_table(tmp_path / "out" / "histories.parquet").to_pylist() == [
        {"user_id": 1, "queries": ["запрос 5", "запрос 6", "запрос 7"]},
        {"user_id": 4, "queries": ["a", "b"]},
    ]
    assert stats.outputs["short_history_users"] == 2
    with pytest.raises(SearchrecError, match="after rule 'drop_short_histories'.*min_history"):
        c.clean_inference_events(events, tmp_path / "out2", min_history=50)
    assert not (tmp_path / "out2").exists()


# --- the CPU image -----------------------------------------------------------------------------------------


def test_clean_imports_no_torch_transformers_faiss() -> None:
    code = (
        "import sys, searchrec.text, searchrec.stages.clean\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers', 'faiss'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Queries typed in the same second: which five are kept, and in which order, is decided by the tie-break.
TIED_ROWS: list[Row] = [
    *TRAIN_ROWS,
    *[
        (7, "2026-09-20 12:00", 10, "2026-09-19 08:00", text)
        for text in ("юбка", "шарф", "кеды", "пальто", "шапка", "очки")
    ],
    (8, "2026-09-20 12:00", 20, "2026-09-19 08:00", "кеды"),
    (8, "2026-09-20 12:00", 20, "2026-09-19 08:00", "зонт"),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_gives_the_same_outputs_whatever_the_row_order(tmp_path: Path, seed: int) -> None:
    """A warehouse returns rows in any order (DuckDB's parallel scan, Greenplum's segments): the same rows
    give the same examples, row for row, and the same histories."""
    table = train_table(TIED_ROWS)
    shuffled = table.take(pa.array(np.random.default_rng(seed).permutation(table.num_rows)))
    embeddings = write_embeddings(tmp_path / "embeddings", [10, 20, 30, 40, 50, 60])
    outputs = {}
    for name, rows in (("given", table), ("shuffled", shuffled)):
        events = write_parts(tmp_path / f"events-{name}", rows, parts=3)
        run_train((events, embeddings), tmp_path / f"train-{name}")
        infer = write_parts(
            tmp_path / f"infer-{name}", rows.select(["user_id", "query_ts", "query_text"]), parts=3
        )
        c.clean_inference_events(infer, tmp_path / f"infer-out-{name}")
        outputs[name] = [
            read_rows(tmp_path / f"train-{name}" / part)
            for part in ("train.parquet", "holdout.parquet", "items.parquet")
        ] + [read_rows(tmp_path / f"infer-out-{name}" / "histories.parquet")]
    assert outputs["given"] == outputs["shuffled"]
    train_rows = outputs["given"][0]
    # the tie is broken by the text: the last five in text order, oldest first
    assert (7, at("2026-09-20 12:00"), 10, ["очки", "пальто", "шапка", "шарф", "юбка"]) in train_rows
