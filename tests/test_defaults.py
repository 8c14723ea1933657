"""One source for each default: config.py. Stage functions, components (literal defaults marked
`# config.NAME`, see test_component_defaults.py), pipelines and the CLI all carry the value config.py
has; a default changed in one place and not the others fails here."""

from __future__ import annotations

import argparse
import functools
import inspect
from collections.abc import Callable

import pytest

import components
from pipelines.demo import demo
from pipelines.recommend import recommend
from pipelines.training import training
from searchrec import config
from searchrec.cli import build_parser, fill_run_defaults
from searchrec.stages import clean, encode, extract, index, infer


def stage(func: Callable, param: str) -> tuple[str, object]:
    return f"{func.__module__}.{func.__name__}({param})", inspect.signature(func).parameters[param].default


def component(name: str, param: str) -> tuple[str, object]:
    func = getattr(components, name).python_func
    return f"components.{name}({param})", inspect.signature(func).parameters[param].default


def pipeline(graph, param: str) -> tuple[str, object]:
    func = graph.pipeline_func
    return f"pipeline {func.__name__}({param})", inspect.signature(func).parameters[param].default


@functools.cache
def _parsed(command: str, *extra: str):
    return build_parser().parse_args([command, *extra])


def cli(command: str, dest: str, *extra: str) -> tuple[str, object]:
    """The CLI's default; ``extra``: arguments a subcommand requires."""
    args = _parsed(command, *extra)
    if command == "run":  # the demo pipeline's options left out are filled in after parsing
        args = fill_run_defaults(argparse.Namespace(**vars(args)))
    return f"searchrec {command} --{dest.replace('_', '-')}", getattr(args, dest)


def train_param(field: str) -> tuple[str, object]:
    from searchrec.stages.train import TrainParams

    return f"TrainParams.{field}", getattr(TrainParams(), field)


BACKTEST_ARGS = ("--recommendations", "r", "--warehouse-uri", "w", "--start-date", "2026-10-11")

