"""Train-stage benchmarks (run by `make bench`, not by `make test`).

1. Throughput and peak memory (RSS) at 1M and 10M synthetic examples with the production shapes
   (Dq=312, 5 history slots, 200k distinct queries, 100k items): a bounded number of steps of the
   default model, each size in its own process so that its peak RSS is its own; the full-epoch time is
   extrapolated from the measured rate (and marked as such). Compared with the naive layout (1560
   floats per example) and with the machine's own matrix-multiply rate as the limit.
2. The objectives compared: every variant trained on the same learnable synthetic data with the same
   seed; holdout Recall@k over the whole snapshot, against global popularity.

Results are printed and written to tests/benchmarks/results/train.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from variants import compare_variants, update_results_section, variants_markdown

from searchrec.artifacts import encoded as encoded_artifact
from searchrec.artifacts import examples as examples_artifact
from searchrec.artifacts import snapshot as snapshot_artifact
from searchrec.stages.train import TrainParams

RESULTS = Path(__file__).parent / "results" / "train.md"
DQ, SLOTS, N_QUERIES, N_ITEMS, DI = 312, 5, 200_000, 100_000, 64
SIZES = (1_000_000, 10_000_000)
STEPS = int(os.environ.get("SEARCHREC_BENCH_TRAIN_STEPS", "60"))
# On a shared, oversubscribed CPU one torch thread beats two (no OpenMP spin-waits); default: torch's own.
THREADS = int(os.environ.get("SEARCHREC_BENCH_THREADS", "0")) or torch.get_num_threads()

pytestmark = pytest.mark.benchmark


def _update_results(section: str, text: str) -> None:
    update_results_section(RESULTS, "Train stage benchmarks", section, text)


def _embeddings(folder: Path, ids: np.ndarray, emb: np.ndarray) -> None:
    offsets = pa.array(np.arange(0, emb.size + 1, emb.shape[1], dtype=np.int32))
    lists = pa.ListArray.from_arrays(offsets, pa.array(emb.reshape(-1), pa.float32()))
    table = pa.table({"nm_id": pa.array(ids), "embedding": lists}, schema=snapshot_artifact.EMBEDDINGS)
    dim = int(emb.shape[1])
    info = snapshot_artifact.SnapshotInfo(
        "bench://", "2026-09-30", "2026-09-30", dim, len(ids), ["part-0.parquet"]
    )
    snapshot_artifact.write(folder, table, info)


def _split(name: str, nm: np.ndarray, hist: np.ndarray, start: str) -> encoded_artifact.EncodedSplit:
    n = len(nm)
    rows = pa.table(
        {
            "user_id": pa.array(np.arange(n, dtype=np.int64)),
            # spread over four weeks, so that the last days make a validation split
            "order_ts": pa.array(
                pd.Timestamp(start).value // 1000
                + np.arange(n, dtype=np.int64) * (28 * 86_400_000_000 // max(n, 1)),
                pa.timestamp("us"),
            ),
            "nm_id": pa.array(nm),
        }
    )
    return encoded_artifact.EncodedSplit(name, rows, hist)


def _publish(root: Path, table: np.ndarray, splits: list, encoder: str, items: pa.Table) -> tuple[Path, Path]:
    """The encode and clean outputs as artifacts (query texts are placeholders: only indices matter)."""
    encoded, examples = root / "encoded", root / "examples"
    info = {"encoder": encoder, "pooling": "cls", "dim": DQ}
    encoded_artifact.write(encoded, table, [f"q{i}" for i in range(1, len(table))], splits, info)
    examples_artifact.write(examples, {examples_artifact.ITEMS_FILE: items}, [])
    return encoded, examples


def _write_scale_inputs(root: Path, n: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """Random data with the production shapes: only speed and memory are measured on it."""
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((N_QUERIES + 1, DQ), dtype=np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    ids = np.arange(1, N_ITEMS + 1, dtype=np.int64) * 11
    splits = []
    for name, rows, start in (("train", n, "2026-09-01"), ("holdout", 2000, "2026-10-01")):
        hist = rng.integers(1, N_QUERIES + 1, size=(rows, SLOTS), dtype=np.int32)
        short = rng.integers(0, SLOTS, size=rows)  # leading padding slots
        hist[np.arange(SLOTS)[None, :] < short[:, None]] = 0
        nm = ids[np.minimum(rng.zipf(1.3, size=rows) - 1, N_ITEMS - 1)]
        splits.append(_split(name, nm, hist, start))
    items = pa.table({"nm_id": ids, "count": np.ones(N_ITEMS, dtype=np.int64)})
    encoded, examples = _publish(root, table, splits, "bench/random", items)
    _embeddings(root / "embeddings", ids, rng.standard_normal((N_ITEMS, DI), dtype=np.float32))
    return encoded, examples, root / "embeddings"


_CHILD = """
import json, resource, sys, time, logging
from pathlib import Path
from searchrec.stages.train import TrainParams, train_two_tower
logging.basicConfig(level=logging.WARNING)
import torch
torch.set_num_threads(int(sys.argv[3]))
root = Path(sys.argv[1])
t = time.perf_counter()
r = train_two_tower(root / "encoded", root / "examples", root / "embeddings", root / "model",
                    params=TrainParams(epochs=1, max_steps_per_epoch=int(sys.argv[2]), eval_every_epoch=False))
