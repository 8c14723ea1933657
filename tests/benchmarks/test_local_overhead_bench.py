"""Benchmark: how much of a local (kfp.local) demo run on tiny data is per-task start-up.

Runs `searchrec run --pipeline demo` on the generator's tiny data (as tests/components/test_local_run.py
does), cold, warm and kept, twice in one run: cold (every task a fresh interpreter, SEARCHREC_WARM_TASKS=0),
warm (the default: tasks forked from a process per image family that imported its libraries once,
searchrec.warmstart, started by the run) and kept (the next run from the same folder and environment,
which finds the warm run's processes still there), and splits every task's wall time (the runner's one line per task) into the stage body (the
stage's own "<stage>: done in N s" log line, from the run's runner.log) and the rest: a fresh Python
process, imports, kfp's executor, artifact bookkeeping. Warm, that rest splits into the one-time wait of a
family's first task for the family's imports and the per-task start-up. Reports the shares of the wall
time, and where each task's start-up goes, from the timestamps in runner.log:
process start to kfp's first executor line (sh, Python, kfp's runtime import), the component's imports
(to the stage's "started" line), the body, and the output write plus process exit (kfp's "Wrote executor
output" line to the runner's "finished"). The import cost of each heavy package, alone in a fresh
interpreter, is measured in the same run. Results: tests/benchmarks/results/local_overhead.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from searchrec import config, warmstart
from tests.tiny_world import run_sources

pytestmark = pytest.mark.benchmark

RESULTS = Path(__file__).parent / "results" / "local_overhead.md"
TASK_LINE = re.compile(r"^(\S+)\s+(done|cached|failed|skipped)\s+([\d.]+)s", re.M)
STAGE_DONE = re.compile(r"INFO\]?:? (?:searchrec: )?([^:\n]+?): done in ([\d.]+) s")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's own lines (its format, or the root logger's when a ParallelFor thread logs)
RUNNER_EVENT = re.compile(
    r"^(?:\d{4}-\d\d-\d\d )?(\d\d):(\d\d):(\d\d)[.,](\d+) (?:- )?INFO (?:- |root: )"
    r"(?:Executing task '([^']+)'|Task '([^']+)' finished with status)"
)
EXECUTOR_EVENT = re.compile(r"\[KFP Executor \d{4}-\d\d-\d\d (\d\d):(\d\d):(\d\d),(\d+) INFO\]: (.*)$")
PHASES = ("process + kfp", "imports", "body", "write + exit")
# Heavy packages a task may import before its stage starts; each timed alone in a fresh interpreter.
HEAVY = ("pyarrow", "pandas", "torch", "faiss")
# Components that import torch (and faiss) before their stage starts: their work runs the model's towers.
TORCH_COMPONENTS = ("train", "build_index", "infer")


def _seconds(h: str, m: str, s: str, frac: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + float("0." + frac)


def _function(task: str) -> str:
    return re.sub(r"-\d+$", "", task).replace("-", "_")


def task_phases(runner_log: str) -> list[dict]:
    """Per task run: {task, exec, look, start, done, wrote, end} timestamps (s of day) from runner.log.

    exec/end: kfp.local's "Executing task" / "finished" lines; look: kfp's first executor line in the task
    process; start/done: the stage's "started" / "done in" lines; wrote: kfp's "Wrote executor output"."""
    runs: list[dict] = []
    looked: list[dict] = []
    started: list[dict] = []
    for line in ANSI.sub("", runner_log).splitlines():
        if m := RUNNER_EVENT.match(line):
            at = _seconds(*m.group(1, 2, 3, 4))
            if m[5]:
                runs.append({"task": m[5], "exec": at})
            else:
                next(r for r in runs if r["task"] == m[6] and "end" not in r)["end"] = at
        elif m := EXECUTOR_EVENT.search(line):
            at, message = _seconds(*m.group(1, 2, 3, 4)), m[5]
            if mm := re.match(r"Looking for component `(\w+)`", message):
                run = next(r for r in runs if "look" not in r and _function(r["task"]) == mm[1])
                run["look"] = at
                looked.append(run)
            elif message.endswith(": started") and looked:
                started.append(looked.pop(0))
                started[-1]["start"] = at
            elif re.search(r": done in [\d.]+ s$", message) and started:
                started.pop(0)["done"] = at
            elif mm := re.match(r"Wrote executor output file to .*/([^/]+)/executor_output\.json", message):
                run = next(r for r in runs if r["task"] == mm[1] and "wrote" not in r)
                run["wrote"] = at
                if run in looked:  # a task without a stage body (shard bookkeeping)
                    looked.remove(run)
    return [r for r in runs if {"look", "wrote", "end"} <= set(r)]


def phase_seconds(run: dict) -> tuple[float, float, float, float]:
    start = run.get("start", run["wrote"])
    done = run.get("done", start)
    return (run["look"] - run["exec"], start - run["look"], done - start, run["end"] - done)


def import_seconds(module: str) -> float:
    """Cumulative import time of `module` alone in a fresh interpreter (-X importtime), as a task sees it."""
    env = {**os.environ, config.KFP_TASK_ENV: "true"}
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    [line] = [x for x in out.stderr.splitlines() if x.rstrip().endswith(f"| {module}")]
    return int(line.split("|")[1]) / 1e6


def demo_run(data: Path, work: Path, warm: bool, cwd: Path, keep_dir: Path) -> dict:
    """One `searchrec run --pipeline demo` on the tiny world, from `cwd`; its task, stage-body and phase
    seconds. Warm, its processes are kept (in `keep_dir`'s own folder) for the next run from `cwd`."""
    env = {
        **os.environ,
        warmstart.ENV: "1" if warm else "0",
        config.WARM_KEEP_ENV: "600",
        "TMPDIR": str(keep_dir),  # this benchmark's kept processes, not the machine's
    }
    started_at = time.time()  # wall clock, to compare with runner.log's timestamps
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "searchrec.cli", "run", "--pipeline", "demo", *run_sources(data)]
        + ["--min-item-count", "1", "--epochs", "3", "--num-shards", "2"]
        + ["--runs-dir", str(work / "runs"), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=1800,
    )
    wall = time.perf_counter() - t0
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    tasks = [(m[1], float(m[3])) for m in TASK_LINE.finditer(out.stdout) if m[2] == "done"]
    [runner_log] = list((work / "runs").glob("*/runner.log"))
    text = runner_log.read_text(errors="replace")
    # task processes write to the inherited stderr (or, captured, to runner.log): read both
    logs = out.stderr + text
    bodies = [(m[1], float(m[2])) for m in STAGE_DONE.finditer(logs)]
    task_s, body_s = sum(s for _, s in tasks), sum(s for _, s in bodies)
    runs = task_phases(text)
    phases = [(r["task"], phase_seconds(r)) for r in runs]
    wait = ready_wait(phases)  # once per run, in the first task of a family that arrived before its imports
    day = time.localtime(started_at)
    started_s_of_day = started_at - time.mktime((*day[:3], 0, 0, 0, *day[6:]))
    ml = ml_components()
    first_ml = min((r["exec"] for r in runs if _function(r["task"]) in ml), default=None)
    warm_log = runner_log.with_name("warm-tasks.log")
    warm_said = warm_log.read_text() if warm_log.exists() else ""
    imported = re.findall(r"warm ml tasks: imported \d+ modules in ([\d.]+) s", warm_said)
    return {
        "wall": wall,
        "tasks": tasks,
        "bodies": bodies,
        "task_s": task_s,
        "body_s": body_s,
        "share": (task_s - body_s) / task_s,
        "wait": wait,
        "per_task": task_s - body_s - wait,
        "per_task_share": (task_s - body_s - wait) / wall,
        "all_share": (task_s - body_s) / wall,  # per task and waiting
        "phases": phases,
        "first_ml_at": None if first_ml is None else first_ml - started_s_of_day,
        "ml_imports": float(imported[0]) if imported else None,
        "totals": [sum(p[i] for _, p in phases) for i in range(len(PHASES))],
        "forked": text.count("forked from the warm"),
        "found_kept": "imported" not in warm_said and "kept for the next run" in warm_said,
        "headline": [line for line in out.stdout.splitlines() if line.startswith("Recall@200")],
        "logs": logs,
    }


