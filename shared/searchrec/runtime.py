"""What every stage does around its logic inside a container: logging, one-line errors, lineage."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from searchrec import __version__, config
from searchrec.errors import SearchrecError

log = logging.getLogger("searchrec")

# Set by local runs: a failing stage also appends its one-line message here, so that `searchrec run`
# can end with the stage's own words instead of kfp.local's "inner task failed".
ERRORS_FILE_ENV = config.ERRORS_FILE_ENV


def setup_logging(level: int = logging.INFO) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )
    logging.getLogger().setLevel(level)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Run a stage body: log its duration; bad input ends the process with one line and exit code 1."""
    setup_logging()
    started = time.perf_counter()
    log.info("%s: started", name)
    try:
        yield
    except SearchrecError as error:
        # SystemExit with a message: printed as one line on stderr, exit code 1, no traceback.
        message = f"searchrec {name} failed: {error}"
        errors_file = os.environ.get(ERRORS_FILE_ENV)
        if errors_file:
            with contextlib.suppress(OSError), open(errors_file, "a", encoding="utf-8") as out:
                out.write(" ".join(message.split()) + "\n")
        raise SystemExit(message) from None
    log.info("%s: done in %.1f s", name, time.perf_counter() - started)


def git_commit() -> str:
    """The commit the code was built from: baked into images as SEARCHREC_GIT_COMMIT, else asked of git."""
    commit = os.environ.get(config.GIT_COMMIT_ENV)
    if commit:
        return commit
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def lineage(**extra: object) -> dict:
    """Metadata every artifact carries: code version plus whatever the stage adds (window, counts ...)."""
    return {"git_commit": git_commit(), "searchrec_version": __version__, **extra}
