"""Date windows: inclusive calendar dates YYYY-MM-DD, checked before anything runs."""

from __future__ import annotations

import datetime as dt
import re

from searchrec.errors import SearchrecError

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date(value: str, name: str = "date") -> dt.date:
    """A YYYY-MM-DD calendar date, or a SearchrecError naming the parameter."""
    if not isinstance(value, str) or not _DATE.match(value):
        raise SearchrecError(f"{name} must be a date YYYY-MM-DD, got {value!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as error:
        raise SearchrecError(f"{name} {value!r} is not a calendar date ({error})") from None


def check_window(start: str, end: str, start_name: str = "start_date", end_name: str = "end_date"):
    """Both dates valid and start <= end; returns them as dates."""
    first, last = parse_date(start, start_name), parse_date(end, end_name)
    if first > last:
        raise SearchrecError(f"{start_name} {start} is after {end_name} {end}")
    return first, last
