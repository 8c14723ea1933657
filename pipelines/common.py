"""Task groups shared by the pipelines; called inside a @dsl.pipeline body, they add tasks to it."""

from __future__ import annotations

import os
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Model

from components import (
    backtest,
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
from searchrec import config

# Branch names that start every task's display name: in the demo pipeline both run side by side.
TRAINING = "training"
SERVING = "serving"
# Defaults of the cluster pipelines' warehouse, embeddings and encoder: the environment or settings file
# at compile time (config.production_defaults), never host names in this source.
PRODUCTION = config.production_defaults()
# The Secret Manager login is a Vertex AI default only; Kubeflow Pipelines pods get a Kubernetes Secret.
PRODUCTION_WAREHOUSE_SECRET = PRODUCTION.warehouse_secret if config.platform().secret_manager else ""


def import_encoder(encoder):
    """The sentence encoder as a lineage node: an HF id, or a folder (local, s3://, gs://) of its weights."""
    return dsl.importer(
        artifact_uri=encoder, artifact_class=Model, reimport=False, metadata={"role": "query encoder"}
    ).set_display_name("import the query encoder (training and serving)")


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
    warehouse_secret="",
    run_name="",
    with_index=True,
):
    """extract -> clean -> encode -> train -> index (-> promote). Returns the train and index tasks.

    `with_index` False leaves out the index over the training snapshot (returned as None): the demo
    serves from its own serving-snapshot index and nothing reads this one.
    `encoder` is the Model artifact of import_encoder(). `registry`: a dict with `models_uri`, `min_lift`
    and `max_regression` adds the promote step (only where `models_uri` is not empty). `cache_lag_days`:
    extract is reused from the cache for windows that ended at least that many days ago."""
    token = cache_key_task(end_date, cache_lag_days, TRAINING, run_name)
    events = extract_cached(
        extract_training_events(
            warehouse_uri=warehouse_uri,
            start_date=start_date,
            end_date=end_date,
            warehouse_secret=warehouse_secret,
            **token,
        ),
        token,
    ).set_display_name(f"{TRAINING}: extract purchases and the queries before them")
    snapshot = snapshot_task(embeddings_uri, end_date, snapshot_max_days, token, TRAINING)
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
    ).set_display_name(f"{TRAINING}: clean queries, pick items, split off the holdout")
    encoded = encode_task(cleaned.outputs["examples"], encoder, pooling, TRAINING)
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
    ).set_display_name(f"{TRAINING}: train the two towers, holdout metrics, report")
    indexed = None
    if with_index:
        indexed = index_task(
            trained.outputs["model"],
            snapshot.outputs["snapshot"],
            encoded.outputs["encoded"],
            index_kind,
            min_index_recall,
            TRAINING,
        )
    if registry is not None:
        with dsl.If(registry["models_uri"] != "", name="registry-given"):
            promote_task(trained, encoded, cleaned, snapshot, end_date, **registry)
    return trained, indexed


def promote_task(
    trained, encoded, cleaned, snapshot, end_date, *, models_uri, min_lift, max_regression, vertex_model_id=""
):
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
            vertex_model_id=vertex_model_id,
        ),
        "train",
        touches_network=True,
        cache=False,
    ).set_display_name(f"{TRAINING}: publish to the registry, promote if it beats the gate")


def cache_key_task(end_date, cache_lag_days, branch=TRAINING, run_name="") -> dict:
    """{"cache_token": <window_cache_key output>} for the extract tasks, or {} (never cached) without a lag."""
    if cache_lag_days is None:
        return {}
    task = configure(
        window_cache_key(
            end_date=end_date,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            cache_lag_days=cache_lag_days,
            run_name=run_name,
        ),
        "clean",
        cache=False,
    ).set_display_name(f"{branch}: is the window closed? (extract cache key)")
    return {"cache_token": task.output}


def extract_cached(task, token: dict):
    """An extract task: cached only when it takes a window cache key (closed windows repeat it)."""
    configure(task, "extract", touches_network=True, cache=False)
    return task.set_caching_options(bool(token))


def snapshot_task(embeddings_uri, date, max_days, token=None, branch=TRAINING):
    return extract_cached(
        extract_snapshot(embeddings_uri=embeddings_uri, date=date, max_days=max_days, **(token or {})),
        token or {},
    ).set_display_name(f"{branch}: copy the nearest item-embeddings snapshot")


def encode_task(examples, encoder, pooling, branch=TRAINING):
    return configure(
        encode(examples=examples, encoder=encoder, pooling=pooling), "encode", touches_network=True
    ).set_display_name(f"{branch}: encode each distinct query once")


