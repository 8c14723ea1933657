"""Holdout evaluation: exact top-k over the FULL item set of the snapshot, for the model and for the
global-popularity baseline, plus the ceiling the demo generator's ground truth allows.

Metric functions take ``topk`` ids [n, k] (best first) and ``true`` ids [n]: each holdout example has
exactly one relevant item (the one bought). Results are a flat dict for KFP Metrics, e.g.
``model_recall_at_200``, ``popularity_recall_at_200``, ``ceiling_recall_at_200``, ``model_ndcg_at_200``,
``model_mrr``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from searchrec import ceiling
from searchrec.model import TwoTower, gather_history

log = logging.getLogger(__name__)

RECALL_KS = (10, 50, 100, 200)
NDCG_K = 200
_SCORE_BUDGET = 1 << 26  # elements of one [queries x items] score block (256 MiB in float32)
# Several interests: ranking by the max in one product (exact_topk) beats K searches and a merge while
# a score block holds many users: x1.97 at 5k items, x1.03 at 100k, x0.52 at 1M (results/train.md)
PRODUCT_MAX_ITEMS = 100_000


def hit_ranks(topk: np.ndarray, true: np.ndarray) -> np.ndarray:
    """0-based position of the true id in each row of ``topk``; -1 where it is absent."""
    topk = np.asarray(topk)
    true = np.asarray(true)
    if topk.ndim != 2 or true.ndim != 1 or len(topk) != len(true):
        raise ValueError(f"expected topk [n, k] and true [n], got {topk.shape} and {true.shape}")
    hits = topk == true[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1)


def recall_at_k(topk: np.ndarray, true: np.ndarray, k: int) -> float:
    """Share of rows whose true id is among the first k."""
    ranks = hit_ranks(np.asarray(topk)[:, :k], true)
    return float((ranks >= 0).mean()) if len(ranks) else float("nan")


def ndcg_at_k(topk: np.ndarray, true: np.ndarray, k: int) -> float:
    """NDCG with one relevant item: 1 / log2(rank + 1) for a hit at 1-based rank within k, else 0."""
    ranks = hit_ranks(np.asarray(topk)[:, :k], true)
    gains = np.where(ranks >= 0, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    return float(gains.mean()) if len(ranks) else float("nan")


def mrr(topk: np.ndarray, true: np.ndarray) -> float:
    """Mean reciprocal rank of the true id within the given top-k (0 when it is not there)."""
    ranks = hit_ranks(topk, true)
    rr = np.where(ranks >= 0, 1.0 / (np.maximum(ranks, 0) + 1.0), 0.0)
    return float(rr.mean()) if len(ranks) else float("nan")


def ranking_metrics(
    topk: np.ndarray, true: np.ndarray, prefix: str, ks: Sequence[int] = RECALL_KS, ndcg_k: int = NDCG_K
) -> dict[str, float]:
    """Recall@k for each k, NDCG@ndcg_k and MRR as ``{prefix}_recall_at_{k}``, ... ."""
    out = {f"{prefix}_recall_at_{k}": recall_at_k(topk, true, k) for k in ks}
    out[f"{prefix}_ndcg_at_{ndcg_k}"] = ndcg_at_k(topk, true, ndcg_k)
    out[f"{prefix}_mrr"] = mrr(topk, true)
    return out


def popularity_topk(nm_ids: np.ndarray, k: int) -> np.ndarray:
    """The k most purchased items (ties broken by smaller nm_id) from one nm_id per purchase."""
    ids, counts = np.unique(np.asarray(nm_ids, dtype=np.int64), return_counts=True)
    order = np.lexsort((ids, -counts))
    return ids[order[:k]]


@torch.no_grad()
def encode_items(
    model: TwoTower, item_emb: torch.Tensor, nm_ids: np.ndarray | None = None, batch_size: int = 65536
) -> torch.Tensor:
    """Served item vectors of every row of ``item_emb`` (on the model's device); ``nm_ids`` (one per
    row) feed the popularity prior."""
    model.eval()
    parts = [
        model.item_vectors(
            item_emb[s : s + batch_size], None if nm_ids is None else nm_ids[s : s + batch_size]
        )
        for s in range(0, len(item_emb), batch_size)
    ]
    return torch.cat(parts) if parts else item_emb.new_zeros((0, model.vector_dim))


@torch.no_grad()
def exact_topk(
    queries: torch.Tensor, items: torch.Tensor, k: int, *, score_budget: int = _SCORE_BUDGET
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k by inner product, queries in chunks so one score block stays within the budget.
    Queries [n, D], or [n, K, D]: each row's score of an item is its max over the K vectors (the
    ranking ``index.search_users`` merges from K searches of an exact index, in one product).
    The score blocks are allocated once and reused: a fresh 256 MiB block per chunk costs more in
    page faults than its product (tests/benchmarks/results/train.md)."""
    k = min(k, len(items))
    if not len(queries):
        return queries.new_zeros((0, k)), torch.zeros((0, k), dtype=torch.long, device=queries.device)
    interests = queries.shape[1] if queries.ndim == 3 else 1
    n, dim = len(items), queries.shape[-1]
    chunk = max(1, min(len(queries), score_budget // max(1, interests * n)))
    product = queries.new_empty((chunk * interests, n))
    best = queries.new_empty((chunk, n)) if interests > 1 else product
    scores, rows = [], []
    for s in range(0, len(queries), chunk):
        block = queries[s : s + chunk].reshape(-1, dim)
        users = len(block) // interests
        score = torch.mm(block, items.T, out=product[: len(block)])
        if interests > 1:
            score = torch.amax(score.view(users, interests, n), dim=1, out=best[:users])
        top = torch.topk(score, k, dim=1)
        scores.append(top.values)
        rows.append(top.indices)
    return torch.cat(scores), torch.cat(rows)


@torch.no_grad()
def query_tensors(
    model: TwoTower, table: torch.Tensor, hist: torch.Tensor, batch_size: int = 8192
) -> torch.Tensor:
    """The served query vectors of each history, on the model's device: [n, D], or [n, K, D]."""
    model.eval()
    parts = []
    for s in range(0, len(hist), batch_size):
        history, mask = gather_history(table, hist[s : s + batch_size].to(table.device))
        parts.append(model.query_vectors(history, mask).float())
    return torch.cat(parts)


def query_vectors(
    model: TwoTower, table: torch.Tensor, hist: torch.Tensor, batch_size: int = 8192
) -> np.ndarray:
    """The served query vectors of each history: [n, D], or [n, K, D] with K interests."""
    return query_tensors(model, table, hist, batch_size).cpu().numpy()


def _searcher(item_vectors: torch.Tensor):
    from searchrec.stages.index import Searcher, flat, resolve_devices

    items = np.ascontiguousarray(item_vectors.float().cpu().numpy())
    return Searcher(flat(items), resolve_devices("auto").faiss_gpu)


@torch.no_grad()
def model_topk(
    model: TwoTower,
    table: torch.Tensor,
    hist: torch.Tensor,
    item_vectors: torch.Tensor,
    k: int,
    *,
    batch_size: int = 8192,
) -> np.ndarray:
    """Row numbers [n, k] of the top-k items (rows of ``item_vectors``) for each history: exact search
    through the serving stage's faiss searcher (GPU where faiss sees one; 1.6-2.1x torch matmul+topk
    on the CPU, tests/benchmarks/results/search.md); with several interests, merged as served
    (index.search_users: the max over them, with the model's ``interest_quota``). Several interests
    and no quota, up to PRODUCT_MAX_ITEMS items: the same exact ranking by the max in one product per
    block on the model's device (``exact_topk``), instead of K searches per user and a merge."""
    from searchrec.stages.index import search_users

    k = min(k, len(item_vectors))
    if len(hist) == 0 or k == 0:
        return np.zeros((0, k), dtype=np.int64)
    if model.cfg.interests > 1 and not model.cfg.interest_quota and len(item_vectors) <= PRODUCT_MAX_ITEMS:
        queries = query_tensors(model, table, hist, batch_size)
        return exact_topk(queries, item_vectors.to(queries.device).float(), k)[1].cpu().numpy()
    queries = query_vectors(model, table, hist, batch_size)
    return search_users(_searcher(item_vectors), queries, k, quota=model.cfg.interest_quota)[1]


@torch.no_grad()
def quota_metrics(
    model: TwoTower,
    table: torch.Tensor,
    hist: torch.Tensor,
    true_ids: np.ndarray,
    item_ids: np.ndarray,
    item_emb: torch.Tensor,
    quotas: Sequence[float],
    ks: Sequence[int] = RECALL_KS,
) -> dict[float, dict[str, float]]:
    """``model_*`` ranking metrics of each interest quota (index.merge_interests) from one search of
    every interest vector: what ``evaluate`` gives with ``model.cfg.interest_quota`` set to each."""
    from searchrec.stages.index import merge_interests

    k = min(max(max(ks), NDCG_K), len(item_emb))
    item_vectors = encode_items(model, item_emb, np.asarray(item_ids, dtype=np.int64))
    queries = query_vectors(model, table, hist)
    if queries.ndim == 2:  # one interest: nothing to share
        queries = queries[:, None, :]
    users, interests, dim = queries.shape
    scores, rows = _searcher(item_vectors).search(queries.reshape(-1, dim), k)
    scores, rows = scores.reshape(users, -1), rows.reshape(users, -1)
    true_ids = np.asarray(true_ids, dtype=np.int64)
    out = {}
    for quota in quotas:
        merged = merge_interests(scores, rows, k, interests=interests, quota=float(quota))[1]
        out[float(quota)] = ranking_metrics(np.asarray(item_ids)[merged], true_ids, "model", ks)
    return out


def model_metrics(
    model: TwoTower,
    table: torch.Tensor,
    hist: torch.Tensor,
    true_ids: np.ndarray,
    item_ids: np.ndarray,
    item_vectors: torch.Tensor,
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, float]:
    """``model_*`` ranking metrics over the whole catalogue from item vectors already encoded (one
    encoding serves several splits; the per-epoch curve)."""
    rows = model_topk(model, table, hist, item_vectors, max(max(ks), NDCG_K))
    return ranking_metrics(np.asarray(item_ids)[rows], np.asarray(true_ids, dtype=np.int64), "model", ks)


def evaluate(
    model: TwoTower,
    table: torch.Tensor,
    hist: torch.Tensor,
    true_ids: np.ndarray,
    item_ids: np.ndarray,
    item_emb: torch.Tensor,
    train_nm_ids: np.ndarray,
    *,
    ks: Sequence[int] = RECALL_KS,
    ground_truth_dir: Path | None = None,
    holdout_df: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Model, popularity and (with ``ground_truth_dir``) ceiling metrics on the holdout.

    ``item_ids`` / ``item_emb`` are the whole snapshot (row i of item_emb is item_ids[i]);
    ``train_nm_ids`` holds one nm_id per training purchase (the popularity baseline counts them).
    """
    started = time.perf_counter()
    k = max(max(ks), NDCG_K)
    item_vectors = encode_items(model, item_emb, np.asarray(item_ids, dtype=np.int64))
    true_ids = np.asarray(true_ids, dtype=np.int64)
    metrics = model_metrics(model, table, hist, true_ids, item_ids, item_vectors, ks)
    popular = popularity_topk(train_nm_ids, k)
    metrics.update(
        ranking_metrics(np.broadcast_to(popular, (len(true_ids), len(popular))), true_ids, "popularity", ks)
    )
    if ground_truth_dir is not None:
        metrics.update(ceiling_metrics(Path(ground_truth_dir), holdout_df, train_nm_ids, ks))
    metrics["holdout_examples"] = float(len(true_ids))
    metrics["catalogue_items"] = float(len(item_ids))
    log.info(
        "holdout: %d examples over %d items in %.1f s; recall@%d model %.4f popularity %.4f",
        len(true_ids),
        len(item_ids),
        time.perf_counter() - started,
        max(ks),
        metrics[f"model_recall_at_{max(ks)}"],
        metrics[f"popularity_recall_at_{max(ks)}"],
    )
    return metrics


def ceiling_metrics(
    ground_truth_dir: Path, holdout_df: pd.DataFrame | None, train_nm_ids: np.ndarray, ks: Sequence[int]
) -> dict[str, float]:
    """``ceiling_*`` metrics from a ground truth folder (the demo generator writes one), popularity
    counted on ``train_nm_ids``; empty without a holdout."""
    if holdout_df is None or holdout_df.empty:
        return {}
    ids, counts = np.unique(np.asarray(train_nm_ids, dtype=np.int64), return_counts=True)
    popularity = pd.Series(counts, index=pd.Index(ids, name="nm_id"), name="count")
    return ceiling.ceiling_metrics(Path(ground_truth_dir), holdout_df, popularity, ks, NDCG_K)
