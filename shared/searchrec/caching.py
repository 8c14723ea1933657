"""When a task's result may be reused: extract reads a warehouse that keeps changing until a day is over
(late events, backfills), so its output is reused only for windows that closed a while ago."""

from __future__ import annotations

import datetime as dt

from searchrec.dates import parse_date
from searchrec.errors import SearchrecError


def window_cache_key(end_date: str, cache_lag_days: int, run_id: str, today: dt.date | None = None) -> str:
    """`closed:<end_date>` when the window ended at least `cache_lag_days` days before `today` (UTC): the
    same value on every run, so extract's cache key repeats and its output is reused. Otherwise
    `open:<run_id>`, unique to the run: extract runs again."""
    if cache_lag_days < 0:
        raise SearchrecError(f"cache_lag_days must be >= 0, got {cache_lag_days}")
    end = parse_date(end_date, "end_date")
    today = today or dt.datetime.now(dt.timezone.utc).date()
    if (today - end).days >= cache_lag_days:
        return f"closed:{end.isoformat()}"
    return f"open:{run_id}"


def keep_metrics_file(metrics: object) -> None:
    """Write a Metrics artifact's values as JSON at its path too.

    KFP keeps Metrics values as artifact metadata and writes no file; kfp.local's cache counts an output
    whose path does not exist as missing, so a task with a Metrics output would never be reused locally.
    """
    import json
    from pathlib import Path

    path = Path(metrics.path)  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(metrics.metadata), indent=2, default=str))  # type: ignore[attr-defined]
