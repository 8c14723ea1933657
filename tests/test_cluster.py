"""Cluster settings in compiled YAML: per-task image, resources, accelerator, retry, caching, secrets."""

# no `from __future__ import annotations`: KFP reads the component signatures at decoration time

from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl

from pipelines.cluster import configure
from searchrec import config
from searchrec.errors import SearchrecError
from searchrec.secrets import PASSWORD_URI_RE
from searchrec.submit import PLATFORM_ENV, compile_pipelines, compiled_images

FAKE_PASSWORD = "s3cr3t-Hunter2-pw"
FAKE_AWS_SECRET = "wJalrXUtnFEMI-fake-aws-secret"
FAKE_TOKEN = "kfp-token-do-not-leak"
TEST_TAG = "cafe123"


@dsl.component(base_image=config.image("extract"), install_kfp_package=False)
def _extract(day: str, rows: dsl.Output[dsl.Dataset]):
    Path(rows.path).write_text(day)


@dsl.component(base_image=config.image("clean"), install_kfp_package=False)
def _clean(rows: dsl.Input[dsl.Dataset], cleaned: dsl.Output[dsl.Dataset]):
    Path(cleaned.path).write_text(Path(rows.path).read_text())


@dsl.component(base_image=config.image("train"), install_kfp_package=False)
def _train(rows: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model]):
    Path(model.path).write_text(Path(rows.path).read_text())


@dsl.component(base_image=config.image("infer"), install_kfp_package=False)
def _infer(model: dsl.Input[dsl.Model], output_uri: str):
    print(model.path, output_uri)


def _small_pipeline():
    @dsl.pipeline(name="cluster-settings")
    def small(day: str, output_uri: str):
        raw = configure(_extract(day=day), "extract", touches_network=True, cache=False)
        cleaned = configure(_clean(rows=raw.outputs["rows"]), "clean")
        trained = configure(_train(rows=cleaned.outputs["cleaned"]), "train")
        configure(
            _infer(model=trained.outputs["model"], output_uri=output_uri), "infer", touches_network=True
        )

    return small


def _compile(pipeline, path: Path) -> list[dict]:
    compiler.Compiler().compile(pipeline, package_path=str(path))
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _by_task(docs: list[dict]) -> dict[str, dict]:
    """task name -> {task, executor, k8s} of the root DAG."""
    spec = docs[0]
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    out = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        executor_name = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        out[name] = {
            "task": task,
            "container": spec["deploymentSpec"]["executors"][executor_name]["container"],
            "k8s": k8s.get(executor_name, {}),
        }
    return out


def test_each_task_gets_its_stage_image_resources_and_accelerator(tmp_path, monkeypatch):
    monkeypatch.delenv(PLATFORM_ENV, raising=False)  # default target: Kubeflow Pipelines
    kfp_settings = config.platform("kfp")
    tasks = _by_task(_compile(_small_pipeline(), tmp_path / "p.yaml"))
    assert set(tasks) == {"extract", "clean", "train", "infer"}
    for stage, task in tasks.items():
        container = task["container"]
        wanted = config.STAGE_RESOURCES[stage]
        assert container["image"] == config.image(stage)
        res = container["resources"]
        assert (res["resourceCpuRequest"], res["resourceCpuLimit"]) == (wanted.cpu, wanted.cpu)
        assert (res["resourceMemoryRequest"], res["resourceMemoryLimit"]) == (wanted.memory, wanted.memory)
        if wanted.gpus:
            assert res["accelerator"]["resourceType"] == kfp_settings.gpu_accelerator == "nvidia.com/gpu"
            assert res["accelerator"]["resourceCount"] == str(wanted.gpus)
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in task["k8s"][
                "tolerations"
            ]
            label, value = kfp_settings.node_selector()
            assert task["k8s"]["nodeSelector"]["labels"] == {label: value}
        else:
            assert "accelerator" not in res
            assert "tolerations" not in task["k8s"]
            assert "nodeSelector" not in task["k8s"]


