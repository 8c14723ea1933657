"""Events and orders: what extract streams out of the warehouse, long format, in ``part-NNNNN.parquet`` files.

Training events: one row per (purchase, preceding query), as the training SQL returns it; a purchase
with no query in the look-back has one row with NULL ``query_ts`` / ``query_text``. Inference events:
the last queries of each user in the window. Orders: purchases in the inference window.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from searchrec.artifacts import folder
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

KIND = "events"
TRAIN_EVENTS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("order_ts", pa.timestamp("us")),
        ("nm_id", pa.int64()),
        ("query_ts", pa.timestamp("us")),
        ("query_text", pa.string()),
    ]
)
INFER_EVENTS = pa.schema(
    [("user_id", pa.int64()), ("query_ts", pa.timestamp("us")), ("query_text", pa.string())]
)
ORDERS = pa.schema([("user_id", pa.int64()), ("order_ts", pa.timestamp("us")), ("nm_id", pa.int64())])
PART_GLOB = "part-*.parquet"
NULLABLE = ("query_ts", "query_text")  # every other column is NOT NULL in the source contract


def part_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


def part_files(path: Path, what: str) -> list[Path]:
    """The part files of a complete events folder, in order; one clear line if there are none."""
    folder.require_complete(path, what)
    files = sorted(p for p in Path(path).glob(PART_GLOB) if p.is_file())
    if not files:
        raise SearchrecError(f"no {what} files matching {PART_GLOB} in {path}")
    return files


def _read_part(path: Path, schema: pa.Schema, what: str) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise SearchrecError(f"cannot read {what} file {path}: {exc}") from exc
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise SearchrecError(f"{what} file {path} lacks column(s) {', '.join(missing)}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowException, ValueError) as exc:
        raise SearchrecError(f"{what} file {path} does not match {schema.names}: {exc}") from exc


def read(path: Path, schema: pa.Schema, what: str) -> pa.Table:
    """All parts of an events folder as ``schema`` (extra columns ignored), NOT NULL columns checked."""
    started = time.perf_counter()
    files = part_files(Path(path), what)
    table = pa.concat_tables([_read_part(p, schema, what) for p in files])
    for name in schema.names:
        nulls = 0 if name in NULLABLE else table[name].null_count
        if nulls:
            raise SearchrecError(
                f"{what} in {path} have {nulls} NULL {name} value(s); the contract says NOT NULL"
            )
    log.info(
        "read %s: %d rows from %d file(s) in %s (%.2fs)",
        what,
        table.num_rows,
        len(files),
        path,
        time.perf_counter() - started,
    )
    return table


def write(out_dir: Path, parts: list[pa.Table]) -> list[Path]:
    """Publish tables as an events folder, one part file each (extract streams through its own writer)."""
    with folder.publishing(out_dir, KIND) as path:
        written = [path / part_name(i) for i in range(len(parts))]
        for table, file in zip(parts, written, strict=True):
            pq.write_table(table, file, compression="zstd")
    return written


def iter_batches(path: Path, columns: list[str], what: str, batch_size: int = 1 << 20):
    """Record batches of ``columns`` over every part of a complete events folder (bounded memory)."""
    for file in part_files(Path(path), what):
        try:
            pf = pq.ParquetFile(file)
        except Exception as error:
            raise SearchrecError(f"cannot read {what} file {file}: {error}") from None
        missing = [c for c in columns if c not in pf.schema_arrow.names]
        if missing:
            raise SearchrecError(f"{what} file {file} lacks column(s) {', '.join(missing)}")
        yield from pf.iter_batches(batch_size=batch_size, columns=columns)
