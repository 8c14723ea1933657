"""Infer stage: query tower over encoded user histories, top-k faiss search, recommendations dataset.

Inputs: the model folder, an index folder (stages.index), and the encode stage's output for the
inference split: ``table.npy`` float32 [n_queries + 1, Dq] (row 0 = the [PAD] encoding),
``histories.parquet`` (``user_id`` per row) and ``histories_hist.npy`` int32 [rows, HISTORY_LENGTH]
(right-aligned indices into the table, 0 = padding).

Sharding: shard ``s`` of ``S`` serves the users with ``user_id % S == s`` (numpy's modulo, so a
negative id lands in ``[0, S)`` too); every user is in exactly one shard. Each shard writes
``recommendations.parquet`` (``artifacts.recommendations``, row groups of one batch, users ascending by
``user_id``) and ``stats.json``; ``searchrec.stages.merge.merge_shards`` joins the shard folders into one dataset sorted by
``user_id`` and checks that all shards are there. Memory stays bounded: histories and the query table
are memory-mapped and gathered batch by batch, and the output is streamed with a ParquetWriter.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from searchrec import config
from searchrec.artifacts import encoded, examples, recommendations
from searchrec.artifacts import events as event_parts
from searchrec.artifacts.recommendations import InferStats
from searchrec.errors import SearchrecError
from searchrec.model import TwoTower
from searchrec.stages.index import (
    Devices,
    Searcher,
    load_index,
    load_model,
    model_digests,
    resolve_devices,
    search_users,
)

log = logging.getLogger(__name__)

_CHUNK = 1 << 20  # rows per chunk when scanning memory-mapped histories


# --- inputs --------------------------------------------------------------------------------------
def check_same_encoder(trained_with: dict, encoded_with: dict) -> None:
    """The queries must go through the encoder the model was trained on: same pooling and dimension.

    The encoder's location may differ (a local folder in training, a bucket copy in serving), so a
    different name is only logged; a different pooling or dimension would give meaningless vectors."""
    for key, encoded_key in (("pooling", "pooling"), ("encoder_dim", "dim")):
        a, b = trained_with.get(key), encoded_with.get(encoded_key)
        if a is not None and b is not None and str(a) != str(b):
            raise SearchrecError(
                f"the queries were encoded with {encoded_key} {b} but the model was trained on {a}; "
                f"encode with the model's encoder ({trained_with.get('encoder')})"
            )
    if trained_with.get("encoder") and encoded_with.get("encoder") != trained_with.get("encoder"):
        log.warning(
            "infer: queries encoded by %s, model trained on queries encoded by %s (same pooling and dim)",
            encoded_with.get("encoder"),
            trained_with.get("encoder"),
        )


def _load_encoded(
    encoded_dir: Path, history_length: int, query_dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user_ids int64 [rows], hist int32 memmap [rows, L], table float32 memmap [q+1, Dq]), checked."""
    table = encoded.read_table(encoded_dir, mmap=True)
    if table.shape[1] != query_dim:
        raise SearchrecError(
            f"{encoded.TABLE_FILE} has shape {table.shape}; the model's query tower expects [*, {query_dim}]"
        )
    rows, hist = encoded.read_split(
        encoded_dir,
        examples.INFER_SPLIT,
        columns=["user_id"],
        table_rows=len(table),
        history_length=history_length,
        mmap=True,
    )
    users = rows.column("user_id")
    if users.null_count:
        raise SearchrecError(
            f"{examples.split_file(examples.INFER_SPLIT)} has {users.null_count} null user_id values"
        )
    return users.to_numpy().astype(np.int64, copy=False), hist, table


