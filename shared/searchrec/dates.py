"""Date windows: inclusive calendar dates YYYY-MM-DD, checked before anything runs (CLI, submission, stages)."""

from __future__ import annotations

import datetime as dt
import re

from searchrec.errors import SearchrecError

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date(value: str | dt.date, name: str = "date") -> dt.date:
    """A YYYY-MM-DD calendar date (or a date), or a SearchrecError naming the parameter."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = value.strip() if isinstance(value, str) else ""
    if _DATE.match(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise SearchrecError(f"{name} {value!r} is not a calendar date YYYY-MM-DD")


def check_window(
    start: str | dt.date, end: str | dt.date, start_name: str = "start_date", end_name: str = "end_date"
) -> tuple[dt.date, dt.date]:
    """Both dates valid and start <= end (the window is inclusive); returns them as dates."""
    first, last = parse_date(start, start_name), parse_date(end, end_name)
    if first > last:
        raise SearchrecError(f"{start_name} {first} is after {end_name} {last}")
    return first, last
