"""Capacity model: time and machines per stage for 1M, 10M and 100M users, from the benchmarks' own
per-unit costs. Every rate below is read from tests/benchmarks/results/*.md (the tables `make bench`
writes); nothing is typed in. ``python tests/benchmarks/capacity.py`` rewrites docs/capacity.md, and
tests/test_capacity.py fails if the committed page differs from what the results files give.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from searchrec.config import INTERESTS  # query vectors searched per served user (the default model)
from searchrec.config import TRAIN_EPOCHS as EPOCHS  # at most: early stopping may end sooner

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "benchmarks" / "results"
DOC = ROOT / "docs" / "capacity.md"

# Workload assumptions (stated in the page; change them here, never the rates).
WINDOW_DAYS = 28
PURCHASES_PER_USER = 1.0  # training examples per user in the window
QUERIES_PER_EXAMPLE = 10  # the SQL fetches up to 10 preceding queries: event rows per example
DISTINCT_QUERIES_PER_USER = 0.3  # distinct query texts per user (queries repeat heavily)
INFER_ROWS_PER_USER = 10  # last 10 queries per served user
TASK_LIMIT_S = 3600  # every task should finish within an hour
USERS = (1_000_000, 10_000_000, 100_000_000)
ITEMS = (1_000_000, 10_000_000)


def _table_rows(name: str) -> list[list[str]]:
    """Cells of every markdown table row in results/<name>.md (header and rule rows included)."""
    text = (RESULTS / f"{name}.md").read_text(encoding="utf-8")
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]


def _number(cell: str) -> float:
    m = re.search(r"-?[\d,]+(?:\.\d+)?", cell.replace("**", ""))
    if not m:
        raise ValueError(f"no number in {cell!r}")
    return float(m.group(0).replace(",", ""))


def _column(rows: list[list[str]], header: str) -> int:
    for row in rows:
        if header in row:
            return row.index(header)
    raise KeyError(header)


@dataclass(frozen=True)
class Rates:
    extract_rows_s: float  # sql/infer_events.sql through the extract stage (COPY), PostgreSQL, one client
    clean_rows_s: float  # training event rows through clean_training_events
    encode_queries_s: float  # distinct queries/s through the encode stage (CPU, rubert-tiny2 shape)
    train_examples_s: float  # training examples/s (CPU, 10M-example run)
    search_exact_users_s_1m: float  # users/s, exact top-200 over 1M items (the stage's Searcher)
    search_ivf_users_s_1m: float  # users/s, IVF top-200 over 1M clustered items at recall >= 0.95
    merge_users_s: float  # users/s, merging each user's INTERESTS top-200 lists (index.merge_interests)
    sources: dict[str, str]


def read_rates() -> Rates:
    extract = _table_rows("extract")
    rate = _column(extract, "rows/s")
    stage = [r for r in extract if r[0] == "stage"]
    clean = _table_rows("clean")
    encode = _table_rows("encode")
    enc = next(r for r in encode if r[0].startswith("distinct queries once"))
    train = _table_rows("train")
    ex_col = _column(train, "examples/s")
    measured_with = f"{INTERESTS} interest vectors"
    if measured_with not in (RESULTS / "train.md").read_text(encoding="utf-8"):
        raise ValueError(
            f"results/train.md's throughput is not the default model's ({measured_with}): rerun it"
        )
    train_row = next(r for r in train if r[0] == "10,000,000")
    search = _table_rows("search")
    ups = _column(search, "users/s")
    flat = next(r for r in search if r[0] == "1,000,000" and r[1] == "faiss flat (stage)")
    ivf = next(r for r in search if r[0] == "1,000,000" and r[1] == "faiss IVF-Flat")
    merge = _table_rows("merge")
    merged = next(r for r in merge if r[0] == "sort per user (stage)")
    return Rates(
        extract_rows_s=_number(stage[-1][rate]),
        clean_rows_s=_number(clean[-1][_column(clean, "rows/s")]),
        encode_queries_s=_number(enc[_column(encode, "texts/s")]),
        train_examples_s=_number(train_row[ex_col]),
        search_exact_users_s_1m=_number(flat[ups]),
        search_ivf_users_s_1m=_number(ivf[ups]),
        merge_users_s=_number(merged[_column(merge, "users/s")]),
        sources={
            "extract": f"results/extract.md, `stage` at {stage[-1][1]}",
            "clean": f"results/clean.md, {clean[-1][0]} event rows",
            "encode": "results/encode.md, distinct queries once (CPU)",
            "train": "results/train.md, 10,000,000 examples (CPU)",
            "search": "results/search.md, 1,000,000 items: faiss flat (stage) and IVF-Flat",
            "merge": "results/merge.md, sort per user (stage)",
        },
    )


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.1f} min"


def stage_costs(r: Rates, users: int, items: int) -> list[tuple[str, str, float]]:
    """(stage, work, single-machine seconds) for one scale."""
    examples = users * PURCHASES_PER_USER
    event_rows = examples * QUERIES_PER_EXAMPLE
    distinct = users * DISTINCT_QUERIES_PER_USER
    # exact search cost grows with the catalogue; IVF's per-query cost grows about with its square root
    # the search benchmark searches one vector per user; the default model serves INTERESTS per user
    exact_ups = r.search_exact_users_s_1m * 1_000_000 / items / INTERESTS
    ivf_ups = r.search_ivf_users_s_1m * math.sqrt(1_000_000 / items) / INTERESTS
    searched = f"{users:,} users x {INTERESTS} vectors x {items:,} items"
    merge_s = users / r.merge_users_s if INTERESTS > 1 else 0.0  # each user's lists merged after the search
    return [
        ("extract (training)", f"{event_rows:,.0f} event rows", event_rows / r.extract_rows_s),
        ("clean (training)", f"{event_rows:,.0f} event rows", event_rows / r.clean_rows_s),
        ("encode", f"{distinct:,.0f} distinct queries", distinct / r.encode_queries_s),
        ("train", f"{examples:,.0f} examples x {EPOCHS} epochs", examples * EPOCHS / r.train_examples_s),
        (
            "extract (serving)",
            f"{users * INFER_ROWS_PER_USER:,.0f} query rows",
            users * INFER_ROWS_PER_USER / r.extract_rows_s,
        ),
        ("infer, exact index", searched, users / exact_ups + merge_s),
        ("infer, IVF index", searched, users / ivf_ups + merge_s),
    ]


def render() -> str:
    r = read_rates()
    lines = [
        "# Capacity model",
        "",
        "Generated by `python tests/benchmarks/capacity.py` from the benchmark results in `tests/benchmarks/results/`",
        "(a test fails if this page and those files disagree). All rates are single-machine CPU figures of this",
        "project's 2-core development VM; no GPU was lent to the sessions that measured them, so GPU rows are",
        "missing, not zero. Divide the times by the speedup of your machines.",
        "",
        "## Rates read from the benchmarks",
        "",
        "| stage | rate | source |",
        "| --- | ---: | --- |",
        f"| extract | {r.extract_rows_s:,.0f} rows/s | {r.sources['extract']} |",
        f"| clean | {r.clean_rows_s:,.0f} event rows/s | {r.sources['clean']} |",
        f"| encode | {r.encode_queries_s:,.0f} distinct queries/s | {r.sources['encode']} |",
        f"| train | {r.train_examples_s:,.0f} examples/s | {r.sources['train']} |",
        f"| infer, exact, 1M items | {r.search_exact_users_s_1m:,.0f} query vectors/s | {r.sources['search']} |",
        f"| infer, IVF, 1M items | {r.search_ivf_users_s_1m:,.0f} query vectors/s | {r.sources['search']} |",
        f"| infer, merging {INTERESTS} lists per user | {r.merge_users_s:,.0f} users/s | {r.sources['merge']} |",
        "",
        "## Workload assumptions",
        "",
        f"A {WINDOW_DAYS}-day window; {PURCHASES_PER_USER:g} purchase (training example) per user; "
        f"{QUERIES_PER_EXAMPLE} event rows per example (the SQL's history); {DISTINCT_QUERIES_PER_USER:g} distinct "
        f"query texts per user; {INFER_ROWS_PER_USER} query rows per served user; {EPOCHS} epochs. Exact search cost "
        "scales with the catalogue; IVF's per-query cost is taken to grow with its square root (nlist ~ sqrt(n)). "
        f"Each served user is searched as {INTERESTS} interest vectors (the default model's `interests`; the search "
        f"benchmark's rate is per vector), and each user's {INTERESTS} lists are then merged. The train rate is the default model's ({INTERESTS} interest vectors), and "
        f"{EPOCHS} epochs is the most a run trains (early stopping on validation may end it sooner).",
        "",
        "## Time on one machine, and shards to keep every task under an hour",
        "",
    ]
    for items in ITEMS:
        lines += [
            f"### {items:,} items",
            "",
            "| users | stage | work | one machine | to stay under 1 h |",
            "| ---: | --- | --- | ---: | ---: |",
        ]
        for users in USERS:
            costs = stage_costs(r, users, items)
            for stage, work, seconds in costs:
                need = max(1, math.ceil(seconds / TASK_LIMIT_S))
                lever = (
                    f"{need:,} shards"
                    if stage.startswith("infer")
                    else ("one task" if need == 1 else f"a x{need:,} faster machine")
                )
                lines.append(f"| {users:,} | {stage} | {work} | {_hours(seconds)} | {lever} |")
            worst = max((c for c in costs if c[0] != "infer, exact index"), key=lambda c: c[2])
            lines.append(f"| {users:,} | **bottleneck** | {worst[0]} | {_hours(worst[2])} | |")
        lines.append("")
    lines += [
        "## Reading",
        "",
        "- Inference shards (`num_shards`, one task each) split only the infer stage; the last column gives the",
        "  shard count that keeps each under an hour. Extract, clean, encode and train are one task each: where",
        "  their time passes an hour, the lever is the machine (a GPU for encode and train, whose rates here are",
        "  CPU rates; Greenplum's segments for extract), and the column says how much faster it must be.",
        "- Exact search is the bottleneck at every scale with 10M items; the index stage's `auto` picks IVF",
        "  where it measurably beats exact search (results/index_choice.md).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC}", file=sys.stderr)
