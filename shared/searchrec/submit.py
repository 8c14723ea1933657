"""Production front door: build and push the stage images, compile for a cluster, submit and schedule runs.

Targets: a Kubeflow Pipelines endpoint (`kfp.Client`) or Vertex AI Pipelines (`aiplatform.PipelineJob`).
Everything a run needs is checked here, before the first request leaves the machine: the pipeline
name, the date window, the parameter names and types (read from the compiled pipeline spec) and
that no parameter value carries a password. Credentials of the pods come from Kubernetes Secrets
(pipelines/cluster.py); the submitting side only ever holds the API token, and never prints it.

Images and compiled YAML agree on one tag: `image_tag()`, the git commit unless SEARCHREC_IMAGE_TAG says
otherwise. kfp and the cloud SDKs are imported inside the functions, so `searchrec.cli` stays importable
in the stage images, which install neither.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searchrec import config
from searchrec.config import (
    HOST_ENV,
    NAMESPACE_ENV,
    PIPELINE_ROOT_ENV,
    PLATFORM_ENV,
    REGISTRY_ENV,
    SERVICE_ACCOUNT_ENV,
    TAG_ENV,
    TOKEN_ENV,
    VERTEX_LOCATION_ENV,
    VERTEX_PROJECT_ENV,
)
from searchrec.dates import check_window, parse_date
from searchrec.errors import SearchrecError
from searchrec.secrets import refuse_passwords

log = logging.getLogger("searchrec.submit")

PIPELINE_NAMES = ("training", "recommend", "demo")
# The first run on a new cluster (`searchrec preflight`); its "window" is the one date it checks against.
CHECK_PIPELINE_NAMES = ("preflight",)
# Compile targets: "kfp" (default; "kubeflow" is an alias) or "vertex"; see config.PLATFORM_SETTINGS.
PLATFORMS = config.PLATFORM_NAMES
DEFAULT_EXPERIMENT = "searchrec"

SUCCEEDED_STATES = frozenset({"SUCCEEDED", "SKIPPED"})
FINAL_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
TIMEOUT_EXIT_CODE = 124
VERTEX_LABELS = {"app": "searchrec"}

# The training window of each pipeline, by parameter name (read from the spec, checked there).
WINDOW_PARAMETERS = {
    "training": ("start_date", "end_date"),
    "recommend": ("start_date", "end_date"),
    "demo": ("train_start_date", "train_end_date"),
    "preflight": ("date", "date"),
}


class RunNotSucceeded(SearchrecError):
    """A waited-for run ended in another state than SUCCEEDED (or did not end in time)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- repository, tag, images -------------------------------------------------------------------


def repo_root() -> Path:
    """The repository this library was installed from (editable install), else the current folder."""
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").is_file() and (here / "images").is_dir():
        return here
    return Path.cwd()


