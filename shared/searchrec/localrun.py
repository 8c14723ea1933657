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
import time
from dataclasses import dataclass, field
from pathlib import Path

from searchrec.artifacts import recommendations
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
    def final_task(self) -> str | None:
        """The task whose recommendations are the run's result (merge with several shards, else infer)."""
        for task in ("merge-recommendations", *sorted(t for t in self.outputs if t.startswith("infer"))):
            if "recommendations" in self.outputs.get(task, {}):
                return task
        return None

    @property
    def recommendations(self) -> Path | None:
        """The final dataset: the merge task's with several shards, the single infer task's with one."""
        task = self.final_task
        return None if task is None else self.artifact_path(task, "recommendations") / recommendations.FILE


def _local_path(uri: str) -> str:
    return uri.removeprefix("file://")


def read_run(run_dir: Path, cached: dict[str, dict] | None = None) -> LocalRun:
    """Collect every task's output artifacts and Metrics values from a kfp.local pipeline root.

    cached: outputs of the tasks that were cache hits in this run (they left nothing under run_dir)."""
    run = LocalRun(run_dir=run_dir)
    for task, outputs in (cached or {}).items():
        _add_task(run, task, outputs)
    for executor_output in sorted(run_dir.glob("*/*/executor_output.json")):
        body = json.loads(executor_output.read_text())
        outputs = {name: value.get("artifacts", []) for name, value in body.get("artifacts", {}).items()}
        _add_task(run, executor_output.parent.name, outputs)
    return run


def _add_task(run: LocalRun, task: str, outputs: dict[str, list]) -> None:
    # Metrics artifacts: KFP writes their values as the artifact's metadata.
    for name, artifacts in outputs.items():
        for artifact in artifacts:
            metadata = (artifact.get("metadata") if isinstance(artifact, dict) else None) or {}
            if name in ("metrics", "funnel") and metadata:
                run.metrics.setdefault(task, {}).update(
                    {k: v for k, v in metadata.items() if isinstance(v, int | float)}
                )
    run.outputs[task] = outputs


CACHE_DIR = ".kfp_cache"  # under the runs folder: shared by every local run there


class RunInterrupted(SearchrecError):
    """Ctrl-C during a local run: the shell's convention for SIGINT is exit code 130."""

    exit_code = 130


