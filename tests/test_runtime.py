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
