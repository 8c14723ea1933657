"""Model registry in a bucket or a local folder: published versions and one `CURRENT` pointer.

```
<models_uri>/
  CURRENT                          {"version", "uri", "promoted_at", "model_recall_at_200", ...}: written last
  2026-10-07-3f9c2a1b/             <train_end>-<short run id>: a model folder infer loads as it is
    config.json  query_tower.safetensors  item_tower.safetensors  (popularity.safetensors: the prior)
    metrics.json                   the gate's figures: new model, incumbent, popularity on this run's holdout
    decision.json                  {"status": "promoted" | "rejected", "reason", "checks"}
    lineage.json                   the input artifacts' metadata: window, rows, snapshot, encoder, commit, run
    report.html                    the train task's report
    _SEARCHREC_COMPLETE.json       written after every other file of the version (names and sizes)
```

Every version stays published, promoted or not (a rejected one says why in decision.json). The
pointer is one small object, written in a single PUT only after the version is complete, so a reader
sees the old current model or the new one, never a half-published one. Two training runs promoting at
the same moment: the last pointer write wins (both versions stay published).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from searchrec import __version__, storage
from searchrec.artifacts import folder
from searchrec.artifacts import model as model_artifact
from searchrec.errors import SearchrecError

POINTER = "CURRENT"
# The same completion record as every artifact folder (artifacts.folder): a local version folder is a
# complete model artifact; on a bucket it is the object written after every other one of the version.
COMPLETE = folder.COMPLETE_MARKER
METRICS_FILE = "metrics.json"
DECISION_FILE = "decision.json"
LINEAGE_FILE = "lineage.json"
REPORT_FILE = "report.html"
MODEL_FILES = model_artifact.FILES
SIDECAR_FILES = (METRICS_FILE, DECISION_FILE, LINEAGE_FILE)
GATE_METRIC = "model_recall_at_200"
BASELINE_METRIC = "popularity_recall_at_200"


@dataclass
class Decision:
    promoted: bool
    reason: str
    checks: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"status": "promoted" if self.promoted else "rejected", **asdict(self)}


@dataclass(frozen=True)
class Resolved:
    """What a model URI stands for: `uri` is the model folder; `root`/`version` when it came from a registry."""

    uri: str
    root: str = ""
    version: str = ""


def version_name(train_end: str, run_id: str) -> str:
    """`<train_end>-<short run id>`: sorts by window, unique per run."""
    try:
        dt.date.fromisoformat(train_end)
    except ValueError:
        raise SearchrecError(f"train_end must be a YYYY-MM-DD date, got {train_end!r}") from None
    short = re.sub(r"[^0-9a-z]", "", run_id.lower())[:8]
    if not short:
        raise SearchrecError(f"run id {run_id!r} has no letters or digits to name a model version")
    return f"{train_end}-{short}"


def read_pointer(root: str) -> dict | None:
    """The CURRENT pointer of a registry root, or None when nothing was promoted yet."""
    return storage.read_pointer(storage.join_uri(root, POINTER), "registry pointer", "version")


def resolve(model_uri: str) -> Resolved:
    """A model folder as it is; a registry root as its current version (complete, or an error)."""
    if not model_uri:
        raise SearchrecError("no model URI given (a model folder or a registry root)")
    pointer = read_pointer(model_uri)
    if pointer is not None:
        uri = storage.join_uri(model_uri, pointer["version"])
        if not storage.exists(storage.join_uri(uri, COMPLETE)):
            raise SearchrecError(f"registry {model_uri} points at {pointer['version']}, which is incomplete")
        return Resolved(uri=uri, root=model_uri, version=pointer["version"])
    if storage.exists(storage.join_uri(model_uri, model_artifact.CONFIG_FILE)):
        return Resolved(uri=model_uri)
    raise SearchrecError(
        f"{model_uri} is neither a model folder ({model_artifact.CONFIG_FILE}) nor a registry root with a "
        f"promoted model ({POINTER})"
    )


def fetch(uri: str, dest: Path) -> Path:
    """Publish `dest` as a model artifact: the model files of `uri` (and the registry's JSON sidecars
    where present), completion marker last."""
    with model_artifact.publishing(Path(dest)) as path:
        for name in MODEL_FILES:
            (path / name).write_bytes(storage.read_bytes(storage.join_uri(uri, name)))
        for name in (*model_artifact.OPTIONAL_FILES, *SIDECAR_FILES):
            source = storage.join_uri(uri, name)
            if storage.exists(source):
                (path / name).write_bytes(storage.read_bytes(source))
    return Path(dest)


def read_json(uri: str) -> dict:
    try:
        data = json.loads(storage.read_bytes(uri))
    except ValueError as error:
        raise SearchrecError(f"{uri} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise SearchrecError(f"{uri} is not a JSON object")
    return data


def publish_version(root: str, version: str, model_dir: Path, files: dict[str, bytes]) -> str:
    """Write a version folder: the model files, the given extra files, then the completion marker."""
    uri = storage.join_uri(root, version)
    if storage.exists(storage.join_uri(uri, COMPLETE)):
        raise SearchrecError(f"model version {uri} is already published")
    names = [*MODEL_FILES, *(n for n in model_artifact.OPTIONAL_FILES if (Path(model_dir) / n).is_file())]
    contents = {name: (Path(model_dir) / name).read_bytes() for name in names} | files
    for name, data in contents.items():
        storage.write_bytes(storage.join_uri(uri, name), data)
    record = {
        "kind": model_artifact.KIND,
        "files": {name: len(data) for name, data in contents.items()},
        "searchrec_version": __version__,
        "completed_at": dt.datetime.now(dt.timezone.utc).timestamp(),
    }
    storage.write_bytes(storage.join_uri(uri, COMPLETE), json.dumps(record, indent=2).encode())
    return uri


def set_current(root: str, version: str, **info: object) -> dict:
    """Move the pointer: one small object, written in one PUT, after the version is complete."""
    uri = storage.join_uri(root, version)
    if not storage.exists(storage.join_uri(uri, COMPLETE)):
        raise SearchrecError(f"cannot promote {uri}: it is not completely published")
    pointer = {
        "version": version,
        "uri": uri,
        "promoted_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **info,
    }
    storage.write_bytes(storage.join_uri(root, POINTER), json.dumps(pointer, indent=2).encode())
    return pointer


def versions(root: str) -> list[dict]:
    """Every complete version under a root, oldest first: name, uri, status, reason, current or not."""
    current = (read_pointer(root) or {}).get("version")
    out = []
    for name in storage.list_dir(root):
        uri = storage.join_uri(root, name)
        if name == POINTER or not storage.exists(storage.join_uri(uri, COMPLETE)):
            continue
        decision = read_json(storage.join_uri(uri, DECISION_FILE))
        out.append(
            {
                "version": name,
                "uri": uri,
                "status": decision.get("status"),
                "reason": decision.get("reason"),
                "current": name == current,
            }
        )
    return out


def gate(
    new: dict, incumbent: dict | None, *, min_lift: float, max_regression: float, note: str = ""
) -> Decision:
    """Promote when Recall@200 >= min_lift x popularity and >= incumbent - max_regression (same holdout).

    `new` / `incumbent`: holdout metrics of the two models on this run's holdout; `incumbent` None when
    there is no current model or it cannot be scored here (`note` says why)."""
    if GATE_METRIC not in new or BASELINE_METRIC not in new:
        return Decision(False, "no holdout metrics (empty holdout?): nothing to compare", {})
    recall, popularity = float(new[GATE_METRIC]), float(new[BASELINE_METRIC])
    checks: dict = {
        "recall_at_200": recall,
        "popularity_recall_at_200": popularity,
        "min_lift": min_lift,
        "max_regression": max_regression,
        "lift": recall / popularity if popularity > 0 else None,
    }
    if recall < min_lift * popularity:
        return Decision(
            False, f"Recall@200 {recall:.4f} < {min_lift:g} x popularity {popularity:.4f}", checks
        )
    if incumbent is None:
        return Decision(True, note or "no current model: the first one that passes the lift check", checks)
    current = float(incumbent[GATE_METRIC])
    checks["incumbent_recall_at_200"] = current
    if recall < current - max_regression:
        return Decision(
            False,
            f"Recall@200 {recall:.4f} is more than {max_regression:g} below the current model's "
            f"{current:.4f} on the same holdout",
            checks,
        )
    return Decision(
        True,
        f"Recall@200 {recall:.4f} vs current {current:.4f}, {recall / popularity:.1f}x popularity",
        checks,
    )


def model_metadata(resolved: Resolved, local_dir: Path) -> dict:
    """What a served model's artifact records: where it was resolved from and what it was trained on."""
    config = model_artifact.read_config(Path(local_dir))
    extra = config.get("extra") or {}
    meta = {
        "model_uri": resolved.uri,
        "registry_uri": resolved.root or None,
        "model_version": resolved.version or None,
        **{k: extra.get(k) for k in ("train_start", "train_end", "snapshot_date", "encoder", "pooling")},
        "trained_recall_at_200": (extra.get("metrics") or {}).get(GATE_METRIC),
    }
    return {k: v for k, v in meta.items() if v is not None}


