"""The ceiling: what an oracle that knows each purchase's true intent can reach on a holdout.

The oracle recommends the intent's matching items ranked by training popularity (then nm_id), so
impulse buys, items outside the candidate set and items ranked below k within their intent are
misses even for it: the best any model that reads only the queries can hope for. Ground truth is
plain data (the demo generator writes it, ``searchrec.demo_data``): purchases with their intent and
each intent's matching items. numpy/pandas only: no torch, and nothing from the driver side.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

PURCHASES_FILE = "purchases.parquet"  # user_id, order_ts, nm_id, intent_id, ...
INTENTS_FILE = "intents.parquet"  # intent_id, nm_ids (every matching item), ...


def popularity_series(item_popularity: Mapping[int, int] | pd.Series) -> pd.Series:
    """nm_id -> count (float64) from a mapping or a Series."""
    if isinstance(item_popularity, pd.Series):
        s = item_popularity.copy()
    else:
        s = pd.Series(dict(item_popularity), dtype="float64")
    s.index = s.index.astype("int64")
    return s.astype("float64")


def check_holdout(holdout: pd.DataFrame, k: int) -> pd.DataFrame:
    """user_id, order_ts, nm_id of the holdout with canonical dtypes; one clear error otherwise."""
    missing = {"user_id", "order_ts", "nm_id"} - set(holdout.columns)
    if missing:
        raise SearchrecError(f"holdout lacks column(s) {', '.join(sorted(missing))}")
    if len(holdout) == 0:
        raise SearchrecError("holdout is empty: no purchase to compute recall on")
    if k < 1:
        raise SearchrecError(f"k must be at least 1, got {k}")
    out = holdout[["user_id", "order_ts", "nm_id"]].copy()
    out["user_id"] = out["user_id"].astype("int64")
    out["nm_id"] = out["nm_id"].astype("int64")
    out["order_ts"] = pd.to_datetime(out["order_ts"]).astype("datetime64[us]")
    return out


def read_ground_truth(ground_truth_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(purchases: user_id, order_ts, nm_id, intent_id; intents: intent_id, nm_ids) of a ground truth folder."""
    ground_truth_dir = Path(ground_truth_dir)
    files = [ground_truth_dir / PURCHASES_FILE, ground_truth_dir / INTENTS_FILE]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SearchrecError(f"ground truth folder lacks {', '.join(missing)}")
    purchases = pq.read_table(files[0], columns=["user_id", "order_ts", "nm_id", "intent_id"]).to_pandas()
    intents = pq.read_table(files[1], columns=["intent_id", "nm_ids"]).to_pandas()
    return purchases, intents


def oracle_ranks(
    purchases: pd.DataFrame,
    intents: pd.DataFrame,
    holdout: pd.DataFrame,
    popularity: pd.Series,
    candidate_items: set[int] | None = None,
) -> np.ndarray:
    """0-based rank of each holdout purchase in its intent's oracle list; -1 where it is not there."""
    gt = purchases[["user_id", "order_ts", "nm_id", "intent_id"]].copy()
    gt["order_ts"] = pd.to_datetime(gt["order_ts"]).astype("datetime64[us]")
    gt = gt.drop_duplicates(["user_id", "order_ts", "nm_id"])
    rows = holdout.reset_index(drop=True).merge(gt, on=["user_id", "order_ts", "nm_id"], how="left")
    unknown = int(rows["intent_id"].isna().sum())
    if unknown:
        log.warning(
            "ceiling: %d of %d holdout purchases are not in the ground truth; misses", unknown, len(rows)
        )
    lists = intents[["intent_id", "nm_ids"]].explode("nm_ids").dropna()
    lists = lists.rename(columns={"nm_ids": "nm_id"}).astype({"nm_id": "int64", "intent_id": "int64"})
    if candidate_items is not None:
        wanted = np.fromiter(candidate_items, dtype=np.int64, count=len(candidate_items))
        lists = lists[lists["nm_id"].isin(wanted)]
    lists["pop"] = lists["nm_id"].map(popularity).fillna(0.0).to_numpy()
    lists = lists.sort_values(["intent_id", "pop", "nm_id"], ascending=[True, False, True], kind="stable")
    lists["rank"] = lists.groupby("intent_id").cumcount()
    rows["row"] = np.arange(len(rows))
    known = rows.dropna(subset=["intent_id"]).astype({"intent_id": "int64"})
    hits = known.merge(lists[["intent_id", "nm_id", "rank"]], on=["intent_id", "nm_id"], how="inner")
    ranks = np.full(len(rows), -1, dtype=np.int64)
    ranks[hits["row"].to_numpy()] = hits["rank"].to_numpy()
    return ranks


