"""Infer stage: query tower over encoded user histories, top-k faiss search, recommendations dataset.

Inputs: the model folder, an index folder (stages.index), and the encode stage's output for the
inference split: ``table.npy`` float32 [n_queries + 1, Dq] (row 0 = the [PAD] encoding),
``histories.parquet`` (``user_id`` per row) and ``histories_hist.npy`` int32 [rows, HISTORY_LENGTH]
(right-aligned indices into the table, 0 = padding).

Sharding: shard ``s`` of ``S`` serves the users with ``user_id % S == s`` (numpy's modulo, so a
negative id lands in ``[0, S)`` too); every user is in exactly one shard. Each shard writes
``recommendations.parquet`` (schemas.RECOMMENDATIONS, row groups of one batch, users ascending by
``user_id``) and ``stats.json``; ``merge_shards`` joins the shard folders into one dataset sorted by
``user_id`` and checks that all shards are there. Memory stays bounded: histories and the query table
are memory-mapped and gathered batch by batch, and the output is streamed with a ParquetWriter.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from searchrec import config, schemas
from searchrec.errors import SearchrecError
from searchrec.stages.index import (
    Searcher,
    load_index,
    load_model,
    model_digests,
    resolve_devices,
)
from searchrec.storage import staged_dir

log = logging.getLogger(__name__)

STATS_FILE = schemas.INFER_STATS_FILE
_CHUNK = 1 << 20  # rows per chunk when scanning memory-mapped histories


@dataclass
class InferStats:
    users_in_shard: int = 0  # users of the input that fall into this shard (all shards after a merge)
    users_served: int = 0
    users_skipped: dict[str, int] = field(default_factory=dict)  # reason -> users
    users_short_list: int = 0  # served with fewer than top_k items (small catalogue, exclusions)
    items_excluded: int = 0  # search results dropped because the user bought them
    recommendations: int = 0  # (user, item) rows written
    catalogue_size: int = 0
    distinct_items: int = 0
    coverage: float = 0.0  # distinct recommended items / catalogue size
    mean_top1_score: float = 0.0
    mean_score: float = 0.0
    top_k: int = 0
    shard_index: int = 0
    num_shards: int = 1
    shards_merged: int = 0
    batches: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    index_kind: str = ""

    @property
    def users_per_s(self) -> float:
        return self.users_served / self.seconds if self.seconds > 0 else 0.0

    def as_metrics(self) -> dict[str, float]:
        """Flat numbers for a KFP Metrics artifact (skip reasons as users_skipped_<reason>)."""
        out: dict[str, float] = {
            "users_in_shard": float(self.users_in_shard),
            "users_served": float(self.users_served),
            "users_skipped": float(sum(self.users_skipped.values())),
            "users_short_list": float(self.users_short_list),
            "items_excluded": float(self.items_excluded),
            "recommendations": float(self.recommendations),
            "catalogue_size": float(self.catalogue_size),
            "distinct_items": float(self.distinct_items),
            "coverage": round(self.coverage, 6),
            "mean_top1_score": round(self.mean_top1_score, 6),
            "mean_score": round(self.mean_score, 6),
            "top_k": float(self.top_k),
            "seconds": round(self.seconds, 3),
            "users_per_s": round(self.users_per_s, 1),
        }
        for reason, count in sorted(self.users_skipped.items()):
            out[f"users_skipped_{reason}"] = float(count)
        return out

    def as_metadata(self) -> dict:
        return asdict(self)

    @classmethod
    def load(cls, path: Path) -> InferStats:
        return cls(**json.loads(Path(path).read_text()))


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
    split = schemas.INFER_SPLIT
    paths = {
        "table": encoded_dir / schemas.TABLE_FILE,
        "rows": encoded_dir / schemas.rows_file(split),
        "hist": encoded_dir / schemas.hist_file(split),
    }
    if not encoded_dir.is_dir():
        raise SearchrecError(f"encoded folder {encoded_dir} does not exist")
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise SearchrecError(f"encoded folder {encoded_dir} lacks {', '.join(missing)}")
    try:
        table = np.load(paths["table"], mmap_mode="r")
        hist = np.load(paths["hist"], mmap_mode="r")
        rows = pq.read_table(paths["rows"], columns=["user_id"]).column("user_id")
    except (ValueError, OSError, KeyError, pa.ArrowException) as error:
        raise SearchrecError(
            f"cannot read encoded folder {encoded_dir}: {type(error).__name__}: {error}"
        ) from None
    if table.ndim != 2 or table.shape[1] != query_dim or len(table) < 1:
        raise SearchrecError(
            f"{schemas.TABLE_FILE} has shape {table.shape}; the model's query tower expects [*, {query_dim}]"
        )
    if hist.ndim != 2 or hist.shape[1] != history_length or not np.issubdtype(hist.dtype, np.integer):
        raise SearchrecError(
            f"{paths['hist'].name} has shape {hist.shape} ({hist.dtype}); expected integer [rows, {history_length}]"
        )
    if len(rows) != len(hist):
        raise SearchrecError(
            f"{paths['rows'].name} has {len(rows)} rows but {paths['hist'].name} has {len(hist)}"
        )
    if rows.null_count:
        raise SearchrecError(f"{paths['rows'].name} has {rows.null_count} null user_id values")
    user_ids = rows.to_numpy().astype(np.int64, copy=False)
    return user_ids, hist, table


def _read_bought(
    exclude_dir: Path, users: np.ndarray, catalogue_sorted: np.ndarray, catalogue_order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Purchases of the served users as (user_id, index row) pairs, sorted by user, one row per pair."""
    if not exclude_dir.is_dir():
        raise SearchrecError(f"exclude_bought folder {exclude_dir} does not exist")
    files = sorted(exclude_dir.glob("*.parquet"))
    if not files:
        raise SearchrecError(f"exclude_bought folder {exclude_dir} holds no *.parquet files")
    user_parts, row_parts = [], []
    for f in files:
        try:
            pf = pq.ParquetFile(f)
        except Exception as error:
            raise SearchrecError(f"cannot read {f}: {error}") from None
        if not {"user_id", "nm_id"} <= set(pf.schema_arrow.names):
            raise SearchrecError(f"{f} lacks column user_id or nm_id")
        for batch in pf.iter_batches(batch_size=1 << 20, columns=["user_id", "nm_id"]):
            u = batch.column("user_id").to_numpy(zero_copy_only=False)
            nm = batch.column("nm_id").to_numpy(zero_copy_only=False)
            if u.dtype.kind == "f" or nm.dtype.kind == "f":  # nulls came back as NaN: drop those rows
                ok = ~(np.isnan(u.astype(np.float64)) | np.isnan(nm.astype(np.float64)))
                u, nm = u[ok], nm[ok]
            u, nm = u.astype(np.int64), nm.astype(np.int64)
            keep = np.isin(u, users)
            u, nm = u[keep], nm[keep]
            pos = np.searchsorted(catalogue_sorted, nm)
            pos = np.minimum(pos, len(catalogue_sorted) - 1)
            known = catalogue_sorted[pos] == nm
            user_parts.append(u[known])
            row_parts.append(catalogue_order[pos[known]])
    u = np.concatenate(user_parts) if user_parts else np.empty(0, np.int64)
    r = np.concatenate(row_parts) if row_parts else np.empty(0, np.int64)
    # one row per (user, item), sorted by user: unique over the pair
    pairs = np.unique(np.stack([u, r], axis=1), axis=0) if len(u) else np.empty((0, 2), np.int64)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