def git_commit(repo: Path | None = None) -> str:
    """The short commit of `repo`, baked into every image as SEARCHREC_GIT_COMMIT (artifact lineage)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=repo or repo_root(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def image_tag(repo: Path | None = None) -> str:
    """The image tag of this build: $SEARCHREC_IMAGE_TAG if set, else the short git commit of `repo`."""
    tag = os.environ.get(TAG_ENV, "").strip()
    if tag:
        return tag
    repo = repo or repo_root()
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as error:
        raise SearchrecError(f"git is not installed: set {TAG_ENV} to the image tag") from error
    if result.returncode != 0:
        raise SearchrecError(f"no git commit in {repo} to tag images with: commit first or set {TAG_ENV}")
    tag = result.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if dirty.stdout.strip():
        log.warning("working tree has uncommitted changes: images tagged %s may not match that commit", tag)
    return tag


def dockerfile(stage: str, repo: Path | None = None) -> Path:
    if stage not in config.STAGES:
        raise SearchrecError(f"unknown stage {stage!r}; expected one of {', '.join(config.STAGES)}")
    return (repo or repo_root()) / "images" / f"{stage}.Dockerfile"


def image_ref(stage: str, *, registry: str, tag: str) -> str:
    """Same naming as config.image(), for an explicit registry and tag."""
    return f"{registry.rstrip('/')}/searchrec-{stage}:{tag}"


def image_commands(
    *,
    registry: str | None = None,
    tag: str | None = None,
    push: bool = True,
    stages: Sequence[str] = config.STAGES,
    repo: Path | None = None,
) -> list[list[str]]:
    """docker commands that build (and push) the images of `stages`, context = the repo root."""
    repo = repo or repo_root()
    registry = registry or os.environ.get(REGISTRY_ENV) or config.IMAGE_REGISTRY
    tag = tag or image_tag(repo)
    commands: list[list[str]] = []
    for stage in stages:
        ref = image_ref(stage, registry=registry, tag=tag)
        commands.append(
            [
                "docker",
                "build",
                "--file",
                str(dockerfile(stage, repo).relative_to(repo)),
                "--tag",
                ref,
                "--label",
                f"org.opencontainers.image.revision={tag}",
                "--label",
                f"org.opencontainers.image.title=searchrec-{stage}",
                "--build-arg",
                f"GIT_COMMIT={git_commit(repo)}",
                ".",
            ]
        )
        if push:
            commands.append(["docker", "push", ref])
    return commands


def build_images(
    *,
    registry: str | None = None,
    tag: str | None = None,
    push: bool = True,
    dry_run: bool = False,
    stages: Sequence[str] = config.STAGES,
) -> list[list[str]]:
    """Build (and push) every stage image with docker (BuildKit), or only print the commands."""
    repo = repo_root()
    commands = image_commands(registry=registry, tag=tag, push=push, stages=stages, repo=repo)
    for command in commands:
        print(shlex.join(command))
        if dry_run:
            continue
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}  # per-Dockerfile .dockerignore and RUN --mount
        try:
            result = subprocess.run(command, cwd=repo, env=env, check=False)
        except FileNotFoundError as error:
            raise SearchrecError("docker is not installed: run with --dry-run to see the commands") from error
        if result.returncode != 0:
            raise SearchrecError(f"{shlex.join(command[:2])} failed with exit code {result.returncode}")
    return commands


# --- compilation -------------------------------------------------------------------------------


def _check_pipeline(pipeline: str) -> None:
    if pipeline not in (*PIPELINE_NAMES, *CHECK_PIPELINE_NAMES):
        raise SearchrecError(f"unknown pipeline {pipeline!r}; expected one of {', '.join(PIPELINE_NAMES)}")


def _check_platform(platform: str) -> str:
    """The canonical platform name ("kubeflow" is an alias of "kfp"); one line if unknown."""
    if not platform:
        raise SearchrecError(f"no platform given; expected one of {', '.join(PLATFORMS)}")
    return config.platform_name(platform)


def _yaml_docs(path: Path) -> list[dict]:
    import yaml

    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def compiled_images(path: Path) -> set[str]:
    """Every container image that a compiled pipeline runs."""
    executors = _yaml_docs(path)[0].get("deploymentSpec", {}).get("executors", {})
    return {e["container"]["image"] for e in executors.values() if "container" in e}


def _matches(path: Path, tag: str, platform: str) -> bool:
    docs = _yaml_docs(path)
    single = len(docs) == 1
    images = compiled_images(path)
    # KFP: PipelineSpec + PlatformSpec (every pipeline has Secrets); Vertex AI: one document
    platform_ok = single == config.platform(platform).single_document
    return bool(images) and all(i.endswith(f":{tag}") for i in images) and platform_ok


def compile_pipelines(
    pipelines: Sequence[str],
    out_dir: Path,
    *,
    tag: str | None = None,
    platform: str = config.DEFAULT_PLATFORM,
    env: Mapping[str, str] | None = None,
) -> list[Path]:
    """Compile `pipelines` to out_dir/<name>.yaml in a fresh interpreter whose images carry `tag`.

    A fresh process, because component images and cluster settings are fixed when the component and
    pipeline modules are imported (config.image() at decoration time).
    """
    for name in pipelines:
        _check_pipeline(name)
    platform = _check_platform(platform)
    tag = tag or image_tag()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    code = (
        "import sys\nfrom pathlib import Path\nfrom pipelines import compile_pipeline\n"
        "for name in sys.argv[2:]:\n    print(compile_pipeline(name, Path(sys.argv[1]) / f'{name}.yaml'))\n"
    )
    child_env = {**os.environ, **(env or {}), TAG_ENV: tag, PLATFORM_ENV: platform}
    result = subprocess.run(
        [sys.executable, "-c", code, str(out_dir), *pipelines],
        cwd=repo_root(),
        env=child_env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SearchrecError(f"compiling {', '.join(pipelines)} failed: {last}")
    return [out_dir / f"{name}.yaml" for name in pipelines]


def compile_platforms(
    out_dir: Path,
    platforms: Sequence[str],
    *,
    tag: str | None = None,
    pipelines: Sequence[str] = PIPELINE_NAMES,
) -> list[Path]:
    """Every pipeline compiled per platform: out_dir/<platform>/<pipeline>.yaml (`searchrec compile`)."""
    written: list[Path] = []
    for platform in platforms:
        platform = _check_platform(platform)
        written += compile_pipelines(pipelines, Path(out_dir) / platform, tag=tag, platform=platform)
        for path in written[-len(pipelines) :]:
            if not _matches(path, tag or image_tag(), platform):
                raise SearchrecError(f"{path} is not a {platform} pipeline spec of images tagged {tag}")
    return written


def compile_for_cluster(
    pipeline: str, out_file: Path, *, tag: str | None = None, platform: str = config.DEFAULT_PLATFORM
) -> Path:
    """Compile one pipeline for a cluster: every image tagged `tag`, the target's platform settings.

    In this process when the already imported pipelines fit (fast), else in a fresh one.
    """
    _check_pipeline(pipeline)
    platform = _check_platform(platform)
    tag = tag or image_tag()
    out_file = Path(out_file)
    if config.IMAGE_TAG == tag and config.platform_name() == platform:
        from pipelines import compile_pipeline

        compile_pipeline(pipeline, out_file)
        if _matches(out_file, tag, platform):
            return out_file
    with tempfile.TemporaryDirectory(prefix="searchrec-compile-") as tmp:
        compiled = compile_pipelines([pipeline], Path(tmp), tag=tag, platform=platform)[0]
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(compiled.read_text())
    if not _matches(out_file, tag, platform):
        raise SearchrecError(
            f"compiled {pipeline} does not run images tagged {tag}: {compiled_images(out_file)}"
        )
    return out_file


# --- parameters --------------------------------------------------------------------------------


def pipeline_parameters(spec_file: Path) -> dict[str, dict]:
    """root.inputDefinitions.parameters of a compiled pipeline: name -> {parameterType, defaultValue?}."""
    spec = _yaml_docs(Path(spec_file))[0]
    return dict(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))


def _coerce(name: str, value: Any, kind: str) -> Any:
    """A value of the spec's type; strings from the command line are parsed."""
    bad = SearchrecError(f"parameter {name} must be {kind.lower().replace('_', ' ')}, got {value!r}")
    if kind == "STRING":
        if not isinstance(value, str):
            raise bad
        return value
    if kind == "BOOLEAN":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
        raise bad
    if kind == "NUMBER_INTEGER":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        raise bad
    if kind == "NUMBER_DOUBLE":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int | float):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if kind in {"LIST", "STRUCT"}:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise bad from None
        if not isinstance(value, list if kind == "LIST" else dict):
            raise bad
        return value
    return value


