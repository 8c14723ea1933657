"""Task groups shared by the pipelines; called inside a @dsl.pipeline body, they add tasks to it."""

from __future__ import annotations

from kfp import dsl
from kfp.dsl import Model

from components import (
    build_index,
    clean_inference,
    clean_training,
    encode,
    extract_inference_events,
    extract_snapshot,
    extract_training_events,
    infer,
    merge_recommendations,
    promote,
    shard_indices,
    train,
    window_cache_key,
)
from pipelines.cluster import configure


def import_encoder(encoder):
    """The sentence encoder as a lineage node: an HF id, or a folder (local, s3://, gs://) of its weights."""
    return dsl.importer(
        artifact_uri=encoder, artifact_class=Model, reimport=False, metadata={"role": "query encoder"}
    ).set_display_name("import query encoder")


def training_tasks(
    *,
    warehouse_uri,
    embeddings_uri,
    start_date,
    end_date,
    holdout_start,
    snapshot_max_days,
    max_items,
    min_item_count,
    encoder,
    pooling,
    epochs,
    batch_size,
    loss,
    ground_truth_uri,
    index_kind,
    min_index_recall,
    learning_rate=None,
    registry=None,
    cache_lag_days=None,
):
    """extract -> clean -> encode -> train -> index (-> promote). Returns the train and index tasks.

    `encoder` is the Model artifact of import_encoder(). `registry`: a dict with `models_uri`, `min_lift`
    and `max_regression` adds the promote step (only where `models_uri` is not empty). `cache_lag_days`:
    extract is reused from the cache for windows that ended at least that many days ago."""
    token = cache_key_task(end_date, cache_lag_days)
    events = extract_cached(
        extract_training_events(
            warehouse_uri=warehouse_uri, start_date=start_date, end_date=end_date, **token
        ),
        token,
    ).set_display_name("extract training events")
    snapshot = snapshot_task(embeddings_uri, end_date, snapshot_max_days, token)
    cleaned = configure(
        clean_training(
            events=events.outputs["events"],
            snapshot=snapshot.outputs["snapshot"],
            end_date=end_date,
            holdout_start=holdout_start,
            max_items=max_items,
            min_item_count=min_item_count,
        ),
        "clean",
    )
    encoded = encode_task(cleaned.outputs["examples"], encoder, pooling)
    trained = configure(
        train(
            encoded=encoded.outputs["encoded"],
            examples=cleaned.outputs["examples"],
            snapshot=snapshot.outputs["snapshot"],
            epochs=epochs,
            batch_size=batch_size,
            loss=loss,
            ground_truth_uri=ground_truth_uri,
            train_start=start_date,
            train_end=end_date,
            **({} if learning_rate is None else {"learning_rate": learning_rate}),
        ),
        "train",
    )
    indexed = index_task(trained.outputs["model"], snapshot.outputs["snapshot"], index_kind, min_index_recall)
    if registry is not None:
        with dsl.If(registry["models_uri"] != "", name="registry-given"):
            promote_task(trained, encoded, cleaned, snapshot, end_date, **registry)
    return trained, indexed


def promote_task(trained, encoded, cleaned, snapshot, end_date, *, models_uri, min_lift, max_regression):
    """Publish to the registry, gate against the current model on this run's holdout (never cached)."""
    return configure(
        promote(
            model=trained.outputs["model"],
            report=trained.outputs["report"],
            encoded=encoded.outputs["encoded"],
            examples=cleaned.outputs["examples"],
            snapshot=snapshot.outputs["snapshot"],
            models_uri=models_uri,
            train_end=end_date,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            min_lift=min_lift,
            max_regression=max_regression,
        ),
        "train",
        touches_network=True,
        cache=False,
    ).set_display_name("promote model (gate vs current)")


def cache_key_task(end_date, cache_lag_days) -> dict:
    """{"cache_token": <window_cache_key output>} for the extract tasks, or {} (never cached) without a lag."""
    if cache_lag_days is None:
        return {}
    task = configure(
        window_cache_key(
            end_date=end_date, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, cache_lag_days=cache_lag_days
        ),
        "clean",
        cache=False,
    ).set_display_name("is the window closed? (extract cache key)")
    return {"cache_token": task.output}


def extract_cached(task, token: dict):
    """An extract task: cached only when it takes a window cache key (closed windows repeat it)."""
    configure(task, "extract", touches_network=True, cache=False)
    return task.set_caching_options(bool(token))


def snapshot_task(embeddings_uri, date, max_days, token=None):
    return extract_cached(
        extract_snapshot(embeddings_uri=embeddings_uri, date=date, max_days=max_days, **(token or {})),
        token or {},
    ).set_display_name("extract embeddings snapshot")


def encode_task(examples, encoder, pooling):
    return configure(
        encode(examples=examples, encoder=encoder, pooling=pooling), "encode", touches_network=True
    )


def index_task(model, snapshot, index_kind, min_index_recall):
    return configure(
        build_index(model=model, snapshot=snapshot, kind=index_kind, min_recall=min_index_recall), "index"
    )


def recommend_tasks(
    *,
    model,
    warehouse_uri,
    embeddings_uri,
    start_date,
    end_date,
    users_uri,
    snapshot_max_days,
    encoder,
    pooling,
    index_kind,
    min_index_recall,
    num_shards,
    top_k,
    exclude_bought,
    min_history,
    output_uri,
    index=None,
    cache_lag_days=None,
):
    """extract -> clean -> encode -> (index) -> infer: one task for one shard, else per shard then merge.

    `model` and `encoder` are Model artifacts (a train output or an importer's)."""
    token = cache_key_task(end_date, cache_lag_days)
    events = extract_cached(
        extract_inference_events(
            warehouse_uri=warehouse_uri,
            start_date=start_date,
            end_date=end_date,
            users_uri=users_uri,
            **token,
        ),
        token,
    ).set_display_name("extract inference events")
    if index is None:
        snapshot = snapshot_task(embeddings_uri, end_date, snapshot_max_days, token)
        index = index_task(model, snapshot.outputs["snapshot"], index_kind, min_index_recall).outputs["index"]
    histories = configure(clean_inference(events=events.outputs["events"], min_history=min_history), "clean")
    encoded = encode_task(histories.outputs["histories"], encoder, pooling)
    common = dict(
        model=model,
        index=index,
        encoded=encoded.outputs["encoded"],
        orders=events.outputs["orders"],
        num_shards=num_shards,
        top_k=top_k,
        exclude_bought=exclude_bought,
        min_history=min_history,
    )
    with dsl.If(num_shards == 1, name="one-shard"):
        # One shard: a single task writes the final dataset (and its copy), no fan-out, no merge.
        configure(
            infer(**common, shard_index=0, output_uri=output_uri), "infer", touches_network=True
        ).set_display_name("infer")
    with dsl.Else(name="sharded"):
        shards = configure(shard_indices(num_shards=num_shards), "clean").set_display_name("user shards")
        with dsl.ParallelFor(shards.output, name="shard") as shard_index:
            per_shard = configure(infer(**common, shard_index=shard_index), "infer").set_display_name(
                "infer shard"
            )
        configure(
            merge_recommendations(
                shards=dsl.Collected(per_shard.outputs["recommendations"]), output_uri=output_uri
            ),
            "infer",
            touches_network=True,
        ).set_display_name("merge recommendations")
