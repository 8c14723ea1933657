"""kfp.local runs of the demo pipeline on tiny generated data, checked by content."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from searchrec import config
from tests.tiny_world import run_sources as _sources

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


FUSE_IMITATION = REPO / "tests" / "fuse"  # sitecustomize.py: no directory renames under a root


def _cli(*args: str, cwd: Path, no_dir_renames_under: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if no_dir_renames_under is not None:
        env["SEARCHREC_TEST_NO_DIR_RENAME_UNDER"] = str(no_dir_renames_under)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FUSE_IMITATION), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "searchrec.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def test_the_fuse_imitation_refuses_directory_renames_only(tmp_path):
    """The fixture the demo run below runs under: proves it bites before relying on it."""
    root = tmp_path / "root"
    (root / "full").mkdir(parents=True)
    (root / "full" / "f.txt").write_text("x")
    (root / "empty").mkdir()
    script = (
        "import os, sys\n"
        "r = sys.argv[1]\n"
        "os.replace(os.path.join(r, 'full', 'f.txt'), os.path.join(r, 'full', 'g.txt'))\n"  # a file: allowed
        "os.rename(os.path.join(r, 'empty'), os.path.join(r, 'empty2'))\n"  # an empty folder: allowed
        "try:\n    os.rename(os.path.join(r, 'full'), os.path.join(r, 'moved'))\n"
        "except OSError as e:\n    print('refused', e.errno)\nelse:\n    print('renamed')\n"
    )
    env = {**os.environ, "SEARCHREC_TEST_NO_DIR_RENAME_UNDER": str(root), "PYTHONPATH": str(FUSE_IMITATION)}
    out = subprocess.run([sys.executable, "-c", script, str(root)], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "refused 95", out.stderr
    assert sorted(p.name for p in root.iterdir()) == ["empty2", "full"]


@pytest.fixture(scope="module")
def demo_run(tiny_demo: Path, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    workdir = tmp_path_factory.mktemp("run")
    result = _cli(
        "run",
        "--pipeline",
        "demo",
        *_sources(tiny_demo),
        "--ground-truth",
        str(tiny_demo / "ground_truth"),
        "--min-item-count",
        "1",
        "--epochs",
        "3",
        "--num-shards",
        "2",
        "--runs-dir",
        str(workdir / "runs"),
        "--output-uri",
        str(workdir / "out"),
        cwd=workdir,
        # the pipeline root behaves as Vertex's Cloud Storage FUSE mount: no directory renames
        no_dir_renames_under=workdir / "runs",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result, tiny_demo


def _printed(stdout: str, prefix: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith(prefix)]
    assert lines, f"no line starting with {prefix!r} in:\n{stdout}"
    return lines[-1].split(":", 1)[1].strip()


def test_demo_recommendations_cover_every_user_with_full_sorted_lists(demo_run):
    result, data = demo_run
    recs = pq.read_table(_printed(result.stdout, "recommendations")).to_pandas()
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    users = set(
        con.execute(
            "SELECT DISTINCT user_id FROM search_queries WHERE query_ts >= ? AND query_ts < ?::DATE + 1",
            [config.DEMO_RECOMMEND_START, config.DEMO_RECOMMEND_END],
        )
        .fetchnumpy()["user_id"]
        .tolist()
    )
    snapshot_items = _nearest_snapshot_items(data, config.DEMO_RECOMMEND_END)
    expected_k = min(config.TOP_K, len(snapshot_items))

    served = set(recs["user_id"].tolist())
    assert recs["user_id"].is_unique
    # Users whose every query was dirt (digits, links, emoji ...) have nothing left to recommend from.
    assert served <= users and len(served) >= 0.8 * len(users)
    for nm_ids, scores in zip(recs["nm_ids"], recs["scores"], strict=True):
        assert len(nm_ids) == expected_k == len(set(nm_ids))
        assert set(nm_ids) <= snapshot_items
        assert np.all(np.diff(np.asarray(scores)) <= 1e-6)


def test_demo_prints_the_metrics_of_the_metrics_artifact(demo_run):
    result, _ = demo_run
    run_dir = Path(_printed(result.stdout, "local run"))
    [executor_output] = [p for p in run_dir.glob("*/*/executor_output.json") if p.parent.name == "train"]
    body = json.loads(executor_output.read_text())
    metrics = body["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert float(_printed(result.stdout, "Recall@200 model")) == pytest.approx(
        metrics["model_recall_at_200"], abs=5e-5
    )
    assert float(_printed(result.stdout, "Recall@200 popularity")) == pytest.approx(
        metrics["popularity_recall_at_200"], abs=5e-5
    )
    # tiny's catalogue is smaller than 200: a ceiling below the model would be printed without this
    items = int(metrics["catalogue_items"])
    assert items <= 200 and metrics["model_recall_at_200"] >= metrics["ceiling_recall_at_200"]
    assert _printed(result.stdout, "Recall@200 ceiling").startswith(
        f"not comparable: the catalogue holds only {items} items"
    )


def test_demo_backtest_agrees_with_the_ground_truth(demo_run):
    """The backtest task (warehouse orders after the recommendation day) against the same figures counted
    on the generator's ground-truth purchases. Stated tolerance: 1e-6 (Metrics are rounded to 6 places);
    the warehouse's orders are the generator's purchases, so any larger gap is a bug in the window or joins."""
    result, data = demo_run
    run_dir = Path(_printed(result.stdout, "local run"))
    [out] = [p for p in run_dir.glob("*/*/executor_output.json") if p.parent.name.startswith("backtest")]
    metrics = json.loads(out.read_text())["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    recs = pq.read_table(_printed(result.stdout, "recommendations")).to_pandas()
    lists = {int(u): list(n) for u, n in zip(recs["user_id"], recs["nm_ids"], strict=True)}
    truth = pq.read_table(data / "ground_truth" / "purchases.parquet").to_pandas()
    start = pd.Timestamp(config.DEMO_BACKTEST_START)
    window = truth[
        (truth["order_ts"] >= start)
        & (truth["order_ts"] < start + pd.Timedelta(days=config.DEMO_BACKTEST_DAYS))
    ]
    pairs = {
        (int(u), int(i)) for u, i in zip(window["user_id"], window["nm_id"], strict=True) if int(u) in lists
    }
    assert pairs and metrics["purchases"] == len(pairs)
    for k in (10, 200):
        hits = {(u, i) for u, i in pairs if i in lists[u][:k]}
        assert metrics[f"recall_at_{k}"] == pytest.approx(len(hits) / len(pairs), abs=1e-6)
        users = {u for u, _ in pairs}
        assert metrics[f"hit_rate_at_{k}"] == pytest.approx(len({u for u, _ in hits}) / len(users), abs=1e-6)
    assert 0 < metrics["users_served_share"] <= 1 and 0 < metrics["coverage_at_200"] <= 1


def test_demo_copies_the_merged_shards_under_its_output_root(demo_run):
    """Two shards: the merge task publishes <output root>/<recommend end>-<task id>/ and LATEST.json."""
    from searchrec.outputs import LATEST, MARKER, latest_output, read_latest

    result, _ = demo_run
    merged = Path(_printed(result.stdout, "recommendations"))
    assert merged.parent.parent.name == "merge-recommendations"
    root = Path(_printed(result.stdout, "local run")).parents[1] / "out"
    copy = Path(latest_output(str(root)))
    assert copy.name.startswith(config.DEMO_RECOMMEND_END + "-")
    assert sorted(p.name for p in root.iterdir()) == sorted([copy.name, LATEST, MARKER])
    assert pq.read_table(copy / merged.name).equals(pq.read_table(merged))
    pointer = read_latest(str(root))
    assert pointer["end_date"] == config.DEMO_RECOMMEND_END and pointer["source"] == str(merged.parent)
    assert pointer["users"] == pq.read_metadata(merged).num_rows
    assert _printed(result.stdout, "published to").startswith(str(copy) + " ")


def test_demo_report_is_html(demo_run):
    result, _ = demo_run
    report = Path(_printed(result.stdout, "report"))
    assert report.suffix == ".html"  # opens in a browser as a page, not as text
    artifact = Path(_printed(result.stdout, "HTML artifact of the train task"))
    text = report.read_text() if report.is_file() else ""
    assert text == artifact.read_text()
    assert "<html" in text.lower() and "Recall@200" in text and "<svg" in text


def test_bad_window_fails_with_one_line(tiny_demo, tmp_path):
    result = _cli(
        "run",
        "--pipeline",
        "training",
        *_sources(tiny_demo),
        "--train-start",
        "2026-13-01",
        "--train-end",
        "2026-10-07",
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "2026-13-01" in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[-1]


def _nearest_snapshot_items(data: Path, date: str) -> set[int]:
    import datetime as dt

    target = dt.date.fromisoformat(date)
    parts = sorted((data / "embeddings").glob("dt=*"))
    best = min(parts, key=lambda p: abs((dt.date.fromisoformat(p.name[3:]) - target).days))
    return set(pq.read_table(best, columns=["nm_id"]).column("nm_id").to_pylist())


def test_recommend_pipeline_imports_the_trained_model_and_one_shard_equals_two(demo_run, tmp_path):
    """The recommend pipeline takes the demo's trained model by URI (dsl.importer) and, with one shard (a
    single infer task, no merge), gives the same recommendations as the demo's two-shard run, and copies
    them to --output-uri."""
    result, data = demo_run
    run_dir = Path(_printed(result.stdout, "local run"))
    [model_dir] = [p for p in run_dir.glob("*/train/model") if p.is_dir()]
    rec = _cli(
        "run",
        "--pipeline",
        "recommend",
        *_sources(data),
        "--model-uri",
        str(model_dir),
        "--recommend-start",
        config.DEMO_RECOMMEND_START,
        "--recommend-end",
        config.DEMO_RECOMMEND_END,
        "--num-shards",
        "1",
        "--output-uri",
        str(tmp_path / "copy"),
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert rec.returncode == 0, rec.stdout[-3000:] + rec.stderr[-6000:]
    written = Path(_printed(rec.stdout, "recommendations"))
    assert written.parent.parent.name == "infer"  # one shard: the single infer task wrote the dataset
    # the copy: its own sub-folder of the output root, named by the window's end, and LATEST.json naming it
    from searchrec.outputs import LATEST, MARKER, latest_output

    copy = Path(latest_output(str(tmp_path / "copy")))
    assert copy.parent == tmp_path / "copy" and copy.name.startswith(config.DEMO_RECOMMEND_END + "-")
    assert sorted(p.name for p in copy.parent.iterdir()) == sorted([copy.name, LATEST, MARKER])
    assert pq.read_table(copy / written.name).equals(pq.read_table(written))
    [executor_output] = Path(_printed(rec.stdout, "local run")).glob("*/infer/executor_output.json")
    recs = json.loads(executor_output.read_text())["artifacts"]["recommendations"]["artifacts"][0]
    assert recs["metadata"]["copied_to"] == str(copy)
    lineage = _cli("lineage", str(tmp_path / "copy"), cwd=tmp_path)
    assert lineage.returncode == 0, lineage.stderr
    assert lineage.stdout.startswith(f"output {copy} ({LATEST} of {tmp_path / 'copy'})")
    assert "run recommend-" in lineage.stdout  # back to the local run that wrote it
    one = pq.read_table(written).to_pandas().sort_values("user_id")
    two = pq.read_table(_printed(result.stdout, "recommendations")).to_pandas().sort_values("user_id")
    assert one["user_id"].tolist() == two["user_id"].tolist()
    assert [list(x) for x in one["nm_ids"]] == [list(x) for x in two["nm_ids"]]
    np.testing.assert_allclose(np.concatenate(one["scores"]), np.concatenate(two["scores"]), atol=1e-5)
    assert "Recall@200" not in rec.stdout  # no training, no holdout metrics


def test_artifacts_carry_lineage_metadata(demo_run):
    """What the lineage view shows: window, snapshot date, encoder and commit on the artifacts themselves."""
    result, data = demo_run
    run_dir = Path(_printed(result.stdout, "local run"))

    def outputs(task: str) -> dict:
        [path] = [p for p in run_dir.glob(f"*/{task}/executor_output.json")]
        return {k: v["artifacts"][0] for k, v in json.loads(path.read_text())["artifacts"].items()}

    model = outputs("train")["model"]["metadata"]
    assert (model["train_start"], model["train_end"]) == (config.DEMO_TRAIN_START, config.DEMO_TRAIN_END)
    assert model["encoder"] == str(data / "encoder") and model["git_commit"]
    from searchrec.artifacts import encoded
    from searchrec.encoder import encoder_checksum

    checksum = encoder_checksum(data / "encoder")
    encodes = sorted(run_dir.glob("*/encode*/executor_output.json"))
    assert len(encodes) == 2  # training and serving branch
    for path in encodes:
        out = json.loads(path.read_text())["artifacts"]["encoded"]["artifacts"][0]
        assert out["metadata"]["encoder_checksum"] == checksum
        assert encoded.read_info(Path(out["uri"].removeprefix("file://")))["encoder_checksum"] == checksum
    assert model["encoder_checksum"] == checksum
    config_json = json.loads((Path(outputs("train")["model"]["uri"]) / "config.json").read_text())
    assert config_json["extra"]["train_start"] == config.DEMO_TRAIN_START
    snapshot = outputs("extract-snapshot")["snapshot"]["metadata"]
    assert snapshot["snapshot_date"] == model["snapshot_date"] and snapshot["pinned"] is False
    events = outputs("extract-training-events")["events"]["metadata"]
    assert events["rows"] > 0 and events["git_commit"] == model["git_commit"]
