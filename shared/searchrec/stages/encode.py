"""encode: each distinct query once through the sentence encoder; histories become table indices.

The reference implementation encoded every history slot (5 per example, pads included) and stored
5 x 312 floats per row. Queries repeat heavily, so this stage encodes each distinct text once and
writes an ``artifacts.encoded`` folder:

- ``table.npy``      float32 [n_distinct + 1, dim]; row 0 is the encoding of ``config.PAD_QUERY``
- ``texts.parquet``  ``query_text``; row i+1 of the table is texts[i]
- ``<split>.parquet`` the input rows without ``queries``; ``<split>_hist.npy`` int32 [rows, HISTORY_LENGTH]
  indices into the table, right-aligned (most recent query last), 0 = padding
- ``encoder.json``   encoder id/path, its checksum (``encoder.encoder_checksum``), pooling, dim, max_length

"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from searchrec import config
from searchrec.artifacts import encoded, examples
from searchrec.encoder import Encoder, EncoderSpec, EncodeTiming, encode_texts, load_encoder
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

QUERIES_COLUMN = examples.QUERIES_COLUMN
KNOWN_SPLITS = examples.SPLITS


@dataclass
class EncodeStats:
    encoder: str
    pooling: str
    dim: int
    device: str
    encoder_checksum: str = ""  # encoder.encoder_checksum of the folder loaded ("" for a hub id)
    rows: dict[str, int] = field(default_factory=dict)  # per split
    queries_total: int = 0  # non-padding history slots over all splits
    queries_distinct: int = 0  # texts encoded (the [PAD] row not counted)
    tokens: int = 0  # tokens run through the model, special tokens included
    encode_seconds: float = 0.0  # tokenising + model
    seconds: float = 0.0  # the whole stage: read, load, encode, write

    @property
    def queries_per_s(self) -> float:
        """Distinct texts encoded per second of encoding ([PAD] row included in the work)."""
        return (self.queries_distinct + 1) / self.encode_seconds if self.encode_seconds > 0 else 0.0

    @property
    def repeat_factor(self) -> float:
        """History slots per distinct text: the work the naive per-slot encoding would have done more."""
        return self.queries_total / self.queries_distinct if self.queries_distinct else 0.0

    def as_metadata(self) -> dict[str, str | int | float]:
        """Flat scalars for the KFP artifact's metadata."""
        meta: dict[str, str | int | float] = {
            "encoder": self.encoder,
            "encoder_checksum": self.encoder_checksum,
            "pooling": self.pooling,
            "dim": self.dim,
            "device": self.device,
            "queries_total": self.queries_total,
            "queries_distinct": self.queries_distinct,
            "repeat_factor": round(self.repeat_factor, 3),
            "tokens": self.tokens,
            "encode_seconds": round(self.encode_seconds, 3),
            "seconds": round(self.seconds, 3),
            "queries_per_s": round(self.queries_per_s, 1),
        }
        meta.update({f"rows_{split}": n for split, n in self.rows.items()})
        return meta


@dataclass
class _Split:
    name: str
    rows: pa.Table  # input without the queries column
    values: pa.Array  # kept query texts, flattened, in row order (oldest first within a row)
    parents: np.ndarray  # int64, row of each value
    slots: np.ndarray  # int64, right-aligned slot of each value in [0, HISTORY_LENGTH)


def _read_split(examples_dir: Path, name: str, history_length: int) -> _Split:
    table = examples.read_split(examples_dir, name)
    path = examples_dir / examples.split_file(name)
    if QUERIES_COLUMN not in table.column_names:
        raise SearchrecError(
            f"encode: {path} has no '{QUERIES_COLUMN}' column (has {', '.join(table.column_names)})"
        )
    column = table.column(QUERIES_COLUMN)
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not (
        pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
    ):
        raise SearchrecError(f"encode: {path}: column '{QUERIES_COLUMN}' must be list<string>, got {kind}")
    queries = column.cast(pa.large_list(pa.large_string())).combine_chunks()
    if isinstance(queries, pa.ChunkedArray):  # older pyarrow returns a ChunkedArray for no chunks
        queries = pa.array([], type=pa.large_list(pa.large_string()))

    values = pc.list_flatten(queries)
    parents = pc.list_parent_indices(queries).to_numpy(zero_copy_only=False).astype(np.int64)
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    if not valid.all():
        log.warning("encode: %s: %d null query texts dropped", name, int((~valid).sum()))
        values = values.filter(pa.array(valid))
        parents = parents[valid]

    n_rows = table.num_rows
    counts = np.bincount(parents, minlength=n_rows)
    starts = np.cumsum(counts) - counts
    position = np.arange(len(parents), dtype=np.int64) - starts[parents]
    slots = history_length - counts[parents] + position  # right-aligned: the last query in the last slot
    keep = slots >= 0
    if not keep.all():
        log.warning(
            "encode: %s: %d rows had more than %d queries; kept the most recent %d",
            name,
            int((counts > history_length).sum()),
            history_length,
            history_length,
        )
        values = values.filter(pa.array(keep))
        parents, slots = parents[keep], slots[keep]
    rows = table.drop_columns([QUERIES_COLUMN])
    return _Split(name=name, rows=rows, values=values, parents=parents, slots=slots)


