"""Examples (training) and histories (inference): what clean writes and encode / train read.

Training folder: ``train.parquet`` and ``holdout.parquet`` (:data:`EXAMPLES`: one row per purchase,
its history as normalised query texts, oldest first, at most ``config.HISTORY_LENGTH``),
``items.parquet`` (:data:`TRAIN_ITEMS`, the training items with their counts) and ``funnel.json``.
Inference folder: ``histories.parquet`` (:data:`HISTORIES`, one row per user), optionally
``bought.parquet`` (:data:`BOUGHT`), and ``funnel.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from searchrec.artifacts import folder
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

KIND = "examples"
EXAMPLES = pa.schema(
    [
        ("user_id", pa.int64()),
        ("order_ts", pa.timestamp("us")),
        ("nm_id", pa.int64()),
        ("queries", pa.list_(pa.string())),
    ]
)
HISTORIES = pa.schema([("user_id", pa.int64()), ("queries", pa.list_(pa.string()))])
TRAIN_ITEMS = pa.schema([("nm_id", pa.int64()), ("count", pa.int64())])
BOUGHT = pa.schema([("user_id", pa.int64()), ("nm_id", pa.int64())])
QUERIES_COLUMN = "queries"
TRAIN_SPLITS = ("train", "holdout")
INFER_SPLIT = "histories"
SPLITS = (*TRAIN_SPLITS, INFER_SPLIT)
ITEMS_FILE = "items.parquet"
BOUGHT_FILE = "bought.parquet"
FUNNEL_FILE = "funnel.json"


def split_file(split: str) -> str:
    return f"{split}.parquet"


def write(out_dir: Path, tables: dict[str, pa.Table], funnel: list[dict]) -> None:
    """Publish a clean output folder: each table under its file name, the funnel, all or nothing."""
    with folder.publishing(out_dir, KIND) as path:
        for name, table in tables.items():
            pq.write_table(table, path / name)
            log.info("wrote %s: %d rows", path / name, table.num_rows)
        folder.write_json(path / FUNNEL_FILE, funnel)


def splits_present(path: Path) -> list[str]:
    folder.require_complete(path, KIND)
    return [s for s in SPLITS if (Path(path) / split_file(s)).is_file()]


def read_split(path: Path, split: str) -> pa.Table:
    """One split's rows (any columns); one clear line if the file is missing or unreadable."""
    folder.require_complete(path, KIND)
    file = Path(path) / split_file(split)
    if not file.is_file():
        raise SearchrecError(f"the {KIND} artifact {path} has no {split_file(split)}")
    try:
        return pq.read_table(file)
    except (OSError, pa.ArrowException) as error:
        raise SearchrecError(f"cannot read {file}: {str(error).splitlines()[0]}") from None


def read_items(path: Path) -> np.ndarray:
    """The training items (nm_id int64, most frequent first)."""
    folder.require_complete(path, KIND)
    folder.require_files(path, KIND, [ITEMS_FILE])
    file = Path(path) / ITEMS_FILE
    try:
        items = pq.read_table(file, columns=["nm_id"]).column("nm_id").to_numpy()
    except (OSError, KeyError, pa.ArrowException) as error:
        raise SearchrecError(f"cannot read {file}: {str(error).splitlines()[0]}") from None
    if len(items) == 0:
        raise SearchrecError(f"{file} lists no training items")
    return items.astype(np.int64, copy=False)


def read_funnel(path: Path) -> list[dict]:
    folder.require_complete(path, KIND)
    import json

    return json.loads((Path(path) / FUNNEL_FILE).read_text(encoding="utf-8"))
