"""The fault and bad-input catalogue of `searchrec run`: every case ends with its exit code and ONE line
naming the problem, and leaves no output behind (no run folder, nothing in the working directory).

Door cases run `main()` in-process (refused before kfp.local starts, in well under a second each);
the cases that need a running pipeline (a stage failing, Ctrl-C, --resume) run the CLI as a subprocess
on the generator's tiny world. The README counts the classes and cases of CATALOGUE.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from searchrec.cli import main
from tests.tiny_world import run_sources as _sources


@dataclass(frozen=True)
class Case:
    name: str
    fault_class: str
    argv: tuple[str, ...]  # after `run`; {data} and {tmp} are filled in
    says: str  # a fragment the one line must hold
    pipeline: str = "demo"
    sources: bool = True  # prepend the tiny world's warehouse, snapshots and encoder


RECOMMEND_WINDOW = ("--recommend-start", "2026-10-08", "--recommend-end", "2026-10-10")
FAR = ("--snapshot-max-days", "1000")

CATALOGUE = [
    # parameters out of range
    Case("epochs 0", "parameter out of range", ("--epochs", "0"), "--epochs must be at least 1"),
    Case("shards 0", "parameter out of range", ("--num-shards", "0"), "--num-shards must be at least 1"),
    Case("min item count 0", "parameter out of range", ("--min-item-count", "0"), "--min-item-count"),
    Case("max items 0", "parameter out of range", ("--max-items", "0"), "--max-items"),
    Case(
        "negative snapshot days",
        "parameter out of range",
        ("--snapshot-max-days", "-1"),
        "--snapshot-max-days",
    ),
    Case(
        "learning rate 0",
        "parameter out of range",
        ("--learning-rate", "0", "--train-start", "2026-09-01", "--train-end", "2026-10-07"),
        "--learning-rate must be above 0",
        pipeline="training",
    ),
    # dates and windows
    Case("malformed date", "bad date or window", ("--train-start", "2026-13-01"), "--train-start"),
    Case("not a date", "bad date or window", ("--recommend-end", "yesterday"), "--recommend-end"),
    Case(
        "reversed window",
        "bad date or window",
        ("--train-start", "2026-10-07", "--train-end", "2026-09-01"),
        "after",
    ),
    Case(
        "empty training window",
        "bad date or window",
        ("--train-start", "2026-07-01", "--train-end", "2026-07-20", "--holdout-start", "2026-07-15", *FAR),
        "--train-start: no purchases between 2026-07-01 and 2026-07-20",
    ),
    Case(
        "empty recommendation window",
        "bad date or window",
        ("--recommend-start", "2027-01-01", "--recommend-end", "2027-01-02", *FAR),
        "--recommend-start: no search queries between 2027-01-01 and 2027-01-02",
    ),
    # sources: warehouse, snapshots, encoder, named files
    Case(
        "dead database",
        "unreachable or missing source",
        ("--warehouse-uri", "postgresql://127.0.0.1:1/test", "--embeddings-uri", "{data}/embeddings"),
        "unreachable after 1 attempt",
        sources=False,
    ),
    Case(
        "missing duckdb file",
        "unreachable or missing source",
        ("--warehouse-uri", "duckdb:///{tmp}/none.duckdb", "--embeddings-uri", "{data}/embeddings"),
        "no such DuckDB file",
        sources=False,
    ),
    Case(
        "warehouse without tables",
        "unreachable or missing source",
        ("--warehouse-uri", "duckdb:///{tmp}/empty.duckdb", "--embeddings-uri", "{data}/embeddings"),
        "has no table orders",
        sources=False,
    ),
    Case(
        "no snapshot near the window",
        "unreachable or missing source",
        ("--recommend-start", "2027-01-01", "--recommend-end", "2027-01-02"),
        "no embeddings snapshot within 14 days of 2027-01-02",
    ),
    Case(
        "missing embeddings folder",
        "unreachable or missing source",
        ("--warehouse-uri", "duckdb:///{data}/warehouse.duckdb", "--embeddings-uri", "{tmp}/nothing"),
        "{tmp}/nothing",
        sources=False,
    ),
    Case(
        "encoder folder without config",
        "unreachable or missing source",
        ("--encoder", "{tmp}"),
        "no config.json",
    ),
    Case(
        "encoder folder without weights",
        "unreachable or missing source",
        ("--encoder", "{tmp}/enc"),
        "holds no weights (model.safetensors or pytorch_model.bin)",
    ),
    Case(
        "missing ground truth",
        "unreachable or missing source",
        ("--ground-truth", "{tmp}/gt"),
        "--ground-truth",
    ),
    Case(
        "missing user list",
        "unreachable or missing source",
        ("--users-uri", "{tmp}/u.parquet"),
        "--users-uri",
    ),
    # the model to serve
    Case(
        "missing model",
        "model to serve",
        ("--model-uri", "{tmp}/no-model", *RECOMMEND_WINDOW),
        "neither a model folder",
        pipeline="recommend",
    ),
    Case(
        "model folder with a broken config",
        "model to serve",
        ("--model-uri", "{tmp}/bad-model", *RECOMMEND_WINDOW),
        "bad-model",
        pipeline="recommend",
    ),
    # the run's own folders and demo defaults
    Case("runs folder is a file", "local runner", ("--runs-dir", "{tmp}/a-file"), "is a file, not a folder"),
    Case("resume of no run", "local runner", ("--resume", "{tmp}"), "not a local run folder"),
    Case("resume of a finished run", "local runner", ("--resume", "{tmp}/done-run"), "nothing to resume"),
    Case(
        "training without sources",
        "no demo defaults outside the demo",
        ("--train-start", "2026-09-01", "--train-end", "2026-10-07"),
        "needs --warehouse-uri, --embeddings-uri",
        pipeline="training",
        sources=False,
    ),
    Case(
        "recommend without a window",
        "no demo defaults outside the demo",
        (),
        "needs --recommend-start, --recommend-end",
        pipeline="recommend",
    ),
]


@pytest.fixture
def door(tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the files the cases point at; returns it."""
    import duckdb

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    duckdb.connect(str(tmp_path / "empty.duckdb")).close()
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "config.json").write_text("{}")
    (tmp_path / "bad-model").mkdir()
    (tmp_path / "bad-model" / "config.json").write_text("{not json")
    (tmp_path / "done-run").mkdir()
    (tmp_path / "done-run" / "run.json").write_text(
        json.dumps({"pipeline": "demo", "arguments": {}, "state": "SUCCEEDED"})
    )
    return tmp_path


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.name for c in CATALOGUE])
def test_bad_input_is_refused_at_the_door_with_one_line(case: Case, door: Path, tiny_demo: Path, capsys):
    before = sorted(p.name for p in door.iterdir())
    fill = {"data": str(tiny_demo), "tmp": str(door)}
    argv = [a.format(**fill) for a in case.argv]
    runs = [] if "--runs-dir" in argv else ["--runs-dir", str(door / "runs")]
    sources = _sources(tiny_demo) if case.sources else ["--encoder", str(tiny_demo / "encoder")]
    code = main(["run", "--pipeline", case.pipeline, *sources, *argv, *runs])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("searchrec: error: "), err
    assert case.says.format(**fill) in lines[0]
    assert "Traceback" not in out + err
    assert sorted(p.name for p in door.iterdir()) == before  # no run folder, nothing half-written


