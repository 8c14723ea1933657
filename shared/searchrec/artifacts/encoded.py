"""Encoded queries: each distinct query encoded once, histories as integer indices into that table.

- ``table.npy``       float32 [n_distinct + 1, dim]; row 0 is the encoding of ``config.PAD_QUERY``
- ``texts.parquet``   ``query_text``; row i+1 of the table is texts[i]
- ``<split>.parquet`` the input rows without ``queries``; ``<split>_hist.npy`` int32 [rows, L] indices
  into the table, right-aligned (most recent query in the last slot), 0 = padding
- ``encoder.json``    encoder id/path and checksum, pooling, dim, max_length, splits, counts
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from searchrec.artifacts import folder
from searchrec.artifacts.examples import split_file
from searchrec.errors import SearchrecError

KIND = "encoded queries"
TABLE_FILE = "table.npy"
TEXTS_FILE = "texts.parquet"
INFO_FILE = "encoder.json"


def hist_file(split: str) -> str:
    return f"{split}_hist.npy"


@dataclass
class EncodedSplit:
    name: str
    rows: pa.Table  # the examples' rows without the queries column
    hist: np.ndarray  # int32 [rows, L]


def write(out_dir: Path, table: np.ndarray, texts: list[str], splits: list[EncodedSplit], info: dict) -> None:
    """Publish the encode output folder, all or nothing."""
    with folder.publishing(out_dir, KIND) as path:
        np.save(path / TABLE_FILE, table)
        pq.write_table(pa.table({"query_text": pa.array(texts, type=pa.string())}), path / TEXTS_FILE)
        for split in splits:
            pq.write_table(split.rows, path / split_file(split.name))
            np.save(path / hist_file(split.name), split.hist)
        folder.write_json(path / INFO_FILE, info)


def read_info(path: Path) -> dict:
    folder.require_complete(path, KIND)
    file = Path(path) / INFO_FILE
    return folder.read_json(file) if file.is_file() else {}


def read_table(path: Path, *, mmap: bool = False, dim: int | None = None) -> np.ndarray:
    """The encoding table float32 [queries + 1, dim] (memory-mapped when ``mmap``), shape checked."""
    folder.require_complete(path, KIND)
    folder.require_files(path, KIND, [TABLE_FILE])
    file = Path(path) / TABLE_FILE
    try:
        table = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise SearchrecError(f"cannot read {file}: {error}") from None
    if table.ndim != 2 or len(table) < 1 or table.shape[1] < 1:
        raise SearchrecError(f"{file} must be a matrix [queries + 1, dim], got {table.shape}")
    if dim is not None and table.shape[1] != dim:
        raise SearchrecError(f"{file} has dimension {table.shape[1]}, expected {dim}")
    return table if mmap else np.ascontiguousarray(table, dtype=np.float32)


def read_split(
    path: Path,
    split: str,
    *,
    columns: list[str] | None = None,
    table_rows: int,
    history_length: int | None = None,
    mmap: bool = False,
) -> tuple[pa.Table, np.ndarray]:
    """(rows, hist) of one split, checked against each other and against the table's row count."""
    folder.require_complete(path, KIND)
    folder.require_files(path, KIND, [split_file(split), hist_file(split)])
    rows_path, hist_path = Path(path) / split_file(split), Path(path) / hist_file(split)
    try:
        rows = pq.read_table(rows_path, columns=columns)
        hist = np.load(hist_path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, KeyError, pa.ArrowException) as error:
        raise SearchrecError(
            f"cannot read the {split} split of {path}: {str(error).splitlines()[0]}"
        ) from None
    if hist.ndim != 2 or not np.issubdtype(hist.dtype, np.integer):
        raise SearchrecError(
            f"{hist_path} must be an integer matrix [rows, history], got {hist.dtype} {hist.shape}"
        )
    if len(hist) != rows.num_rows:
        raise SearchrecError(f"{hist_path} has {len(hist)} rows but {rows_path.name} has {rows.num_rows}")
    if history_length is not None and hist.shape[1] != history_length:
        raise SearchrecError(f"{hist_path} has {hist.shape[1]} history slots, expected {history_length}")
    if not mmap and hist.size and (hist.min() < 0 or hist.max() >= table_rows):
        raise SearchrecError(f"{hist_path} holds indices outside the encoding table [0, {table_rows})")
    return rows, (hist if mmap else np.ascontiguousarray(hist, dtype=np.int32))