def test_retry_caching_and_secrets_follow_what_a_task_touches(tmp_path, monkeypatch):
    monkeypatch.delenv(PLATFORM_ENV, raising=False)
    tasks = _by_task(_compile(_small_pipeline(), tmp_path / "p.yaml"))
    extract, clean, train, infer = (tasks[s] for s in ("extract", "clean", "train", "infer"))

    # extract: warehouse + buckets: retried with backoff, never cached, both Secrets
    assert extract["task"]["retryPolicy"] == {
        "maxRetryCount": 3,
        "backoffDuration": "60s",
        "backoffFactor": 2.0,
        "backoffMaxDuration": "1800s",
    }
    assert not extract["task"]["cachingOptions"].get("enableCache")
    secrets = {s["secretName"]: s for s in extract["k8s"]["secretAsEnv"]}
    assert set(secrets) == {config.WAREHOUSE_SECRET, config.STORAGE_SECRET}
    warehouse = {(k["secretKey"], k["envVar"]) for k in secrets[config.WAREHOUSE_SECRET]["keyToEnv"]}
    assert warehouse == set(config.WAREHOUSE_SECRET_ENV.items())
    storage = secrets[config.STORAGE_SECRET]
    assert {(k["secretKey"], k["envVar"]) for k in storage["keyToEnv"]} == set(
        config.STORAGE_SECRET_ENV.items()
    )
    assert storage.get("optional") is True  # workload identity / IRSA need no key Secret

    # clean and train: local artifacts only: cached, not retried, no credentials
    for task in (clean, train):
        assert task["task"]["cachingOptions"] == {"enableCache": True}
        assert "retryPolicy" not in task["task"]
        assert "secretAsEnv" not in task["k8s"]

    # infer writes to a bucket: retried, storage credentials only, cached
    assert infer["task"]["retryPolicy"]["maxRetryCount"] == 3
    assert [s["secretName"] for s in infer["k8s"]["secretAsEnv"]] == [config.STORAGE_SECRET]
    assert infer["task"]["cachingOptions"] == {"enableCache": True}


def test_extract_is_never_cached_even_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(PLATFORM_ENV, raising=False)

    @dsl.pipeline(name="extract-cache")
    def p(day: str):
        configure(_extract(day=day), "extract", cache=True)

    (task,) = _by_task(_compile(p, tmp_path / "p.yaml")).values()
    assert not task["task"]["cachingOptions"].get("enableCache")
    assert "retryPolicy" in task["task"]  # reading the warehouse is network work


