"""Run a pipeline locally with kfp.local (SubprocessRunner, no venv per task) and read its results.

Locally, KFP keeps `Metrics` values only in each task's executor_output.json; this module reads them
back from there so that what the CLI prints is what the Metrics artifact holds.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from searchrec import schemas
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)


@dataclass
class LocalRun:
    run_dir: Path
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task name -> Metrics values
    outputs: dict[str, dict[str, list[dict]]] = field(default_factory=dict)  # task -> output -> artifacts

    def artifact_path(self, task: str, output: str) -> Path:
        artifacts = self.outputs.get(task, {}).get(output)
        if not artifacts:
            raise SearchrecError(f"local run {self.run_dir} has no output {output!r} of task {task!r}")
        return Path(_local_path(artifacts[0]["uri"]))

    def metadata(self, task: str, output: str) -> dict:
        """An output artifact's metadata ({} when the task or output is not in this run)."""
        artifacts = self.outputs.get(task, {}).get(output) or [{}]
        return dict(artifacts[0].get("metadata") or {})

    @property
    def recommendations(self) -> Path | None:
        """The final dataset: the merge task's with several shards, the single infer task's with one."""
        for task in ("merge-recommendations", *sorted(t for t in self.outputs if t.startswith("infer"))):
            if "recommendations" in self.outputs.get(task, {}):
                return self.artifact_path(task, "recommendations") / schemas.RECOMMENDATIONS_FILE
        return None


def _local_path(uri: str) -> str:
    return uri.removeprefix("file://")


def read_run(run_dir: Path) -> LocalRun:
    """Collect every task's output artifacts and Metrics values from a kfp.local pipeline root."""
    run = LocalRun(run_dir=run_dir)
    for executor_output in sorted(run_dir.glob("*/*/executor_output.json")):
        task = executor_output.parent.name
        body = json.loads(executor_output.read_text())
        outputs: dict[str, list[dict]] = {}
        for name, value in body.get("artifacts", {}).items():
            outputs[name] = value.get("artifacts", [])
            for artifact in outputs[name]:
                if artifact.get("metadata") and "system.Metrics" in json.dumps(artifact.get("type", {})):
                    run.metrics.setdefault(task, {}).update(artifact["metadata"])
        # Metrics artifacts: KFP writes their values as the artifact's metadata.
        for name, artifacts in outputs.items():
            for artifact in artifacts:
                metadata = artifact.get("metadata") or {}
                if name in ("metrics", "funnel") and metadata:
                    run.metrics.setdefault(task, {}).update(
                        {k: v for k, v in metadata.items() if isinstance(v, int | float)}
                    )
        run.outputs[task] = outputs
    return run


CACHE_DIR = ".kfp_cache"  # under the runs folder: shared by every local run there


def run_local(pipeline_name: str, arguments: dict, runs_dir: Path, *, cache: bool = False) -> LocalRun:
    """Run one of the project's pipelines in this Python environment with kfp.local.

    cache: reuse task outputs of earlier runs in the same `runs_dir` (kfp.local's cache, kept in
    `<runs_dir>/.kfp_cache`) for tasks compiled as cacheable: extract only for closed windows, never promote.
    """
    import os

    from kfp import local

    from searchrec import config
    from searchrec.runtime import ERRORS_FILE_ENV

    os.environ[config.LOCAL_RUN_ENV] = "1"  # before the pipelines are built: no cluster retries locally
    from pipelines import PIPELINES

    if pipeline_name not in PIPELINES:
        raise SearchrecError(f"unknown pipeline {pipeline_name!r}; expected one of {', '.join(PIPELINES)}")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    root = (Path(runs_dir) / f"{pipeline_name}-{stamp}").resolve()
    root.mkdir(parents=True, exist_ok=False)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        raise_on_error=True,
        enable_caching=cache,
        cache_root=str(Path(runs_dir).resolve() / CACHE_DIR),
    )
    log.info("running pipeline %s locally under %s", pipeline_name, root)
    original_print = builtins.print  # kfp.local indents print() while tasks run and may not restore it
    errors_file = root / "errors.txt"
    os.environ[ERRORS_FILE_ENV] = str(errors_file)  # the tasks (subprocesses) append their one-line errors
    try:
        PIPELINES[pipeline_name](**arguments)
    except RuntimeError as error:
        # kfp.local raises after a failed task; end with the stage's own words where it left them.
        stage_errors = errors_file.read_text().splitlines() if errors_file.is_file() else []
        reason = stage_errors[0] if stage_errors else _plain(str(error)).splitlines()[0]
        raise SearchrecError(f"local {pipeline_name} run failed: {reason}") from None
    finally:
        builtins.print = original_print
        os.environ.pop(ERRORS_FILE_ENV, None)
    return read_run(root)


def _plain(text: str) -> str:
    """kfp.local colours task names with ANSI escapes; a one-line error message should not carry them."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