def run_local(
    pipeline_name: str, arguments: dict, runs_dir: Path, *, cache: bool = False, verbose: bool = False
) -> LocalRun:
    """Run one of the project's pipelines in this Python environment with kfp.local.

    cache: reuse task outputs of earlier runs in the same `runs_dir` (kfp.local's cache, kept in
    `<runs_dir>/.kfp_cache`) for tasks compiled as cacheable: extract only for closed windows, never promote.
    Without it no window counts as closed, so nothing is reused; the entries are still written, so that
    `resume_local` can reuse what this run finished. The runner's whole log goes to `<run>/runner.log`;
    the terminal gets one line per task (and, with `verbose`, the log as well).
    """
    import inspect

    takes = inspect.signature(_pipeline(pipeline_name).pipeline_func).parameters  # unknown: fails here
    root = _new_root(pipeline_name, runs_dir)
    if "run_name" in takes:  # the data pipelines (preflight's tasks are never cached)
        arguments = {**arguments, "run_name": root.name}
        if not cache:
            arguments["cache_lag_days"] = NEVER_CLOSED_DAYS
    record = {"pipeline": pipeline_name, "arguments": arguments, "cache": cache, "state": "RUNNING"}
    record["started"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return _execute(root, record, verbose)


# `--no-cache`: a window counts as closed only this many days after it ended, i.e. never
NEVER_CLOSED_DAYS = 100 * 366


def resume_local(run_dir: Path, *, verbose: bool = False) -> LocalRun:
    """Run an interrupted or failed local run again in its own folder with its own arguments: every task
    it finished is served from the cache, and train continues from its last checkpoint."""
    root = Path(run_dir).resolve()
    path = root / RUN_RECORD
    if not path.is_file():
        raise SearchrecError(f"--resume {run_dir}: not a local run folder (no {RUN_RECORD})")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        arguments, record["pipeline"] = dict(record["arguments"]), str(record["pipeline"])
    except (ValueError, KeyError, TypeError) as error:
        raise SearchrecError(f"--resume {run_dir}: unreadable {RUN_RECORD}: {error}") from None
    if record.get("state") == "SUCCEEDED":
        raise SearchrecError(f"--resume {run_dir}: that run succeeded; nothing to resume")
    arguments.setdefault("run_name", root.name)
    record.update(state="RUNNING", arguments=arguments)
    record["resumed"] = [
        *record.get("resumed", []),
        dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    ]
    return _execute(root, record, verbose, resume=True)


def _execute(root: Path, record: dict, verbose: bool, resume: bool = False) -> LocalRun:
    import os
    import sys

    from searchrec import config
    from searchrec.runlog import RunnerLog, capture
    from searchrec.runtime import ERRORS_FILE_ENV
    from searchrec.warmstart import warm_tasks

    pipeline_name = record["pipeline"]
    pipeline = _pipeline(pipeline_name)
    cache_root = _init_kfp_local(root)
    _write_record(root, record)
    started = time.monotonic()
    original_print = builtins.print  # kfp.local indents print() while tasks run and may not restore it
    errors_file = root / "errors.txt"
    errors_file.unlink(missing_ok=True)
    os.environ[ERRORS_FILE_ENV] = str(errors_file)  # the tasks (subprocesses) append their one-line errors
    if resume:
        os.environ[config.RESUME_DIR_ENV] = str(root)  # train adopts the interrupted attempt's checkpoints
    runner_log = RunnerLog(root / RUNNER_LOG, root, cache_root, sys.stdout, sys.stdout if verbose else None)
    try:
        with capture(runner_log), warm_tasks(root / WARM_LOG):
            pipeline(**record["arguments"])
        record["state"] = "SUCCEEDED"
    except KeyboardInterrupt:
        record.update(state="INTERRUPTED", error="interrupted (Ctrl-C)")
        raise RunInterrupted(
            f"local {pipeline_name} run interrupted; continue it with: searchrec run --resume {root}"
        ) from None
    except RuntimeError as error:
        # kfp.local raises after a failed task; end with the stage's own words where it left them.
        stage_errors = errors_file.read_text().splitlines() if errors_file.is_file() else []
        reason = stage_errors[0] if stage_errors else _plain(str(error)).splitlines()[0]
        record.update(state="FAILED", error=reason)
        raise SearchrecError(f"local {pipeline_name} run failed: {reason}") from None
    finally:
        builtins.print = original_print
        os.environ.pop(ERRORS_FILE_ENV, None)
        os.environ.pop(config.RESUME_DIR_ENV, None)
        runner_log.close()
        record.update(seconds=round(time.monotonic() - started, 1), tasks=runner_log.states)
        record["state"] = "FAILED" if record["state"] == "RUNNING" else record["state"]
        _write_record(root, record)
    return read_run(root, runner_log.cached)


RUNNER_LOG = "runner.log"  # in each local run's folder: everything kfp.local and the tasks wrote
WARM_LOG = "warm-tasks.log"  # and what the warm task servers (searchrec.warmstart) said


def _pipeline(name: str):
    """The pipeline function, built for a local run (config.LOCAL_RUN_ENV set before the import)."""
    import os

    from searchrec import config

    os.environ[config.LOCAL_RUN_ENV] = "1"  # before the pipelines are built: no cluster retries locally
    from pipelines import pipeline  # the data pipelines and preflight, each built when first asked for

    return pipeline(name)


def _new_root(pipeline_name: str, runs_dir: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    root = (Path(runs_dir) / f"{pipeline_name}-{stamp}").resolve()
    root.mkdir(parents=True, exist_ok=False)
    return root


def _init_kfp_local(root: Path) -> Path:
    """kfp.local set up for the run folder `root`, its cache shared by the runs beside it; returns the cache."""
    from kfp import local

    cache_root = root.parent / CACHE_DIR
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        raise_on_error=True,
        enable_caching=True,
        cache_root=str(cache_root),
    )
    log.info("running pipeline locally under %s", root)
    return cache_root


RUN_RECORD = "run.json"  # in each local run's folder: pipeline, arguments, state, started, seconds


def _write_record(root: Path, record: dict) -> None:
    from searchrec.storage import write_bytes

    write_bytes(root / RUN_RECORD, json.dumps(record, indent=2, default=str).encode())


def _plain(text: str) -> str:
    """kfp.local colours task names with ANSI escapes; a one-line error message should not carry them."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
