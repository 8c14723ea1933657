"""Compile targets: `searchrec compile --platform kfp|vertex`, per-platform accelerator names and specs."""

from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format

from searchrec import config
from searchrec.cli import main
from searchrec.errors import SearchrecError
from searchrec.submit import CHECK_PIPELINE_NAMES, PIPELINE_NAMES, compile_pipelines

TAG = "feed42"
ALL = (*PIPELINE_NAMES, *CHECK_PIPELINE_NAMES)  # what `searchrec compile` writes


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """`searchrec compile --platform kfp` and `--platform vertex`, as CI runs them."""
    out = tmp_path_factory.mktemp("compiled")
    mp = pytest.MonkeyPatch()
    mp.setenv("SEARCHREC_IMAGE_TAG", TAG)
    mp.setattr(config, "IMAGE_TAG", TAG)
    try:
        for platform in ("kfp", "vertex"):
            assert main(["compile", "--platform", platform, "--out", str(out)]) == 0
    finally:
        mp.undo()
    return out


def _executors(spec: dict) -> dict[str, dict]:
    return spec["deploymentSpec"]["executors"]


def _stage(executor: dict) -> str:
    return executor["container"]["image"].rsplit("/searchrec-", 1)[1].split(":")[0]


def test_compile_writes_one_folder_per_platform(compiled):
    for platform in ("kfp", "vertex"):
        assert sorted(p.name for p in (compiled / platform).iterdir()) == sorted(f"{n}.yaml" for n in ALL)


def test_kfp_yaml_is_pipeline_spec_plus_platform_spec(compiled):
    from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    for name in ALL:
        docs = _docs(compiled / "kfp" / f"{name}.yaml")
        assert len(docs) == 2, name
        json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())  # raises on an unknown field
        platform = json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())
        executors = platform.platforms["kubernetes"].deployment_spec.executors
        assert executors, name
        for config_struct in executors.values():
            # each executor's settings are a valid kfp-kubernetes KubernetesExecutorConfig
            json_format.ParseDict(
                json_format.MessageToDict(config_struct), k8s_pb2.KubernetesExecutorConfig()
            )


def test_kfp_gpu_tasks_ask_for_the_kubernetes_resource_and_the_gpu_pool(compiled):
    kfp_settings = config.platform("kfp")
    label, value = kfp_settings.node_selector()
    for name in ALL:
        spec, platform = _docs(compiled / "kfp" / f"{name}.yaml")
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for executor_name, executor in _executors(spec).items():
            if "container" not in executor:
                continue
            stage, resources = _stage(executor), executor["container"]["resources"]
            pod = k8s.get(executor_name, {})
            where = (name, executor_name)
            if stage in config.GPU_STAGES:
                assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu", where
                assert resources["accelerator"]["resourceCount"] == "1", where
                assert pod["nodeSelector"]["labels"] == {label: value}, where
                assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
                    "tolerations"
                ], where
            else:
                assert "accelerator" not in resources, where
                assert "nodeSelector" not in pod and "tolerations" not in pod, where


def test_vertex_gpu_tasks_ask_for_a_machine_accelerator_and_nothing_of_kubernetes(compiled):
    for name in ALL:
        docs = _docs(compiled / "vertex" / f"{name}.yaml")
        assert len(docs) == 1, name
        gpu_tasks = 0
        for executor_name, executor in _executors(docs[0]).items():
            if "container" not in executor:
                continue
            resources = executor["container"]["resources"]
            if _stage(executor) in config.GPU_STAGES:
                gpu_tasks += 1
                assert resources["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4", (name, executor_name)
                assert resources["accelerator"]["type"] == "NVIDIA_TESLA_T4", (name, executor_name)
            else:
                assert "accelerator" not in resources, (name, executor_name)
        assert gpu_tasks >= 3, name
        assert "nvidia.com/gpu" not in (compiled / "vertex" / f"{name}.yaml").read_text()


WINDOW_START = {"demo": "train_start_date", "preflight": "date"}


def _vertex_job(template: Path):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    return aiplatform.PipelineJob(
        display_name="searchrec-test",
        template_path=str(template),
        pipeline_root="gs://ml-platform-pipelines/searchrec",
        parameter_values={WINDOW_START.get(template.stem, "start_date"): "2026-10-01"},
        credentials=AnonymousCredentials(),
        project="ml-platform",
        location="europe-west4",
    )


def test_vertex_yaml_is_accepted_by_pipeline_job_offline(compiled):
    for name in ALL:
        job = _vertex_job(compiled / "vertex" / f"{name}.yaml")
        assert job._gca_resource.pipeline_spec["pipelineInfo"]["name"] == f"searchrec-{name}"
    # the Kubeflow build is two documents: exactly what Vertex AI cannot take
    with pytest.raises(yaml.YAMLError, match="single document"):
        _vertex_job(compiled / "kfp" / "training.yaml")


def test_accelerator_and_node_pool_come_from_the_settings_at_compile_time(tmp_path):
    env = {"SEARCHREC_VERTEX_ACCELERATOR": "NVIDIA_L4"}
    (vertex,) = compile_pipelines(["training"], tmp_path / "v", tag=TAG, platform="vertex", env=env)
    accelerators = {
        e["container"]["resources"]["accelerator"]["resourceType"]
        for e in _executors(_docs(vertex)[0]).values()
        if "container" in e and "accelerator" in e["container"]["resources"]
    }
    assert accelerators == {"NVIDIA_L4"}

    env = {"SEARCHREC_KFP_GPU_NODE_SELECTOR": "cloud.google.com/gke-accelerator=nvidia-l4"}
    (kfp_yaml,) = compile_pipelines(["training"], tmp_path / "k", tag=TAG, platform="kubeflow", env=env)
    k8s = _docs(kfp_yaml)[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert k8s["exec-train"]["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}


def test_unknown_platform_is_one_line(capsys, monkeypatch):
    with pytest.raises(SearchrecError, match="unknown platform 'argo'"):
        config.platform("argo")
    monkeypatch.setenv(config.PLATFORM_ENV, "argo")
    assert main(["compile", "--out", "unused"]) == 1
    assert "unknown platform 'argo'" in capsys.readouterr().err
    bad = config.PlatformSettings("kfp", "nvidia.com/gpu", "no-equals-sign", "", True, False, False)
    with pytest.raises(SearchrecError, match="label=value"):
        bad.node_selector()
