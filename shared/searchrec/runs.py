"""`searchrec runs` and `searchrec lineage`: past runs and where an output came from, from the terminal.

Driver side: reads local run folders (kfp.local), the model registry, the Kubeflow Pipelines API and
Vertex AI's pipeline jobs.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from searchrec import config, outputs, registry, storage
from searchrec.artifacts import model as model_artifact
from searchrec.artifacts.folder import read_json
from searchrec.errors import SearchrecError
from searchrec.localrun import RUN_RECORD, read_run

COLUMNS = ("run_id", "pipeline", "window", "state", "started", "seconds", "recall_at_200", "promoted", "link")


@dataclass
class RunRow:
    run_id: str
    pipeline: str
    window: str = ""
    state: str = ""
    started: str = ""
    seconds: float | None = None
    recall_at_200: float | None = None
    promoted: str = ""  # "yes" / "no" / "" (no promote step)
    link: str = ""

    def cells(self) -> list[str]:
        seconds = "" if self.seconds is None else f"{self.seconds:.0f}"
        recall = "" if self.recall_at_200 is None else f"{self.recall_at_200:.4f}"
        return [
            self.run_id,
            self.pipeline,
            self.window,
            self.state,
            self.started,
            seconds,
            recall,
            self.promoted,
        ]


def _window(arguments: dict) -> str:
    for start, end in (("start_date", "end_date"), ("train_start_date", "train_end_date")):
        if arguments.get(start) and arguments.get(end):
            return f"{arguments[start]}..{arguments[end]}"
    return ""


def local_runs(runs_dir: Path) -> list[RunRow]:
    """Every local run under `runs_dir` that left a run record, newest first."""
    rows = []
    for record_file in Path(runs_dir).glob(f"*/{RUN_RECORD}"):
        record = read_json(record_file)
        run = read_run(record_file.parent)
        decision = run.metadata("promote", "decision")
        recall = run.metrics.get("train", {}).get(registry.GATE_METRIC)
        rows.append(
            RunRow(
                run_id=record_file.parent.name,
                pipeline=record.get("pipeline", ""),
                window=_window(record.get("arguments", {})),
                state=record.get("state", ""),
                started=record.get("started", ""),
                seconds=record.get("seconds"),
                recall_at_200=recall,
                promoted=("yes" if decision.get("promoted") else "no") if decision else "",
                link=str(record_file.parent.resolve()),
            )
        )
    return sorted(rows, key=lambda r: r.started, reverse=True)


def kfp_runs(host: str, namespace: str | None = None, limit: int = 20) -> list[RunRow]:
    """The newest runs on a Kubeflow Pipelines endpoint, with their UI links."""
    import kfp

    try:
        client = kfp.Client(host=host, namespace=namespace)
        response = client.list_runs(page_size=limit, sort_by="created_at desc", namespace=namespace)
    except Exception as error:
        raise SearchrecError(f"cannot list runs on {host}: {str(error).splitlines()[0]}") from None
    rows = []
    for run in response.runs or []:
        params = (run.runtime_config.parameters if run.runtime_config else None) or {}
        started, finished = run.created_at, run.finished_at
        seconds = (
            (finished - started).total_seconds() if started and finished and finished > started else None
        )
        rows.append(
            RunRow(
                run_id=run.run_id,
                pipeline=(run.display_name or "").split(" ", 1)[0],
                window=_window(params),
                state=str(run.state or ""),
                started=started.isoformat(timespec="seconds") if isinstance(started, dt.datetime) else "",
                seconds=seconds,
                link=run_link(host, run.run_id),
            )
        )
    return rows


def vertex_runs(
    project: str,
    location: str | None = None,
    pipeline: str | None = None,
    limit: int = 20,
    credentials: object = None,
) -> list[RunRow]:
    """The newest Vertex AI pipeline jobs submitted from here (by the labels submit sets), with their
    console links. Recall@200 and the promotion come from the job's task outputs when it has them."""
    from google.cloud import aiplatform

    from searchrec.submit import vertex_labels

    labels = vertex_labels(pipeline)
    location = location or config.VERTEX_LOCATION
    try:
        jobs = aiplatform.PipelineJob.list(
            filter=" AND ".join(f'labels.{k}="{v}"' for k, v in labels.items()),
            order_by="create_time desc",
            project=project,
            location=location,
            credentials=credentials,
        )
    except Exception as error:
        raise SearchrecError(
            f"cannot list pipeline jobs of Vertex AI project {project} in {location}: "
            f"{str(error).splitlines()[0]}"
        ) from None
    return [_vertex_row(job.gca_resource) for job in jobs[:limit]]