# --- the stage ------------------------------------------------------------------------------------
def recommend(
    model_dir: Path,
    index_dir: Path,
    encoded_dir: Path,
    out_dir: Path,
    *,
    top_k: int = config.TOP_K,
    shard_index: int = 0,
    num_shards: int = 1,
    batch_size: int = 8192,
    exclude_bought_dir: Path | None = None,
    min_history: int = 1,
    device: str = "auto",
) -> InferStats:
    """Top-k items for every user of shard ``shard_index`` of ``num_shards`` (``user_id % num_shards``).

    Users with fewer than ``min_history`` real (non-padding) queries are skipped and counted. With
    ``exclude_bought_dir`` (parquet files with user_id, nm_id), items the user bought are removed
    (the search asks for top_k plus the most any user of the batch bought, then filters). A
    ``top_k`` above the catalogue size gives the whole catalogue. Writes ``out_dir`` atomically.
    """
    model_dir, index_dir, encoded_dir, out_dir = (
        Path(model_dir),
        Path(index_dir),
        Path(encoded_dir),
        Path(out_dir),
    )
    if top_k < 1:
        raise SearchrecError(f"top_k must be at least 1, got {top_k}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise SearchrecError(f"shard_index must be within [0, num_shards), got {shard_index} of {num_shards}")
    if batch_size < 1:
        raise SearchrecError(f"batch_size must be positive, got {batch_size}")
    if min_history < 0:
        raise SearchrecError(f"min_history must be >= 0, got {min_history}")
    started = time.perf_counter()
    devices = resolve_devices(device)

    index, nm_ids, index_info = load_index(index_dir)
    model = load_model(model_dir, devices.torch)
    cfg = model.cfg
    if index.d != cfg.output_dim:
        raise SearchrecError(
            f"index vectors have dim {index.d} but the model's towers output {cfg.output_dim}"
        )
    built_by = index_info.get("model_digest")
    if built_by and built_by != model_digests(model_dir)["model_digest"]:
        raise SearchrecError(
            f"index {index_dir} was built with a different model than {model_dir}; rebuild the index"
        )
    user_ids, hist, table = _load_encoded(encoded_dir, cfg.history_length, cfg.query_dim)
    encoder_info = Path(encoded_dir) / schemas.ENCODER_INFO
    check_same_encoder(cfg.extra, schemas.read_json(encoder_info) if encoder_info.is_file() else {})
    n_items = index.ntotal
    k = min(top_k, n_items)

    # users of this shard, their history lengths, validated in chunks (hist may be large)
    shard_rows = np.flatnonzero(user_ids % num_shards == shard_index)
    if len(np.unique(user_ids[shard_rows])) != len(shard_rows):
        raise SearchrecError(f"{schemas.rows_file(schemas.INFER_SPLIT)} lists some user_id more than once")
    lengths = np.empty(len(shard_rows), dtype=np.int64)
    for start in range(0, len(shard_rows), _CHUNK):
        h = np.asarray(hist[shard_rows[start : start + _CHUNK]])
        if h.size and (h.min() < 0 or h.max() >= len(table)):
            raise SearchrecError(
                f"{schemas.hist_file(schemas.INFER_SPLIT)} holds indices outside [0, {len(table)}) of {schemas.TABLE_FILE}"
            )
        lengths[start : start + len(h)] = (h != 0).sum(axis=1)
    stats = InferStats(
        users_in_shard=len(shard_rows),
        catalogue_size=n_items,
        top_k=k,
        shard_index=shard_index,
        num_shards=num_shards,
        shards_merged=1,
        device=devices.name,
        index_kind=str(index_info.get("kind", "")),
    )
    short = lengths < min_history
    if short.any():
        stats.users_skipped["short_history"] = int(short.sum())
    serve_rows = shard_rows[~short]
    order = np.argsort(user_ids[serve_rows], kind="stable")
    serve_rows = serve_rows[order]
    serve_users = user_ids[serve_rows]
    log.info(
        "infer: shard %d/%d: %d users of %d, %d served, %d skipped (< %d queries); %d items, top %d, batch %d",
        shard_index,
        num_shards,
        len(shard_rows),
        len(user_ids),
        len(serve_rows),
        int(short.sum()),
        min_history,
        n_items,
        k,
        batch_size,
    )

    bought_users = bought_rows = None
    if exclude_bought_dir is not None:
        cat_order = np.argsort(nm_ids, kind="stable")
        bought_users, bought_rows = _read_bought(
            Path(exclude_bought_dir), serve_users, nm_ids[cat_order], cat_order
        )
        log.info("infer: %d bought (user, item) pairs to exclude", len(bought_users))

    searcher = Searcher(index, devices.faiss_gpu, ef_search=index_info.get("params", {}).get("efSearch"))
    seen = np.zeros(n_items, dtype=bool)
    top1_sum = score_sum = 0.0
    empty = 0
    with staged_dir(out_dir) as tmp:
        writer = pq.ParquetWriter(tmp / schemas.RECOMMENDATIONS_FILE, schemas.RECOMMENDATIONS)
        try:
            bar = tqdm(total=len(serve_rows), unit="user", desc=f"infer shard {shard_index}", mininterval=2)
            for start in range(0, len(serve_rows), batch_size):
                rows = serve_rows[start : start + batch_size]
                users = serve_users[start : start + batch_size]
                h = np.asarray(hist[rows]).astype(np.int64, copy=False)
                with torch.inference_mode():
                    x = torch.from_numpy(np.asarray(table[h], dtype=np.float32)).to(devices.torch)
                    mask = torch.from_numpy(h != 0).to(devices.torch)
                    q = model.query_tower(x, mask).float().cpu().numpy()

                extra, b_pos, b_rows = 0, None, None
                if bought_users is not None:
                    # users and purchases are both sorted by user_id: the batch's purchases are one slice
                    lo = np.searchsorted(bought_users, users[0], side="left")
                    hi = np.searchsorted(bought_users, users[-1], side="right")
                    b_pos = np.searchsorted(users, bought_users[lo:hi])
                    b_rows = bought_rows[lo:hi]
                    if len(b_pos):
                        extra = int(np.bincount(b_pos).max())
                k_search = min(n_items, k + extra)
                scores, found = searcher.search(q, k_search)

                valid = found >= 0
                if b_pos is not None and len(b_pos):
                    key = np.arange(len(rows), dtype=np.int64)[:, None] * n_items + found
                    bought = np.isin(key, b_pos.astype(np.int64) * n_items + b_rows) & valid
                    stats.items_excluded += int(bought.sum())
                    valid &= ~bought
                keep = valid & (np.cumsum(valid, axis=1) <= k)
                counts = keep.sum(axis=1)
                has = counts > 0
                empty += int((~has).sum())
                stats.users_short_list += int(((counts < k) & has).sum())
                flat_rows = found[keep]
                flat_scores = scores[keep].astype(np.float32, copy=False)
                seen[flat_rows] = True
                offsets = np.zeros(int(has.sum()) + 1, dtype=np.int32)
                np.cumsum(counts[has], out=offsets[1:])
                if has.any():
                    top1_sum += float(flat_scores[offsets[:-1]].sum())
                    score_sum += float(flat_scores.sum(dtype=np.float64))
                batch = pa.table(
                    {
                        "user_id": pa.array(users[has], pa.int64()),
                        "nm_ids": pa.ListArray.from_arrays(
                            pa.array(offsets), pa.array(nm_ids[flat_rows], pa.int64())
                        ),
                        "scores": pa.ListArray.from_arrays(
                            pa.array(offsets), pa.array(flat_scores, pa.float32())
                        ),
                    },
                    schema=schemas.RECOMMENDATIONS,
                )
                writer.write_table(batch)
                stats.users_served += int(has.sum())
                stats.recommendations += len(flat_rows)
                stats.batches += 1
                bar.update(len(rows))
            bar.close()
        finally:
            writer.close()
        if empty:
            stats.users_skipped["nothing_left"] = empty
        stats.distinct_items = int(seen.sum())
        stats.coverage = stats.distinct_items / n_items
        stats.mean_top1_score = top1_sum / stats.users_served if stats.users_served else 0.0
        stats.mean_score = score_sum / stats.recommendations if stats.recommendations else 0.0
        stats.seconds = time.perf_counter() - started
        (tmp / STATS_FILE).write_text(json.dumps(stats.as_metadata(), indent=2))
    log.info(
        "infer: shard %d/%d done: %d users served in %d batches, %.1f s (%.0f users/s), coverage %.3f, "
        "mean top-1 %.4f, searched on %s",
        shard_index,
        num_shards,
        stats.users_served,
        stats.batches,
        stats.seconds,
        stats.users_per_s,
        stats.coverage,
        stats.mean_top1_score,
        "GPU" if searcher.on_gpu else "CPU",
    )
    return stats


# --- merging and copying --------------------------------------------------------------------------
class _ShardStream:
    """Reads a shard's recommendations front to back, handing out the next ``n`` rows on request."""

    def __init__(self, path: Path):
        self.batches = pq.ParquetFile(path).iter_batches(batch_size=65536)
        self.buffer = pa.Table.from_batches([], schema=schemas.RECOMMENDATIONS)

    def take(self, n: int) -> pa.Table:
        while self.buffer.num_rows < n:
            batch = next(self.batches)
            self.buffer = pa.concat_tables(
                [self.buffer, pa.Table.from_batches([batch]).cast(schemas.RECOMMENDATIONS)]
            )
        out, self.buffer = self.buffer.slice(0, n), self.buffer.slice(n)
        return out


def merge_shards(shard_dirs: list[Path], out_dir: Path, *, rows_per_group: int = 65536) -> InferStats:
    """Join shard outputs of ``recommend`` into one recommendations.parquet sorted by user_id.

    All shards of one run must be there (same num_shards, each shard_index once); users must be
    unique. Streams: each shard is sorted by user_id, so the output is a merge read front to back.
    """
    shard_dirs = [Path(d) for d in shard_dirs]
    out_dir = Path(out_dir)
    if not shard_dirs:
        raise SearchrecError("merge_shards got no shard folders")
    started = time.perf_counter()
    shard_stats: list[InferStats] = []
    user_lists: list[np.ndarray] = []
    for d in shard_dirs:
        rec, st = d / schemas.RECOMMENDATIONS_FILE, d / STATS_FILE
        if not rec.is_file() or not st.is_file():
            raise SearchrecError(f"shard folder {d} lacks {schemas.RECOMMENDATIONS_FILE} or {STATS_FILE}")
        shard_stats.append(InferStats.load(st))
        users = pq.read_table(rec, columns=["user_id"]).column("user_id").to_numpy()
        if len(users) > 1 and not (np.diff(users) > 0).all():
            raise SearchrecError(f"shard {d} is not sorted by unique user_id; was it written by recommend()?")
        user_lists.append(users)
    num_shards = {s.num_shards for s in shard_stats}
    indices = sorted(s.shard_index for s in shard_stats)
    if len(num_shards) != 1 or indices != list(range(num_shards.pop())):
        raise SearchrecError(
            f"shard folders hold shards {indices} of {sorted({s.num_shards for s in shard_stats})}; "
            "expected each shard of one run exactly once"
        )
    if len({s.catalogue_size for s in shard_stats}) != 1 or len({s.top_k for s in shard_stats}) != 1:
        raise SearchrecError("shards come from different indexes or top_k values")

    labels = np.concatenate([np.full(len(u), i, dtype=np.int32) for i, u in enumerate(user_lists)])
    all_users = np.concatenate(user_lists)
    order = np.argsort(all_users, kind="stable")
    labels = labels[order]
    if len(all_users) > 1 and not (np.diff(all_users[order]) > 0).all():
        raise SearchrecError("a user_id appears in more than one shard")
    del all_users, order

    streams = [_ShardStream(d / schemas.RECOMMENDATIONS_FILE) for d in shard_dirs]
    distinct = np.empty(0, dtype=np.int64)
    top1_sum = score_sum = 0.0
    total_rows = served = 0
    with staged_dir(out_dir) as tmp:
        with pq.ParquetWriter(tmp / schemas.RECOMMENDATIONS_FILE, schemas.RECOMMENDATIONS) as writer:
            for start in tqdm(range(0, len(labels), rows_per_group), desc="merge shards", unit="group"):
                counts = np.bincount(labels[start : start + rows_per_group], minlength=len(streams))
                parts = [s.take(int(c)) for s, c in zip(streams, counts, strict=True) if c]
                chunk = pa.concat_tables(parts)
                chunk = chunk.take(pc.sort_indices(chunk, [("user_id", "ascending")]))
                writer.write_table(chunk)
                items = pc.list_flatten(chunk.column("nm_ids")).to_numpy()
                scores = pc.list_flatten(chunk.column("scores")).to_numpy()
                distinct = np.union1d(distinct, items)
                top1_sum += float(pc.sum(pc.list_element(chunk.column("scores"), 0)).as_py() or 0.0)
                score_sum += float(scores.sum(dtype=np.float64))
                total_rows += len(items)
                served += chunk.num_rows
        catalogue = shard_stats[0].catalogue_size
        skipped: dict[str, int] = {}
        for s in shard_stats:
            for reason, c in s.users_skipped.items():
                skipped[reason] = skipped.get(reason, 0) + c
        stats = InferStats(
            users_in_shard=sum(s.users_in_shard for s in shard_stats),
            users_served=served,
            users_skipped=skipped,
            users_short_list=sum(s.users_short_list for s in shard_stats),
            items_excluded=sum(s.items_excluded for s in shard_stats),
            recommendations=total_rows,
            catalogue_size=catalogue,
            distinct_items=len(distinct),
            coverage=len(distinct) / catalogue if catalogue else 0.0,
            mean_top1_score=top1_sum / served if served else 0.0,
            mean_score=score_sum / total_rows if total_rows else 0.0,
            top_k=shard_stats[0].top_k,
            shard_index=0,
            num_shards=1,
            shards_merged=len(shard_dirs),
            batches=sum(s.batches for s in shard_stats),
            seconds=time.perf_counter() - started,
            device=shard_stats[0].device,
            index_kind=shard_stats[0].index_kind,
        )
        (tmp / STATS_FILE).write_text(json.dumps(stats.as_metadata(), indent=2))
    log.info("infer: merged %d shards, %d users, coverage %.3f", len(shard_dirs), served, stats.coverage)
    return stats


def publish(stats: InferStats, recommendations, metrics, output_uri: str = "") -> None:
    """Copy the result where asked, then record lineage metadata and Metrics on the KFP artifacts
    (`recommendations`: Output[Dataset], `metrics`: Output[Metrics])."""
    from searchrec.runtime import lineage

    extra = {}
    if output_uri:
        copy_to(Path(recommendations.path), output_uri)
        extra["copied_to"] = output_uri
    recommendations.metadata.update(lineage(**stats.as_metadata(), **extra))
    for name, value in stats.as_metrics().items():
        metrics.log_metric(name, value)


def copy_to(out_dir: Path, uri: str) -> list[str]:
    """Copy an output folder to ``uri`` (``s3://``, ``gs://``, ``file://`` or a local path); return the files written.

    Goes through ``searchrec.storage.upload_tree``: a local destination is staged and renamed into place.
    """
    from searchrec.storage import upload_tree

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise SearchrecError(f"folder to copy {out_dir} does not exist")
    if "://" in uri and not uri.startswith(("s3://", "gs://", "file://")):
        raise SearchrecError(
            f"unsupported destination {uri!r}; expected s3://, gs://, file:// or a local path"
        )
    written = upload_tree(out_dir, uri)
    log.info("infer: copied %d files of %s to %s", len(written), out_dir, uri)
    return written