def index_task(model, snapshot, encoded, index_kind, min_index_recall, branch=TRAINING):
    """The index over the snapshot; `encoded` histories are the real queries its recall is tuned on."""
    return configure(
        build_index(
            model=model, snapshot=snapshot, encoded=encoded, kind=index_kind, min_recall=min_index_recall
        ),
        "index",
    ).set_display_name(f"{branch}: item tower over the snapshot, faiss index")


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
    warehouse_secret="",
    then=None,
    run_name="",
):
    """extract -> clean -> encode -> (index) -> infer: one task for one shard, else per shard then merge.

    `model` and `encoder` are Model artifacts (a train output or an importer's). `then`, if given, is
    called with the final recommendations inside whichever branch produces them (e.g. a backtest).
    Returns the single infer task and the merge task (which of them ran depends on num_shards)."""
    token = cache_key_task(end_date, cache_lag_days, SERVING, run_name)
    events = extract_cached(
        extract_inference_events(
            warehouse_uri=warehouse_uri,
            start_date=start_date,
            end_date=end_date,
            users_uri=users_uri,
            warehouse_secret=warehouse_secret,
            **token,
        ),
        token,
    ).set_display_name(f"{SERVING}: extract each user's last queries")
    histories = configure(
        clean_inference(events=events.outputs["events"], min_history=min_history), "clean"
    ).set_display_name(f"{SERVING}: clean queries, cut histories")
    encoded = encode_task(histories.outputs["histories"], encoder, pooling, SERVING)
    if index is None:
        snapshot = snapshot_task(embeddings_uri, end_date, snapshot_max_days, token, SERVING)
        index = index_task(
            model,
            snapshot.outputs["snapshot"],
            encoded.outputs["encoded"],
            index_kind,
            min_index_recall,
            SERVING,
        ).outputs["index"]
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
        single = configure(
            infer(**common, shard_index=0, output_uri=output_uri), "infer", touches_network=True
        ).set_display_name(f"{SERVING}: top-k items per user (one shard)")
        if then is not None:
            then(single.outputs["recommendations"]).set_display_name(f"{SERVING}: backtest (one shard)")
    with dsl.Else(name="sharded"):
        shards = configure(shard_indices(num_shards=num_shards), "clean").set_display_name(
            f"{SERVING}: user shards"
        )
        with dsl.ParallelFor(shards.output, name="shard") as shard_index:
            per_shard = configure(infer(**common, shard_index=shard_index), "infer").set_display_name(
                f"{SERVING}: top-k items for one user shard"
            )
        merged = configure(
            merge_recommendations(
                shards=dsl.Collected(per_shard.outputs["recommendations"]), output_uri=output_uri
            ),
            "infer",
            touches_network=True,
        ).set_display_name(f"{SERVING}: join the shards into one dataset")
        if then is not None:
            then(merged.outputs["recommendations"]).set_display_name(f"{SERVING}: backtest (merged shards)")
    return single, merged


def backtest_task(recommendations, warehouse_uri, start_date, days, warehouse_secret=""):
    """Served recommendations against the warehouse's purchases of the following days (Metrics)."""
    return configure(
        backtest(
            recommendations=recommendations,
            warehouse_uri=warehouse_uri,
            start_date=start_date,
            days=days,
            warehouse_secret=warehouse_secret,
        ),
        "extract",
        touches_network=True,
        cache=False,
    ).set_display_name(f"{SERVING}: backtest against the following days' purchases")


def serving_outputs(**extra) -> type:
    """The outputs a serving pipeline declares: the model, `extra`, and the final recommendations.

    The recommendations come from the one-shard infer task or from the merge task (dsl.OneOf). kfp.local
    2.17 cannot select an artifact with dsl.OneOf (its orchestrator expects exactly one artifact selector),
    so a local run (config.LOCAL_RUN_ENV, set before the pipelines are built) leaves that output out; the
    task's own output is the same dataset."""
    fields = [("model", Model), *extra.items()]
    if not os.environ.get(config.LOCAL_RUN_ENV):
        fields.append(("recommendations", Dataset))
    return NamedTuple("Outputs", fields)


def final_recommendations(outputs: type, single, merged) -> dict:
    """{"recommendations": OneOf(single infer, merge)} where `outputs` declares it, else {}."""
    if "recommendations" not in outputs._fields:
        return {}
    return {
        "recommendations": dsl.OneOf(single.outputs["recommendations"], merged.outputs["recommendations"])
    }