def _read_bought(
    exclude_dir: Path, users: np.ndarray, catalogue_sorted: np.ndarray, catalogue_order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Purchases of the served users as (user_id, index row) pairs, sorted by user, one row per pair."""
    user_parts, row_parts = [], []
    for batch in event_parts.iter_batches(exclude_dir, ["user_id", "nm_id"], "exclude_bought orders"):
        u = batch.column("user_id").to_numpy(zero_copy_only=False)
        nm = batch.column("nm_id").to_numpy(zero_copy_only=False)
        if u.dtype.kind == "f" or nm.dtype.kind == "f":  # nulls came back as NaN: drop those rows
            ok = ~(np.isnan(u.astype(np.float64)) | np.isnan(nm.astype(np.float64)))
            u, nm = u[ok], nm[ok]
        u, nm = u.astype(np.int64), nm.astype(np.int64)
        keep = np.isin(u, users)
        u, nm = u[keep], nm[keep]
        pos = np.minimum(np.searchsorted(catalogue_sorted, nm), len(catalogue_sorted) - 1)
        known = catalogue_sorted[pos] == nm
        user_parts.append(u[known])
        row_parts.append(catalogue_order[pos[known]])
    u = np.concatenate(user_parts) if user_parts else np.empty(0, np.int64)
    r = np.concatenate(row_parts) if row_parts else np.empty(0, np.int64)
    # one row per (user, item), sorted by user: unique over the pair
    pairs = np.unique(np.stack([u, r], axis=1), axis=0) if len(u) else np.empty((0, 2), np.int64)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


# --- the stage ------------------------------------------------------------------------------------
@dataclass
class _Serving:
    """Everything a shard serves from, loaded and checked against each other."""

    devices: Devices
    model: TwoTower
    index: object  # faiss.Index
    nm_ids: np.ndarray
    index_info: dict
    user_ids: np.ndarray
    hist: np.ndarray
    table: np.ndarray


def _check_params(top_k: int, shard_index: int, num_shards: int, batch_size: int, min_history: int) -> None:
    if top_k < 1:
        raise SearchrecError(f"top_k must be at least 1, got {top_k}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise SearchrecError(f"shard_index must be within [0, num_shards), got {shard_index} of {num_shards}")
    if batch_size < 1:
        raise SearchrecError(f"batch_size must be positive, got {batch_size}")
    if min_history < 0:
        raise SearchrecError(f"min_history must be >= 0, got {min_history}")


def _load_serving(model_dir: Path, index_dir: Path, encoded_dir: Path, device: str) -> _Serving:
    devices = resolve_devices(device)
    index, nm_ids, index_info = load_index(index_dir)
    model = load_model(model_dir, devices.torch)
    cfg = model.cfg
    if index.d != model.vector_dim:
        raise SearchrecError(
            f"index vectors have dim {index.d} but the model's towers output {model.vector_dim}"
        )
    built_by = index_info.get("model_digest")
    if built_by and built_by != model_digests(model_dir)["model_digest"]:
        raise SearchrecError(
            f"index {index_dir} was built with a different model than {model_dir}; rebuild the index"
        )
    user_ids, hist, table = _load_encoded(encoded_dir, cfg.history_length, cfg.query_dim)
    check_same_encoder(cfg.extra, encoded.read_info(encoded_dir))
    return _Serving(devices, model, index, nm_ids, index_info, user_ids, hist, table)


def _history_lengths(hist: np.ndarray, rows: np.ndarray, table_rows: int) -> np.ndarray:
    """Real (non-padding) queries per row, indices validated chunk by chunk (hist may be large)."""
    lengths = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), _CHUNK):
        h = np.asarray(hist[rows[start : start + _CHUNK]])
        if h.size and (h.min() < 0 or h.max() >= table_rows):
            raise SearchrecError(
                f"{encoded.hist_file(examples.INFER_SPLIT)} holds indices outside [0, {table_rows}) of {encoded.TABLE_FILE}"
            )
        lengths[start : start + len(h)] = (h != 0).sum(axis=1)
    return lengths


def _shard_rows(
    serving: _Serving, shard_index: int, num_shards: int, min_history: int, stats: InferStats
) -> np.ndarray:
    """Rows of this shard's users with at least ``min_history`` queries, by user_id ascending."""
    user_ids = serving.user_ids
    shard_rows = np.flatnonzero(user_ids % num_shards == shard_index)
    if len(np.unique(user_ids[shard_rows])) != len(shard_rows):
        raise SearchrecError(f"{examples.split_file(examples.INFER_SPLIT)} lists some user_id more than once")
    short = _history_lengths(serving.hist, shard_rows, len(serving.table)) < min_history
    stats.users_in_shard = len(shard_rows)
    if short.any():
        stats.users_skipped["short_history"] = int(short.sum())
    serve_rows = shard_rows[~short]
    return serve_rows[np.argsort(user_ids[serve_rows], kind="stable")]


@dataclass
class _Bought:
    """Purchases to exclude, as (user, index row) pairs sorted by user."""

    users: np.ndarray
    rows: np.ndarray

    def in_batch(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """(position in ``users``, index row, the most any one user bought) for a batch of sorted users."""
        lo = np.searchsorted(self.users, users[0], side="left")
        hi = np.searchsorted(self.users, users[-1], side="right")
        positions = np.searchsorted(users, self.users[lo:hi])
        return positions, self.rows[lo:hi], int(np.bincount(positions).max()) if len(positions) else 0


@dataclass
class _Totals:
    """Running sums over the batches of a shard, folded into its stats at the end."""

    seen: np.ndarray
    top1_sum: float = 0.0
    score_sum: float = 0.0
    empty: int = 0

    def finish(self, stats: InferStats, started: float) -> None:
        if self.empty:
            stats.users_skipped["nothing_left"] = self.empty
        stats.distinct_items = int(self.seen.sum())
        stats.coverage = stats.distinct_items / len(self.seen)
        stats.mean_top1_score = self.top1_sum / stats.users_served if stats.users_served else 0.0
        stats.mean_score = self.score_sum / stats.recommendations if stats.recommendations else 0.0
        stats.seconds = time.perf_counter() - started


def _query_vectors(serving: _Serving, rows: np.ndarray) -> np.ndarray:
    h = np.asarray(serving.hist[rows]).astype(np.int64, copy=False)
    with torch.inference_mode():
        x = torch.from_numpy(np.asarray(serving.table[h], dtype=np.float32)).to(serving.devices.torch)
        mask = torch.from_numpy(h != 0).to(serving.devices.torch)
        return serving.model.query_vectors(x, mask).float().cpu().numpy()


def _pack(
    users: np.ndarray,
    scores: np.ndarray,
    found: np.ndarray,
    keep: np.ndarray,
    nm_ids: np.ndarray,
    totals: _Totals,
) -> pa.Table:
    """The kept results of a batch as recommendation rows (users left with nothing are dropped)."""
    counts = keep.sum(axis=1)
    has = counts > 0
    totals.empty += int((~has).sum())
    flat_rows = found[keep]
    flat_scores = scores[keep].astype(np.float32, copy=False)
    totals.seen[flat_rows] = True
    offsets = np.zeros(int(has.sum()) + 1, dtype=np.int32)
    np.cumsum(counts[has], out=offsets[1:])
    if has.any():
        totals.top1_sum += float(flat_scores[offsets[:-1]].sum())
        totals.score_sum += float(flat_scores.sum(dtype=np.float64))
    return pa.table(
        {
            "user_id": pa.array(users[has], pa.int64()),
            "nm_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(nm_ids[flat_rows], pa.int64())),
            "scores": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat_scores, pa.float32())),
        },
        schema=recommendations.RECOMMENDATIONS,
    )