def build_arguments(
    pipeline: str,
    spec_parameters: Mapping[str, dict],
    *,
    start_date: str,
    end_date: str,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's parameters: the window plus `params`, checked against the pipeline's declared inputs."""
    _check_pipeline(pipeline)
    start_name, end_name = WINDOW_PARAMETERS[pipeline]
    for name in (start_name, end_name):
        if name not in spec_parameters:
            raise SearchrecError(f"pipeline {pipeline} has no parameter {name} for the window")
    params = dict(params or {})
    for name in (start_name, end_name):
        if name in params:
            raise SearchrecError(f"give the window as start/end date, not as parameter {name}")
    unknown = sorted(set(params) - set(spec_parameters))
    if unknown:
        raise SearchrecError(
            f"unknown parameter(s) of pipeline {pipeline}: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(spec_parameters))}"
        )
    arguments: dict[str, Any] = {start_name: start_date, end_name: end_date}
    for name, value in params.items():
        arguments[name] = _coerce(name, value, spec_parameters[name].get("parameterType", "STRING"))
    refuse_passwords(arguments)
    # Every *_date parameter is a date, and each <x>start_date .. <x>end_date pair is in order.
    dates = {n: parse_date(v, n) for n, v in arguments.items() if n.endswith("_date") and v != ""}
    for name, start in dates.items():
        end_name_ = name.replace("start_date", "end_date")
        if name.endswith("start_date") and end_name_ in dates and start > dates[end_name_]:
            raise SearchrecError(f"{name} {arguments[name]} is after {end_name_} {arguments[end_name_]}")
    missing = sorted(
        n
        for n, p in spec_parameters.items()
        if n not in arguments and "defaultValue" not in p and not p.get("isOptional")
    )
    if missing:
        raise SearchrecError(f"pipeline {pipeline} needs parameter(s): {', '.join(missing)}")
    return arguments


def default_run_name(pipeline: str, start_date: str, end_date: str, now: dt.datetime | None = None) -> str:
    """searchrec-<pipeline> <start>..<end> <UTC timestamp>: the window is visible in the runs list."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"searchrec-{pipeline} {start_date}..{end_date} {now:%Y%m%d-%H%M%S}"


def exit_code(state: str | None) -> int:
    """Exit code of a finished run: 0 when it succeeded, 1 otherwise."""
    return 0 if (state or "").upper() in SUCCEEDED_STATES else 1


# --- Kubeflow Pipelines ------------------------------------------------------------------------


def _kfp_client(host: str, namespace: str | None):
    import warnings

    import kfp

    token = os.environ.get(TOKEN_ENV) or None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP >= 2.0.0-beta.2"
        try:
            return kfp.Client(host=host, existing_token=token, namespace=namespace or "kubeflow")
        except Exception as error:  # connection refused, TLS, auth: one line naming the endpoint
            raise SearchrecError(
                f"cannot reach Kubeflow Pipelines at {host}: {type(error).__name__}"
            ) from None


def wait_for_run(client, run_id: str, *, timeout: float, poll_interval: float = 30.0) -> str:
    """Poll the run until it reaches a final state; returns that state. Timeout raises RunNotSucceeded."""
    deadline = time.monotonic() + timeout
    while True:
        state = str(client.get_run(run_id).state or "").upper()
        if state in FINAL_STATES:
            return state
        if time.monotonic() >= deadline:
            raise RunNotSucceeded(
                f"run {run_id} still {state or 'unknown'} after {timeout:.0f}s", TIMEOUT_EXIT_CODE
            )
        log.info("run %s: %s", run_id, state)
        time.sleep(poll_interval)


def _prepare(
    pipeline: str,
    start_date: str,
    end_date: str,
    params: Mapping[str, Any] | None,
    tmp: Path,
    platform: str,
    tag: str | None,
) -> tuple[Path, dict[str, Any]]:
    _check_pipeline(pipeline)
    check_window(start_date, end_date)
    spec_file = compile_for_cluster(pipeline, tmp / f"{pipeline}.yaml", tag=tag, platform=platform)
    arguments = build_arguments(
        pipeline, pipeline_parameters(spec_file), start_date=start_date, end_date=end_date, params=params
    )
    check_cluster_arguments(spec_file, arguments)
    return spec_file, arguments


def _effective(spec_file: Path, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter's value in the run: the given argument, else the compiled default."""
    params = pipeline_parameters(spec_file)
    return {n: arguments.get(n, p.get("defaultValue", "")) for n, p in params.items()} | dict(arguments)


def check_cluster_arguments(spec_file: Path, arguments: Mapping[str, Any]) -> None:
    """What a cluster run cannot work without: a published encoder in a bucket, a warehouse, embeddings."""
    from searchrec.encoder import REMOTE_SCHEMES, is_hub_id

    values = _effective(spec_file, arguments)
    encoder = str(values.get("encoder", "gs://"))
    if not encoder.startswith(REMOTE_SCHEMES):
        kind = "a Hugging Face id (nothing is downloaded from a model hub at run time)"
        if not is_hub_id(encoder):
            kind = "not a bucket folder the cluster can read"
        raise SearchrecError(
            f"encoder {encoder} is {kind}: publish it once with `searchrec encoder publish {encoder} "
            f"gs://<bucket>/encoders/<name>` and pass --param encoder=gs://<bucket>/encoders/<name> "
            f"(or set encoder in ${config.SETTINGS_ENV} / ${config.PRODUCTION_SETTING_ENV['encoder']})"
        )
    for name in ("warehouse_uri", "embeddings_uri"):
        if name in values and not str(values[name]).strip():
            raise SearchrecError(
                f"no {name}: pass --param {name}=... or set it at compile time in ${config.SETTINGS_ENV} "
                f"or ${config.PRODUCTION_SETTING_ENV[name]}"
            )


def check_vertex_login(spec_file: Path, arguments: Mapping[str, Any]) -> None:
    """On Vertex AI a PostgreSQL warehouse needs `warehouse_secret` (there are no Kubernetes Secrets)."""
    from searchrec.secrets import version_name

    params = pipeline_parameters(spec_file)
    if "warehouse_secret" not in params:
        return

    def value(name: str) -> str:
        return str(arguments.get(name, params.get(name, {}).get("defaultValue", "")) or "")

    if value("warehouse_secret"):
        version_name(value("warehouse_secret"))  # one line if it names no secret version
    elif value("warehouse_uri").startswith(("postgresql://", "postgres://")):
        raise SearchrecError(
            "Vertex AI has no Kubernetes Secrets: give the warehouse login as "
            "--param warehouse_secret=projects/<project>/secrets/<name>/versions/<version> (Secret Manager)"
        )


def _target(host: str | None, vertex_project: str | None) -> str:
    if host and vertex_project:
        raise SearchrecError("give either a Kubeflow Pipelines host or a Vertex AI project, not both")
    if not host and not vertex_project:
        raise SearchrecError(
            f"no target: give --host (or ${HOST_ENV}) for Kubeflow Pipelines, "
            f"or --vertex-project (or ${VERTEX_PROJECT_ENV}) for Vertex AI Pipelines"
        )
    return "kfp" if host else "vertex"


def submit(
    pipeline: str,
    *,
    start_date: str,
    end_date: str,
    params: Mapping[str, Any] | None = None,
    host: str | None = None,
    namespace: str | None = None,
    vertex_project: str | None = None,
    vertex_location: str | None = None,
    pipeline_root: str | None = None,
    service_account: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    wait: bool = False,
    timeout: float = 24 * 3600,
    poll_interval: float = 30.0,
    tag: str | None = None,
    credentials: Any = None,
    enable_caching: bool | None = None,
    vertex_network: VertexNetwork | None = None,
) -> str:
    """Compile `pipeline` for the target, check the parameters, submit one run; returns the run id.

    wait: block until the run ends; a run that did not succeed raises RunNotSucceeded (its exit_code).
    enable_caching: None keeps each task's compiled cache setting; False runs every task.
    """
    target = _target(host, vertex_project)
    network = _vertex_network(target, vertex_network)
    run_name = run_name or default_run_name(pipeline, start_date, end_date)
    with tempfile.TemporaryDirectory(prefix="searchrec-submit-") as tmp:
        spec_file, arguments = _prepare(pipeline, start_date, end_date, params, Path(tmp), target, tag)
        if target == "vertex":
            check_vertex_login(spec_file, arguments)
            job = vertex_job(
                spec_file,
                arguments,
                run_name=run_name,
                project=vertex_project,
                location=vertex_location,
                pipeline_root=pipeline_root,
                credentials=credentials,
                enable_caching=enable_caching,
                pipeline=pipeline,
            )
            peering = network.apply(job)
            try:
                job.submit(
                    service_account=service_account,
                    experiment=experiment or None,
                    reserved_ip_ranges=list(network.reserved_ip_ranges) or None,
                    **peering,
                )
            except Exception as error:
                raise SearchrecError(f"Vertex AI refused the run: {str(error).splitlines()[0]}") from None
            run_id = job.resource_name
            log.info("submitted %s to Vertex AI: %s", run_name, run_id)
            if wait:
                job.wait()
                state = job.state.name.removeprefix("PIPELINE_STATE_")
                if exit_code(state):
                    raise RunNotSucceeded(f"run {run_id} ended {state}", exit_code(state))
            return run_id

        client = _kfp_client(host, namespace)
        try:
            result = client.create_run_from_pipeline_package(
                str(spec_file),
                arguments=arguments,
                run_name=run_name,
                experiment_name=experiment,
                namespace=namespace,
                pipeline_root=pipeline_root or None,
                service_account=service_account or None,
                enable_caching=enable_caching,
            )
        except Exception as error:
            raise SearchrecError(f"Kubeflow Pipelines refused the run: {_api_error(error)}") from None
    run_id = result.run_id
    log.info("submitted %s: run %s", run_name, run_id)
    if wait:
        state = wait_for_run(client, run_id, timeout=timeout, poll_interval=poll_interval)
        if exit_code(state):
            raise RunNotSucceeded(f"run {run_id} ended {state}", exit_code(state))
        log.info("run %s %s", run_id, state)
    return run_id


def _api_error(error: Exception) -> str:
    status = getattr(error, "status", None)
    reason = getattr(error, "reason", None)
    if status:
        return f"HTTP {status} {reason or ''}".strip()
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


# --- Vertex AI -----------------------------------------------------------------------------------


NETWORK_RE = re.compile(r"projects/[^/\s]+/global/networks/[^/\s]+")
ATTACHMENT_RE = re.compile(r"projects/[^/\s]+/regions/[^/\s]+/networkAttachments/[^/\s]+")


@dataclass(frozen=True)
class VertexNetwork:
    """Private networking of a Vertex AI run: VPC peering (`network`, with optional reserved IP ranges) or
    a Private Service Connect interface (`psc_network_attachment`); extract then reaches a private host."""

    network: str | None = None
    psc_network_attachment: str | None = None
    reserved_ip_ranges: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.network or self.psc_network_attachment or self.reserved_ip_ranges)

    def check(self) -> VertexNetwork:
        if self.network and self.psc_network_attachment:
            raise SearchrecError("give either --network (VPC peering) or --psc-network-attachment, not both")
        if self.network and not NETWORK_RE.fullmatch(self.network):
            raise SearchrecError(
                f"--network must be projects/<project number>/global/networks/<name>, got {self.network!r}"
            )
        if self.psc_network_attachment and not ATTACHMENT_RE.fullmatch(self.psc_network_attachment):
            raise SearchrecError(
                "--psc-network-attachment must be projects/<project>/regions/<region>/networkAttachments/<name>, "
                f"got {self.psc_network_attachment!r}"
            )
        if self.reserved_ip_ranges and not self.network:
            raise SearchrecError("--reserved-ip-range needs --network (ranges of the peered VPC)")
        return self

    def apply(self, job) -> dict[str, Any]:
        """Set the PSC interface on the job; returns the peering arguments of submit()/create_schedule()."""
        if self.psc_network_attachment:
            from google.cloud.aiplatform_v1.types import PscInterfaceConfig

            job._gca_resource.psc_interface_config = PscInterfaceConfig(
                network_attachment=self.psc_network_attachment
            )
        return {"network": self.network} if self.network else {}


def _vertex_network(target: str, vertex_network: VertexNetwork | None) -> VertexNetwork:
    net = (vertex_network or VertexNetwork()).check()
    if net and target != "vertex":
        raise SearchrecError(
            "--network / --psc-network-attachment are Vertex AI settings; Kubeflow Pipelines tasks run in the "
            "cluster's own network"
        )
    return net


def _vertex_schedule(job, network: VertexNetwork, *, cron: str, name: str, service_account: str | None):
    """job.create_schedule(), with the PSC interface too (the SDK copies only some fields of the job)."""
    from google.cloud import aiplatform

    if network.reserved_ip_ranges:
        job._gca_resource.reserved_ip_ranges = list(network.reserved_ip_ranges)
    made = aiplatform.PipelineJobSchedule(
        pipeline_job=job,
        display_name=name,
        credentials=job.credentials,
        project=job.project,
        location=job.location,
    )
    if network.psc_network_attachment:
        from google.cloud.aiplatform_v1.types import PscInterfaceConfig

        made._gca_resource.create_pipeline_job_request.pipeline_job.psc_interface_config = PscInterfaceConfig(
            network_attachment=network.psc_network_attachment
        )
    made.create(cron=cron, service_account=service_account, network=network.network)
    return made


def vertex_labels(pipeline: str | None = None) -> dict[str, str]:
    """The labels of every Vertex AI job submitted from here: the app, and which pipeline it runs."""
    return {**VERTEX_LABELS, **({"pipeline": pipeline} if pipeline else {})}


def vertex_job(
    spec_file: Path,
    arguments: Mapping[str, Any],
    *,
    run_name: str,
    project: str | None,
    location: str | None,
    pipeline_root: str | None,
    credentials: Any = None,
    enable_caching: bool | None = None,
    pipeline: str | None = None,
):
    """An unsubmitted aiplatform.PipelineJob for the compiled spec and arguments, labelled with the
    pipeline's name (`searchrec runs --vertex-project` lists jobs by these labels)."""
    from google.cloud import aiplatform

    if not pipeline_root:
        raise SearchrecError(
            f"Vertex AI needs a pipeline root (gs://bucket/path): --pipeline-root or ${PIPELINE_ROOT_ENV}"
        )
    job_id = re.sub(r"[^a-z0-9-]+", "-", run_name.lower()).strip("-")[:128]
    return aiplatform.PipelineJob(
        display_name=run_name,
        template_path=str(spec_file),
        job_id=job_id,
        pipeline_root=pipeline_root,
        parameter_values=dict(arguments),
        labels=vertex_labels(pipeline),
        project=project,
        location=location or config.VERTEX_LOCATION,
        credentials=credentials,
        enable_caching=enable_caching,
    )


# --- schedules ----------------------------------------------------------------------------------


def _check_cron(cron: str) -> list[str]:
    fields = cron.split()
    if len(fields) != 5:
        raise SearchrecError(f"cron must have 5 fields (minute hour day month weekday), got {cron!r}")
    return fields


def schedule(
    pipeline: str,
    *,
    cron: str,
    start_date: str,
    end_date: str,
    params: Mapping[str, Any] | None = None,
    host: str | None = None,
    namespace: str | None = None,
    vertex_project: str | None = None,
    vertex_location: str | None = None,
    pipeline_root: str | None = None,
    service_account: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    name: str | None = None,
    tag: str | None = None,
    credentials: Any = None,
    enable_caching: bool | None = None,
    vertex_network: VertexNetwork | None = None,
) -> str:
    """A recurring run of `pipeline` on `cron` (5 fields, UTC) with fixed parameters; returns its id.

    The parameters are fixed when the schedule is made: for a window that moves with the calendar, let
    CI compute the window and call submit() on its own schedule (.github/workflows/ci.yml).
    """
    target = _target(host, vertex_project)
    network = _vertex_network(target, vertex_network)
    fields = _check_cron(cron)
    name = name or f"searchrec-{pipeline} {start_date}..{end_date} every {cron}"
    with tempfile.TemporaryDirectory(prefix="searchrec-schedule-") as tmp:
        spec_file, arguments = _prepare(pipeline, start_date, end_date, params, Path(tmp), target, tag)
        if target == "vertex":
            check_vertex_login(spec_file, arguments)
            job = vertex_job(
                spec_file,
                arguments,
                run_name=name,
                project=vertex_project,
                location=vertex_location,
                pipeline_root=pipeline_root,
                credentials=credentials,
                enable_caching=enable_caching,
                pipeline=pipeline,
            )
            try:
                made = _vertex_schedule(job, network, cron=cron, name=name, service_account=service_account)
            except Exception as error:
                raise SearchrecError(
                    f"Vertex AI refused the schedule: {str(error).splitlines()[0]}"
                ) from None
            return made.resource_name
        client = _kfp_client(host, namespace)
        try:
            experiment_id = client.create_experiment(name=experiment, namespace=namespace).experiment_id
            made = client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=name,
                cron_expression=" ".join(["0", *fields]),  # KFP's cron has a leading seconds field
                max_concurrency=1,
                no_catchup=True,
                params=arguments,
                pipeline_package_path=str(spec_file),
                pipeline_root=pipeline_root or None,
                service_account=service_account or None,
                enable_caching=enable_caching,
            )
        except Exception as error:
            raise SearchrecError(f"Kubeflow Pipelines refused the schedule: {_api_error(error)}") from None
    return made.recurring_run_id


