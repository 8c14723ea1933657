"""What the KFP UI shows, read from the compiled YAML: parameter descriptions, task names that say what
each task does and for which branch, declared pipeline outputs, the clean funnel as Markdown."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines import compile_all
from pipelines.docs import PARAMETERS


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("compiled")
    return {Path(p).stem: next(yaml.safe_load_all(Path(p).read_text())) for p in compile_all(out)}


def _tasks(spec: dict) -> dict[str, dict]:
    """Every container or importer task (not condition / loop groups), by task key."""
    out = {}
    for component in [spec["root"], *spec["components"].values()]:
        for key, task in component.get("dag", {}).get("tasks", {}).items():
            ref = task["componentRef"]["name"]
            if not ref.startswith(("comp-condition", "comp-for-loop")):
                out[key] = task
    return out


def test_every_parameter_has_its_description(specs):
    for name, spec in specs.items():
        params = spec["root"]["inputDefinitions"]["parameters"]
        for param, definition in params.items():
            assert definition.get("description") == PARAMETERS[param].strip(), (name, param)


def test_every_task_says_what_it_does_and_for_which_branch(specs):
    for name, spec in specs.items():
        tasks = _tasks(spec)
        for key, task in tasks.items():
            display = task["taskInfo"]["name"]
            assert display != key, (name, key)  # not the function's name
            if not key.startswith("importer"):
                assert display.startswith(("training: ", "serving: ")), (name, display)
    demo = [t["taskInfo"]["name"] for t in _tasks(specs["demo"]).values()]
    assert len(demo) == len(set(demo))  # the two encode / snapshot / index tasks are told apart
    assert {"training: encode each distinct query once", "serving: encode each distinct query once"} <= set(
        demo
    )


def test_pipelines_declare_their_outputs(specs):
    outputs = {n: set(s["root"].get("outputDefinitions", {}).get("artifacts", {})) for n, s in specs.items()}
    assert outputs == {
        "training": {"model", "metrics", "index"},
        "recommend": {"model", "recommendations"},
        "demo": {"model", "metrics", "recommendations"},
    }
    selectors = specs["recommend"]["root"]["dag"]["outputs"]["artifacts"]["recommendations"]
    # the final dataset comes from whichever ran: the single infer task or the merge of the shards
    [(_, group)] = [
        (k, v) for k, v in specs["recommend"]["components"].items() if k.startswith("comp-condition-branches")
    ]
    assert selectors["artifactSelectors"][0]["producerSubtask"].startswith("condition-branches")
    producers = {
        s["producerSubtask"] for s in group["dag"]["outputs"]["artifacts"].popitem()[1]["artifactSelectors"]
    }
    assert len(producers) == 2


def test_clean_shows_its_funnel_as_markdown_beside_the_metrics(specs):
    for name in ("training", "recommend"):
        comps = specs[name]["components"]
        [clean] = [c for k, c in comps.items() if k.startswith("comp-clean")]
        outputs = clean["outputDefinitions"]["artifacts"]
        assert outputs["funnel"]["artifactType"]["schemaTitle"] == "system.Metrics"
        assert outputs["funnel_table"]["artifactType"]["schemaTitle"] == "system.Markdown"
