"""Preflight: each check on real parts (PostgreSQL, folders, the encoder), and the pipeline with kfp.local."""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psycopg2
import pytest
import yaml

from searchrec import config, preflight
from searchrec.cli import main
from searchrec.errors import SearchrecError
from tests.kfp_api_server import KfpApiServer

REPO = Path(__file__).resolve().parents[1]


def _check(name, fn, *args):
    return preflight.run_check("test", name, lambda: fn(*args))


def test_warehouse_check_reads_the_contract_columns_on_postgresql(pg_dsn, pg_load):
    pg_load(
        pd.DataFrame({"user_id": [1], "query_ts": [pd.Timestamp("2026-10-01")], "query_text": ["x"]}),
        "search_queries",
    )
    pg_load(pd.DataFrame({"user_id": [1], "order_ts": [pd.Timestamp("2026-10-01")], "nm_id": [7]}), "orders")
    ok = _check("warehouse", preflight.check_warehouse, pg_dsn)
    assert ok.ok and "search_queries (3 columns), orders (3 columns)" in ok.detail, ok.line
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE orders RENAME COLUMN nm_id TO item_id")
    bad = _check("warehouse", preflight.check_warehouse, pg_dsn)
    assert not bad.ok and bad.line == "FAIL test warehouse: table orders lacks column(s) nm_id"
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE search_queries")
    gone = _check("warehouse", preflight.check_warehouse, pg_dsn)
    assert not gone.ok and gone.detail.startswith("table search_queries: ") and "\n" not in gone.detail
    dead = _check("warehouse", preflight.check_warehouse, "postgresql://127.0.0.1:1/test")
    assert not dead.ok and "unreachable" in dead.detail


def test_embeddings_check_wants_a_partition_within_the_limit(tiny_demo):
    root = str(tiny_demo / "embeddings")
    near = _check("embeddings", preflight.check_embeddings, root, "2026-10-14", 14)
    assert near.ok and near.detail.startswith("dt=2026-10-12 ") and "2 day(s)" in near.detail
    far = _check("embeddings", preflight.check_embeddings, root, "2027-03-01", 14)
    assert not far.ok and "no embeddings snapshot within 14 days of 2027-03-01" in far.detail
    # a pinned partition is taken as it is, as extract takes it, however far from the date
    pinned = _check("embeddings", preflight.check_embeddings, f"{root}/dt=2026-10-12", "2027-03-01", 14)
    assert pinned.ok and pinned.detail.startswith("dt=2026-10-12 "), pinned.line


def test_encoder_check_loads_it_and_wants_its_manifest(tiny_demo, tmp_path):
    standin = str(tiny_demo / "encoder")
    assert _check("encoder", preflight.check_encoder, standin, False).ok
    unpublished = _check("encoder", preflight.check_encoder, standin, True)
    assert not unpublished.ok and "searchrec encoder publish" in unpublished.detail
    assert main(["encoder", "publish", standin, str(tmp_path / "published")]) == 0
    published = _check("encoder", preflight.check_encoder, str(tmp_path / "published"), True)
    assert published.ok and "manifest verified" in published.detail, published.line


def test_gpu_check_says_no_gpu_and_passes_only_when_allowed():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the no-GPU path cannot be seen here")
    strict = _check("gpu", preflight.check_gpu, False)
    assert not strict.ok and strict.detail.startswith("no GPU: torch sees 0 GPU(s), faiss sees 0")
    allowed = _check("gpu", preflight.check_gpu, True)
    assert allowed.ok and allowed.detail.startswith("no GPU (")


def test_image_check_finds_cpu_stages_free_of_torch():
    assert _check("image", preflight.check_image, "clean").detail.endswith(
        "(no torch, transformers or faiss)"
    )
    infer = _check("image", preflight.check_image, "infer")
    assert infer.ok and "torch" in infer.detail


def test_pipeline_root_probe_is_published_and_a_half_written_one_refused(tmp_path):
    assert _check("write", preflight.write_probe, tmp_path / "probe").ok
    assert _check("read", preflight.read_probe, tmp_path / "probe").ok
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / preflight.PROBE_FILE).write_text("{}")
    half = _check("read", preflight.read_probe, tmp_path / "half")
    assert not half.ok and "no _SEARCHREC_COMPLETE.json" in half.detail