MODES = ("cold", "warm", "kept")


def test_per_task_startup_share_of_a_tiny_demo_run(tiny_demo, tmp_path):
    keep_dir = Path(tempfile.mkdtemp(prefix="lo", dir="/tmp"))  # short: a socket path has ~100 characters
    pairs = []
    try:
        for attempt in (1, 2):  # each comparison twice: cold, warm, then the next run (kept)
            pair = {}
            cwd = tmp_path / f"cwd-{attempt}"  # warm and kept from one folder: the kept run finds warm's
            cwd.mkdir()
            for mode in MODES:
                work = tmp_path / f"{mode}-{attempt}"
                work.mkdir()
                pair[mode] = demo_run(tiny_demo, work, mode != "cold", cwd, keep_dir)
            pairs.append(pair)
    finally:
        stop = [sys.executable, "-m", "searchrec.cli", "warm", "--stop"]
        subprocess.run(stop, env={**os.environ, "TMPDIR": str(keep_dir)}, check=True, timeout=60)
    cold, warm = pairs[0]["cold"], pairs[0]["warm"]
    heavy = {m: import_seconds(m) for m in ("kfp.dsl.executor_main", *HEAVY)}
    torch_imports = sum(p[1] for name, p in cold["phases"] if _function(name) in TORCH_COMPONENTS)
    n_torch = sum(_function(name) in TORCH_COMPONENTS for name, _ in cold["phases"])
    encoder_load = {
        r: sum(float(x) for x in re.findall(r"encoder: loaded .* in ([\d.]+) s", run["logs"]))
        for r, run in (("cold", cold), ("warm", warm))
    }
    warm_share = max(pair["warm"]["per_task_share"] for pair in pairs)
    cold_share = min(pair["cold"]["per_task_share"] for pair in pairs)

    def each(text) -> str:
        """One figure per pair, `text(pair)`, joined as the report's sentences read."""
        return " and ".join(text(pair) for pair in pairs)

    lines = [
        "# Local run overhead: per-task start-up in a tiny demo run",
        "",
        "`searchrec run --pipeline demo` on the generator's tiny data, kfp.local SubprocessRunner, 2 cores, "
        "cold, warm and kept, twice, in one benchmark run: **cold**, every task in a fresh interpreter as kfp.local "
        f"does by itself (`{warmstart.ENV}=0`); **warm**, the default, every task forked from a process per "
        "image family that imported the family's libraries once (searchrec.warmstart), started by the run; "
        "**kept**, the next run from the same folder and environment, whose tasks are forked from the "
        f"processes the warm run left (kept {config.WARM_KEEP_S:g} s after their last task by default, "
        f"`{config.WARM_KEEP_ENV}`). Task seconds are the "
        "runner's per-task lines; stage-body seconds are the stages' own `done in` lines (tasks without a stage "
        "body, such as shard bookkeeping, count as start-up). A task's start-up is its seconds outside its "
        "stage body. Warm, it splits in two: the **one-time import wait**, once per run and family, while the "
        "first task of a family waits for that family's process to finish importing (torch and transformers "
        "for the CUDA family, started with the command, whatever the number of tasks), and the **per-task start-up**, paid by every task (fork, kfp's executor reading its inputs and "
        "writing its outputs, process exit). Cold, every task imports its libraries itself: all of its "
        "start-up is per task.",
        "",
        "| run | tasks | tasks forked warm | command wall s | summed task s | stage bodies s | per-task start-up s "
        "| one-time import wait s | **per-task start-up / wall** | import wait / wall | all start-up / wall |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {mode}, {attempt} | {len(r['tasks'])} | {r['forked']} "
            f"| {r['wall']:.1f} | {r['task_s']:.1f} | {r['body_s']:.1f} | {r['per_task']:.1f} | {r['wait']:.1f} "
            f"| **{r['per_task_share']:.0%}** | {r['wait'] / r['wall']:.0%} "
            f"| {r['all_share']:.0%} |"
            for attempt, pair in enumerate(pairs, 1)
            for mode, r in pair.items()
        ),
        "",
        f"- **Per-task start-up, warm (the default): at most {warm_share:.0%} of the run's wall time** in the two "
        f"runs (target under 35%; cold at least {cold_share:.0%}), "
        + each(lambda pair: f"{pair['warm']['per_task'] / len(pair['warm']['tasks']):.3f}")
        + " s per task (cold "
        + each(lambda pair: f"{pair['cold']['per_task'] / len(pair['cold']['tasks']):.2f}")
        + " s).",
        "- The one-time import wait is "
        + each(
            lambda pair: f"{pair['warm']['wait']:.1f} s ({pair['warm']['wait'] / pair['warm']['wall']:.0%})"
        )
        + " of the warm runs' wall time: the first CUDA-family task (encode) is reached "
        + each(lambda pair: f"{pair['warm']['first_ml_at']:.1f} s")
        + " after the command starts, while the CUDA family's process takes "
        + each(lambda pair: f"{pair['warm']['ml_imports']:.1f} s")
        + " to import torch, faiss and transformers (its own line in the run's warm-tasks.log). Counted with the per-task start-up, warm start-up "
        "is "
        + each(lambda pair: f"{pair['warm']['all_share']:.0%}")
        + " of the wall time. It is what a run of a single CUDA-family task would pay for the same imports; "
        "the command starts the warm processes first, before its own checks and the pipeline's build.",
        "- **Kept, the next run: all start-up (per task and waiting) is "
        + each(lambda pair: f"{pair['kept']['all_share']:.0%}")
        + " of the wall time** (target under 35%), "
        + each(lambda pair: f"{pair['kept']['wall']:.1f} s")
        + " per run, "
        + each(lambda pair: f"{pair['kept']['wall'] / pair['cold']['wall']:.2f}x")
        + " the cold run's: its tasks wait "
        + each(lambda pair: f"{pair['kept']['wait']:.1f} s")
        + " for imports, which the kept processes made before the run started. A project file edited "
        "between runs is read anew by every task; a package installed, another folder or another "
        "environment starts new processes (and stops the old ones).",
        "- The whole command took "
        + each(lambda pair: f"{pair['warm']['wall'] / pair['cold']['wall']:.2f}x")
        + " the cold run's wall time ("
        + each(lambda pair: f"{pair['warm']['wall']:.1f} s vs {pair['cold']['wall']:.1f} s")
        + "); every run printed the same headline "
        f"({'; '.join(warm['headline'])}).",
        f"- Of the summed task time, start-up is {warm['share']:.0%} warm ({cold['share']:.0%} cold): warm, the stage "
        "bodies shrink too, because cold they held imports that a stage makes itself (encode's torch and "
        "transformers, train's first optimizer step importing torch._dynamo), so on tiny data the remaining "
        "per-task cost is compared with bodies of a tenth of a second.",
        "- The stage body starts where the stage function starts (`runtime.stage`); "
        f"`from_pretrained` took {encoder_load['cold']:.1f} s cold, {encoder_load['warm']:.1f} s warm "
        "(the `encoder: loaded` lines).",
        "",
        "Where each task's time goes in the first pair, from the timestamps in runner.log (seconds): process + kfp "
        "= process start to kfp's first executor line (warm, this holds the one-time import wait); imports = to "
        "the stage's `started` line; write + exit = the stage's end to the runner's `finished` line.",
        "",
        "| task | "
        + " | ".join(f"cold {p}" for p in PHASES)
        + " | "
        + " | ".join(f"warm {p}" for p in PHASES)
        + " |",
        "| --- | " + " | ".join("---:" for _ in range(2 * len(PHASES))) + " |",
        *_phase_rows(cold["phases"], warm["phases"]),
        "| **sum** | "
        + " | ".join(f"**{x:.1f}**" for x in cold["totals"])
        + " | "
        + " | ".join(f"**{x:.1f}**" for x in warm["totals"])
        + " |",
        "",
        "Import cost of each package alone in a fresh interpreter, as a cold task process sees it "
        "(`-X importtime`, kfp's runtime import with `_KFP_RUNTIME=true` as KFP sets it):",
        "",
        "| module | seconds |",
        "| --- | ---: |",
        *(f"| {m} | {s:.2f} |" for m, s in heavy.items()),
        "",
        f"Cold, the start-up is mostly imports: {cold['totals'][1]:.1f} s before the stages start, of which "
        f"{torch_imports:.1f} s in the {n_torch} task processes that run the model's towers (train, the index, "
        "each infer shard: torch and faiss). Warm, those imports happen once per family, in the background while "
        "the first tasks run; a task that arrives before its family's process is ready waits for it rather than "
        "import the same libraries beside it.",
    ]
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        lines.append(
            "- PYTHONDONTWRITEBYTECODE is set in this environment: a cold task process compiles the project's "
            "own modules it imports from source (no `__pycache__`), part of the imports column; a warm or kept "
            "task runs them from the code its family's process compiled once (files unchanged since)."
        )
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for attempt, pair in enumerate(pairs, 1):
        for mode, run in pair.items():
            where = f"{mode} run {attempt}"
            assert run["tasks"] and run["bodies"] and 0 < run["share"] < 1, where
            # every task process but the importer's (no process)
            assert len(run["phases"]) == len(run["tasks"]) - 1, (where, run["phases"], run["tasks"])
        assert pair["cold"]["forked"] == 0, attempt
        for mode in ("warm", "kept"):
            assert pair[mode]["forked"] == len(pair[mode]["phases"]), (attempt, mode, pair[mode]["forked"])
        assert pair["kept"]["found_kept"] and not pair["warm"]["found_kept"], attempt
        assert pair["kept"]["wait"] < pair["warm"]["wait"], (
            attempt,
            pair["kept"]["wait"],
            pair["warm"]["wait"],
        )
        assert pair["kept"]["headline"] == cold["headline"], attempt
        # cold, no task waits for anything but its own process
        assert pair["cold"]["wait"] < pair["warm"]["wait"], (
            attempt,
            pair["cold"]["wait"],
            pair["warm"]["wait"],
        )
        assert pair["warm"]["headline"] and pair["warm"]["headline"] == cold["headline"], (
            attempt
        )  # same results


def ml_components() -> set[str]:
    """The components whose image is of the CUDA family (warmstart.family_of): the first of them to run
    waits for that family's imports."""
    import components

    return {
        name
        for name in components.__all__
        if warmstart.family_of(getattr(components, name).component_spec.implementation.container.image)
        == "ml"
    }


def ready_wait(phases: list) -> float:
    """Seconds tasks spent before kfp's executor started beyond the usual 0.1 s: a warm task waiting for its
    family's process to finish importing (cold, that phase is only sh + Python + kfp's runtime import)."""
    return sum(max(0.0, p[0] - 0.1) for _, p in phases)


def _phase_rows(cold: list, warm: list) -> list[str]:
    rows = []
    for (name, c), (_, w) in zip(
        sorted(cold, key=lambda x: x[0]), sorted(warm, key=lambda x: x[0]), strict=True
    ):
        rows.append(f"| {name} | " + " | ".join(f"{x:.2f}" for x in (*c, *w)) + " |")
    return rows
