"""Thin, typed KFP components, one module per stage; the logic lives in the searchrec library."""

from components.backtest import backtest
from components.cache import window_cache_key
from components.clean import clean_inference, clean_training
from components.encode import encode
from components.extract import extract_inference_events, extract_snapshot, extract_training_events
from components.index import build_index
from components.infer import infer, merge_recommendations, shard_indices
from components.promote import promote, resolve_model
from components.train import train

__all__ = [
    "backtest",
    "build_index",
    "clean_inference",
    "clean_training",
    "encode",
    "extract_inference_events",
    "extract_snapshot",
    "extract_training_events",
    "infer",
    "merge_recommendations",
    "promote",
    "resolve_model",
    "shard_indices",
    "train",
    "window_cache_key",
]