# --- command line -------------------------------------------------------------------------------


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """--param name=value pairs; values are typed later, against the pipeline spec."""
    params: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SearchrecError(f"--param takes name=value, got {item!r}")
        params[name.strip()] = value
    return params


def _add_target_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", choices=PIPELINE_NAMES, required=True)
    p.add_argument("--start-date", required=True, help="first day of the window, YYYY-MM-DD")
    p.add_argument("--end-date", required=True, help="last day of the window (inclusive), YYYY-MM-DD")
    p.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="other pipeline parameter"
    )
    p.add_argument("--host", default=os.environ.get(HOST_ENV), help=f"KFP endpoint (${HOST_ENV})")
    p.add_argument("--namespace", default=os.environ.get(NAMESPACE_ENV), help="KFP namespace (multi-user)")
    p.add_argument("--vertex-project", default=os.environ.get(VERTEX_PROJECT_ENV))
    p.add_argument("--vertex-location", default=os.environ.get(VERTEX_LOCATION_ENV))
    p.add_argument("--pipeline-root", default=os.environ.get(PIPELINE_ROOT_ENV), help="gs:// or s3:// root")
    p.add_argument("--service-account", default=os.environ.get(SERVICE_ACCOUNT_ENV))
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
    p.add_argument("--tag", default=None, help=f"image tag (default: ${TAG_ENV} or the git commit)")
    from searchrec.cli_options import add_cache_options

    add_cache_options(p)
    add_vertex_network_options(p)


