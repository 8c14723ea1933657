"""How every artifact folder is published and checked: the one way the project writes outputs.

An artifact is a folder (the KFP artifact's ``.path``). Writing one never renames a directory: on
Vertex AI the path is a Cloud Storage FUSE mount, which refuses to rename a non-empty directory, and
on Kubeflow the launcher uploads whatever the folder holds when the task ends. Instead:

1. ``IN_PROGRESS_MARKER`` is written first, so a later attempt knows the folder is ours;
2. the stage writes its files in place (single files may use :func:`write_atomic`);
3. ``COMPLETE_MARKER`` is written last: the file names and sizes the folder holds.

Readers call :func:`require_complete`, so a half-written folder (a killed task, a failed upload) is
refused with one line instead of read. A retried task clears what an earlier attempt of ours left; a
folder holding files searchrec did not write is refused, never emptied.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from searchrec import __version__
from searchrec.errors import SearchrecError

COMPLETE_MARKER = "_SEARCHREC_COMPLETE.json"
IN_PROGRESS_MARKER = "_SEARCHREC_WRITING"
MARKERS = (COMPLETE_MARKER, IN_PROGRESS_MARKER)
# In an output root (searchrec.outputs): the root is searchrec's, so run sub-folders may be added to it.
OUTPUTS_MARKER = "_SEARCHREC_OUTPUTS"


class Metadata(Protocol):
    """What every artifact's metadata object offers: the dict that goes into the KFP artifact."""

    def as_metadata(self) -> dict[str, Any]: ...


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Write one file through a temporary file beside it and ``os.replace`` (a file rename, FUSE-safe)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_json(path: Path, data: object) -> Path:
    """``data`` as indented JSON (UTF-8, non-ASCII kept), written atomically."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path) -> dict:
    """A JSON object from an artifact file; one SearchrecError line naming the file if unusable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SearchrecError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise SearchrecError(f"{path} is not a JSON object")
    return data


def _owned(path: Path) -> bool:
    return any((path / m).exists() for m in MARKERS)


def clear(path: Path, keep: Iterable[str] = ()) -> None:
    """Remove the folder's entries (files and sub-folders, no renames), except the names in ``keep``."""
    keep = set(keep)
    for entry in path.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _inventory(path: Path, keep: Iterable[str] = ()) -> dict[str, int]:
    """Relative path -> size of every file under ``path`` but the markers and the ``keep`` entries."""
    keep = set(keep)
    files = {}
    for file in sorted(path.rglob("*")):
        rel = file.relative_to(path)
        if rel.parts[0] in keep or rel.name in MARKERS or not file.is_file():
            continue
        files[rel.as_posix()] = file.stat().st_size
    return files


@contextlib.contextmanager
def publishing(path: str | Path, kind: str, *, keep: Iterable[str] = ()) -> Iterator[Path]:
    """Write the artifact folder ``path`` in place; it counts as written only once the block ends.

    ``keep``: entries an earlier attempt left that must survive a retry (train's ``checkpoints``).
    On any exception everything the block wrote is removed again (``keep`` entries stay).
    """
    path = Path(path)
    keep = tuple(keep)
    if path.exists() and not path.is_dir():
        raise SearchrecError(f"cannot write the {kind} artifact: {path} exists and is not a folder")
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    leftovers = [p.name for p in path.iterdir() if p.name not in keep]
    if leftovers and not _owned(path):
        shown = ", ".join(sorted(leftovers)[:3]) + (" ..." if len(leftovers) > 3 else "")
        raise SearchrecError(
            f"refusing to write the {kind} artifact into {path}: it holds files searchrec did not write ({shown})"
        )
    clear(path, keep)
    (path / IN_PROGRESS_MARKER).write_text(f"{kind}\n", encoding="utf-8")
    try:
        yield path
        files = _inventory(path, keep)
        write_json(
            path / COMPLETE_MARKER,
            {"kind": kind, "files": files, "searchrec_version": __version__, "completed_at": time.time()},
        )
        (path / IN_PROGRESS_MARKER).unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            clear(path, keep)
            if created:
                path.rmdir()
        raise


def is_complete(path: str | Path) -> bool:
    return (Path(path) / COMPLETE_MARKER).is_file()


def require_complete(path: str | Path, kind: str) -> dict:
    """The completion record of an artifact folder; one clear line if the folder is missing or half-written.

    Every file the record lists must be there with its recorded size (a truncated copy is refused).
    """
    path = Path(path)
    if not path.is_dir():
        raise SearchrecError(f"the {kind} artifact {path} does not exist")
    marker = path / COMPLETE_MARKER
    if not marker.is_file():
        state = (
            "was never finished (a killed or failed task?)" if _owned(path) else "is not a searchrec artifact"
        )
        raise SearchrecError(f"the {kind} artifact {path} {state}: no {COMPLETE_MARKER}")
    record = read_json(marker)
    for rel, size in (record.get("files") or {}).items():
        file = path / rel
        if not file.is_file():
            raise SearchrecError(f"the {kind} artifact {path} is incomplete: {rel} is missing")
        if file.stat().st_size != size:
            raise SearchrecError(
                f"the {kind} artifact {path} is damaged: {rel} has {file.stat().st_size} bytes, {size} were written"
            )
    return record


def require_files(path: str | Path, kind: str, names: Iterable[str]) -> None:
    """One clear line naming the files of ``names`` that the (complete) artifact folder lacks."""
    missing = [n for n in names if not (Path(path) / n).is_file()]
    if missing:
        raise SearchrecError(f"the {kind} artifact {path} lacks {', '.join(missing)}")
