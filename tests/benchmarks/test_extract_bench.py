"""Benchmark: streaming extract (named cursor -> Parquet chunks) vs a plain cursor fetchall into pandas.

Loads >= 5 million generated search queries into PostgreSQL with COPY, then extracts the
inference events (last 10 queries per user) for a window W and for 2W, each method in a fresh
subprocess so that its peak RSS (VmHWM; resource.getrusage alongside) is its own. Reports rows/s and peak memory
in one run, writes a markdown table to tests/benchmarks/results/extract.md, and checks that the
streaming peak stays flat when the window (and the row count) doubles.

Run: make bench  (or: pytest -m benchmark -s tests/benchmarks/test_extract_bench.py)
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psycopg2
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

N_QUERIES = 5_000_000
N_USERS = 1_000_000
DAYS = 60
START = np.datetime64("2026-08-01T00:00:00", "s")
WINDOWS = {"W (15 days)": ("2026-08-01", "2026-08-15"), "2W (30 days)": ("2026-08-01", "2026-08-30")}
CHUNK_ROWS = 100_000
RESULTS = Path(__file__).resolve().parent / "results" / "extract.md"

RUNNER = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    method, uri, start, end, out, chunk_rows = sys.argv[1:7]
    t0 = time.perf_counter()
    if method == "streaming":
        from searchrec.stages.extract import extract_inference_events
        rows = extract_inference_events(uri, start, end, Path(out), chunk_rows=int(chunk_rows)).rows
    elif method == "fetchall":
        import pandas as pd, psycopg2
        from searchrec import warehouse
        from searchrec.artifacts import events
        sql = warehouse.render_sql(warehouse.load_sql("infer_events"), "postgresql")
        conn = psycopg2.connect(uri)
        cur = conn.cursor()
        cur.execute("CREATE TEMP TABLE searchrec_users (user_id BIGINT)")
        params = {"start_date": start, "end_date": end, "history_length": 10, "all_users": True}
        cur.execute(sql, params)
        df = pd.DataFrame(cur.fetchall(), columns=events.INFER_EVENTS.names)
        Path(out).mkdir()
        df.to_parquet(Path(out) / "part-00000.parquet")
        rows = len(df)
    else:  # imports only: the interpreter's own footprint
        import pandas, psycopg2, pyarrow.parquet
        from searchrec.stages import extract
        rows = 0
    seconds = time.perf_counter() - t0
    # VmHWM is this process image's own high-water mark; getrusage's ru_maxrss also keeps the
    # forked parent's RSS from before exec (Linux), so it is reported alongside, not used.
    status = Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]
    peak_mb = int(status) / 1024
    rusage_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_mb": peak_mb, "rusage_mb": rusage_mb}))
    """
)


def generate_queries(seed: int = 0) -> pa.Table:
    """N_QUERIES rows over DAYS days, N_USERS users, Zipf-like texts (vectorised)."""
    rng = np.random.default_rng(seed)
    vocab = pa.array([f"query {i} телефон" if i % 3 else f"кроссовки {i}" for i in range(50_000)])
    idx = np.minimum(rng.zipf(1.3, N_QUERIES) - 1, len(vocab) - 1).astype(np.int32)
    text = pa.DictionaryArray.from_arrays(pa.array(idx), vocab).dictionary_decode()
    seconds = rng.integers(0, DAYS * 86_400, N_QUERIES)
    return pa.table(
        {
            "user_id": pa.array(rng.integers(1, N_USERS + 1, N_QUERIES), pa.int64()),
            "query_ts": pa.array((START + seconds.astype("timedelta64[s]")).astype("datetime64[us]")),
            "query_text": text,
        }
    )


