"""Extract stage: warehouse rows for a date window to Parquet parts, and the nearest embeddings snapshot.

- ``extract_training_events``: purchases in the window with their preceding queries (sql/train_events.sql)
- ``extract_inference_events``: each user's last queries in the window (sql/infer_events.sql)
- ``extract_orders``: purchases in the window (sql/orders.sql)
- ``fetch_snapshot``: the ``dt=YYYY-MM-DD`` embeddings partition nearest a date, copied and checked

Every output folder is an artifact of ``searchrec.artifacts`` (events, snapshot): complete or refused.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from searchrec import config, storage, warehouse
from searchrec.artifacts import events, folder, snapshot
from searchrec.artifacts.snapshot import SnapshotInfo
from searchrec.dates import check_window, parse_date
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

_PARTITION = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


# --- parameters -----------------------------------------------------------------------------------


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or int(value) != value
        or value < minimum
    ):
        raise SearchrecError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# --- stats ----------------------------------------------------------------------------------------


@dataclass
class ExtractStats:
    """What an extract wrote; ``as_metadata()`` goes into the KFP artifact's metadata."""

    query: str
    warehouse: str  # password-free display form
    start_date: str
    end_date: str
    rows: int
    users: int
    bytes: int
    seconds: float
    files: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "warehouse": self.warehouse,
            "window": f"{self.start_date}..{self.end_date}",
            "start_date": self.start_date,
            "end_date": self.end_date,
            "rows": self.rows,
            "users": self.users,
            "bytes": self.bytes,
            "files": len(self.files),
            "seconds": round(self.seconds, 3),
            **self.params,
        }


def _stats(
    query: str, uri: str, start: date, end: date, result: warehouse.StreamResult, **params: Any
) -> ExtractStats:
    return ExtractStats(
        query=query,
        warehouse=warehouse.display_uri(uri),
        start_date=start.isoformat(),
        end_date=end.isoformat(),
        rows=result.rows,
        users=result.distinct or 0,
        bytes=result.bytes,
        seconds=result.seconds,
        files=result.files,
        params=params,
    )


# --- events ---------------------------------------------------------------------------------------


def extract_training_events(
    warehouse_uri: str,
    start_date: str | date,
    end_date: str | date,
    out_dir: Path,
    *,
    lookback_days: int = config.LOOKBACK_DAYS,
    history_length: int = config.SQL_HISTORY_LENGTH,
    chunk_rows: int = config.EXTRACT_CHUNK_ROWS,
) -> ExtractStats:
    """Purchases with ``order_ts`` in [start_date, end_date] and their preceding queries -> ``out_dir``.

    Writes ``part-NNNNN.parquet`` files with schema ``events.TRAIN_EVENTS`` (long format; a purchase
    without queries in the look-back has one row with NULL query_ts / query_text).
    """
    start, end = check_window(start_date, end_date)
    warehouse.check_uri(warehouse_uri)
    lookback_days = _positive_int(lookback_days, "lookback_days")
    history_length = _positive_int(history_length, "history_length")
    chunk_rows = _positive_int(chunk_rows, "chunk_rows")
    name = warehouse.display_uri(warehouse_uri)
    result = warehouse.stream_to_parquet(
        warehouse_uri,
        "train_events",
        {
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "lookback_days": lookback_days,
            "history_length": history_length,
        },
        events.TRAIN_EVENTS,
        Path(out_dir),
        chunk_rows=chunk_rows,
        count_distinct="user_id",
        on_empty=lambda: SearchrecError(f"no purchases between {start} and {end} in warehouse {name}"),
    )
    return _stats(
        "train_events",
        warehouse_uri,
        start,
        end,
        result,
        lookback_days=lookback_days,
        history_length=history_length,
    )


