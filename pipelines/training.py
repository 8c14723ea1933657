"""Training pipeline: extract -> clean -> encode -> train -> index (-> promote to the model registry)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Metrics, Model

from pipelines.common import PRODUCTION, PRODUCTION_WAREHOUSE_SECRET, import_encoder, training_tasks
from pipelines.docs import documented
from searchrec import config


class TrainingOutputs(NamedTuple):
    model: Model
    metrics: Metrics
    index: Artifact


@dsl.pipeline(
    name="searchrec-training", description="Two-tower model from search histories for a date window."
)
@documented(
    "Two-tower model from search histories for a date window; with models_uri, published to the model "
    "registry and promoted if it passes the gate."
)
def training(
    start_date: str,
    end_date: str,
    warehouse_uri: str = PRODUCTION.warehouse_uri,
    embeddings_uri: str = PRODUCTION.embeddings_uri,
    warehouse_secret: str = PRODUCTION_WAREHOUSE_SECRET,
    holdout_start: str = "",
    snapshot_max_days: int = config.SNAPSHOT_MAX_DAYS,
    max_items: int = config.MAX_ITEMS,
    min_item_count: int = config.MIN_ITEM_COUNT,
    encoder: str = PRODUCTION.encoder,
    pooling: str = config.PRODUCTION_ENCODER_POOLING,
    epochs: int = config.TRAIN_EPOCHS,
    batch_size: int = config.TRAIN_BATCH_SIZE,
    loss: str = "",
    index_kind: str = config.INDEX_KIND,
    min_index_recall: float = config.MIN_INDEX_RECALL,
    ground_truth_uri: str = "",
    learning_rate: float = config.TRAIN_LR,
    models_uri: str = "",
    min_lift: float = config.PROMOTE_MIN_LIFT,
    max_regression: float = config.PROMOTE_MAX_REGRESSION,
    cache_lag_days: int = config.CACHE_LAG_DAYS,
    run_name: str = "",
    vertex_model_id: str = "",
) -> TrainingOutputs:
    encoder_model = import_encoder(encoder)
    trained, indexed = training_tasks(
        warehouse_uri=warehouse_uri,
        warehouse_secret=warehouse_secret,
        embeddings_uri=embeddings_uri,
        start_date=start_date,
        end_date=end_date,
        holdout_start=holdout_start,
        snapshot_max_days=snapshot_max_days,
        max_items=max_items,
        min_item_count=min_item_count,
        encoder=encoder_model.output,
        pooling=pooling,
        epochs=epochs,
        batch_size=batch_size,
        loss=loss,
        ground_truth_uri=ground_truth_uri,
        index_kind=index_kind,
        min_index_recall=min_index_recall,
        learning_rate=learning_rate,
        registry={
            "models_uri": models_uri,
            "min_lift": min_lift,
            "max_regression": max_regression,
            "vertex_model_id": vertex_model_id,
        },
        cache_lag_days=cache_lag_days,
        run_name=run_name,
    )
    return TrainingOutputs(
        model=trained.outputs["model"], metrics=trained.outputs["metrics"], index=indexed.outputs["index"]
    )
