"""clean: query filters, id-search purchases, item selection, histories cut to the last 5, split."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from searchrec import config


@dsl.component(base_image=config.image("clean"), install_kfp_package=False)
def clean_training(
    events: Input[Dataset],
    snapshot: Input[Dataset],
    end_date: str,
    examples: Output[Dataset],
    funnel: Output[Metrics],
    funnel_table: Output[Markdown],
    holdout_start: str = "",
    holdout_days: int = 7,
    max_items: int = 100000,  # config.MAX_ITEMS
    min_item_count: int = 50,  # config.MIN_ITEM_COUNT
    history_length: int = 5,  # config.HISTORY_LENGTH
):
    """Training examples, training items and the funnel.

    Purchases on or after `holdout_start` (default: the last `holdout_days` days up to `end_date`)
    form the temporal holdout.
    """
    import datetime as dt
    from pathlib import Path

    from searchrec.caching import keep_metrics_file
    from searchrec.runtime import lineage, stage
    from searchrec.stages.clean import clean_training_events

    with stage("clean_training"):
        if not holdout_start:
            end = dt.date.fromisoformat(end_date)
            holdout_start = (end - dt.timedelta(days=holdout_days - 1)).isoformat()
        stats = clean_training_events(
            Path(events.path),
            Path(snapshot.path),
            Path(examples.path),
            holdout_start=holdout_start,
            max_items=max_items,
            min_item_count=min_item_count,
            history_length=history_length,
        )
        examples.metadata.update(lineage(**stats.as_metadata()))
        for name, value in stats.as_metrics().items():
            funnel.log_metric(name, value)
        keep_metrics_file(funnel)
        Path(funnel_table.path).parent.mkdir(parents=True, exist_ok=True)
        Path(funnel_table.path).write_text(stats.funnel_markdown())


@dsl.component(base_image=config.image("clean"), install_kfp_package=False)
def clean_inference(
    events: Input[Dataset],
    histories: Output[Dataset],
    funnel: Output[Metrics],
    funnel_table: Output[Markdown],
    history_length: int = 5,  # config.HISTORY_LENGTH
    min_history: int = 1,  # config.MIN_HISTORY
):
    """Per-user histories of cleaned queries, cut to the last `history_length`."""
    from pathlib import Path

    from searchrec.caching import keep_metrics_file
    from searchrec.runtime import lineage, stage
    from searchrec.stages.clean import clean_inference_events

    with stage("clean_inference"):
        stats = clean_inference_events(
            Path(events.path), Path(histories.path), history_length=history_length, min_history=min_history
        )
        histories.metadata.update(lineage(**stats.as_metadata()))
        for name, value in stats.as_metrics().items():
            funnel.log_metric(name, value)
        keep_metrics_file(funnel)
        Path(funnel_table.path).parent.mkdir(parents=True, exist_ok=True)
        Path(funnel_table.path).write_text(stats.funnel_markdown())
