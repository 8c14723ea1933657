"""Benchmark: the clean stage's throughput (training events rows/s) and memory at two sizes.

Synthetic long-format training events (one row per purchase x preceding query, 10 queries per purchase,
Zipf-distributed texts with 5% digits/links/article numbers, the mix the query rules see), written as an
events artifact and cleaned by ``clean_training_events`` in a fresh subprocess per size (peak RSS is the
child's VmHWM). Results: tests/benchmarks/results/clean.md (read by the capacity model, docs/capacity.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from searchrec.artifacts import events, snapshot

pytestmark = pytest.mark.benchmark

SIZES = (1_000_000, 2_000_000)  # event rows
QUERIES_PER_PURCHASE = 10
N_ITEMS, DIM = 20_000, 8
RESULTS = Path(__file__).parent / "results" / "clean.md"

RUNNER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from searchrec.stages.clean import clean_training_events
    events, emb, out = sys.argv[1:4]
    t0 = time.perf_counter()
    stats = clean_training_events(Path(events), Path(emb), Path(out), holdout_start="2026-10-25", min_item_count=2)
    seconds = time.perf_counter() - t0
    peak = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "examples": stats.outputs["train_examples"]}))
    """
)


def make_events(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    purchases = rows // QUERIES_PER_PURCHASE
    vocab = np.array(
        [f"кроссовки {i}" if i % 3 else f"платье миди {i}" for i in range(40_000)]
        + ["123456789", "https://x.ru/catalog/1/detail", "арт 55512", ""],
        dtype=object,
    )
    base = np.datetime64("2026-10-01T00:00:00", "us")
    order_ts = base + rng.integers(0, 30 * 86_400, purchases).astype("timedelta64[s]")
    query_idx = np.minimum(rng.zipf(1.2, rows) - 1, len(vocab) - 5)
    dirt = rng.random(rows) < 0.05
    query_idx[dirt] = len(vocab) - 1 - rng.integers(0, 4, int(dirt.sum()))
    p = np.repeat(np.arange(purchases), QUERIES_PER_PURCHASE)
    return pa.table(
        {
            "user_id": pa.array(p % (purchases // 3) + 1, pa.int64()),
            "order_ts": pa.array(order_ts[p]),
            "nm_id": pa.array(rng.integers(1, N_ITEMS + 1, purchases)[p], pa.int64()),
            "query_ts": pa.array(order_ts[p] - rng.integers(60, 86_400, rows).astype("timedelta64[s]")),
            "query_text": pa.array(vocab[query_idx], pa.string()),
        },
        schema=events.TRAIN_EVENTS,
    )


def test_clean_throughput(tmp_path):
    emb = tmp_path / "emb"
    ids = np.arange(1, N_ITEMS + 1)
    vectors = pa.array(list(np.ones((N_ITEMS, DIM), np.float32)), pa.list_(pa.float32()))
    snapshot.write(
        emb,
        pa.table({"nm_id": pa.array(ids, pa.int64()), "embedding": vectors}),
        snapshot.SnapshotInfo(str(emb), "2026-10-31", "2026-10-31", DIM, N_ITEMS, ["part-0.parquet"]),
    )
    rows = []
    for n in SIZES:
        table = make_events(n)
        events.write(tmp_path / f"events-{n}", [table.slice(s, 500_000) for s in range(0, n, 500_000)])
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                RUNNER,
                str(tmp_path / f"events-{n}"),
                str(emb),
                str(tmp_path / f"out-{n}"),
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows.append({"rows": n, **json.loads(proc.stdout.strip().splitlines()[-1])})
        print(rows[-1])
    lines = [
        "# Clean benchmark: training events rows/s",
        "",
        f"Synthetic training events, {QUERIES_PER_PURCHASE} queries per purchase, Zipf texts with 5% dirt, "
        f"{N_ITEMS:,} items; clean_training_events end to end (read, rules, split, write) in a fresh process, 2 cores.",
        "",
        "| event rows | examples out | seconds | rows/s | peak RSS (MB) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['rows']:,} | {r['examples']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | {r['peak_mb']:.0f} |"
        )
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    assert all(r["examples"] > 0 for r in rows)
