"""The training report renders in a real headless browser (Debian's Chromium), as the pipelines UI shows it."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from searchrec.report import render_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (.ci/run installs it)")

HISTORY = [
    {"epoch": 1, "loss": 5.1, "examples": 1000, "seconds": 2.0, "holdout_recall_at_200": 0.41},
    {"epoch": 2, "loss": 3.7, "examples": 1000, "seconds": 1.9, "holdout_recall_at_200": 0.63},
    {"epoch": 3, "loss": 3.2, "examples": 1000, "seconds": 1.9, "holdout_recall_at_200": 0.71},
]
METRICS = {
    "model_recall_at_200": 0.71,
    "popularity_recall_at_200": 0.18,
    "ceiling_recall_at_200": 0.93,
    "model_mrr": 0.12,
    "popularity_mrr": 0.01,
    "holdout_examples": 512,
    "catalogue_items": 4000,
}


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        self._in_cell = False

    def handle_data(self, data):
        if self._in_cell and data.strip():
            self.cells.append(data.strip())


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(
        render_report(HISTORY, METRICS, {"loss": "softmax", "epochs": 3}, {"encoder": "stand-in"})
    )
    return path


def test_browser_dom_holds_metrics_table_and_charts(report_file):
    result = _chromium("--dump-dom", report_file.as_uri(), cwd=report_file.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = _Collect()
    dom.feed(result.stdout)
    assert dom.tags.get("svg", 0) == 2  # loss and recall curves
    assert dom.tags.get("polyline", 0) + dom.tags.get("path", 0) >= 2
    # The metrics table as the browser parsed it: model, popularity, ceiling and the lift.
    row = dom.cells[dom.cells.index("Recall@200") : dom.cells.index("Recall@200") + 5]
    assert row == ["Recall@200", "0.7100", "0.1800", "0.9300", "3.9444"]


def test_browser_paints_the_charts(report_file):
    shot = report_file.parent / "shot.png"
    result = _chromium(
        f"--screenshot={shot}", "--window-size=1280,1600", report_file.as_uri(), cwd=report_file.parent
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    import zlib

    pixels = _png_pixels(shot.read_bytes(), zlib)
    # Not a blank page: a white background with dark text and coloured chart lines.
    assert (pixels.mean(axis=2) > 240).mean() > 0.5
    coloured = (pixels.max(axis=2).astype(int) - pixels.min(axis=2)) > 80
    assert coloured.sum() > 500


def _png_pixels(data: bytes, zlib) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) without an imaging library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour = header[8], header[9]
    assert depth == 8 and colour in (2, 6)
    channels = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8)
    stride = width * channels
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 255
        else:
            cur = np.zeros(stride, dtype=np.int32)
            for x in range(stride):
                a = cur[x - channels] if x >= channels else 0
                b, c = prev[x], prev[x - channels] if x >= channels else 0
                if kind == 1:
                    p = a
                elif kind == 3:
                    p = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (line[x] + p) & 255
        out[y], prev = cur, cur
    return out.reshape(height, width, channels)[:, :, :3].astype(np.uint8)
