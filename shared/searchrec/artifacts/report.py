"""The HTML report: one self-contained page (a KFP ``HTML`` artifact is a file, not a folder)."""

from __future__ import annotations

from pathlib import Path

from searchrec.artifacts import folder
from searchrec.errors import SearchrecError

FILE_NAME = "report.html"  # used when the target is a folder (local runs write report.html beside the run)


def write(path: Path, html: str) -> Path:
    """Write the page atomically (file-level temp + rename); one clear line if that fails."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    try:
        return folder.write_atomic(path, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    except OSError as error:
        raise SearchrecError(f"cannot write report {path}: {error}") from None
