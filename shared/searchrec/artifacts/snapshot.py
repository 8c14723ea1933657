"""The item-embeddings snapshot: the source contract and extract's checked copy of one ``dt=`` partition.

Source (DESIGN.md section 2): ``<embeddings_uri>/dt=YYYY-MM-DD/*.parquet`` with ``nm_id int64`` and
``embedding list<float32>``, one length for all rows. The artifact extract writes is a flat folder of
those parquet files plus ``snapshot.json`` (:class:`SnapshotInfo`) and the completion marker. Every
stage that needs item vectors (clean, train, index) reads them here, under one policy: ``nm_id``
unique, vectors finite, one dimension.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from searchrec.artifacts import folder
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

KIND = "embeddings snapshot"
EMBEDDINGS = pa.schema([("nm_id", pa.int64()), ("embedding", pa.list_(pa.float32()))])
INFO_FILE = "snapshot.json"  # {"uri", "pinned", "snapshot_date", "requested_date", "dim", "rows", "files"}


@dataclass
class SnapshotInfo:
    """The embeddings snapshot that was picked; written as ``snapshot.json`` beside its files."""

    uri: str
    snapshot_date: str
    requested_date: str
    dim: int
    rows: int
    files: list[str]
    bytes: int = 0
    seconds: float = 0.0
    pinned: bool = False  # the user named the dt= partition instead of letting extract pick the nearest
    profile: dict[str, float] = field(default_factory=dict)  # :func:`profile` of the vectors

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "pinned": self.pinned,
            "snapshot_date": self.snapshot_date,
            "requested_date": self.requested_date,
            "dim": self.dim,
            "rows": self.rows,
            "files": self.files,
        }

    def as_metadata(self) -> dict[str, Any]:
        days = (date.fromisoformat(self.snapshot_date) - date.fromisoformat(self.requested_date)).days
        return {
            "uri": self.uri,
            "snapshot_date": self.snapshot_date,
            "requested_date": self.requested_date,
            "days_off": days,
            "pinned": self.pinned,
            "dim": self.dim,
            "rows": self.rows,
            "files": len(self.files),
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            **self.profile,
        }

    def as_metrics(self) -> dict[str, float]:
        """The data-validation view for a KFP Metrics artifact: sizes, distinct ids, vector norms."""
        return {
            "rows": float(self.rows),
            "dim": float(self.dim),
            "days_off": float(self.as_metadata()["days_off"]),
            **{k: float(v) for k, v in self.profile.items()},
        }


# --- the source contract ---------------------------------------------------------------------------


def check_source_file(path: Path, shown: str) -> tuple[int, int]:
    """(rows, dim) of one source parquet file; one line naming ``shown`` if it breaks the contract."""
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SearchrecError(f"embeddings file {shown} is not readable parquet: {exc}") from exc
    got = pf.schema_arrow
    for want in EMBEDDINGS:
        if want.name not in got.names:
            raise SearchrecError(
                f"embeddings file {shown} has no column {want.name} (columns: {', '.join(got.names)})"
            )
        if got.field(want.name).type != want.type:
            raise SearchrecError(
                f"embeddings file {shown}: column {want.name} is {got.field(want.name).type}, expected {want.type}"
            )
    rows, dims = 0, set()
    for batch in pf.iter_batches(columns=["nm_id", "embedding"], batch_size=65_536):
        if batch.column(0).null_count or batch.column(1).null_count:
            raise SearchrecError(f"embeddings file {shown} has null nm_id or embedding values")
        lengths = pc.list_value_length(batch.column(1))
        if len(lengths):
            mm = pc.min_max(lengths)
            dims.update({mm["min"].as_py(), mm["max"].as_py()})
        rows += batch.num_rows
        if len(dims) > 1:
            raise SearchrecError(f"embeddings file {shown} mixes embedding lengths {sorted(dims)}")
    dim = dims.pop() if dims else 0
    if rows and dim == 0:
        raise SearchrecError(f"embeddings file {shown} has empty embeddings")
    return rows, dim


def matrix(column: pa.Array | pa.ChunkedArray, dim: int, where: str) -> np.ndarray:
    """list<float> column -> writable float32 [rows, dim]; every row exactly ``dim`` finite values."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not (
        pa.types.is_list(column.type)
        or pa.types.is_large_list(column.type)
        or pa.types.is_fixed_size_list(column.type)
    ):
        raise SearchrecError(f"{where}: column 'embedding' has type {column.type}, expected list<float32>")
    if column.null_count:
        raise SearchrecError(f"{where}: {column.null_count} rows have a null embedding")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(lengths != dim)
    if bad.size:
        raise SearchrecError(
            f"{where}: {bad.size} embeddings have length {lengths[bad[0]]} (first at row {bad[0]}), expected {dim}"
        )
    values = column.flatten().to_numpy(zero_copy_only=False)
    out = np.array(values, dtype=np.float32).reshape(len(column), dim)
    if not np.isfinite(out).all():
        raise SearchrecError(f"{where}: embeddings hold NaN or infinite values")
    return out


