"""The command line against a cluster (the loopback KFP API server): --cache/--no-cache, the UI link that
submit prints, `searchrec runs --host`, and a KFP host with a Vertex project refused."""

import pytest

from searchrec import config, submit
from searchrec.cli import main
from tests.kfp_api_server import KfpApiServer

WINDOW = {"start_date": "2026-09-01", "end_date": "2026-10-07"}
# What a cluster run needs besides the window (production defaults are empty unless settings give them)
CLUSTER = {
    "encoder": "gs://ml-platform-models/encoders/rubert-tiny2",
    "warehouse_uri": "postgresql://gp-master.internal:5432/dwh",
    "embeddings_uri": "gs://ml-platform-bert4rec/nm_embeddings",
}
CLUSTER_ARGS = [arg for name, value in CLUSTER.items() for arg in ("--param", f"{name}={value}")]


@pytest.fixture()
def server():
    with KfpApiServer() as srv:
        yield srv
        assert srv.all_errors() == []


def _caching(body: dict) -> dict[str, bool]:
    spec = body["pipeline_spec"]["pipeline_spec"]
    return {
        name: bool(task.get("cachingOptions", {}).get("enableCache"))
        for comp in [spec["root"], *spec["components"].values()]
        for name, task in comp.get("dag", {}).get("tasks", {}).items()
    }


def test_cache_keeps_the_compiled_settings_and_no_cache_turns_every_task_off(server):
    submit.submit("training", host=server.url, tag=config.IMAGE_TAG, params=CLUSTER, **WINDOW)
    submit.submit(
        "training", host=server.url, tag=config.IMAGE_TAG, params=CLUSTER, enable_caching=False, **WINDOW
    )
    cached, uncached = (_caching(r.body) for r in server.calls("POST", "/apis/v2beta1/runs"))
    assert cached["extract-training-events"] and cached["encode"]
    assert not cached["promote"] and not cached["window-cache-key"]
    assert not any(uncached.values())


def test_command_line_cache_options_reach_the_run(server, capsys):
    args = ["--pipeline", "training", "--start-date", "2026-09-01", "--end-date", "2026-10-07", *CLUSTER_ARGS]
    assert main(["submit", *args, "--host", server.url, "--tag", config.IMAGE_TAG, "--no-cache"]) == 0
    assert main(["submit", *args, "--host", server.url, "--cache-lag-days", "5"]) == 0
    first, second = (r.body for r in server.calls("POST", "/apis/v2beta1/runs"))
    assert not any(_caching(first).values())
    assert _caching(second)["extract-training-events"]
    assert "cache_lag_days" not in first["runtime_config"]["parameters"]  # the compiled default
    assert second["runtime_config"]["parameters"]["cache_lag_days"] == 5


def test_submit_prints_the_run_and_its_ui_link_and_runs_lists_it(server, capsys):
    args = ["--pipeline", "training", "--start-date", "2026-09-01", "--end-date", "2026-10-07", *CLUSTER_ARGS]
    assert main(["submit", *args, "--host", server.url, "--tag", config.IMAGE_TAG]) == 0
    run_id, link = capsys.readouterr().out.strip().splitlines()[-2:]  # kfp.Client prints its own lines first
    assert run_id in server.runs and link == f"UI: {server.url}/#/runs/details/{run_id}"

    assert main(["runs", "--host", server.url]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:4] == ["run_id", "pipeline", "window", "state"]
    assert row.split()[:4] == [run_id, "searchrec-training", "2026-09-01..2026-10-07", "SUCCEEDED"]
    assert row.endswith(f"{server.url}/#/runs/details/{run_id}")


def test_kfp_host_and_vertex_project_together_is_an_error(server, capsys):
    args = ["--pipeline", "training", "--start-date", "2026-09-01", "--end-date", "2026-10-07", *CLUSTER_ARGS]
    assert main(["submit", *args, "--host", server.url, "--vertex-project", "ml-platform"]) == 1
    assert "not both" in capsys.readouterr().err
    assert server.calls("POST", "/apis/v2beta1/runs") == []


def test_vertex_job_link_is_the_console_page():
    from searchrec.runs import ui_link

    job = "projects/ml-platform/locations/europe-west4/pipelineJobs/searchrec-training-2026"
    assert ui_link(job) == (
        "https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/runs/"
        "searchrec-training-2026?project=ml-platform"
    )
