"""searchrec.artifacts.folder: the one way artifacts are published (in place, marker last, no directory
renames) and checked by their readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from searchrec.artifacts import folder
from searchrec.errors import SearchrecError


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_published_folder_lists_its_files_and_sizes_in_the_marker_written_last(tmp_path):
    out = tmp_path / "a"
    with folder.publishing(out, "thing") as path:
        assert path == out and names(out) == [folder.IN_PROGRESS_MARKER]  # ours from the first byte
        (out / "x.bin").write_bytes(b"12345")
        (out / "sub").mkdir()
        (out / "sub" / "y.txt").write_text("y")
        assert not folder.is_complete(out)
    record = json.loads((out / folder.COMPLETE_MARKER).read_text())
    assert record["kind"] == "thing" and record["files"] == {"sub/y.txt": 1, "x.bin": 5}
    assert names(out) == [folder.COMPLETE_MARKER, "sub", "x.bin"]  # the in-progress marker is gone
    assert folder.require_complete(out, "thing")["files"]["x.bin"] == 5


def test_a_failure_leaves_nothing_and_a_created_folder_is_removed(tmp_path):
    with pytest.raises(RuntimeError), folder.publishing(tmp_path / "new", "thing") as path:
        (path / "half.parquet").write_text("half")
        raise RuntimeError("killed")
    assert names(tmp_path) == []
    given = tmp_path / "given"  # KFP hands the task an existing, empty folder
    given.mkdir()
    with pytest.raises(RuntimeError), folder.publishing(given, "thing") as path:
        (path / "half.parquet").write_text("half")
        raise RuntimeError("killed")
    assert names(given) == []


def test_a_retry_clears_an_earlier_attempt_but_a_foreign_folder_is_refused(tmp_path):
    out = tmp_path / "a"
    out.mkdir()
    (out / folder.IN_PROGRESS_MARKER).write_text("thing")  # a killed attempt of ours
    (out / "stale.bin").write_text("stale")
    (out / "stale_dir").mkdir()
    with folder.publishing(out, "thing") as path:
        (path / "new.bin").write_text("new")
    assert names(out) == [folder.COMPLETE_MARKER, "new.bin"]

    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine, not searchrec's")
    with pytest.raises(
        SearchrecError, match=r"refusing to write the thing artifact into .*theirs: .*notes.txt"
    ):
        with folder.publishing(foreign, "thing"):
            pass
    assert names(foreign) == ["notes.txt"]
    with pytest.raises(SearchrecError, match="exists and is not a folder"):
        with folder.publishing(foreign / "notes.txt", "thing"):
            pass


def test_kept_entries_survive_a_retry_and_a_failure(tmp_path):
    out = tmp_path / "model"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "epoch-1.pt").write_text("ckpt")
    with pytest.raises(RuntimeError), folder.publishing(out, "model", keep=("checkpoints",)) as path:
        (path / "weights").write_text("half")
        raise RuntimeError("killed")
    assert names(out) == ["checkpoints"]
    with folder.publishing(out, "model", keep=("checkpoints",)) as path:
        (path / "weights").write_text("w")
    assert "checkpoints/epoch-1.pt" not in folder.require_complete(out, "model")["files"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: None, None),
        (
            lambda p: (p / folder.COMPLETE_MARKER).unlink(),
            "is not a searchrec artifact: no _SEARCHREC_COMPLETE",
        ),
        (lambda p: (p / "x.bin").unlink(), "is incomplete: x.bin is missing"),
        (lambda p: (p / "x.bin").write_bytes(b"123"), "is damaged: x.bin has 3 bytes, 5 were written"),
        (lambda p: (p / folder.COMPLETE_MARKER).write_text("{"), "cannot read .*_SEARCHREC_COMPLETE.json"),
    ],
)
def test_readers_refuse_a_half_written_or_damaged_folder_with_one_line(tmp_path, damage, message):
    out = tmp_path / "a"
    with folder.publishing(out, "thing"):
        (out / "x.bin").write_bytes(b"12345")
    damage(out)
    if message is None:
        folder.require_complete(out, "thing")
        return
    with pytest.raises(SearchrecError, match=message) as error:
        folder.require_complete(out, "thing")
    assert "\n" not in str(error.value)


def test_killed_writer_is_named_as_such(tmp_path):
    out = tmp_path / "a"
    out.mkdir()
    (out / folder.IN_PROGRESS_MARKER).write_text("thing")
    with pytest.raises(SearchrecError, match=r"was never finished \(a killed or failed task\?\)"):
        folder.require_complete(out, "thing")
    with pytest.raises(SearchrecError, match="does not exist"):
        folder.require_complete(tmp_path / "none", "thing")


def test_write_atomic_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "f.json"
    folder.write_json(target, {"a": 1})

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        folder.write_atomic(target, fail)
    assert json.loads(target.read_text()) == {"a": 1} and names(tmp_path) == ["f.json"]