def _vertex_row(job) -> RunRow:
    started = job.start_time or job.create_time
    finished = job.end_time
    outputs = {
        (task.task_name, name): dict(artifacts.artifacts[0].metadata)
        for task in job.job_detail.task_details
        for name, artifacts in task.outputs.items()
        if artifacts.artifacts
    }
    decision = outputs.get(("promote", "decision"))
    return RunRow(
        run_id=job.name.rsplit("/", 1)[-1],
        pipeline=job.labels.get("pipeline") or job.display_name.split(" ", 1)[0],
        window=_window(dict(job.runtime_config.parameter_values)),
        state=job.state.name.removeprefix("PIPELINE_STATE_"),
        started=started.isoformat(timespec="seconds") if started else "",
        seconds=(finished - started).total_seconds() if started and finished else None,
        recall_at_200=outputs.get(("train", "metrics"), {}).get(registry.GATE_METRIC),
        promoted=("yes" if decision.get("promoted") else "no") if decision else "",
        link=ui_link(job.name),
    )


def run_link(host: str, run_id: str) -> str:
    """The Kubeflow Pipelines UI page of a run."""
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def ui_link(run_id: str, host: str | None = None) -> str:
    """A submitted run's page: the KFP UI for a host, the Cloud console for a Vertex AI pipeline job."""
    if host:
        return run_link(host, run_id)
    parts = run_id.split("/")  # projects/<p>/locations/<l>/pipelineJobs/<id>
    if len(parts) == 6 and parts[0] == "projects":
        return (
            f"https://console.cloud.google.com/vertex-ai/locations/{parts[3]}/pipelines/runs/{parts[5]}"
            f"?project={parts[1]}"
        )
    return run_id


def format_runs(rows: list[RunRow]) -> str:
    table = [list(COLUMNS)] + [[*r.cells(), r.link] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in table
    )


# --- lineage ----------------------------------------------------------------------------------------


def lineage(path_or_uri: str) -> list[str]:
    """The chain from an output back to its sources, one line per step, the output first."""
    if outputs.is_root(path_or_uri):
        return _output_lineage(path_or_uri)
    local = storage.local_path(path_or_uri) if not storage.is_remote(path_or_uri) else None
    if local is not None and _run_folder(local) is not None:
        return _run_lineage(_run_folder(local), local)
    return _model_lineage(registry.resolve(path_or_uri))


def _output_lineage(root: str) -> list[str]:
    """An output root: the output LATEST.json names, then the run that wrote it where that is local."""
    uri = outputs.latest_output(root)
    pointer = outputs.read_latest(root) or {}
    lines = [
        f"output {uri} ({outputs.LATEST} of {root}): window end {pointer.get('end_date') or '-'}, "
        f"{_n(pointer.get('users'))} users, written {pointer.get('written_at')}"
    ]
    source = str(pointer.get("source") or "")
    if source and not storage.is_remote(source) and _run_folder(storage.local_path(source)) is not None:
        lines += ["  " + line for line in lineage(source)]
    elif source:
        lines.append(f"  copied from {source}")
    return lines


def _run_folder(path: Path) -> Path | None:
    for folder in [path, *path.resolve().parents]:
        if (folder / RUN_RECORD).is_file():
            return folder
    return None