def _serve_batch(
    serving: _Serving,
    searcher: Searcher,
    rows: np.ndarray,
    k: int,
    bought: _Bought | None,
    stats: InferStats,
    totals: _Totals,
) -> pa.Table:
    """Query tower, search each vector k deep (plus what the batch's users bought), drop bought items,
    merge each user's interests as evaluated (the max score, with the model's interest quota), pack."""
    users = serving.user_ids[rows]
    n_items = len(serving.nm_ids)
    b_pos, b_rows, extra = bought.in_batch(users) if bought is not None else (None, None, 0)
    drop = None
    if b_pos is not None and len(b_pos):
        bought_keys = b_pos.astype(np.int64) * n_items + b_rows

        def drop(found: np.ndarray) -> np.ndarray:
            key = np.arange(len(rows), dtype=np.int64)[:, None] * n_items + found
            dropped = np.isin(key, bought_keys) & (found >= 0)
            stats.items_excluded += len(np.unique(key[dropped]))  # each (user, item) once over interests
            return dropped

    scores, found = search_users(
        searcher,
        _query_vectors(serving, rows),
        k,
        quota=serving.model.cfg.interest_quota,
        depth=min(n_items, k + extra),
        drop=drop,
    )
    keep = found >= 0
    counts = keep.sum(axis=1)
    stats.users_short_list += int(((counts < k) & (counts > 0)).sum())
    batch = _pack(users, scores, found, keep, serving.nm_ids, totals)
    stats.users_served += batch.num_rows
    stats.recommendations += int(counts.sum())
    stats.batches += 1
    return batch


