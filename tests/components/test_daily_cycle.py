"""The daily cycle with kfp.local on small generated data: train and promote, retrain with a worse setting
(cached up to encode, published but not promoted), recommend from the registry root."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from searchrec import config, registry
from tests.tiny_world import run_sources as sources

pytestmark = pytest.mark.slow

SMALL = "small-test"  # 600 items: more than 200, so Recall@200 can tell models apart (tiny has 150)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    from searchrec import demo_data
    from searchrec.encoder import build_standin_encoder

    out = tmp_path_factory.mktemp("demo") / "data"
    demo_data.SIZES[SMALL] = replace(demo_data.SIZES["tiny"], users=2000, items=600)
    try:
        demo_data.generate(out, size=SMALL, seed=0)
    finally:
        del demo_data.SIZES[SMALL]
    build_standin_encoder(demo_data.query_texts(out), out / "encoder", seed=0)
    return out


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "searchrec.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def printed(stdout: str, prefix: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith(prefix)]
    assert lines, f"no line starting with {prefix!r} in:\n{stdout}"
    return lines[-1].split(":", 1)[1].strip()


def tasks_run(run_dir: Path) -> set[str]:
    """Tasks that executed in a local run (a cache hit writes nothing under the run's folder)."""
    return {p.parent.name for p in run_dir.glob("*/*/executor_output.json")}


@pytest.fixture(scope="module")
def cycle(small_demo: Path, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("cycle")
    common = [*sources(small_demo), "--runs-dir", "runs", "--models-uri", "models", "--cache"]
    window = ["--train-start", "2026-09-01", "--train-end", "2026-10-07", "--min-item-count", "1"]
    # The gate is a parameter; on this small catalogue popularity alone reaches Recall@200 ~0.6.
    first = cli(
        "run", "--pipeline", "training", *common, *window, "--epochs", "3", "--min-lift", "1.2", cwd=work
    )
    # Same window, a deliberately worse setting; --min-lift 0 leaves the comparison with the current model
    # as the only check that can reject it.
    worse = ["--epochs", "1", "--learning-rate", "1e-6", "--min-lift", "0"]
    second = cli("run", "--pipeline", "training", *common, *window, *worse, cwd=work)
    serve = ["--recommend-start", config.DEMO_RECOMMEND_START, "--recommend-end", config.DEMO_RECOMMEND_END]
    recommend = cli("run", "--pipeline", "recommend", *common, *serve, "--num-shards", "1", cwd=work)
    return {"work": work, "data": small_demo, "first": first, "second": second, "recommend": recommend}


def test_first_model_is_promoted(cycle):
    root = cycle["work"] / "models"
    pointer = registry.read_pointer(str(root))
    assert pointer is not None and "promoted (now CURRENT)" in cycle["first"].stdout
    version = root / pointer["version"]
    assert pointer["version"].startswith("2026-10-07-")
    assert {p.name for p in version.iterdir()} >= {
        *registry.MODEL_FILES,
        *registry.SIDECAR_FILES,
        "report.html",
    }
    lineage = json.loads((version / registry.LINEAGE_FILE).read_text())
    assert lineage["model"]["train_start"] == "2026-09-01" and lineage["snapshot"]["snapshot_date"]


def test_worse_model_is_published_but_not_promoted(cycle):
    root = str(cycle["work"] / "models")
    published = {v["version"]: v for v in registry.versions(root)}
    assert len(published) == 2
    [rejected] = [v for v in published.values() if not v["current"]]
    assert rejected["status"] == "rejected"
    assert "below the current model's" in rejected["reason"]
    assert "published, NOT promoted" in cycle["second"].stdout


def test_rerun_with_other_epochs_reuses_extract_clean_and_encode(cycle):
    runs = sorted((cycle["work"] / "runs").glob("training-*"))
    assert len(runs) == 2
    assert {"extract-training-events", "extract-snapshot", "clean-training", "encode"} <= tasks_run(runs[0])
    assert tasks_run(runs[1]) == {"window-cache-key", "train", "build-index", "promote"}
    # the terminal shows one line per task (the runner's log is in the run folder)
    states = {line.split()[0]: line.split()[1] for line in cycle["second"].stdout.splitlines()[:12]}
    assert states["extract-training-events"] == states["clean-training"] == states["encode"] == "cached"
    assert states["train"] == states["promote"] == "done"
    assert len(cycle["second"].stdout.splitlines()) < 25
    assert "cache hit" in (runs[1] / "runner.log").read_text()


def test_recommend_from_the_registry_root_serves_the_current_model(cycle):
    run_dir = Path(printed(cycle["recommend"].stdout, "local run"))
    [executor_output] = run_dir.glob("*/infer/executor_output.json")
    recs = json.loads(executor_output.read_text())["artifacts"]["recommendations"]["artifacts"][0]
    current = registry.read_pointer(str(cycle["work"] / "models"))
    assert recs["metadata"]["model_version"] == current["version"]
    assert recs["metadata"]["model_uri"] == str(cycle["work"] / "models" / current["version"])
    assert (recs["metadata"]["train_start"], recs["metadata"]["train_end"]) == ("2026-09-01", "2026-10-07")
    assert pq.read_table(Path(printed(cycle["recommend"].stdout, "recommendations"))).num_rows > 0


def test_lineage_of_the_recommendations_goes_back_to_the_training_window(cycle):
    recs = printed(cycle["recommend"].stdout, "recommendations")
    out = cli("lineage", recs, cwd=cycle["work"]).stdout
    current = registry.read_pointer(str(cycle["work"] / "models"))["version"]
    assert f"model served: {cycle['work'] / 'models' / current}" in out
    assert "model trained on 2026-09-01..2026-10-07" in out  # the training window, from the registry
    assert "promoted: no current model" in out
    serving = f"{config.DEMO_RECOMMEND_START}..{config.DEMO_RECOMMEND_END}"
    assert f"extract-inference-events: window {serving}" in out  # the serving window
    assert "snapshot dt=2026-10-" in out
    from searchrec.encoder import encoder_checksum

    checksum = encoder_checksum(cycle["data"] / "encoder")  # a folder without a manifest: files digest
    assert checksum.startswith("files:")
    # the serving encode step and the model's training chain both name the exact encoder weights
    assert out.count(f"encoder {cycle['data'] / 'encoder'} [checksum {checksum}]") >= 2


def test_runs_lists_the_local_runs_with_state_recall_and_promotion(cycle):
    rows = json.loads(cli("runs", "--runs-dir", "runs", "--json", cwd=cycle["work"]).stdout)
    assert [r["pipeline"] for r in rows] == ["recommend", "training", "training"]  # newest first
    assert {r["state"] for r in rows} == {"SUCCEEDED"}
    assert [r["promoted"] for r in rows] == ["", "no", "yes"]
    assert rows[2]["recall_at_200"] > rows[1]["recall_at_200"]
    assert rows[1]["window"] == "2026-09-01..2026-10-07" and Path(rows[0]["link"]).is_dir()
    table = cli("runs", "--runs-dir", "runs", cwd=cycle["work"]).stdout.splitlines()
    assert table[0].split() == [
        "run_id",
        "pipeline",
        "window",
        "state",
        "started",
        "seconds",
        "recall_at_200",
        "promoted",
        "link",
    ]
    assert len(table) == 4
