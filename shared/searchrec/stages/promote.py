"""Promote stage: publish the trained model to the registry and move CURRENT only if it passes the gate.

The gate compares like with like: the current model is scored on this run's holdout (the encode,
clean and snapshot folders of this run) with the same evaluation as the train stage's own metrics.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from searchrec import registry
from searchrec.artifacts import model as model_artifact
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)


@dataclass
class PromoteResult:
    version: str
    uri: str
    decision: registry.Decision
    metrics: dict = field(default_factory=dict)  # new model's holdout metrics
    incumbent: dict | None = None  # the current model's, on the same holdout
    incumbent_version: str = ""
    vertex_model: str = ""  # the Vertex AI Model Registry version, where uploaded

    def as_metrics(self) -> dict[str, float]:
        out = {
            "promoted": float(self.decision.promoted),
            "model_recall_at_200": float(self.metrics.get(registry.GATE_METRIC, float("nan"))),
            "popularity_recall_at_200": float(self.metrics.get(registry.BASELINE_METRIC, float("nan"))),
        }
        if self.incumbent is not None:
            out["incumbent_recall_at_200"] = float(self.incumbent[registry.GATE_METRIC])
        return out

    def as_metadata(self) -> dict:
        return {
            "version": self.version,
            "registry_uri": self.uri,
            "status": "promoted" if self.decision.promoted else "rejected",
            "reason": self.decision.reason,
            "incumbent_version": self.incumbent_version or None,
            "vertex_model": self.vertex_model or None,
        }

    def markdown(self) -> str:
        status = "**promoted** (now CURRENT)" if self.decision.promoted else "**not promoted**"
        rows = [f"| {k} | {v:.4f} |" for k, v in self.as_metrics().items() if k != "promoted"]
        return "\n".join(
            [
                f"# Model {self.version}: {status}",
                "",
                self.decision.reason,
                "",
                f"Published at `{self.uri}`"
                + (f"; compared with `{self.incumbent_version}`." if self.incumbent_version else "."),
                "",
                "| holdout metric | value |",
                "| --- | ---: |",
                *rows,
            ]
        )


def score_on_holdout(model_dir: Path, encoded_dir: Path, examples_dir: Path, snapshot_dir: Path) -> dict:
    """Holdout metrics of any trained model on a run's encoded holdout, as the train stage computes them."""
    import torch

    from searchrec.evaluation import evaluate
    from searchrec.model import pick_device
    from searchrec.stages.index import load_model
    from searchrec.stages.train import load_training_data

    data = load_training_data(encoded_dir, examples_dir, snapshot_dir)
    device = pick_device(None)
    model = load_model(Path(model_dir), device)
    cfg = model.cfg
    shapes = {
        "query_dim": (cfg.query_dim, data.table.shape[1]),
        "item_dim": (cfg.item_dim, data.item_emb.shape[1]),
        "history_length": (cfg.history_length, data.holdout_hist.shape[1]),
    }
    wrong = [f"{k} {m} vs {d}" for k, (m, d) in shapes.items() if m != d]
    if wrong:
        raise SearchrecError(f"model {model_dir} does not fit this run's data: {', '.join(wrong)}")
    if not len(data.holdout):
        raise SearchrecError("the holdout split is empty")
    return evaluate(
        model,
        torch.from_numpy(data.table).to(device),
        torch.from_numpy(data.holdout_hist).to(device),
        data.holdout["nm_id"].to_numpy(),
        data.item_ids,
        torch.from_numpy(data.item_emb).to(device),
        data.train_nm_ids,
    )


def _incumbent(models_uri: str, inputs: tuple[Path, Path, Path]) -> tuple[dict | None, str, str]:
    """(metrics of the current model on this holdout or None, its version, a note when not scored)."""
    pointer = registry.read_pointer(models_uri)
    if pointer is None:
        return None, "", ""
    current = registry.resolve(models_uri)
    with tempfile.TemporaryDirectory(prefix="incumbent-") as tmp:
        local = registry.fetch(current.uri, Path(tmp) / "model")
        try:
            return score_on_holdout(local, *inputs), current.version, ""
        except SearchrecError as error:
            note = f"current model {current.version} could not be scored on this holdout ({error})"
            log.warning("promote: %s", note)
            return None, current.version, note


def promote_model(
    model_dir: Path,
    encoded_dir: Path,
    examples_dir: Path,
    snapshot_dir: Path,
    models_uri: str,
    *,
    version: str,
    min_lift: float,
    max_regression: float,
    report_path: Path | None = None,
    lineage: dict | None = None,
    vertex_model_id: str = "",
) -> PromoteResult:
    """Publish `model_dir` as `<models_uri>/<version>/`; move CURRENT to it only if the gate passes.

    vertex_model_id: also register the version in Vertex AI Model Registry under that parent model
    (the default version only if promoted); needs a gs:// registry."""
    if min_lift < 0 or max_regression < 0:
        raise SearchrecError(f"min_lift and max_regression must be >= 0, got {min_lift} and {max_regression}")
    config = model_artifact.read_config(Path(model_dir))
    metrics = dict(config.get("extra", {}).get("metrics") or {})
    incumbent, incumbent_version, note = _incumbent(models_uri, (encoded_dir, examples_dir, snapshot_dir))
    decision = registry.gate(metrics, incumbent, min_lift=min_lift, max_regression=max_regression, note=note)
    log.info("promote: %s %s: %s", version, "promoted" if decision.promoted else "rejected", decision.reason)
    files = {
        registry.METRICS_FILE: _json(
            {"model": metrics, "incumbent": incumbent, "incumbent_version": incumbent_version}
        ),
        registry.DECISION_FILE: _json(decision.as_json()),
        registry.LINEAGE_FILE: _json(lineage or {}),
    }
    if report_path is not None and Path(report_path).is_file():
        files[registry.REPORT_FILE] = Path(report_path).read_bytes()
    uri = registry.publish_version(models_uri, version, Path(model_dir), files)
    if decision.promoted:
        registry.set_current(models_uri, version, model_recall_at_200=metrics.get(registry.GATE_METRIC))
    result = PromoteResult(version, uri, decision, metrics, incumbent, incumbent_version)
    if vertex_model_id:
        from searchrec import config

        result.vertex_model = registry.upload_to_vertex(
            uri, version, decision, model_id=vertex_model_id, serving_image=config.image("infer")
        )
    return result


def _json(data: object) -> bytes:
    return json.dumps(data, indent=2, default=str).encode()