def add_vertex_network_options(p: argparse.ArgumentParser) -> None:
    """--network / --reserved-ip-range (VPC peering) or --psc-network-attachment, for Vertex AI runs."""
    p.add_argument(
        "--network",
        default=os.environ.get(config.VERTEX_NETWORK_ENV),
        help=f"Vertex AI: peer the run with this VPC, projects/<number>/global/networks/<name> (${config.VERTEX_NETWORK_ENV})",
    )
    p.add_argument(
        "--reserved-ip-range", action="append", default=[], help="Vertex AI: a reserved range of --network"
    )
    p.add_argument(
        "--psc-network-attachment",
        default=os.environ.get(config.VERTEX_PSC_ATTACHMENT_ENV),
        help=f"Vertex AI: Private Service Connect interface, projects/<p>/regions/<r>/networkAttachments/<name> (${config.VERTEX_PSC_ATTACHMENT_ENV})",
    )


def vertex_network_from_args(args: argparse.Namespace) -> VertexNetwork:
    return VertexNetwork(
        network=args.network or None,
        psc_network_attachment=args.psc_network_attachment or None,
        reserved_ip_ranges=tuple(args.reserved_ip_range or ()),
    )


def _target_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    # What the user typed is checked first, before the target and before anything is compiled or sent.
    _check_pipeline(args.pipeline)
    check_window(args.start_date, args.end_date)
    from searchrec.cli_options import enable_caching

    params = parse_params(args.param)
    if args.cache_lag_days != config.CACHE_LAG_DAYS:  # the compiled default otherwise
        params.setdefault("cache_lag_days", str(args.cache_lag_days))
    return dict(
        start_date=args.start_date,
        end_date=args.end_date,
        params=params,
        enable_caching=enable_caching(args),
        host=args.host or None,
        namespace=args.namespace or None,
        vertex_project=args.vertex_project or None,  # with --host too: an error, not silently dropped
        vertex_location=args.vertex_location or None,
        pipeline_root=args.pipeline_root or None,
        service_account=args.service_account or None,
        experiment=args.experiment,
        tag=args.tag,
        vertex_network=vertex_network_from_args(args),
    )


