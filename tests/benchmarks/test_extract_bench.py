"""Benchmark: the COPY-streaming extract vs the previous cursor path, fetchall, and a bare COPY read.

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
    chunk_rows = int(chunk_rows)
    t0 = time.perf_counter()
    PLAIN = ("SELECT user_id, query_ts, query_text FROM search_queries "
             "WHERE query_ts >= CAST(%(start_date)s AS DATE) AND query_ts < CAST(%(end_date)s AS DATE) + 1")
    if method == "stage":  # the extract stage as shipped: COPY -> pyarrow CSV -> Parquet parts
        from searchrec.stages.extract import extract_inference_events
        rows = extract_inference_events(uri, start, end, Path(out), chunk_rows=chunk_rows).rows
    elif method in ("scan_stage", "scan_cursor"):  # the stage's streaming on a plain scan, COPY or cursor
        import psycopg2, pyarrow.parquet as pq
        from searchrec import warehouse
        from searchrec.artifacts import events
        batches_of = warehouse._pg_batches if method == "scan_stage" else CURSOR_BATCHES
        conn = psycopg2.connect(uri)
        Path(out).mkdir()
        rows = 0
        batches = batches_of(conn, PLAIN, {"start_date": start, "end_date": end}, events.INFER_EVENTS, chunk_rows)
        for i, table in enumerate(warehouse.rechunk(batches, events.INFER_EVENTS, chunk_rows)):
            pq.write_table(table, Path(out) / f"part-{i:05d}.parquet", compression="zstd")
            rows += table.num_rows
    elif method == "scan_bare":  # the floor: bare COPY into pyarrow's CSV reader, Parquet parts, no checks
        import io, psycopg2, pyarrow as pa, pyarrow.csv as pacsv, pyarrow.parquet as pq
        conn = psycopg2.connect(uri)
        buf = io.BytesIO()
        with conn.cursor() as cur:
            cur.copy_expert(cur.mogrify("COPY (" + PLAIN + ") TO STDOUT WITH (FORMAT csv)",
                                        {"start_date": start, "end_date": end}).decode(), buf)
        buf.seek(0)
        Path(out).mkdir()
        table = pacsv.read_csv(buf, read_options=pacsv.ReadOptions(column_names=["user_id", "query_ts", "query_text"]),
                               convert_options=pacsv.ConvertOptions(column_types={"query_ts": pa.timestamp("us")}))
        rows = table.num_rows
        for i, start_row in enumerate(range(0, rows, chunk_rows)):
            pq.write_table(table.slice(start_row, chunk_rows), Path(out) / f"part-{i:05d}.parquet", compression="zstd")
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
# The previous extract path (a named server-side cursor, fetchmany, a Python object per value), kept
# here as the baseline the COPY path is measured against.
CURSOR = textwrap.dedent(
    """
    import pyarrow as pa
    def CURSOR_BATCHES(conn, sql, params, schema, chunk_rows):
        with conn.cursor(name="searchrec_stream") as cur:
            cur.itersize = chunk_rows
            cur.execute(sql, params)
            while True:
                rows = cur.fetchmany(chunk_rows)
                if not rows:
                    break
                columns = list(zip(*rows, strict=True))
                arrays = [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
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
        [sys.executable, "-c", CURSOR + RUNNER, method, dsn, *window, str(out), str(CHUNK_ROWS)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rate(r: dict) -> float:
    return r["rows"] / r["seconds"]


@pytest.mark.benchmark
def test_copy_extract_vs_cursor_fetchall_and_bare_copy(pg_dsn, tmp_path):
    t0 = time.perf_counter()
    table = generate_queries()
    gen_s = time.perf_counter() - t0
    load_s = copy_into(pg_dsn, table)
    del table
    print(f"\ngenerated {N_QUERIES:,} queries in {gen_s:.1f}s; COPY into PostgreSQL in {load_s:.1f}s")

    base = run("imports", pg_dsn, WINDOWS["W (15 days)"], tmp_path / "none")
    rows = []
    for label, window in WINDOWS.items():
        for method in ("stage", "fetchall", "scan_stage", "scan_cursor", "scan_bare"):
            r = run(method, pg_dsn, window, tmp_path / f"{method}-{window[1]}")
            rows.append({"method": method, "window": label, **r})
            print(rows[-1])

    by = {(r["method"], r["window"]): r for r in rows}
    w, w2 = WINDOWS
    lines = [
        "# Extract benchmark: COPY streaming vs the cursor path, fetchall and a bare COPY",
        "",
        f"PostgreSQL on 127.0.0.1, {N_QUERIES:,} search queries ({N_USERS:,} users, {DAYS} days) loaded by COPY "
        f"in {load_s:.1f}s. Each method runs in a fresh subprocess; peak RSS is the child's VmHWM. "
        f"`stage`: the extract stage as shipped on sql/infer_events.sql (last 10 queries per user): "
        f"COPY (query) TO STDOUT (FORMAT csv) into pyarrow's streaming CSV reader, chunk_rows={CHUNK_ROWS:,}, "
        f"one zstd Parquet part per chunk. `fetchall`: the same query, cursor.fetchall() -> pandas -> Parquet. "
        f"Plain scan of the window (`SELECT ... WHERE query_ts in window`): `scan_stage` is the stage's "
        f"streaming (COPY), `scan_cursor` the previous named-cursor fetchmany path (a Python object per "
        f"value), `scan_bare` a bare COPY read whole by pyarrow then written as the same Parquet parts (no "
        f"streaming, no checks): the floor. Interpreter + imports alone: {base['peak_mb']:.0f} MB.",
        "",
        "| method | window | rows | seconds | rows/s | peak RSS (MB) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['window']} | {r['rows']:,} | {r['seconds']:.1f} | "
            f"{_rate(r):,.0f} | {r['peak_mb']:.0f} |"
        )
    growth = {m: by[(m, w2)]["peak_mb"] / by[(m, w)]["peak_mb"] for m in ("stage", "fetchall", "scan_stage")}
    vs_bare = {label: by[("scan_bare", label)]["seconds"] / 1 for label in WINDOWS}
    lines += [
        "",
        "- plain scan, time of the stage's COPY streaming / bare COPY: "
        + ", ".join(
            f"{label} x{by[('scan_stage', label)]['seconds'] / vs_bare[label]:.2f}" for label in WINDOWS
        )
        + " (target <= 1.3).",
        "- plain scan, COPY streaming vs the cursor path (rows/s): "
        + ", ".join(
            f"{label} x{_rate(by[('scan_stage', label)]) / _rate(by[('scan_cursor', label)]):.2f}"
            for label in WINDOWS
        )
        + "; inference query, stage vs fetchall: "
        + ", ".join(
            f"{label} x{_rate(by[('stage', label)]) / _rate(by[('fetchall', label)]):.2f}"
            for label in WINDOWS
        )
        + ".",
        f"- rows double ({by[('stage', w)]['rows']:,} -> {by[('stage', w2)]['rows']:,}); peak RSS grows "
        f"x{growth['stage']:.2f} stage (plain scan x{growth['scan_stage']:.2f}), x{growth['fetchall']:.2f} fetchall; "
        f"bare COPY (whole window in memory): {by[('scan_bare', w)]['peak_mb']:.0f} -> {by[('scan_bare', w2)]['peak_mb']:.0f} MB.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    for label in WINDOWS:
        assert by[("stage", label)]["rows"] == by[("fetchall", label)]["rows"] > 1_000_000
        assert (
            by[("scan_stage", label)]["rows"]
            == by[("scan_cursor", label)]["rows"]
            == by[("scan_bare", label)]["rows"]
        )
    assert by[("stage", w2)]["rows"] > 1.8 * by[("stage", w)]["rows"]
    assert growth["stage"] < 1.15 and growth["scan_stage"] < 1.15, "streaming memory must stay flat"
    assert by[("fetchall", w2)]["peak_mb"] > by[("stage", w2)]["peak_mb"]
