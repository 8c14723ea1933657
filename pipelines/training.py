"""Training pipeline: extract -> clean -> encode -> train -> index."""

from kfp import dsl

from pipelines.common import PRODUCTION, PRODUCTION_WAREHOUSE_SECRET, import_encoder, training_tasks
from searchrec import config


@dsl.pipeline(
    name="searchrec-training", description="Two-tower model from search histories for a date window."
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
):
    encoder_model = import_encoder(encoder)
    training_tasks(
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
    )
