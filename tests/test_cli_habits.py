"""Command-line habits: help with defaults for every option, --version, one window name in run and submit."""

from __future__ import annotations

import argparse

import pytest

from searchrec import __version__
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
            assert "(default: 2026-09-01)" in text and "(default: models)" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"searchrec {__version__}"


@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [("training", ("start_date", "end_date")), ("recommend", ("start_date", "end_date"))],
)
def test_run_takes_submits_window_names(pipeline, expected):
    args = build_parser().parse_args(
        ["run", "--pipeline", pipeline, "--start-date", "2026-10-20", "--end-date", "2026-10-26"]
    )
    arguments = _run_arguments(args)
    assert (arguments[expected[0]], arguments[expected[1]]) == ("2026-10-20", "2026-10-26")


def test_run_window_is_checked_under_the_name_given(capsys):
    args = ["run", "--pipeline", "training", "--start-date", "2026-10-20", "--end-date", "2026-10-02"]
    assert main(args) == 1
    assert "after" in capsys.readouterr().err
