"""The demo-data generator: warehouse contract, planted dirt, determinism, and the recall bounds."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from searchrec import config
from searchrec.artifacts import snapshot
from searchrec.demo_data import (
    DATA_END,
    DATA_START,
    DIRT_KINDS,
    EMBEDDINGS_DIR,
    GROUND_TRUTH_DIR,
    INTENTS,
    INTENTS_FILE,
    ITEMS_FILE,
    PURCHASES,
    PURCHASES_FILE,
    SUMMARY_FILE,
    WAREHOUSE_FILE,
    ceiling_recall,
    generate,
    generate_tables,
    popularity_recall,
)
from searchrec.errors import SearchrecError


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    generate(out, size="tiny", seed=0)
    return out


@pytest.fixture(scope="module")
def queries(demo) -> pd.DataFrame:
    with duckdb.connect(str(demo / WAREHOUSE_FILE), read_only=True) as con:
        return con.execute("SELECT * FROM search_queries").df()


@pytest.fixture(scope="module")
def orders(demo) -> pd.DataFrame:
    with duckdb.connect(str(demo / WAREHOUSE_FILE), read_only=True) as con:
        return con.execute("SELECT * FROM orders").df()


@pytest.fixture(scope="module")
def snapshots(demo) -> dict[str, pa.Table]:
    return {
        p.parent.name.removeprefix("dt="): pq.read_table(p)
        for p in sorted((demo / EMBEDDINGS_DIR).glob("dt=*/part-0.parquet"))
    }


def _split(orders: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    ts = orders["order_ts"]
    train = orders[(ts >= config.DEMO_TRAIN_START) & (ts < config.DEMO_HOLDOUT_START)]
    holdout = orders[(ts >= config.DEMO_HOLDOUT_START) & (ts < pd.Timestamp(config.DEMO_RECOMMEND_START))]
    return train, holdout


def test_warehouse_tables_follow_the_contract(demo, queries, orders):
    with duckdb.connect(str(demo / WAREHOUSE_FILE), read_only=True) as con:
        cols = con.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
    assert cols == [
        ("orders", "user_id", "BIGINT", "NO"),
        ("orders", "order_ts", "TIMESTAMP", "NO"),
        ("orders", "nm_id", "BIGINT", "NO"),
        ("search_queries", "user_id", "BIGINT", "NO"),
        ("search_queries", "query_ts", "TIMESTAMP", "NO"),
        ("search_queries", "query_text", "VARCHAR", "YES"),
    ]
    summary = json.loads((demo / SUMMARY_FILE).read_text())
    assert len(queries) == summary["query_rows"] > 1000
    assert len(orders) == summary["purchases"] > 300
    # everything inside the data period, both tables
    lo, hi = pd.Timestamp(DATA_START), pd.Timestamp(DATA_END) + pd.Timedelta(days=1)
    for ts in (queries["query_ts"], orders["order_ts"]):
        assert ts.min() >= lo and ts.max() < hi
    # the demo windows all have data: training, holdout, recommendation
    train, holdout = _split(orders)
    assert len(train) > 100 and len(holdout) > 20
    window = queries[queries["query_ts"] >= config.DEMO_RECOMMEND_START]
    assert window["user_id"].nunique() > 20
    # some users only search, and some of those search in the recommendation window
    search_only = set(queries["user_id"]) - set(orders["user_id"])
    assert 0.05 < len(search_only) / queries["user_id"].nunique() < 0.4
    assert search_only & set(window["user_id"])
    # a session's items share one order; no order holds the same item twice
    assert not orders.duplicated().any()


def test_queries_come_shortly_before_purchases(queries, orders):
    q = queries.sort_values("query_ts")
    o = orders.sort_values("order_ts")
    last = pd.merge_asof(
        o,
        q.rename(columns={"query_ts": "last_query_ts"}),
        left_on="order_ts",
        right_on="last_query_ts",
        by="user_id",
    )
    gap = last["order_ts"] - last["last_query_ts"]
    within_days = (gap <= pd.Timedelta(days=5)).mean()
    assert within_days > 0.9
    assert gap.median() < pd.Timedelta(hours=2)  # minutes to days, mostly minutes
    assert (gap > pd.Timedelta(hours=12)).any()  # ... but some days


def test_queries_read_the_intent_in_russian_with_variants(demo, queries, orders):
    texts = set(queries["query_text"].dropna())
    colours = "черное|белое|красное|синее|зеленое"
    assert any(re.fullmatch(rf"({colours}) платье", t) for t in texts)
    assert any(re.fullmatch(rf"платье ({colours})", t) for t in texts)  # word order
    assert any(re.search(r"\bплатья\b", t) for t in texts)  # plural
    assert any(
        re.search(r"(^| )(найк|адидас|пума|зара|манго|бифри)( |$)", t) for t in texts
    )  # brands in Cyrillic
    assert any(
        re.search(r"[a-z]{3,} [a-z;',.\[\]]{3,}", t) and "wildberries" not in t for t in texts
    )  # wrong layout
    # the intent is readable: most purchases have its category and its colour / brand among the
    # last 5 queries before them (despite typos and Cyrillic brand spellings)
    gt = pq.read_table(demo / GROUND_TRUTH_DIR / PURCHASES_FILE).to_pandas()
    intents = pq.read_table(demo / GROUND_TRUTH_DIR / INTENTS_FILE).to_pandas().set_index("intent_id")
    gt["cat"] = gt["intent_id"].map(intents["category"]).str[:3]
    gt["attr"] = gt["intent_id"].map(intents["colour"].fillna(intents["brand"])).str[:4]
    hist = gt.merge(queries, on="user_id")
    hist = hist[(hist["query_ts"] < hist["order_ts"])].sort_values("query_ts")
    hist = hist.groupby(["user_id", "order_ts", "nm_id"]).tail(5)
    text = [t.lower() if isinstance(t, str) else "" for t in hist["query_text"]]
    hist["cat_hit"] = [c in t for c, t in zip(hist["cat"], text, strict=True)]
    hist["attr_hit"] = [a in t for a, t in zip(hist["attr"], text, strict=True)]
    hits = hist.groupby(["user_id", "order_ts", "nm_id"])[["cat_hit", "attr_hit"]].any().mean()
    assert hits["cat_hit"] > 0.8 and hits["attr_hit"] > 0.75


def test_every_kind_of_dirt_is_planted_at_realistic_rates(demo, queries, orders):
    summary = json.loads((demo / SUMMARY_FILE).read_text())
    assert set(summary["dirt"]) == set(DIRT_KINDS)
    text = queries["query_text"]
    s = text.fillna("")
    found = {
        "null": text.isna(),
        "empty": text.notna() & (s == ""),
        "whitespace": (s != "") & (s.str.strip() == ""),
        "digits": s.str.fullmatch(r"\d+"),
        "article": s.str.contains(r"^[Аа]рт", regex=True),
        "link": s.str.contains("wildberries.ru/catalog/", regex=False),
        "long": s.str.len() >= 1000,
        "sql": s.str.contains(r"DROP TABLE|SELECT|DELETE FROM|' OR '", regex=True),
        "emoji": s.map(lambda t: t.strip() != "" and not any(ch.isalnum() for ch in t)),
        "unicode": s.str.contains("[\u200b\u202e\ufeff\u0301\uff01-\uff5e\u4e00-\u9fff\u0600-\u06ff\U0001d400-\U0001d7ff]|плaтье"),
    }  # fmt: skip
    n = len(queries)
    for kind, mask in found.items():
        assert mask.sum() >= 2, kind
        assert mask.mean() < 0.06, kind  # a few per cent at most
    assert s.str.len().max() >= 2000  # thousands of characters
    # the bought item's id (or its page) typed right before buying, as the ground truth says
    gt = pq.read_table(demo / GROUND_TRUTH_DIR / PURCHASES_FILE).to_pandas()
    flagged = gt[gt["id_search"]]
    assert 2 <= len(flagged) <= 0.06 * len(gt)
    m = flagged.merge(queries, on="user_id")
    m = m[(m["query_ts"] < m["order_ts"]) & (m["order_ts"] - m["query_ts"] <= pd.Timedelta(minutes=10))]
    typed = m[
        [isinstance(t, str) and str(nm) in t for nm, t in zip(m["nm_id"], m["query_text"], strict=True)]
    ]
    assert typed[["user_id", "order_ts", "nm_id"]].drop_duplicates().shape[0] == len(flagged)
    assert n > 0


def test_snapshots_are_consistent_and_drift(demo, snapshots, orders):
    assert len(snapshots) >= 3
    dims = set()
    for day, table in snapshots.items():
        assert table.schema.equals(snapshot.EMBEDDINGS), day
        lengths = pa.compute.list_value_length(table.column("embedding")).to_numpy()
        dims |= set(lengths.tolist())
        ids = table.column("nm_id").to_numpy()
        assert len(np.unique(ids)) == len(ids)
    assert len(dims) == 1 and dims.pop() > 8
    days = sorted(snapshots)
    first, last = (snapshots[d].to_pandas().set_index("nm_id") for d in (days[0], days[-1]))
    assert set(first.index) < set(last.index)  # later snapshots add items
    common = first.index.intersection(last.index)
    a = np.stack(first.loc[common, "embedding"].to_numpy())
    b = np.stack(last.loc[common, "embedding"].to_numpy())
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert not np.array_equal(a, b) and cos.min() > 0.9  # drift, slightly


def test_embeddings_cluster_by_category(demo, snapshots):
    items = pq.read_table(demo / GROUND_TRUTH_DIR / ITEMS_FILE).to_pandas().set_index("nm_id")
    snap = snapshots[max(snapshots)].to_pandas()
    x = np.stack(snap["embedding"].to_numpy())
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cat = items.loc[snap["nm_id"], "category"].to_numpy()
    colour = items.loc[snap["nm_id"], "colour"].to_numpy()
    sim = x @ x.T
    same_cat = cat[:, None] == cat[None, :]
    same_colour = colour[:, None] == colour[None, :]
    off = ~np.eye(len(x), dtype=bool)
    within, between = sim[same_cat & off].mean(), sim[~same_cat].mean()
    assert within > between + 0.3
    assert sim[same_cat & same_colour & off].mean() > sim[same_cat & ~same_colour].mean() + 0.1


def test_items_without_embeddings_and_embeddings_without_buyers(demo, snapshots, orders):
    embedded = set().union(*(set(t.column("nm_id").to_pylist()) for t in snapshots.values()))
    bought = set(orders["nm_id"])
    assert bought - embedded  # bought, but in no snapshot
    assert set(snapshots[max(snapshots)].column("nm_id").to_pylist()) - bought  # embedded, never bought
    summary = json.loads((demo / SUMMARY_FILE).read_text())
    assert summary["bought_without_embedding"] == len(bought - embedded)


def test_popularity_is_zipf_like(queries, orders):
    counts = queries["query_text"].value_counts()
    assert counts.iloc[0] >= 30  # the same text repeats a lot ...
    assert counts.iloc[: len(counts) // 20].sum() > 0.25 * len(queries)  # ... the top 5% carry > 25% of rows
    assert (counts == 1).sum() > 0.3 * len(counts)  # ... with a long tail of one-offs
    items = orders["nm_id"].value_counts()
    assert items.iloc[0] >= 3 * items.median()


def test_ground_truth_matches_the_warehouse(demo, orders):
    gt = pq.read_table(demo / GROUND_TRUTH_DIR / PURCHASES_FILE)
    assert gt.schema.equals(PURCHASES)
    gt = gt.to_pandas()
    assert (
        gt[["user_id", "order_ts", "nm_id"]]
        .sort_values(["order_ts", "user_id", "nm_id"])
        .reset_index(drop=True)
        .equals(orders.sort_values(["order_ts", "user_id", "nm_id"]).reset_index(drop=True))
    )
    intents = pq.read_table(demo / GROUND_TRUTH_DIR / INTENTS_FILE)
    assert intents.schema.equals(INTENTS)
    intents = intents.to_pandas().set_index("intent_id")
    sizes = intents["nm_ids"].map(len)
    assert sizes.min() >= 2 and sizes.median() < 40  # a modest set per intent
    # a matching purchase is of an item listed for its intent; impulse buys are rare
    listed = [nm in set(intents.at[i, "nm_ids"]) for i, nm in zip(gt["intent_id"], gt["nm_id"], strict=True)]
    assert np.array_equal(np.array(listed), gt["matches_intent"].to_numpy())
    assert 0.85 < gt["matches_intent"].mean() < 1.0


def test_same_seed_same_data(tmp_path, demo, queries):
    a, b, c = generate_tables("tiny", 0), generate_tables("tiny", 0), generate_tables("tiny", 1)
    for name in ("search_queries", "orders", "purchases", "intents", "items"):
        assert getattr(a, name).equals(getattr(b, name)), name
    assert all(a.embeddings[d].equals(b.embeddings[d]) for d in a.embeddings)
    assert not a.search_queries.equals(c.search_queries)
    # the warehouse holds exactly the in-memory rows, in order
    assert a.search_queries.to_pandas().equals(queries)
    # and the files written twice are byte-identical
    generate(tmp_path / "again", size="tiny", seed=0)
    for rel in [f"{EMBEDDINGS_DIR}/dt=2026-10-12/part-0.parquet", f"{GROUND_TRUTH_DIR}/{PURCHASES_FILE}"]:
        digests = {
            hashlib.sha256((root / rel).read_bytes()).hexdigest() for root in (demo, tmp_path / "again")
        }
        assert len(digests) == 1, rel


def test_ceiling_beats_popularity(demo, orders, snapshots):
    train, holdout = _split(orders)
    pop = train["nm_id"].value_counts()
    k = 10  # tiny: 150 items, so a small k separates the two
    ceiling = ceiling_recall(demo / GROUND_TRUTH_DIR, holdout, pop, k=k)
    baseline = popularity_recall(holdout, pop, k=k)
    assert 0.6 < ceiling <= 1.0
    assert ceiling > baseline + 0.3
    # restricting candidates can only lower the ceiling; no candidates, no hits
    candidates = set(snapshots[max(snapshots)].column("nm_id").to_pylist())
    assert ceiling_recall(demo / GROUND_TRUTH_DIR, holdout, pop, k=k, candidate_items=candidates) <= ceiling
    assert ceiling_recall(demo / GROUND_TRUTH_DIR, holdout, dict(pop), k=k, candidate_items=set()) == 0.0


def test_ceiling_recall_on_a_hand_made_ground_truth(tmp_path):
    ts = pd.Timestamp("2026-10-02 12:00")
    pq.write_table(
        pa.table(
            {
                "user_id": [1, 2, 3, 4],
                "order_ts": pa.array([ts] * 4, type=pa.timestamp("us")),
                "nm_id": [10, 11, 12, 99],
                "intent_id": [0, 0, 0, 1],
            }
        ),
        tmp_path / PURCHASES_FILE,
    )
    pq.write_table(
        pa.table({"intent_id": [0, 1], "nm_ids": [[10, 11, 12], [20, 21]]}), tmp_path / INTENTS_FILE
    )
    holdout = pd.DataFrame({"user_id": [1, 2, 3, 4], "order_ts": [ts] * 4, "nm_id": [10, 11, 12, 99]})
    pop = {10: 5, 11: 9, 12: 1}
    # intent 0, top 2 by popularity: 11, 10 -> users 1, 2 hit; user 3 (12) and user 4 (impulse 99) miss
    assert ceiling_recall(tmp_path, holdout, pop, k=2) == pytest.approx(0.5)
    assert ceiling_recall(tmp_path, holdout, pop, k=3) == pytest.approx(0.75)
    assert ceiling_recall(tmp_path, holdout, pop, k=3, candidate_items={10, 12}) == pytest.approx(0.5)
    assert popularity_recall(holdout, pop, k=1) == pytest.approx(0.25)
    with pytest.raises(SearchrecError, match="lacks column"):
        ceiling_recall(tmp_path, holdout.drop(columns="order_ts"), pop)
    with pytest.raises(SearchrecError, match="ground truth folder lacks"):
        ceiling_recall(tmp_path / "nowhere", holdout, pop)


def test_refuses_to_overwrite_and_writes_atomically(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SearchrecError, match="not empty"):
        generate(out, size="tiny")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(SearchrecError, match="unknown demo size"):
        generate(tmp_path / "other", size="huge")
    assert not (tmp_path / "other").exists()
    summary = generate(out, size="tiny", seed=3, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / WAREHOUSE_FILE).is_file()
    assert json.loads((out / SUMMARY_FILE).read_text())["seed"] == 3 == summary.seed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temp folders left behind


def test_demo_size_makes_popularity_beatable():
    """The default demo: the sizes `make demo` expects, a high ceiling and a weak popularity baseline."""
    from searchrec.demo_data import DemoSummary, _raw_recalls

    t = generate_tables("demo", 0)
    assert 15_000 <= t.search_queries.column("user_id").unique().__len__() <= 25_000
    assert 40_000 <= t.orders.num_rows <= 60_000
    assert 200_000 <= t.search_queries.num_rows <= 300_000
    assert 20_000 <= len(t.search_queries.column("query_text").unique()) <= 45_000
    ceiling, popularity = _raw_recalls(t)
    assert ceiling > 0.7 and popularity < 0.16
    assert DemoSummary.__dataclass_fields__.keys() >= {
        "raw_ceiling_recall_at_200",
        "raw_popularity_recall_at_200",
    }


def test_command_line_reports_bad_input_in_one_line(tmp_path, capsys):
    from searchrec.demo_data import main

    out = tmp_path / "data"
    assert main(["--out", str(out), "--size", "tiny", "--seed", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 2
    assert main(["--out", str(out), "--size", "tiny"]) == 2  # exists, not empty
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "overwrite" in err and "\n" not in err


def test_hard_size_is_a_world_a_better_model_shows_in():
    """`hard`: long tail, late launches, weak popularity; `demo` keeps its own figures (test above)."""
    from searchrec.demo_data import _raw_recalls

    t = generate_tables("hard", 0)
    orders = t.orders.to_pandas()
    train, holdout = _split(orders)
    counts = holdout["nm_id"].map(train["nm_id"].value_counts()).fillna(0)
    # most holdout purchases are of items that training saw fewer than 3 times
    assert (counts < 3).mean() > 0.5
    assert (counts == 0).mean() > 0.2  # a good share never: late launches and the long tail
    ceiling, popularity = _raw_recalls(t)
    assert ceiling > 0.85 and popularity < 0.05  # reachable for a model, out of reach for popularity
    texts = set(t.search_queries.column("query_text").drop_null().to_pylist())
    assert any("adidas" in q for q in texts) and any("адидас" in q for q in texts)  # both scripts
    assert len(texts) / t.search_queries.num_rows > 0.12  # noisier phrasings than demo's


def test_mixed_sessions_take_queries_from_another_intent():
    from dataclasses import replace

    from searchrec.demo_data import SIZES, _Intents, _mix_intents, _Pool

    p = replace(SIZES["tiny"], mixed_intent_share=1.0, mixed_query_share=1.0)
    it = _Intents(*(np.zeros(3, dtype=np.int64),) * 3, np.array([0.0, 0.0, 1.0]), *(np.zeros(1),) * 3)
    pool = _Pool([], np.array([0, 100, 200]), np.zeros(1, dtype=np.int64), 300)
    q_sess, variant = np.array([0, 0, 1]), np.array([1, 2, 3])
    src = np.array([0.99, 0.0, 0.99])  # the second query is a broad category query: kept
    out = _mix_intents(np.array([7, 8, 9]), q_sess, src, variant, it, pool, p, np.random.default_rng(0))
    assert out.tolist() == [201, 8, 203]  # every intent query now reads intent 2