def test_vertex_target_compiles_a_single_document_without_kubernetes_settings(tmp_path, monkeypatch):
    monkeypatch.setenv(PLATFORM_ENV, "vertex")
    docs = _compile(_small_pipeline(), tmp_path / "p.yaml")
    assert len(docs) == 1
    train = _by_task(docs)["train"]
    assert train["container"]["resources"]["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4"


def test_unknown_stage_is_one_clear_error():
    @dsl.pipeline(name="bad-stage")
    def p(day: str):
        with pytest.raises(SearchrecError, match="unknown stage 'gpu'"):
            configure(_extract(day=day), "gpu")

    assert p is not None


# --- the project's pipelines, compiled as `make compile` does on a cluster --------------------------


@pytest.fixture(scope="module")
def cluster_yaml(tmp_path_factory) -> dict[str, Path]:
    """All pipelines compiled in a fresh interpreter, with credentials in its environment."""
    from pipelines import PIPELINES

    out = tmp_path_factory.mktemp("cluster")
    env = {
        "PGPASSWORD": FAKE_PASSWORD,
        "PGUSER": "svc_searchrec",
        "DATABASE_URL": f"postgresql://svc_searchrec:{FAKE_PASSWORD}@greenplum.internal:5432/dwh",
        # a production default with a password is refused at compile time (test_production_defaults.py)
        "SEARCHREC_WAREHOUSE_URI": "postgresql://greenplum.internal/dwh",
        "AWS_SECRET_ACCESS_KEY": FAKE_AWS_SECRET,
        "SEARCHREC_KFP_TOKEN": FAKE_TOKEN,
    }
    assert PASSWORD_URI_RE.search(env["DATABASE_URL"])  # the leak check below would see such a URI
    paths = compile_pipelines(list(PIPELINES), out, tag=TEST_TAG, platform="kfp", env=env)
    return dict(zip(PIPELINES, paths, strict=True))


def test_pipelines_carry_no_credential(cluster_yaml):
    assert set(cluster_yaml) == {"training", "recommend", "demo"}
    for name, path in cluster_yaml.items():
        text = path.read_text()
        for secret in (FAKE_PASSWORD, FAKE_AWS_SECRET, FAKE_TOKEN):
            assert secret not in text, f"{name}: a credential value is in the compiled YAML"
        assert not PASSWORD_URI_RE.search(text), f"{name}: a password-bearing URI is in the compiled YAML"


def test_pipelines_run_the_images_of_this_build(cluster_yaml):
    registry = config.IMAGE_REGISTRY
    for name, path in cluster_yaml.items():
        images = compiled_images(path)
        assert images, name
        assert images <= {f"{registry}/searchrec-{stage}:{TEST_TAG}" for stage in config.STAGES}, images


def test_every_task_of_every_pipeline_is_configured(cluster_yaml):
    for name, path in cluster_yaml.items():
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        executors = docs[0]["deploymentSpec"]["executors"]
        k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for label, executor in executors.items():
            if "container" not in executor:  # the model importer
                continue
            container = executor["container"]
            stage = container["image"].rsplit("/searchrec-", 1)[1].split(":")[0]
            assert container["resources"]["resourceCpuLimit"] == config.STAGE_RESOURCES[stage].cpu, (
                name,
                label,
            )
            assert ("accelerator" in container["resources"]) == (stage in config.GPU_STAGES), (name, label)
            if stage == "extract" and label != "exec-resolve-model":  # a model read, no warehouse
                names = {s["secretName"] for s in k8s[label]["secretAsEnv"]}
                assert config.WAREHOUSE_SECRET in names, (name, label)
        # extract tasks (anywhere in the DAG) are retried, and cached only through the window cache key
        # (closed windows repeat it, open ones never do); that key's own task is never cached
        tasks = [
            t
            for comp in [docs[0]["root"], *docs[0]["components"].values()]
            for t in comp.get("dag", {}).get("tasks", {}).values()
        ]
        extract = [t for t in tasks if t["componentRef"]["name"].startswith("comp-extract")]
        assert extract, name
        for task in extract:
            token = task["inputs"]["parameters"]["cache_token"]["taskOutputParameter"]
            assert token["producerTask"].startswith("window-cache-key"), (name, task["taskInfo"])
            assert task["cachingOptions"]["enableCache"] is True, (name, task["taskInfo"])
            assert task["retryPolicy"]["maxRetryCount"] >= 1
        keys = [t for t in tasks if t["componentRef"]["name"].startswith("comp-window-cache-key")]
        assert keys and not any(t.get("cachingOptions", {}).get("enableCache") for t in keys), name


def test_resolving_the_served_model_is_a_cpu_task_without_the_warehouse_login(cluster_yaml, tmp_path):
    """resolve_model reads one pointer and copies one folder: the extract image and resources, no GPU,
    the object-storage Secret and retries, not the warehouse login; on Vertex AI no accelerator either."""

    def resolve_task(docs: list[dict]) -> dict:
        spec = docs[0]
        executor = spec["components"]["comp-resolve-model"]["executorLabel"]
        k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
        return {
            "task": spec["root"]["dag"]["tasks"]["resolve-model"],
            "container": spec["deploymentSpec"]["executors"][executor]["container"],
            "k8s": k8s.get(executor, {}),
        }

    task = resolve_task([d for d in yaml.safe_load_all(cluster_yaml["recommend"].read_text()) if d])
    container, wanted = task["container"], config.STAGE_RESOURCES["extract"]
    assert not wanted.gpus and container["image"] == f"{config.IMAGE_REGISTRY}/searchrec-extract:{TEST_TAG}"
    assert "accelerator" not in container["resources"]
    assert container["resources"]["resourceCpuLimit"] == wanted.cpu
    assert container["resources"]["resourceMemoryLimit"] == wanted.memory
    assert {s["secretName"] for s in task["k8s"]["secretAsEnv"]} == {config.STORAGE_SECRET}
    assert "nodeSelector" not in task["k8s"] and "tolerations" not in task["k8s"]
    assert task["task"]["retryPolicy"]["maxRetryCount"] >= 1
    assert not task["task"].get("cachingOptions", {}).get("enableCache")  # CURRENT is read at run time

    [vertex] = compile_pipelines(["recommend"], tmp_path, tag=TEST_TAG, platform="vertex")
    (spec,) = [d for d in yaml.safe_load_all(vertex.read_text()) if d]
    assert "accelerator" not in resolve_task([spec])["container"]["resources"]