PLACES = {
    "INDEX_KIND": lambda: [
        stage(index.build_index, "kind"),
        component("build_index", "kind"),
        *(pipeline(p, "index_kind") for p in (training, recommend, demo)),
    ],
    "MIN_INDEX_RECALL": lambda: [
        stage(index.build_index, "min_recall"),
        component("build_index", "min_recall"),
        *(pipeline(p, "min_index_recall") for p in (training, recommend, demo)),
    ],
    "INDEX_AUTO_THRESHOLD": lambda: [stage(index.build_index, "auto_threshold")],
    "INDEX_AUTO_MIN_SPEEDUP": lambda: [stage(index.build_index, "auto_min_speedup")],
    "ENCODE_BATCH_SIZE": lambda: [
        stage(encode.encode_histories, "batch_size"),
        component("encode", "batch_size"),
    ],
    "INFER_BATCH_SIZE": lambda: [stage(infer.recommend, "batch_size")],
    "MIN_HISTORY": lambda: [
        stage(infer.recommend, "min_history"),
        stage(clean.clean_inference_events, "min_history"),
        component("infer", "min_history"),
        component("clean_inference", "min_history"),
        *(pipeline(p, "min_history") for p in (recommend, demo)),
    ],
    "NUM_SHARDS": lambda: [pipeline(recommend, "num_shards"), component("infer", "num_shards")],
    "DEMO_NUM_SHARDS": lambda: [pipeline(demo, "num_shards"), cli("run", "num_shards")],
    "TOP_K": lambda: [
        stage(infer.recommend, "top_k"),
        stage(index.build_index, "recall_k"),
        component("infer", "top_k"),
        *(pipeline(p, "top_k") for p in (recommend, demo)),
    ],
    "MAX_ITEMS": lambda: [
        stage(clean.clean_training_events, "max_items"),
        component("clean_training", "max_items"),
        *(pipeline(p, "max_items") for p in (training, demo)),
        cli("run", "max_items"),
    ],
    "MIN_ITEM_COUNT": lambda: [
        stage(clean.clean_training_events, "min_item_count"),
        component("clean_training", "min_item_count"),
        pipeline(training, "min_item_count"),
    ],
    "DEMO_MIN_ITEM_COUNT": lambda: [pipeline(demo, "min_item_count"), cli("run", "min_item_count")],
    "SNAPSHOT_MAX_DAYS": lambda: [
        stage(extract.fetch_snapshot, "max_days"),
        component("extract_snapshot", "max_days"),
        *(pipeline(p, "snapshot_max_days") for p in (training, recommend, demo)),
        cli("run", "snapshot_max_days"),
    ],
    "LOOKBACK_DAYS": lambda: [
        stage(extract.extract_training_events, "lookback_days"),
        component("extract_training_events", "lookback_days"),
    ],
    "SQL_HISTORY_LENGTH": lambda: [
        stage(extract.extract_training_events, "history_length"),
        stage(extract.extract_inference_events, "history_length"),
        component("extract_training_events", "history_length"),
        component("extract_inference_events", "history_length"),
    ],
    "EVAL_SAMPLE": lambda: [train_param("eval_max_examples")],
    "HISTORY_LENGTH": lambda: [
        stage(clean.clean_training_events, "history_length"),
        stage(clean.clean_inference_events, "history_length"),
        component("clean_training", "history_length"),
        component("clean_inference", "history_length"),
    ],
    **{
        name: (
            lambda field=field, param=param, extra=extra: [
                train_param(field),
                component("train", param),
                *extra(),
            ]
        )
        for name, field, param, extra in (
            (
                "TRAIN_EPOCHS",
                "epochs",
                "epochs",
                lambda: [*(pipeline(p, "epochs") for p in (training, demo)), cli("run", "epochs")],
            ),
            (
                "TRAIN_BATCH_SIZE",
                "batch_size",
                "batch_size",
                lambda: [*(pipeline(p, "batch_size") for p in (training, demo))],
            ),
            ("TRAIN_LR", "lr", "learning_rate", list),
            ("LR_SCHEDULE", "lr_schedule", "lr_schedule", list),
            ("TRAIN_LOSS", "loss", "loss", list),
            ("TRAIN_TEMPERATURE", "temperature", "temperature", list),
            ("TRAIN_PADDING", "padding", "padding", list),
            ("QUERY_TOWER", "query_tower", "query_tower", list),
            ("ATTENTION_HEADS", "attention_heads", "attention_heads", list),
            ("INTERESTS", "interests", "interests", list),
            ("INTEREST_OFFSETS", "interest_offsets", "interest_offsets", list),
            ("INTEREST_DIVERSITY", "interest_diversity", "interest_diversity", list),
            ("ITEM_TOWER", "item_tower", "item_tower", list),
            ("POPULARITY_PRIOR", "popularity_prior", "popularity_prior", list),
            ("INTEREST_QUOTA", "interest_quota", "interest_quota", list),
            ("SAMPLED_NEGATIVES", "sampled_negatives", "sampled_negatives", list),
            ("NEGATIVE_SAMPLING", "negative_sampling", "negative_sampling", list),
            ("VALIDATION_DAYS", "validation_days", "validation_days", list),
            ("EARLY_STOPPING_PATIENCE", "patience", "patience", list),
        )
    },
    "BACKTEST_DAYS": lambda: [component("backtest", "days"), cli("backtest", "days", *BACKTEST_ARGS)],
    "DEMO_BACKTEST_DAYS": lambda: [pipeline(demo, "backtest_days")],
    "DEMO_BACKTEST_START": lambda: [pipeline(demo, "backtest_start_date")],
}


@pytest.mark.parametrize("name", sorted(PLACES))
def test_every_place_carries_the_config_default(name: str):
    want = getattr(config, name)
    places = PLACES[name]()
    assert places, name
    drifted = [f"{where} = {got!r}" for where, got in places if got != want]
    assert not drifted, f"config.{name} = {want!r} but " + "; ".join(drifted)