def _discover_splits(examples_dir: Path, splits: tuple[str, ...] | None) -> list[str]:
    present = examples.splits_present(examples_dir)
    if splits is None:
        if not present:
            raise SearchrecError(
                f"encode: {examples_dir} holds none of {', '.join(examples.split_file(s) for s in KNOWN_SPLITS)}"
            )
        return present
    if not splits:
        raise SearchrecError("encode: no splits given")
    missing = [s for s in splits if s not in present]
    if missing:
        raise SearchrecError(
            f"encode: {examples_dir} has no {', '.join(examples.split_file(s) for s in missing)}"
        )
    return list(dict.fromkeys(splits))


def _distinct_codes(parts: list[_Split]) -> tuple[np.ndarray, list[str], int]:
    """(table row of every kept history value, 0 = padding; the distinct texts; the values' count)."""
    all_values = pa.concat_arrays([p.values for p in parts])
    encoded_values = pc.dictionary_encode(all_values)
    codes = encoded_values.indices.to_numpy(zero_copy_only=False).astype(np.int64) + 1  # 0 = padding
    return codes, encoded_values.dictionary.to_pylist(), len(all_values)


def _encoded_splits(
    parts: list[_Split], codes: np.ndarray, history_length: int
) -> list[encoded.EncodedSplit]:
    out, offset = [], 0
    for part in parts:
        n = len(part.values)
        hist = np.zeros((part.rows.num_rows, history_length), dtype=np.int32)
        hist[part.parents, part.slots] = codes[offset : offset + n]
        offset += n
        out.append(encoded.EncodedSplit(part.name, part.rows, hist))
    return out


def _encode_table(
    loaded: Encoder, distinct: list[str], batch_size: int, progress: bool
) -> tuple[np.ndarray, EncodeTiming]:
    timing = EncodeTiming()
    table = encode_texts(loaded, [config.PAD_QUERY, *distinct], batch_size, progress=progress, timing=timing)
    log.info(
        "encode: %d texts (%d tokens, %d batches of <= %d) in %.2f s (tokenise %.2f s, model %.2f s): "
        "%.0f queries/s on %s",
        timing.texts,
        timing.tokens,
        timing.batches,
        batch_size,
        timing.seconds,
        timing.tokenize_s,
        timing.model_s,
        timing.texts / timing.seconds if timing.seconds else 0.0,
        loaded.device,
    )
    return table, timing


def encode_histories(
    examples_dir: Path,
    encoder: EncoderSpec | Encoder,
    out_dir: Path,
    *,
    batch_size: int = config.ENCODE_BATCH_SIZE,
    splits: tuple[str, ...] | None = None,
    device: str | None = None,
    progress: bool = True,
) -> EncodeStats:
    """Encode each distinct query once; write the embedding table and per-example indices.

    ``examples_dir`` holds the clean stage's split files (train/holdout.parquet, or histories.parquet);
    ``splits`` None takes whichever of them are present. ``encoder`` is a spec (loaded here, on
    ``device``, CUDA when available) or an already loaded encoder. The output is an
    ``artifacts.encoded`` folder, complete or not at all.
    """
    started = time.perf_counter()
    examples_dir, out_dir = Path(examples_dir), Path(out_dir)
    history_length = config.HISTORY_LENGTH
    names = _discover_splits(examples_dir, splits)
    parts = [_read_split(examples_dir, name, history_length) for name in names]
    codes, distinct, queries_total = _distinct_codes(parts)
    log.info(
        "encode: read %s from %s in %.2f s: %d queries, %d distinct (%.1f slots per text)",
        ", ".join(f"{p.name} {p.rows.num_rows} rows" for p in parts),
        examples_dir,
        time.perf_counter() - started,
        queries_total,
        len(distinct),
        queries_total / len(distinct) if distinct else 0.0,
    )
    loaded = encoder if isinstance(encoder, Encoder) else load_encoder(encoder, device=device)
    table, timing = _encode_table(loaded, distinct, batch_size, progress)
    info = {
        **loaded.info(),
        "device": str(loaded.device),
        "pad_query": config.PAD_QUERY,
        "history_length": history_length,
        "splits": names,
        "queries_total": queries_total,
        "queries_distinct": len(distinct),
    }
    encoded.write(out_dir, table, distinct, _encoded_splits(parts, codes, history_length), info)
    stats = EncodeStats(
        encoder=loaded.spec.name_or_path,
        encoder_checksum=loaded.checksum,
        pooling=loaded.pooling,
        dim=loaded.dim,
        device=str(loaded.device),
        rows={p.name: p.rows.num_rows for p in parts},
        queries_total=queries_total,
        queries_distinct=len(distinct),
        tokens=timing.tokens,
        encode_seconds=timing.seconds,
        seconds=time.perf_counter() - started,
    )
    log.info(
        "encode: wrote %s (table %d x %d float32, %.1f MB) in %.1f s total",
        out_dir,
        table.shape[0],
        table.shape[1],
        table.nbytes / 1e6,
        stats.seconds,
    )
    return stats
