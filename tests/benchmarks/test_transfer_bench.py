"""Benchmark: object-store folder copies, parallel (the shipped default) vs one object at a time.

moto's S3 server and the GCS emulator run as separate processes on loopback (not in the test's own
interpreter, whose GIL would serialise them). A folder of N_FILES files is uploaded and downloaded
with threads=1 and threads=config.TRANSFER_THREADS; each is timed in the same run and the ratio
written to tests/benchmarks/results/transfer.md. Loopback has no network latency, so the gain here is
the servers' own concurrency; against a real bucket each request also waits a round trip, which the
parallel copy overlaps.

Run: make bench  (or: pytest -m benchmark -s tests/benchmarks/test_transfer_bench.py)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from searchrec import config, storage

N_FILES = 300
FILE_BYTES = 64 * 1024
RESULTS = Path(__file__).resolve().parent / "results" / "transfer.md"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError as error:
            if getattr(error, "code", None):  # an HTTP answer of any kind: the server is up
                return
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    s3_port, gcs_port = _free_port(), _free_port()
    procs = [
        subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                str(BIN / "gcp-storage-emulator"),
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(gcs_port),
                "--in-memory",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        _wait(f"http://127.0.0.1:{s3_port}/")
        _wait(f"http://127.0.0.1:{gcs_port}/")
        yield f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{gcs_port}"
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@pytest.mark.benchmark
def test_parallel_vs_sequential_transfers(servers, tmp_path, monkeypatch):
    s3_url, gcs_url = servers
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_url)
    for k, v in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
    import boto3
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    boto3.client("s3").create_bucket(Bucket="bench")
    gcs.Client(credentials=AnonymousCredentials(), project="test").create_bucket("bench")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(N_FILES):
        (src / f"part-{i:05d}.bin").write_bytes(os.urandom(FILE_BYTES))

    threads = config.TRANSFER_THREADS
    rows = []
    for scheme in ("s3", "gs"):
        for n in (1, threads):
            uri = f"{scheme}://bench/t{n}"
            up = _timed(lambda uri=uri, n=n: storage.upload_tree(src, uri, threads=n))
            target = tmp_path / f"{scheme}-{n}"
            down = _timed(lambda uri=uri, n=n, target=target: storage.download_tree(uri, target, threads=n))
            rows.append({"scheme": scheme, "threads": n, "upload": up, "download": down})
            print(rows[-1])
    by = {(r["scheme"], r["threads"]): r for r in rows}
    lines = [
        "# Transfer benchmark: parallel vs sequential object copies",
        "",
        f"{N_FILES} files of {FILE_BYTES // 1024} KiB ({N_FILES * FILE_BYTES / 1e6:.1f} MB), moto S3 server and "
        "gcp-storage-emulator as separate processes on loopback, 2-core VM. threads=1 is one object at a time "
        f"(the previous behaviour); threads={threads} is config.TRANSFER_THREADS.",
        "",
        "| store | threads | upload s | download s | upload files/s | download files/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['scheme']} | {r['threads']} | {r['upload']:.2f} | {r['download']:.2f} | "
            f"{N_FILES / r['upload']:,.0f} | {N_FILES / r['download']:,.0f} |"
        )
    lines.append("")
    for scheme in ("s3", "gs"):
        seq, par = by[(scheme, 1)], by[(scheme, threads)]
        lines.append(
            f"- {scheme}: parallel upload x{seq['upload'] / par['upload']:.2f}, "
            f"download x{seq['download'] / par['download']:.2f} the speed of one object at a time."
        )
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for scheme in ("s3", "gs"):
        assert len(list((tmp_path / f"{scheme}-{threads}").glob("*.bin"))) == N_FILES