def test_the_catalogue_covers_every_class_the_readme_counts():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    classes = sorted({c.fault_class for c in CATALOGUE})
    runtime_cases = len(RUNTIME_CASES)
    assert f"{len(CATALOGUE) + runtime_cases} cases in {len(classes) + 1} classes" in readme
    for name in classes:
        assert name in readme, name


# --- cases that need a running pipeline ---------------------------------------------------------

RUNTIME_CASES = ["a stage fails on a broken snapshot", "Ctrl-C during training, then --resume"]

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "searchrec.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _nan_snapshot(data: Path, out: Path) -> Path:
    """The tiny world's snapshots, with one vector of the newest partition made NaN."""
    import shutil

    shutil.copytree(data / "embeddings", out)
    newest = sorted(out.glob("dt=*"))[-1]
    part = sorted(newest.glob("*.parquet"))[0]
    table = pq.read_table(part).to_pandas()
    vectors = [np.asarray(v, dtype=np.float32) for v in table["embedding"]]
    vectors[0] = np.full_like(vectors[0], np.nan)
    table["embedding"] = vectors
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), part)
    return out


@pytest.mark.slow
def test_a_failing_stage_ends_with_one_line_naming_stage_and_source(tiny_demo: Path, tmp_path: Path):
    embeddings = _nan_snapshot(tiny_demo, tmp_path / "embeddings")
    sources = _sources(tiny_demo)
    sources[3] = str(embeddings)
    proc = _cli("run", "--pipeline", "demo", *sources, "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, out[-2000:] + err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("searchrec: error: local demo run failed: ") and "NaN" in last, last
    assert "dt=" in last and "Traceback" not in err.strip().splitlines()[-1]
    # the failed snapshot task left no half-written artifact: each snapshot folder is complete or empty
    from searchrec.artifacts.folder import COMPLETE_MARKER

    folders = glob.glob(str(tmp_path / "runs" / "*" / "*" / "extract-snapshot*" / "snapshot"))
    for out_dir in folders:
        assert (Path(out_dir) / COMPLETE_MARKER).is_file() or not any(Path(out_dir).iterdir()), out_dir
    assert any((Path(d) / COMPLETE_MARKER).is_file() for d in folders)  # the training one was fine


def _recommendations(run_dir: Path) -> pd.DataFrame:
    [path] = sorted(run_dir.glob("*/merge-recommendations/recommendations/recommendations.parquet"))[-1:]
    return pd.read_parquet(path).sort_values("user_id").reset_index(drop=True)


@pytest.mark.slow
def test_ctrl_c_in_training_then_resume_gives_the_uninterrupted_recommendations(
    tiny_demo: Path, tmp_path: Path
):
    args = ["run", "--pipeline", "demo", *_sources(tiny_demo), "--min-item-count", "1", "--epochs", "15"]
    args += ["--ground-truth", str(tiny_demo / "ground_truth"), "--no-cache"]
    whole = _cli(*args, "--runs-dir", str(tmp_path / "whole"), cwd=tmp_path)
    out, err = whole.communicate(timeout=900)
    assert whole.returncode == 0, err[-3000:]

    runs = tmp_path / "runs"
    proc = _cli(*args, "--runs-dir", str(runs), cwd=tmp_path, start_new_session=True)
    deadline = time.monotonic() + 600
    while not glob.glob(str(runs / "*" / "*" / "train" / "model" / "checkpoints" / "epoch-0002.json")):
        assert time.monotonic() < deadline and proc.poll() is None, "training never reached epoch 2"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    out, err = proc.communicate(timeout=300)
    [run_dir] = runs.glob("demo-*")
    lines = err.strip().splitlines()
    assert proc.returncode == 130, err[-3000:]
    assert (
        lines[-1]
        == f"searchrec: error: local demo run interrupted; continue it with: searchrec run --resume {run_dir}"
    )
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert json.loads((run_dir / "run.json").read_text())["state"] == "INTERRUPTED"

    resumed = _cli("run", "--resume", str(run_dir), cwd=tmp_path)
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err[-3000:]
    log = (run_dir / "runner.log").read_text(errors="replace")
    assert "train: continuing the interrupted attempt" in log and "cache hit" in log
    assert json.loads((run_dir / "run.json").read_text())["state"] == "SUCCEEDED"
    a, b = _recommendations(run_dir), _recommendations(next((tmp_path / "whole").glob("demo-*")))
    assert a["user_id"].tolist() == b["user_id"].tolist()
    for x, y in zip(a["nm_ids"], b["nm_ids"], strict=True):
        assert list(x) == list(y)
    for x, y in zip(a["scores"], b["scores"], strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)
