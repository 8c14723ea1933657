"""backtest: what was served, against what those users bought in the following days (from the warehouse)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from searchrec import config


@dsl.component(base_image=config.image("extract"), install_kfp_package=False)
def backtest(
    recommendations: Input[Dataset],
    warehouse_uri: str,
    start_date: str,
    metrics: Output[Metrics],
    days: int = 7,  # config.BACKTEST_DAYS
    warehouse_secret: str = "",
):
    """Recall@k, hit rate, catalogue coverage and share of users served of the recommendations, against the
    purchases of [start_date, start_date + days) read from `warehouse_uri`; no ground truth needed.
    warehouse_secret: as for extract_training_events."""
    from pathlib import Path

    from searchrec.caching import keep_metrics_file
    from searchrec.runtime import stage
    from searchrec.stages.backtest import backtest as run

    with stage("backtest", warehouse_uri=warehouse_uri):
        if warehouse_secret:
            from searchrec.secrets import load_warehouse_login

            load_warehouse_login(warehouse_secret)
        result = run(Path(recommendations.path), warehouse_uri, start_date, days)
        for name, value in result.as_metrics().items():
            metrics.log_metric(name, value)
        metrics.metadata.update({"start_date": result.start_date, "end_date": result.end_date})
        keep_metrics_file(
            metrics
        )  # kfp.local reuses (and `run --resume` skips) the task only if the file exists
