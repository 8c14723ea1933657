"""What every pipeline parameter means, once: the pipelines' docstrings are built from it, and KFP compiles
a docstring's `Args:` section into each parameter's description in the spec (what the UI shows)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from searchrec import config
from searchrec.artifacts.folder import OUTPUTS_MARKER

F = TypeVar("F", bound=Callable)

PARAMETERS: dict[str, str] = {
    "start_date": "first day of the window, YYYY-MM-DD (inclusive).",
    "end_date": "last day of the window, YYYY-MM-DD (inclusive).",
    "train_start_date": "first day of the training window, YYYY-MM-DD.",
    "train_end_date": "last day of the training window, YYYY-MM-DD (inclusive).",
    "recommend_start_date": "first day of the window whose queries the recommendations use, YYYY-MM-DD.",
    "recommend_end_date": "last day of the recommendation window, YYYY-MM-DD (inclusive).",
    "model_uri": "the model to serve: a model folder, or a model registry root (its CURRENT model, read "
    "when the run starts); local path, s3:// or gs://.",
    "warehouse_uri": "the warehouse: a postgresql:// URI of the database (Greenplum; credentials from the "
    "environment, never in the URI) or duckdb:///file.",
    "embeddings_uri": "bert4rec item-embeddings snapshots, a folder of dt=YYYY-MM-DD partitions (or one "
    "partition to pin it); local path, s3:// or gs://.",
    "warehouse_secret": "Vertex AI: a Secret Manager secret version holding the warehouse login; empty: "
    "PGUSER / PGPASSWORD from the pod's environment (a Kubernetes Secret on Kubeflow Pipelines).",
    "backtest_start_date": "demo: first day of the purchases the served recommendations are scored against.",
    "backtest_days": "demo: days of purchases in the backtest.",
    "holdout_start": "purchases from this date on form the temporal holdout; empty: the last 7 days of "
    "the window.",
    "snapshot_max_days": "how far the nearest dt= snapshot may be from the window's end, in days.",
    "max_items": "training items: at most this many of the most frequent.",
    "min_item_count": "training items: bought at least this many times in the window.",
    "encoder": f"sentence encoder: a Hugging Face id in the local cache or a folder of from_pretrained "
    f"weights (local, s3://, gs://); production: {config.PRODUCTION_ENCODER_ID}.",
    "pooling": "encoder pooling, cls or mean; empty: what the encoder folder says.",
    "epochs": "training epochs.",
    "batch_size": "training batch size (also the number of in-batch negatives).",
    "learning_rate": "AdamW learning rate.",
    "loss": "training objective; empty: the library default (in-batch softmax with logQ correction).",
    "index_kind": "faiss index: flat (exact), ivf (approximate) or auto (by catalogue size).",
    "min_index_recall": "an approximate index must reach at least this recall@k against exact search.",
    "ground_truth_uri": "demo only: the generator's ground truth, for the ceiling metrics; empty: none.",
    "users_uri": "parquet or CSV with a user_id column: recommend only for them; empty: every user with a "
    "query in the window.",
    "num_shards": "user shards for inference; 1: one task, more: a ParallelFor over shards and a merge.",
    "top_k": "items recommended per user.",
    "exclude_bought": "leave out items the user bought in the window.",
    "min_history": "users with fewer cleaned queries than this get no recommendations.",
    "output_uri": "output root (local, s3://, gs://) for a copy of the recommendations: each run writes "
    "<output_uri>/<end_date>-<task id>/, then LATEST.json naming it (the run that finishes last wins); "
    f"a root holding files without {OUTPUTS_MARKER}, or the runs folder, is refused; empty: only the "
    "pipeline's artifact.",
    "models_uri": "model registry root (local, s3://, gs://): the model is published to "
    "<models_uri>/<end_date>-<run>/ and becomes CURRENT only if it passes the gate; empty: not published.",
    "min_lift": "promotion gate: holdout Recall@200 must be at least this many times popularity's.",
    "max_regression": "promotion gate: holdout Recall@200 may be at most this much below the current "
    "model's on the same holdout.",
    "vertex_model_id": "Vertex AI only: also register each published version in Vertex AI Model Registry "
    "as a version of this model (the default version when promoted); empty: no upload.",
    "cache_lag_days": "extract is reused from the cache only for windows that ended at least this many "
    "days before the run (UTC).",
    "run_name": "a stable name for one logical run: a rerun with the same name reuses the extracts of its "
    "open windows too (a local `searchrec run --resume` passes the interrupted run's); empty: the job id.",
}


def documented(summary: str) -> Callable[[F], F]:
    """Give a pipeline function a docstring with an `Args:` line for every parameter (a parameter
    without a description here is an error, so none can be left undocumented)."""

    def wrap(func: F) -> F:
        names = list(inspect.signature(func).parameters)
        missing = [n for n in names if n not in PARAMETERS]
        if missing:
            raise ValueError(f"{func.__name__}: no description for {', '.join(missing)} in pipelines/docs.py")
        args = "\n".join(f"    {n}: {PARAMETERS[n]}" for n in names)
        func.__doc__ = f"{summary}\n\nArgs:\n{args}\n"
        return func

    return wrap
