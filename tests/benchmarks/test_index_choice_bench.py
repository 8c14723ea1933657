"""Benchmark: does ``index_kind=auto`` pick the faster index, and is it ever slower than exact search?

For a clustered catalogue (a mixture of Gaussians on the unit sphere, like real item embeddings) and a
structureless one (uniform on the sphere: no index can prune it), at 100k and 1M items (dim 128) and
5M items (dim 32, to fit this 2-core, 24 GiB machine), the stage's own selection (``_choose``: build the
IVF candidate, tune nprobe on a query sample, keep it only if it is INDEX_AUTO_MIN_SPEEDUP faster than
exact at recall@200 >= 0.95, else exact) runs against plain exact search. Measured in one run per case:
the selection's cost (build + tuning), what it chose and why, recall@200 and users/s of the chosen index
and of exact search on held-out queries, and the break-even (users after which auto's selection cost is
paid back). Results: tests/benchmarks/results/index_choice.md.
Knobs: SEARCHREC_BENCH_CHOICE_SIZES (default "100000:128,1000000:128,5000000:32").
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from searchrec import config
from searchrec.stages.index import Devices, Searcher, _choose, flat, recall_at_k

pytestmark = pytest.mark.benchmark

K, MIN_RECALL, N_TUNE, N_SERVE = 200, 0.95, 2000, 4000
CASES = [
    tuple(int(x) for x in c.split(":"))
    for c in os.environ.get("SEARCHREC_BENCH_CHOICE_SIZES", "100000:128,1000000:128,5000000:32").split(",")
]
RESULTS = Path(__file__).parent / "results" / "index_choice.md"
CPU = Devices(torch.device("cpu"), faiss_gpu=False)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def catalogue(kind: str, n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(items [n, dim], queries [N_TUNE + N_SERVE, dim]), unit vectors."""
    rng = np.random.default_rng(seed)
    m = N_TUNE + N_SERVE
    if kind == "structureless":
        items = np.empty((n, dim), np.float32)
        for s in range(0, n, 500_000):
            items[s : s + 500_000] = _unit(rng.standard_normal((min(500_000, n - s), dim), np.float32))
        return items, _unit(rng.standard_normal((m, dim), np.float32))
    centers = rng.standard_normal((max(1000, n // 500), dim), np.float32)
    spread = 0.35 * np.sqrt(128 / dim)  # the same angular spread at any dim
    items = np.empty((n, dim), np.float32)
    for s in range(0, n, 500_000):
        k = min(500_000, n - s)
        items[s : s + k] = _unit(
            centers[rng.integers(0, len(centers), k)] + spread * rng.standard_normal((k, dim), np.float32)
        )
    queries = _unit(
        centers[rng.integers(0, len(centers), m)] + spread * rng.standard_normal((m, dim), np.float32)
    )
    return items, queries


def _serve(index, queries: np.ndarray) -> tuple[np.ndarray, float]:
    searcher = Searcher(index, use_gpu=False)
    t0 = time.perf_counter()
    _, rows = searcher.search(queries, K)
    return rows, time.perf_counter() - t0


def test_auto_index_choice_against_exact():
    rows = []
    for n, dim in CASES:
        for kind in ("clustered", "structureless"):
            items, queries = catalogue(kind, n, dim)
            tune, serve = queries[:N_TUNE], queries[N_TUNE:]
            t0 = time.perf_counter()
            chosen, index, params, _, tuning, choice = _choose(
                "auto",
                items,
                CPU,
                32,
                K,
                lambda tune=tune: (tune, "queries"),
                None,
                MIN_RECALL,
                config.INDEX_AUTO_THRESHOLD,
                config.INDEX_AUTO_MIN_SPEEDUP,
            )
            select_s = time.perf_counter() - t0
            exact_rows, exact_s = _serve(flat(items), serve)
            # a flat choice is the exact index itself: one timing, not two noisy ones
            got_rows, got_s = (exact_rows, exact_s) if chosen == "flat" else _serve(index, serve)
            exact_ups, got_ups = N_SERVE / exact_s, N_SERVE / got_s
            saved_per_user = 1 / exact_ups - 1 / got_ups
            rows.append(
                {
                    "n": n,
                    "dim": dim,
                    "kind": kind,
                    "chosen": chosen,
                    "params": params,
                    "choice": choice,
                    "select_s": select_s,
                    "recall": recall_at_k(got_rows, exact_rows),
                    "exact_ups": exact_ups,
                    "got_ups": got_ups,
                    "speedup": got_ups / exact_ups,
                    "break_even": select_s / saved_per_user if saved_per_user > 0 else float("inf"),
                }
            )
            print(rows[-1])
            del items, index
    lines = [
        "# Index choice benchmark: index_kind=auto against exact search",
        "",
        f"recall@{K} target {MIN_RECALL}; auto considers IVF from {config.INDEX_AUTO_THRESHOLD:,} items and keeps "
        f"it only at >= x{config.INDEX_AUTO_MIN_SPEEDUP} exact's speed on {N_TUNE:,} tuning queries; users/s "
        f"measured on {N_SERVE:,} other queries, one thread pool, CPU (2 cores). `selection s` is auto's whole "
        "cost beyond exact search (IVF k-means + add + nprobe tuning, or nothing below the threshold).",
        "",
        "| items | dim | catalogue | chosen | params | selection s | recall@200 | users/s exact | users/s chosen | speed vs exact | break-even users | why |",
        "| ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        be = "-" if r["chosen"] == "flat" else f"{r['break_even']:,.0f}"
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        lines.append(
            f"| {r['n']:,} | {r['dim']} | {r['kind']} | {r['chosen']} | {params} | {r['select_s']:.1f} | "
            f"{r['recall']:.3f} | {r['exact_ups']:,.0f} | {r['got_ups']:,.0f} | x{r['speedup']:.2f} | {be} | {r['choice']} |"
        )
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for r in rows:
        assert r["recall"] >= MIN_RECALL - 0.02, r
        # never slower than exact beyond the selection cost: a kept IVF serves faster, a fallback is exact
        assert r["chosen"] == "flat" or r["speedup"] > 1.0, r
