"""Joining inference shards and publishing the result: no torch, no faiss (the merge task only moves
Parquet rows and counts), so it starts in a fraction of the infer task's time."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from searchrec.artifacts import recommendations
from searchrec.artifacts.recommendations import InferStats
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)


# --- merging and copying --------------------------------------------------------------------------
def _read_shards(shard_dirs: list[Path]) -> tuple[list[InferStats], list[np.ndarray]]:
    """Each shard's stats and sorted user ids; refuses a missing, duplicated or foreign shard."""
    shard_stats, user_lists = [], []
    for d in shard_dirs:
        shard_stats.append(recommendations.read_stats(d))
        users = recommendations.read_users(d)
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
    return shard_stats, user_lists


def _merge_order(user_lists: list[np.ndarray]) -> np.ndarray:
    """For each output row in user_id order, the shard it comes from."""
    labels = np.concatenate([np.full(len(u), i, dtype=np.int32) for i, u in enumerate(user_lists)])
    all_users = np.concatenate(user_lists)
    order = np.argsort(all_users, kind="stable")
    if len(all_users) > 1 and not (np.diff(all_users[order]) > 0).all():
        raise SearchrecError("a user_id appears in more than one shard")
    return labels[order]


def _merged_stats(shard_stats: list[InferStats]) -> InferStats:
    """Counts summed over shards; served users, rows and scores are filled in while merging."""
    skipped: dict[str, int] = {}
    for s in shard_stats:
        for reason, c in s.users_skipped.items():
            skipped[reason] = skipped.get(reason, 0) + c
    first = shard_stats[0]
    return InferStats(
        users_in_shard=sum(s.users_in_shard for s in shard_stats),
        users_skipped=skipped,
        users_short_list=sum(s.users_short_list for s in shard_stats),
        items_excluded=sum(s.items_excluded for s in shard_stats),
        catalogue_size=first.catalogue_size,
        top_k=first.top_k,
        shards_merged=len(shard_stats),
        batches=sum(s.batches for s in shard_stats),
        device=first.device,
        index_kind=first.index_kind,
    )


def merge_shards(shard_dirs: list[Path], out_dir: Path, *, rows_per_group: int = 65536) -> InferStats:
    """Join shard outputs of ``recommend`` into one recommendations artifact sorted by user_id.

    All shards of one run must be there (same num_shards, each shard_index once); users must be
    unique. Streams: each shard is sorted by user_id, so the output is a merge read front to back.
    """
    shard_dirs = [Path(d) for d in shard_dirs]
    if not shard_dirs:
        raise SearchrecError("merge_shards got no shard folders")
    started = time.perf_counter()
    shard_stats, user_lists = _read_shards(shard_dirs)
    labels = _merge_order(user_lists)
    streams = [recommendations.Stream(d) for d in shard_dirs]
    distinct = np.empty(0, dtype=np.int64)
    top1_sum = score_sum = 0.0
    served = rows = 0
    stats = _merged_stats(shard_stats)
    with recommendations.writing(Path(out_dir), stats) as writer:
        for start in tqdm(range(0, len(labels), rows_per_group), desc="merge shards", unit="group"):
            counts = np.bincount(labels[start : start + rows_per_group], minlength=len(streams))
            chunk = pa.concat_tables([s.take(int(c)) for s, c in zip(streams, counts, strict=True) if c])
            chunk = chunk.take(pc.sort_indices(chunk, [("user_id", "ascending")]))
            writer.write_table(chunk)
            distinct = np.union1d(distinct, pc.list_flatten(chunk.column("nm_ids")).to_numpy())
            scores = pc.list_flatten(chunk.column("scores")).to_numpy()
            top1_sum += float(pc.sum(pc.list_element(chunk.column("scores"), 0)).as_py() or 0.0)
            score_sum += float(scores.sum(dtype=np.float64))
            rows, served = rows + len(scores), served + chunk.num_rows
        stats.users_served, stats.recommendations, stats.distinct_items = served, rows, len(distinct)
        stats.coverage = len(distinct) / stats.catalogue_size if stats.catalogue_size else 0.0
        stats.mean_top1_score = top1_sum / served if served else 0.0
        stats.mean_score = score_sum / rows if rows else 0.0
        stats.seconds = time.perf_counter() - started
    log.info("infer: merged %d shards, %d users, coverage %.3f", len(shard_dirs), served, stats.coverage)
    return stats


def publish(stats: InferStats, recommendations, metrics, output_uri: str = "", end_date: str = "") -> None:
    """Copy the result under the output root if one is given, then record lineage metadata and Metrics
    on the KFP artifacts (`recommendations`: Output[Dataset], `metrics`: Output[Metrics]).

    `end_date`: the recommendation window's last day (names the output sub-folder; kept in metadata so
    that a merge task after the shards knows it too)."""
    from searchrec.runtime import lineage

    extra: dict = {"end_date": end_date} if end_date else {}
    if output_uri:
        pointer = copy_to(
            Path(recommendations.path),
            output_uri,
            end_date=end_date,
            task_uri=recommendations.uri,
            stats=stats,
        )
        extra.update(copied_to=pointer["uri"], output_root=output_uri)
    recommendations.metadata.update(lineage(**stats.as_metadata(), **extra))
    for name, value in stats.as_metrics().items():
        metrics.log_metric(name, value)


def copy_to(
    out_dir: Path, root: str, *, end_date: str = "", task_uri: str = "", stats: InferStats | None = None
) -> dict:
    """Publish a recommendations folder under the output root ``root`` (``s3://``, ``gs://``,
    ``file://`` or a local folder) as ``<end_date>-<task id>/`` and point ``LATEST.json`` at it
    (``searchrec.outputs``); return the pointer. ``task_uri``: the artifact's URI, stable over retries
    of one task (default: ``out_dir``); the root may not contain it."""
    from searchrec import outputs

    out_dir = Path(out_dir)
    stats = stats or recommendations.read_stats(out_dir)
    task_uri = task_uri or str(out_dir.resolve())
    name = outputs.output_name(end_date, task_uri)
    info = {
        "end_date": end_date,
        "users": stats.users_served,
        "rows": stats.recommendations,
        "source": task_uri,
    }
    protected = {task_uri: "this task's own artifact", str(out_dir.resolve()): "this task's own artifact"}
    pointer = outputs.publish(out_dir, root, name, info, protected)
    log.info("infer: published %s to %s (%s now names it)", out_dir, pointer["uri"], outputs.LATEST)
    return pointer