def _run_lineage(run_dir: Path, target: Path) -> list[str]:
    record = read_json(run_dir / RUN_RECORD)
    run = read_run(run_dir)
    lines = [f"run {run_dir.name}: {record.get('pipeline')} {record.get('state')} ({run_dir})"]
    infer_tasks = [t for t in run.outputs if t.startswith(("merge-recommendations", "infer"))]
    for task in infer_tasks[:1]:
        recs = run.metadata(task, "recommendations")
        lines.append(
            f"recommendations ({task}): {_n(recs.get('users_served'))} users served, top {_n(recs.get('top_k'))}, "
            f"git {recs.get('git_commit')}"
        )
        served = recs.get("model_uri")
        if served:
            lines.append(f"  model served: {served} (version {recs.get('model_version') or '-'})")
    lines += _inputs_lineage(run)
    model_uri = run.metadata("resolve-model", "model").get("model_uri")
    if model_uri:
        lines += ["  " + line for line in _model_lineage(registry.Resolved(uri=model_uri))]
    elif "train" in run.outputs:
        lines += ["  " + line for line in _trained_lineage(run.metadata("train", "model"))]
    return lines


def _inputs_lineage(run) -> list[str]:
    """The extract, snapshot and encode steps of a local run."""
    lines = []
    for task in sorted(run.outputs):
        for artifacts in run.outputs[task].values():
            meta = dict((artifacts or [{}])[0].get("metadata") or {})
            if task.startswith("extract") and "window" in meta:
                lines.append(
                    f"  {task}: window {meta['window']}, {_n(meta.get('rows'))} rows from {meta.get('warehouse')}"
                )
            elif task.startswith("extract-snapshot") and "snapshot_date" in meta:
                lines.append(f"  {task}: snapshot dt={meta.get('snapshot_date')} from {meta.get('uri')}")
            elif task.startswith("encode"):
                lines.append(
                    f"  {task}: encoder {_encoder(meta)} ({meta.get('pooling')}), "
                    f"{_n(meta.get('queries_distinct'))} distinct queries"
                )
    return lines


def _trained_lineage(meta: dict) -> list[str]:
    return [
        f"model trained on {meta.get('train_start')}..{meta.get('train_end')}, "
        f"snapshot dt={meta.get('snapshot_date')}, encoder {_encoder(meta)}, git {meta.get('git_commit')}, "
        f"Recall@200 {_n(meta.get(registry.GATE_METRIC))} (popularity {_n(meta.get(registry.BASELINE_METRIC))})"
    ]


def _encoder(meta: dict) -> str:
    """The encoder and which weights exactly (encoder.encoder_checksum; none for a Hugging Face id)."""
    return f"{meta.get('encoder')} [checksum {meta.get('encoder_checksum') or 'none'}]"


def _n(value: object) -> str:
    """Numbers as people read them: 1813.0 -> 1813, 0.9518073 -> 0.9518."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4f}"
    return str(value)


def _model_lineage(resolved: registry.Resolved) -> list[str]:
    """A model folder or registry version: its decision, training window, inputs and metrics."""
    lines = [f"model {resolved.uri}" + (f" (CURRENT of {resolved.root})" if resolved.root else "")]
    lineage_uri = storage.join_uri(resolved.uri, registry.LINEAGE_FILE)
    if not storage.exists(lineage_uri):
        config = registry.read_json(storage.join_uri(resolved.uri, model_artifact.CONFIG_FILE))
        return lines + _trained_lineage(
            {**config.get("extra", {}), **config.get("extra", {}).get("metrics", {})}
        )
    record = registry.read_json(lineage_uri)
    decision = registry.read_json(storage.join_uri(resolved.uri, registry.DECISION_FILE))
    lines.append(f"  {decision.get('status')}: {decision.get('reason')}")
    lines.append(f"  training run {record.get('run_id')}, git {record.get('git_commit')}")
    lines += ["  " + line for line in _trained_lineage(record.get("model", {}))]
    examples, snapshot = record.get("examples", {}), record.get("snapshot", {})
    lines.append(
        f"  examples: {_n(examples.get('train_examples'))} train, {_n(examples.get('holdout_examples'))} holdout "
        f"(holdout from {examples.get('holdout_start')})"
    )
    lines.append(
        f"  snapshot dt={snapshot.get('snapshot_date')} from {snapshot.get('uri')}, {_n(snapshot.get('rows'))} items"
    )
    encoded = record.get("encoded", {})
    lines.append(f"  encoder {_encoder(encoded)} ({encoded.get('pooling')}, dim {_n(encoded.get('dim'))})")
    return lines


def json_rows(rows: list[RunRow]) -> str:
    return json.dumps([r.__dict__ for r in rows], indent=2, default=str)
