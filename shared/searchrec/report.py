"""Self-contained HTML training report: inline SVG charts, inline CSS, no scripts, no external files."""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from searchrec.errors import SearchrecError

METRIC_ROWS = (
    ("Recall@10", "recall_at_10"),
    ("Recall@50", "recall_at_50"),
    ("Recall@100", "recall_at_100"),
    ("Recall@200", "recall_at_200"),
    ("NDCG@200", "ndcg_at_200"),
    ("MRR", "mrr"),
)
SOURCES = ("model", "popularity", "ceiling")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.k,th.k{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:1em}
svg{background:#fff;border:1px solid #ddd}.muted{color:#888}
"""


class _Result(Protocol):
    metrics: Mapping[str, float]
    history: Sequence[Mapping[str, Any]]
    params: Mapping[str, Any]


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if value.is_integer() and abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def _series_svg(
    series: Mapping[str, Sequence[tuple[float, float]]], sx, sy, legend_x: float, top: float
) -> list[str]:
    """Polyline, points and legend entry of each series (baselines dashed)."""
    parts: list[str] = []
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        good = [(x, y) for x, y in pts if y is not None and math.isfinite(y)]
        if len(good) > 1:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
            dash = ' stroke-dasharray="6 4"' if name.startswith(("popularity", "ceiling")) else ""
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
            )
        for x, y in good:
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"><title>{y:.4f}</title></circle>'
            )
        parts.append(
            f'<rect x="{legend_x + 10}" y="{top + 8 + 16 * i}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 24}" y="{top + 17 + 16 * i}" font-size="11">{html.escape(name)}</text>'
        )
    return parts


def line_chart(title: str, series: Mapping[str, Sequence[tuple[float, float]]], *, y_label: str = "") -> str:
    """An inline SVG line chart of one or more (x, y) series."""
    width, height, left, right, top, bottom = 560, 280, 64, 150, 32, 44
    points = [(x, y) for s in series.values() for x, y in s if y is not None and math.isfinite(y)]
    esc = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{esc(title)}</text>',
    ]
    if not points:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888">no data</text></svg>'
        )
        return "".join(parts)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = (y1 - y0) * 0.08 or (abs(y0) * 0.1 or 1.0)
    y0, y1 = y0 - pad, y1 + pad
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#eee"/>')
        parts.append(
            f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="11">{y:.3g}</text>'
        )
    distinct_x = sorted(set(xs))
    step = max(1, math.ceil(len(distinct_x) / 10))
    for x in distinct_x[::step]:
        parts.append(
            f'<text x="{sx(x):.1f}" y="{top + ph + 16}" text-anchor="middle" font-size="11">{x:g}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle" font-size="12">epoch</text>'
    )
    if y_label:
        parts.append(
            f'<text x="14" y="{top + ph / 2}" text-anchor="middle" font-size="12" '
            f'transform="rotate(-90 14 {top + ph / 2})">{esc(y_label)}</text>'
        )
    parts += _series_svg(series, sx, sy, left + pw, top)
    parts.append("</svg>")
    return "".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(
        f'<th class="{"k" if i == 0 else ""}">{html.escape(str(h))}</th>' for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"k" if i == 0 else ""}">{html.escape(_fmt(c))}</td>' for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CURVE_KS = (10, 200)  # recall cut-offs drawn per epoch, for the validation and the holdout split


def _recall_curves(history: Sequence[Mapping[str, Any]], metrics: Mapping[str, float]) -> dict:
    """Validation (selects the epoch) and holdout (reports only) recall per epoch, plus baselines."""
    curves = {}
    for split in ("validation", "holdout"):
        for k in CURVE_KS:
            key = f"{split}_recall_at_{k}"
            points = [(float(r["epoch"]), r.get(key)) for r in history if key in r]
            if points:
                curves[f"{split} recall@{k}"] = points
    for source in ("popularity", "ceiling"):
        if f"{source}_recall_at_200" in metrics and history:
            value = float(metrics[f"{source}_recall_at_200"])
            curves[f"{source} recall@200"] = [
                (float(history[0]["epoch"]), value),
                (float(history[-1]["epoch"]), value),
            ]
    return curves


def _metric_rows(metrics: Mapping[str, float]) -> list[list[Any]]:
    rows = []
    for label, key in METRIC_ROWS:
        values = [metrics.get(f"{s}_{key}") for s in SOURCES]
        if all(v is None for v in values):
            continue
        model, pop = values[0], values[1]
        rows.append([label, *values, model / pop if model is not None and pop else None])
    return rows


def _kept_epoch(history: Sequence[Mapping[str, Any]], metrics: Mapping[str, float]) -> str:
    best = metrics.get("best_epoch")
    if best is None or not history:
        return ""
    grids = ("_prior_", "_quota_")  # the serving choices' scores by candidate, not the epoch's score
    scores = [k for k in metrics if k.startswith("validation_") and not any(g in k for g in grids)]
    how = (
        f"best validation {scores[0].removeprefix('validation_')} {_fmt(metrics[scores[0]])}"
        if scores
        else "last epoch"
    )
    chosen = [
        f"{label} {_fmt(metrics[key])}"
        for label, key in (
            ("popularity prior weight", "popularity_weight"),
            ("interest quota", "interest_quota"),
        )
        if key in metrics
    ]
    served = f" Served with {', '.join(chosen)}, chosen on validation too." if chosen else ""
    return (
        f'<p class="kept">Kept epoch: <b>{int(best)}</b> of {len(history)} run ({html.escape(how)}); '
        f"the holdout never chose it.{html.escape(served)}</p>"
    )


def _epoch_samples(info: Mapping[str, Any]) -> str:
    labels = {"epoch_validation_rows": "validation", "epoch_holdout_rows": "holdout curve"}
    shown = [f"{label} {int(info[key]):,} rows" for key, label in labels.items() if info.get(key)]
    if not shown:
        return ""
    return (
        f'<p class="muted">Each epoch scores the same rows: {html.escape(", ".join(shown))}; '
        "the holdout table above ranks the whole holdout once.</p>"
    )


def render_report(
    history: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, float],
    params: Mapping[str, Any],
    info: Mapping[str, Any] | None = None,
    *,
    title: str = "searchrec two-tower training",
) -> str:
    """The whole report as one HTML string."""
    info = dict(info or {})
    info.pop("metrics", None)
    loss = {"training loss": [(float(r["epoch"]), r.get("loss")) for r in history]}
    metric_rows = _metric_rows(metrics)
    curve_cols = sorted({k for r in history for k in r if k.startswith(("validation_", "holdout_"))})
    epoch_cols = ["epoch", "loss", "examples", "seconds", "examples_per_s", *curve_cols]
    kept = metrics.get("best_epoch")
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Holdout metrics (full snapshot catalogue)</h2>",
        _table(["metric", "model", "popularity", "ceiling", "model / popularity"], metric_rows)
        if metric_rows
        else '<p class="muted">no holdout metrics (empty holdout)</p>',
        f'<p class="muted">holdout examples: {_fmt(metrics.get("holdout_examples"))}, '
        f"catalogue items: {_fmt(metrics.get('catalogue_items'))}</p>",
        _kept_epoch(history, metrics),
        "<h2>Training curves</h2>",
        '<div class="charts">',
        line_chart("Training loss per epoch", loss, y_label="loss"),
        line_chart(
            "Validation and holdout recall per epoch", _recall_curves(history, metrics), y_label="recall"
        ),
        "</div>",
        _epoch_samples(info),
        "<h2>Epochs</h2>",
        _table(
            ["kept", *(c.replace("_recall_at_", " recall@").replace("_", " ") for c in epoch_cols)],
            [
                ["✓" if kept is not None and r.get("epoch") == kept else "", *(r.get(c) for c in epoch_cols)]
                for r in history
            ],
        ),
        "<h2>Parameters</h2>",
        _table(["parameter", "value"], [[k, v] for k, v in params.items()]),
    ]
    if info:
        sections += ["<h2>Model and data</h2>", _table(["field", "value"], [[k, v] for k, v in info.items()])]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


def write_report(path: Path, result: _Result, info: Mapping[str, Any] | None = None) -> Path:
    """Render the report of a training result and write it atomically to ``path``."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.html"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(render_report(result.history, result.metrics, result.params, info), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as error:
        raise SearchrecError(f"cannot write report {path}: {error}") from None
    return path