def _log_shard(stats: InferStats, users: int, served: int, min_history: int, batch_size: int) -> None:
    log.info(
        "infer: shard %d/%d: %d users of %d, %d served, %d skipped (< %d queries); %d items, top %d, batch %d",
        stats.shard_index,
        stats.num_shards,
        stats.users_in_shard,
        users,
        served,
        stats.users_skipped.get("short_history", 0),
        min_history,
        stats.catalogue_size,
        stats.top_k,
        batch_size,
    )


def _bought_pairs(exclude_bought_dir: Path, serving: _Serving, serve_rows: np.ndarray) -> _Bought:
    order = np.argsort(serving.nm_ids, kind="stable")
    users = serving.user_ids[serve_rows]
    bought = _Bought(*_read_bought(exclude_bought_dir, users, serving.nm_ids[order], order))
    log.info("infer: %d bought (user, item) pairs to exclude", len(bought.users))
    return bought


def recommend(
    model_dir: Path,
    index_dir: Path,
    encoded_dir: Path,
    out_dir: Path,
    *,
    top_k: int = config.TOP_K,
    shard_index: int = 0,
    num_shards: int = 1,
    batch_size: int = config.INFER_BATCH_SIZE,
    exclude_bought_dir: Path | None = None,
    min_history: int = config.MIN_HISTORY,
    device: str = "auto",
) -> InferStats:
    """Top-k items for every user of shard ``shard_index`` of ``num_shards`` (``user_id % num_shards``).

    Users with fewer than ``min_history`` real (non-padding) queries are skipped and counted. With
    ``exclude_bought_dir`` (an orders events folder), items the user bought are removed (the search
    asks for top_k plus the most any user of the batch bought, then filters). A ``top_k`` above the
    catalogue size gives the whole catalogue. Writes a recommendations artifact, complete or nothing.
    """
    _check_params(top_k, shard_index, num_shards, batch_size, min_history)
    started = time.perf_counter()
    serving = _load_serving(Path(model_dir), Path(index_dir), Path(encoded_dir), device)
    n_items = len(serving.nm_ids)
    k = min(top_k, n_items)
    stats = InferStats(
        catalogue_size=n_items,
        top_k=k,
        shard_index=shard_index,
        num_shards=num_shards,
        shards_merged=1,
        device=serving.devices.name,
        index_kind=str(serving.index_info.get("kind", "")),
    )
    serve_rows = _shard_rows(serving, shard_index, num_shards, min_history, stats)
    _log_shard(stats, len(serving.user_ids), len(serve_rows), min_history, batch_size)
    bought = _bought_pairs(Path(exclude_bought_dir), serving, serve_rows) if exclude_bought_dir else None
    searcher = Searcher(
        serving.index,
        serving.devices.faiss_gpu,
        ef_search=serving.index_info.get("params", {}).get("efSearch"),
    )
    totals = _Totals(seen=np.zeros(n_items, dtype=bool))
    with recommendations.writing(Path(out_dir), stats) as writer:
        for start in tqdm(
            range(0, len(serve_rows), batch_size),
            unit="batch",
            desc=f"infer shard {shard_index}",
            mininterval=2,
        ):
            rows = serve_rows[start : start + batch_size]
            writer.write_table(_serve_batch(serving, searcher, rows, k, bought, stats, totals))
        totals.finish(stats, started)
    log.info(
        "infer: shard %d/%d done: %d users in %d batches, %.1f s (%.0f users/s), coverage %.3f, search on %s",
        shard_index,
        num_shards,
        stats.users_served,
        stats.batches,
        stats.seconds,
        stats.users_per_s,
        stats.coverage,
        "GPU" if searcher.on_gpu else "CPU",
    )
    return stats
