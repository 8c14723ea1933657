"""docs/capacity.md is generated from the benchmark results files; its numbers are never typed by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _capacity():
    spec = importlib.util.spec_from_file_location("capacity", ROOT / "tests" / "benchmarks" / "capacity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["capacity"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_capacity_page_is_what_the_benchmark_results_give():
    capacity = _capacity()
    assert (ROOT / "docs" / "capacity.md").read_text(encoding="utf-8") == capacity.render(), (
        "docs/capacity.md is stale or edited by hand: run `python tests/benchmarks/capacity.py`"
    )


def test_rates_are_read_from_the_results_tables():
    capacity = _capacity()
    rates = capacity.read_rates()
    extract = (ROOT / "tests" / "benchmarks" / "results" / "extract.md").read_text()
    assert f"{rates.extract_rows_s:,.0f}" in extract
    assert rates.train_examples_s > 0 and rates.search_ivf_users_s_1m > rates.search_exact_users_s_1m
    # the model scales: 10x the users is 10x the extract time
    one, ten = (capacity.stage_costs(rates, u, 1_000_000)[0][2] for u in (1_000_000, 10_000_000))
    assert abs(ten / one - 10) < 1e-9