def profile(files: list[tuple[Path, str]], dim: int) -> dict[str, float]:
    """Streaming statistics of the vectors (bounded memory), refusing what no model can learn from:
    NaN or infinite values (naming the file and row), only zero vectors, or one vector repeated for
    every item. Returns distinct ids, zero vectors and the norms' min / mean / max."""
    rows = zeros = 0
    norm_sum, norm_min, norm_max = 0.0, float("inf"), 0.0
    first, varies = None, False
    for path, shown in files:
        offset = 0
        for batch in pq.ParquetFile(path).iter_batches(columns=["embedding"], batch_size=65_536):
            values = batch.column(0).flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            vectors = values.reshape(batch.num_rows, dim)
            bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
            if bad.size:
                raise SearchrecError(
                    f"embeddings file {shown} has NaN or infinite values in {bad.size} row(s), first at row {offset + bad[0]}"
                )
            norms = np.linalg.norm(vectors, axis=1)
            zeros += int((norms == 0).sum())
            norm_sum += float(norms.sum(dtype=np.float64))
            norm_min, norm_max = min(norm_min, float(norms.min())), max(norm_max, float(norms.max()))
            first = vectors[0].copy() if first is None else first
            varies = varies or bool((vectors != first).any())
            rows += batch.num_rows
            offset += batch.num_rows
    where = ", ".join(shown for _, shown in files[:2]) + (" ..." if len(files) > 2 else "")
    if rows and zeros == rows:
        raise SearchrecError(
            f"embeddings snapshot {where}: every vector is zero; nothing to learn items from"
        )
    if rows > 1 and not varies:
        raise SearchrecError(f"embeddings snapshot {where}: all {rows} items have the same vector")
    if zeros:
        log.warning("embeddings snapshot %s: %d of %d vectors are zero", where, zeros, rows)
    return {
        "zero_vectors": float(zeros),
        "norm_min": round(norm_min, 6) if rows else 0.0,
        "norm_mean": round(norm_sum / rows, 6) if rows else 0.0,
        "norm_max": round(norm_max, 6),
    }


# --- the artifact ----------------------------------------------------------------------------------


def files(path: Path) -> list[Path]:
    """The parquet files of a complete snapshot artifact, sorted."""
    folder.require_complete(path, KIND)
    found = sorted(p for p in Path(path).glob("*.parquet") if p.is_file())
    if not found:
        raise SearchrecError(f"the {KIND} {path} holds no *.parquet files")
    return found


def read_info(path: Path) -> dict[str, Any]:
    """``snapshot.json`` of a complete snapshot artifact."""
    folder.require_complete(path, KIND)
    folder.require_files(path, KIND, [INFO_FILE])
    return folder.read_json(Path(path) / INFO_FILE)


def _open(path: Path) -> list[tuple[Path, pq.ParquetFile]]:
    opened = []
    for f in files(path):
        try:
            pf = pq.ParquetFile(f)
        except Exception as error:
            raise SearchrecError(f"cannot read {f}: {error}") from None
        missing = {"nm_id", "embedding"} - set(pf.schema_arrow.names)
        if missing:
            raise SearchrecError(f"{f} lacks column(s) {sorted(missing)}")
        opened.append((f, pf))
    return opened


def count_rows(path: Path) -> int:
    return sum(pf.metadata.num_rows for _, pf in _open(path))


def iter_batches(path: Path, dim: int, batch_size: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(nm_ids int64 [b], vectors float32 [b, dim]) batches over the whole snapshot, in file order."""
    for f, pf in _open(path):
        for batch in pf.iter_batches(batch_size=batch_size, columns=["nm_id", "embedding"]):
            ids = batch.column("nm_id")
            if ids.null_count:
                raise SearchrecError(f"{f.name}: {ids.null_count} rows have a null nm_id")
            vectors = matrix(batch.column("embedding"), dim, f.name)
            yield ids.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), vectors


def require_unique(nm_ids: np.ndarray, where: str) -> None:
    """One line naming repeated ``nm_id`` values (each item must appear once in a snapshot)."""
    unique, counts = np.unique(nm_ids, return_counts=True)
    if unique.size != len(nm_ids):
        dup = unique[counts > 1]
        shown = ", ".join(str(x) for x in dup[:5]) + (" ..." if dup.size > 5 else "")
        raise SearchrecError(f"{where} repeats {dup.size} nm_id(s) ({shown}); each item must appear once")


def read_ids(path: Path) -> np.ndarray:
    """Distinct ``nm_id`` of the snapshot, sorted (only that column is read)."""
    started = time.perf_counter()
    parts = []
    for f in files(path):
        try:
            column = pq.read_table(f, columns=["nm_id"])["nm_id"]
        except (pa.ArrowException, OSError, KeyError) as exc:
            raise SearchrecError(f"cannot read nm_id from embeddings file {f}: {exc}") from exc
        parts.append(pc.drop_null(column).cast(pa.int64()).to_numpy())
    ids = np.concatenate(parts)
    require_unique(ids, f"the {KIND} {path}")
    log.info("read %s: %d nm_id from %s (%.2fs)", KIND, len(ids), path, time.perf_counter() - started)
    return np.sort(ids)


def read(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The whole snapshot: nm_ids (sorted, unique) int64 [m], embeddings float32 [m, D], snapshot.json."""
    info = read_info(path)
    dim = int(info["dim"])
    ids_parts, emb_parts = [], []
    for ids, vectors in iter_batches(path, dim):
        ids_parts.append(ids)
        emb_parts.append(vectors)
    ids = np.concatenate(ids_parts) if ids_parts else np.empty(0, np.int64)
    if not len(ids):
        raise SearchrecError(f"the {KIND} {path} holds no rows")
    require_unique(ids, f"the {KIND} {path}")
    order = np.argsort(ids, kind="stable")
    return ids[order], np.ascontiguousarray(np.concatenate(emb_parts)[order]), info


def write(out_dir: Path, table: pa.Table, info: SnapshotInfo) -> None:
    """Publish a snapshot artifact from one table (extract copies source files instead)."""
    with folder.publishing(out_dir, KIND) as path:
        pq.write_table(table, path / "part-0.parquet")
        folder.write_json(path / INFO_FILE, info.to_json())