def copy_into(dsn: str, table: pa.Table) -> float:
    t0 = time.perf_counter()
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute((Path(__file__).resolve().parents[2] / "sql" / "ddl.sql").read_text())
        for start in range(0, table.num_rows, 1_000_000):
            buf = io.BytesIO()
            pcsv.write_csv(table.slice(start, 1_000_000), buf, pcsv.WriteOptions(include_header=False))
            buf.seek(0)
            cur.copy_expert(
                "COPY search_queries (user_id, query_ts, query_text) FROM STDIN WITH (FORMAT csv)", buf
            )
        cur.execute("ANALYZE search_queries")
    conn.commit()
    conn.close()
    return time.perf_counter() - t0


def run(method: str, dsn: str, window: tuple[str, str], out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, method, dsn, *window, str(out), str(CHUNK_ROWS)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark
def test_streaming_vs_fetchall(pg_dsn, tmp_path):
    t0 = time.perf_counter()
    table = generate_queries()
    gen_s = time.perf_counter() - t0
    load_s = copy_into(pg_dsn, table)
    del table
    print(f"\ngenerated {N_QUERIES:,} queries in {gen_s:.1f}s; COPY into PostgreSQL in {load_s:.1f}s")

    base = run("imports", pg_dsn, WINDOWS["W (15 days)"], tmp_path / "none")
    rows = []
    for label, window in WINDOWS.items():
        for method in ("streaming", "fetchall"):
            r = run(method, pg_dsn, window, tmp_path / f"{method}-{window[1]}")
            rows.append({"method": method, "window": label, **r})
            print(rows[-1])

    by = {(r["method"], r["window"]): r for r in rows}
    w, w2 = WINDOWS
    lines = [
        "# Extract benchmark: streaming vs fetchall",
        "",
        f"PostgreSQL on 127.0.0.1, {N_QUERIES:,} search queries ({N_USERS:,} users, {DAYS} days) loaded by COPY "
        f"in {load_s:.1f}s; query sql/infer_events.sql (last 10 queries per user in the window). Each "
        f"method runs in a fresh subprocess; peak RSS is the child's VmHWM (/proc/self/status; getrusage's "
        f"ru_maxrss in the last column is floored by the pytest parent's RSS at fork, kept for reference). Streaming: named server-side cursor, "
        f"chunk_rows={CHUNK_ROWS:,}, one Parquet part per chunk. fetchall: cursor.fetchall() -> pandas -> "
        f"one Parquet file. Interpreter + imports alone: {base['peak_mb']:.0f} MB.",
        "",
        "| method | window | rows | seconds | rows/s | peak RSS (MB) | ru_maxrss (MB) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['window']} | {r['rows']:,} | {r['seconds']:.1f} | "
            f"{r['rows'] / r['seconds']:,.0f} | {r['peak_mb']:.0f} | {r['rusage_mb']:.0f} |"
        )
    growth_stream = by[("streaming", w2)]["peak_mb"] / by[("streaming", w)]["peak_mb"]
    growth_fetch = by[("fetchall", w2)]["peak_mb"] / by[("fetchall", w)]["peak_mb"]
    lines += [
        "",
        f"- rows double ({by[('streaming', w)]['rows']:,} -> {by[('streaming', w2)]['rows']:,}); peak RSS grows "
        f"x{growth_stream:.2f} streaming, x{growth_fetch:.2f} fetchall.",
        f"- at 2W fetchall needs x{by[('fetchall', w2)]['peak_mb'] / by[('streaming', w2)]['peak_mb']:.1f} the memory "
        f"of streaming; throughput streaming/fetchall x"
        f"{(by[('streaming', w2)]['rows'] / by[('streaming', w2)]['seconds']) / (by[('fetchall', w2)]['rows'] / by[('fetchall', w2)]['seconds']):.2f}.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    for label in WINDOWS:
        assert by[("streaming", label)]["rows"] == by[("fetchall", label)]["rows"] > 1_000_000
    assert by[("streaming", w2)]["rows"] > 1.8 * by[("streaming", w)]["rows"]
    assert growth_stream < 1.15, "streaming memory must stay flat as the window doubles"
    assert by[("fetchall", w2)]["peak_mb"] > by[("streaming", w2)]["peak_mb"]
