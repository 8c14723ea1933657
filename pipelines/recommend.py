"""Recommendation pipeline: the model (a folder or the registry's CURRENT, resolved at run time) -> top-k
items per user."""

from kfp import dsl

from components import resolve_model
from pipelines.cluster import configure
from pipelines.common import (
    PRODUCTION,
    PRODUCTION_WAREHOUSE_SECRET,
    final_recommendations,
    import_encoder,
    recommend_tasks,
    serving_outputs,
)
from pipelines.docs import documented
from searchrec import config

RecommendOutputs = serving_outputs()


@dsl.pipeline(
    name="searchrec-recommend", description="Top-k items per user from their recent search queries."
)
@documented("Top-k items per user from their recent search queries, with the model that model_uri names.")
def recommend(
    start_date: str,
    end_date: str,
    model_uri: str,
    warehouse_uri: str = PRODUCTION.warehouse_uri,
    embeddings_uri: str = PRODUCTION.embeddings_uri,
    warehouse_secret: str = PRODUCTION_WAREHOUSE_SECRET,
    users_uri: str = "",
    snapshot_max_days: int = config.SNAPSHOT_MAX_DAYS,
    encoder: str = PRODUCTION.encoder,
    pooling: str = config.PRODUCTION_ENCODER_POOLING,
    index_kind: str = config.INDEX_KIND,
    min_index_recall: float = config.MIN_INDEX_RECALL,
    num_shards: int = config.NUM_SHARDS,
    top_k: int = config.TOP_K,
    exclude_bought: bool = False,
    min_history: int = config.MIN_HISTORY,
    output_uri: str = "",
    cache_lag_days: int = config.CACHE_LAG_DAYS,
    run_name: str = "",
) -> RecommendOutputs:
    encoder_model = import_encoder(encoder)
    model = configure(  # a CPU task: reads one pointer and copies one folder
        resolve_model(model_uri=model_uri),
        "extract",
        touches_network=True,
        cache=False,
        reads_warehouse=False,
    )
    model.set_display_name("serving: resolve model (folder or registry CURRENT)")
    single, merged = recommend_tasks(
        model=model.outputs["model"],
        warehouse_uri=warehouse_uri,
        warehouse_secret=warehouse_secret,
        embeddings_uri=embeddings_uri,
        start_date=start_date,
        end_date=end_date,
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
    )
    return RecommendOutputs(
        model=model.outputs["model"], **final_recommendations(RecommendOutputs, single, merged)
    )