def ranks_metrics(ranks: np.ndarray, ks: Sequence[int], prefix: str, ndcg_k: int = 200) -> dict[str, float]:
    """Recall@k, NDCG@ndcg_k and MRR (within ndcg_k) from 0-based hit ranks (-1: a miss)."""
    ranks = np.asarray(ranks)
    hit = ranks >= 0
    out = {f"{prefix}_recall_at_{k}": float((hit & (ranks < k)).mean()) for k in ks}
    within = hit & (ranks < ndcg_k)
    out[f"{prefix}_ndcg_at_{ndcg_k}"] = float(
        np.where(within, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0).mean()
    )
    out[f"{prefix}_mrr"] = float(np.where(within, 1.0 / (np.maximum(ranks, 0) + 1.0), 0).mean())
    return out


def ceiling_recall(
    ground_truth_dir: Path,
    holdout: pd.DataFrame,
    item_popularity: Mapping[int, int] | pd.Series,
    k: int = 200,
    candidate_items: set[int] | None = None,
) -> float:
    """Recall@k (share of holdout purchases hit) of the oracle (module docstring). ``holdout`` needs
    user_id, order_ts, nm_id; ``item_popularity`` maps nm_id -> training count."""
    purchases, intents = read_ground_truth(ground_truth_dir)
    holdout = check_holdout(holdout, k)
    ranks = oracle_ranks(purchases, intents, holdout, popularity_series(item_popularity), candidate_items)
    recall = float(((ranks >= 0) & (ranks < k)).mean())
    log.info("ceiling Recall@%d on %d holdout purchases: %.4f", k, len(holdout), recall)
    return recall


def ceiling_metrics(
    ground_truth_dir: Path,
    holdout: pd.DataFrame,
    item_popularity: Mapping[int, int] | pd.Series,
    ks: Sequence[int],
    ndcg_k: int = 200,
) -> dict[str, float]:
    """``ceiling_recall_at_{k}``, ``ceiling_ndcg_at_{ndcg_k}`` and ``ceiling_mrr`` of the oracle."""
    purchases, intents = read_ground_truth(ground_truth_dir)
    holdout = check_holdout(holdout, max(ks))
    ranks = oracle_ranks(purchases, intents, holdout, popularity_series(item_popularity))
    return ranks_metrics(ranks, ks, "ceiling", ndcg_k)


def popularity_recall(
    holdout: pd.DataFrame,
    item_popularity: Mapping[int, int] | pd.Series,
    k: int = 200,
    candidate_items: set[int] | None = None,
) -> float:
    """Recall@k of recommending everyone the k most popular items (ties by nm_id)."""
    holdout = check_holdout(holdout, k)
    pop = popularity_series(item_popularity)
    if candidate_items is not None:
        pop = pop[pop.index.isin(list(candidate_items))]
    frame = pd.DataFrame({"nm_id": pop.index.to_numpy(), "pop": pop.to_numpy()})
    top = frame.sort_values(["pop", "nm_id"], ascending=[False, True], kind="stable")["nm_id"].head(k)
    return float(holdout["nm_id"].isin(top.to_numpy()).mean())
