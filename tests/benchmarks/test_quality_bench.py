"""Model quality on two demo-generator worlds (run by `make bench`, not by `make test`).

`demo` is the world `make demo` uses; `hard` is the benchmark world (long tail, late launches, both
scripts for brands, more typos and word-order noise, mixed-intent sessions, weak popularity). Each is
generated, extracted, cleaned and encoded with the stand-in encoder exactly as the demo pipeline does
(library calls), then:

1. `test_quality_on_both_worlds`: the default model against popularity and the ground-truth ceiling,
   Recall@10/50/200, NDCG@200 and MRR on the temporal holdout; wall time of the training stage.
2. `test_defaults_by_measurement`: a coarse grid of one-parameter changes around the defaults, compared
   on the VALIDATION split (the last days of the training window), never on the holdout.

Results go to tests/benchmarks/results/quality.md.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from variants import build_world, update_results_section

from searchrec.stages.train import TrainParams, popularity_metric, train_two_tower

RESULTS = Path(__file__).parent / "results" / "quality.md"
WORLDS = ("demo", "hard")
THREADS = int(os.environ.get("SEARCHREC_BENCH_THREADS", "1"))
GRID: dict[str, dict] = {
    "defaults": {},
    "concat query tower": {"query_tower": "concat"},
    "in-batch negatives only": {"sampled_negatives": 0},
    "4096 sampled negatives": {"sampled_negatives": 4096},
    "popularity-sampled negatives": {"negative_sampling": "popularity"},
    "temperature 0.1": {"temperature": 0.1},
    "lr 0.005": {"lr": 0.005},
    "batch 512": {"batch_size": 512},
    "up to 25 epochs, patience 3": {"epochs": 25, "patience": 3},
    "no popularity prior": {"popularity_prior": False},
    "residual item tower": {"item_tower": "residual"},
    "4 attention heads": {"attention_heads": 4},
    "dropout 0.3": {"dropout": 0.3},
    "2 interests": {"interests": 2},
    "3 interests": {"interests": 3},
    "4 interests": {"interests": 4},
    "3 interests with offsets": {"interests": 3, "interest_offsets": True},
    "interest quota chosen on validation": {"interest_quota": True},
    "interest diversity 0.1": {"interest_diversity": 0.1},
    "cosine lr schedule": {"lr_schedule": "cosine"},
}
SHOWN = ("recall_at_10", "recall_at_50", "recall_at_200", "ndcg_at_200", "mrr")

pytestmark = pytest.mark.benchmark


def _update_results(section: str, text: str) -> None:
    update_results_section(RESULTS, "Model quality: demo and hard worlds", section, text)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, tuple[Path, Path, Path, Path]]:
    torch.set_num_threads(THREADS)
    named = os.environ.get("SEARCHREC_BENCH_WORLDS")  # a folder to keep the prepared worlds in
    root = Path(named) if named else tmp_path_factory.mktemp("worlds")
    return {w: build_world(root / w, w) for w in WORLDS}


def quality_table(world: str, metrics: dict) -> list[str]:
    rows = []
    for key in SHOWN:
        model, pop, ceil = (
            metrics.get(f"{s}_{key}", float("nan")) for s in ("model", "popularity", "ceiling")
        )
        rows.append(
            f"| {world} | {key.replace('_at_', '@').replace('_', ' ')} | {model:.4f} | {pop:.4f} | {ceil:.4f} | "
            f"{model / ceil:.1%} | {model / pop if pop else float('inf'):.1f}x |"
        )
    return rows


def test_quality_on_both_worlds(worlds, tmp_path: Path) -> None:
    rows = []
    for world, (encoded, examples, snapshot, truth) in worlds.items():
        t = time.perf_counter()
        r = train_two_tower(
            encoded, examples, snapshot, tmp_path / world, params=TrainParams(), ground_truth_dir=truth
        )
        wall = time.perf_counter() - t
        rows += quality_table(world, r.metrics)
        rows.append(
            f"| {world} | kept epoch / run, train stage wall s | {r.best_epoch} / {r.epochs} | | | | {wall:.0f} s |"
        )
        assert r.metrics["model_recall_at_200"] > 2 * r.metrics["popularity_recall_at_200"]
    text = "\n".join(
        [
            "## Holdout quality of the default model",
            "",
            f"Default TrainParams (searchrec.config); torch threads {THREADS}; holdout from the demo's "
            "DEMO_HOLDOUT_START, the whole snapshot ranked; ceiling: the generator's oracle (true intent, "
            "items by training popularity).",
            "",
            "| world | metric | model | popularity | ceiling | model / ceiling | model / popularity |",
            "|---|---|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    _update_results("quality", text)


def grid_markdown(rows: list[dict]) -> str:
    """One row per (world, variant): validation metrics (they choose), then holdout for reference."""
    lines = [
        "| world | variant | val ndcg@200 | val recall@10 | val recall@200 | kept / run | prior weight | "
        "val ndcg@200 with prior | holdout recall@10 | holdout recall@200 | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        m = r["metrics"]
        weight = m.get("popularity_weight")
        prior = m.get(popularity_metric("ndcg_at_200", weight)) if weight is not None else None
        lines.append(
            f"| {r['world']} | {r['variant']} | {m.get('validation_ndcg_at_200', float('nan')):.4f} | "
            f"{r.get('validation_recall_at_10', float('nan')):.4f} | {r.get('validation_recall_at_200', float('nan')):.4f} | "
            f"{r['best_epoch']} / {r['epochs']} | {'-' if weight is None else f'{weight:g}'} | "
            f"{'-' if prior is None else f'{prior:.4f}'} | "
            f"{m['model_recall_at_10']:.4f} | {m['model_recall_at_200']:.4f} | {r['seconds']} |"
        )
    return "\n".join(lines)


def grid_row(world: str, variant: str, result, seconds: float) -> dict:
    kept = next((h for h in result.history if h["epoch"] == result.best_epoch), {})
    return {
        "world": world,
        "variant": variant,
        "metrics": result.metrics,
        "validation_recall_at_10": kept.get("validation_recall_at_10", float("nan")),
        "validation_recall_at_200": kept.get("validation_recall_at_200", float("nan")),
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "seconds": round(seconds, 1),
    }


def test_defaults_by_measurement(worlds, tmp_path: Path) -> None:
    wanted = os.environ.get("SEARCHREC_BENCH_GRID", "")
    grid = {k: v for k, v in GRID.items() if not wanted or k in wanted.split(",")}
    rows = []
    for world, (encoded, examples, snapshot, truth) in worlds.items():
        for i, (variant, overrides) in enumerate(grid.items()):
            t = time.perf_counter()
            params = replace(TrainParams(), **overrides)
            r = train_two_tower(
                encoded, examples, snapshot, tmp_path / f"{world}-{i}", params=params, ground_truth_dir=truth
            )
            rows.append(grid_row(world, variant, r, time.perf_counter() - t))
    _update_results(
        "grid",
        "## One-parameter changes around the defaults (chosen on validation)\n\n" + grid_markdown(rows),
    )
    assert all(r["metrics"]["model_recall_at_200"] > 0 for r in rows)
