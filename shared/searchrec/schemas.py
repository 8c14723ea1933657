"""Artifact layouts shared by the stages: one source of truth for every column and file name.

Every KFP artifact of this project is a *folder* (the artifact's `.path`), holding the files below.
Stages only talk to each other through these layouts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

# --- extract -> clean ---------------------------------------------------------------------------
# Training events: one row per (purchase, preceding query), long format, as the training SQL returns
# it. A purchase with no query in the look-back has one row with NULL query_ts / query_text.
TRAIN_EVENTS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("order_ts", pa.timestamp("us")),
        ("nm_id", pa.int64()),
        ("query_ts", pa.timestamp("us")),
        ("query_text", pa.string()),
    ]
)
# Inference events: the last queries of each user in the window, long format.
INFER_EVENTS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("query_ts", pa.timestamp("us")),
        ("query_text", pa.string()),
    ]
)
# Purchases in the inference window (to exclude already-bought items, optional).
ORDERS = pa.schema([("user_id", pa.int64()), ("order_ts", pa.timestamp("us")), ("nm_id", pa.int64())])
EVENTS_GLOB = "part-*.parquet"  # events folders hold part-00000.parquet, part-00001.parquet, ...

# Embeddings snapshot (source contract, DESIGN.md section 2) and the extract copy of it.
EMBEDDINGS = pa.schema([("nm_id", pa.int64()), ("embedding", pa.list_(pa.float32()))])
SNAPSHOT_INFO = "snapshot.json"  # {"uri", "snapshot_date", "dim", "rows", "files"}

# --- clean -> encode ----------------------------------------------------------------------------
# Examples: one row per purchase, its history as normalised query texts, oldest first, at most
# HISTORY_LENGTH. Files: train.parquet, holdout.parquet, items.parquet (training items), funnel.json.
EXAMPLES = pa.schema(
    [
        ("user_id", pa.int64()),
        ("order_ts", pa.timestamp("us")),
        ("nm_id", pa.int64()),
        ("queries", pa.list_(pa.string())),
    ]
)
TRAIN_ITEMS = pa.schema([("nm_id", pa.int64()), ("count", pa.int64())])
TRAIN_ITEMS_FILE = "items.parquet"
# Inference histories: one row per user, file histories.parquet (+ bought.parquet: user_id, nm_id).
HISTORIES = pa.schema([("user_id", pa.int64()), ("queries", pa.list_(pa.string()))])
# Items each served user bought in the window (to exclude them from recommendations, optional).
BOUGHT = pa.schema([("user_id", pa.int64()), ("nm_id", pa.int64())])
BOUGHT_FILE = "bought.parquet"
TRAIN_SPLITS = ("train", "holdout")
INFER_SPLIT = "histories"
FUNNEL_FILE = "funnel.json"

# --- encode -> train / infer --------------------------------------------------------------------
# table.npy: float32 [n_distinct + 1, encoder_dim]; row 0 is the encoding of PAD_QUERY.
# texts.parquet: column query_text, row i+1 of table.npy is texts[i].
# For each split S of the input: S.parquet (the input rows without `queries`) and
# S_hist.npy: int32 [rows, HISTORY_LENGTH], indices into table.npy, right-aligned (most recent query
# in the last slot), 0 = padding. encoder.json: {"encoder", "pooling", "dim", "max_length"}.
TABLE_FILE = "table.npy"
TEXTS_FILE = "texts.parquet"
ENCODER_INFO = "encoder.json"


def hist_file(split: str) -> str:
    return f"{split}_hist.npy"


def rows_file(split: str) -> str:
    return f"{split}.parquet"


# --- train -> index / infer ---------------------------------------------------------------------
# Model folder: config.json, query_tower.safetensors, item_tower.safetensors, checkpoints/.
MODEL_CONFIG = "config.json"
QUERY_TOWER_FILE = "query_tower.safetensors"
ITEM_TOWER_FILE = "item_tower.safetensors"

# --- index -> infer -----------------------------------------------------------------------------
# Index folder: items.faiss, nm_ids.npy (int64, row i of the index), index.json.
INDEX_FILE = "items.faiss"
INDEX_IDS_FILE = "nm_ids.npy"
INDEX_INFO = "index.json"

# --- infer --------------------------------------------------------------------------------------
RECOMMENDATIONS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("nm_ids", pa.list_(pa.int64())),
        ("scores", pa.list_(pa.float32())),
    ]
)
RECOMMENDATIONS_FILE = "recommendations.parquet"
# Per-shard and merged serving counts: {"users_served", "users_skipped_*", "coverage", "mean_score", ...}
INFER_STATS_FILE = "stats.json"


def read_json(path: Path) -> dict:
    """One of the JSON files above, as a dict; SearchrecError naming the file if it is unreadable."""
    from searchrec.errors import SearchrecError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SearchrecError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise SearchrecError(f"{path} is not a JSON object")
    return data
