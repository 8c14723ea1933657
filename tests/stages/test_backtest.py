"""Backtest: served recommendations against the purchases of the following days, read from a real
DuckDB warehouse written by the demo generator, checked against the generator's own ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from searchrec.artifacts import recommendations
from searchrec.demo_data import GROUND_TRUTH_DIR, PURCHASES_FILE, WAREHOUSE_FILE, generate
from searchrec.errors import SearchrecError
from searchrec.stages.backtest import backtest, backtest_frames

START, DAYS = "2026-10-11", 4  # the purchases after the demo's recommendation day


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bt") / "data"
    generate(out, size="tiny", seed=0)
    return out


def _write_recs(folder: Path, recs: dict[int, list[int]], stats: dict) -> Path:
    """A recommendations artifact as infer publishes it; ``stats``: InferStats fields."""
    users = sorted(recs)
    table = pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "nm_ids": pa.array([recs[u] for u in users], pa.list_(pa.int64())),
            "scores": pa.array([[1.0] * len(recs[u]) for u in users], pa.list_(pa.float32())),
        },
        schema=recommendations.RECOMMENDATIONS,
    )
    with recommendations.writing(folder, recommendations.InferStats(**stats)) as writer:
        writer.write_table(table)
    return folder


def test_backtest_frames_by_hand() -> None:
    recs = pd.DataFrame({"user_id": [1, 2, 3], "nm_ids": [[10, 11, 12], [20, 21, 22], [10, 30, 31]]})
    # user 1 buys 11 (rank 1) and 99 (miss); user 2 buys 22 (rank 2) twice; user 3 nothing; user 4 is not served
    orders = pd.DataFrame({"user_id": [1, 1, 2, 2, 4], "nm_id": [11, 99, 22, 22, 10]})
    out = backtest_frames(recs, orders, ks=(1, 2, 3), catalogue_size=10, users_requested=4)
    m = out["metrics"]
    assert (out["purchases"], out["buyers"], out["served_buyers"]) == (3, 3, 2)
    assert (m["recall_at_1"], m["recall_at_2"], m["recall_at_3"]) == (
        0.0,
        pytest.approx(1 / 3),
        pytest.approx(2 / 3),
    )
    assert (m["hit_rate_at_1"], m["hit_rate_at_2"], m["hit_rate_at_3"]) == (0.0, 0.5, 1.0)
    assert m["coverage_at_1"] == pytest.approx(0.2) and m["coverage_at_3"] == pytest.approx(0.8)
    assert m["users_served_share"] == 0.75 and m["buyers_served_share"] == pytest.approx(2 / 3)


def test_demo_backtest_agrees_with_the_ground_truth(world: Path, tmp_path: Path) -> None:
    """The warehouse path (SQL window, joins) against a plain count over the generator's ground truth
    purchases. Tolerance: none (1e-12): the warehouse's orders are exactly the generator's purchases."""
    truth = pq.read_table(world / GROUND_TRUTH_DIR / PURCHASES_FILE).to_pandas()
    window = truth[
        (truth["order_ts"] >= START) & (truth["order_ts"] < pd.Timestamp(START) + pd.Timedelta(days=DAYS))
    ]
    rng = np.random.default_rng(0)
    items = np.unique(truth["nm_id"].to_numpy())
    buyers = sorted(window["user_id"].unique())
    recs = {}
    for u in buyers[::2]:  # every other buyer: their own purchases somewhere in a list of 20
        mine = list(window.loc[window["user_id"] == u, "nm_id"].unique())
        lst = [int(x) for x in rng.choice(items, 20, replace=False) if x not in mine]
        pos = int(rng.integers(0, 15))
        recs[int(u)] = (lst[:pos] + mine[:1] + lst[pos:])[:20]
    recs[1] = [int(x) for x in items[:20]]  # a served user who buys nothing in the window
    folder = _write_recs(
        tmp_path / "recs", recs, {"users_in_shard": len(recs) + 3, "catalogue_size": len(items)}
    )

    result = backtest(folder, f"duckdb:///{world / WAREHOUSE_FILE}", START, DAYS, ks=(5, 20))

    pairs = {
        (int(u), int(i)) for u, i in zip(window["user_id"], window["nm_id"], strict=True) if int(u) in recs
    }
    for k in (5, 20):
        hits = [(u, i) for u, i in pairs if i in recs[u][:k]]
        assert result.metrics[f"recall_at_{k}"] == pytest.approx(len(hits) / len(pairs), abs=1e-12)
        buyers_served = {u for u, _ in pairs}
        assert result.metrics[f"hit_rate_at_{k}"] == pytest.approx(
            len({u for u, _ in hits}) / len(buyers_served), abs=1e-12
        )
    assert result.purchases == len(pairs) and result.buyers == len(buyers)
    assert result.metrics["recall_at_20"] > 0.3  # the planted purchases are found
    assert result.metrics["users_served_share"] == pytest.approx(len(recs) / (len(recs) + 3))
    assert (result.start_date, result.end_date) == ("2026-10-11", "2026-10-14")
    assert all(isinstance(v, float) for v in result.as_metrics().values())


def test_bad_input_is_one_clear_line(world: Path, tmp_path: Path) -> None:
    uri = f"duckdb:///{world / WAREHOUSE_FILE}"
    with pytest.raises(SearchrecError, match="the recommendations artifact .*nothing does not exist"):
        backtest(tmp_path / "nothing", uri, START, DAYS)
    folder = _write_recs(tmp_path / "recs", {1: [1, 2]}, {})
    with pytest.raises(SearchrecError, match="days must be at least 1"):
        backtest(folder, uri, START, 0)
    with pytest.raises(SearchrecError, match="no purchases between 2030-01-01 and 2030-01-07"):
        backtest(folder, uri, "2030-01-01", 7)
    with pytest.raises(SearchrecError, match="not a calendar date"):
        backtest(folder, uri, "10/11/2026", 7)


def test_command_line_backtest(world: Path, tmp_path: Path, capsys) -> None:
    from searchrec.cli import main

    truth = pq.read_table(world / GROUND_TRUTH_DIR / PURCHASES_FILE).to_pandas()
    user = int(truth.loc[truth["order_ts"] >= START, "user_id"].iloc[0])
    bought = [int(x) for x in truth.loc[(truth["order_ts"] >= START) & (truth["user_id"] == user), "nm_id"]]
    folder = _write_recs(tmp_path / "recs", {user: bought[:1]}, {})
    uri = f"duckdb:///{world / WAREHOUSE_FILE}"
    argv = ["backtest", "--recommendations", str(folder), "--warehouse-uri", uri, "--start-date", START]
    assert main([*argv, "--days", str(DAYS)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["users_served"] == 1.0 and out["hit_rate_at_10"] == 1.0 and out["end_date"] == "2026-10-14"
    assert main([*argv, "--days", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "searchrec: error: days must be at least 1, got 0"