SERVED_KEYS = ("model_uri", "model_version", "registry_uri", "train_start", "train_end")


def served_model(metadata: dict, artifact_uri: str) -> dict:
    """The model a recommendations dataset came from, for its metadata: the resolved folder (or the model
    artifact's own URI when it came straight from a train task), its version and training window."""
    out = {k: metadata[k] for k in SERVED_KEYS if metadata.get(k) is not None}
    out.setdefault("model_uri", artifact_uri)
    return out


def upload_to_vertex(
    version_uri: str,
    version: str,
    decision: Decision,
    *,
    model_id: str,
    serving_image: str,
    project: str | None = None,
    location: str | None = None,
    api_endpoint: str | None = None,
    credentials: object = None,
) -> str:
    """Register a published version in Vertex AI Model Registry as a new version of the parent model
    `model_id` (created by the first upload); a promoted version becomes the default one. Project and
    location default to the environment (on Vertex AI Pipelines: the job's). Returns the versioned name."""
    if not version_uri.startswith("gs://"):
        raise SearchrecError(f"Vertex AI Model Registry needs a gs:// model folder, got {version_uri}")
    try:
        from google.api_core import exceptions
        from google.cloud import aiplatform
    except ImportError:
        raise SearchrecError("uploading to Vertex AI Model Registry needs google-cloud-aiplatform") from None
    aiplatform.init(
        project=project,
        location=location,
        credentials=credentials,
        api_endpoint=api_endpoint,
        api_transport="rest" if api_endpoint else None,
    )
    config = aiplatform.initializer.global_config
    parent = f"projects/{config.project}/locations/{config.location}/models/{model_id}"
    try:
        aiplatform.Model(parent)
        exists = True
    except exceptions.NotFound:
        exists = False
    status = "promoted" if decision.promoted else "rejected"
    model = aiplatform.Model.upload(
        display_name=model_id,
        artifact_uri=version_uri,
        serving_container_image_uri=serving_image,
        parent_model=parent if exists else None,
        model_id=None if exists else model_id,
        is_default_version=decision.promoted,
        version_aliases=["v" + re.sub(r"[^a-z0-9-]", "-", version.lower())],
        version_description=f"{status}: {decision.reason}"[:1000],
        labels={
            "searchrec_status": status,
            "searchrec_version": re.sub(r"[^a-z0-9_-]", "_", version.lower())[:63],
        },
        sync=True,
    )
    return model.versioned_resource_name
