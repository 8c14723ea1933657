"""Output roots: where recommend runs leave their recommendations for readers outside the pipeline.

```
<output_uri>/                      a local folder, s3:// or gs://
  _SEARCHREC_OUTPUTS               written into an empty or new root: the root is searchrec's
  2026-10-14-3f9c2a1b/             <recommend end date>-<short task id>: one run's recommendations
    recommendations.parquet  stats.json  _SEARCHREC_COMPLETE.json (written after the rest)
  LATEST.json                      {"name", "uri", "end_date", "users", "rows", "source", "written_at"}
```

A run writes only its own sub-folder and then the pointer, in one atomic write (``os.replace``
locally, a single PUT on a bucket), so a reader sees the previous complete output or the new one.
Two runs publishing at once both leave complete sub-folders; the pointer names the one that
finished last (last complete wins, whatever its window). A retried task reuses its sub-folder name
and clears only its own earlier attempt. A root that holds anything without the marker is refused
(foreign files are never touched), and so is a local root that contains the runs folder, the working
directory or a git repository. A symlinked root is followed, never replaced. Old sub-folders stay.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from searchrec import storage
from searchrec.artifacts import folder
from searchrec.errors import SearchrecError

MARKER = folder.OUTPUTS_MARKER
LATEST = "LATEST.json"


def output_name(end_date: str, task_uri: str) -> str:
    """``<end_date>-<8 hex digits of the task's artifact URI>``: the same for every attempt of one task,
    different for every run. Without a date (an artifact that carries none): today's (UTC)."""
    day = end_date or dt.datetime.now(dt.timezone.utc).date().isoformat()
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        raise SearchrecError(f"output end date must be YYYY-MM-DD, got {day!r}") from None
    return f"{day}-{hashlib.sha256(task_uri.encode()).hexdigest()[:8]}"


def _ours(name: str) -> bool:
    """The marker, the pointer, and their temporary files while another run writes them."""
    return name in (MARKER, LATEST) or name.startswith((f".{MARKER}.tmp-", f".{LATEST}.tmp-"))


def _check_local(root: str, protected: Mapping[str, str]) -> list[str]:
    path = storage.local_path(root)
    if path.is_symlink() and not path.exists():
        raise SearchrecError(f"output root {path} is a symlink to a folder that does not exist")
    if path.exists() and not path.is_dir():
        raise SearchrecError(f"output root {path} exists and is not a folder")
    real = path.resolve()
    for inner, what in {str(Path.cwd()): "the working directory", **protected}.items():
        if storage.is_remote(inner):
            continue
        inner_path = storage.local_path(inner).resolve()
        if inner_path == real or inner_path.is_relative_to(real):
            raise SearchrecError(
                f"refusing output root {path}: it contains {what} {inner_path}; name a folder of its own"
            )
    if (path / ".git").exists():
        raise SearchrecError(f"refusing output root {path}: it is a git repository; name a folder of its own")
    return storage.list_dir(path) if path.is_dir() else []


def check_root(root: str, protected: Mapping[str, str] | None = None) -> None:
    """One line when ``root`` may not take outputs: not a folder, it holds files without the marker, or
    it contains a ``protected`` path (path -> what it is: the runs folder, the task's own artifact), the
    working directory or a git repository. Nothing is written."""
    protected = dict(protected or {})
    if not root:
        raise SearchrecError("no output root given")
    if "://" in root and not root.startswith(("s3://", "gs://", "file://")):
        raise SearchrecError(
            f"unsupported output root {root!r}; expected s3://, gs://, file:// or a local path"
        )
    if storage.is_remote(root):
        storage.split_uri(root)
        base = root.rstrip("/") + "/"
        for inner, what in protected.items():
            if (inner.rstrip("/") + "/").startswith(base):
                raise SearchrecError(
                    f"refusing output root {root}: it contains {what} {inner}; name a prefix of its own"
                )
        names = storage.list_dir(root)
    else:
        names = _check_local(root, protected)
    foreign = sorted(n for n in names if not _ours(n))
    if foreign and MARKER not in names:
        shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise SearchrecError(
            f"refusing output root {root}: it holds files searchrec did not write ({shown}) and no {MARKER}; "
            "name an empty or new folder"
        )


def publish(
    src_dir: Path, root: str, name: str, info: dict, protected: Mapping[str, str] | None = None
) -> dict:
    """Copy the complete folder ``src_dir`` to ``<root>/<name>/``, then point ``LATEST.json`` at it.

    ``info`` goes into the pointer (end_date, users, rows, source). Returns the pointer."""
    check_root(root, protected)
    marker = storage.join_uri(root, MARKER)
    if not storage.exists(marker):
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        storage.write_bytes(marker, json.dumps({"kind": "searchrec outputs", "created_at": created}).encode())
    uri = storage.join_uri(root, name)
    storage.publish_tree(src_dir, uri, "output")
    pointer = {
        "name": name,
        "uri": uri,
        **info,
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
    }
    storage.write_bytes(storage.join_uri(root, LATEST), (json.dumps(pointer, indent=2) + "\n").encode())
    return pointer


def is_root(uri: str | Path) -> bool:
    """True when ``uri`` is an output root (it holds the marker)."""
    return storage.exists(storage.join_uri(str(uri), MARKER))


def read_latest(root: str | Path) -> dict | None:
    """The pointer of an output root, or None when nothing was published there yet."""
    return storage.read_pointer(storage.join_uri(str(root), LATEST), "output pointer", "name")


def latest_output(root: str | Path) -> str:
    """The folder (or prefix) of the latest complete output under ``root``: what ``LATEST.json`` names."""
    pointer = read_latest(root)
    if pointer is None:
        raise SearchrecError(f"{root} holds no {LATEST}: nothing was published there")
    uri = storage.join_uri(str(root), pointer["name"])
    if not storage.exists(storage.join_uri(uri, folder.COMPLETE_MARKER)):
        raise SearchrecError(f"{root}: {LATEST} names {pointer['name']}, which is incomplete")
    return uri
