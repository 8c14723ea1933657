"""Compilation of the three pipelines, inspected as the YAML a cluster would receive."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines import PIPELINES, compile_pipeline
from searchrec import config
from searchrec.errors import SearchrecError

STAGE_OF_COMPONENT = {
    "extract-training-events": "extract",
    "extract-inference-events": "extract",
    "extract-snapshot": "extract",
    "clean-training": "clean",
    "clean-inference": "clean",
    "encode": "encode",
    "train": "train",
    "build-index": "index",
    "shard-indices": "clean",
    "infer": "infer",
    "merge-recommendations": "infer",
    "promote": "train",
    "resolve-model": "extract",  # a CPU task: object-storage clients, no torch
    "window-cache-key": "clean",
    "backtest": "extract",
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("compiled")
    return {
        name: next(yaml.safe_load_all(compile_pipeline(name, out / f"{name}.yaml").read_text()))
        for name in PIPELINES
    }


def _executors(spec: dict) -> dict[str, dict]:
    return spec["deploymentSpec"]["executors"]


def test_every_component_runs_its_stage_image_and_installs_nothing(compiled):
    for name, spec in compiled.items():
        for executor_name, executor in _executors(spec).items():
            if "importer" in executor:
                continue
            component = executor_name.removeprefix("exec-")
            stage = STAGE_OF_COMPONENT[component.rsplit("-", 1)[0] if component[-1].isdigit() else component]
            container = executor["container"]
            assert container["image"] == config.image(stage), (name, component)
            command = " ".join(container["command"])
            assert "pip install" not in command, (name, component)


def test_window_and_sizes_are_pipeline_parameters(compiled):
    for name in ("training", "recommend"):
        params = compiled[name]["root"]["inputDefinitions"]["parameters"]
        assert {"start_date", "end_date", "warehouse_uri", "embeddings_uri", "encoder"} <= set(params)
    assert {"max_items", "min_item_count", "epochs"} <= set(
        compiled["training"]["root"]["inputDefinitions"]["parameters"]
    )
    assert "model_uri" in compiled["recommend"]["root"]["inputDefinitions"]["parameters"]
    demo = compiled["demo"]["root"]["inputDefinitions"]["parameters"]
    assert {"train_start_date", "train_end_date", "recommend_start_date", "recommend_end_date"} <= set(demo)
    assert demo["max_items"]["defaultValue"] == config.MAX_ITEMS


def _importer_params(pipeline: dict) -> dict[str, str]:
    """Importer task -> the pipeline parameter its URI comes from."""
    tasks = pipeline["root"]["dag"]["tasks"]
    return {
        name: task["inputs"]["parameters"]["uri"]["componentInputParameter"]
        for name, task in tasks.items()
        if name.startswith("importer")
    }


def test_recommend_resolves_the_model_at_run_time_and_imports_the_encoder(compiled):
    """model_uri (a model folder or a registry root) is resolved by a task at run time, not imported as it
    is: the resolved model is that task's output artifact, which every model consumer takes."""
    executors = _executors(compiled["recommend"])
    importers = [e["importer"] for e in executors.values() if "importer" in e]
    assert len(importers) == 1 and importers[0]["typeSchema"]["schemaTitle"] == "system.Model"
    assert list(_importer_params(compiled["recommend"]).values()) == ["encoder"]
    tasks = compiled["recommend"]["root"]["dag"]["tasks"]
    resolve = tasks["resolve-model"]
    assert resolve["inputs"]["parameters"]["model_uri"]["componentInputParameter"] == "model_uri"
    assert resolve["cachingOptions"].get("enableCache") is not True  # CURRENT may have moved
    consumers = [
        t
        for component in compiled["recommend"]["components"].values()
        for t in component.get("dag", {}).get("tasks", {}).values()
        if "model" in t.get("inputs", {}).get("artifacts", {})
    ] + [t for t in tasks.values() if "model" in t.get("inputs", {}).get("artifacts", {})]
    assert consumers
    for task in consumers:
        model = task["inputs"]["artifacts"]["model"]
        source = model.get("taskOutputArtifact", {}).get("producerTask") or model["componentInputArtifact"]
        assert source in ("resolve-model", "pipelinechannel--resolve-model-model")


