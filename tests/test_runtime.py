"""searchrec.runtime.stage: every failure of a stage body ends as one line naming the stage and the cause."""

from __future__ import annotations

import subprocess
import sys

import pytest

from searchrec.errors import SearchrecError
from searchrec.runtime import stage


def test_bad_input_is_the_projects_own_line(tmp_path, monkeypatch):
    errors = tmp_path / "errors.txt"
    monkeypatch.setenv("SEARCHREC_ERRORS_FILE", str(errors))
    with pytest.raises(SystemExit) as exit_, stage("clean"):
        raise SearchrecError("the holdout is\nempty")  # a message across lines still ends as one
    assert str(exit_.value) == "searchrec clean failed: the holdout is empty"
    assert errors.read_text() == "searchrec clean failed: the holdout is empty\n"


@pytest.mark.parametrize(
    ("raised", "line"),
    [
        (
            "ValueError('cannot reshape array of size 7\\nsecond line')",
            "searchrec index failed: ValueError: cannot reshape array of size 7",
        ),
        ("KeyError('nm_id')", "searchrec index failed: KeyError: 'nm_id'"),
        ("MemoryError()", "searchrec index failed: MemoryError"),
    ],
)
def test_any_other_exception_ends_with_one_line_after_its_traceback(raised, line):
    code = f"from searchrec.runtime import stage\nwith stage('index'):\n    raise {raised}\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[-1] == line  # the last thing a user sees
    assert "Traceback (most recent call last)" in out.stderr  # and the log above it keeps the traceback


@pytest.mark.parametrize("task_process", [True, False])
def test_a_task_process_freezes_its_heap_after_the_stage_and_still_fails_loudly(task_process):
    """In a KFP task process the heap is frozen once the stage is done (interpreter shutdown then skips a
    collection over everything the stage imported); elsewhere (the CLI, tests) nothing changes. A failing
    stage still exits 1 with its line."""
    import os

    from searchrec import config

    code = (
        "import gc, sys\n"
        "from searchrec.runtime import stage\n"
        "objects = [[i] for i in range(10000)]\n"
        "with stage('probe'):\n    pass\n"
        "print(gc.get_freeze_count())\n"
        "with stage('broken'):\n    raise ValueError('no')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != config.KFP_TASK_ENV}
    if task_process:
        env[config.KFP_TASK_ENV] = "true"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    frozen = int(result.stdout.strip())
    assert (frozen >= 10000) if task_process else (frozen == 0)
    assert result.returncode == 1 and "searchrec broken failed: ValueError: no" in result.stderr
