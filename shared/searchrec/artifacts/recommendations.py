"""Recommendations: ``recommendations.parquet`` (:data:`RECOMMENDATIONS`, users ascending, row groups
of one batch) and ``stats.json`` (the serving counts, :class:`InferStats`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from searchrec.artifacts import folder
from searchrec.errors import SearchrecError

KIND = "recommendations"
RECOMMENDATIONS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("nm_ids", pa.list_(pa.int64())),
        ("scores", pa.list_(pa.float32())),
    ]
)
FILE = "recommendations.parquet"
STATS_FILE = "stats.json"


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


@contextlib.contextmanager
def writing(out_dir: Path, stats: InferStats) -> Iterator[pq.ParquetWriter]:
    """A parquet writer into a recommendations folder; ``stats`` (filled in by the block) is written last."""
    with folder.publishing(out_dir, KIND) as path:
        with pq.ParquetWriter(path / FILE, RECOMMENDATIONS) as writer:
            yield writer
        folder.write_json(path / STATS_FILE, stats.as_metadata())


def file(path: Path) -> Path:
    """The parquet file of a complete recommendations folder."""
    folder.require_complete(path, KIND)
    folder.require_files(path, KIND, [FILE, STATS_FILE])
    return Path(path) / FILE


def read_stats(path: Path) -> InferStats:
    folder.require_complete(path, KIND)
    folder.require_files(path, KIND, [STATS_FILE])
    return InferStats(**folder.read_json(Path(path) / STATS_FILE))


def read(path: Path, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(file(path), columns=columns)


def read_users(path: Path) -> np.ndarray:
    return read(path, ["user_id"]).column("user_id").to_numpy()


class Stream:
    """Reads a recommendations file front to back, handing out the next ``n`` rows on request."""

    def __init__(self, path: Path):
        self.batches = pq.ParquetFile(file(path)).iter_batches(batch_size=65536)
        self.buffer = RECOMMENDATIONS.empty_table()

    def take(self, n: int) -> pa.Table:
        while self.buffer.num_rows < n:
            try:
                batch = next(self.batches)
            except StopIteration:
                raise SearchrecError(
                    f"recommendations ended after {self.buffer.num_rows} of {n} rows"
                ) from None
            self.buffer = pa.concat_tables(
                [self.buffer, pa.Table.from_batches([batch]).cast(RECOMMENDATIONS)]
            )
        out, self.buffer = self.buffer.slice(0, n), self.buffer.slice(n)
        return out
