"""--cache/--no-cache on cluster submissions, against the loopback KFP API server."""

import pytest

from searchrec import config, submit
from searchrec.cli import main
from tests.kfp_api_server import KfpApiServer

WINDOW = {"start_date": "2026-09-01", "end_date": "2026-10-07"}


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
    submit.submit("training", host=server.url, tag=config.IMAGE_TAG, **WINDOW)
    submit.submit("training", host=server.url, tag=config.IMAGE_TAG, enable_caching=False, **WINDOW)
    cached, uncached = (_caching(r.body) for r in server.calls("POST", "/apis/v2beta1/runs"))
    assert cached["extract-training-events"] and cached["encode"]
    assert not cached["promote"] and not cached["window-cache-key"]
    assert not any(uncached.values())


def test_command_line_cache_options_reach_the_run(server, capsys):
    args = ["--pipeline", "training", "--start-date", "2026-09-01", "--end-date", "2026-10-07"]
    assert main(["submit", *args, "--host", server.url, "--tag", config.IMAGE_TAG, "--no-cache"]) == 0
    assert main(["submit", *args, "--host", server.url, "--cache-lag-days", "5"]) == 0
    first, second = (r.body for r in server.calls("POST", "/apis/v2beta1/runs"))
    assert not any(_caching(first).values())
    assert _caching(second)["extract-training-events"]
    assert first["runtime_config"]["parameters"]["cache_lag_days"] == config.CACHE_LAG_DAYS
    assert second["runtime_config"]["parameters"]["cache_lag_days"] == 5
