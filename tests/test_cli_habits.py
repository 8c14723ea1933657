"""Command-line habits: help with defaults for every option, --version, one window name in run and submit."""

from __future__ import annotations

import argparse

import pytest

from searchrec import __version__, config
from searchrec.cli import _run_arguments, build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_of_every_command_has_help_that_shows_its_default():
    for name, sub in _subparsers(build_parser()).items():
        assert sub.formatter_class is argparse.ArgumentDefaultsHelpFormatter, name
        if name not in ("run", "demo", "runs", "lineage"):
            continue  # the other commands' options are other issues' (all show defaults through HELP_FORMAT)
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, (name, action.option_strings)
        if name == "run":
            text = sub.format_help()
            assert "demo: 2026-09-01" in text and "(default: models)" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"searchrec {__version__}"


@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [("training", ("start_date", "end_date")), ("recommend", ("start_date", "end_date"))],
)
def test_run_takes_submits_window_names(pipeline, expected):
    sources = ["--warehouse-uri", "duckdb:///w.duckdb", "--embeddings-uri", "e"]
    args = build_parser().parse_args(
        ["run", "--pipeline", pipeline, *sources, "--start-date", "2026-10-20", "--end-date", "2026-10-26"]
    )
    arguments = _run_arguments(args)
    assert (arguments[expected[0]], arguments[expected[1]]) == ("2026-10-20", "2026-10-26")


def test_run_window_is_checked_under_the_name_given(capsys):
    args = ["run", "--pipeline", "training", "--start-date", "2026-10-20", "--end-date", "2026-10-02"]
    assert main([*args, "--warehouse-uri", "duckdb:///w.duckdb", "--embeddings-uri", "e"]) == 1
    assert "after" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("pipeline", "missing"),
    [
        ("training", "--warehouse-uri, --embeddings-uri, --train-start, --train-end"),
        ("recommend", "--warehouse-uri, --embeddings-uri, --recommend-start, --recommend-end"),
    ],
)
def test_training_and_recommend_take_no_demo_defaults(pipeline, missing, capsys):
    assert main(["run", "--pipeline", pipeline]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"searchrec: error: run --pipeline {pipeline} needs {missing} (the demo's defaults apply only to --pipeline demo)"
    ]


def test_ground_truth_is_passed_only_where_named(tmp_path, monkeypatch):
    """Run from a folder that holds demo data: only the demo on its own warehouse uses its ground truth."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "demo" / "ground_truth").mkdir(parents=True)
    window = ["--start-date", "2026-10-01", "--end-date", "2026-10-07"]
    other = ["--warehouse-uri", "duckdb:///other.duckdb", "--embeddings-uri", "e"]
    parse = build_parser().parse_args
    assert "ground_truth_uri" in _run_arguments(parse(["run", "--pipeline", "demo"]))
    assert "ground_truth_uri" not in _run_arguments(parse(["run", "--pipeline", "demo", *other]))
    assert "ground_truth_uri" not in _run_arguments(parse(["run", "--pipeline", "training", *other, *window]))
    named = _run_arguments(parse(["run", "--pipeline", "training", *other, *window, "--ground-truth", "gt"]))
    assert named["ground_truth_uri"] == str(tmp_path / "gt")


def test_training_runs_with_production_encoder_and_item_counts_by_default():
    other = ["--warehouse-uri", "duckdb:///w.duckdb", "--embeddings-uri", "e"]
    args = build_parser().parse_args(
        ["run", "--pipeline", "training", *other, "--train-start", "2026-10-01", "--train-end", "2026-10-07"]
    )
    arguments = _run_arguments(args)
    assert arguments["encoder"] == config.PRODUCTION_ENCODER_ID
    assert arguments["min_item_count"] == config.MIN_ITEM_COUNT