def test_report_lists_every_check_and_the_first_failure_fails(tmp_path):
    checks = [
        preflight.Check("extract", "image", True, "fine"),
        preflight.Check("train", "gpu", False, "no GPU: torch sees 0 GPU(s) | faiss 0"),
    ]
    with pytest.raises(SearchrecError, match=r"^FAIL train gpu: no GPU"):
        preflight.finish(checks, tmp_path / "report", "t")
    rows = preflight.parse_report((tmp_path / "report").read_text())
    assert rows == [
        ("extract", "image", "PASS", "fine"),
        ("train", "gpu", "FAIL", r"no GPU: torch sees 0 GPU(s) \| faiss 0"),
    ]


# --- the pipeline ----------------------------------------------------------------------------------


def _preflight(data: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["preflight", "--local", "--date", "2026-10-14", "--runs-dir", str(workdir / "runs")]
    args += [
        "--warehouse-uri",
        f"duckdb:///{data / 'warehouse.duckdb'}",
        "--embeddings-uri",
        str(data / "embeddings"),
    ]
    args += ["--encoder", str(data / "encoder"), *extra]
    return subprocess.run(
        [sys.executable, "-m", "searchrec.cli", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_local_preflight_prints_one_line_per_check(tiny_demo, tmp_path):
    result = _preflight(tiny_demo, tmp_path, "--allow-no-gpu")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(("PASS ", "FAIL "))]
    checks = [" ".join(line.split()[:3]) for line in lines[-15:]]
    assert checks == [
        "PASS extract image:",
        "PASS extract warehouse:",
        "PASS extract embeddings:",
        "PASS extract pipeline",
        "PASS clean image:",
        "PASS clean pipeline",
        "PASS encode image:",
        "PASS encode gpu:",
        "PASS encode encoder:",
        "PASS train image:",
        "PASS train gpu:",
        "PASS index image:",
        "PASS index gpu:",
        "PASS infer image:",
        "PASS infer gpu:",
    ]
    report = Path(result.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    assert len(preflight.parse_report(report.read_text())) == 15


@pytest.mark.slow
def test_local_preflight_without_a_gpu_fails_on_its_own_line(tiny_demo, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = _preflight(tiny_demo, tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    # kfp.local runs the independent GPU tasks in no fixed order: whichever runs first fails the run
    assert re.fullmatch(
        r"searchrec: error: local preflight run failed: searchrec preflight (encode|train|index|infer) failed: "
        r"FAIL \1 gpu: no GPU: torch sees 0 GPU\(s\), faiss sees 0",
        last,
    ), last


def test_preflight_is_compiled_per_platform_with_each_stage_settings(tmp_path):
    from searchrec.submit import compile_pipelines

    (kfp_yaml,) = compile_pipelines(["preflight"], tmp_path / "kfp", tag="t", platform="kfp")
    spec, platform = [d for d in yaml.safe_load_all(kfp_yaml.read_text()) if d]
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for stage in config.STAGES:
        container = executors[f"exec-preflight-{stage}"]["container"]
        assert container["image"] == f"{config.IMAGE_REGISTRY}/searchrec-{stage}:t"
        assert container["resources"]["resourceMemoryLimit"] == config.STAGE_RESOURCES[stage].memory
        assert ("accelerator" in container["resources"]) == (stage in config.GPU_STAGES)
    assert config.WAREHOUSE_SECRET in {s["secretName"] for s in k8s["exec-preflight-extract"]["secretAsEnv"]}
    (vertex,) = compile_pipelines(["preflight"], tmp_path / "vertex", tag="t", platform="vertex")
    assert len([d for d in yaml.safe_load_all(vertex.read_text()) if d]) == 1


def test_preflight_submits_to_a_cluster_with_the_manifest_required():
    argv = ["preflight", "--date", "2026-10-14", "--tag", config.IMAGE_TAG]
    argv += ["--encoder", "gs://m/encoders/rubert-tiny2", "--warehouse-uri", "postgresql://gp:5432/dwh"]
    argv += ["--embeddings-uri", "gs://b/nm_embeddings"]
    with KfpApiServer() as server:
        assert main([*argv, "--host", server.url]) == 0
        (request,) = server.calls("POST", "/apis/v2beta1/runs")
        assert server.all_errors() == []
    params = request.body["runtime_config"]["parameters"]
    assert params["date"] == "2026-10-14" and params["require_encoder_manifest"] is True
    assert params["allow_no_gpu"] is False and params["encoder"] == "gs://m/encoders/rubert-tiny2"
