"""What every stage does around its logic inside a container: logging, one-line errors, lineage."""

from __future__ import annotations

import contextlib
import gc
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


def _fail(name: str, reason: str) -> SystemExit:
    """One line on stderr (and in the local run's errors file), exit code 1, no traceback after it."""
    message = " ".join(f"searchrec {name} failed: {reason}".split())
    errors_file = os.environ.get(ERRORS_FILE_ENV)
    if errors_file:
        with contextlib.suppress(OSError), open(errors_file, "a", encoding="utf-8") as out:
            out.write(message + "\n")
    return SystemExit(message)


@contextlib.contextmanager
def stage(name: str, **parameters: object) -> Iterator[None]:
    """Run a stage body: log its duration; any failure ends the process with one line naming the stage
    and the cause, exit code 1. Bad input (SearchrecError) is the project's own line; anything else is
    logged with its traceback first (the task log keeps it) and summarised as its type and first line.

    ``parameters``: the component's URI-valued inputs; one carrying a password is refused before the
    body runs (a pipeline submitted by other means than `searchrec submit` refuses too)."""
    from searchrec.secrets import refuse_passwords

    setup_logging()
    started = time.perf_counter()
    log.info("%s: started", name)
    try:
        refuse_passwords(parameters)
        yield
    except SearchrecError as error:
        raise _fail(name, str(error)) from None
    except Exception as error:  # a bug or an environment fault: the traceback goes to the log above the line
        log.exception("%s: unexpected error", name)
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise _fail(name, f"{type(error).__name__}: {first}" if first else type(error).__name__) from None
    log.info("%s: done in %.1f s", name, time.perf_counter() - started)
    if os.environ.get(config.KFP_TASK_ENV) == "true":
        _quick_exit()


def _quick_exit() -> None:
    """In a task process the stage is the last real work: KFP writes the outputs and the process ends.
    Freezing the heap now spares interpreter shutdown a full collection over everything torch and
    transformers allocated (measured on a tiny demo run: 1-2 s per ML task before, 0.1-0.3 s after);
    atexit handlers, stream flushing and the exit code are unchanged."""
    gc.freeze()


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
