"""A local run's console: everything kfp.local writes goes to `runner.log` in the run folder, and one line
per task goes to the terminal as the task ends: task, state, seconds, its main figure.

kfp.local logs through the root logger and print() (each task's output is printed line by line, and
warnings about settings that have no local effect go to stderr); `capture()` routes all three into one
`RunnerLog` for the length of a run.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
EXECUTING = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
CACHE_HIT = re.compile(r"Task (\S+) cache hit \(key=([0-9a-f]+)\)")
SKIPPED = re.compile(r"Skipping task (\S+): upstream")

# The figure a task's line shows: the first of these keys found in its outputs' metadata.
FIGURES = (
    ("status", "model {}"),
    ("users_served", "{:.0f} users served"),
    ("model_recall_at_200", "Recall@200 {:.4f}"),
    ("model_version", "model {}"),
    ("model_uri", "model {}"),
    ("queries_distinct", "{:.0f} distinct queries"),
    ("train_examples", "{:.0f} training examples"),
    ("users_kept", "{:.0f} users"),
    ("n", "{:.0f} items indexed"),
    ("snapshot_date", "snapshot dt={}"),
    ("rows", "{:.0f} rows"),
    ("Output", "{}"),
)


def main_figure(outputs: dict) -> str:
    """`outputs`: output name -> metadata dict (or a parameter value)."""
    metas = [m if isinstance(m, dict) else {"Output": m} for m in outputs.values()]
    for key, fmt in FIGURES:
        for meta in metas:
            if meta.get(key) is not None:
                try:
                    return fmt.format(meta[key])
                except (ValueError, TypeError):
                    return str(meta[key])
    return ""


class RunnerLog(io.TextIOBase):
    """A text stream: every write goes to the log file (and `echo`); finished tasks become progress lines."""

    def __init__(self, path: Path, root: Path, cache_root: Path, progress: TextIO, echo: TextIO | None):
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.root, self.cache_root, self.progress, self.echo = root, cache_root, progress, echo
        self.started: dict[str, float] = {}
        self.cached: dict[str, dict] = {}  # task -> outputs of a cache hit (executor_output layout)
        self.states: dict[str, str] = {}
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.file.closed:  # a late write (logging at exit): the run is over
            return len(text)
        self.file.write(text)
        if self.echo is not None:
            self.echo.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        if not self.file.closed:
            self.file.flush()

    def close(self) -> None:
        self.file.close()
        super().close()

    def _line(self, line: str) -> None:
        if m := EXECUTING.search(line):
            self.started[m[1]] = time.monotonic()
        elif m := FINISHED.search(line):
            seconds = time.monotonic() - self.started.get(m[1], time.monotonic())
            state = "done" if m[2] == "SUCCESS" else m[2].lower()
            self._report(m[1], state, seconds, self._executed_outputs(m[1]))
        elif m := CACHE_HIT.search(line):
            outputs = self._cache_entry(m[2])
            self.cached[m[1]] = outputs
            self._report(m[1], "cached", 0.0, {k: v[0].get("metadata", v[0]) for k, v in outputs.items()})
        elif m := SKIPPED.search(line):
            self._report(m[1], "skipped", 0.0, {})

    def _report(self, task: str, state: str, seconds: float, outputs: dict) -> None:
        self.states[task] = state
        figure = main_figure(outputs) if state in ("done", "cached") else ""
        self.progress.write(f"{task:<28} {state:<8} {seconds:6.1f}s  {figure}".rstrip() + "\n")
        self.progress.flush()

    def _executed_outputs(self, task: str) -> dict:
        found = sorted(self.root.glob(f"*/{task}/executor_output.json"))
        if not found:
            return {}
        body = json.loads(found[-1].read_text())
        out = {
            k: (v.get("artifacts") or [{}])[0].get("metadata") or {}
            for k, v in body.get("artifacts", {}).items()
        }
        out.update(body.get("parameterValues", {}))
        return out

    def _cache_entry(self, key_prefix: str) -> dict:
        """A cache hit's outputs in executor_output layout: output -> [{"uri", "metadata"}] or [value]."""
        found = sorted(self.cache_root.glob(f"{key_prefix}*.json"))
        if not found:
            return {}
        entry = json.loads(found[0].read_text())
        return {
            name: [{"uri": v.get("uri"), "metadata": v.get("metadata") or {}}] if isinstance(v, dict) else [v]
            for name, v in entry.items()
        }


@contextlib.contextmanager
def capture(log: RunnerLog) -> Iterator[RunnerLog]:
    """Route stdout, stderr and the root logger into `log` while a run lasts."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield log
    finally:
        root.handlers = handlers
        log.flush()
