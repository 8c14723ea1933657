"""infer: query tower + batched top-k search per user shard, then the shards joined into one dataset."""

from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from searchrec import config


@dsl.component(base_image=config.image("clean"), install_kfp_package=False)
def shard_indices(num_shards: int) -> List[int]:
    """[0, 1, ..., num_shards - 1]: the items of the inference ParallelFor."""
    if num_shards < 1:
        raise SystemExit(f"searchrec infer failed: num_shards must be >= 1, got {num_shards}")
    return list(range(num_shards))


@dsl.component(base_image=config.image("infer"), install_kfp_package=False)
def infer(
    model: Input[Model],
    index: Input[Artifact],
    encoded: Input[Dataset],
    orders: Input[Dataset],
    recommendations: Output[Dataset],
    metrics: Output[Metrics],
    shard_index: int = 0,
    num_shards: int = 1,
    top_k: int = 200,  # config.TOP_K
    exclude_bought: bool = False,
    min_history: int = 1,  # config.MIN_HISTORY
    output_uri: str = "",
):
    """Top-k items for the users with user_id % num_shards == shard_index.

    `output_uri` (s3://, gs:// or a local folder): an output root; the result is copied to its own
    sub-folder there and LATEST.json points at it (searchrec.outputs). With one shard this task's output
    is the final dataset, with several the merge task copies the joined one."""
    from pathlib import Path

    from searchrec.caching import keep_metrics_file
    from searchrec.registry import served_model
    from searchrec.runtime import stage
    from searchrec.stages.infer import recommend
    from searchrec.stages.merge import publish

    with stage(f"infer shard {int(shard_index)}/{int(num_shards)}", output_uri=output_uri):
        stats = recommend(
            Path(model.path),
            Path(index.path),
            Path(encoded.path),
            Path(recommendations.path),
            top_k=top_k,
            shard_index=int(shard_index),
            num_shards=int(num_shards),
            exclude_bought_dir=Path(orders.path) if exclude_bought else None,
            min_history=min_history,
        )
        end_date = str(dict(orders.metadata).get("end_date") or "")
        publish(stats, recommendations, metrics, output_uri, end_date)
        recommendations.metadata.update(served_model(dict(model.metadata), model.uri))
        keep_metrics_file(
            metrics
        )  # kfp.local reuses (and `run --resume` skips) the task only if the file exists


@dsl.component(base_image=config.image("infer"), install_kfp_package=False)
def merge_recommendations(
    shards: Input[List[Dataset]],
    recommendations: Output[Dataset],
    metrics: Output[Metrics],
    output_uri: str = "",
):
    """Join the shard outputs into one dataset; optionally copy it under an output root (s3://, gs:// or a
    local folder; searchrec.outputs)."""
    from pathlib import Path

    from searchrec.caching import keep_metrics_file
    from searchrec.registry import SERVED_KEYS
    from searchrec.runtime import stage
    from searchrec.stages.merge import merge_shards, publish

    with stage("merge_recommendations", output_uri=output_uri):
        stats = merge_shards([Path(s.path) for s in shards], Path(recommendations.path))
        end_date = str(dict(shards[0].metadata).get("end_date") or "") if shards else ""
        publish(stats, recommendations, metrics, output_uri, end_date)
        served = dict(shards[0].metadata) if shards else {}
        recommendations.metadata.update({k: served[k] for k in SERVED_KEYS if k in served})
        keep_metrics_file(
            metrics
        )  # kfp.local reuses (and `run --resume` skips) the task only if the file exists
