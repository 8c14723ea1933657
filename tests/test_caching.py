"""When extract may be reused: only for windows that closed at least cache_lag_days ago."""

from __future__ import annotations

import datetime as dt

import pytest

from searchrec.caching import window_cache_key
from searchrec.errors import SearchrecError

TODAY = dt.date(2026, 11, 29)


def test_closed_window_repeats_its_key_across_runs():
    assert window_cache_key("2026-11-27", 2, "run-a", TODAY) == window_cache_key(
        "2026-11-27", 2, "run-b", TODAY
    )
    assert window_cache_key("2026-11-27", 2, "run-a", TODAY) == "closed:2026-11-27"


def test_open_window_gets_a_key_of_its_own_run():
    assert window_cache_key("2026-11-28", 2, "run-a", TODAY) == "open:run-a"
    assert window_cache_key("2026-11-28", 2, "run-b", TODAY) == "open:run-b"
    assert window_cache_key("2026-11-29", 0, "run-a", TODAY) == "closed:2026-11-29"


def test_bad_input_is_one_clear_error():
    with pytest.raises(SearchrecError, match="end_date"):
        window_cache_key("2026-11-31", 2, "run", TODAY)
    with pytest.raises(SearchrecError, match="cache_lag_days"):
        window_cache_key("2026-11-01", -1, "run", TODAY)