wall = time.perf_counter() - t
a, b = torch.randn(1024, 1560), torch.randn(1560, 512)
a @ b
reps, t = 0, time.perf_counter()
while time.perf_counter() - t < 3.0:
    a @ b
    reps += 1
gflops = 2 * 1024 * 1560 * 512 * reps / (time.perf_counter() - t) / 1e9
print(json.dumps({"wall_s": wall, "epoch": r.history[0], "device": r.device, "matmul_gflops": gflops,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _flops_per_example(p: TrainParams) -> float:
    """Forward + backward (x3) of both towers, the [B, B x K] in-batch scores and the shared sampled
    negatives (their item-tower pass, amortised over the batch, and the [B, S x K] scores), with K =
    ``interests`` query vectors per example. The attention tower projects each slot, pools K x heads
    times and runs its output MLP once per interest; the concat tower's last layer outputs K vectors."""
    k, h, heads = p.interests, p.hidden_dim, p.attention_heads
    if p.query_tower == "attention":
        query = SLOTS * DQ * h + 2 * SLOTS * h * heads * k + k * (heads * h * h + h * p.output_dim)
    else:
        query = SLOTS * DQ * h + h * p.output_dim * k
    item = DI * h + h * p.output_dim
    sampled = p.sampled_negatives * (item / p.batch_size + p.output_dim * k)
    return 3 * 2 * (query + item + p.batch_size * p.output_dim * k + sampled)


def test_train_throughput_and_memory(tmp_path: Path) -> None:
    torch.set_num_threads(THREADS)
    params = TrainParams()
    rows = []
    for n in SIZES:
        root = tmp_path / f"n{n}"
        t = time.perf_counter()
        _write_scale_inputs(root, n)
        gen_s = time.perf_counter() - t
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(root), str(STEPS), str(THREADS)],
            capture_output=True,
            text=True,
            check=True,
        )
        res = json.loads(out.stdout.strip().splitlines()[-1])
        ep = res["epoch"]
        rate = ep["examples_per_s"]
        gflops = res["matmul_gflops"]
        ceiling = gflops * 1e9 / _flops_per_example(params)
        indices_mib = n * SLOTS * 4 / 2**20
        rows.append(
            f"| {n:,} | {res['device']} | {ep['examples']:,} ({STEPS} steps) | {rate:,.0f} | "
            f"{n / rate / 60:,.1f} (extrapolated) | {res['wall_s']:.1f} | {res['peak_rss_mib']:,.0f} | "
            f"{indices_mib:,.0f} + {(N_QUERIES + 1) * DQ * 4 / 2**20:,.0f} | {n * SLOTS * DQ * 4 / 2**30:,.1f} | {gflops:.1f} | {ceiling:,.0f} | {rate / ceiling:.0%} |"
        )
        print(f"n={n}: data written in {gen_s:.1f} s; {res}")
        assert rate > 0
        assert res["peak_rss_mib"] < 4 * 1024 + n * SLOTS * DQ * 4 / 2**20 / 4  # far below the naive layout
        shutil.rmtree(root)
    text = "\n".join(
        [
            "## Training throughput and memory",
            "",
            f"Default model ({params.query_tower} query tower, {params.interests} interest vectors, hidden {params.hidden_dim}, "
            f"output {params.output_dim}, batch {params.batch_size}, {params.sampled_negatives} sampled negatives, "
            f"{params.loss}{'+logQ' if params.logq_correction else ''}, padding={params.padding}, lr schedule {params.lr_schedule}); Dq={DQ}, {SLOTS} slots, "
            f"{N_QUERIES:,} distinct queries, {N_ITEMS:,} items (Di={DI}). One bounded epoch of {STEPS} steps per size, "
            f"each in its own process; epoch time extrapolated from the measured rate. torch threads: {THREADS}; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
            f"Limit: the same process then measures this machine's matrix-multiply rate "
            f"([1024x{SLOTS * DQ}]@[{SLOTS * DQ}x{params.hidden_dim}], 3 s); at ~{_flops_per_example(params) / 1e6:.1f} MFLOP "
            "per example (fwd+bwd of both towers, the in-batch and sampled logits) that rate caps examples/s.",
            "",
            "| examples | device | measured | examples/s | epoch min | process wall s (load+train+eval) | peak RSS MiB | "
            "indices + table MiB | naive 1560 floats/example GiB | matmul GFLOP/s | limit examples/s | of limit |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    _update_results("throughput", text)


def _write_learnable_inputs(
    root: Path, *, n_train: int, n_holdout: int, seed: int = 0
) -> tuple[Path, Path, Path]:
    """Items with latent vectors; queries near them; 1-5 query histories (70% related); Zipf popularity."""
    rng = np.random.default_rng(seed)
    n_items, n_extra, n_q, latent = 3000, 2000, 20_000, 16
    z = rng.normal(size=(n_items + n_extra, latent))
    emb = (z @ rng.normal(size=(latent, DI)) + 0.3 * rng.normal(size=(n_items + n_extra, DI))).astype(
        np.float32
    )
    ids = (1 + rng.permutation(n_items + n_extra)).astype(np.int64) * 13
    v = rng.normal(size=(n_q, latent))
    table = np.vstack(
        [rng.normal(size=(1, DQ)), v @ rng.normal(size=(latent, DQ)) + 0.5 * rng.normal(size=(n_q, DQ))]
    )
    table = (table / np.linalg.norm(table, axis=1, keepdims=True)).astype(np.float32)
    related = np.argsort(-(z[:n_items] @ v.T), axis=1)[:, :8] + 1
    pop = 1.0 / np.arange(1, n_items + 1) ** 1.0
    pop /= pop.sum()
    splits = []
    for name, n, start in (("train", n_train, "2026-09-01"), ("holdout", n_holdout, "2026-10-01")):
        items = rng.choice(n_items, size=n, p=pop)
        rel = related[items[:, None], rng.integers(0, 8, size=(n, SLOTS))]
        noise = rng.integers(1, n_q + 1, size=(n, SLOTS))
        hist = np.where(rng.random((n, SLOTS)) < 0.7, rel, noise).astype(np.int32)
        hist[np.arange(SLOTS)[None, :] < rng.integers(0, SLOTS, size=n)[:, None]] = 0
        splits.append(_split(name, ids[items], hist, start))
    bought = pd.Series(splits[0].rows.column("nm_id").to_numpy()).value_counts()
    counts = pa.table({"nm_id": bought.index.to_numpy(np.int64), "count": bought.to_numpy(np.int64)})
    encoded, examples = _publish(root, table, splits, "bench/learnable", counts)
    _embeddings(root / "embeddings", ids, emb)
    return encoded, examples, root / "embeddings"


def test_objective_comparison(tmp_path: Path) -> None:
    n_train, n_holdout = int(os.environ.get("SEARCHREC_BENCH_VARIANT_EXAMPLES", "30000")), 5000
    torch.set_num_threads(THREADS)
    inputs = _write_learnable_inputs(tmp_path / "data", n_train=n_train, n_holdout=n_holdout)
    base = replace(TrainParams(), epochs=3, eval_every_epoch=False)
    rows = compare_variants(*inputs, tmp_path / "runs", base=base)
    best = max(rows, key=lambda r: r["model_recall_at_200"])
    text = "\n".join(
        [
            "## Objectives compared (holdout, full snapshot of 5,000 items)",
            "",
            f"Same learnable synthetic data and seed for every variant: {n_train:,} training / {n_holdout:,} holdout purchases, "
            f"3,000 Zipf-popular training items + 2,000 never-bought snapshot items, Dq={DQ}, 70% of history queries "
            f"related to the bought item; torch threads {THREADS}; {base.epochs} epochs, batch {base.batch_size}, lr {base.lr}, temperature {base.temperature}.",
            "",
            variants_markdown(rows),
            "",
            f"Best Recall@200: **{best['variant']}**.",
        ]
    )
    _update_results("objectives", text)
    assert all(r["model_recall_at_200"] > r["popularity_recall_at_200"] for r in rows)


def test_evaluation_share_of_a_default_run(tmp_path: Path) -> None:
    """Per-epoch evaluation (validation for model selection, a holdout curve) on a fixed sample through
    the serving searcher, the full holdout once at the end: its share of a default run's wall time,
    against scoring the whole splits every epoch (the previous way), in one run on the same data."""
    from searchrec import config
    from searchrec.stages.train import train_two_tower

    torch.set_num_threads(THREADS)
    n_train, n_holdout = 60_000, 15_000
    inputs = _write_learnable_inputs(tmp_path / "data", n_train=n_train, n_holdout=n_holdout)
    rows = []
    for label, sample in (("fixed sample (default)", config.EVAL_SAMPLE), ("whole splits every epoch", 0)):
        params = replace(TrainParams(), eval_max_examples=sample, patience=0)
        result = train_two_tower(*inputs, tmp_path / f"model-{sample}", params=params)
        eval_s = sum(r.get("eval_seconds", 0.0) for r in result.history)
        rows.append((label, sample, result.epochs, result.seconds, eval_s, result.eval_share))
        print(rows[-1])
    lines = [
        "## Evaluation cost in a default training run",
        "",
        f"Learnable synthetic data: {n_train:,} training purchases (the last {config.VALIDATION_DAYS} days of them "
        f"held out for validation), {n_holdout:,} holdout purchases, 5,000 snapshot items; default TrainParams, "
        f"{config.TRAIN_EPOCHS} epochs without early stopping; torch threads {THREADS}. Per-epoch evaluation = validation "
        "(selects the kept epoch) + the holdout curve; the final full-holdout evaluation is not counted in it.",
        "",
        "| per-epoch evaluation | rows per split | epochs | run s | per-epoch eval s | share of the run |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, sample, epochs, seconds, eval_s, share in rows:
        rows_label = f"{sample:,}" if sample else "all"
        lines.append(f"| {label} | {rows_label} | {epochs} | {seconds:.1f} | {eval_s:.1f} | {share:.1%} |")
    _update_results("evaluation", "\n".join(lines))
    assert rows[0][5] < rows[1][5]


def test_evaluation_ranking_by_the_max_over_interests(tmp_path: Path) -> None:
    """The per-epoch evaluation's ranking of a 4-interest model without a quota: the max over a user's
    vectors in one product per block (evaluation.exact_topk) against each vector searched in the serving
    searcher and the lists merged (index.search_users), on the same vectors, alternated, best of 2."""
    from searchrec.evaluation import _searcher, exact_topk, query_tensors
    from searchrec.model import TwoTower
    from searchrec.stages.index import search_users
    from searchrec.stages.train import _model_config, load_training_data

    torch.set_num_threads(THREADS)
    inputs = _write_learnable_inputs(tmp_path / "data", n_train=20_000, n_holdout=5_000)
    params = TrainParams()
    data = load_training_data(*inputs, validation_days=params.validation_days)
    torch.manual_seed(0)
    model = TwoTower(_model_config(data, params)).eval()
    hist = torch.from_numpy(data.holdout_hist[:5000])
    queries = query_tensors(model, torch.from_numpy(data.table), hist)
    rng = np.random.default_rng(0)
    rows = []
    for n_items in (5_000, 100_000, 1_000_000):
        items = torch.from_numpy(rng.standard_normal((n_items, queries.shape[-1]), dtype=np.float32))
        items /= items.norm(dim=1, keepdim=True)
        timings = {"searcher + merge": [], "one product, max": []}
        for _ in range(2):
            t = time.perf_counter()
            dense = exact_topk(queries, items, 200)[1].numpy()
            timings["one product, max"].append(time.perf_counter() - t)
            t = time.perf_counter()
            merged = search_users(_searcher(items), queries.numpy(), 200)[1]
            timings["searcher + merge"].append(time.perf_counter() - t)
        same = float((merged == dense).all(axis=1).mean())
        best = {k: min(v) for k, v in timings.items()}
        rows.append((n_items, best, same))
        print(n_items, best, same)
    lines = [
        "## Ranking a multi-interest model in evaluation",
        "",
        f"{len(queries):,} holdout histories through a default model ({queries.shape[1]} interest vectors of "
        f"{queries.shape[2]} dims, no quota) against random unit item vectors; exact top-200 by the max over a "
        f"user's vectors. Best of 2, alternated, in one run; torch threads {THREADS}. The evaluation takes the "
        "product where a model has several interests, no quota and at most PRODUCT_MAX_ITEMS items (evaluation.model_topk). "
        "Lists differ only where two items' scores round differently in the two products.",
        "",
        "| items | searcher + merge s | one product, max s | speed-up | users with the same list |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n_items, best, same in rows:
        a, b = best["searcher + merge"], best["one product, max"]
        lines.append(f"| {n_items:,} | {a:.2f} | {b:.2f} | x{a / b:.2f} | {same:.2%} |")
    _update_results("evaluation_ranking", "\n".join(lines))
    assert all(same > 0.99 for _, _, same in rows)  # the same exact ranking (ties aside)