def cmd_submit(args: argparse.Namespace) -> int:
    try:
        run_id = submit(
            args.pipeline,
            run_name=args.run_name,
            wait=args.wait,
            timeout=args.timeout,
            poll_interval=args.poll_interval,
            **_target_kwargs(args),
        )
    except RunNotSucceeded as error:
        print(f"searchrec: {error}", file=sys.stderr)
        return error.exit_code
    print(run_id)
    from searchrec.runs import ui_link

    print(f"UI: {ui_link(run_id, args.host)}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    print(schedule(args.pipeline, cron=args.cron, name=args.name, **_target_kwargs(args)))
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    build_images(
        registry=args.registry,
        tag=args.tag,
        push=args.push,
        dry_run=args.dry_run,
        stages=args.stage or config.STAGES,
    )
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `submit`, `schedule` and `images` to the searchrec command line."""
    p = subparsers.add_parser("submit", help="compile and submit one run to Kubeflow Pipelines or Vertex AI")
    _add_target_options(p)
    p.add_argument("--run-name", default=None, help="default: searchrec-<pipeline> <start>..<end> <time>")
    p.add_argument("--wait", action="store_true", help="wait for the run; exit code from its final state")
    p.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait (exit 124 after)")
    p.add_argument("--poll-interval", type=float, default=30.0, help="seconds between state checks")
    p.set_defaults(func=cmd_submit)

    p = subparsers.add_parser("schedule", help="a recurring run on a cron schedule (UTC, 5 fields)")
    _add_target_options(p)
    p.add_argument("--cron", required=True, help="e.g. '0 3 * * *'")
    p.add_argument("--name", default=None)
    p.set_defaults(func=cmd_schedule)

    p = subparsers.add_parser("images", help="build (and push) the six stage images with docker")
    p.add_argument("--registry", default=None, help=f"default: ${REGISTRY_ENV} or {config.IMAGE_REGISTRY}")
    p.add_argument("--tag", default=None, help=f"default: ${TAG_ENV} or the git commit")
    p.add_argument("--push", action="store_true", help="push after building")
    p.add_argument("--dry-run", action="store_true", help="print the docker commands only")
    p.add_argument("--stage", action="append", choices=config.STAGES, help="only these stages")
    p.set_defaults(func=cmd_images)
