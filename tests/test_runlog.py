"""The local run's console: one line per task from kfp.local's log, the whole log in a file."""

from __future__ import annotations

import io
import json
from pathlib import Path

from searchrec.runlog import RunnerLog, main_figure


def test_one_line_per_task_with_its_state_and_main_figure(tmp_path: Path):
    task_dir = tmp_path / "searchrec-training-x" / "train"
    task_dir.mkdir(parents=True)
    metadata = {"train_examples": 1813.0, "model_recall_at_200": 0.93731}
    (task_dir / "executor_output.json").write_text(
        json.dumps({"artifacts": {"model": {"artifacts": [{"metadata": metadata}]}}})
    )
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "abc123ffff.json").write_text(
        json.dumps({"events": {"uri": "/x", "metadata": {"rows": 17055.0}}})
    )
    progress, echo = io.StringIO(), io.StringIO()
    log = RunnerLog(tmp_path / "runner.log", tmp_path, cache, progress, echo)
    log.write(
        "01:48 - INFO - Executing task \x1b[96m'train'\x1b[0m\n    epoch 1/3 ...\n01:48 - INFO - Task \x1b[96m'tr"
    )
    log.write("ain'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m\n")
    log.write("INFO root: Task extract-training-events cache hit (key=abc123); skipping execution.\n")
    log.write("INFO root: Skipping task build-index: upstream task(s) ['train'] failed.\n")
    log.close()
    lines = progress.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["train", "done"],
        ["extract-training-events", "cached"],
        ["build-index", "skipped"],
    ]
    assert lines[0].endswith("Recall@200 0.9373") and lines[1].endswith("17055 rows")
    assert log.cached["extract-training-events"]["events"][0]["uri"] == "/x"
    assert (tmp_path / "runner.log").read_text() == echo.getvalue()  # --verbose streams exactly the log
    assert "epoch 1/3" in echo.getvalue() and "epoch" not in progress.getvalue()


def test_main_figure_prefers_the_decision_and_the_headline_metric():
    assert main_figure({"decision": {"status": "rejected", "model_recall_at_200": 0.5}}) == "model rejected"
    assert main_figure({"Output": "closed:2026-10-07"}) == "closed:2026-10-07"
    assert main_figure({}) == ""
