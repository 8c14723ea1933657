"""extract: SQL over the warehouse for a date window, and the nearest item-embeddings snapshot."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from searchrec import config


@dsl.component(base_image=config.image("extract"), install_kfp_package=False)
def extract_training_events(
    warehouse_uri: str,
    start_date: str,
    end_date: str,
    events: Output[Dataset],
    lookback_days: int = 30,  # config.LOOKBACK_DAYS
    history_length: int = 10,  # config.SQL_HISTORY_LENGTH
    warehouse_secret: str = "",
    cache_token: str = "",
):
    """Purchases in the window with up to `history_length` preceding queries each, streamed to Parquet.

    warehouse_secret: a Secret Manager secret version with the warehouse login (Vertex AI); empty: the
    login comes from PGUSER / PGPASSWORD (a Kubernetes Secret on Kubeflow Pipelines).
    cache_token (window_cache_key's output) only shapes the cache key."""
    from pathlib import Path

    from searchrec.runtime import lineage, stage
    from searchrec.stages.extract import extract_training_events as run

    with stage("extract_training_events", warehouse_uri=warehouse_uri):
        if warehouse_secret:
            from searchrec.secrets import load_warehouse_login

            load_warehouse_login(warehouse_secret)
        stats = run(
            warehouse_uri,
            start_date,
            end_date,
            Path(events.path),
            lookback_days=lookback_days,
            history_length=history_length,
        )
        events.metadata.update(lineage(**stats.as_metadata()))


@dsl.component(base_image=config.image("extract"), install_kfp_package=False)
def extract_inference_events(
    warehouse_uri: str,
    start_date: str,
    end_date: str,
    events: Output[Dataset],
    orders: Output[Dataset],
    users_uri: str = "",
    history_length: int = 10,  # config.SQL_HISTORY_LENGTH
    warehouse_secret: str = "",
    cache_token: str = "",
):
    """Last queries of each user in the window (optionally for a user list) and the window's purchases.

    warehouse_secret: as for extract_training_events.
    cache_token (window_cache_key's output) only shapes the cache key."""
    import tempfile
    from pathlib import Path

    from searchrec.runtime import lineage, stage
    from searchrec.stages.extract import extract_inference_events as run
    from searchrec.stages.extract import extract_orders

    with stage("extract_inference_events", warehouse_uri=warehouse_uri, users_uri=users_uri):
        if warehouse_secret:
            from searchrec.secrets import load_warehouse_login

            load_warehouse_login(warehouse_secret)
        users_path = None
        if users_uri:
            from searchrec import storage

            if storage.is_remote(users_uri):
                local = Path(tempfile.mkdtemp(prefix="users-"))
                users_path = storage.download_tree(users_uri, local)[0]
            else:
                users_path = Path(users_uri)
        stats = run(
            warehouse_uri,
            start_date,
            end_date,
            Path(events.path),
            users_path=users_path,
            history_length=history_length,
        )
        events.metadata.update(lineage(**stats.as_metadata()))
        order_stats = extract_orders(warehouse_uri, start_date, end_date, Path(orders.path))
        orders.metadata.update(lineage(**order_stats.as_metadata()))


@dsl.component(base_image=config.image("extract"), install_kfp_package=False)
def extract_snapshot(
    embeddings_uri: str,
    date: str,
    snapshot: Output[Dataset],
    metrics: Output[Metrics],
    max_days: int = 14,  # config.SNAPSHOT_MAX_DAYS
    cache_token: str = "",
):
    """Copy the `dt=` embeddings snapshot nearest to `date` (at most `max_days` away).
    `cache_token` (window_cache_key's output) only shapes the cache key."""
    from pathlib import Path

    from searchrec.caching import keep_metrics_file
    from searchrec.runtime import lineage, stage
    from searchrec.stages.extract import fetch_snapshot

    with stage("extract_snapshot", embeddings_uri=embeddings_uri):
        info = fetch_snapshot(embeddings_uri, date, Path(snapshot.path), max_days=max_days)
        snapshot.metadata.update(lineage(**info.as_metadata()))
        for name, value in info.as_metrics().items():  # the snapshot's validation statistics
            metrics.log_metric(name, value)
        keep_metrics_file(metrics)  # kfp.local reuses the task only if the file exists
