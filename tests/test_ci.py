"""The CI workflow runs on GitHub-hosted runners: timeouts within their limits, one concurrency group per
pipeline, a submission job without torch, both platforms' YAML uploaded."""

import os
import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

from searchrec import config

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
JOBS = WORKFLOW["jobs"]
GITHUB_HOSTED_MAX_MINUTES = 360  # a job on a GitHub-hosted runner is cancelled after 6 hours
HEAVY = ("torch", "transformers", "faiss")


def _run_text(job: str) -> str:
    return "\n".join(step.get("run", "") for step in JOBS[job]["steps"])


def test_every_job_ends_within_the_hosted_runner_limit():
    for name, job in JOBS.items():
        assert 0 < job["timeout-minutes"] <= GITHUB_HOSTED_MAX_MINUTES, name


def test_waiting_for_a_run_ends_before_the_job_does():
    submit = next(s for s in JOBS["run"]["steps"] if s.get("name") == "Submit")
    wait_s = int(submit["env"]["WAIT_TIMEOUT_S"])
    assert '--timeout "$WAIT_TIMEOUT_S"' in submit["run"] and "--wait" in submit["run"]
    # setup and submission take minutes: the wait leaves at least 10 of the job's minutes for them
    assert wait_s / 60 + 10 <= JOBS["run"]["timeout-minutes"]


def test_each_pipeline_has_its_own_concurrency_group():
    assert "concurrency" not in WORKFLOW  # a workflow-wide group would queue recommend behind training
    group = JOBS["run"]["concurrency"]["group"]
    assert JOBS["run"]["concurrency"]["cancel-in-progress"] is False  # never cancel a cluster run's job
    on = WORKFLOW.get("on", WORKFLOW.get(True))
    crons = [entry["cron"] for entry in on["schedule"]]
    # the expression picks training for the weekly cron and recommend otherwise, the input on dispatch
    assert f"github.event.schedule == '{crons[0]}' && 'training' || 'recommend'" in group
    assert "inputs.pipeline" in group
    window = next(s for s in JOBS["run"]["steps"] if s.get("id") == "window")["run"]
    assert re.search(rf'"\$SCHEDULE" = "{re.escape(crons[0])}" \]; then\s+pipeline=training', window)
    assert JOBS["test"]["concurrency"]["group"].startswith("test-")


def test_submission_installs_only_the_submit_extra():
    text = _run_text("run")
    assert "make setup" not in text and "torch" not in text
    assert re.search(r"pip install .*-e '\.\[submit\]'", text)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any(h in r or "searchrec[" in r for r in extras["submit"] for h in HEAVY)


def test_both_platforms_yaml_is_uploaded():
    upload = next(s for s in JOBS["test"]["steps"] if "upload-artifact" in s.get("uses", ""))
    paths = upload["with"]["path"].split()
    assert paths == ["compiled/kfp/", "compiled/vertex/"] and upload["with"]["if-no-files-found"] == "error"
    assert "make compile" in _run_text("test")
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"searchrec\.cli compile --out compiled\s*$", makefile, re.M)  # every platform


def test_submission_runs_without_torch_transformers_or_faiss(tmp_path):
    """`searchrec submit` in an interpreter where importing torch, transformers or faiss fails."""
    from tests.kfp_api_server import KfpApiServer

    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {HEAVY!r}:\n"
        "            raise ImportError(f'{name} is not installed in the submission job')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO / "shared"), str(REPO)])}
    argv = ["submit", "--pipeline", "training", "--start-date", "2026-10-01", "--end-date", "2026-10-07"]
    argv += ["--tag", "ci0001", "--param", "encoder=gs://m/encoders/rubert-tiny2"]
    argv += ["--param", "warehouse_uri=postgresql://gp:5432/dwh", "--param", "embeddings_uri=gs://b/e"]
    with KfpApiServer() as server:
        result = subprocess.run(
            [sys.executable, "-m", "searchrec.cli", *argv, "--host", server.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(server.calls("POST", "/apis/v2beta1/runs")) == 1
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "not installed in the submission job" in probe.stderr
    assert config.IMAGE_REGISTRY  # the compiled images came from config, not from an installed ml extra
