"""Command-line options that several subcommands share (run, submit, schedule): one definition each, so
the same thing has the same name and help everywhere."""

from __future__ import annotations

import argparse

from searchrec import config


def add_cache_options(p: argparse.ArgumentParser) -> None:
    """--cache/--no-cache and --cache-lag-days."""
    p.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reuse task outputs of earlier runs where the task allows it: extract only for closed windows "
        "(see --cache-lag-days), never promote or the registry lookup; --no-cache runs every task",
    )
    p.add_argument(
        "--cache-lag-days",
        type=int,
        default=config.CACHE_LAG_DAYS,
        help="a window is closed (its extract reusable) once its end date is this many days before today, "
        "UTC",
    )


def enable_caching(args: argparse.Namespace) -> bool | None:
    """What a cluster run gets: None keeps each task's compiled setting (--cache), False turns all off."""
    return None if args.cache else False
