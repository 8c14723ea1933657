"""Backtest: what was served, measured against what those users bought next.

The recommendations of a day (the infer stage's dataset) against the purchases the same users make in
the following ``days`` days, read from the warehouse itself (sql/orders.sql): no ground truth needed,
so it runs on any warehouse. This is the number a production user watches.

- ``recall_at_{k}``: share of the (user, item) purchases of served users in the window whose item is in
  that user's top k (an item bought twice by one user counts once);
- ``hit_rate_at_{k}``: share of served users who bought something in the window with at least one hit
  in their top k;
- ``coverage_at_{k}``: distinct items in anyone's top k / catalogue size (the snapshot the index held);
- ``users_served_share``: served users / users the recommendation run was asked for;
- ``buyers_served_share``: buyers of the window who had recommendations.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from searchrec.artifacts import events, recommendations
from searchrec.dates import parse_date
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

BACKTEST_KS = (10, 50, 100, 200)


@dataclass
class BacktestResult:
    start_date: str  # first day of the purchase window
    end_date: str  # last day (inclusive)
    users_served: int
    users_requested: int
    buyers: int  # distinct users with a purchase in the window
    served_buyers: int
    purchases: int  # distinct (user, item) purchases of served users in the window
    catalogue_size: int
    metrics: dict[str, float] = field(default_factory=dict)

    def as_metrics(self) -> dict[str, float]:
        counts = {k: float(v) for k, v in asdict(self).items() if isinstance(v, int)}
        return {**counts, **{k: round(v, 6) for k, v in self.metrics.items()}}


def read_recommendations(recommendations_dir: Path) -> tuple[pd.DataFrame, dict]:
    """(user_id, nm_ids) rows and the serving stats of a complete recommendations artifact."""
    try:
        table = recommendations.read(Path(recommendations_dir), ["user_id", "nm_ids"])
    except (OSError, pa.ArrowException, KeyError) as error:
        raise SearchrecError(f"cannot read {recommendations_dir}: {str(error).splitlines()[0]}") from None
    return table.to_pandas(), recommendations.read_stats(Path(recommendations_dir)).as_metadata()


def _hit_ranks(recs: pd.DataFrame, bought: pd.DataFrame) -> np.ndarray:
    """0-based rank of each (user, item) purchase in that user's list; -1 where it is not there."""
    flat = recs.explode("nm_ids").dropna(subset=["nm_ids"])
    flat = flat.rename(columns={"nm_ids": "nm_id"}).astype({"nm_id": "int64"})
    flat["rank"] = flat.groupby("user_id").cumcount()
    joined = bought.merge(flat, on=["user_id", "nm_id"], how="left")
    return joined["rank"].fillna(-1).to_numpy(dtype=np.int64)


def backtest_frames(
    recs: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    ks: Sequence[int] = BACKTEST_KS,
    catalogue_size: int = 0,
    users_requested: int = 0,
) -> dict:
    """The metrics of the module docstring from recommendations (user_id, nm_ids best first) and
    orders (user_id, nm_id) of the window; also the counts they rest on."""
    if recs.empty:
        raise SearchrecError("no recommendations to backtest: the recommendations dataset is empty")
    served = pd.Index(recs["user_id"].astype("int64").unique())
    buyers = pd.Index(orders["user_id"].astype("int64").unique())
    bought = orders[orders["user_id"].isin(served)][["user_id", "nm_id"]].astype("int64").drop_duplicates()
    ranks = _hit_ranks(recs, bought)
    out: dict = {
        "users_served": len(served),
        "users_requested": int(users_requested) or len(served),
        "buyers": len(buyers),
        "served_buyers": int(buyers.isin(served).sum()),
        "purchases": len(bought),
        "catalogue_size": int(catalogue_size),
    }
    metrics: dict[str, float] = {}
    users = bought["user_id"].to_numpy()
    lists = recs["nm_ids"].to_numpy()
    for k in ks:
        hit = (ranks >= 0) & (ranks < k)
        metrics[f"recall_at_{k}"] = float(hit.mean()) if len(hit) else float("nan")
        hit_users = pd.Series(hit).groupby(users).any() if len(hit) else pd.Series(dtype=bool)
        metrics[f"hit_rate_at_{k}"] = float(hit_users.mean()) if len(hit_users) else float("nan")
        if catalogue_size:
            top = np.unique(np.concatenate([np.asarray(x[:k], dtype=np.int64) for x in lists]))
            metrics[f"coverage_at_{k}"] = len(top) / catalogue_size
    metrics["users_served_share"] = out["users_served"] / out["users_requested"]
    metrics["buyers_served_share"] = out["served_buyers"] / out["buyers"] if out["buyers"] else float("nan")
    out["metrics"] = metrics
    return out


def purchase_window(start_date: str | date, days: int) -> tuple[str, str]:
    """[start_date, start_date + days - 1] as inclusive YYYY-MM-DD dates."""
    if int(days) < 1:
        raise SearchrecError(f"days must be at least 1, got {days!r}")
    start = parse_date(start_date, "start_date")
    return start.isoformat(), (start + timedelta(days=int(days) - 1)).isoformat()


def backtest(
    recommendations_dir: Path,
    warehouse_uri: str,
    start_date: str | date,
    days: int,
    *,
    ks: Sequence[int] = BACKTEST_KS,
) -> BacktestResult:
    """Backtest an infer output against the warehouse's purchases in [start_date, start_date + days)."""
    from searchrec.stages.extract import extract_orders  # the warehouse side: no torch, no faiss

    start, end = purchase_window(start_date, days)
    recs, stats = read_recommendations(Path(recommendations_dir))
    with tempfile.TemporaryDirectory(prefix="searchrec-backtest-") as tmp:
        extract_orders(warehouse_uri, start, end, Path(tmp) / "orders")
        orders = events.read(Path(tmp) / "orders", events.ORDERS, "orders").to_pandas()
    if orders.empty:
        raise SearchrecError(f"no purchases between {start} and {end}: nothing to backtest against")
    requested = int(stats.get("users_in_shard", 0) or 0)
    counts = backtest_frames(
        recs,
        orders,
        ks=ks,
        catalogue_size=int(stats.get("catalogue_size", 0) or 0),
        users_requested=requested,
    )
    result = BacktestResult(start_date=start, end_date=end, **counts)
    log.info(
        "backtest %s..%s: %d served users, %d of their purchases; %s",
        start,
        end,
        result.users_served,
        result.purchases,
        ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()),
    )
    return result


__all__ = [
    "BACKTEST_KS",
    "BacktestResult",
    "backtest",
    "backtest_frames",
    "purchase_window",
    "read_recommendations",
]