def read_user_list(users_path: Path) -> pa.Array:
    """Distinct ``user_id`` values (int64) of a parquet or CSV file; SearchrecError if unusable."""
    users_path = Path(users_path)
    if not users_path.is_file():
        raise SearchrecError(f"user list {users_path} does not exist")
    try:
        if users_path.suffix.lower() in (".csv", ".gz", ".txt") or users_path.name.lower().endswith(
            ".csv.gz"
        ):
            table = pcsv.read_csv(users_path)
        else:
            table = pq.read_table(users_path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SearchrecError(f"user list {users_path} is not a readable parquet or CSV file: {exc}") from exc
    if "user_id" not in table.column_names:
        raise SearchrecError(
            f"user list {users_path} has no user_id column (columns: {', '.join(table.column_names) or 'none'})"
        )
    column = table.column("user_id")
    if not (pa.types.is_integer(column.type) or pa.types.is_null(column.type)):
        raise SearchrecError(f"user list {users_path}: user_id must be integers, found {column.type}")
    ids = pc.unique(column.combine_chunks().cast(pa.int64())).drop_null()
    if len(ids) == 0:
        raise SearchrecError(f"user list {users_path} holds no user ids")
    log.info("user list %s: %d rows, %d distinct user ids", users_path, table.num_rows, len(ids))
    return ids


def extract_inference_events(
    warehouse_uri: str,
    start_date: str | date,
    end_date: str | date,
    out_dir: Path,
    *,
    users_path: Path | None = None,
    history_length: int = config.SQL_HISTORY_LENGTH,
    chunk_rows: int = config.EXTRACT_CHUNK_ROWS,
) -> ExtractStats:
    """The last ``history_length`` queries of each user in [start_date, end_date] -> ``out_dir``.

    With ``users_path`` (parquet or CSV with a ``user_id`` column) only those users; otherwise every
    user with a query in the window. Schema ``events.INFER_EVENTS``.
    """
    start, end = check_window(start_date, end_date)
    warehouse.check_uri(warehouse_uri)
    history_length = _positive_int(history_length, "history_length")
    chunk_rows = _positive_int(chunk_rows, "chunk_rows")
    user_ids = read_user_list(Path(users_path)) if users_path is not None else None
    name = warehouse.display_uri(warehouse_uri)
    who = f" for the {len(user_ids)} listed users" if user_ids is not None else ""
    result = warehouse.stream_to_parquet(
        warehouse_uri,
        "infer_events",
        {
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "history_length": history_length,
            "all_users": user_ids is None,
        },
        events.INFER_EVENTS,
        Path(out_dir),
        chunk_rows=chunk_rows,
        user_ids=user_ids,
        count_distinct="user_id",
        on_empty=lambda: SearchrecError(f"no queries between {start} and {end}{who} in warehouse {name}"),
    )
    extra: dict[str, Any] = {"history_length": history_length}
    if user_ids is not None:
        extra["listed_users"] = len(user_ids)
        missing = len(user_ids) - (result.distinct or 0)
        if missing:
            log.warning(
                "%d of %d listed users have no query between %s and %s", missing, len(user_ids), start, end
            )
    return _stats("infer_events", warehouse_uri, start, end, result, **extra)


def extract_orders(
    warehouse_uri: str,
    start_date: str | date,
    end_date: str | date,
    out_dir: Path,
    *,
    allow_empty: bool = True,
    chunk_rows: int = config.EXTRACT_CHUNK_ROWS,
) -> ExtractStats:
    """Purchases with ``order_ts`` in [start_date, end_date] -> ``out_dir`` (schema ``events.ORDERS``).

    These only serve to exclude already-bought items, so by default an empty window writes one empty
    part file (with a warning); ``allow_empty=False`` makes it an error.
    """
    start, end = check_window(start_date, end_date)
    warehouse.check_uri(warehouse_uri)
    chunk_rows = _positive_int(chunk_rows, "chunk_rows")
    name = warehouse.display_uri(warehouse_uri)
    result = warehouse.stream_to_parquet(
        warehouse_uri,
        "orders",
        {"start_date": start.isoformat(), "end_date": end.isoformat()},
        events.ORDERS,
        Path(out_dir),
        chunk_rows=chunk_rows,
        count_distinct="user_id",
        on_empty=None
        if allow_empty
        else (lambda: SearchrecError(f"no purchases between {start} and {end} in warehouse {name}")),
    )
    if result.rows == 0:
        log.warning(
            "no purchases between %s and %s in warehouse %s; wrote an empty orders file", start, end, name
        )
    return _stats("orders", warehouse_uri, start, end, result)


# --- embeddings snapshot --------------------------------------------------------------------------


def list_snapshots(embeddings_uri: str | Path) -> dict[date, str]:
    """``{snapshot date: partition name}`` of the ``dt=YYYY-MM-DD`` folders under ``embeddings_uri``."""
    found: dict[date, str] = {}
    for child in storage.list_dir(embeddings_uri):
        m = _PARTITION.match(child)
        if not m:
            continue
        try:
            found[date.fromisoformat(m.group(1))] = child
        except ValueError:
            log.warning("ignoring %s under %s: not a calendar date", child, embeddings_uri)
    return found


def pinned_snapshot_date(embeddings_uri: str) -> date | None:
    """The date of ``.../dt=YYYY-MM-DD`` when the URI names one partition (a pinned snapshot), else None.

    A pinned snapshot is taken as it is, however far from the wanted date: the user chose it."""
    name = str(embeddings_uri).rstrip("/").rsplit("/", 1)[-1]
    m = _PARTITION.match(name)
    if not m:
        return None
    try:
        return date.fromisoformat(m.group(1))
    except ValueError:
        raise SearchrecError(f"embeddings snapshot {embeddings_uri}: {name} is not a calendar date") from None


def pick_snapshot(snapshots: dict[date, str], wanted: date, max_days: int, where: str) -> date:
    """The snapshot date nearest ``wanted`` (the earlier one on a tie), within ``max_days``."""
    if not snapshots:
        raise SearchrecError(f"no dt=YYYY-MM-DD embeddings snapshots under {where}")
    nearest = min(snapshots, key=lambda d: (abs((d - wanted).days), d))
    days = abs((nearest - wanted).days)
    if days > max_days:
        raise SearchrecError(
            f"no embeddings snapshot within {max_days} days of {wanted} under {where}; "
            f"the nearest is dt={nearest} ({days} days away)"
        )
    return nearest


def locate_snapshot(
    embeddings_uri: str, wanted: date, max_days: int, where: str = ""
) -> tuple[date, str, dict[date, str] | None]:
    """The partition to read for ``wanted``: a pinned ``.../dt=YYYY-MM-DD`` URI as it is, else the
    snapshot nearest ``wanted`` under ``embeddings_uri`` within ``max_days`` (``where`` names it in the
    error). Returns its date, its URI and the snapshots listed (None when pinned)."""
    pinned = pinned_snapshot_date(embeddings_uri)
    if pinned is not None:
        return pinned, embeddings_uri.rstrip("/"), None
    snapshots = list_snapshots(embeddings_uri)
    picked = pick_snapshot(snapshots, wanted, max_days, where or embeddings_uri)
    return picked, storage.join_uri(embeddings_uri, snapshots[picked]), snapshots


def fetch_snapshot(
    embeddings_uri: str | Path,
    date: str | date,  # the pipeline parameter's name (shadows datetime.date in here)
    out_dir: Path,
    *,
    max_days: int = config.SNAPSHOT_MAX_DAYS,
) -> SnapshotInfo:
    """Copy the embeddings snapshot nearest ``date`` into ``out_dir`` and check it.

    Lists ``dt=YYYY-MM-DD`` partitions under a local folder, ``s3://`` or ``gs://`` URI, picks the
    nearest one (refusing if none is within ``max_days``), copies its ``*.parquet`` files, checks
    every file has the contract's columns and one embedding length across all files,
    and publishes ``out_dir`` as a snapshot artifact (``searchrec.artifacts.snapshot``).
    """
    wanted = parse_date(date, "date")
    max_days = _positive_int(max_days, "max_days", minimum=0)
    uri = str(embeddings_uri)
    t0 = time.perf_counter()
    picked, partition, snapshots = locate_snapshot(uri, wanted, max_days)
    pinned = snapshots is None
    if pinned:
        log.info(
            "embeddings: pinned snapshot %s (%+d days from %s)", partition, (picked - wanted).days, wanted
        )
    else:
        log.info(
            "embeddings: %d snapshots under %s; picked dt=%s for %s (%+d days)",
            len(snapshots),
            uri,
            picked,
            wanted,
            (picked - wanted).days,
        )
    with folder.publishing(Path(out_dir), snapshot.KIND) as out:
        info = _copy_partition(partition, out)
        info.snapshot_date, info.requested_date, info.pinned = (
            picked.isoformat(),
            wanted.isoformat(),
            pinned,
        )
        folder.write_json(out / snapshot.INFO_FILE, info.to_json())
    info.seconds = time.perf_counter() - t0
    log.info(
        "embeddings snapshot dt=%s: %d rows, dim %d, %d files (%.1f MB) to %s in %.1fs",
        picked,
        info.rows,
        info.dim,
        len(info.files),
        info.bytes / 1e6,
        out_dir,
        info.seconds,
    )
    return info


def _copy_partition(partition: str, out: Path) -> SnapshotInfo:
    """Copy a partition's parquet files flat into ``out`` and check each against the contract."""
    storage.download_into(partition, out)
    parts = sorted(p for p in out.rglob("*.parquet") if p.is_file())
    if not parts:
        raise SearchrecError(f"embeddings snapshot {partition} holds no .parquet files")
    files, dim_of, total_rows = [], {}, 0
    for src in parts:
        rel = src.relative_to(out).as_posix()
        shown = storage.join_uri(partition, rel)
        rows, dim = snapshot.check_source_file(src, shown)
        if rows:
            dim_of[shown] = dim
        total_rows += rows
        name = rel.replace("/", "__")
        if name != rel:
            os.replace(src, out / name)  # a file rename, never a folder's
        files.append(name)
    for leftover in sorted(out.rglob("*"), reverse=True):  # non-parquet files and emptied sub-folders
        rel = leftover.relative_to(out).as_posix()
        if rel not in files and leftover.name not in folder.MARKERS:
            leftover.unlink() if leftover.is_file() else leftover.rmdir()
    dims = sorted(set(dim_of.values()))
    if len(dims) > 1:
        first = next(iter(dim_of))
        other = next(f for f, d in dim_of.items() if d != dim_of[first])
        raise SearchrecError(
            f"embeddings snapshot {partition} mixes embedding lengths: {other} has {dim_of[other]}, "
            f"{first} has {dim_of[first]}"
        )
    if total_rows == 0:
        raise SearchrecError(f"embeddings snapshot {partition} has no rows")
    ids = [pq.read_table(out / f, columns=["nm_id"]).column("nm_id").to_numpy() for f in files]
    snapshot.require_unique(np.concatenate(ids), f"embeddings snapshot {partition}")
    stats = snapshot.profile([(out / f, storage.join_uri(partition, f)) for f in files], dims[0])
    stats["distinct_ids"] = float(total_rows)
    nbytes = sum((out / f).stat().st_size for f in files)
    return SnapshotInfo(partition, "", "", dims[0], total_rows, files, bytes=nbytes, profile=stats)
