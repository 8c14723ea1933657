"""Benchmark: how much of a local (kfp.local) demo run on tiny data is per-task start-up.

Runs `searchrec run --pipeline demo` on the generator's tiny data (as tests/components/test_local_run.py
does) and splits every task's wall time (the runner's one line per task) into the stage body (the
stage's own "<stage>: done in N s" log line, from the run's runner.log) and the rest: a fresh Python
process, imports, kfp's executor, artifact bookkeeping. Reports the start-up share of the summed task
time, per task and overall. Results: tests/benchmarks/results/local_overhead.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

RESULTS = Path(__file__).parent / "results" / "local_overhead.md"
TASK_LINE = re.compile(r"^(\S+)\s+(done|cached|failed|skipped)\s+([\d.]+)s", re.M)
STAGE_DONE = re.compile(r"INFO\]?:? (?:searchrec: )?([^:\n]+?): done in ([\d.]+) s")


def test_per_task_startup_share_of_a_tiny_demo_run(tiny_demo, tmp_path):
    data = tiny_demo
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "searchrec.cli",
            "run",
            "--pipeline",
            "demo",
            "--warehouse-uri",
            f"duckdb:///{data / 'warehouse.duckdb'}",
            "--embeddings-uri",
            str(data / "embeddings"),
            "--encoder",
            str(data / "encoder"),
            "--min-item-count",
            "1",
            "--epochs",
            "3",
            "--num-shards",
            "2",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--no-cache",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=1800,
    )
    wall = time.perf_counter() - t0
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    tasks = [(m[1], float(m[3])) for m in TASK_LINE.finditer(out.stdout) if m[2] == "done"]
    [runner_log] = list((tmp_path / "runs").glob("*/runner.log"))
    # task processes write to the inherited stderr (or, captured, to runner.log): read both
    logs = out.stderr + runner_log.read_text(errors="replace")
    bodies = [(m[1], float(m[2])) for m in STAGE_DONE.finditer(logs)]
    task_s, body_s = sum(s for _, s in tasks), sum(s for _, s in bodies)
    share = (task_s - body_s) / task_s
    lines = [
        "# Local run overhead: per-task start-up in a tiny demo run",
        "",
        f"`searchrec run --pipeline demo` on the generator's tiny data, kfp.local SubprocessRunner, 2 cores: "
        f"{len(tasks)} tasks ran, {wall:.1f} s wall for the whole command. Task seconds are the runner's per-task "
        "lines; stage-body seconds are the stages' own `done in` lines (tasks without a stage body, such as "
        "shard bookkeeping, count as start-up).",
        "",
        "| task | seconds |",
        "| --- | ---: |",
        *(f"| {name} | {s:.1f} |" for name, s in tasks),
        "",
        "| stage body | seconds |",
        "| --- | ---: |",
        *(f"| {name} | {s:.1f} |" for name, s in bodies),
        "",
        f"- summed task time {task_s:.1f} s, of which stage bodies {body_s:.1f} s: **start-up share {share:.0%}** "
        "(target under 35%).",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    assert tasks and bodies and 0 < share < 1
