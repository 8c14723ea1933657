"""Demo pipeline: train on one window, then recommend for the following window, on one warehouse."""

from kfp import dsl
from kfp.dsl import Metrics

from pipelines.common import (
    backtest_task,
    final_recommendations,
    import_encoder,
    recommend_tasks,
    serving_outputs,
    training_tasks,
)
from pipelines.docs import documented
from searchrec import config

DemoOutputs = serving_outputs(metrics=Metrics)


@dsl.pipeline(name="searchrec-demo", description="Training then recommendation on one warehouse (demo data).")
@documented("Training then recommendation on one warehouse (demo data): the training window comes first.")
def demo(
    warehouse_uri: str = config.DEMO_WAREHOUSE,
    embeddings_uri: str = config.DEMO_EMBEDDINGS,
    warehouse_secret: str = "",
    train_start_date: str = config.DEMO_TRAIN_START,
    train_end_date: str = config.DEMO_TRAIN_END,
    holdout_start: str = config.DEMO_HOLDOUT_START,
    recommend_start_date: str = config.DEMO_RECOMMEND_START,
    recommend_end_date: str = config.DEMO_RECOMMEND_END,
    snapshot_max_days: int = config.SNAPSHOT_MAX_DAYS,
    max_items: int = config.MAX_ITEMS,
    min_item_count: int = config.DEMO_MIN_ITEM_COUNT,
    encoder: str = config.DEMO_ENCODER_DIR,
    pooling: str = "",
    epochs: int = config.TRAIN_EPOCHS,
    batch_size: int = config.TRAIN_BATCH_SIZE,
    loss: str = "",
    index_kind: str = config.INDEX_KIND,
    min_index_recall: float = config.MIN_INDEX_RECALL,
    ground_truth_uri: str = "",
    users_uri: str = "",
    num_shards: int = config.DEMO_NUM_SHARDS,
    top_k: int = config.TOP_K,
    exclude_bought: bool = False,
    min_history: int = config.MIN_HISTORY,
    output_uri: str = "",
    backtest_start_date: str = config.DEMO_BACKTEST_START,
    backtest_days: int = config.DEMO_BACKTEST_DAYS,
    cache_lag_days: int = config.CACHE_LAG_DAYS,
    run_name: str = "",
) -> DemoOutputs:
    encoder_model = import_encoder(encoder)
    trained, _ = training_tasks(
        warehouse_uri=warehouse_uri,
        warehouse_secret=warehouse_secret,
        embeddings_uri=embeddings_uri,
        start_date=train_start_date,
        end_date=train_end_date,
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
        cache_lag_days=cache_lag_days,
        run_name=run_name,
        with_index=False,  # the serving branch indexes its own snapshot; a training-snapshot index goes unread
    )
    single, merged = recommend_tasks(
        model=trained.outputs["model"],
        warehouse_uri=warehouse_uri,
        warehouse_secret=warehouse_secret,
        embeddings_uri=embeddings_uri,
        start_date=recommend_start_date,
        end_date=recommend_end_date,
        users_uri=users_uri,
        snapshot_max_days=snapshot_max_days,
        encoder=encoder_model.output,
        pooling=pooling,
        index_kind=index_kind,
        min_index_recall=min_index_recall,
        num_shards=num_shards,
        top_k=top_k,
        exclude_bought=exclude_bought,
        min_history=min_history,
        output_uri=output_uri,
        cache_lag_days=cache_lag_days,
        run_name=run_name,
        then=lambda recs: backtest_task(
            recs, warehouse_uri, backtest_start_date, backtest_days, warehouse_secret
        ),
    )
    return DemoOutputs(
        model=trained.outputs["model"],
        metrics=trained.outputs["metrics"],
        **final_recommendations(DemoOutputs, single, merged),
    )
