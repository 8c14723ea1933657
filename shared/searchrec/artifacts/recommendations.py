"""Recommendations: ``recommendations.parquet`` (:data:`RECOMMENDATIONS`, users ascending, row groups
of one batch) and ``stats.json`` (the serving counts of ``searchrec.stages.infer.InferStats``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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


@contextlib.contextmanager
def writing(out_dir: Path, stats: folder.Metadata) -> Iterator[pq.ParquetWriter]:
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


def read_stats(path: Path) -> dict:
    folder.require_complete(path, KIND)
    folder.require_files(path, KIND, [STATS_FILE])
    return folder.read_json(Path(path) / STATS_FILE)


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