def test_training_ends_with_a_promote_step_only_where_a_registry_is_given(compiled):
    spec = compiled["training"]
    branch = _branch(spec, "['pipelinechannel--models_uri']!=''")
    assert list(branch) == ["promote"]
    promote = branch["promote"]
    assert promote["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert set(promote["inputs"]["artifacts"]) == {"model", "report", "encoded", "examples", "snapshot"}
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["min_lift"]["defaultValue"] == config.PROMOTE_MIN_LIFT
    assert params["max_regression"]["defaultValue"] == config.PROMOTE_MAX_REGRESSION


def test_every_pipeline_takes_its_encoder_through_an_importer(compiled):
    for name, pipeline in compiled.items():
        params = _importer_params(pipeline)
        assert "encoder" in params.values(), name
        [importer] = [task for task, param in params.items() if param == "encoder"]
        encode_tasks = [t for key, t in pipeline["root"]["dag"]["tasks"].items() if key.startswith("encode")]
        assert encode_tasks, name
        for task in encode_tasks:
            assert task["inputs"]["artifacts"]["encoder"]["taskOutputArtifact"]["producerTask"] == importer


def _branch(spec: dict, condition: str) -> dict[str, dict]:
    """Tasks of the condition branch whose trigger condition ends with `condition`."""
    for component in [spec["root"], *spec["components"].values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            trigger = task.get("triggerPolicy", {}).get("condition", "")
            if trigger.replace(" ", "").endswith(condition):
                return spec["components"][task["componentRef"]["name"]]["dag"]["tasks"]
    raise AssertionError(f"no branch with condition ...{condition}")


def test_one_shard_is_one_task_and_several_fan_out_and_join(compiled):
    for name in ("recommend", "demo"):
        spec = compiled[name]
        single = _branch(spec, "['pipelinechannel--num_shards'])==1")
        assert sorted(single) == (["backtest", "infer"] if name == "demo" else ["infer"]), name
        assert single["infer"]["inputs"]["parameters"]["shard_index"]["runtimeValue"]["constant"] == 0
        assert "output_uri" in single["infer"]["inputs"]["parameters"]

        sharded = _branch(spec, "['pipelinechannel--num_shards'])==1)")
        loops = {key: t for key, t in sharded.items() if "parameterIterator" in t}
        assert len(loops) == 1, name
        [(loop_key, loop)] = loops.items()
        loop_dag = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
        [per_shard] = [t for key, t in loop_dag.items() if key.startswith("infer")]
        assert "output_uri" not in per_shard["inputs"].get("parameters", {})
        merge = sharded["merge-recommendations"]["inputs"]["artifacts"]["shards"]
        assert merge["taskOutputArtifact"]["producerTask"] == loop_key
        if name == "demo":  # the demo backtests whichever branch served the recommendations
            for branch, producer in ((single, "infer"), (sharded, "merge-recommendations")):
                [task] = [t for key, t in branch.items() if key.startswith("backtest")]
                recs = task["inputs"]["artifacts"]["recommendations"]["taskOutputArtifact"]
                assert recs["producerTask"] == producer


def test_training_pipeline_is_the_diagram(compiled):
    tasks = compiled["training"]["root"]["dag"]["tasks"]
    deps = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert deps["clean-training"] == {"extract-training-events", "extract-snapshot"}
    [encoder_import] = _importer_params(compiled["training"])
    assert deps["encode"] == {"clean-training", encoder_import}
    assert deps["train"] == {"encode", "clean-training", "extract-snapshot"}
    assert deps["build-index"] == {"train", "extract-snapshot", "encode"}  # encoded histories tune recall


def test_unknown_pipeline_is_refused(tmp_path: Path):
    with pytest.raises(SearchrecError, match="unknown pipeline"):
        compile_pipeline("nope", tmp_path / "x.yaml")


def test_the_demo_indexes_only_the_serving_snapshot(compiled):
    """The demo serves from the index over its serving snapshot; an index over the training snapshot would
    be built and never read (the training pipeline keeps its own as an output)."""
    from pipelines.common import SERVING

    def index_tasks(spec: dict) -> list[dict]:
        dags = [spec["root"], *spec["components"].values()]
        return [
            t
            for dag in dags
            for key, t in dag.get("dag", {}).get("tasks", {}).items()
            if key.startswith("build-index")
        ]

    [demo_index] = index_tasks(compiled["demo"])
    assert demo_index["taskInfo"]["name"].startswith(SERVING)
    assert len(index_tasks(compiled["training"])) == 1


def test_resource_settings_on_a_task_without_a_container_are_refused_naming_the_method() -> None:
    """pipelines replaces kfp's check (inspect.stack() on every set_* call: a second per pipeline build)
    with one that names the caller from its frame; the refusal and its message stay kfp's."""
    from kfp import dsl

    import pipelines

    pipelines.pipeline("demo")  # installs the cheap check
    from kfp.dsl import pipeline_task

    assert pipeline_task.PipelineTask._ensure_container_spec_exists._searchrec

    def with_limits():  # no annotations: kfp reads them as strings under `from __future__ import annotations`
        task = dsl.importer(artifact_uri="gs://bucket/x", artifact_class=dsl.Model)
        task.set_memory_limit("1G")

    with pytest.raises(ValueError, match=r"^set_memory_limit can only be used on single-step components"):
        dsl.pipeline(name="importer-with-limits")(with_limits)  # building the graph runs the function
